"""Session limits, loadcheck, the bcc archive copy and the metrics endpoint, on loopback."""

from __future__ import annotations

import contextlib
import logging
import smtplib
import socket
import time
import urllib.request
from collections.abc import Iterator

import pytest

from smtpfilter.archive import ArchiveCopy
from smtpfilter.chain import FilterChain
from smtpfilter.limits import LimitedController, LimitedSMTP, SessionLimits
from smtpfilter.metrics import Metrics
from smtpfilter.plugins.envelope import BadRcptTo
from smtpfilter.server import FilterHandler
from tests.servers.postfix import start_postfix
from tests.servers.smtp_sink import Sink, free_port, start_sink

MESSAGE = b"From: a@example.org\r\nDate: Tue, 25 Nov 2026 08:00:00 +0000\r\nSubject: hi\r\n\r\nhello\r\n"


def start(sink: Sink, limits: SessionLimits, bcc: str | ArchiveCopy = "", metrics: Metrics | None = None
          ) -> tuple[LimitedController, int]:
    port = free_port()
    handler = FilterHandler(FilterChain([]), ("127.0.0.1", sink.port), bcc, metrics)
    controller = LimitedController(handler, limits, hostname="127.0.0.1", port=port)
    controller.start()
    return controller, port


def greeting(port: int) -> tuple[socket.socket, bytes]:
    client = socket.create_connection(("127.0.0.1", port), timeout=10)
    return client, client.recv(1024)


def send(port: int, recipients: list[str]) -> str:
    import smtplib

    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.sendmail("a@example.org", recipients, MESSAGE)
    return "250"


def test_sessions_per_client_and_in_total(sink: Sink) -> None:
    controller, port = start(sink, SessionLimits(max_sessions=5, max_per_client=3))
    try:
        open_sessions = [greeting(port) for _ in range(3)]
        assert all(banner.startswith(b"220") for _, banner in open_sessions)
        refused, banner = greeting(port)
        assert banner.startswith(b"421 4.7.0 Too many connections from your address")
        refused.close()
        open_sessions[0][0].close()  # one leaves: the next may come in
        import time

        time.sleep(0.2)
        again, banner = greeting(port)
        assert banner.startswith(b"220")
        # the open sessions still work
        client = open_sessions[1][0]
        client.sendall(b"EHLO test\r\n")
        assert client.recv(1024).startswith(b"250")
        for c, _ in [*open_sessions[1:], (again, b"")]:
            c.close()
    finally:
        controller.stop()
    total = SessionLimits(max_sessions=2, max_per_client=10)
    assert total.admit("192.0.2.1") is None and total.admit("192.0.2.2") is None
    assert (total.admit("192.0.2.3") or "").startswith("421 4.7.0 Too many connections,")
    mta = SessionLimits(max_sessions=100, max_per_client=1, exempt=("127.0.0.0/8",))
    assert mta.admit("127.0.0.1") is None and mta.admit("127.0.0.1") is None  # the MTA in front
    assert mta.admit("192.0.2.9") is None and mta.admit("192.0.2.9") is not None


def test_loadcheck_turns_new_sessions_away(sink: Sink) -> None:
    controller, port = start(sink, SessionLimits(max_load=1e-9))
    try:
        import os

        busy = os.getloadavg()[0] > 1e-9  # a machine running the tests always has some load
        client, banner = greeting(port)
        client.close()
        assert banner.startswith(b"421 4.3.2 System busy" if busy else b"220")
    finally:
        controller.stop()


