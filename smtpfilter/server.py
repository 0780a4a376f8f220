"""The aiosmtpd handler: envelope through the filter chain, data scored, then relayed.

Every hook catches everything: a bug in a filter or the engine answers 451 4.3.0 (the
sender keeps the message and retries) and the server goes on serving.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import math
import re
import time
from typing import TYPE_CHECKING

from smtpfilter.archive import ArchiveCopy
from smtpfilter.auth import AUTH_UNAVAILABLE, SmtpAuth, configured_auth
from smtpfilter.chain import WOULD_REFUSE, WOULD_REFUSE_BY, FilterChain
from smtpfilter.filter import CONTINUE, COUNTRY_NOTE, Action, Decision, Transaction
from smtpfilter.limits import BUSY_AT_MAIL, SessionLimits
from smtpfilter.logtext import printable
from smtpfilter.metrics import Metrics
from smtpfilter.networks import Networks
from smtpfilter.parameters import unxtext
from smtpfilter.relay import RelayPool
from smtpfilter.trace import Trace, new_id, trace_resolver

if TYPE_CHECKING:
    from spamkit.config import Config

log = logging.getLogger("spamkit.smtpfilter")
TEMPFAIL = "451 4.3.0 Temporary failure, please try again later"
OVER_BUDGET = "451 4.3.2 Checking the message took too long, please try again later"
# MAIL before a login on the submission port (--listen-submission)
LOGIN_FIRST = "530 5.7.0 Authentication required: this port takes mail from users who log in"
# RFC 5321 4.5.3.1.10: the sender sends the recipients past this in another transaction
NEXT_HOP_FULL = "452 4.5.3 Too many recipients for the next hop, send the others apart"
DEFAULT_SCAN_BUDGET = 30.0  # seconds; Postfix's smtpd_proxy_timeout is 100
# the DATA checks' deadline (Transaction.deadline), as a share of ScanBudget: what the
# score's rules have not started by then is skipped, and the verdict comes before the 451
DEADLINE_SHARE = 0.9
XFORWARD_ATTRIBUTES = frozenset({"NAME", "ADDR", "PORT", "PROTO", "HELO", "IDENT", "SOURCE"})
_BARE_LF = re.compile(rb"(?<!\r)\n")
_BARE_CR = re.compile(rb"\r(?!\n)")


def normalize_line_endings(data: bytes) -> bytes:
    """Bare LF and bare CR become CRLF, so what is scored is exactly what is relayed."""
    crlf = data.count(b"\r\n")
    if data.count(b"\n") == crlf and data.count(b"\r") == crlf:
        return data  # the usual case, found by three C counts instead of two regex passes
    return _BARE_LF.sub(b"\r\n", _BARE_CR.sub(b"\r\n", data))


class StageRunner:
    """What the SMTP handler and the milter (smtpfilter/milter.py) share: the chain run at
    each stage, on a worker thread when a filter of that stage may wait; refusals told to
    the filters, logged and counted; and the one log line a finished transaction gets,
    which `spamkit mailstats` reads."""

    def __init__(self, chain: FilterChain, metrics: Metrics | None = None,
                 scan_budget: float = DEFAULT_SCAN_BUDGET) -> None:
        self.chain = chain
        self.metrics = metrics
        # the DATA stage's filters must decide within this, or the client gets 451 before
        # the MTA in front gives up on us (reliability checklist 13)
        self.scan_budget = scan_budget
        self.in_flight = 0  # messages between the end of DATA and the reply

    def configure(self, config: Config, chain: FilterChain) -> None:
        """A new chain, and the settings read of `config` that a reload puts in force
        (SIGHUP, or the token database back), from the next stage of every session on."""
        self.chain = chain
        self.scan_budget = config["ScanBudget"]

    async def _stage(self, session, stage: str, tx: Transaction, *args: str) -> str | None:  # type: ignore[no-untyped-def]
        """`_refusal`, on a worker thread when a filter of this stage may wait (on DNS or
        the karma database), so that every other session goes on meanwhile. The others
        run here: three thread hand-offs a message cost the load benchmark ~10% of its
        throughput (docs/decisions/0016)."""
        if not self.chain.may_block(stage):
            return self._refusal(session, stage, tx, *args)
        return await asyncio.get_running_loop().run_in_executor(
            None, self._refusal, session, stage, tx, *args)

    def _refusal(self, session, stage: str, tx: Transaction, *args: str) -> str | None:  # type: ignore[no-untyped-def]
        """Run one envelope stage; a refusal (told to the filters' `finished`, logged and
        counted: most refusals happen here, before any DATA) or None."""
        decision = self._run(session, stage, tx, *args)
        if decision.action in (Action.REJECT, Action.TEMPFAIL):
            self._refused(tx, stage, decision, *args)
            return decision.reply
        return None

    def _refused(self, tx: Transaction, stage: str, decision: Decision, *args: str,
                 tell_filters: bool = True) -> None:
        """A refusal before DATA: told to the filters' `finished` (unless not
        `tell_filters`), logged and counted."""
        if tell_filters:
            self.chain.finished(tx, decision.reply)
        log.info("client=%s helo=%s from=<%s> rcpt=%s stage=%s reply=%r by=%s%s%s", tx.peer,
                 printable(tx.helo or "-"), _sender(tx.mail_from),
                 printable(args[0]) if args else "-", stage, decision.reply[:3],
                 decision.filter or "-",
                 f" user={printable(tx.authenticated, 100)}" if tx.authenticated else "",
                 _country_field(tx))
        if self.metrics is not None:
            self.metrics.refused(decision.filter)

    def _run(self, session, stage: str, tx: Transaction, *args: str) -> Decision:  # type: ignore[no-untyped-def]
        """The chain for one stage, unless a filter already accepted this session's mail
        (whitelisthosts, whitelisthelo): then the rest is skipped."""
        if getattr(session, "spamkit_accepted", False):
            return CONTINUE
        decision = self.chain.run(stage, tx, *args)
        if decision.action is Action.ACCEPT:
            session.spamkit_accepted = True
            tx.notes["accepted_by"] = decision.filter
        return decision

    def _data_stage(self, session, tx: Transaction) -> Decision:  # type: ignore[no-untyped-def]
        """The DATA stage (on a worker thread), with the refusals the chain kept back after
        the queue (SmtpAfterQueue) written into the message that goes on."""
        decision = self._run(session, "data", tx)
        kept_back = tx.notes.get(WOULD_REFUSE)
        if isinstance(kept_back, list) and kept_back and decision.action is not Action.REJECT:
            tx.data = b"".join(map(_would_refuse_header, kept_back)) + tx.data
        return decision

    def _finished(self, tx: Transaction, reply: str, deciding: str, started: float, queue_id: str,
                  tls: bool) -> None:
        """A transaction's end, after the reply to its data: told to the filters (karma
        learns from it), logged in one line, and counted."""
        try:
            self.chain.finished(tx, reply)
        except Exception:
            log.exception("recording the outcome failed")  # the reply stands
        elapsed = time.monotonic() - started
        log.info("client=%s helo=%s tls=%s from=<%s> rcpts=%s reply=%r score=%s by=%s time=%.3fs id=%s%s%s%s",
                 tx.peer, printable(tx.helo), "yes" if tls else "no",
                 _sender(tx.mail_from), printable(",".join(tx.rcpt_tos), 2000), reply[:3],
                 tx.notes.get("score", "-"), deciding, elapsed, queue_id,
                 f" user={printable(tx.authenticated, 100)}" if tx.authenticated else "",
                 f" disclaimer={tx.notes['disclaimer']}" if "disclaimer" in tx.notes else "",
                 _country_field(tx))
        if self.metrics is not None:
            outcome = {"2": "relayed", "4": "tempfailed", "5": "rejected"}.get(reply[:1], "other")
            self.metrics.observe(outcome, deciding, elapsed)
            refusers = tx.notes.get(WOULD_REFUSE_BY)  # (after the queue: what went on marked)
            if outcome == "relayed" and isinstance(refusers, list):
                for name in refusers:
                    self.metrics.would_refuse(name)


class FilterHandler(StageRunner):
    def __init__(self, chain: FilterChain, next_hop: tuple[str, int], bcc: str | ArchiveCopy = "",
                 metrics: Metrics | None = None, forwarders: tuple[str, ...] = (),
                 scan_budget: float = DEFAULT_SCAN_BUDGET, verify_recipients: bool = True,
                 trace: Trace | None = None, auth: SmtpAuth | None = None) -> None:
        super().__init__(chain, metrics, scan_budget)
        # SMTP AUTH (SmtpAuthentication), or None: then AUTH is neither offered nor taken
        self.auth = auth
        # our Received header, put on each message before the DATA checks (smtpfilter/trace.py)
        self.trace = trace
        # each recipient our filters pass is put to the next hop at RCPT (RelayPool.verify),
        # so that one it refuses is refused alone, not with the whole message after DATA
        self.verify_recipients = verify_recipients
        # MTAs whose XFORWARD we believe: behind Postfix, every session comes from it, and
        # the client the checks are about is the one it says (RelayClients)
        self.forwarders = Networks(forwarders)
        self.next_hop = next_hop
        self.relay = RelayPool(*next_hop)
        # the archive copy (BccAddress, BccMode, BccDirection); a plain address: of every message
        self.bcc = bcc if isinstance(bcc, ArchiveCopy) else ArchiveCopy(bcc)

    def configure(self, config: Config, chain: FilterChain) -> None:
        """The base's, and what the SMTP server does itself that the milter leaves to
        the MTA: the archive copy, asking the next hop at RCPT, logins, our Received
        header's resolver (DnsServers, DnsTimeout)."""
        super().configure(config, chain)
        self.bcc = ArchiveCopy.configured(config)
        self.verify_recipients = config["SmtpVerifyRecipients"]
        self.auth = configured_auth(config, self.metrics, self.auth.failures if self.auth is not None else None)
        if self.trace is not None:
            self.trace = Trace(trace_resolver(config), self.trace.hostname)

    def connect(self, session) -> str | None:  # type: ignore[no-untyped-def]
        """The chain's connect stage: a refusal to send instead of the greeting, or None.
        (Called by LimitedSMTP; aiosmtpd has no connect hook.)"""
        try:
            return self._refusal(session, "connect", Transaction(peer=_peer(session)))
        except Exception:
            log.exception("connect failed")
            return "421 4.3.0 Temporary failure, please try again later"

    async def handle_HELO(self, server, session, envelope, hostname):  # type: ignore[no-untyped-def]
        refusal = await self._helo(session, hostname)
        if refusal is not None:
            return refusal
        session.host_name = hostname
        return f"250 {server.hostname}"

    async def handle_EHLO(self, server, session, envelope, hostname, responses):  # type: ignore[no-untyped-def]
        refusal = await self._helo(session, hostname)
        if refusal is not None:
            return [refusal]
        session.host_name = hostname
        if self.auth is None:
            # aiosmtpd offers AUTH under TLS with a check that refuses everyone (535
            # "credentials invalid"): mail programs took that for a wrong password
            responses = [line for line in responses if not line.upper().startswith("250-AUTH")]
        # commands sent together (RFC 2920), as Postfix, qmail and qpsmtpd offer: aiosmtpd
        # reads each from the stream in turn, and a client far away saves a round trip for
        # MAIL and one for each RCPT
        responses.insert(len(responses) - 1, "250-PIPELINING")
        responses.insert(len(responses) - 1, "250-ENHANCEDSTATUSCODES")  # (LimitedSMTP.push gives them)
        responses.insert(len(responses) - 1, "250-DSN")  # (LimitedSMTP keeps them: smtpfilter/parameters.py)
        if self.trusts_forwarding(session):
            responses.insert(len(responses) - 1, "250-XFORWARD NAME ADDR PROTO HELO SOURCE")
        return responses

    async def handle_AUTH(self, server, session, envelope, args):  # type: ignore[no-untyped-def]
        """AUTH, after aiosmtpd's own checks (EHLO first, TLS first when TlsBeforeAuth asks
        for it, a mechanism it knows, not logged in yet): smtpfilter/auth.py."""
        if self.auth is None:  # (LimitedSMTP never asks then)
            return "502 5.5.1 Authentication is not offered here"
        try:
            return await self.auth.dialogue(server, session, envelope, args, _peer(session))
        except Exception:
            log.exception("AUTH failed")
            return AUTH_UNAVAILABLE

    def trusts_forwarding(self, session) -> bool:  # type: ignore[no-untyped-def]
        return _peer(session) in self.forwarders

    def xforward(self, session, envelope, arg: str) -> str:  # type: ignore[no-untyped-def]
        """Postfix's XFORWARD (XFORWARD_README): the MTA in front names the client it is
        passing on, for this transaction; the envelope, which aiosmtpd makes anew after
        each message and at RSET, keeps it. Only RelayClients may say it."""
        if not self.trusts_forwarding(session):
            return "550 5.7.0 Error: insufficient authorization"
        given = {}
        for item in arg.split():
            name, equals, value = item.partition("=")
            if not equals or name.upper() not in XFORWARD_ATTRIBUTES:
                return f"501 5.5.4 Bad XFORWARD attribute: {item[:40]}"
            if value.upper() not in ("[UNAVAILABLE]", "[TEMPUNAVAIL]"):
                given[name.upper()] = unxtext(value)  # (Postfix sends each value in xtext)
        if not given and not arg.strip():
            return "501 5.5.4 Syntax: XFORWARD attribute=value..."
        if "ADDR" in given:
            address = given["ADDR"].removeprefix("IPV6:").removeprefix("ipv6:")
            try:
                given["ADDR"] = str(ipaddress.ip_address(address))
            except ValueError:
                return f"501 5.5.4 Bad XFORWARD address: {address[:60]}"
        forwarded = getattr(envelope, "spamkit_xforward", {})
        envelope.spamkit_xforward = forwarded | given
        return "250 2.0.0 Ok"

    async def _helo(self, session, hostname: str) -> str | None:  # type: ignore[no-untyped-def]
        try:
            return await self._stage(session, "helo", Transaction(peer=_peer(session), helo=hostname))
        except Exception:
            log.exception("HELO failed")
            return TEMPFAIL

    async def handle_MAIL(self, server, session, envelope, address, mail_options):  # type: ignore[no-untyped-def]
        try:
            tx = Transaction(peer=_client(session, envelope), helo=_helo_name(session, envelope),
                             mail_from=address, notes=_notes(envelope), authenticated=_user(session))
            if getattr(server, "submission", False) and not tx.authenticated:
                # the submission port (RFC 6409 4.3): our users' mail, after a login. Not
                # told to the filters: a mail program set up without its login is no
                # sign of spam, and karma would hold it against the whole office's address
                self._refused(tx, "mail", Decision(Action.REJECT, LOGIN_FIRST, "submission"), tell_filters=False)
                return LOGIN_FIRST
            if self._too_busy_for(server, session, envelope):
                self._refused(tx, "mail", Decision(Action.TEMPFAIL, BUSY_AT_MAIL, "loadcheck"))
                return BUSY_AT_MAIL
            refusal = await self._stage(session, "mail", tx)
            if refusal is not None:
                return refusal
            envelope.mail_from = address
            envelope.mail_options.extend(mail_options)
            return "250 OK"
        except Exception:
            log.exception("MAIL failed")
            return TEMPFAIL

    def _too_busy_for(self, server, session, envelope) -> bool:  # type: ignore[no-untyped-def]
        """loadcheck for this transaction: SME defers only mail from the outside. The
        session's limits let LocalNetworks in at connect, so the MTA in front is always
        let in; here its XFORWARD says whose mail this is. A session from the MTA in front
        that names no client could be anyone's mail, and is deferred as before."""
        limits: SessionLimits | None = getattr(server, "limits", None)  # (LimitedSMTP's)
        if limits is None or not limits.max_load or _user(session):
            return False  # (a client that logged in is one of ours)
        ours = limits.exempts(_client(session, envelope)) and (
            bool(_named_by(session, envelope)) or not self.trusts_forwarding(session))
        return not ours and limits.overloaded()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # type: ignore[no-untyped-def]
        try:
            tx = Transaction(peer=_client(session, envelope), helo=_helo_name(session, envelope),
                             mail_from=envelope.mail_from or "", rcpt_tos=list(envelope.rcpt_tos),
                             notes=_notes(envelope), authenticated=_user(session))
            refusal = await self._stage(session, "rcpt", tx, address)
            if refusal is not None:
                return refusal
            if len(envelope.rcpt_tos) >= self.recipient_room(tx):
                self._refused(tx, "rcpt", Decision(Action.TEMPFAIL, NEXT_HOP_FULL, "next-hop"), address)
                return NEXT_HOP_FULL
            if self.verify_recipients:
                server.working = True  # (LimitedSMTP: the client waits on us, not idle)
                try:
                    refusal = await asyncio.get_running_loop().run_in_executor(
                        None, self.relay.verify, envelope.mail_from or "", address)
                finally:
                    server.working = False
                if refusal is not None:
                    self._refused(tx, "rcpt", Decision(Action.REJECT, refusal, "next-hop"), address)
                    return refusal
            envelope.rcpt_tos.append(address)
            return "250 OK"
        except Exception:
            log.exception("RCPT failed")
            return TEMPFAIL

    def recipient_room(self, tx: Transaction) -> int | float:
        """How many recipients the message may have on the way to the next hop: no cap
        until it has said it has one (RelayPool.recipient_limit), and one fewer when the
        archive copy (BccAddress) goes in the same transaction."""
        limit = self.relay.recipient_limit
        if limit is None:
            return math.inf
        return max(limit - 1, 1) if self.bcc.address_for(tx) else limit

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        self.in_flight += 1
        server.working = True  # (LimitedSMTP: its timeout does not run while we work)
        try:
            return await self._data(session, envelope)
        finally:
            server.working = False
            self.in_flight -= 1

    async def _data(self, session, envelope) -> str:  # type: ignore[no-untyped-def]
        started = time.monotonic()
        tx = Transaction(peer=_client(session, envelope), helo=_helo_name(session, envelope),
                         mail_from=envelope.mail_from or "", rcpt_tos=list(envelope.rcpt_tos),
                         notes=_notes(envelope), named_by=_named_by(session, envelope),
                         authenticated=_user(session),
                         deadline=started + self.scan_budget * DEADLINE_SHARE)
        reply, deciding = TEMPFAIL, "error"
        queue_id = new_id()
        try:
            tx.data = normalize_line_endings(envelope.original_content or envelope.content or b"")
            loop = asyncio.get_running_loop()
            checking = loop.run_in_executor(None, self._check_data, session, tx, queue_id)
            try:
                decision = await asyncio.wait_for(checking, self.scan_budget)
            except asyncio.TimeoutError:
                # the filters' thread runs on and its verdict is dropped: nothing is relayed
                log.warning("DATA checks of %s from %s took over %gs; answered 451",
                            _message_id(tx.data), tx.peer, self.scan_budget)
                decision = Decision(Action.TEMPFAIL, OVER_BUDGET, "budget")
            if decision.action in (Action.REJECT, Action.TEMPFAIL):
                reply, deciding = decision.reply, decision.filter
            else:
                options = {option.upper() for option in envelope.mail_options}
                archive = self.bcc.address_for(tx)
                tx.data = self.bcc.header(archive) + tx.data
                reply = await loop.run_in_executor(
                    None, functools.partial(self.relay.send, tx.mail_from, tx.rcpt_tos, tx.data, archive,
                                            smtputf8="SMTPUTF8" in options,
                                            eight_bit="BODY=8BITMIME" in options,
                                            dsn=getattr(envelope, "spamkit_dsn", None),
                                            origin=_origin(session, envelope)))
                deciding = "relay"
        except Exception:
            log.exception("DATA failed")
            reply, deciding = TEMPFAIL, "error"
        await asyncio.get_running_loop().run_in_executor(
            None, self._finished, tx, reply, deciding, started, queue_id, getattr(session, "ssl", None) is not None)
        return reply

    def _check_data(self, session, tx: Transaction, queue_id: str) -> Decision:  # type: ignore[no-untyped-def]
        """The DATA stage, on a worker thread: our Received header first (its reverse
        lookup may wait on DNS), then the chain."""
        if self.trace is not None:
            tx.data = self.trace.received(
                _peer(session), str(session.host_name or ""), esmtp=bool(session.extended_smtp),
                tls=getattr(session, "ssl", None) is not None, rcpt_tos=tx.rcpt_tos,
                message_id=queue_id, authenticated=bool(tx.authenticated)) + tx.data
        return self._data_stage(session, tx)


