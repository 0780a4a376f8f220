"""spamd's protocol (SPAMC/SPAMD, up to 1.5), so that what talks to SpamAssassin's daemon
talks to spamkit instead: spamc in a .qmail or procmail line, qpsmtpd's spamassassin
plugin (SME's own front end), Exim's spamd_address, amavis, Mail::SpamAssassin::Client.

One request a connection, as spamd does: a method line ("PROCESS SPAMC/1.5"), headers
(Content-length, User, Compress, and for TELL Message-class, Set, Remove), a blank line,
the message; the answer is "SPAMD/1.1 0 EX_OK", headers ("Spam: True ; 7.9 / 5.0") and a
body that depends on the method. Failures answer a sysexits code, never a verdict:
spamc then passes the message on unchanged (its "safe fallback"), so mail is never lost
for a scan that did not happen.

The scan is `spamkit check`'s verdict (Scanner), on a worker thread; a message is never
held longer than it takes to read, scan and answer. TELL learns or forgets through the
Learner, once a message, as `spamkit learn` does, and only with --allow-tell (spamd's
default too: anyone who can reach the port could otherwise teach the database).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

from smtpfilter.logtext import printable
from smtpfilter.networks import Networks
from spamkit.errors import StoreError
from spamkit.learn import Learner
from spamkit.pyzor import PyzorCheck
from spamkit.sources import SourceItem
from spamkit.store import Label
from spamkit.verdict import Scanner, Verdict, header_block

log = logging.getLogger("spamkit.spamd")

# sysexits.h, as spamd answers them
EX_OK = 0
EX_USAGE = 64
EX_DATAERR = 65
EX_UNAVAILABLE = 69
EX_SOFTWARE = 70
EX_TEMPFAIL = 75
EX_PROTOCOL = 76
EX_NOPERM = 77
_NAMES = {EX_OK: "EX_OK", EX_USAGE: "EX_USAGE", EX_DATAERR: "EX_DATAERR",
          EX_UNAVAILABLE: "EX_UNAVAILABLE", EX_SOFTWARE: "EX_SOFTWARE",
          EX_TEMPFAIL: "EX_TEMPFAIL", EX_PROTOCOL: "EX_PROTOCOL", EX_NOPERM: "EX_NOPERM"}

MAX_LINE = 8192  # a method or header line
MAX_HEADERS = 100
MAX_MESSAGE = 50 * 1024 * 1024  # as `spamkit serve` takes at most; spamc sends at most 500 kB
READ_TIMEOUT = 30.0  # seconds for the whole request; spamc's own default timeout is 600
# seconds a client has to take its answer: one that never reads (stopped, or cut off
# without a reset) would otherwise hold its slot, and the daemon's stop, for good
REPLY_TIMEOUT = 30.0
# seconds SIGTERM gives the requests taken to be answered (the unit's TimeoutStopSec is 60)
STOP_WAIT = 30.0
SCAN_METHODS = frozenset({"CHECK", "SYMBOLS", "REPORT", "REPORT_IFSPAM", "PROCESS", "HEADERS"})
METHODS = SCAN_METHODS | {"PING", "SKIP", "TELL"}


class ProtocolError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class ClientGone(Exception):
    """The client closed without sending a request (a port probe, a monitor)."""


@dataclass
class Request:
    method: str
    version: str
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names
    body: bytes = b""

    def header(self, name: str) -> str:
        return self.headers.get(name.lower(), "")


def answer(code: int, message: str | None = None, headers: list[tuple[str, str]] | None = None,
           body: bytes | None = None, version: str = "1.1") -> bytes:
    """One response: status line, headers (Content-length when there is a body), blank
    line, body. An error is its status line alone, as spamd sends it."""
    status = f"SPAMD/{version} {code} {message or _NAMES.get(code, 'EX_SOFTWARE')}\r\n".encode()
    if code != EX_OK:
        return status
    lines = [f"{name}: {value}\r\n".encode() for name, value in headers or []]
    if body is not None:
        lines.insert(0, f"Content-length: {len(body)}\r\n".encode())
    return status + b"".join(lines) + b"\r\n" + (body or b"")


async def read_request(reader: asyncio.StreamReader, max_message: int = MAX_MESSAGE) -> Request:
    """The request, or ProtocolError (EX_PROTOCOL for what is not the protocol, EX_DATAERR
    for a message too large or not decompressible)."""
    method_line = await _line(reader)
    parts = method_line.split()
    if len(parts) != 2 or not parts[1].startswith("SPAMC/"):
        raise ProtocolError(EX_PROTOCOL, f"bad method line: {method_line[:80]!r}")
    method, version = parts[0].upper(), parts[1][6:]
    if method not in METHODS:
        raise ProtocolError(EX_PROTOCOL, f"unknown method {method[:40]!r}")
    request = Request(method, version)
    lines = 0
    while line := await _header_line(reader):
        lines += 1
        if lines > MAX_HEADERS:
            raise ProtocolError(EX_PROTOCOL, "too many headers")
        name, colon, value = line.partition(":")
        if not colon or not name.strip():
            raise ProtocolError(EX_PROTOCOL, f"bad header line: {line[:80]!r}")
        request.headers[name.strip().lower()] = value.strip()
    if method in ("PING", "SKIP"):
        return request
    length = request.header("content-length")
    if length:
        if not (length.isascii() and length.isdigit()) or len(length) > 18:  # ("²" is a digit to isdigit)
            raise ProtocolError(EX_PROTOCOL, f"bad Content-length: {length[:40]!r}")
        if int(length) > max_message:
            raise ProtocolError(EX_DATAERR, f"message of {length} bytes is over {max_message}")
        try:
            request.body = await reader.readexactly(int(length))
        except asyncio.IncompleteReadError:
            raise ProtocolError(EX_PROTOCOL, "the message ended before its Content-length") from None
    else:  # older clients send no length and shut their side down after the message
        request.body = await reader.read(max_message + 1)
        if len(request.body) > max_message:
            raise ProtocolError(EX_DATAERR, f"message over {max_message} bytes")
    if request.header("compress").lower() == "zlib":
        request.body = _inflate(request.body, max_message)
    return request


async def _line(reader: asyncio.StreamReader) -> str:
    try:
        raw = await reader.readuntil(b"\n")
    except asyncio.LimitOverrunError:
        raise ProtocolError(EX_PROTOCOL, "line too long") from None
    except asyncio.IncompleteReadError as error:
        if not error.partial:
            raise ClientGone() from None
        raw = error.partial
    if len(raw) > MAX_LINE:
        raise ProtocolError(EX_PROTOCOL, "line too long")
    return raw.decode("latin-1").rstrip("\r\n")


async def _header_line(reader: asyncio.StreamReader) -> str:
    try:
        return await _line(reader)
    except ClientGone:
        raise ProtocolError(EX_PROTOCOL, "the connection closed in the headers") from None


def _inflate(data: bytes, limit: int) -> bytes:
    """zlib data (spamc -z), never more than `limit` bytes of it."""
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data, limit + 1)
    except zlib.error as error:
        raise ProtocolError(EX_DATAERR, f"Compress: zlib, but the message is not: {error}") from None
    if len(out) > limit:
        raise ProtocolError(EX_DATAERR, f"message over {limit} bytes once decompressed")
    return out


def spam_header(verdict: Verdict) -> tuple[str, str]:
    return ("Spam", f"{'True' if verdict.is_spam else 'False'} ; {verdict.score:.1f} / "
                    f"{verdict.required:.1f}")


class SpamdService:
    """What each request gets: a verdict, a processed message, a lesson learned."""

    def __init__(self, scanner: Scanner, allow_tell: bool = False, autolearn: bool = False,
                 when_database_down: str = "tempfail", ask_pyzor: bool = False) -> None:
        self.scanner = scanner
        self.allow_tell = allow_tell
        self.autolearn = autolearn
        self.when_database_down = when_database_down
        self.ask_pyzor = ask_pyzor
        self._pyzor: tuple[object, PyzorCheck] | None = None  # (the config it was made from, it)

    def respond(self, request: Request) -> bytes:
        """The answer to one request (on a worker thread: scanning and learning block)."""
        if request.method == "PING":
            return answer(EX_OK, "PONG", version="1.5").removesuffix(b"\r\n")
        if request.method == "TELL":
            return self._tell(request)
        # spamc -u: the recipient, as an account name (procmail's $LOGNAME) or an address,
        # whose own white and blacklist entries (`spamkit wbl add ... --user`) then apply
        user = request.header("user")
        message = request.body
        pyzor = self._pyzor_check()
        if pyzor is not None:  # what it said goes back with PROCESS's message, as the filter's does
            message = pyzor.recorded(message).data
        verdict = self._scan(message, (user,) if user else ())
        headers = [spam_header(verdict)]
        method = request.method
        if method == "CHECK":
            return answer(EX_OK, headers=headers)
        if method == "SYMBOLS":
            names = ",".join(sorted(hit.name for hit in verdict.hits))
            return answer(EX_OK, headers=headers, body=names.encode())
        if method == "REPORT" or (method == "REPORT_IFSPAM" and verdict.is_spam):
            return answer(EX_OK, headers=headers, body=(verdict.report() + "\n").encode("utf-8"))
        if method == "REPORT_IFSPAM":
            return answer(EX_OK, headers=headers)
        processed = verdict.rewrite(message)
        if method == "HEADERS":
            processed = header_block(processed)
        return answer(EX_OK, headers=headers, body=processed)

    def _pyzor_check(self) -> PyzorCheck | None:
        """--pyzor's check, made again when SIGHUP has read a new configuration (its
        PyzorServers, PyzorTimeout and thresholds)."""
        if not self.ask_pyzor:
            return None
        config = self.scanner.config
        made = self._pyzor
        if made is None or made[0] is not config:
            made = self._pyzor = (config, PyzorCheck.from_config(config, "spamd --pyzor"))
        return made[1]

    def _scan(self, raw: bytes, recipients: tuple[str, ...]) -> Verdict:
        try:
            verdict = self.scanner.scan(raw, recipients=recipients)
        except StoreError as error:
            if self.when_database_down != "rules":  # tempfail, or unscanned: spamc passes it on
                code = EX_TEMPFAIL if self.when_database_down == "tempfail" else EX_UNAVAILABLE
                log.warning("token database unusable, answered %s: %s", _NAMES[code], error)
                raise ProtocolError(code, "the token database is unavailable") from None
            log.warning("token database unusable, scored with the rules alone: %s", error)
            verdict = self.scanner.scan(raw, recipients=recipients, with_bayes=False)
            verdict.autolearn, verdict.autolearn_reason = "unavailable", str(error)
            return verdict
        if self.autolearn:
            self.scanner.autolearn(raw, verdict, "spamd")
        else:
            verdict.not_learned_here("spamd does not learn (spamd --autolearn would)")
        return verdict

    def _tell(self, request: Request) -> bytes:
        if not self.allow_tell:
            raise ProtocolError(EX_NOPERM, "TELL is not allowed here: start spamkit spamd "
                                           "with --allow-tell")
        store = self.scanner.store
        if self.scanner.database_down is not None:
            log.warning("TELL answered %s: %s", _NAMES[EX_TEMPFAIL], self.scanner.database_down)
            raise ProtocolError(EX_TEMPFAIL, "the token database is unavailable")
        if store is None:
            raise ProtocolError(EX_UNAVAILABLE, "Bayes is off (UseBayes): nothing to learn into")
        to_set = _databases(request.header("set"))
        to_remove = _databases(request.header("remove"))
        kind = request.header("message-class").lower()
        if not (to_set or to_remove) or (to_set and kind not in ("spam", "ham")):
            raise ProtocolError(EX_PROTOCOL, "TELL needs Set: local with Message-class: spam "
                                             "or ham, or Remove: local")
        learner = Learner(store, self.scanner.analyzer,
                          max_tokens=self.scanner.config["BayesMaxTokens"],
                          seen_days=self.scanner.config["BayesSeenDays"])
        item = [SourceItem("spamd", request.body)]
        by = f"spamd:{printable(request.header('user')) or '-'}"
        headers = []
        try:
            if "local" in to_remove:
                if learner.learn(item, None, by=by).forgotten:
                    headers.append(("DidRemove", "local"))
            if "local" in to_set:
                summary = learner.learn(item, Label(kind), by=by)
                if summary.learned or summary.relearned:
                    headers.append(("DidSet", "local"))
        except StoreError as error:
            raise ProtocolError(EX_TEMPFAIL, f"the token database could not learn: {error}") from None
        return answer(EX_OK, headers=headers)


def _databases(value: str) -> set[str]:
    """"local, remote" -> {"local", "remote"} (spamkit has only the local one)."""
    return {part.strip().lower() for part in value.split(",") if part.strip()}


class SpamdServer:
    """The asyncio side: listening, the client allowlist, the cap on requests at once."""

    def __init__(self, service: SpamdService, allowed: Networks, max_children: int = 5,
                 max_message: int = MAX_MESSAGE, reply_timeout: float = REPLY_TIMEOUT,
                 stop_wait: float = STOP_WAIT) -> None:
        self.service = service
        self.allowed = allowed
        self.max_children = max_children
        self.max_message = max_message
        self.reply_timeout = reply_timeout
        self.stop_wait = stop_wait

    async def serve(self, listening: list[socket.socket], stop: asyncio.Event) -> None:
        """Answer connections on the `listening` sockets until `stop` is set; then take no
        more, and return once those taken are answered, or `stop_wait` seconds later
        (those still open are then closed unanswered: spamc says so, and passes the
        message on unchecked or, with -x, has the MTA try again).

        A connection is taken only while fewer than max_children are: a slot a request,
        from reading it to answering it, so at most max_children messages are held at once
        (50 MB each at worst). The other clients wait in the kernel's queue, unread, as
        they wait for a free child of SpamAssassin's spamd; and where several processes
        share the sockets (smtpfilter.prefork), the next one goes to a process that can
        serve it now."""
        loop = asyncio.get_running_loop()
        taken: set[asyncio.Task[None]] = set()

        def start(connection: socket.socket) -> None:
            task = loop.create_task(self._connection(connection))
            taken.add(task)
            task.add_done_callback(finished)

        def finished(task: asyncio.Task[None]) -> None:
            taken.discard(task)
            acceptor.release()

        acceptor = _Acceptor(loop, listening, self.max_children, start)
        try:
            await stop.wait()
        finally:
            acceptor.stop()
        log.info("spamd: stopping; %d request(s) taken get up to %g s to be answered",
                 len(taken), self.stop_wait)
        if taken:
            _, unanswered = await asyncio.wait(taken, timeout=self.stop_wait)
            if unanswered:
                log.warning("spamd: %d request(s) still unanswered after %g s: closed without an answer",
                            len(unanswered), self.stop_wait)
                for task in unanswered:
                    task.cancel()
                await asyncio.wait(unanswered)

    async def _connection(self, connection: socket.socket) -> None:
        try:
            if connection.family == socket.AF_UNIX:
                reader, writer = await asyncio.open_unix_connection(sock=connection)
            else:
                reader, writer = await asyncio.open_connection(sock=connection)
        except OSError:
            connection.close()
            return
        await self.connected(reader, writer)

    async def connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One connection, already given its slot: the allowlist, then the request."""
        peer = writer.get_extra_info("peername")
        client = peer[0] if isinstance(peer, tuple) else "unix"
        if client != "unix" and client not in self.allowed:
            log.warning("spamd: connection from %s refused (not in --allowed-ips)", client)
            writer.close()
            return
        await self._serve_one(client, reader, writer)

    async def _serve_one(self, client: str, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> None:
        started = time.monotonic()
        request: Request | None = None
        try:
            try:
                request = await asyncio.wait_for(read_request(reader, self.max_message), READ_TIMEOUT)
                if request.method == "SKIP":
                    return
                reply = await asyncio.get_running_loop().run_in_executor(
                    None, self.service.respond, request)
            except ClientGone:
                return  # nothing asked, nothing to answer or log
            except ProtocolError as error:
                reply = answer(error.code, str(error))
            except asyncio.TimeoutError:
                reply = answer(EX_TEMPFAIL, f"no whole request in {READ_TIMEOUT:g} s")
            except Exception:
                log.exception("spamd: request failed")
                reply = answer(EX_SOFTWARE, "internal error")
            writer.write(reply)
            try:
                await asyncio.wait_for(writer.drain(), self.reply_timeout)
            except asyncio.TimeoutError:
                log.warning("spamd: client=%s took no answer in %g s; its connection is closed",
                            client, self.reply_timeout)
                writer.transport.abort()  # (close() would wait on the unsent answer)
                return
            _log(client, request, reply, time.monotonic() - started)
        except (ConnectionError, OSError):
            pass  # the client went away: nothing to answer
        finally:
            writer.close()


def _log(client: str, request: Request | None, reply: bytes, seconds: float) -> None:
    status = reply.split(b"\r\n", 1)[0].decode("latin-1")
    spam = next((line[6:].decode("latin-1") for line in reply.split(b"\r\n")[1:8]
                 if line.startswith(b"Spam: ")), "-")
    if request is None:
        log.info("spamd: client=%s reply=%r time=%.3fs", client, status, seconds)
        return
    log.info("spamd: client=%s method=%s user=%s size=%d spam=%r reply=%r time=%.3fs", client,
             request.method, printable(request.header("user")) or "-", len(request.body), spam,
             status, seconds)


# after a failed accept (out of file descriptors, say), seconds before trying again
ACCEPT_PAUSE = 1.0


class _Acceptor:
    """Accepts connections on the listening sockets while fewer than `slots` are open.

    The loop is asked to watch the sockets only while a slot is free, and a call accepts
    one connection: a process never takes more than it can serve (asyncio's own server
    accepts all that wait, a hundred at a time), and a connection another process
    sharing the socket took first is simply not there (BlockingIOError)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, listening: list[socket.socket], slots: int,
                 start: Callable[[socket.socket], None]) -> None:
        self.loop = loop
        self.listening = listening
        self.free = slots
        self.start = start
        self.watching = False
        self.paused = False
        self.stopped = False
        for listener in listening:
            listener.setblocking(False)
        self._update()

    def _update(self) -> None:
        """Watch the sockets when a slot is free (and not paused or stopped), else not."""
        on = self.free > 0 and not self.paused and not self.stopped
        if on == self.watching:
            return
        for listener in self.listening:
            if on:
                self.loop.add_reader(listener.fileno(), self._accept_one, listener)
            else:
                self.loop.remove_reader(listener.fileno())
        self.watching = on

    def _accept_one(self, listener: socket.socket) -> None:
        try:
            connection, _ = listener.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return  # another process took it, or the client gave up waiting
        except OSError as error:
            log.warning("spamd: cannot accept a connection (%s); trying again in %g s",
                        error.strerror or error, ACCEPT_PAUSE)
            self.paused = True
            self._update()
            self.loop.call_later(ACCEPT_PAUSE, self._resume)
            return
        connection.setblocking(False)
        self.free -= 1
        self._update()
        self.start(connection)

    def _resume(self) -> None:
        self.paused = False
        self._update()

    def release(self) -> None:
        """A connection has closed: its slot is free again."""
        self.free += 1
        self._update()

    def stop(self) -> None:
        """Take no more connections."""
        self.stopped = True
        self._update()
