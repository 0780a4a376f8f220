"""The filter's promise, checked over sessions hypothesis makes up: a message that heard
250 after its final dot reached the next hop exactly once, for exactly the recipients
that heard 250; one that heard anything else reached no one. Sessions mix EHLO and HELO,
RSET and NOOP, commands out of order, refused senders and recipients, content refused or
deferred at DATA, and bodies with dots, bare CRs and LFs, 8-bit bytes and long lines,
sent as SMTP clients send them. The filter runs in this process: as the proxy in front
of Postfix's smtp-sink or of a real Postfix, as the proxy between a real Postfix's two
smtpd services (the README's layout), or as the milter a real Postfix asks; in the last
two Postfix is the server the client talks to. What the proxy relays also carries the
archive copy's recipient (BccAddress)."""

from __future__ import annotations

import asyncio
import re
import threading
import uuid
from contextlib import contextmanager
from collections.abc import Iterator
from typing import TypeVar

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (RuleBasedStateMachine, invariant, precondition, rule,
                                 run_state_machine_as_test)

from smtpfilter.chain import FilterChain
from smtpfilter.filter import CONTINUE, Decision, Filter, Transaction, reject, tempfail
from smtpfilter.limits import LimitedController, SessionLimits
from smtpfilter.milter import MilterHandler
from smtpfilter.plugins.envelope import BadMailFrom, BadRcptTo
from smtpfilter.server import FilterHandler
from tests.servers.postfix import PostfixNextHop, start_postfix, start_postfix_around_filter
from tests.servers.smtp_client import Client
from tests.servers.smtp_sink import Sink, free_port, start_sink

SENDERS = [b"a@example.org", b"", b"someone@bad.example", b"B.Jones+tag@example.net"]
RECIPIENTS = [b"b@example.org", b"c@example.org", b"refused@example.org", b"Postmaster",
              b"d@example.net"]
# the content checks' verdict (ContentVerdict), most often none
VERDICT = st.sampled_from([b"", b"", b"", b"REFUSE-ME", b"DEFER-ME"])
LINES = st.one_of(
    st.sampled_from([b"", b".", b"..", b".hidden", b"From the start", b"Subject: in the body",
                     b"a\nbare LF", b"a\rbare CR", b"\n.\r\nMAIL FROM:<evil@example.net>",
                     b"caf\xc3\xa9 8-bit", b"\xff\xfe not UTF-8", b"x" * 990,
                     b"x" * 5000, b".." + b"y" * 3000]),  # (Postfix takes lines of any length)
    st.binary(max_size=80).map(lambda line: line.replace(b"\r\n", b" ")))


ARCHIVE = b"archive@example.org"
_ENHANCED = re.compile(rb"([245])\d\d[ -]([245])\.\d{1,3}\.\d{1,3}( |$)")


def coded(reply: bytes) -> bytes:
    """The reply, once each of its lines is found to carry an enhanced status code of its
    own class (3xx lines carry none)."""
    for line in reply.split(b"\n"):
        if not line.startswith(b"3"):
            match = _ENHANCED.match(line)
            assert match is not None and match[1] == match[2], reply
    return reply


NextHop = TypeVar("NextHop", Sink, PostfixNextHop)


class ContentVerdict(Filter):
    """What the content checks decide at DATA, as a line of the body asks."""

    name = "content"

    def data(self, tx: Transaction) -> Decision:
        if b"\nREFUSE-ME" in tx.data:
            return reject(self.name, "554 5.7.1 refused for its content")
        if b"\nDEFER-ME" in tx.data:
            return tempfail(self.name, "451 4.7.1 try again later")
        return CONTINUE


def run_sessions(session: type[Session], examples: int, steps: int) -> None:
    run_state_machine_as_test(session, settings=settings(
        max_examples=examples, stateful_step_count=steps, deadline=None,
        suppress_health_check=[HealthCheck.too_slow]))


def the_chain() -> FilterChain:
    """What every layout here asks: refused senders and recipients, and the content verdict."""
    return FilterChain([BadMailFrom(["*@bad.example"], []), BadRcptTo(["refused@*"]), ContentVerdict()])


