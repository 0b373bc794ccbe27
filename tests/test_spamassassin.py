"""The digest as SpamAssassin scores it, for a few hundred recipients: Debian's spamassassin
with its shipped rules, local tests only (-L: no DNS, no network). Every recipient's message
differs only in To, Message-ID and the unsubscribe token, so the score must not depend on the
token: the first token shape tripped PDS_BTC_ID ("Bitcoin ID") one time in sixty."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import pytest

from digest.tokens import _sign_v1

from .helpers.newsletter import SECRET
from .helpers.smtp import SmtpServer

RECIPIENTS = 300
_SEPARATOR = b"From digest@localhost Mon Nov 30 10:00:00 2026"
CONTROL_ID = "<control@partnership.example.org>"


def _spamassassin(messages: list[bytes], workdir: Path) -> dict[str, tuple[float, set[str]]]:
    """Message-ID -> (score, rules that fired), from one spamassassin run over an mbox (it
    does not keep the mbox's order)."""
    spamassassin = shutil.which("spamassassin")
    if spamassassin is None:
        pytest.skip("spamassassin is not installed (Debian package spamassassin)")
    mbox = workdir / "digests.mbox"
    with mbox.open("wb") as fh:
        for data in messages:
            body = data.replace(b"\r\n", b"\n")
            body = re.sub(rb"(?m)^From ", b">From ", body)
            fh.write(_SEPARATOR + b"\n" + body + b"\n")
    prefs = workdir / "user_prefs"
    prefs.write_text("use_bayes 0\nuse_auto_whitelist 0\n")
    done = subprocess.run(
        [spamassassin, "-L", "--mbox", "-p", str(prefs), str(mbox)],
        capture_output=True, timeout=1200, env={"HOME": str(workdir), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    out: dict[str, tuple[float, set[str]]] = {}
    for chunk in done.stdout.split(_SEPARATOR + b"\n")[1:]:
        msg = message_from_bytes(chunk, policy=policy.compat32)
        flat = re.sub(r",\s+", ",", " ".join(str(msg["X-Spam-Status"]).split()))  # unfolded
        score = float(re.search(r"score=(-?[\d.]+)", flat).group(1))  # type: ignore[union-attr]
        tests = re.search(r"tests=(\S*)", flat)
        out[str(msg["Message-ID"])] = (
            score, set(tests.group(1).split(",")) - {""} if tests else set()
        )  # fmt: skip
    assert len(out) == len(messages), done.stdout.decode()[-2000:]
    return out


def _with_token(data: bytes, token: str) -> bytes:
    """The message with its unsubscribe token replaced (headers and both bodies)."""
    msg = message_from_bytes(data, policy=policy.default)
    unsubscribe = str(msg["List-Unsubscribe"])
    old = re.search(r"/unsubscribe/([A-Za-z0-9_\-]+)", unsubscribe).group(1)  # type: ignore[union-attr]
    msg.replace_header("List-Unsubscribe", unsubscribe.replace(old, token))
    msg.replace_header("Message-ID", CONTROL_ID)
    for part in msg.walk():
        if part.get_content_type() in ("text/plain", "text/html"):
            content = part.get_content()
            assert old in content
            part.set_content(content.replace(old, token), subtype=part.get_content_subtype(),
                             cte="quoted-printable")  # fmt: skip
    return msg.as_bytes()


def _first_format(uid: str) -> str:
    return f"{uid}.{_sign_v1(SECRET.encode(), 'unsubscribe', uid)}"


@pytest.mark.slow
def test_spamassassin_scores_every_recipients_message_the_same(
    cli: Callable[..., Any], env: dict[str, str], smtp_server: SmtpServer, workdir: Path
) -> None:
    Path("list.csv").write_text(
        "email,name\n"
        + "".join(
            f"reader{i}@school{i % 7}.example.org,Reader Number{i}\n" for i in range(RECIPIENTS)
        ),
        encoding="utf-8",
    )
    assert cli("subscribers", "import", "list.csv").exit_code == 0
    now = datetime.now(UTC)
    for n, (title, category) in enumerate([
        ("New guidance on bruising in non-mobile babies", "Procedures"),
        ("Multi-agency training dates for 2027", "Training"),
        ("Annual report 2025/26 published", "Partnership"),
    ]):  # fmt: skip
        r = cli("news", "add", "--title", title, "--url", f"https://www.partnership.example.org/n/{n}",
                "--summary", "<p>What practitioners need to know, in two pages.</p>",
                "--category", category, "--published", (now - timedelta(hours=n + 1)).isoformat())  # fmt: skip
        assert r.exit_code == 0, r.output
    r = cli("send", "--yes")
    assert r.exit_code == 0, r.output
    smtp_server.wait_for(RECIPIENTS)
    messages = [m.data for m in smtp_server.messages]
    assert len(messages) == RECIPIENTS

    # A control: the same message with a token of the first shape for a uid that starts
    # with 1 and has no 0 (as one uid in sixty did): the rule is live in this SpamAssassin.
    control = _with_token(messages[0], _first_format("1" + "abcdef123456789" * 2 + "9"))

    scored = _spamassassin([*messages, control], workdir)
    _, control_rules = scored.pop(CONTROL_ID)
    assert "PDS_BTC_ID" in control_rules
    digests = list(scored.values())
    fired = Counter(rule for _, rules in digests for rule in rules)
    assert fired["PDS_BTC_ID"] == 0 and not any("BITCOIN" in rule for rule in fired)
    scores = {score for score, _ in digests}
    assert len(scores) == 1, fired  # the token changes nothing: one score for everyone
    assert max(scores) < 2.0, fired  # well under the usual 5.0 threshold