def _would_refuse_header(kept_back: str) -> bytes:
    """One refusal the chain kept back after the queue, as a header line of printable
    ASCII (a recipient's address may be neither)."""
    return b"X-Spam-Would-Refuse: " + printable(kept_back, 900).encode("ascii", "backslashreplace") + b"\r\n"


def _country_field(tx: Transaction) -> str:
    """The log line's country= field, when the geoip filter looked the client up ("-":
    the database does not place it)."""
    return f" country={tx.notes[COUNTRY_NOTE]}" if COUNTRY_NOTE in tx.notes else ""


def _notes(envelope) -> dict[str, object]:  # type: ignore[no-untyped-def]
    """What filters noted about this transaction, from MAIL to the end of DATA (a filter
    at RCPT may leave a note for its own DATA stage); aiosmtpd makes a new envelope for
    each transaction, so notes never outlive one."""
    notes: dict[str, object] | None = getattr(envelope, "spamkit_notes", None)
    if notes is None:
        notes = envelope.spamkit_notes = {}
    return notes


def _sender(address: str) -> str:
    """The sender as the log shows it inside <>: the null sender of a bounce, which
    aiosmtpd gives as "<>", as nothing (from=<>, as Postfix logs it; not from=<<>>)."""
    return "" if address.strip() == "<>" else printable(address)


