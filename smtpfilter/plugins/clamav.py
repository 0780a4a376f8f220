"""Virus scanning by ClamAV's daemon, as SME's qpsmtpd runs virus/clamav (enabled there).

The message goes to clamd over its INSTREAM command, as it was received: clamd takes
the MIME apart and looks into archives itself. A virus found refuses the message (552,
as qpsmtpd's clamdscan); a clamd that cannot answer defers it (451) unless
ClamavWhenDown says to let it through, since a scanner that is down for an hour should
not let an hour of viruses in. The wait for clamd ends at ClamdTimeout or at the DATA
checks' deadline, whichever comes first: a clamd that hangs is then "down" in time for
ClamavWhenDown to decide, and for the score to run, before ScanBudget's 451.
"""

from __future__ import annotations

import logging
import socket
import struct
import time

from smtpfilter.filter import CONTINUE, Decision, Filter, Transaction, reject, tempfail, time_left
from smtpfilter.headers import without_fields
from smtpfilter.logtext import printable, reply_text
from smtpfilter.metrics import UNCHECKED
from spamkit.config.endpoints import socket_endpoint

log = logging.getLogger("spamkit.smtpfilter")

CHUNK_BYTES = 64 << 10  # clamd reads a stream in length-prefixed chunks; this size is clamdscan's
REPLY_BYTES = 4096  # a verdict line is a name and a word; anything longer is not clamd


class ClamdUnavailable(Exception):
    """clamd could not be reached, did not answer in time, or answered nonsense."""


class ClamdRefused(Exception):
    """clamd answered, but did not scan: the message is over its StreamMaxLength, say."""


class ClamdClient:
    """clamd's socket: a path (its LocalSocket, Debian's /run/clamav/clamd.ctl) or
    HOST:PORT (its TCPSocket). One connection a scan, as clamdscan does. `timeout` bounds
    a whole exchange (connect, send, answer), not each read: a clamd that answers a byte
    at a time is not waited for longer."""

    def __init__(self, address: str, timeout: float) -> None:
        self.address = address
        self.timeout = timeout
        self.endpoint = socket_endpoint(address)
        self.unix = isinstance(self.endpoint, str)

    def ping(self) -> bool:
        try:
            return self._ask(b"zPING\0") == "PONG"
        except (ClamdUnavailable, ClamdRefused):
            return False

    def scan(self, data: bytes, deadline: float | None = None) -> str | None:
        """The name of the virus clamd finds in `data`, or None when it finds none; given
        up (ClamdUnavailable) at `deadline` (time.monotonic()) if that comes before the
        timeout."""
        reply = self._ask(b"zINSTREAM\0", data, deadline)
        if reply.startswith("stream: ") and reply.endswith(" FOUND"):
            return reply[len("stream: "):-len(" FOUND")]
        if reply == "stream: OK":
            return None
        if reply.endswith(" ERROR"):  # "INSTREAM size limit exceeded. ERROR", a damaged database...
            raise ClamdRefused(reply)
        raise ClamdUnavailable(f"unexpected answer {reply[:80]!r}")

    def _ask(self, command: bytes, stream: bytes | None = None, deadline: float | None = None) -> str:
        """clamd's answer to `command`, after `stream` (INSTREAM's data) if there is one."""
        family = socket.AF_UNIX if self.unix else socket.AF_INET6 if ":" in self.endpoint[0] else socket.AF_INET
        seconds = time_left(self.timeout, deadline)
        cut_short = seconds < self.timeout
        ends = time.monotonic() + seconds
        try:
            with socket.socket(family, socket.SOCK_STREAM) as connection:
                _time_left(connection, ends)
                connection.connect(self.endpoint)
                _time_left(connection, ends)
                connection.sendall(command)
                try:
                    if stream is not None:
                        self._send_stream(connection, stream, ends)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # clamd stops reading past StreamMaxLength, and says so: read it
                return self._reply(connection, ends)
        except TimeoutError:
            why = "no verdict by the DATA checks' deadline (within ScanBudget)" if cut_short else \
                f"no verdict within ClamdTimeout ({self.timeout:g} s): timed out"
            raise ClamdUnavailable(f"{self.address}: {why}") from None
        except OSError as error:  # refused, no such socket
            raise ClamdUnavailable(f"{self.address}: {error.strerror or error}") from None

    @staticmethod
    def _send_stream(connection: socket.socket, data: bytes, ends: float) -> None:
        """INSTREAM's framing: chunks each after its length (4 bytes, big-endian), then a
        length of 0. Sent from a view of the message, not copies of it."""
        view = memoryview(data)
        for at in range(0, len(data), CHUNK_BYTES):
            chunk = view[at:at + CHUNK_BYTES]
            _time_left(connection, ends)
            connection.sendall(struct.pack(">I", len(chunk)))
            connection.sendall(chunk)
        _time_left(connection, ends)
        connection.sendall(struct.pack(">I", 0))

    @staticmethod
    def _reply(connection: socket.socket, ends: float) -> str:
        reply = b""
        while not reply.endswith(b"\0") and len(reply) < REPLY_BYTES:
            _time_left(connection, ends)
            piece = connection.recv(REPLY_BYTES)
            if not piece:
                break
            reply += piece
        if not reply.endswith(b"\0"):
            raise ClamdUnavailable("no complete answer")
        return reply[:-1].decode("utf-8", "replace").strip()


