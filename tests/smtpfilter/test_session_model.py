"""The filter's promise, checked over sessions hypothesis makes up: a message that heard
250 after its final dot reached the next hop exactly once, for exactly the recipients
that heard 250; one that heard anything else reached no one. Sessions mix EHLO and HELO,
RSET and NOOP, commands out of order, refused senders and recipients, content refused or
deferred at DATA, and bodies with dots, bare CRs and LFs, 8-bit bytes and long lines,
sent as SMTP clients send them. Each relayed message also carries the archive copy's
recipient (BccAddress). The next hop is Postfix's smtp-sink; the filter runs in this
process."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (RuleBasedStateMachine, invariant, precondition, rule,
                                 run_state_machine_as_test)

from smtpfilter.chain import FilterChain
from smtpfilter.filter import CONTINUE, Decision, Filter, Transaction, reject, tempfail
from smtpfilter.limits import LimitedController, SessionLimits
from smtpfilter.plugins.envelope import BadMailFrom, BadRcptTo
from smtpfilter.server import FilterHandler
from tests.servers.smtp_client import Client
from tests.servers.smtp_sink import Sink, free_port, start_sink

SENDERS = [b"a@example.org", b"", b"someone@bad.example", b"B.Jones+tag@example.net"]
RECIPIENTS = [b"b@example.org", b"c@example.org", b"refused@example.org", b"Postmaster",
              b"d@example.net"]
LINES = st.one_of(
    st.sampled_from([b"", b".", b"..", b".hidden", b"From the start", b"Subject: in the body",
                     b"a\nbare LF", b"a\rbare CR", b"\n.\r\nMAIL FROM:<evil@example.net>",
                     b"caf\xc3\xa9 8-bit", b"\xff\xfe not UTF-8", b"x" * 990, b"REFUSE-ME",
                     b"DEFER-ME"]),
    st.binary(max_size=80).map(lambda line: line.replace(b"\r\n", b" ")))


ARCHIVE = b"archive@example.org"


class ContentVerdict(Filter):
    """What the content checks decide at DATA, as a line of the body asks."""

    name = "content"

    def data(self, tx: Transaction) -> Decision:
        if b"\nREFUSE-ME" in tx.data:
            return reject(self.name, "554 5.7.1 refused for its content")
        if b"\nDEFER-ME" in tx.data:
            return tempfail(self.name, "451 4.7.1 try again later")
        return CONTINUE


@pytest.fixture(scope="module")
def filter_port() -> Iterator[tuple[int, Sink]]:
    sinks = start_sink()
    sink = next(sinks)
    chain = FilterChain([BadMailFrom(["*@bad.example"], []), BadRcptTo(["refused@*"]), ContentVerdict()])
    port = free_port()
    controller = LimitedController(FilterHandler(chain, ("127.0.0.1", sink.port), ARCHIVE.decode()),
                                   SessionLimits(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port, sink
    finally:
        controller.stop()
        sinks.close()


class Session(RuleBasedStateMachine):
    """One SMTP session, and what the filter should answer at each step."""

    port = 0
    sink: Sink

    def __init__(self) -> None:
        super().__init__()
        self.client = Client(self.port)
        assert self.client.reply().startswith(b"220")
        assert self.client.command(b"EHLO client.example.org").startswith(b"250")  # (the rules greet again)
        self.sender: bytes | None = None
        self.recipients: list[bytes] = []

    def teardown(self) -> None:
        try:
            assert self.client.command(b"QUIT").startswith(b"221")
        finally:
            self.client.sock.close()

    def _reset(self) -> None:
        self.sender, self.recipients = None, []

    @rule(extended=st.booleans(), name=st.sampled_from([b"client.example.org", b"[192.0.2.1]"]))
    def hello(self, extended: bool, name: bytes) -> None:
        reply = self.client.command((b"EHLO " if extended else b"HELO ") + name)
        assert reply.startswith(b"250"), reply
        self._reset()  # (RFC 5321 4.1.4: as RSET)

    @rule(sender=st.sampled_from(SENDERS))
    def mail(self, sender: bytes) -> None:
        reply = self.client.command(b"MAIL FROM:<" + sender + b">")
        if self.sender is not None:
            assert reply.startswith(b"503"), reply  # (a MAIL inside a transaction)
        elif sender.endswith(b"@bad.example"):
            assert reply.startswith(b"550"), reply
        else:
            assert reply.startswith(b"250"), reply
            self.sender = sender

    @rule(recipient=st.sampled_from(RECIPIENTS))
    def rcpt(self, recipient: bytes) -> None:
        reply = self.client.command(b"RCPT TO:<" + recipient + b">")
        if self.sender is None:
            assert reply.startswith(b"503"), reply
        elif recipient.startswith(b"refused@"):
            assert reply.startswith(b"550"), reply
        else:
            assert reply.startswith(b"250"), reply
            self.recipients.append(recipient)

    @rule(lines=st.lists(LINES, max_size=12))
    def data(self, lines: list[bytes]) -> None:
        reply = self.client.command(b"DATA")
        if self.sender is None or not self.recipients:
            assert reply.startswith(b"503"), reply
            return
        assert reply.startswith(b"354"), reply
        marker = uuid.uuid4().hex.encode()
        body = [b"Message-ID: <" + marker + b"@example.org>", b"Subject: model", b"", *lines]
        stuffed = [b"." + line if line.startswith(b".") else line for line in body]
        self.client.sock.sendall(b"\r\n".join(stuffed) + b"\r\n.\r\n")
        final = self.client.reply()
        arrived = [m for m in self.sink.messages() if marker in m]
        event(f"DATA answered {final[:3].decode()}")
        if final.startswith(b"250"):
            assert len(arrived) == 1, (final, len(arrived))
            got = re.findall(rb"^X-Rcpt-Args: <([^>]*)>", arrived[0], re.M)
            assert [r.lower() for r in got] == [r.lower() for r in [*self.recipients, ARCHIVE]], got
            assert b"REFUSE-ME" not in lines and b"DEFER-ME" not in lines
        else:
            assert arrived == [], final
            assert final[:3] == (b"554" if b"REFUSE-ME" in lines else b"451"), final
        self._reset()

    @rule(sender=st.sampled_from(SENDERS), recipients=st.lists(st.sampled_from(RECIPIENTS), max_size=4),
          lines=st.lists(LINES, max_size=12))
    def transaction(self, sender: bytes, recipients: list[bytes], lines: list[bytes]) -> None:
        """MAIL, RCPTs and DATA in a row, as most sessions go (the rules above alone rarely
        make a whole transaction)."""
        self.mail(sender)
        for recipient in recipients:
            self.rcpt(recipient)
        self.data(lines)

    @rule()
    def rset(self) -> None:
        assert self.client.command(b"RSET").startswith(b"250")
        self._reset()

    @rule()
    def noop(self) -> None:
        assert self.client.command(b"NOOP").startswith(b"250")

    @precondition(lambda self: self.sender is not None)
    @invariant()
    def still_answering(self) -> None:
        """(Cheap, and catches a session that fell out of step: a stray reply queued up.)"""
        assert self.client.buffer == b"", self.client.buffer


def test_every_message_that_heard_250_arrived_once_and_no_other(filter_port: tuple[int, Sink]) -> None:
    Session.port, Session.sink = filter_port
    run_state_machine_as_test(Session, settings=settings(
        max_examples=60, stateful_step_count=30, deadline=None,
        suppress_health_check=[HealthCheck.too_slow]))
