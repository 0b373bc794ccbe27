"""Send and record (stages 7 and 8): the resumable, idempotent send loop of one issue.

Each delivery row moves queued -> sending -> sent | deferred | failed | skipped and is
committed as it moves. The loop depends only on a `Store` (digest.send.store) and a `Sender`
factory (digest.send.mailer), the way listmonk's manager depends on a store and a messenger:
a test can drive it with either one replaced.

Who may send a row: the worker that holds its lease. The lease is renewed on a timer that
does not depend on SMTP progress, and re-asserted right before MAIL FROM (a job whose lease
is gone, or whose issue was cancelled, is not sent). So only the messages in flight at a
crash can arrive twice, with the same Message-ID. The issue is done only when every row is.

Everything runs on one thread: the connections are coroutines on one asyncio event loop
(digest.send.smtp), and this loop is another; the database calls are made from it between
their turns. A stop (a threading.Event, set by a signal handler or another thread) is seen
within 50 ms. Where the relay offers PIPELINING, a connection takes and checks its next job
while a message's content goes out (when that job's pacing slot has come), so that job's
envelope follows the content in the same write (one round trip a message, not two).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Literal

from digest.compose.recipients import Recipients
from digest.compose.wire import MessageTemplate
from digest.errors import DigestError, SmtpUnavailable
from digest.models import SubscriberStatus, utcnow
from digest.send.jobs import Done, Job
from digest.send.loop import new_event_loop, run_blocking, settle, sleep_until
from digest.send.mailer import AsyncSender, SendResult, close_quietly
from digest.send.outcome import SendOutcome, SendProgress, halt_error
from digest.send.pacing import Pacer
from digest.send.policy import CircuitBreaker, RunOptions, Update, skip
from digest.send.replies import sender_hint
from digest.send.signers import Signers, signing
from digest.send.store import Claimed, Store
from digest.text import plural

log = logging.getLogger("digest.send")
FAILED_SHOWN = 5  # addresses named in a run's summary; `digest issues show N` has them all
# a job going, one whose envelope is pipelined behind it, one waiting: in flight at a crash
JOBS_PER_CONNECTION = 3


class DeliveryRun:
    """Sends one issue's outstanding deliveries over a pool of SMTP connections.

    Each connection is a coroutine that takes the next message, checks it right before MAIL
    FROM (still ours, the subscriber still active) and sends it; the loop claims rows, hands
    them out, records every outcome and renews the leases. All of it on one event loop, on
    the thread that calls run().
    """

    def __init__(
        self,
        store: Store,
        template: MessageTemplate,
        recipients: Recipients,
        sender_factory: Callable[[], AsyncSender],
        *,
        options: RunOptions,
        pacer: Pacer,
        stop: threading.Event | None = None,
        first_sender: AsyncSender | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
        on_progress: Callable[[SendProgress], None] | None = None,
        on_wait: Callable[[datetime, int], None] | None = None,
        clock: Callable[[], datetime] = utcnow,
        variants: Mapping[int, MessageTemplate] | None = None,
    ) -> None:
        """`variants`: the message of each variant of the issue (digest.issues.variants), by
        id; a delivery with none gets `template`, the whole issue. `loop`: the event loop of
        `first_sender` (a connection opened earlier); else the run makes its own."""
        self.loop = loop
        self.variants = variants or {}
        self.on_wait = on_wait  # (when, how many addresses): waiting to retry deferred rows
        self.store = store
        self.template = template
        self.recipients = recipients
        self.sender_factory = sender_factory
        self.options = options
        self.pacer = pacer
        self.stop = stop or threading.Event()
        self.first_sender = first_sender
        self.on_progress = on_progress
        self.clock = clock
        self.jobs: asyncio.Queue[Job | None] = asyncio.Queue()
        self.done: list[Done] = []
        self._stopped = asyncio.Event()  # the stop, seen on this loop
        self._wake = asyncio.Event()  # the run ended: a refused connection resting wakes
        self._done_waiter: asyncio.Future[None] | None = None
        self._done_wanted = 1
        self._checks: dict[int, asyncio.Future[str | None]] = {}
        self.breaker = CircuitBreaker(options.max_consecutive_failures)
        self.progress = SendProgress()
        self.working: set[int] = set()  # connections whose last attempt reached the server
        self.halted: str | None = None  # why the run stopped itself (a fatal reply or error)
        self.halt_hint: str | None = None
        self.halt_kind: Literal["", "sender", "setup", "error"] = ""
        self.unavailable: str | None = None
        self.signers: Signers | None = None  # DKIM helper processes, while the run is on

    # The connections ---------------------------------------------------------------------------

    async def _connection(self, index: int) -> None:
        sender = self.first_sender if index == 0 else None
        # The next job, taken and checked as the last one's content went out, envelope behind it
        ahead: Job | None = None

        async def take_next() -> tuple[str, str] | None:
            """Asked once the server is ready for a message's content: the next job's envelope,
            when one is waiting and may go now (its pacing slot has come, nobody stopping)."""
            nonlocal ahead
            while True:  # a job found not to be sent (inactive, lost) gives way to the next
                if self._stopping() or self.jobs.empty() or not self.pacer.due():
                    return None
                job = self.jobs.get_nowait()
                if job is None:  # the run is ending: leave the marker for this connection
                    self.jobs.put_nowait(None)
                    return None
                try:
                    if await self._ready(job):
                        break
                except BaseException:
                    self._finished(Done(job, "stopping"))  # not sent: back to the queue
                    raise
            self.pacer.reserve()
            ahead = job
            return job.recipient.envelope_from, job.recipient.email

        try:
            while True:
                job: Job | None
                if ahead is not None:  # checked already (unless stopping), envelope on the wire
                    job, ahead, checked = ahead, None, not self._stopping()
                else:
                    job, checked = await self.jobs.get(), False
                    if job is None:
                        return
                    if (delay := self.pacer.reserve()) > 0:
                        await sleep_until(delay, self._stopped)
                try:
                    data = await job.message(self._template(job.claim), self.signers)
                    if not checked and not await self._ready(job):
                        continue
                    if sender is None:
                        sender = self.sender_factory()
                    r = job.recipient
                    result = await sender.send(r.envelope_from, r.email, data, then=take_next)
                except SmtpUnavailable as exc:
                    self._finished(Done(job, "unreachable", error=exc.message, connection=index))
                    # This connection was refused (a relay allowing fewer connections than
                    # smtp_connections, say): rest before trying again; the others carry on.
                    await sleep_until(min(30.0, 1.0 + 2.0 * index), self._wake)
                    continue
                except DigestError as exc:  # a setup problem (login, certificate)
                    self._finished(Done(job, "fatal", error=exc.message, hint=exc.hint))
                    continue
                except Exception as exc:  # a bug: fail this job, stop the run, never hang it
                    log.exception("sending delivery %d failed", job.claim.delivery_id)
                    self._finished(Done(job, "error", error=f"{type(exc).__name__}: {exc}"))
                    if sender is not None:
                        await close_quietly(sender)
                    sender = None
                    continue
                self._finished(Done(job, "result", result=result, connection=index))
        finally:
            if ahead is not None:  # taken but never sent
                self._finished(Done(ahead, "stopping"))
            if sender is not None:
                await close_quietly(sender)

    def _template(self, claim: Claimed) -> MessageTemplate:
        return self.template if claim.variant_id is None else self.variants[claim.variant_id]

    async def _ready(self, job: Job) -> bool:
        """Right before MAIL FROM: whether the job may be sent; when not, it is finished here
        (stopping, lost, or its subscriber no longer active)."""
        if self._stopping():
            self._finished(Done(job, "stopping"))
            return False
        status = await self._check(job.claim.delivery_id)
        if status is None:
            self._finished(Done(job, "lost"))
            return False
        if status != SubscriberStatus.active:
            self._finished(Done(job, "inactive", error=f"subscriber {status}"))
            return False
        return True

    async def _check(self, delivery_id: int) -> str | None:
        """Right before MAIL FROM: the subscriber's status now, or None when the row is no longer
        ours (lease gone, issue cancelled). One query for a turn of the loop's connections."""
        loop = asyncio.get_running_loop()
        if not self._checks:
            loop.call_soon(self._run_checks)
        found: asyncio.Future[str | None] = loop.create_future()
        self._checks[delivery_id] = found
        return await found

    def _run_checks(self) -> None:
        pending, self._checks = self._checks, {}
        try:
            found = self.store.check(list(pending))
        except Exception as exc:  # the connections waiting report it, as they would their own
            for waiter in pending.values():
                if not waiter.done():
                    waiter.set_exception(exc)
            return
        for delivery_id, waiter in pending.items():
            if not waiter.done():
                waiter.set_result(found.get(delivery_id))

    def _finished(self, item: Done) -> None:
        self.done.append(item)
        waiter = self._done_waiter
        if waiter is not None and len(self.done) >= self._done_wanted and not waiter.done():
            waiter.set_result(None)

    async def _watch_stop(self) -> None:
        """The stop (a threading.Event, set by a signal handler or another thread) on this loop."""
        while not self.stop.is_set():
            await asyncio.sleep(0.05)
        self._stopped.set()

    # The loop ------------------------------------------------------------------------------------

    def run(self) -> SendOutcome:
        loop = self.loop or new_event_loop()
        try:
            return run_blocking(loop, self._run_signing())
        finally:
            if self.loop is None:
                loop.close()

    async def _run_signing(self) -> SendOutcome:
        """The run, with DKIM helper processes while it lasts (when it has any)."""
        async with signing(self.template.signer, self.options.signing_processes) as self.signers:
            return await self._run()

    async def _run(self) -> SendOutcome:
        store, options = self.store, self.options
        store.start()
        self.started_at = self.clock()
        retry_deadline = time.monotonic() + options.retry_wait_seconds
        watcher = asyncio.ensure_future(self._watch_stop())
        tasks = [asyncio.ensure_future(self._connection(i)) for i in range(options.connections)]
        claimed: deque[Claimed] = deque()
        in_flight = 0
        renew_every = options.lease_seconds / 3
        last_renew = time.monotonic()
        self.down_since: float | None = None
        try:
            while True:
                records: list[Update] = []
                # 1. Keep every connection busy (JOBS_PER_CONNECTION handed out at most).
                free = JOBS_PER_CONNECTION * options.connections - in_flight
                if not self._stopping() and free > 0:
                    if not claimed:
                        late = time.monotonic() > retry_deadline
                        # past this run's retry window, rows deferred during the run wait for
                        # the next run; rows deferred by an earlier run still get their try
                        claimed.extend(
                            store.claim(
                                options.batch_size,
                                deferred_before=self.started_at if late else None,
                            )
                        )
                    chunk = [claimed.popleft() for _ in range(min(free, len(claimed)))]
                    in_flight += self._hand_out(chunk, records)
                if in_flight == 0 and not records:
                    if claimed or self._stopping():
                        break
                    if await self._wait_for_others() or await self._wait_for_retries(
                        retry_deadline
                    ):
                        continue
                    break
                # 2. Collect what the connections finished; record it all in one commit.
                if in_flight:
                    wait = max(0.0, last_renew + renew_every - time.monotonic())
                    finished = await self._collect(in_flight, wait)
                    if not finished and all(t.done() for t in tasks):
                        break  # cannot happen unless a task died: the rows go back below
                    in_flight -= len(finished)
                    in_flight += await self._handle(finished, records)
                store.record(records)
                for update in records:
                    self.progress.count(update)
                if self.on_progress and records:
                    self.on_progress(self.progress)
                if time.monotonic() - last_renew >= renew_every:
                    store.renew()
                    last_renew = time.monotonic()
        finally:
            # Anything claimed but not handed out, or not started, goes back untouched.
            leftover = [c.delivery_id for c in claimed]
            while not self.jobs.empty():
                job = self.jobs.get_nowait()
                if job is not None:
                    leftover.append(job.claim.delivery_id)
            for _ in tasks:
                self.jobs.put_nowait(None)
            self._wake.set()
            _, pending = await asyncio.wait(tasks, timeout=5.0)
            for t in (*pending, watcher):
                t.cancel()
            await asyncio.gather(*pending, watcher, return_exceptions=True)
            for item in self.done:
                r = item.result
                if item.kind == "result" and r is not None and not (r.untried or r.fatal):
                    update = self._update(item.job, r)
                    store.record([update])  # it was tried: its outcome is the truth
                    self.progress.count(update)
                elif item.kind != "lost":
                    leftover.append(item.job.claim.delivery_id)
            self.done = []
            held = self.breaker.success()
            if self.halted and self.halt_kind == "sender":
                leftover += [u.delivery_id for u in held]  # refused because of the sender
            else:
                store.record(held)
                for update in held:
                    self.progress.count(update)
            store.release(leftover)
        return self._finish()

    def _stopping(self) -> bool:
        return self.stop.is_set() or self.halted is not None or self.unavailable is not None

    def _hand_out(self, chunk: Sequence[Claimed], records: list[Update]) -> int:
        handed = 0
        for c in chunk:
            sub = c.subscriber
            if sub is None:  # erased since the issue was made: never sent
                records.append(skip(c.delivery_id, c.attempts, c.first_attempt_at,
                                    "subscriber removed"))  # fmt: skip
                continue
            r = self.recipients.subscriber(sub.uid, sub.email, sub.name)
            ahead = self.signers.ahead(self._template(c), r) if self.signers else None
            self.jobs.put_nowait(Job(c, r, ahead))
            handed += 1
        return handed

    async def _collect(self, in_flight: int, wait: float) -> list[Done]:
        """Results: the first within `wait` seconds, and every other one that came with it
        (the replies read in the same turn of the event loop), so that one status read and
        one commit serve several messages without holding back an accepted one."""
        if not self.done:
            await self._results(1, max(wait, 0.001))
            if not self.done:
                return []
        await asyncio.sleep(0)  # the connections whose replies came in the same turn
        want = in_flight // 4
        if len(self.done) < want:  # a busy run: a little longer, for fewer commits
            await self._results(want, 0.002)
        finished, self.done = self.done, []
        return finished

    async def _results(self, wanted: int, timeout: float) -> None:
        """Until `wanted` results are in, or `timeout` seconds."""
        loop = asyncio.get_running_loop()
        waiter = self._done_waiter = loop.create_future()
        self._done_wanted = wanted
        timer = loop.call_later(timeout, settle, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._done_waiter = None

    def _update(self, job: Job, result: SendResult, now: datetime | None = None) -> Update:
        c = job.claim
        return self.options.retry.update(
            c.delivery_id, c.attempts, c.first_attempt_at, result, now or self.clock()
        )

    async def _handle(self, finished: Sequence[Done], records: list[Update]) -> int:
        """Turn results into records; returns how many jobs went back to the connections."""
        release: list[int] = []
        requeued = 0
        unreachable: list[Done] = []
        now = self.clock()  # one time for the group: one timestamp to encode, not one a row
        for item in finished:
            c = item.job.claim
            if item.kind == "result":
                result = item.result
                assert result is not None
                self.working.add(item.connection)
                self.down_since = None
                if result.untried:
                    release.append(c.delivery_id)
                elif result.fatal:
                    release.append(c.delivery_id)
                    self._halt("sender", f"{result.reply}", sender_hint(result))
                else:
                    update = self._update(item.job, result, now)
                    if result.outcome == "permanent":
                        records.extend(self.breaker.permanent(update))
                        if self.breaker.tripped:
                            self._halt(
                                "sender",
                                f"{plural(len(self.breaker.held), 'address', 'addresses')} in a "
                                f"row were refused, the last with {self.breaker.last_reply}",
                                "That many refusals are about the sender or the relay, not the "
                                "recipients: they stay queued. Check the relay's logs and "
                                "settings, then run `digest send` again.",
                            )  # fmt: skip
                    else:
                        if result.outcome == "sent":
                            records.extend(self.breaker.success())
                        records.append(update)
                    if result.throttled:
                        self.pacer.throttled()
                    else:
                        self.pacer.ok()
            elif item.kind == "inactive":
                # Unsubscribed, bounced or erased since the issue was made: never sent.
                records.append(skip(c.delivery_id, c.attempts, c.first_attempt_at, item.error))
            elif item.kind == "lost":
                # Its lease is gone (another worker has it) or the issue was cancelled.
                log.warning("delivery %d not sent: no longer leased to this worker", c.delivery_id)
            elif item.kind == "unreachable":
                self.working.discard(item.connection)
                if self.working and not self._stopping():
                    self.jobs.put_nowait(item.job)  # the connections that work take it
                    requeued += 1
                else:
                    release.append(c.delivery_id)
                    unreachable.append(item)
            elif item.kind == "fatal":
                release.append(c.delivery_id)
                self._halt("setup", item.error, item.hint)
            elif item.kind == "error":
                result = SendResult("temporary", 0, f"internal error: {item.error}"[:500])
                records.append(self._update(item.job, result))
                self._halt("error", f"unexpected {item.error}", None)
            else:  # stopping
                release.append(c.delivery_id)
        self.store.release(release)
        if unreachable and not self._stopping():
            # Nothing was tried: back to the queue, and pause before trying again.
            self.down_since = self.down_since or time.monotonic()
            pause = self.pacer.throttled()
            if time.monotonic() - self.down_since > self.options.smtp_down_seconds:
                self.unavailable = unreachable[-1].error or "the SMTP server is unreachable"
            elif pause:
                await sleep_until(pause, self._stopped)
        return requeued

    def _halt(self, kind: Literal["sender", "setup", "error"], why: str, hint: str | None) -> None:
        if self.halted is None:
            self.halted, self.halt_kind, self.halt_hint = why, kind, hint

    async def _wait_for_others(self) -> bool:
        """Other workers still hold rows of this issue (being sent, or locked by a claim in
        progress): wait for them to finish, or for their leases to run out (a crashed
        worker's rows are then claimed here)."""
        pending, seconds = self.store.others_pending()
        if not pending:
            return False
        delay = 0.2 if seconds is None else min(max(seconds, 0.0) + 0.05, 1.0)
        await sleep_until(delay, self._stopped)
        self.store.reclaim_expired()  # rows whose lease ran out: theirs are ours now
        return not self.stop.is_set()

    async def _wait_for_retries(self, deadline: float) -> bool:
        """Sleep until the next deferred row is due, if that is before `deadline`."""
        next_at, deferred = self.store.retries()
        if next_at is None:
            return False
        delay = max((next_at - self.clock()).total_seconds(), 0.0)
        if time.monotonic() + delay > deadline:
            return False
        self.progress.waiting_until = next_at
        if self.on_wait:
            self.on_wait(next_at, deferred)
        await sleep_until(delay + 0.01, self._stopped)
        self.progress.waiting_until = None
        return not self.stop.is_set()

    def _finish(self) -> SendOutcome:
        issue, finished, counts = self.store.finish()
        next_retry, _ = self.store.retries()
        failed = self.store.failed_addresses(self.started_at, FAILED_SHOWN)
        if self.halted is not None:
            raise halt_error(self.halt_kind, self.halted, self.halt_hint, issue.number)
        return SendOutcome(
            issue.number, finished, counts, self.stop.is_set(), next_retry, self.unavailable,
            failed, self.progress.failed,
        )  # fmt: skip