def test_loadcheck_defers_only_mail_from_the_outside(sink: Sink, caplog: pytest.LogCaptureFixture) -> None:
    """SME's loadcheck defers "emails from the outside". It turned every session away at
    connect, so behind Postfix (every session from 127.0.0.1) a busy machine deferred our
    own users' mail too, and a direct session from the office was refused like a
    stranger's. Now LocalNetworks are let in, and each transaction is judged at MAIL by
    the client it is for: the one the MTA in front names with XFORWARD."""
    metrics = Metrics()
    limits = SessionLimits(max_load=7.0, exempt=("127.0.0.0/8",), load_average=lambda: 9.5)
    handler = FilterHandler(FilterChain([]), ("127.0.0.1", sink.port), metrics=metrics,
                            forwarders=("127.0.0.1",))
    port = free_port()
    controller = LimitedController(handler, limits, hostname="127.0.0.1", port=port)
    controller.start()

    def mail(source: str, xforward: str = "") -> tuple[int, bytes]:
        with smtplib.SMTP("127.0.0.1", port, timeout=30, source_address=(source, 0)) as client:
            client.ehlo("mta.test")
            if xforward:
                assert client.docmd("XFORWARD", xforward)[0] == 250
            code, reply = client.mail("a@example.org")
            if code == 250:
                assert client.rcpt("b@example.org")[0] == 250
                assert client.data(MESSAGE + f"Sent-From: {source} {xforward}\r\n".encode())[0] == 250
            return code, reply

    try:
        with caplog.at_level(logging.INFO, logger="spamkit.smtpfilter"):
            assert mail("127.0.0.1", "ADDR=192.0.2.7") == (451, b"4.3.2 System busy, try again later")
            assert mail("127.0.0.1", "ADDR=127.0.0.9")[0] == 250  # named by the MTA: one of ours
            assert mail("127.0.0.2")[0] == 250  # ours, straight to us
            assert mail("127.0.0.1")[0] == 451  # the MTA in front, naming no one: anyone's mail
        assert sorted(m.split(b"Sent-From: ")[1].split(b"\n")[0].rstrip() for m in sink.messages()) \
            == [b"127.0.0.1 ADDR=127.0.0.9", b"127.0.0.2"]
        assert "client=192.0.2.7 helo=mta.test from=<a@example.org> rcpt=- stage=mail reply='451' " \
            "by=loadcheck" in caplog.text
        assert 'spamkit_filter_refusals_total{filter="loadcheck"} 2' in metrics.exposition()
        calm = SessionLimits(max_load=7.0, load_average=lambda: 6.9)
        assert calm.admit("192.0.2.7") is None and not calm.overloaded()
    finally:
        controller.stop()
    # a stranger talking to us straight is still turned away at connect, and counted
    limits = SessionLimits(max_load=7.0, exempt=("127.0.0.1/32",), load_average=lambda: 9.5)
    controller = LimitedController(handler, limits, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        with caplog.at_level(logging.INFO, logger="spamkit.smtpfilter"):
            stranger = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=("127.0.0.2", 0))
            assert stranger.recv(1024) == b"421 4.3.2 System busy, try again later\r\n"
            stranger.close()
            ours, banner = greeting(port)
            assert banner.startswith(b"220")
            ours.close()
        assert "client=127.0.0.2 stage=connect reply='421' by=loadcheck" in caplog.text
        assert 'spamkit_filter_refusals_total{filter="loadcheck"} 3' in metrics.exposition()
    finally:
        controller.stop()


def test_bcc_archive_copy_and_metrics(sink: Sink) -> None:
    metrics = Metrics()
    controller, port = start(sink, SessionLimits(), bcc="archive@example.org", metrics=metrics)
    metrics_port = free_port()
    server = metrics.serve("127.0.0.1", metrics_port)
    try:
        send(port, ["b@example.org"])
        [delivered] = sink.messages()
        assert b"archive@example.org" in delivered.split(b"\n\n", 1)[0]  # smtp-sink's X-Rcpt-Args
        text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode()
        assert 'spamkit_messages_total{decision="relayed"} 1' in text
        assert "spamkit_scan_seconds_count 1" in text
    finally:
        server.shutdown()
        controller.stop()


@pytest.mark.parametrize(("direction", "ours", "copied"), [
    ("all", [], True), ("outgoing", ["127.0.0.0/8"], True), ("outgoing", [], False),
    ("incoming", [], True), ("incoming", ["127.0.0.1"], False)])
