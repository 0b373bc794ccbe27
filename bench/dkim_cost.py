"""What DKIM signing adds per message, against the bare operations it cannot avoid.

The reference of issue 11: one OpenSSL RSA-2048 PKCS#1 v1.5 signature (SHA-256) over a
header block of the size digest signs, plus the SHA-256 of the message body; the same with
Ed25519. `reference_costs` is what `bench/run.py` measures in the same run as the sends (DKIM
figures D1/D2); run as a script, this also times `MessageTemplate.render` unsigned and signed
in this process, so the in-process overhead of digest's canonicalisation can be read off.

Run:  python bench/dkim_cost.py
"""

from __future__ import annotations

import base64
import hashlib
import os
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

N = int(os.environ.get("N", "300"))
HEADER_BLOCK = 1100  # bytes of canonical header fields digest signs, about (12 fields)


def cpu_per_call(fn: Callable[[int], object], n: int = N) -> float:
    """Median of 5 passes of n calls: CPU (process_time) in microseconds per call."""
    runs = []
    for _ in range(5):
        t0 = time.process_time()
        for i in range(n):
            fn(i)
        runs.append((time.process_time() - t0) / n * 1e6)
    return statistics.median(runs)


def rsa_pem() -> bytes:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def ed25519_pem() -> bytes:
    return ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def reference_costs(message: bytes, n: int = N) -> dict[str, Any]:
    """µs of CPU per message for OpenSSL's RSA-2048 (and Ed25519) signature of a header block
    plus the SHA-256 of `message`'s body: the floor of what signing can cost."""
    body = message.partition(b"\r\n\r\n")[2] or message
    rsa_key = serialization.load_pem_private_key(rsa_pem(), password=None)
    ed_key = serialization.load_pem_private_key(ed25519_pem(), password=None)
    assert isinstance(rsa_key, rsa.RSAPrivateKey)
    assert isinstance(ed_key, ed25519.Ed25519PrivateKey)
    block = [os.urandom(HEADER_BLOCK) for _ in range(8)]

    def rsa_one(i: int) -> None:
        hashlib.sha256(body).digest()
        rsa_key.sign(block[i % 8], padding.PKCS1v15(), hashes.SHA256())

    def ed_one(i: int) -> None:
        hashlib.sha256(body).digest()
        ed_key.sign(hashlib.sha256(block[i % 8]).digest())

    sha = cpu_per_call(lambda i: hashlib.sha256(body).digest(), n)
    return {
        "body_bytes": len(body),
        "sha256_body_us": sha,
        "rsa2048_sign_plus_sha256_us": cpu_per_call(rsa_one, n),
        "ed25519_sign_plus_sha256_us": cpu_per_call(ed_one, n),
        "passes": 5,
        "calls_per_pass": n,
    }


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from digest.compose.dkim import DkimSigner, parse_key
    from digest.compose.wire import MessageTemplate, Recipient
    from tests.helpers.render import MSG, render_fixed

    rsa_signer = DkimSigner("example.org", "s1", *parse_key(rsa_pem()))
    ed_signer = DkimSigner("example.org", "s2", *parse_key(base64.b64encode(os.urandom(32))))
    r = render_fixed()
    date = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)

    def template(signer: DkimSigner | None) -> MessageTemplate:
        return MessageTemplate(settings=MSG, subject=r.subject, html_body=r.html,
                               text_body=r.text, date=date, signer=signer)  # fmt: skip

    def rec(i: int) -> Recipient:
        return Recipient(f"reader{i}@example.net", "", f"<digest.x.{i}@example.org>",
                         f"https://news.example.org/unsubscribe/{i}.SIG")  # fmt: skip

    plain, signed_rsa, signed_ed = template(None), template(rsa_signer), template(ed_signer)
    message = plain.render(rec(0))
    assert rsa_signer.verify(signed_rsa.render(rec(1)))
    assert ed_signer.verify(signed_ed.render(rec(1)))
    ref = reference_costs(message)
    t_plain = cpu_per_call(lambda i: plain.render(rec(i)))
    t_rsa = cpu_per_call(lambda i: signed_rsa.render(rec(i)))
    t_ed = cpu_per_call(lambda i: signed_ed.render(rec(i)))
    rsa_ref, ed_ref = ref["rsa2048_sign_plus_sha256_us"], ref["ed25519_sign_plus_sha256_us"]
    print(f"message {len(message):,} bytes; {N} messages x 5 passes, median CPU µs per message")
    print(f"render, unsigned:                       {t_plain:8.1f}")
    print(f"render + DKIM rsa-sha256:               {t_rsa:8.1f}")
    print(f"  reference: OpenSSL RSA-2048 + SHA-256: {rsa_ref:8.1f}")
    print(
        f"  signing adds {t_rsa - t_plain:.1f} µs = {(t_rsa - t_plain) / rsa_ref:.2f}x the reference"
    )
    print(f"render + DKIM ed25519-sha256:           {t_ed:8.1f}")
    print(f"  reference: Ed25519 + SHA-256:         {ed_ref:8.1f}")
    print(
        f"  signing adds {t_ed - t_plain:.1f} µs = {(t_ed - t_plain) / ed_ref:.2f}x the reference"
    )


if __name__ == "__main__":
    main()
