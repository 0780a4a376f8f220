"""A line-at-a-time SMTP client over a raw socket, for what smtplib will not send: bytes
that are not UTF-8, parameters it would reorder, commands pipelined in one write."""

from __future__ import annotations

import socket


class Client:
    """One session with the server on a loopback port: `command` sends a line and gives
    back the whole reply (its lines joined by LF)."""

    def __init__(self, port: int, source: str = "127.0.0.1") -> None:
        self.sock: socket.socket = socket.create_connection(("127.0.0.1", port), timeout=30,
                                                            source_address=(source, 0))
        self.buffer = b""

    def reply(self) -> bytes:
        """One whole (possibly multi-line) reply."""
        lines: list[bytes] = []
        while True:
            while b"\r\n" not in self.buffer:
                chunk = self.sock.recv(4096)
                if not chunk:
                    raise ConnectionError(f"closed after {lines!r}")
                self.buffer += chunk
            line, self.buffer = self.buffer.split(b"\r\n", 1)
            lines.append(line)
            if line[3:4] != b"-":
                return b"\n".join(lines)

    def command(self, line: bytes) -> bytes:
        self.sock.sendall(line + b"\r\n")
        return self.reply()
