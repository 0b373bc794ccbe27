"""A real MTA for the tests: Debian's Postfix as a private instance (its own config_directory
and queue_directory in a temporary folder, `postfix -c DIR start`), listening on a free
loopback port. It relays:

- `dead.example` to a pipe(8) transport whose command exits 67 (EX_NOUSER: a permanent failure)
  or, for recipients starting with `full`, 75 (EX_TEMPFAIL; with maximal_queue_lifetime = 0 the
  message is returned at once with a 4.x.x status). Postfix has accepted the message by then, so
  it bounces to the envelope sender, as a relay does after a send.
- `ok.example` to discard(8): delivered.
- Mail for the bounce domain (`partnership.example.org`) goes to one Maildir through
  virtual(8), with `recipient_delimiter = +`, so `bounces+TOKEN@` lands in `bounces/`.

Postfix's master must start as root (it drops to mail_owner); without root the tests that need
it are skipped with that reason. No DNS, no syslog (maillog_file), nothing outside the folder.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from digest.demo import free_port

POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"
BOUNCE_DOMAIN = "partnership.example.org"

_FAIL_SCRIPT = """#!/bin/sh
# pipe(8) command of the test domain: a mailbox that is full tries again later (75),
# everyone else does not exist (67).
case "$1" in
  full*) echo "4.2.2 mailbox full, try again later" >&2; exit 75 ;;
  *) echo "5.1.1 no such person here" >&2; exit 67 ;;
esac
"""

_MASTER = """\
127.0.0.1:{port} inet n - n - - smtpd
pickup    unix  n  -  n  60  1  pickup
cleanup   unix  n  -  n  -   0  cleanup
qmgr      unix  n  -  n  1   1  qmgr
rewrite   unix  -  -  n  -   -  trivial-rewrite
bounce    unix  -  -  n  -   0  bounce
defer     unix  -  -  n  -   0  bounce
trace     unix  -  -  n  -   0  bounce
verify    unix  -  -  n  -   1  verify
flush     unix  n  -  n  1000? 0 flush
proxymap  unix  -  -  n  -   -  proxymap
smtp      unix  -  -  n  -   -  smtp
relay     unix  -  -  n  -   -  smtp
showq     unix  n  -  n  -   -  showq
error     unix  -  -  n  -   -  error
retry     unix  -  -  n  -   -  error
discard   unix  -  -  n  -   -  discard
local     unix  -  n  n  -   -  local
virtual   unix  -  n  n  -   -  virtual
anvil     unix  -  -  n  -   1  anvil
scache    unix  -  -  n  -   1  scache
postlog   unix-dgram n - n - 1  postlogd
failpipe  unix  -  n  n  -   -  pipe flags=q user=nobody argv={root}/fail.sh ${{recipient}}
"""


@dataclass
class Postfix:
    root: Path
    port: int

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    @property
    def maildir(self) -> Path:
        return self.root / "mail" / "bounces"

    def log(self) -> str:
        path = self.root / "maillog"
        return path.read_text(errors="replace") if path.exists() else ""

    def wait_for_mail(self, n: int, timeout: float = 30) -> list[Path]:
        """The first `n` messages Postfix delivered to the bounce Maildir."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = sorted((self.maildir / "new").glob("*")) if self.maildir.exists() else []
            if len(found) >= n:
                return found
            time.sleep(0.1)
        raise AssertionError(f"Postfix delivered fewer than {n} messages:\n{self.log()[-3000:]}")


def _postfix(conf: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # The postfix command reports to the terminal only; its log goes to maillog_file.
    return subprocess.run(
        [POSTFIX, "-c", str(conf), *args], capture_output=True, text=True, timeout=60, check=False
    )


@contextmanager
def start_postfix() -> Iterator[Postfix]:
    if not Path(POSTFIX).exists():
        pytest.skip("Postfix is not installed (Debian: apt-get install postfix)")
    if os.geteuid() != 0:
        pytest.skip("a private Postfix instance needs root: its master process starts as root")
    import pwd

    nobody = pwd.getpwnam("nobody")
    root = Path(tempfile.mkdtemp(prefix="digest-postfix-"))
    root.chmod(0o755)
    conf, queue, data, mail = root / "etc", root / "queue", root / "data", root / "mail"
    for d in (conf, queue, data, mail):
        d.mkdir()
    shutil.chown(data, "postfix")
    os.chown(mail, nobody.pw_uid, nobody.pw_gid)
    (root / "fail.sh").write_text(_FAIL_SCRIPT)
    (root / "fail.sh").chmod(0o755)
    port = free_port()
    (conf / "main.cf").write_text(f"""\
compatibility_level = 3.6
queue_directory = {queue}
data_directory = {data}
mail_owner = postfix
setgid_group = postdrop
myhostname = mta.test.invalid
mydomain = test.invalid
myorigin = $myhostname
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
relay_domains = dead.example, ok.example
transport_maps = inline:{{ dead.example=failpipe: }}, inline:{{ ok.example=discard: }}
virtual_mailbox_domains = {BOUNCE_DOMAIN}
virtual_mailbox_base = {mail}
virtual_mailbox_maps = static:bounces/
virtual_uid_maps = static:{nobody.pw_uid}
virtual_gid_maps = static:{nobody.pw_gid}
virtual_minimum_uid = 1
recipient_delimiter = +
alias_maps =
alias_database =
local_recipient_maps =
smtp_dns_support_level = disabled
smtpd_peername_lookup = no
maillog_file = {root}/maillog
maillog_file_prefixes = {root}
notify_classes =
biff = no
maximal_queue_lifetime = 0
bounce_queue_lifetime = 0
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
""")
    (conf / "master.cf").write_text(_MASTER.format(port=port, root=root))
    started = _postfix(conf, "start")
    try:
        if started.returncode != 0:
            raise RuntimeError(f"postfix did not start: {started.stderr}{started.stdout}")
        deadline = time.monotonic() + 15
        import socket

        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"postfix is not listening: {root / 'maillog'}") from None
                time.sleep(0.05)
        yield Postfix(root, port)
    finally:
        _postfix(conf, "stop")
        shutil.rmtree(root, ignore_errors=True)
