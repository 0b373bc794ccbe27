"""OpenDKIM verifies what digest signs (issue 11: "signatures must still verify with dkimpy
and with OpenDKIM-compatible verifiers"): every message of a real send over 4 connections,
signed by the DKIM helper processes, RSA-2048 and Ed25519, is checked by Debian's `opendkim -t`
with the public key given as a test key (no DNS); a message changed after signing fails."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from digest.compose.dkim import load_signer
from digest.config_load import load_settings

from .helpers.keys import dkim_settings, ed25519_pem, rsa_pem
from .helpers.smtp import SmtpServer

OPENDKIM = shutil.which("opendkim") or "/usr/sbin/opendkim"
pytestmark = pytest.mark.skipif(
    not Path(OPENDKIM).exists(), reason="needs Debian's opendkim (.ci/run installs it)"
)
KEYS = {"rsa-2048": rsa_pem, "ed25519": ed25519_pem}
_RESULT = re.compile(r"^opendkim: (\S+): verification \(.*\) (succeeded|failed)", re.MULTILINE)


def opendkim_verify(files: list[Path], dns_name: str, record: str, folder: Path) -> dict[str, str]:
    """`opendkim -t` on the files: file name -> "succeeded" or "failed"."""
    keys = folder / "test-keys"
    keys.write_text(f"{dns_name} {record}\n")
    conf = folder / "opendkim.conf"
    conf.write_text(f"Mode v\nTestPublicKeys {keys}\nSyslog no\nLogWhy yes\n")
    r = subprocess.run(
        [OPENDKIM, "-x", str(conf), "-v", "-t", ",".join(f.name for f in files)],
        cwd=folder, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    return dict(_RESULT.findall(r.stdout + r.stderr))


@pytest.mark.parametrize("make_key", KEYS.values(), ids=KEYS.keys())
def test_opendkim_verifies_every_message_of_a_send(
    make_key: Callable[[], bytes], env: dict[str, str], cli: Callable[..., Any], workdir: Path,
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:  # fmt: skip
    for name, value in dkim_settings(
        workdir, make_key(), SMTP_CONNECTIONS="4", DKIM_SIGNING_PROCESSES="2",
        FROM="Gwasanaethau Cymdeithasol Łódź <news@partnership.example.org>",
        SUBJECT="{{ name }}: {{ date_range }} — everything that changed, in one long line",
    ).items():  # fmt: skip
        monkeypatch.setenv(name, value)
    names = ["Siobhán O'Brien, Jr.", "", "Zoë  Łukasiewicz-Smith\tthe Third", "Plain Name"]
    rows = ["email,name"] + [f'reader{i}@example.net,"{names[i % 4]}"' for i in range(200)]
    (workdir / "list.csv").write_text("\n".join(rows) + "\n")
    assert cli("subscribers", "import", "list.csv").exit_code == 0
    r = cli("news", "add", "--title", "Łódź: a headline long enough to need folding " * 3,
            "--url", "https://example.org/a",
            "--summary", "<p>Runs   of   spaces,\ttabs\n. a dot line\n..two dots</p>")  # fmt: skip
    assert r.exit_code == 0, r.output
    r = cli("send", "--yes")
    assert r.exit_code == 0, r.output
    signer = load_signer(load_settings().settings)
    assert signer is not None
    assert len(smtp_server.messages) == 200
    folder = tmp_path / "received"
    folder.mkdir()
    files = []
    for i, m in enumerate(smtp_server.messages):
        path = folder / f"m{i:03d}.eml"
        path.write_bytes(m.data)
        files.append(path)
    tampered = folder / "tampered.eml"
    tampered.write_bytes(smtp_server.messages[0].data.replace(b"Runs", b"Rune", 1))
    results = opendkim_verify([*files, tampered], signer.dns_name(), signer.dns_record(), folder)
    assert results.pop(tampered.name) == "failed"
    assert results == {f.name: "succeeded" for f in files}