@contextmanager
def proxy(port: int, next_hop_port: int) -> Iterator[None]:
    """The filter as the proxy, in this process, on `port`, relaying to `next_hop_port`
    with an archive copy."""
    controller = LimitedController(FilterHandler(the_chain(), ("127.0.0.1", next_hop_port), ARCHIVE.decode()),
                                   SessionLimits(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield
    finally:
        controller.stop()


def _filter_in_front_of(next_hops: Iterator[NextHop]) -> Iterator[tuple[int, NextHop]]:
    """(the filter's port, the next hop): the filter on a free port, relaying to the next
    hop `next_hops` starts, with an archive copy; both stopped at the end."""
    next_hop = next(next_hops)
    port = free_port()
    try:
        with proxy(port, next_hop.port):
            yield port, next_hop
    finally:
        next_hops.close()


@pytest.fixture(scope="module")
def filter_port() -> Iterator[tuple[int, Sink]]:
    yield from _filter_in_front_of(start_sink())


@pytest.fixture(scope="module")
def filter_before_postfix() -> Iterator[tuple[int, PostfixNextHop]]:
    yield from _filter_in_front_of(start_postfix({"nohop@example.org": "REJECT no such user",
                                                  "later@example.org": "DEFER_IF_PERMIT busy"},
                                                 {"nodata@example.org": "REJECT not from you"}))


class Session(RuleBasedStateMachine):
    """One SMTP session, and what the filter should answer at each step. Subclasses name
    the next hop: where to see what arrived, and what it refuses."""

    port = 0
    recipients_pool = RECIPIENTS
    senders_pool = SENDERS
    next_hop_refuses: dict[bytes, bytes] = {}  # recipient: the reply the filter relays at RCPT
    refused_at_data: dict[bytes, bytes] = {}  # sender: the next hop's reply to its DATA
    deduplicates = False  # whether the next hop keeps a recipient named twice once
    archive: bytes | None = ARCHIVE  # the archive copy's recipient, added to every message
    # DATA's reply when no recipient was taken (Postfix: 554 when some RCPT was refused)
    no_recipients: tuple[bytes, ...] = (b"503",)
    # Postfix in front of the filter asks it from the first RCPT on: a sender the filter
    # refuses hears 250 from Postfix, and the filter's refusal at each RCPT
    sender_refused_at_rcpt = False

    def arrivals(self, marker: bytes) -> list[list[bytes]]:
        """The recipients (archive copy included) of each message with `marker` that arrived."""
        raise NotImplementedError

    def before_data(self) -> None:
        """(What the next hop needs before a message, to tell it apart.)"""

    def after_data(self) -> None:
        """(What the next hop needs once a message is answered.)"""

    def __init__(self) -> None:
        super().__init__()
        self.client = Client(self.port)
        assert self.client.reply().startswith(b"220")
        ehlo = self.client.command(b"EHLO client.example.org")  # (the rules greet again)
        assert ehlo.startswith(b"250") and b"\n250-ENHANCEDSTATUSCODES" in ehlo, ehlo
        self.sender: bytes | None = None
        self.recipients: list[bytes] = []

    def ask(self, line: bytes) -> bytes:
        """The reply to the command `line`, which, as ENHANCEDSTATUSCODES was offered,
        carries an enhanced code of its class on each of its lines (RFC 2034 3)."""
        return coded(self.client.command(line))

    def teardown(self) -> None:
        try:
            assert self.ask(b"QUIT").startswith(b"221")
        finally:
            self.client.sock.close()

    def _reset(self) -> None:
        self.sender, self.recipients = None, []

    @rule(extended=st.booleans(), name=st.sampled_from([b"client.example.org", b"[192.0.2.1]"]))
    def hello(self, extended: bool, name: bytes) -> None:
        reply = self.client.command((b"EHLO " if extended else b"HELO ") + name)
        assert reply.startswith(b"250"), reply
        self._reset()  # (RFC 5321 4.1.4: as RSET)

    @rule(data=st.data())
    def mail_from_pool(self, data: st.DataObject) -> None:
        self.mail(data.draw(st.sampled_from(self.senders_pool)))

    def mail(self, sender: bytes) -> None:
        reply = self.ask(b"MAIL FROM:<" + sender + b">")
        if self.sender is not None:
            assert reply.startswith(b"503"), reply  # (a MAIL inside a transaction)
        elif sender.endswith(b"@bad.example") and not self.sender_refused_at_rcpt:
            assert reply.startswith(b"550"), reply
        else:
            assert reply.startswith(b"250"), reply
            self.sender = sender

    @rule(data=st.data())
    def rcpt_from_pool(self, data: st.DataObject) -> None:
        self.rcpt(data.draw(st.sampled_from(self.recipients_pool)))

    def rcpt(self, recipient: bytes) -> None:
        reply = self.ask(b"RCPT TO:<" + recipient + b">")
        if self.sender is None:
            assert reply.startswith(b"503"), reply
        elif recipient in self.next_hop_refuses:
            assert reply.startswith(self.next_hop_refuses[recipient]), reply
        elif recipient.startswith(b"refused@") or self.sender.endswith(b"@bad.example"):
            assert reply.startswith(b"550"), reply
        else:
            assert reply.startswith(b"250"), reply
            self.recipients.append(recipient)

    @rule(lines=st.lists(LINES, max_size=12), verdict=VERDICT)
    def data(self, lines: list[bytes], verdict: bytes = b"") -> None:
        lines = [*lines, verdict] if verdict else lines
        reply = self.ask(b"DATA")
        if self.sender is None:
            assert reply.startswith(b"503"), reply
            return
        if not self.recipients:
            assert reply[:3] in self.no_recipients, reply
            return
        assert reply.startswith(b"354"), reply
        self.before_data()
        marker = uuid.uuid4().hex.encode()
        body = [b"Message-ID: <" + marker + b"@example.org>", b"Subject: model", b"", *lines]
        stuffed = [b"." + line if line.startswith(b".") else line for line in body]
        self.client.sock.sendall(b"\r\n".join(stuffed) + b"\r\n.\r\n")
        final = coded(self.client.reply())
        arrived = self.arrivals(marker)
        event(f"DATA answered {final[:3].decode()}")
        if final.startswith(b"250"):
            assert len(arrived) == 1, (final, len(arrived))
            expected = sorted(r.lower() for r in [*self.recipients, *([self.archive] if self.archive else [])])
            if self.deduplicates:
                expected = sorted(set(expected))
            assert sorted(r.lower() for r in arrived[0]) == expected, arrived
            assert b"REFUSE-ME" not in lines and b"DEFER-ME" not in lines
            assert self.sender not in self.refused_at_data
        else:
            assert arrived == [], final
            expected = (b"554" if b"REFUSE-ME" in lines else b"451" if b"DEFER-ME" in lines
                        else self.refused_at_data.get(self.sender or b"", b"none"))
            assert final[:3] == expected, final
        self._reset()
        self.after_data()

    @rule(data=st.data(), lines=st.lists(LINES, max_size=12), verdict=VERDICT)
    def transaction(self, data: st.DataObject, lines: list[bytes], verdict: bytes) -> None:
        """MAIL, RCPTs and DATA in a row, as most sessions go (the rules above alone rarely
        make a whole transaction)."""
        self.mail(data.draw(st.sampled_from(self.senders_pool)))
        for recipient in data.draw(st.lists(st.sampled_from(self.recipients_pool), max_size=4)):
            self.rcpt(recipient)
        self.data(lines, verdict)

    @rule()
    def rset(self) -> None:
        assert self.ask(b"RSET").startswith(b"250")
        self._reset()

    @rule()
    def noop(self) -> None:
        assert self.ask(b"NOOP").startswith(b"250")

    @precondition(lambda self: self.sender is not None)
    @invariant()
    def still_answering(self) -> None:
        """(Cheap, and catches a session that fell out of step: a stray reply queued up.)"""
        assert self.client.buffer == b"", self.client.buffer


class SinkSession(Session):
    """Postfix's smtp-sink as the next hop: it takes everything, and keeps each message in
    a file that starts with one X-Rcpt-Args line a recipient."""

    sink: Sink

    def arrivals(self, marker: bytes) -> list[list[bytes]]:
        return [re.findall(rb"^X-Rcpt-Args: <([^>]*)>", m, re.M) for m in self.sink.messages() if marker in m]


def test_every_message_that_heard_250_arrived_once_and_no_other(filter_port: tuple[int, Sink]) -> None:
    SinkSession.port, SinkSession.sink = filter_port
    run_sessions(SinkSession, examples=60, steps=30)


class PostfixSession(Session):
    """A real Postfix as the next hop: it refuses one recipient, defers another and refuses
    one sender's DATA; what it took waits in its queue, emptied before each message."""

    postfix: PostfixNextHop
    recipients_pool = [b"b@example.org", b"c@example.org", b"refused@example.org", b"nohop@example.org",
                       b"later@example.org", b"d@example.net"]
    senders_pool = [b"a@example.org", b"", b"someone@bad.example", b"nodata@example.org"]
    next_hop_refuses = {b"nohop@example.org": b"554", b"later@example.org": b"450"}
    refused_at_data = {b"nodata@example.org": b"554"}
    deduplicates = True

    def before_data(self) -> None:
        self.postfix.clear()

    def arrivals(self, marker: bytes) -> list[list[bytes]]:
        return [[r.encode() for r in recipients] for _, recipients in self.postfix.held()]


def test_with_postfix_next_every_message_that_heard_250_was_queued_once_and_no_other(
        filter_before_postfix: tuple[int, PostfixNextHop]) -> None:
    PostfixSession.port, PostfixSession.postfix = filter_before_postfix
    run_sessions(PostfixSession, examples=40, steps=20)


class MilterSession(Session):
    """The filter chain as Postfix's milter: Postfix is the server the client talks to,
    asks the milter (in this process) at each stage, refuses one recipient and defers
    another itself, and keeps what it took in its queue, emptied after each transaction.
    (No archive copy: that is the proxy's.)"""

    postfix: PostfixNextHop
    recipients_pool = PostfixSession.recipients_pool
    senders_pool = [b"a@example.org", b"", b"someone@bad.example"]
    next_hop_refuses = PostfixSession.next_hop_refuses
    deduplicates = True
    archive = None
    no_recipients = (b"503", b"554")

    def __init__(self) -> None:
        self.postfix.clear()
        super().__init__()

    def after_data(self) -> None:
        """Postfix's queue emptied between transactions: its queue file is made at MAIL,
        so emptying it before the message is sent (as the other sessions do) would take
        the message's own file away."""
        self.postfix.clear()

    def arrivals(self, marker: bytes) -> list[list[bytes]]:
        return [[r.encode() for r in recipients] for _, recipients in self.postfix.held()]


# Postfix in front, as the README lays it out: smuggling refused (see there), and the
# sessions' mistakes, made on purpose, neither slowed down nor ended
POSTFIX_IN_FRONT = ("smtpd_forbid_bare_newline = normalize\n"
                    "smtpd_forbid_bare_newline_exclusions =\n"
                    "smtpd_error_sleep_time = 0\n"
                    "smtpd_soft_error_limit = 1000\n"
                    "smtpd_hard_error_limit = 1000\n")


class AroundSession(MilterSession):
    """The README's first layout: the client talks to Postfix, whose smtpd hands the
    session to the filter (smtpd_proxy_filter, the filter in this process), which hands
    what it passes, with the archive copy, to Postfix's second smtpd; that one keeps it in
    the queue. The first refuses mail for a domain not its own itself."""

    recipients_pool = [b"b@example.org", b"c@example.org", b"refused@example.org", b"d@example.net"]
    next_hop_refuses = {b"d@example.net": b"454"}  # (relay access denied: defer_unauth_destination)
    archive = ARCHIVE
    sender_refused_at_rcpt = True


@pytest.fixture(scope="module")
def postfix_around_the_filter() -> Iterator[tuple[int, PostfixNextHop]]:
    reinjection_port, filter_port = free_port(), free_port()
    with proxy(filter_port, reinjection_port):
        for postfix in start_postfix_around_filter(filter_port, reinjection_port, POSTFIX_IN_FRONT):
            yield postfix.port, postfix


def test_with_postfix_around_the_filter_every_message_that_heard_250_was_queued_once_and_no_other(
        postfix_around_the_filter: tuple[int, PostfixNextHop]) -> None:
    AroundSession.port, AroundSession.postfix = postfix_around_the_filter
    run_sessions(AroundSession, examples=100, steps=30)


@pytest.fixture(scope="module")
def postfix_asking_the_milter() -> Iterator[tuple[int, PostfixNextHop]]:
    """Postfix on a free port with the chain as its milter (smtpd_milters), the milter
    served on a loop of its own in this process."""
    handler = MilterHandler(the_chain())
    loop = asyncio.new_event_loop()
    port = free_port()
    server = loop.run_until_complete(asyncio.start_server(handler.serve_connection, "127.0.0.1", port))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        for postfix in start_postfix({"nohop@example.org": "REJECT no such user",
                                      "later@example.org": "DEFER_IF_PERMIT busy"},
                                     main_cf=f"smtpd_milters = inet:127.0.0.1:{port}\n"
                                             "milter_default_action = tempfail\n" + POSTFIX_IN_FRONT):
            yield postfix.port, postfix
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        server.close()
        loop.close()


def test_through_the_milter_every_message_that_heard_250_was_queued_once_and_no_other(
        postfix_asking_the_milter: tuple[int, PostfixNextHop]) -> None:
    MilterSession.port, MilterSession.postfix = postfix_asking_the_milter
    run_sessions(MilterSession, examples=100, steps=30)
