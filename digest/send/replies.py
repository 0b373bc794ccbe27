"""What an SMTP reply means for one delivery (EMAIL-RULES.md, RFC 5321): pure, no I/O.

Only a 2xx to the final "." means the message was accepted. A 5xx at MAIL FROM or a 552 at
the final "." is about the sender or the message, not the recipient (`fatal`: the run stops
and the rest stays queued). A 5xx at RCPT is permanent for that recipient, except 552
(temporary, §4.5.3.1.10). 4xx is temporary. A reply of the wrong kind (a 2xx where a 354 was
due, RCPT 252) or one that cannot be parsed is a broken connection: temporary, and the
connection is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Outcome = Literal["sent", "temporary", "permanent"]
# Replies that mean "slow down" rather than "this recipient is a problem".
THROTTLE_CODES = frozenset({421, 450, 451, 452, 454})


@dataclass(frozen=True, slots=True)
class SendResult:
    outcome: Outcome
    code: int
    reply: str
    connection_lost: bool = False
    # About the sender, the message or the relay, not this recipient: stop the run, keep the
    # rest queued (this delivery too: nothing is recorded for it).
    fatal: bool = False
    # Nothing of the message was sent (the run was stopping): the delivery goes back untouched.
    untried: bool = False

    @property
    def throttled(self) -> bool:
        return self.code in THROTTLE_CODES or self.connection_lost


def reply_text(code: int, resp: bytes | str) -> str:
    text = resp.decode("utf-8", "replace") if isinstance(resp, bytes) else resp
    return f"{code} {' '.join(text.split())}"[:500]


def classify(code: int) -> Outcome:
    """The outcome of a reply to the final "." (an unparseable reply, -1, is temporary)."""
    if 200 <= code < 300:
        return "sent"
    if 500 <= code < 600:
        return "permanent"
    return "temporary"


def judge(stage: str, code: int, resp: bytes) -> SendResult | None:
    """The result when `code` ends the transaction at `stage` (mail, rcpt, data); None when
    the transaction goes on."""
    if code in _EXPECTED[stage]:
        return None
    reply = reply_text(code, resp)
    if 400 <= code < 500 or (stage == "rcpt" and code == 552):
        return SendResult("temporary", code, reply, connection_lost=code == 421)
    if 500 <= code < 600 and stage == "rcpt":
        return SendResult("permanent", code, reply)
    if 500 <= code < 600:
        # refused at MAIL FROM (553 sender rejected, 530 authentication required, 554 relay
        # denied) or at DATA with the recipient accepted: about the sender, not the recipient
        return SendResult("permanent", code, f"{reply} (at {stage.upper()})", fatal=True)
    # a 2xx or 3xx where another reply was due, or a line we cannot parse (-1)
    return SendResult("temporary", code, f"protocol error at {stage.upper()}: {reply}", True)


_EXPECTED = {"mail": (250,), "rcpt": (250, 251), "data": (354,)}


def sender_hint(result: SendResult) -> str:
    """What to do about a fatal reply (about the sender or the message)."""
    if result.code == 552:
        return ("The message is too large for the relay: shorten the issue (fewer items) "
                "or raise the relay's limit; nothing more was sent.")  # fmt: skip
    return ("The relay refused the sender or the message, not a recipient: check `from`, "
            "the SMTP login and the relay's rules; the rest stays queued, and "
            "`digest send` resumes it.")  # fmt: skip
