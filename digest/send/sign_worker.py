"""A DKIM signing helper process: `python -I sign_worker.py`, started by digest.send.signers.

It runs as a script, not as part of the package: it imports only the standard library and
`cryptography`, so it starts in ~30 ms and holds nothing but the key.

The protocol, on its stdin and stdout (pipes to the send process):

- in:  b"DKS1", the algorithm (b"r" RSA, b"e" Ed25519), the key's length (4 bytes, big
  endian) and the key: PEM for RSA, the base64 32-byte seed for Ed25519 (as DkimSigner
  holds them);
- out: b"OK" and the length of every signature (2 bytes, big endian); or b"NO", a length (2
  bytes) and why (UTF-8), and the process exits 1;
- then in: SHA-256 digests, 32 bytes each; out: one signature for each, in the same order
  (RSA: PKCS#1 v1.5 of the prehashed SHA-256; Ed25519: the signature of the digest, RFC 8463
  §3), written back four at a time as they are made (the send process asks for several
  at once; a whole batch at a time would keep every connection waiting for its last one).

End of input: exit 0.
"""

from __future__ import annotations

import base64
import os
import signal
import sys
from typing import Any

MAGIC = b"DKS1"
DIGEST_SIZE = 32
NICE = 5
GROUP = 4 * DIGEST_SIZE  # signatures written back together


def load_key(algorithm: bytes, key: bytes) -> tuple[Any, int]:
    """The private key and the size of its signatures."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

    if algorithm == b"e":
        return Ed25519PrivateKey.from_private_bytes(base64.b64decode(key)), 64
    loaded = serialization.load_pem_private_key(key, password=None)
    if not isinstance(loaded, RSAPrivateKey):
        raise ValueError("not an RSA private key")
    return loaded, (loaded.key_size + 7) // 8


def signing(algorithm: bytes, key: Any) -> Any:
    """A function from a SHA-256 digest to its signature."""
    if algorithm == b"e":
        return key.sign
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding
    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

    pad, prehashed = padding.PKCS1v15(), Prehashed(hashes.SHA256())
    return lambda digest: key.sign(digest, pad, prehashed)


def _read_exactly(stream: Any, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = stream.read(n - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


def _write(data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(1, view) :]


def main() -> int:
    # Ctrl-C reaches the whole process group, and systemd's stop the whole unit: the send
    # process decides when this one ends (it closes our stdin), so that what it asked for is
    # still answered. (If the send process dies, our stdin ends and so do we.)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # Signatures are asked for well ahead of need (a connection's next jobs): the send loop
    # and, on the same machine, the relay go first, and the helpers sign in the time they leave.
    os.nice(NICE)
    stdin: Any = sys.stdin.buffer  # a BufferedReader: read1 returns what has arrived
    try:
        head = _read_exactly(stdin, 9)
        if head[:4] != MAGIC or head[4:5] not in (b"r", b"e"):
            raise ValueError("not a DKS1 request")
        algorithm, size = head[4:5], int.from_bytes(head[5:9], "big")
        key, sig_size = load_key(algorithm, _read_exactly(stdin, size))
        sign = signing(algorithm, key)
    except EOFError:
        return 0
    except Exception as exc:  # the send process reads why, and signs itself
        why = f"{type(exc).__name__}: {exc}".encode()[:1000]
        _write(b"NO" + len(why).to_bytes(2, "big") + why)
        return 1
    _write(b"OK" + sig_size.to_bytes(2, "big"))
    pending = b""
    while chunk := stdin.read1(65536):
        pending += chunk
        whole = len(pending) - len(pending) % DIGEST_SIZE
        for i in range(0, whole, GROUP):  # answered a few at a time, as they are made
            end = min(whole, i + GROUP)
            _write(b"".join(sign(pending[j : j + DIGEST_SIZE]) for j in range(i, end, DIGEST_SIZE)))
        pending = pending[whole:]
    return 0


if __name__ == "__main__":
    sys.exit(main())
