"""Session limits checked at connect, before any greeting: total sessions, sessions per
client address (hosts_allow's instances), and the load average (loadcheck). Clients over
a limit hear 421 and may retry later; sessions already open are not disturbed.

loadcheck defers only mail from the outside, as on SME: LocalNetworks are let in at
connect, and each transaction is checked again at MAIL (FilterHandler), where the client
the MTA in front names with XFORWARD is known.

The per-client limit spares LocalNetworks: behind Postfix every session comes from the
MTA on 127.0.0.1, and limiting it would throttle all mail.

Within a session, each command may be sent a number of times between two delivered
messages (as Postfix's smtpd_junk_command_limit, which a delivery resets): a client
looping NOOP or RSET hears 421, while an MTA that keeps one connection open for many
messages is never cut off. aiosmtpd's own command_call_limit counts for the whole
session, so it cut off Postfix's cached connection at the 101st message."""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import os
import re
import ssl
import time
from asyncio import sslproto
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from email._header_value_parser import AddrSpec, AngleAddr, get_addr_spec, get_angle_addr
from email.errors import HeaderParseError
from typing import TYPE_CHECKING, Any, AnyStr

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import MISSING, SMTP, TLSSetupException, syntax

from smtpfilter import parameters, tls
from smtpfilter.data import read_data
from smtpfilter.enhanced import with_enhanced_code
from smtpfilter.networks import Networks

if TYPE_CHECKING:
    from smtpfilter.metrics import Metrics

log = logging.getLogger("spamkit.smtpfilter")
_CONTROL = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")  # (a surrogate: a byte that was not UTF-8)


BUSY_AT_CONNECT = "421 4.3.2 System busy, try again later"
BUSY_AT_MAIL = "451 4.3.2 System busy, try again later"
SHUTTING_DOWN = "421 4.3.2 Service shutting down, try again later"
TOO_MANY = "421 4.7.0 Too many connections, try again later"
TOO_MANY_FROM_CLIENT = "421 4.7.0 Too many connections from your address, try again later"
EARLY_TALKER = "554 5.7.1 You talked before the greeting"
TOO_LARGE = "552 5.3.4 Message size exceeds fixed maximum message size"  # (as Postfix says it)
NULL_RECIPIENT = "501 5.1.3 Bad recipient address syntax"  # (as Postfix says it)
# what the parameters of the extensions we offer may add to a command line (RFC 1869),
# beyond what aiosmtpd adds for SIZE (26) and SMTPUTF8 (10): DSN's RET and ENVID 100 and
# its NOTIFY and ORCPT 500 (RFC 3461 4), AUTH= 500 (RFC 4954 5), BODY=8BITMIME's 14
# characters (RFC 6152 names none). Over aiosmtpd's 512 a DSN request for a long address
# heard "500 Command line too long", and its message bounced.
EXTENSION_ALLOWANCES = {"MAIL": 100 + 500 + 14, "RCPT": 500}
TLS_CLOSE_GRACE = 2.0  # seconds a timed-out TLS session's client has to answer our close_notify
# what the log and the metrics name as the refuser of a connection turned away
TURNED_AWAY_BY = {BUSY_AT_CONNECT: "loadcheck", SHUTTING_DOWN: "shutdown", TOO_MANY: "max_sessions",
                  TOO_MANY_FROM_CLIENT: "max_sessions_per_client", EARLY_TALKER: "earlytalker"}


def one_minute_load() -> float:
    return os.getloadavg()[0]


