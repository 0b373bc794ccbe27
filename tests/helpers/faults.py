"""A TCP proxy in front of the real test SMTP server that injects network faults on purpose:
a 421 greeting, a line dropped after the final '.', a reset in the middle of DATA."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from digest.demo import free_port

# A rule sees (connection number, bytes the client has sent so far on this connection) and
# answers what to do with the connection now: None (carry on) or an action name.
Rule = Callable[[int, bytes], str | None]


@dataclass
class FaultProxy:
    target_port: int
    rule: Rule
    port: int = field(default_factory=free_port)
    connections: int = 0
    faults: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", self.port))
        self.listener.listen(64)
        self.stopped = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.stopped.set()
        self.listener.close()

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
                n = self.connections
            threading.Thread(target=self._serve, args=(n, client), daemon=True).start()

    def _fault(self, what: str) -> None:
        with self.lock:
            self.faults.append(what)

    def _serve(self, n: int, client: socket.socket) -> None:
        action = self.rule(n, b"")
        if action == "greet-421":
            self._fault(action)
            client.sendall(b"421 4.7.0 Too busy, try again later\r\n")
            client.close()
            return
        upstream = socket.create_connection(("127.0.0.1", self.target_port))
        seen = bytearray()
        done = threading.Event()

        def downstream() -> None:
            # server -> client; withheld once the rule says the reply must be lost
            try:
                while not done.is_set():
                    data = upstream.recv(65536)
                    if not data:
                        break
                    if self.rule(n, bytes(seen)) in ("drop-after-dot", "reset-mid-data"):
                        break
                    client.sendall(data)
            except OSError:
                pass
            finally:
                done.set()
                _reset(client)

        threading.Thread(target=downstream, daemon=True).start()
        try:
            while not done.is_set():
                data = client.recv(65536)
                if not data:
                    break
                seen += data
                action = self.rule(n, bytes(seen))
                if action == "reset-mid-data":
                    self._fault(action)
                    break
                upstream.sendall(data)
                if action == "drop-after-dot":
                    # the server gets the whole message; the client never hears back
                    self._fault(action)
                    done.wait(2)
                    break
        except OSError:
            pass
        finally:
            done.set()
            _reset(client)
            upstream.close()


def _reset(sock: socket.socket) -> None:
    """Close with RST (SO_LINGER 0), as a crashed peer or a middlebox would."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    except OSError:
        pass
