"""A real IMAP server for the tests: Debian's Dovecot, run as a private instance from a config
in a temporary folder, on free loopback ports (IMAP with STARTTLS, and IMAPS), with a
certificate from a throw-away CA (trustme). Users log in with a password or an XOAUTH2 token."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from digest.demo import free_port

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
USER = "bounces@partnership.example.org"
PASSWORD = "imap-pass-0123"
OAUTH_TOKEN = "ya29.test-access-token-0123456789"  # noqa: S105


@dataclass
class Dovecot:
    root: Path
    imap_port: int
    imaps_port: int
    ca_file: Path

    def url(self, *, starttls: bool = False, folder: str = "INBOX", user: str = USER) -> str:
        from urllib.parse import quote

        if starttls:
            return f"imap+starttls://{quote(user)}@127.0.0.1:{self.imap_port}/{folder}"
        return f"imaps://{quote(user)}@127.0.0.1:{self.imaps_port}/{folder}"

    def client(self) -> object:
        """A logged-in IMAPClient (for setting up and checking the mailbox)."""
        import ssl

        from imapclient import IMAPClient

        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        c = IMAPClient("127.0.0.1", port=self.imaps_port, ssl=True, ssl_context=ctx, timeout=10)
        c.login(USER, PASSWORD)
        return c


def _wait_for(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    text = log.read_text() if log.exists() else ""
    raise RuntimeError(f"dovecot did not start on port {port}: {text[-2000:]}")


@contextmanager
def start_dovecot() -> Iterator[Dovecot]:
    if not Path(DOVECOT).exists():
        pytest.skip("Dovecot is not installed (Debian: apt-get install dovecot-imapd)")
    import trustme

    root = Path(tempfile.mkdtemp(prefix="digest-dovecot-"))
    root.chmod(0o755)
    if os.geteuid() == 0:
        # Dovecot refuses to run mail processes as root: its own system users serve
        login_user, internal_user = "dovenull", "dovecot"
        mail = pwd.getpwnam("dovecot")
    else:  # a rootless instance: everything as the user running the tests
        mail = pwd.getpwuid(os.geteuid())
        login_user = internal_user = mail.pw_name
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.private_key_pem.write_to_path(str(root / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(root / "cert.pem"))
    ca_file = root / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    (root / "key.pem").chmod(0o600)
    (root / "passwd").write_text(
        f"{USER}:{{PLAIN}}{PASSWORD}::::::\n"
        # XOAUTH2: Dovecot checks the access token as the user's password here; a real
        # deployment would use passdb oauth2 with the provider's introspection URL.
        f"oauth@partnership.example.org:{{PLAIN}}{OAUTH_TOKEN}::::::\n"
    )
    home = root / "home"
    home.mkdir()
    os.chown(home, mail.pw_uid, mail.pw_gid)
    imap_port, imaps_port = free_port(), free_port()
    log = root / "dovecot.log"
    conf = root / "dovecot.conf"
    conf.write_text(f"""\
base_dir = {root}/run
state_dir = {root}/state
log_path = {log}
protocols = imap
listen = 127.0.0.1
ssl = yes
ssl_cert = <{root}/cert.pem
ssl_key = <{root}/key.pem
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = yes
auth_mechanisms = plain login xoauth2
first_valid_uid = {min(mail.pw_uid, 100)}
default_login_user = {login_user}
default_internal_user = {internal_user}
mail_location = maildir:~/Maildir
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={mail.pw_uid} gid={mail.pw_gid} home={home}/%u
}}
namespace inbox {{
  inbox = yes
  separator = /
  mailbox Done {{
    auto = create
  }}
}}
service imap-login {{
  inet_listener imap {{
    port = {imap_port}
  }}
  inet_listener imaps {{
    port = {imaps_port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
service imap-login {{
  chroot =
}}
""")
    proc = subprocess.Popen(
        [DOVECOT, "-F", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )
    try:
        _wait_for(imaps_port, proc, log)
        _wait_for(imap_port, proc, log)
        yield Dovecot(root, imap_port, imaps_port, ca_file)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        shutil.rmtree(root, ignore_errors=True)