@pytest.mark.parametrize("mode", ["bcc", "cc"])
def test_the_archive_copy_takes_the_direction_and_mode_sme_offers(
        sink: Sink, direction: str, ours: list[str], copied: bool, mode: str) -> None:
    """SME's "keep a copy of all emails" and "of outgoing emails only", and its BccMode:
    the copy goes where BccDirection says (outgoing: from our own clients, here the test's
    client when 127.0.0.1 is one of them), and in "cc" mode the message says so in
    X-Copied-To, which "bcc" leaves out."""
    from smtpfilter.networks import LocalClients

    archive = ArchiveCopy("archive@example.org", mode, direction, LocalClients(ours, []))
    controller, port = start(sink, SessionLimits(), bcc=archive)
    try:
        send(port, ["b@example.org"])
    finally:
        controller.stop()
    [delivered] = sink.messages()
    trace, _ = delivered.split(b"\n\n", 1)  # (smtp-sink's X-Rcpt-Args, then our message's headers)
    assert (b"X-Rcpt-Args: <archive@example.org>" in trace) is copied
    assert (b"\nX-Copied-To: <archive@example.org>\n" in trace) is (copied and mode == "cc")


def test_no_client_is_greeted_before_before_serving_returns(sink: Sink) -> None:
    """`serve --user` gives up root in `before_serving`. It used to run after the
    controller had started serving: a client that came in meanwhile was greeted, and
    served, as root (the root test in test_end_to_end saw it once, on a busy machine)."""
    import threading
    import time

    port = free_port()
    finished: list[float] = []

    def slow_switch() -> None:
        time.sleep(0.5)
        finished.append(time.monotonic())

    greeted: list[float] = []

    def early_client() -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
                    if client.recv(1024).startswith(b"220"):
                        greeted.append(time.monotonic())
                        return
            except OSError:
                time.sleep(0.01)

    handler = FilterHandler(FilterChain([]), ("127.0.0.1", sink.port))
    controller = LimitedController(handler, SessionLimits(), before_serving=slow_switch,
                                   hostname="127.0.0.1", port=port)
    client = threading.Thread(target=early_client)
    client.start()
    controller.start()
    try:
        client.join(15)
        assert finished and greeted and greeted[0] >= finished[0]
    finally:
        controller.stop()


def test_metrics_listen_on_ipv6() -> None:
    """MetricsListen = "[::1]:PORT" stopped `serve` with "Address family for hostname not
    supported": http.server binds IPv4 only."""
    metrics = Metrics()
    metrics_port = free_port()
    server = metrics.serve("::1", metrics_port)
    try:
        text = urllib.request.urlopen(f"http://[::1]:{metrics_port}/metrics", timeout=10).read().decode()
        assert "# TYPE spamkit_messages_total counter" in text
    finally:
        server.shutdown()


