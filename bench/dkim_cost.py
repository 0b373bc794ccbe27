"""What DKIM signing adds per message, against the bare signature operation.

Builds the golden test issue's MessageTemplate once, then times, per message:
  1. render(recipient) without a signer (the join of prepared bytes),
  2. render(recipient) with an RSA-2048 signer and with an Ed25519 signer,
  3. the bare signature operation alone: dkimpy's RSASSA-PKCS1-v1_5 over a SHA-256
     digest (dkimpy's own RSA, CRT in Python ints), and PyNaCl's Ed25519 sign of 32 bytes.
The overhead of signing is (2) - (1) - (3): parsing, canonicalisation and hashing.

Run:  python bench/dkim_cost.py   (needs the test extra: cryptography makes the RSA key)
"""

from __future__ import annotations

import base64
import hashlib
import os
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import nacl.signing  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402
from dkim.crypto import RSASSA_PKCS1_v1_5_sign, parse_pem_private_key  # noqa: E402

from digest.compose.dkim import DkimSigner, parse_key  # noqa: E402
from digest.compose.wire import MessageTemplate, Recipient  # noqa: E402
from tests.helpers.render import MSG, render_fixed  # noqa: E402

N = int(os.environ.get("N", "300"))


def per_call(fn, n: int = N) -> float:
    """Median of 5 runs of n calls, in milliseconds per call."""
    runs = []
    for _ in range(5):
        t0 = time.perf_counter()
        for i in range(n):
            fn(i)
        runs.append((time.perf_counter() - t0) / n * 1000)
    return statistics.median(runs)


def main() -> None:
    pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )  # fmt: skip
    alg, key = parse_key(pem)
    rsa_signer = DkimSigner("example.org", "s1", alg, key)
    seed = base64.b64encode(os.urandom(32))
    ed_signer = DkimSigner("example.org", "s2", *parse_key(seed))

    r = render_fixed()
    date = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)

    def template(signer: DkimSigner | None) -> MessageTemplate:
        return MessageTemplate(settings=MSG, subject=r.subject, html_body=r.html,
                               text_body=r.text, date=date, signer=signer)  # fmt: skip

    def rec(i: int) -> Recipient:
        return Recipient(f"reader{i}@example.net", "", f"<digest.x.{i}@example.org>",
                         f"https://news.example.org/unsubscribe/{i}.SIG")  # fmt: skip

    plain, signed_rsa, signed_ed = template(None), template(rsa_signer), template(ed_signer)
    size = len(plain.render(rec(0)))
    assert rsa_signer.verify(signed_rsa.render(rec(1))) and ed_signer.verify(
        signed_ed.render(rec(1))
    )

    pk = parse_pem_private_key(key)
    sk = nacl.signing.SigningKey(seed, encoder=nacl.encoding.Base64Encoder)
    t_plain = per_call(lambda i: plain.render(rec(i)))
    t_rsa = per_call(lambda i: signed_rsa.render(rec(i)))
    t_ed = per_call(lambda i: signed_ed.render(rec(i)))
    t_rsa_bare = per_call(lambda i: RSASSA_PKCS1_v1_5_sign(hashlib.sha256(b"%d" % i), pk))
    t_ed_bare = per_call(lambda i: sk.sign(hashlib.sha256(b"%d" % i).digest()))

    print(f"message size: {size / 1024:.1f} KB; {N} messages x 5 runs, median ms per message")
    print(f"render, unsigned:               {t_plain:7.3f} ms")
    print(f"render + DKIM rsa-sha256:       {t_rsa:7.3f} ms")
    print(f"  bare RSA-2048 sign (dkimpy):  {t_rsa_bare:7.3f} ms")
    print(
        f"  signing overhead beyond RSA:  {t_rsa - t_plain - t_rsa_bare:7.3f} ms "
        f"({(t_rsa - t_plain) / t_rsa_bare:.2f}x the bare RSA sign)"
    )
    print(f"render + DKIM ed25519-sha256:   {t_ed:7.3f} ms")
    print(f"  bare Ed25519 sign (PyNaCl):   {t_ed_bare:7.3f} ms")
    print(f"  signing overhead beyond sign: {t_ed - t_plain - t_ed_bare:7.3f} ms")


if __name__ == "__main__":
    main()
