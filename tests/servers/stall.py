"""A loopback relay in front of a real server that stops answering mid-session.

It passes bytes both ways until the client sends a command containing one of `triggers`
(say b"SELECT"); from then on that connection carries nothing either way and stays open, as a
server whose mail storage hangs (NFS gone away) greets and logs in but never answers the
command that touches the mailbox. Everything else is the real server's.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator


class StallingRelay:
    def __init__(self, target: tuple[str, int], triggers: tuple[bytes, ...]) -> None:
        self.target, self.triggers = target, tuple(trigger.lower() for trigger in triggers)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.stalled = 0  # connections stopped so far
        self._sockets: list[socket.socket] = [self.listener]
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:  # closed
                return
            upstream = socket.create_connection(self.target)
            with self._lock:
                self._sockets += [client, upstream]
            stop = threading.Event()
            threading.Thread(target=self._pump, args=(client, upstream, stop, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, stop, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, stop: threading.Event, from_client: bool) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                if from_client and any(t in data.lower() for t in self.triggers) and not stop.is_set():
                    with self._lock:
                        self.stalled += 1
                    stop.set()
                if not stop.is_set():
                    sink.sendall(data)

    def close(self) -> None:
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)  # (wakes a thread waiting on it; close alone may not)
                with contextlib.suppress(OSError):
                    sock.close()


@contextlib.contextmanager
def stalling_relay(target: tuple[str, int], *triggers: bytes) -> Iterator[StallingRelay]:
    relay = StallingRelay(target, triggers)
    try:
        yield relay
    finally:
        relay.close()
