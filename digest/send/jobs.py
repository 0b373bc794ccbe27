"""A job of the send loop (digest.send.run): one delivery handed to a connection, and what
became of it there."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from digest.compose.wire import Recipient
from digest.send.replies import SendResult
from digest.send.store import Claimed


@dataclass(frozen=True, slots=True)
class Job:
    claim: Claimed
    recipient: Recipient


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
