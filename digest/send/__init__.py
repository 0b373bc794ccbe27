"""Stages 7 and 8 of the flow: send over SMTP and record each outcome.

plan.py     what a send would do (resume, new issue, --scheduled, --worker)
job.py      send_next(): the whole of `digest send`; run_issue() wires one run
outcome.py  progress, outcome, and what it means for a person (lines, exit code)
safe.py     test copy, dry run, preview files: nothing recorded
run.py      the loop: connections (coroutines on one event loop) fed from the store
store.py    every SQL statement of the loop, behind a small interface
policy.py   pure: a reply -> the delivery's next state, back-off, lifetime
pacing.py   the one pacer (rates, throttling)
smtp.py     the SMTP client (asyncio): pipelining, STARTTLS, AUTH, deadlines
replies.py  pure: what a reply at each stage means for the delivery
mailer.py   Senders for blocking code: SMTP (through smtp.py), or files for a dry run
lock.py     one sender at a time on a SQLite file
"""