@dataclass
class SessionLimits:
    max_sessions: int = 100
    max_per_client: int = 10
    max_load: float = 0.0  # 0: no load check
    early_talker_delay: float = 0.0  # seconds to wait before the greeting; 0: no check
    exempt: tuple[str, ...] = ()  # ours (LocalNetworks), spared the per-client limit, earlytalker, loadcheck
    commands_per_message: int = 100  # times one command may come between two deliveries
    recipients_per_message: int = 1000  # RCPT's own budget (Postfix's smtpd_recipient_limit)
    load_average: Callable[[], float] = one_minute_load
    active: Counter[str] = field(default_factory=Counter)
    sessions: set[LimitedSMTP] = field(default_factory=set)
    closing: bool = False

    def admit(self, client: str) -> str | None:
        """None to let the client in, else the 421 reply that turns it away."""
        if self.closing:
            return SHUTTING_DOWN
        if not self.exempts(client) and self.overloaded():
            return BUSY_AT_CONNECT
        if sum(self.active.values()) >= self.max_sessions:
            return TOO_MANY
        if self.active[client] >= self.max_per_client and not self.exempts(client):
            return TOO_MANY_FROM_CLIENT
        self.active[client] += 1
        return None

    def __post_init__(self) -> None:
        self._exempt_networks = Networks(self.exempt)

    def exempts(self, client: str) -> bool:
        """Whether `client` is one of ours (LocalNetworks): no per-client limit, no
        earlytalker, no loadcheck."""
        return client in self._exempt_networks

    def overloaded(self) -> bool:
        """loadcheck: MaxLoad is set and the one-minute load average is above it."""
        return bool(self.max_load) and self.load_average() > self.max_load

    def release(self, client: str) -> None:
        self.active[client] -= 1
        if self.active[client] <= 0:
            del self.active[client]