def _time_left(connection: socket.socket, ends: float) -> None:
    """The socket's timeout set to what is left until `ends`; TimeoutError if nothing is."""
    left = ends - time.monotonic()
    if left <= 0:
        raise TimeoutError
    connection.settimeout(left)


class Clamav(Filter):
    """Refuse mail carrying a virus ClamAV knows. Every client's mail is scanned, our own
    included: an infected office PC is how a site gets blacklisted. Mail found clean gets
    qpsmtpd's `X-Virus-Checked: Checked by ClamAV on HOST` on top, as on SME; a field
    that arrived claiming our name is removed first, so that only a scan of ours says so."""

    name = "clamav"
    blocking = True  # waits on clamd

    def __init__(self, client: ClamdClient, when_down: str = "tempfail", host: str = "localhost") -> None:
        self.client = client
        self.when_down = when_down
        self.checked = f"Checked by ClamAV on {host}"

    def data(self, tx: Transaction) -> Decision:
        claim = self.checked.encode()
        tx.data = without_fields(tx.data, "x-virus-checked", lambda value: claim in value)
        decision = self._scan(tx)
        if decision is None:
            tx.data = b"X-Virus-Checked: " + claim + b"\r\n" + tx.data
            return CONTINUE
        return decision

    def _scan(self, tx: Transaction) -> Decision | None:
        """None when clamd found no virus; else CONTINUE for mail let through unscanned, or
        the refusal or deferral."""
        try:
            found = self.client.scan(tx.data, tx.deadline)
        except ClamdRefused as why:  # not scanned, by clamd's own limits: qpsmtpd lets it by
            log.warning("clamd did not scan a message (%s); it passes unscanned", why)
            UNCHECKED.count(self.name, "refused")
            return CONTINUE
        except ClamdUnavailable as why:
            if self.when_down == "accept":
                log.error("clamd unavailable (%s): the message is let through unscanned", why)
                UNCHECKED.count(self.name, "down")
                return CONTINUE
            log.error("clamd unavailable (%s): the message is deferred", why)
            return tempfail(self.name, "451 4.3.0 Virus scanner unavailable, try again later")
        if found is None:
            return None
        log.warning("clamd found %s in a message from %s", printable(found), tx.peer)  # (the reply cuts it)
        return reject(self.name, f"552 5.7.0 Virus found: {reply_text(found, 100)}")