def test_refusals_before_data_are_logged_and_counted(sink: Sink, caplog: pytest.LogCaptureFixture) -> None:
    """A message refused at MAIL or RCPT (most refusals: the envelope and DNS checks)
    gets its log line and its count, as one refused at DATA does."""
    metrics = Metrics()
    port = free_port()
    handler = FilterHandler(FilterChain([BadRcptTo(["spamtrap@*"])]), ("127.0.0.1", sink.port),
                            metrics=metrics)
    controller = LimitedController(handler, SessionLimits(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        with caplog.at_level(logging.INFO, logger="spamkit.smtpfilter"):
            with pytest.raises(smtplib.SMTPRecipientsRefused):
                send(port, ["spamtrap@example.org"])
        assert any("rcpt=spamtrap@example.org stage=rcpt reply='550' by=badrcptto" in record.getMessage()
                   for record in caplog.records), [r.getMessage() for r in caplog.records]
        assert 'spamkit_filter_refusals_total{filter="badrcptto"} 1' in metrics.exposition()
        assert sink.messages() == []
    finally:
        controller.stop()


def test_refusals_kept_back_after_the_queue_are_counted_apart(sink: Sink) -> None:
    """SmtpAfterQueue: a refusal kept back is no refusal (the message goes on, marked), so
    it is not in spamkit_filter_refusals_total; monitoring sees it in a counter of its own."""
    metrics = Metrics()
    port = free_port()
    handler = FilterHandler(FilterChain([BadRcptTo(["spamtrap@*"])], refuse=False), ("127.0.0.1", sink.port),
                            metrics=metrics)
    controller = LimitedController(handler, SessionLimits(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        send(port, ["spamtrap@example.org", "b@example.org"])
        send(port, ["b@example.org"])
    finally:
        controller.stop()
    # (smtp-sink names its files at random: the marked one is the one for the spamtrap too)
    [marked] = [m for m in sink.messages() if b"<spamtrap@example.org>" in m]
    [plain] = [m for m in sink.messages() if b"<spamtrap@example.org>" not in m]
    assert b"X-Spam-Would-Refuse: 550" in marked and b"X-Spam-Would-Refuse" not in plain
    text = metrics.exposition()
    assert 'spamkit_filter_would_refuse_total{filter="badrcptto"} 1\n' in text
    assert "spamkit_filter_refusals_total{" not in text
    assert 'spamkit_messages_total{decision="relayed"} 2' in text


def test_a_10_mb_line_is_refused_and_the_server_keeps_serving(sink: Sink) -> None:
    controller, port = start(sink, SessionLimits())
    try:
        client, banner = greeting(port)
        try:
            client.sendall(b"EHLO " + b"a" * 10_000_000 + b"\r\n")
            reply = client.recv(1024)
            assert reply.startswith(b"500")
        except (BrokenPipeError, ConnectionResetError):
            pass  # closed on us: also acceptable, nothing was accepted
        finally:
            client.close()
        assert send(port, ["b@example.org"]) == "250"  # other sessions unaffected
        assert len(sink.messages()) == 1
    finally:
        controller.stop()


def test_many_idle_connections_get_421_beyond_the_limit(sink: Sink) -> None:
    """Slowloris: 2,000 idle connections against MaxSessions 100; the rest are turned away
    at once and a well-behaved client still gets through once some leave."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 5000  # client and server ends both live in this process
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard) if hard > 0 else wanted, hard))
    connections = min(2000, (resource.getrlimit(resource.RLIMIT_NOFILE)[0] - 200) // 2)
    controller, port = start(sink, SessionLimits(max_sessions=100, max_per_client=5000))
    idle: list[socket.socket] = []
    try:
        refused = 0
        for _ in range(connections):
            client, banner = greeting(port)
            if banner.startswith(b"421"):
                refused += 1
                client.close()
            else:
                idle.append(client)
        assert connections >= 400  # the limit of this machine, reported if it is small
        assert len(idle) == 100 and refused == connections - 100
        for client in idle[:10]:
            client.close()
        idle = idle[10:]
        import time

        time.sleep(0.3)
        assert send(port, ["b@example.org"]) == "250"
    finally:
        for client in idle:
            client.close()
        controller.stop()


def test_earlytalker_and_unrecognized_commands(sink: Sink) -> None:
    controller, port = start(sink, SessionLimits(early_talker_delay=0.5))
    try:
        early = socket.create_connection(("127.0.0.1", port), timeout=10)
        early.sendall(b"EHLO hurry\r\nMAIL FROM:<a@b.example>\r\n")
        assert early.recv(1024).startswith(b"554 5.7.1 You talked before the greeting")
        early.close()
        patient, banner = greeting(port)
        assert banner.startswith(b"220")
        # aiosmtpd's own limit on unrecognized commands (qpsmtpd's count_unrecognized_commands).
        # One command at a time, each reply read before the next is sent: sent all at once,
        # the server could close with commands of ours unread, and the reset that makes
        # could cost the replies it had sent (a CI run once failed so)
        replies = b""
        patient.settimeout(5)
        for _ in range(6):
            patient.sendall(b"XYZZY\r\n")
            reply = b""
            while not reply.endswith(b"\r\n"):
                chunk = patient.recv(4096)
                if not chunk:
                    break
                reply += chunk
            replies += reply
            if not reply or b"Too many" in reply:
                break
        assert b"502 5.5.1 Too many unrecognized commands" in replies
        patient.close()
    finally:
        controller.stop()



def test_earlytalker_spares_local_networks(sink: Sink) -> None:
    """As on SME (check_earlytalker is off for local connections): our own clients, and
    the MTA in front, are greeted at once, and may pipeline; others still wait."""
    import time

    controller, port = start(sink, SessionLimits(early_talker_delay=2, exempt=("127.0.0.1/32",)))
    try:
        started = time.monotonic()
        local = socket.create_connection(("127.0.0.1", port), timeout=10)
        local.sendall(b"EHLO hurry\r\n")
        assert local.recv(1024).startswith(b"220") and time.monotonic() - started < 1.5
        local.close()
        stranger = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=("127.0.0.6", 0))
        stranger.sendall(b"EHLO hurry\r\n")
        assert stranger.recv(1024).startswith(b"554 5.7.1 You talked before the greeting")
        stranger.close()
    finally:
        controller.stop()


def test_kept_open_next_hop_connections() -> None:
    """Reused while the next hop lives; when it goes away, 451, never a lost 250."""
    from smtpfilter.relay import RelayPool

    generator = start_sink()
    first = next(generator)
    pool = RelayPool("127.0.0.1", first.port, timeout=10)
    assert pool.send("a@example.org", ["b@example.org"], MESSAGE).startswith("250")
    assert pool.send("a@example.org", ["b@example.org"], MESSAGE).startswith("250")
    assert len(first.messages()) == 2
    generator.close()  # the next hop stops
    assert pool.send("a@example.org", ["b@example.org"], MESSAGE).startswith("451")


def test_a_kept_connection_the_next_hop_closed_for_idleness_is_replaced_not_a_451() -> None:
    """Postfix ends a client idle past smtpd_timeout (300 s) with "421 4.4.2 Error:
    timeout exceeded". The pool's kept connection read that 421 as the answer to its RSET
    check and was taken for a live one, so on a quiet server the first message after each
    pause heard 451 and waited for the sender's retry (here smtpd_timeout is 1 s)."""
    from smtpfilter.relay import RelayPool

    generator = start_postfix({}, main_cf="smtpd_timeout = 1s\n")
    postfix = next(generator)
    try:
        pool = RelayPool("127.0.0.1", postfix.port, timeout=10)
        assert pool.send("a@example.org", ["b@example.org"], MESSAGE).startswith("250")
        time.sleep(2.5)  # (past smtpd_timeout: Postfix says 421 and closes)
        reply = pool.send("a@example.org", ["b@example.org"], MESSAGE)
        assert reply.startswith("250"), reply
        time.sleep(2.5)
        assert pool.verify("a@example.org", "b@example.org") is None  # (the check at RCPT too)
        assert len(postfix.held()) == 2
    finally:
        generator.close()


def test_an_archive_address_the_next_hop_cannot_take_is_skipped_not_every_message(
        caplog: pytest.LogCaptureFixture) -> None:
    """A non-ASCII BccAddress and a next hop without SMTPUTF8 (smtp-sink): smtplib could
    not write that RCPT, and every message heard 451. The archive copy is skipped with a
    warning; the recipients get the message."""
    from smtpfilter.relay import RelayPool

    generator = start_sink()
    sink = next(generator)
    try:
        pool = RelayPool("127.0.0.1", sink.port, timeout=10)
        with caplog.at_level(logging.WARNING, logger="spamkit.smtpfilter"):
            reply = pool.send("a@example.org", ["b@example.org"], MESSAGE, archive="archív@example.org")
        assert reply.startswith("250"), reply
        [delivered] = sink.messages()
        assert b"b@example.org" in delivered and "archív".encode() not in delivered
        assert "the archive copy to <archív@example.org> was not sent" in caplog.text
    finally:
        generator.close()


@contextlib.contextmanager
def filter_in_front_of(next_hop: object) -> Iterator[int]:
    """A filter with no checks, relaying to an aiosmtpd server run by the handler
    `next_hop`: the filter's port."""
    from aiosmtpd.controller import Controller

    hop = Controller(next_hop, hostname="127.0.0.1", port=free_port())
    hop.start()
    port = free_port()
    controller = LimitedController(FilterHandler(FilterChain([]), ("127.0.0.1", hop.port)), SessionLimits(),
                                   hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()
        hop.stop()


def test_a_next_hop_that_announces_its_recipient_cap_is_never_sent_more() -> None:
    """A next hop may say its cap in EHLO (LIMITS RCPTMAX, RFC 9422). The filter, asking
    it about each recipient at RCPT, reads it there, so even the first message that
    passes the cap hears 452 at RCPT for the recipients past it, and nothing is deferred."""
    received: list[list[str]] = []

    class CappedNextHop:
        async def handle_EHLO(self, server, session, envelope, hostname, responses):  # type: ignore[no-untyped-def]
            session.host_name = hostname
            return responses[:-1] + ["250-LIMITS RCPTMAX=2"] + responses[-1:]

        async def handle_RCPT(self, server, session, envelope, address, options):  # type: ignore[no-untyped-def]
            if len(envelope.rcpt_tos) >= 2:
                return "452 4.5.3 Too many recipients"
            envelope.rcpt_tos.append(address)
            return "250 OK"

        async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
            received.append(sorted(envelope.rcpt_tos))
            return "250 OK"

    with filter_in_front_of(CappedNextHop()) as port, smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        refused = client.sendmail("a@example.org", ["b@example.org", "c@example.org", "d@example.org"], MESSAGE)
        assert {r: code for r, (code, _) in refused.items()} == {"d@example.org": 452}
        assert client.sendmail("a@example.org", ["d@example.org"], MESSAGE) == {}
    assert received == [["b@example.org", "c@example.org"], ["d@example.org"]]


@pytest.mark.parametrize("limits", [b"RCPTMAX=\xb2", b"RCPTMAX=0", b"RCPTMAX=" + b"9" * 5000, b"RCPTMAX=",
                                    b"MAILMAX=1"])
def test_a_recipient_cap_that_is_not_a_plain_number_is_not_taken(limits: bytes) -> None:
    """Only ASCII digits in LIMITS RCPTMAX are a cap. smtplib reads EHLO as Latin-1, where
    byte B2 is "²", a digit to str.isdigit that int() refuses, as it refuses 5,000 digits:
    either made every RCPT fail (451) behind such a next hop."""
    received: list[list[str]] = []

    class OddNextHop:
        async def handle_EHLO(self, server, session, envelope, hostname, responses):  # type: ignore[no-untyped-def]
            session.host_name = hostname
            return responses[:-1] + [b"250-LIMITS " + limits] + responses[-1:]

        async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
            received.append(sorted(envelope.rcpt_tos))
            return "250 OK"

    with filter_in_front_of(OddNextHop()) as port, smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        assert client.sendmail("a@example.org", ["b@example.org", "c@example.org"], MESSAGE) == {}
    assert received == [["b@example.org", "c@example.org"]]


def test_address_parsing_matches_aiosmtpd() -> None:
    """LimitedSMTP parses MAIL/RCPT addresses without aiosmtpd's per-call class; the
    results must stay aiosmtpd's own (this fails if a new aiosmtpd parses differently)."""
    from aiosmtpd.smtp import SMTP

    ours = LimitedSMTP(FilterHandler(FilterChain([]), ("127.0.0.1", 1)), SessionLimits(), hostname="x")
    theirs = SMTP(FilterHandler(FilterChain([]), ("127.0.0.1", 1)), hostname="x")
    for arg in ("", "<a@example.org>", "<a@example.org> SIZE=100", "a@example.org", "<>", "<<a@b>>",
                "<\"quoted local\"@example.org>", "<a@[127.0.0.1]>", "bogus<", "<a@b> BODY=8BITMIME",
                "<" + "x" * 100 + "@example.org>", "<@relay.example:a@example.org>"):
        assert ours._getaddr(arg) == theirs._getaddr(arg), arg