def _message_id(data: bytes) -> str:
    """The Message-ID of a message as the log names it ("-" when it has none)."""
    head = data.split(b"\r\n\r\n", 1)[0][:100_000]
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"message-id":
            return printable(value.strip().decode("ascii", "replace")) or "-"
    return "-"


def _origin(session, envelope) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """The client as the next hop's XFORWARD should hear of it: what the MTA in front
    said of it (its XFORWARD), else the client we talk to."""
    own = {"ADDR": _peer(session), "HELO": str(session.host_name or ""),
           "PROTO": "ESMTP" if session.extended_smtp else "SMTP"}
    origin: dict[str, str] = own | getattr(envelope, "spamkit_xforward", {})
    if ":" in origin["ADDR"]:
        origin["ADDR"] = "IPV6:" + origin["ADDR"]  # (as Postfix writes an IPv6 client)
    return origin


def _client(session, envelope) -> str:  # type: ignore[no-untyped-def]
    """The client the checks are about: the one XFORWARD named, else the peer."""
    return str(getattr(envelope, "spamkit_xforward", {}).get("ADDR") or _peer(session))


def _named_by(session, envelope) -> str:  # type: ignore[no-untyped-def]
    """The MTA in front, if its XFORWARD named the client; else ""."""
    return _peer(session) if getattr(envelope, "spamkit_xforward", {}).get("ADDR") else ""


def _user(session) -> str:  # type: ignore[no-untyped-def]
    """Who logged in with SMTP AUTH in this session, as Dovecot names them; "" if no one."""
    return str(getattr(session, "spamkit_user", "") or "")


def _helo_name(session, envelope) -> str:  # type: ignore[no-untyped-def]
    return str(getattr(envelope, "spamkit_xforward", {}).get("HELO") or session.host_name or "")


def _peer(session) -> str:  # type: ignore[no-untyped-def]
    """The client's address; an IPv4 client of a dual-stack socket (::ffff:192.0.2.1) as
    plain IPv4, the form the lists, SPF and the settings use."""
    peer = getattr(session, "peer", None)
    address = str(peer[0]) if isinstance(peer, tuple) and peer else str(peer or "")
    if address.startswith("::ffff:"):
        try:
            mapped = ipaddress.IPv6Address(address).ipv4_mapped
        except ValueError:
            mapped = None
        if mapped is not None:
            return str(mapped)
    return address
