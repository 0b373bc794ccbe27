"""A job of the send loop (digest.send.run): one delivery handed to a connection, and what
became of it there."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from digest.compose.wire import Recipient
from digest.send.replies import SendResult
from digest.send.store import Claimed

if TYPE_CHECKING:
    from digest.compose.wire import MessageTemplate
    from digest.send.signers import Presigned, Signers


@dataclass(frozen=True, slots=True)
class Job:
    claim: Claimed
    recipient: Recipient
    # its message, and the signature a DKIM helper is making for it (digest.send.signers),
    # asked for when the job was handed out so that it is ready when the connection is
    presigned: Presigned | None = None

    async def message(self, template: MessageTemplate, signers: Signers | None) -> bytes:
        """The job's message (its signature made by a DKIM helper, when the run has them)."""
        if self.presigned is not None:
            unsigned, signature = self.presigned
            return unsigned.signed(await signature)
        if signers is None:
            return template.render(self.recipient)
        return await signers.message(template, self.recipient)


# result: the server answered; stopping: not sent (the run is ending); lost: no longer
# leased here; inactive: the subscriber left; unreachable: the connection could not be made;
# fatal: a setup problem (login, certificate); error: a bug.
Kind = Literal["result", "stopping", "lost", "inactive", "unreachable", "fatal", "error"]


@dataclass(frozen=True, slots=True)
class Done:
    job: Job
    kind: Kind
    result: SendResult | None = None
    error: str = ""
    hint: str | None = None
    connection: int = 0
