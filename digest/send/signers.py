"""DKIM signatures made by helper processes, so that the send loop's core composes and sends
while other cores sign.

An RSA-2048 signature costs OpenSSL ~0.25 ms: as much as composing, checking, sending and
recording a message all together. On one core a signed send makes half the messages a
second an unsigned one does, and a thread does not help (the loop and the thread pass the
GIL back and forth for every message, which cost more than the signature: bench/README).
So the key goes to helper processes (digest/send/sign_worker.py, stdlib and `cryptography`
only), each fed SHA-256 digests down a pipe and answering with signatures, in order.

The send process still does everything else of DKIM (DkimSigner.prepare: canonical header
fields, body hash, tags), so what a helper signs is 32 bytes and what it answers is the
signature alone. A helper's first signature is checked against the public key; a helper
that fails (cannot start, dies, answers wrongly, stops answering) is dropped with a warning,
and what it still owed is signed here, as is everything while no helper is ready: a helper
never costs a message. A job's signature is asked for when the job is handed to the connections (Job.
presigned), so that it is ready by the time its connection gets to it; the helpers run niced
and ignore SIGINT and SIGTERM (sign_worker.py): the send process ends them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # `cryptography` is loaded by the signer, when a send signs
    from digest.compose.dkim import DkimSigner, Unsigned
    from digest.compose.wire import MessageTemplate, Recipient

Presigned = tuple["Unsigned", asyncio.Future[bytes]]

log = logging.getLogger("digest.send")
WORKER = Path(__file__).with_name("sign_worker.py")
# A helper that owes signatures and has made none for this long is dropped (one takes ~0.25 ms):
# stopped, swapped out or wedged, it must not hold the send.
ANSWER_SECONDS = 10.0


@dataclass
class _Helper:
    process: asyncio.subprocess.Process
    pending: deque[tuple[asyncio.Future[bytes], bytes]] = field(default_factory=deque)
    signature_size: int = 0  # known once the helper said OK
    checked: bool = False  # its first signature verified against the public key
    signed: int = 0
    outbox: list[bytes] = field(default_factory=list)  # digests not yet written to it
    progress_at: float = 0.0  # when it last answered, or was first owed something since
    dropped: bool = False
    reader: asyncio.Task[None] | None = None

    @property
    def ready(self) -> bool:
        return self.signature_size > 0


@contextlib.asynccontextmanager
async def signing(signer: DkimSigner | None, processes: int) -> AsyncIterator[Signers | None]:
    """`processes` helpers for `signer` while the block runs (None: no signer, or none asked)."""
    if signer is None or processes == 0:
        yield None
        return
    signers = Signers(signer, processes)
    try:
        await signers.start()
        yield signers
    finally:
        await signers.close()


class Signers:
    """Helper processes that sign for one DkimSigner; `sign` never fails for their sake."""

    def __init__(self, signer: DkimSigner, processes: int) -> None:
        self.signer = signer
        self.processes = processes
        self.helpers: list[_Helper] = []
        self.signed_by_helpers = 0
        self.signed_here = 0  # signatures made in this process (no helper was ready)
        self._closing = False
        self._flushing = False
        self._watchdog: asyncio.Task[None] | None = None
        self._dropped: list[_Helper] = []

    async def start(self) -> None:
        """Start the helpers; they are used as each becomes ready (~30 ms)."""
        algorithm = b"e" if self.signer.key_type == "ed25519" else b"r"
        key = self.signer.private_key
        hello = b"DKS1" + algorithm + len(key).to_bytes(4, "big") + key
        for _ in range(self.processes):
            try:
                process = await asyncio.create_subprocess_exec(
                    sys.executable, "-I", str(WORKER), stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                )  # fmt: skip
            except OSError as exc:
                log.warning("DKIM signing helper not started (%s); signing in this process", exc)
                break
            assert process.stdin is not None
            process.stdin.write(hello)
            helper = _Helper(process)
            helper.reader = asyncio.ensure_future(self._read(helper))
            self.helpers.append(helper)
        self._watchdog = asyncio.ensure_future(self._watch())

    @property
    def ready(self) -> bool:
        """Whether a helper is ready to sign."""
        return any(h.ready for h in self.helpers)

    def ahead(self, template: MessageTemplate, r: Recipient) -> Presigned | None:
        """r's message, made now, and its signature asked for, so that the helpers work ahead
        of the connections (None: no helper is ready, or the template is not signed here)."""
        if template.signer is not self.signer or not self.ready:
            return None
        try:
            message = template.render(r, sign=False)
            unsigned = self.signer.prepare(message, prefix=template.body_prefix)
        except Exception:  # composed again by the connection, which fails the job as it should
            return None
        signature = self.request(unsigned)
        return None if signature is None else (unsigned, signature)

    async def message(self, template: MessageTemplate, r: Recipient) -> bytes:
        """r's message, signed by a helper (or here, when none is ready)."""
        if template.signer is not self.signer:
            return template.render(r)
        message = template.render(r, sign=False)
        return await self.sign(self.signer.prepare(message, prefix=template.body_prefix))

    async def sign(self, unsigned: Unsigned) -> bytes:
        """The message with its DKIM-Signature: by a helper when one is ready, else here."""
        signature = self.request(unsigned)
        if signature is None:
            self.signed_here += 1
            return unsigned.signed(self.signer.sign_digest(unsigned.digest))
        return unsigned.signed(await signature)

    def request(self, unsigned: Unsigned) -> asyncio.Future[bytes] | None:
        """The signature to come from the least busy ready helper (None: no helper is ready).
        The future never fails: a helper that does is dropped and its work is done here."""
        ready = [h for h in self.helpers if h.ready]
        if not ready:
            return None
        helper = min(ready, key=lambda h: len(h.pending))
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bytes] = loop.create_future()
        if not helper.pending:
            helper.progress_at = loop.time()
        helper.pending.append((waiter, unsigned.digest))
        helper.outbox.append(unsigned.digest)
        if not self._flushing:  # what is asked for in this turn of the loop goes in one write
            self._flushing = True
            loop.call_soon(self._flush)
        return waiter

    def _flush(self) -> None:
        self._flushing = False
        for helper in list(self.helpers):
            if helper.outbox:
                data, helper.outbox = b"".join(helper.outbox), []
                assert helper.process.stdin is not None
                try:
                    helper.process.stdin.write(data)
                except (OSError, RuntimeError) as exc:  # it has gone: signed here, in _drop
                    self._drop(helper, f"writing to it failed: {exc}")

    async def _read(self, helper: _Helper) -> None:
        stdout = helper.process.stdout
        assert stdout is not None
        try:
            answer = await stdout.readexactly(4)
            if answer[:2] != b"OK":
                why = await stdout.read(int.from_bytes(answer[2:], "big"))
                raise RuntimeError(why.decode("utf-8", "replace") or "it refused the key")
            size = helper.signature_size = int.from_bytes(answer[2:], "big")
            buffered = b""
            while chunk := await stdout.read(65536):
                buffered += chunk
                done = len(buffered) // size
                for i in range(done):
                    waiter, digest = helper.pending.popleft()
                    signature = buffered[i * size : (i + 1) * size]
                    if not helper.checked:
                        if not self.signer.check_digest(signature, digest):
                            helper.pending.appendleft((waiter, digest))
                            raise RuntimeError("its signature did not verify")
                        helper.checked = True
                    helper.signed += 1
                    if not waiter.done():
                        waiter.set_result(signature)
                helper.progress_at = asyncio.get_running_loop().time()
                buffered = buffered[done * size :]
            if not self._closing:
                raise RuntimeError(await self._why_ended(helper))
        except asyncio.CancelledError:
            raise
        except asyncio.IncompleteReadError:
            self._drop(helper, await self._why_ended(helper))
        except Exception as exc:
            self._drop(helper, str(exc))

    async def _why_ended(self, helper: _Helper) -> str:
        stderr = helper.process.stderr
        said = (await stderr.read(4000)).decode("utf-8", "replace").strip() if stderr else ""
        code = await helper.process.wait()
        last = said.splitlines()[-1] if said else ""
        return f"it exited with code {code}" + (f": {last}" if last else "")

    async def _watch(self) -> None:
        """Drop a helper that owes signatures and has made none for ANSWER_SECONDS."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(ANSWER_SECONDS / 4)
            for helper in list(self.helpers):
                if helper.pending and loop.time() - helper.progress_at > ANSWER_SECONDS:
                    self._drop(helper, f"it owed {len(helper.pending)} signatures and made "
                                       f"none for {ANSWER_SECONDS:g} s")  # fmt: skip

    def _drop(self, helper: _Helper, why: str) -> None:
        """A helper that failed: out of use, and what it owed signed here."""
        if helper.dropped:
            return
        helper.dropped = True
        if not self._closing:
            log.warning("DKIM signing helper %s stopped (%s); signing in this process",
                        helper.process.pid, why)  # fmt: skip
        if helper in self.helpers:  # (at close, the helpers are counted there)
            self.helpers.remove(helper)
            self.signed_by_helpers += helper.signed
            self._dropped.append(helper)
        helper.outbox.clear()
        self._sign_owed(helper)
        if helper.process.returncode is None:
            helper.process.kill()

    def _sign_owed(self, helper: _Helper) -> None:
        """What the helper still owes, signed here."""
        while helper.pending:
            waiter, digest = helper.pending.popleft()
            if not waiter.done():
                self.signed_here += 1
                waiter.set_result(self.signer.sign_digest(digest))

    async def close(self) -> None:
        """End the helpers (their input closes; killed if they do not stop within 2 s)."""
        self._closing = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            await asyncio.gather(self._watchdog, return_exceptions=True)
        helpers, self.helpers = self.helpers, []
        for helper in helpers:
            if helper.process.stdin is not None:
                helper.process.stdin.close()
        for helper in (*helpers, *self._dropped):
            try:
                await asyncio.wait_for(helper.process.wait(), 2.0)
            except TimeoutError:
                helper.process.kill()
                await helper.process.wait()
            if helper.reader is not None:  # it ends at the end of the helper's output
                with contextlib.suppress(TimeoutError):  # (wait_for cancels it then)
                    await asyncio.wait_for(helper.reader, 2.0)
            self._sign_owed(helper)  # none unless a connection gave up waiting
        self.signed_by_helpers += sum(h.signed for h in helpers)
        self._dropped.clear()
        log.info("DKIM: %d signatures by %d helper processes, %d in the send process",
                 self.signed_by_helpers, self.processes, self.signed_here)  # fmt: skip