class LimitedSMTP(SMTP):
    """aiosmtpd's SMTP with the limits applied when a connection is made.

    With `implicit_tls` (the port `--listen-tls` opens), the session is TLS from the first
    byte: the connection is admitted under the limits first, as a plain one, so that
    clients stuck in a handshake count against MaxSessions and MaxSessionsPerClient
    instead of piling up unseen, and the SMTP session starts once the handshake is over
    (`handshake_timeout` seconds at most)."""

    def __init__(self, handler: object, limits: SessionLimits, implicit_tls: ssl.SSLContext | None = None,
                 handshake_timeout: float = 60.0, submission: bool = False, **kwargs: object) -> None:
        super().__init__(handler, **kwargs)  # type: ignore[arg-type]
        # each session's own command lengths: aiosmtpd keeps one dictionary on the class,
        # which every new connection cleared for every session, and which each EHLO added to
        self.command_size_limits: defaultdict[str, int] = defaultdict(lambda: self.command_size_limit)
        self._limits = limits
        self.submission = submission  # a session of the submission port: no MAIL before a login
        self._implicit_tls = implicit_tls
        self._handshake_timeout = handshake_timeout
        self._tls_layer: tuple[asyncio.BaseTransport, sslproto.SSLProtocol] | None = None
        self._client: str | None = None
        self._calls: Counter[str] = Counter()  # commands since the last delivered message
        self._last_reply = ""
        self._answering: str | None = None  # the command being answered (smtpfilter/enhanced.py)
        self._timed_out = False  # SmtpTimeout ended the session
        self._receiving = False  # DATA under way: the message's own bytes keep the session
        self.working = False  # the handler is working on a message: the client waits for us
        self._smtp_methods = {name: self._budgeted(name, method)
                              for name, method in self._smtp_methods.items()}

    @property
    def metrics(self) -> Metrics | None:
        """The handler's metrics, where refusals and TLS handshakes are counted (None for
        a handler without them)."""
        return getattr(self.event_handler, "metrics", None)

    @property
    def takes_logins(self) -> bool:
        """Whether the handler takes SMTP AUTH (SmtpAuthentication): AUTH is answered and
        HELP lists it only then."""
        return getattr(self.event_handler, "auth", None) is not None

    @property
    def limits(self) -> SessionLimits:
        """The limits this session was admitted under (the handler's MAIL asks loadcheck)."""
        return self._limits

    def _budgeted(self, command: str, method: Callable[[str], Awaitable[None]]
                  ) -> Callable[[str], Awaitable[None]]:
        """The command's handler, refused with 421 once the command has used up its budget
        since the last delivered message; a delivered message starts every budget afresh."""
        budget = (self._limits.recipients_per_message if command == "RCPT"
                  else self._limits.commands_per_message)

        @functools.wraps(method)  # HELP reads the syntax aiosmtpd stores on the method
        async def call(arg: str) -> None:
            if self._calls[command] >= budget:
                log.warning("client=%s sent %s %d times without a message: closing",
                            self._client, command, budget)
                await self.push(f"421 4.7.0 {command} sent too many times")
                if self.transport is not None:
                    self.transport.close()
                return
            self._calls[command] += 1
            self._answering = command
            try:
                await method(arg)
            finally:
                self._answering = None

        return call

    @syntax("EHLO hostname")
    async def smtp_EHLO(self, hostname: str) -> None:
        """aiosmtpd's EHLO, with the command lengths of every extension offered
        (EXTENSION_ALLOWANCES), counted from 512 at each EHLO."""
        self.command_size_limits.clear()
        await super().smtp_EHLO(hostname)  # (SIZE and SMTPUTF8 added there)
        for command, allowance in EXTENSION_ALLOWANCES.items():
            self.command_size_limits[command] += allowance

    @syntax("DATA")  # (what HELP shows, as on aiosmtpd's own)
    async def smtp_DATA(self, arg: str) -> None:
        """aiosmtpd's DATA, reading lines of any length as Postfix does (smtpfilter/data.py:
        aiosmtpd's own refused a line over 1,001 bytes with a permanent 500), with the
        message's own bytes keeping the session alive while they come (data_received);
        a delivered message starts every budget afresh."""
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        self._receiving = True
        try:
            content = await read_data(self._reader, self.data_size_limit)
        except asyncio.CancelledError:  # (eof_received cancels the session's coroutine)
            log.info("client=%s: connection lost during DATA", self._client)
            self._writer.close()
            raise
        except asyncio.IncompleteReadError:
            log.info("client=%s: connection closed during DATA", self._client)
            self._writer.close()
            return
        finally:
            self._receiving = False
        if content is None:
            self._set_post_data_state()  # type: ignore[no-untyped-call]
            await self.push(TOO_LARGE)
            return
        self.envelope.content = self.envelope.original_content = content
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()  # type: ignore[no-untyped-call]
        await self.push("250 OK" if status is MISSING else status)
        if self._last_reply.startswith("250"):
            self._calls.clear()

    def data_received(self, data: bytes) -> None:
        """aiosmtpd times the whole of DATA from the command on, so a message that takes
        longer than the timeout to arrive (15 MB over a slow link) was cut off however
        steadily it came. Now, as Postfix's smtpd_timeout, the timeout is the longest wait
        for the client's next bytes."""
        super().data_received(data)
        if self._receiving:
            self._reset_timeout()

    def _timeout_cb(self) -> None:
        """A client that went quiet hears 421 4.4.2 before the session closes (RFC 5321
        4.5.3.2); a client waiting while the handler works on its message is not quiet."""
        if self.working:
            self._reset_timeout()
            return
        self._timed_out = True
        if self.transport is not None:
            self.transport.write(b"421 4.4.2 Timeout exceeded, closing the session\r\n")  # type: ignore[attr-defined]
        if self._original_transport is not None:
            # under TLS, closing waits for the client's close_notify, asyncio's 30 s at
            # most, and the session keeps its place under the limits meanwhile
            self.loop.call_later(TLS_CLOSE_GRACE, self._original_transport.abort)  # type: ignore[attr-defined]
        super()._timeout_cb()  # type: ignore[no-untyped-call]

    async def push(self, status: AnyStr) -> None:
        """aiosmtpd's push, each reply with its enhanced status code (smtpfilter/enhanced.py)."""
        if isinstance(status, str):
            self._last_reply = with_enhanced_code(status, self._answering)
            await super().push(self._last_reply)
            return
        self._last_reply = status.decode("utf-8", "replace")
        await super().push(status)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._tls_layer is not None and self.transport is None:
            self._start_over_tls(transport)  # (implicit TLS: the handshake is over)
            return
        if self._original_transport is not None:
            # the TLS layer after STARTTLS: the same, already admitted connection (aiosmtpd
            # starts a fresh session and drops what the client pipelined in plaintext), so
            # the connect stage runs again for the new session
            super().connection_made(transport)
            refusal = self._connect_stage()
            if refusal is not None:
                transport.write(f"{refusal}\r\n".encode())  # type: ignore[attr-defined]
                transport.close()
            return
        peer = transport.get_extra_info("peername")
        client = str(peer[0]) if isinstance(peer, tuple) and peer else "?"
        refusal = self._limits.admit(client)
        if refusal is not None:
            self._turned_away(client, refusal)
            if self._implicit_tls is None:  # (a client expecting TLS could not read it)
                transport.write(f"{refusal}\r\n".encode())  # type: ignore[attr-defined]
            transport.close()
            return
        self._client = client
        self._limits.sessions.add(self)
        if self._implicit_tls is not None:
            self._handshake(transport, self._implicit_tls)
            return
        super().connection_made(transport)

    def _handshake(self, transport: asyncio.BaseTransport, context: ssl.SSLContext) -> None:
        """Implicit TLS: put the TLS layer between the connection and this session, as
        aiosmtpd does at STARTTLS; it calls connection_made again once the handshake is
        over, and `_handshake_over` in any case."""
        done = self.loop.create_future()
        layer = sslproto.SSLProtocol(self.loop, self, context, done, server_side=True,
                                     ssl_handshake_timeout=math.ceil(self._handshake_timeout))
        self._tls_layer = (transport, layer)
        transport.set_protocol(layer)
        layer.connection_made(transport)
        done.add_done_callback(self._handshake_over)

    def _start_over_tls(self, transport: asyncio.BaseTransport) -> None:
        """The session proper, over the TLS layer: aiosmtpd's as on a plain connection,
        then marked as encrypted as after STARTTLS, so that EHLO offers no STARTTLS but
        AUTH, the Received header says ESMTPS, and Dovecot hears `secured`."""
        assert self._tls_layer is not None
        raw, layer = self._tls_layer
        super().connection_made(transport)
        self._original_transport = raw  # (aiosmtpd closes it with the session)
        self._tls_protocol = layer
        assert self.session is not None
        self.session.ssl = layer._extra  # (as aiosmtpd's STARTTLS)

    def _handshake_over(self, done: asyncio.Future[None]) -> None:
        """Implicit TLS: counted either way; a handshake that failed (or a client that
        hung up first, which the TLS layer does not tell connection_lost) releases the
        session's place under the limits."""
        if self.transport is not None:
            tls.counted(self.metrics, tls.IMPLICIT, "ok")
            return
        error = done.exception() if not done.cancelled() else asyncio.CancelledError()
        tls.handshake_failed(self._client or "?", tls.IMPLICIT, error, self.metrics)
        self._tls_layer = None
        self._release()

    @syntax("STARTTLS", when="tls_context")
    async def smtp_STARTTLS(self, arg: str) -> None:
        """aiosmtpd's STARTTLS, refused once TLS is on, and its outcome logged and
        counted in one line instead of aiosmtpd's traceback."""
        if self._tls_protocol is not None:
            await self.push(tls.ALREADY_ACTIVE)
            return
        try:
            await super().smtp_STARTTLS(arg)
        except TLSSetupException as error:
            self._starttls_failed(error)
            return
        if self._tls_protocol is None:
            return  # (refused: no certificate, or an argument)
        if self.session is None or self.session.ssl is None:
            # the handshake never came (the client went quiet until SmtpTimeout, or hung
            # up): the TLS layer ends STARTTLS without an error and tells no one that the
            # connection is gone, so the session's place under the limits was never
            # given back
            self._starttls_failed(TimeoutError() if self._timed_out else None)
            return
        tls.counted(self.metrics, tls.STARTTLS, "ok")

    def _starttls_failed(self, error: Exception | None) -> None:
        """A STARTTLS handshake that did not finish: logged and counted, and the session
        over, as aiosmtpd ends it, less its traceback."""
        tls.handshake_failed(self._client or "?", tls.STARTTLS, error, self.metrics)
        if self.transport is not None:
            self.transport.close()
        self.connection_lost(error)

    def _turned_away(self, client: str, refusal: str) -> None:
        """Log and count a connection refused by a limit, as the handler does its filters'
        refusals: a machine deferring mail for its load shows it in the metrics."""
        by = TURNED_AWAY_BY.get(refusal, "limits")
        log.info("client=%s stage=connect reply=%r by=%s", client, refusal[:3], by)
        if self.metrics is not None:
            self.metrics.refused(by)

    async def _handle_client(self) -> None:
        """earlytalker (a client that talks before the greeting is a spam engine in a
        hurry; not asked of LocalNetworks, as on SME, so the MTA in front waits for no
        greeting), then the chain's connect stage, then aiosmtpd's session."""
        delay = self._limits.early_talker_delay
        if delay and not (self._client is not None and self._limits.exempts(self._client)):
            await asyncio.sleep(delay)
            if self._reader._buffer:  # type: ignore[attr-defined]
                self._turned_away(self._client or "?", EARLY_TALKER)
                await self.push(EARLY_TALKER)
                if self.transport is not None:
                    self.transport.close()
                return
        refusal = self._connect_stage()
        if refusal is not None:
            await self.push(refusal)
            if self.transport is not None:
                self.transport.close()
            return
        await super()._handle_client()

    @syntax("MAIL FROM: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_MAIL(self, arg: str | None) -> None:
        """aiosmtpd's MAIL, with the DSN parameters (RET, ENVID) kept on the envelope as
        the client wrote them, and AUTH checked and dropped (smtpfilter/parameters.py):
        aiosmtpd would answer them 555."""
        arg, taken, refusal = self._without_ours("MAIL", arg, parameters.MAIL_PARAMETERS)
        if refusal is not None:
            await self.push(refusal)
            return
        await super().smtp_MAIL(arg)
        requested = parameters.dsn_only(taken)
        if requested and self.envelope is not None and self.envelope.mail_from is not None:
            self.envelope.spamkit_dsn = parameters.DsnRequest(mail=requested)  # type: ignore[attr-defined]

    @syntax("RCPT TO: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_RCPT(self, arg: str | None) -> None:
        """aiosmtpd's RCPT, with NOTIFY and ORCPT kept for the recipient it adds, and the
        null path refused: "<>" names a sender that takes no bounce, never a recipient
        (RFC 5321 4.1.1.3), and aiosmtpd took it and the relay passed it on."""
        arg, taken, refusal = self._without_ours("RCPT", arg, parameters.RCPT_PARAMETERS)
        if refusal is None and self._names_null_path(arg):
            refusal = NULL_RECIPIENT
        if refusal is not None:
            await self.push(refusal)
            return
        envelope = self.envelope
        before = len(envelope.rcpt_tos) if envelope is not None else 0
        await super().smtp_RCPT(arg)
        if taken and envelope is not None and len(envelope.rcpt_tos) == before + 1:
            request = getattr(envelope, "spamkit_dsn", None)
            if request is None:
                request = envelope.spamkit_dsn = parameters.DsnRequest()  # type: ignore[attr-defined]
            request.recipients.extend([()] * (before - len(request.recipients)))
            request.recipients.append(taken)

    def _names_null_path(self, arg: str | None) -> bool:
        """Whether RCPT's argument is the null path "<>", once MAIL has been taken (before
        it, aiosmtpd's "need MAIL" comes first)."""
        if arg is None or "<>" not in arg or self.envelope is None or not self.envelope.mail_from:
            return False  # ("<>" first: no second parse of every recipient)
        path = self._strip_command_keyword("TO:", arg)
        return path is not None and self._getaddr(path)[0] == "<>"

    def _without_ours(self, command: str, arg: str | None, names: frozenset[str]
                      ) -> tuple[str | None, tuple[str, ...], str | None]:
        """The argument for aiosmtpd, the parameters `names` taken out, and a refusal of a
        malformed one; only after EHLO, as every parameter (aiosmtpd refuses it after HELO)."""
        if arg is None or self.session is None or not self.session.extended_smtp:
            return arg, (), None
        return parameters.take(command, arg, names, self._getaddr)

    def _syntax_available(self, method: Callable[..., Any]) -> bool:
        """Which commands HELP lists (aiosmtpd asks this for HELP only): as EHLO offers
        them, so no AUTH where no logins are taken and no STARTTLS once TLS is on."""
        name = getattr(method, "__name__", "")
        if name == "smtp_AUTH" and not self.takes_logins:
            return False
        if name == "smtp_STARTTLS" and self._tls_protocol is not None:
            return False
        return bool(super()._syntax_available(method))

    @syntax("AUTH <mechanism>")
    async def smtp_AUTH(self, arg: str) -> None:
        """aiosmtpd's AUTH, whose dialogue the handler runs (FilterHandler.handle_AUTH),
        when SmtpAuthentication is on. Otherwise no logins here: our own users submit to
        the MTA's submission port, which checks their passwords (aiosmtpd's own AUTH
        refused every login as invalid credentials)."""
        if self.takes_logins:
            mechanism, space, rest = (arg or "").lstrip().partition(" ")
            # (aiosmtpd knows "PLAIN" and not "plain"; Postfix and Exim take either)
            await super().smtp_AUTH(mechanism.upper() + space + rest)
            return
        await self.push("502 5.5.1 Authentication is not offered here; use the submission port")

    async def smtp_XFORWARD(self, arg: str) -> None:
        """Postfix's XFORWARD, answered by the handler (FilterHandler.xforward)."""
        xforward = getattr(self.event_handler, "xforward", None)
        if xforward is None or self.session is None or self.envelope is None:
            await self.push("502 5.5.1 XFORWARD not implemented")
            return
        await self.push(xforward(self.session, self.envelope, arg or ""))

    def _connect_stage(self) -> str | None:
        """The filter chain's connect stage, when the handler has one."""
        connect = getattr(self.event_handler, "connect", None)
        return connect(self.session) if connect is not None else None

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        """aiosmtpd's address parsing for MAIL and RCPT, minus the typing.Protocol class it
        defines on every call (3.5% of the filter's CPU under load). Same results, except
        that an address with a control character (NUL, TAB, DEL...), which RFC 5321 allows
        nowhere, is malformed (553) instead of being relayed to the next hop as it came;
        so is one with bytes that are not UTF-8, which no next hop can be sent (the
        relay's command could not be written, and the client heard 451 at every try)."""
        if not arg:
            return "", ""
        address: AngleAddr | AddrSpec
        try:
            if arg.lstrip().startswith("<"):
                address, rest = get_angle_addr(arg)
            else:
                address, rest = get_addr_spec(arg)
        except HeaderParseError:
            return None, None
        addr = address.addr_spec
        if self.local_part_limit and len(addr.rpartition("@")[0]) > self.local_part_limit:
            return None, None
        if _CONTROL.search(addr):
            return None, None
        return addr, rest

    def goodbye(self) -> None:
        """On shutdown: tell an idle client to come back later, and hang up."""
        if self.transport is not None:
            self.transport.write(f"{SHUTTING_DOWN}\r\n".encode())  # type: ignore[attr-defined]
            self.transport.close()

    def connection_lost(self, error: Exception | None) -> None:
        if self._client is None:
            return  # refused at connect, or its TLS handshake failed: nothing was started
        self._release()
        super().connection_lost(error)

    def _release(self) -> None:
        """Give this session's place under the limits back."""
        if self._client is not None:
            self._limits.release(self._client)
            self._limits.sessions.discard(self)
            self._client = None


def _listen_error(error: OSError, address: tuple[str, int], option: str) -> OSError:
    """A port beside the plain one that could not be opened: said with its option
    (asyncio's words name no option, or no address at all)."""
    reason = os.strerror(error.errno) if error.errno else str(error)
    return OSError(error.errno, f"cannot listen on {address[0]}:{address[1]} ({option}): {reason}")


class LimitedController(Controller):
    """aiosmtpd's Controller for LimitedSMTP sessions, with more listeners beside the
    plain port: an implicit-TLS one when `tls_listen` is given (--listen-tls; a
    submission port too with `tls_login_required`) and a submission one when
    `submission_listen` is (--listen-submission, where a client must log in before MAIL).
    Their sessions share the limits and the handler; STARTTLS's context, `tls_context`,
    is theirs too."""

    def __init__(self, handler: object, limits: SessionLimits,
                 before_serving: Callable[[], None] | None = None,
                 tls_listen: tuple[str, int] | None = None,
                 submission_listen: tuple[str, int] | None = None,
                 tls_login_required: bool = False, **kwargs: object) -> None:
        self.limits = limits
        self.tls_login_required = tls_login_required  # --listen-tls as a submission port too
        # run on the loop's thread once the ports are bound and before any session is taken
        # (`serve --user` gives up root here: no client is ever greeted as root)
        self.before_serving = before_serving
        self.tls_listen = tls_listen
        # (address, the option that asked for it, its sessions' factory)
        self.extra_listens: list[tuple[tuple[str, int], str, Callable[[], SMTP]]] = []
        if tls_listen is not None:
            self.extra_listens.append((tls_listen, "--listen-tls", self._implicit_tls_factory))
        if submission_listen is not None:
            self.extra_listens.append((submission_listen, "--listen-submission", self._submission_factory))
        self.extra_servers: list[asyncio.AbstractServer] = []
        super().__init__(handler, **kwargs)  # type: ignore[arg-type]
        if tls_listen is not None and self.SMTP_kwargs.get("tls_context") is None:
            raise ValueError("an implicit-TLS listener needs a TLS context")

    async def _create_server(self) -> asyncio.AbstractServer:
        server = await self.loop.create_server(self._factory_invoker, host=self.hostname, port=self.port,
                                               ssl=self.ssl_context, start_serving=False)
        try:
            for address, option, factory in self.extra_listens:
                try:
                    self.extra_servers.append(await self.loop.create_server(
                        factory, host=address[0], port=address[1], start_serving=False))
                except OSError as error:
                    raise _listen_error(error, address, option) from None
            if self.before_serving is not None:
                self.before_serving()
            for extra, (address, option, _) in zip(self.extra_servers, self.extra_listens):
                try:  # (listen(2): where --listen's port on 0.0.0.0 and the same on 127.0.0.1 collide)
                    await extra.start_serving()
                except OSError as error:
                    raise _listen_error(error, address, option) from None
        except BaseException:
            server.close()  # never serve as what we failed to stop being, nor half-listening
            for extra in self.extra_servers:
                extra.close()
            raise
        await server.start_serving()
        return server

    def use_tls_context(self, context: ssl.SSLContext) -> None:
        """A renewed certificate for the sessions that start from now on (on the loop's
        thread, where the factories read it); those under way keep the one they have."""
        self.loop.call_soon_threadsafe(self.SMTP_kwargs.__setitem__, "tls_context", context)

    def _implicit_tls_factory(self) -> SMTP:
        """A session of the --listen-tls port: TLS from the first byte, the handshake
        given as long as a client may take for its next command (SmtpTimeout)."""
        return LimitedSMTP(self.handler, self.limits, implicit_tls=self.SMTP_kwargs["tls_context"],
                           handshake_timeout=float(self.SMTP_kwargs.get("timeout") or 60.0),
                           submission=self.tls_login_required, **self.SMTP_kwargs)

    def _submission_factory(self) -> SMTP:
        """A session of the --listen-submission port (RFC 6409): as the plain port's, but
        MAIL needs a login first (FilterHandler.handle_MAIL answers 530)."""
        return LimitedSMTP(self.handler, self.limits, submission=True, **self.SMTP_kwargs)

    def factory(self) -> SMTP:
        return LimitedSMTP(self.handler, self.limits, **self.SMTP_kwargs)

    def shutdown(self, busy: Callable[[], bool], wait: float = 30.0) -> None:
        """Stop taking sessions, let messages being relayed finish (up to `wait` seconds),
        answer the idle sessions 421, then stop."""
        self.limits.closing = True
        for extra in self.extra_servers:
            self.loop.call_soon_threadsafe(extra.close)
        deadline = time.monotonic() + wait
        while busy() and time.monotonic() < deadline:
            time.sleep(0.05)
        for session in list(self.limits.sessions):
            self.loop.call_soon_threadsafe(session.goodbye)
        time.sleep(0.2)
        self.stop()
