"""`spamkit serve` between swaks and Postfix's smtp-sink: what arrives, what is refused."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import subprocess
import time
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from corpora import CorpusMessage
from smtpfilter.chain import FilterChain
from smtpfilter.filter import Filter, Transaction
from smtpfilter.server import FilterHandler
from tests.servers.postfix import PostfixNextHop, start_postfix
from tests.servers.pyzord import SilentPyzorServer
from tests.servers.serve import sigterm_while_waiting, start_serve, stop_serve
from tests.servers.smtp_client import Client
from tests.servers.smtp_sink import Sink, free_port
from tests.servers.swaks import swaks
from tests.smtpfilter.conftest import STRANGER


@pytest.fixture
def serve(tmp_path: Path, trained_db: Path, sink: Sink) -> Iterator[tuple[int, Path]]:
    db = tmp_path / "db"
    shutil.copytree(trained_db, db)
    config = tmp_path / "spamkit.toml"
    config.write_text('Sensitivity = "custom"\nTagLevel = 4\nRejectLevel = 12\n'
                      'SubjectTag = true\nSubjectTagText = "[SPAM]"\n')
    (tmp_path / "lists").write_text("black *@*.xyz\n")
    process, port = start_serve(sink.port, db, config)
    try:
        yield port, tmp_path
    finally:
        assert stop_serve(process)[0] == 0


def write(tmp_path: Path, data: bytes, name: str = "message.eml") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_ham_arrives_byte_for_byte_below_our_headers(
        serve: tuple[int, Path], sink: Sink, split: tuple[list[CorpusMessage], list[CorpusMessage]]) -> None:
    port, tmp_path = serve
    # a ham with lines that start with a dot (stuffed and unstuffed at each hop), no bare
    # CR (which the filter turns into CRLF) and no X-Spam-* headers (which it replaces)
    ham = next(m for m in split[1] if m.label == "ham" and b"\n." in m.data
               and b"\r" not in m.data and b"\nX-Spam-" not in m.data)
    sent = ham.data.split(b"\n", 1)[1] if ham.data.startswith(b"From ") else ham.data
    reply = swaks(port, write(tmp_path, sent))  # (swaks would drop an mbox From_ line itself)
    assert reply.startswith("250"), reply
    [delivered] = sink.messages_as_sent()
    lines = delivered.split(b"\n")
    ours = 0
    while lines[ours].startswith(b"X-Spam-") or lines[ours][:1] in (b" ", b"\t"):
        ours += 1
    assert any(line.startswith(b"X-Spam-Status: No, score=") for line in lines[:ours])
    # then our Received header (smtpfilter/trace.py), the hop from swaks to us
    assert lines[ours].startswith(b"Received: from ")
    trace_end = ours + 1
    while lines[trace_end][:1] == b"\t":
        trace_end += 1
    assert re.fullmatch(rb"Received: from \S+ \(localhost \[127\.0\.0\.1\]\) by \S+ \(spamkit\) with ESMTP "
                        rb"id [0-9A-F]{12} for <user@example\.org>; \w{3}, .+",
                        b" ".join(line.strip() for line in lines[ours:trace_end]))
    ours = trace_end
    # everything below our headers is the message as it was sent, byte for byte (smtp-sink
    # stores LF line endings; SMTP adds the final line break a file may lack)
    assert b"\n".join(lines[ours:]).rstrip(b"\n") == sent.rstrip(b"\n")


def test_lines_over_a_thousand_bytes_are_taken_and_relayed_as_sent(
        serve: tuple[int, Path], sink: Sink, split: tuple[list[CorpusMessage], list[CorpusMessage]]) -> None:
    """Postfix takes lines of any length, and ham has them (6 of the corpus's 4,150);
    aiosmtpd refused each such message with a permanent "500 Line too long". A corpus
    ham with a long line, and a line of 200,000 bytes that starts with a dot, arrive as
    sent."""
    port, tmp_path = serve
    ham = next(m for m in split[0] + split[1] if m.label == "ham" and b"\r" not in m.data
               and max(map(len, m.data.split(b"\n"))) > 1000)
    sent = ham.data.split(b"\n", 1)[1] if ham.data.startswith(b"From ") else ham.data
    made = (b"From: someone@example.org\nSubject: one long line\nMessage-ID: <long@example.org>\n\n"
            b"first\n." + b"dotted " * 28_572 + b"\n..\nlast\n")
    for number, message in enumerate((sent, made)):
        reply = swaks(port, write(tmp_path, message, f"{number}.eml"))
        assert reply.startswith("250"), reply
    delivered = sink.messages_as_sent()  # (smtp-sink's file names do not keep the order)
    assert len(delivered) == 2
    for message in (sent, made):
        body = message.split(b"\n\n", 1)[1].rstrip(b"\n")
        assert any(copy.rstrip(b"\n").endswith(b"\n\n" + body) for copy in delivered)


def test_pipelining_is_offered_and_each_pipelined_command_answered_in_turn(
        serve: tuple[int, Path], sink: Sink, split: tuple[list[CorpusMessage], list[CorpusMessage]]) -> None:
    """PIPELINING (RFC 2920), which Postfix, qmail and qpsmtpd offer: swaks sends MAIL,
    RCPT and DATA together only where it is offered; and a client that sends a refused
    recipient among others, then the next transaction straight after the final dot, gets
    each reply in order. The refused one is the null path, which aiosmtpd took as a
    recipient and the relay passed on to the next hop."""
    port, tmp_path = serve
    ham = next(m for m in split[1] if m.label == "ham" and b"\r" not in m.data)
    reply = swaks(port, write(tmp_path, ham.data), extra=("--pipeline",))
    assert reply.startswith("250"), reply
    client = Client(port)
    assert client.reply().startswith(b"220")
    assert b"\n250-PIPELINING" in client.command(b"EHLO client.test")
    message = b"From: a@example.org\r\nDate: Sun, 6 Dec 2026 04:00:00 +0000\r\nSubject: together\r\n\r\nhello\r\n.\r\n"
    client.sock.sendall(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<>\r\nRCPT TO:<user@example.org>\r\nDATA\r\n")
    replies = [client.reply() for _ in range(4)]
    assert [reply[:3] for reply in replies] == [b"250", b"501", b"250", b"354"]
    assert replies[1] == b"501 5.1.3 Bad recipient address syntax"  # (the null path, as Postfix says)
    client.sock.sendall(message + b"MAIL FROM:<b@example.org>\r\nRCPT TO:<user@example.org>\r\nDATA\r\n")
    assert [client.reply()[:3] for _ in range(4)] == [b"250", b"250", b"250", b"354"]
    client.sock.sendall(message + b"QUIT\r\n")
    assert [client.reply()[:3] for _ in range(2)] == [b"250", b"221"]
    client.sock.close()
    assert sum(copy.rstrip(b"\n").endswith(b"\n\nhello") for copy in sink.messages_as_sent()) == 2
    assert b"X-Rcpt-Args: <>" not in b"".join(sink.messages())


def test_every_reply_after_the_greeting_carries_an_enhanced_status_code(serve: tuple[int, Path]) -> None:
    """ENHANCEDSTATUSCODES (RFC 2034), as Postfix offers it: an MTA sending to us puts the
    enhanced code of our refusal in the bounce it writes. Once offered, a code is owed on
    every 2xx, 4xx and 5xx reply but the greeting and EHLO's; aiosmtpd's own replies
    ("250 OK", "503 Error: need MAIL command", "221 Bye") carried none."""
    port, _ = serve
    client = Client(port)
    assert client.reply().startswith(b"220")
    assert b"\n250-ENHANCEDSTATUSCODES" in client.command(b"EHLO client.test")
    dialogue = [(b"NOOP", b"250 2.0.0 "), (b"FROB", b"500 5.5.2 "), (b"HELP", b"250 2.0.0 "),
                (b"VRFY", b"501 5.5.4 "), (b"VRFY user@example.org", b"252 2.0.0 "),
                (b"STARTTLS", b"454 4.7.0 "), (b"RCPT TO:<user@example.org>", b"503 5.5.1 "),
                (b"DATA", b"503 5.5.1 "), (b"MAIL FROM:<a@example.org> FROB=1", b"555 5.5.4 "),
                (b"MAIL FROM:<a@example.org>", b"250 2.1.0 "), (b"MAIL FROM:<b@example.org>", b"503 5.5.1 "),
                (b"RCPT TO:<>", b"501 5.1.3 "), (b"RCPT TO:<user@example.org>", b"250 2.1.5 "),
                (b"RSET", b"250 2.0.0 "), (b"QUIT", b"221 2.0.0 ")]
    heard = [client.command(line) for line, _ in dialogue]
    client.sock.close()
    assert [reply[:len(start)] for reply, (_, start) in zip(heard, dialogue)] == [
        start for _, start in dialogue], heard


def test_spam_is_tagged_and_relayed(serve: tuple[int, Path], sink: Sink,
                                     split: tuple[list[CorpusMessage], list[CorpusMessage]]) -> None:
    port, tmp_path = serve
    spam = next(m for m in split[1] if m.label == "spam" and b"\nSubject:" in m.data)
    reply = swaks(port, write(tmp_path, spam.data))
    assert reply.startswith("250"), reply
    [delivered] = sink.messages()
    assert b"X-Spam-Flag: YES" in delivered and b"Subject: [SPAM]" in delivered


def test_spam_over_reject_level_is_refused_and_nothing_relayed(
        serve: tuple[int, Path], sink: Sink, split: tuple[list[CorpusMessage], list[CorpusMessage]]) -> None:
    port, tmp_path = serve
    spam = next(m for m in split[1] if m.label == "spam")
    reply = swaks(port, write(tmp_path, spam.data), sender="promo@deals.xyz")
    assert reply.startswith("550 5.7.1"), reply
    assert sink.messages() == []


def test_next_hop_down_gives_451(tmp_path: Path, trained_db: Path,
                                  split: tuple[list[CorpusMessage], list[CorpusMessage]]) -> None:
    process, port = start_serve(free_port(), trained_db, tmp_path / "none.toml", stderr=subprocess.DEVNULL)
    try:
        reply = swaks(port, write(tmp_path, split[1][0].data))
        assert reply.startswith("451"), reply
    finally:
        stop_serve(process)


class Boom(Filter):
    name = "boom"

    def __init__(self, stage: str) -> None:
        self.stage = stage

    def connect(self, tx: Transaction):  # type: ignore[no-untyped-def]
        if self.stage == "connect":
            raise RuntimeError("injected")
        return super().connect(tx)

    def helo(self, tx: Transaction):  # type: ignore[no-untyped-def]
        if self.stage == "helo":
            raise RuntimeError("injected")
        return super().helo(tx)

    def mail(self, tx: Transaction):  # type: ignore[no-untyped-def]
        if self.stage == "mail":
            raise RuntimeError("injected")
        return super().mail(tx)

    def rcpt(self, tx: Transaction, recipient: str):  # type: ignore[no-untyped-def]
        if self.stage == "rcpt":
            raise RuntimeError("injected")
        return super().rcpt(tx, recipient)

    def data(self, tx: Transaction):  # type: ignore[no-untyped-def]
        if self.stage == "data":
            raise RuntimeError("injected")
        return super().data(tx)


@pytest.mark.parametrize("stage", ["connect", "helo", "mail", "rcpt", "data"])
def test_an_exception_at_any_stage_gives_4xx_and_nothing_relayed(
        stage: str, sink: Sink, tmp_path: Path) -> None:
    from smtpfilter.limits import LimitedController, SessionLimits

    port = free_port()
    handler = FilterHandler(FilterChain([Boom(stage)]), ("127.0.0.1", sink.port))
    controller = LimitedController(handler, SessionLimits(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        reply = swaks(port, write(tmp_path, b"Subject: hi\r\n\r\nhello\r\n"))
        expected = "421 4.3.0" if stage == "connect" else "451 4.3.0"  # 421: instead of a greeting
        assert expected in reply, reply
        assert sink.messages() == []
        # the server keeps serving
        handler.chain = FilterChain([])
        assert swaks(port, write(tmp_path, b"Subject: again\r\n\r\nhello\r\n")).startswith("250")
    finally:
        controller.stop()


def test_sigterm_answers_idle_sessions_421_and_exits_0(tmp_path: Path, trained_db: Path, sink: Sink) -> None:
    """...and its log says when it began to stop, with what was under way, and when it had."""
    import socket

    process, port = start_serve(sink.port, trained_db, tmp_path / "none.toml")
    client = socket.create_connection(("127.0.0.1", port), timeout=30)
    assert client.recv(1024).startswith(b"220")
    client.sendall(b"EHLO test\r\n")
    reply = b""
    while not re.search(rb"(^|\n)250 ", reply):  # the whole multi-line EHLO reply
        reply += client.recv(4096)
    process.send_signal(signal.SIGTERM)
    assert client.recv(1024).startswith(b"421 4.3.2 Service shutting down")
    client.close()
    _, log = process.communicate(timeout=60)
    assert process.returncode == 0
    lines = log.decode().splitlines()
    assert "SIGTERM: stopping. New sessions are refused; 0 message(s) being checked" in lines[-2], lines[-3:]
    assert lines[-1].endswith(" spamkit.smtpfilter stopped"), lines[-3:]


def test_sigterm_during_a_check_answers_it_and_closes_the_database_after_the_check_ends(
        tmp_path: Path, trained_db: Path, sink: Sink) -> None:
    """SIGTERM while a message waits on a silent Pyzor server: the log says one message is
    being checked, the client gets 451 at the 3 s ScanBudget, and the check itself (ending
    at PyzorTimeout, 5 s) is over before the database closes and the log says it stopped."""
    with SilentPyzorServer() as pyzor:
        config = tmp_path / "spamkit.toml"
        config.write_text(STRANGER + 'SmtpFilters = ["pyzor", "spamscore"]\nScanBudget = 3\nPyzorTimeout = 5\n'
                          + pyzor.as_config)
        process, port = start_serve(sink.port, trained_db, config)
        reply, log = sigterm_while_waiting(
            process, lambda: swaks(port, write(tmp_path, b"Subject: hello\r\n\r\nhello\r\n")), pyzor.asked)
    assert process.returncode == 0
    assert reply.startswith("451 4.3.2"), reply
    assert sink.messages() == []
    lines = log.decode(errors="replace").splitlines()
    stopping = next(i for i, line in enumerate(lines) if "SIGTERM: stopping." in line)
    assert "; 1 message(s) being checked or relayed get up to 30 s" in lines[stopping], lines[stopping]
    given_up = next(i for i, line in enumerate(lines) if "did not answer" in line and "pyzor server" in line)
    assert stopping < given_up < len(lines) - 1 and lines[-1].endswith(" spamkit.smtpfilter stopped"), lines[stopping:]


def test_a_fatal_signal_leaves_every_threads_stack_in_the_log(tmp_path: Path, trained_db: Path, sink: Sink) -> None:
    """A daemon that dies of SIGSEGV, SIGBUS or SIGABRT says where each thread was (the
    journal would otherwise say only that it died): SIGABRT stands in for the crash."""
    process, _ = start_serve(sink.port, trained_db, tmp_path / "none.toml")
    process.send_signal(signal.SIGABRT)
    _, log = process.communicate(timeout=60)
    assert process.returncode == -signal.SIGABRT
    text = log.decode("utf-8", "replace")
    assert "Fatal Python error: Aborted" in text, text[-3000:]
    # the main thread, waiting for SIGTERM in serve's loop, and the SMTP sessions' own
    assert re.search(r'File ".*spamkit/cli/serve\.py", line \d+ in serve', text), text[-3000:]
    assert len(re.findall(r"^(Current thread|Thread) 0x", text, re.MULTILINE)) >= 2, text[-3000:]


def test_a_connection_kept_open_takes_any_number_of_messages_but_a_noop_loop_hears_421(
        tmp_path: Path, trained_db: Path, sink: Sink) -> None:
    """Checklist item 8, and the MTA's side of it. Postfix keeps a connection to its
    content filter open for many messages (smtp-source -d does the same): every message
    must pass, where a per-session command limit once cut the 101st MAIL off with 421.
    A client that sends NOOP (or RSET) 100 times with no message between hears 421 and
    is disconnected. The greeting names spamkit, not the SMTP library and its version."""
    import socket

    process, port = start_serve(sink.port, trained_db, tmp_path / "none.toml", stderr=subprocess.DEVNULL)
    try:
        sent = subprocess.run(["smtp-source", "-d", "-m", "250", "-s", "1", "-f", "a@example.org",
                               "-t", "b@example.org", f"127.0.0.1:{port}"],
                              capture_output=True, text=True, timeout=120)
        assert sent.returncode == 0, sent.stderr
        assert len(sink.messages()) == 250

        client = socket.create_connection(("127.0.0.1", port), timeout=30)
        replies = client.makefile("rb")
        greeting = replies.readline()
        assert greeting.startswith(b"220 ") and greeting.rstrip().endswith(b" ESMTP spamkit")
        client.sendall(b"HELO test\r\n")
        assert replies.readline().startswith(b"250")
        for _ in range(99):  # an RSET between messages is no junk: a delivery resets the count
            client.sendall(b"RSET\r\n")
            assert replies.readline().startswith(b"250")
        client.sendall(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n")
        assert [replies.readline()[:3] for _ in range(3)] == [b"250", b"250", b"354"]
        client.sendall(b"Subject: one\r\n\r\nbody\r\n.\r\n")
        assert replies.readline().startswith(b"250")
        answers = []
        for _ in range(101):
            client.sendall(b"NOOP\r\n")
            answers.append(replies.readline())
        assert answers[:100] == [b"250 2.0.0 OK\r\n"] * 100  # (ENHANCEDSTATUSCODES: 2.0.0)
        assert answers[100] == b"421 4.7.0 NOOP sent too many times\r\n"
        assert replies.readline() == b""  # and the connection is closed
        client.close()
        assert len(sink.messages()) == 251
    finally:
        assert stop_serve(process)[0] == 0


@pytest.mark.parametrize("one_line", [False, True], ids=["lines", "one-line"])
def test_mail_over_the_size_limit_hears_552_and_nothing_is_relayed(
        tmp_path: Path, trained_db: Path, sink: Sink, one_line: bool) -> None:
    """Checklist items 4 and 6, with SmtpMaxMessageSize at 5 MB: EHLO offers SIZE; MAIL
    with a larger SIZE= hears 552 at once; DATA one byte over the limit hears 552 after
    the final dot, nothing reaches the next hop, the session goes on, and the filter's
    peak memory grows by less than twice the limit; the same for a body that is one
    line (no line length is refused, smtpfilter/data.py)."""
    import socket

    limit = 5_000_000
    config = tmp_path / "spamkit.toml"
    config.write_text(f"SmtpMaxMessageSize = {limit}\n")
    process, port = start_serve(sink.port, trained_db, config, stderr=subprocess.DEVNULL)

    def peak_kib() -> int:
        status = Path(f"/proc/{process.pid}/status").read_text()
        return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1))  # type: ignore[union-attr]

    try:
        client = socket.create_connection(("127.0.0.1", port), timeout=60)
        replies = client.makefile("rb")
        replies.readline()
        client.sendall(b"EHLO test\r\n")
        ehlo = [replies.readline()]
        while ehlo[-1][3:4] == b"-":
            ehlo.append(replies.readline())
        assert f"250-SIZE {limit}\r\n".encode() in ehlo
        client.sendall(f"MAIL FROM:<a@example.org> SIZE={limit + 1}\r\n".encode())
        assert replies.readline().startswith(b"552")

        before = peak_kib()
        header = b"From: a@example.org\r\nSubject: big\r\n\r\n"
        line = b"x" * 998 + b"\r\n"
        body = (b"x" * (limit + 1 - len(header)) + b"\r\n" if one_line
                else line * ((limit + 1 - len(header)) // len(line) + 1))
        client.sendall(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n")
        assert [replies.readline()[:3] for _ in range(3)] == [b"250", b"250", b"354"]
        client.sendall(header + body + b".\r\n")
        assert replies.readline().startswith(b"552")
        grown = peak_kib() - before
        assert grown < 2 * limit / 1024, f"peak memory grew by {grown} KiB"

        client.sendall(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n")
        assert [replies.readline()[:3] for _ in range(3)] == [b"250", b"250", b"354"]
        client.sendall(header + b"small\r\n.\r\n")
        assert replies.readline().startswith(b"250")
        client.sendall(b"QUIT\r\n")
        client.close()
        [relayed] = sink.messages_as_sent()
        assert relayed.rstrip(b"\n").endswith(b"\n\nsmall")
    finally:
        assert stop_serve(process)[0] == 0


def test_control_characters_are_refused_in_addresses_and_escaped_in_the_log(
        tmp_path: Path, trained_db: Path, sink: Sink) -> None:
    """Checklist item 23, for what the filter passes on. An envelope address with a NUL or
    another control character is malformed (553), never relayed to the next hop; a HELO
    name with them is taken, as Postfix takes it, but the log line escapes them."""
    import socket

    process, port = start_serve(sink.port, trained_db, tmp_path / "none.toml")
    try:
        client = socket.create_connection(("127.0.0.1", port), timeout=30)
        replies = client.makefile("rb")
        replies.readline()
        for command, reply in ((b"HELO ev\x00il\x0bhost\xff.example", b"250"),
                               (b"MAIL FROM:<a\x00b@example.org>", b"553"),
                               (b"MAIL FROM:<ab@exa\x7fmple.org>", b"553"),
                               (b"MAIL FROM:<ab@example.org>", b"250"),
                               (b"RCPT TO:<b\x0b@example.org>", b"553"),
                               (b"RCPT TO:<b@example.org>", b"250"),
                               (b"DATA", b"354"),
                               (b"From: a@example.org\r\nDate: Tue, 25 Nov 2026 08:00:00 +0000\r\n"
                                b"\r\nhi\r\n.", b"250")):
            client.sendall(command + b"\r\n")
            assert replies.readline()[:3] == reply, command
        client.close()
    finally:
        status, stderr = stop_serve(process)
    assert status == 0
    [relayed] = sink.messages()
    assert b"X-Mail-Args: <ab@example.org>" in relayed and b"X-Rcpt-Args: <b@example.org>" in relayed
    [line] = [line for line in stderr.decode("utf-8", "backslashreplace").splitlines()
              if "from=<ab@example.org>" in line]
    assert "helo=ev\\x00il\\x0bhost\\udcff.example" in line and line.isprintable()


@pytest.fixture(scope="module")
def postfix() -> Iterator[PostfixNextHop]:
    """A real Postfix as the next hop, refusing one recipient and deferring another."""
    yield from start_postfix({"refused@example.org": "REJECT no such user",
                              "later@example.org": "DEFER_IF_PERMIT busy"},
                             {"nodata@example.org": "REJECT not from you"})


@pytest.fixture(scope="module")
def strict_postfix() -> Iterator[PostfixNextHop]:
    """A real Postfix that refuses any line ending in a bare LF, from every client
    (Postfix 3.9's smtpd_forbid_bare_newline = reject, an answer to SMTP smuggling)."""
    yield from start_postfix({}, main_cf="smtpd_forbid_bare_newline = reject\n"
                                         "smtpd_forbid_bare_newline_exclusions =\n")


def test_bare_line_ends_are_made_crlf_before_the_checks_and_the_next_hop(
        tmp_path: Path, trained_db: Path, strict_postfix: PostfixNextHop) -> None:
    """Reliability checklist 2: `Subject: a<LF>X-Evil: b` arrives as one SMTP line, and
    Python's email parser reads it as two headers. The filter makes every bare LF and bare
    CR a CRLF before its checks, so what was scored is what is relayed, and a next hop
    that refuses bare LFs (here Postfix) takes the message rather than refusing it."""
    strict_postfix.clear()
    data = (b"From: a@example.org\r\nTo: b@example.org\r\nSubject: a\nX-Evil: b\r\n"
            b"Date: Tue, 25 Nov 2026 08:00:00 +0000\r\n\r\nfirst\rsecond\nthird\r\n.\r\n")
    from tests.servers.smtp_client import Client

    def deliver(port: int) -> bytes:
        client = Client(port)
        client.reply()
        for command in (b"EHLO client.example.org", b"MAIL FROM:<a@example.org>", b"RCPT TO:<b@example.org>"):
            assert client.command(command).startswith(b"250"), command
        assert client.command(b"DATA").startswith(b"354")
        client.sock.sendall(data)
        reply = client.reply()
        client.sock.close()
        return reply

    assert b"bare <LF> received" in deliver(strict_postfix.port)  # (the next hop is that strict)
    assert strict_postfix.held() == []
    process, port = start_serve(strict_postfix.port, trained_db, tmp_path / "none.toml",
                                stderr=subprocess.DEVNULL)
    try:
        assert deliver(port).startswith(b"250")
    finally:
        assert stop_serve(process)[0] == 0
    [queued] = strict_postfix.messages()
    lines = queued.splitlines()
    assert b"Subject: a" in lines and b"X-Evil: b" in lines
    assert [b"first", b"second", b"third"] == lines[-3:]


def minutes(tmp_path: Path) -> Path:
    return write(tmp_path, b"From: a@example.org\r\nDate: Tue, 25 Nov 2026 08:00:00 +0000\r\n"
                           b"Subject: minutes\r\n\r\nThe minutes of today's meeting.\r\n")


def test_a_recipient_the_next_hop_refuses_is_never_lost_behind_a_250(
        tmp_path: Path, trained_db: Path, postfix: PostfixNextHop) -> None:
    """Upstream heard 250 for each recipient before DATA. When the next hop (a real
    Postfix) refuses one of them, the message goes to nobody and upstream hears why: 451
    when the refusal is temporary, so the sender retries and no one gets it twice; the
    next hop's 5xx when it is permanent, so the sender is told. Before, upstream heard
    250 and the refused recipients' copies were gone without a word. (This is the path
    after DATA, where one reply stands for all: with SmtpVerifyRecipients, the default,
    most refusals come at RCPT instead, one recipient at a time, as the next test shows.)"""
    postfix.clear()
    config = tmp_path / "spamkit.toml"
    config.write_text("SmtpVerifyRecipients = false\n")
    process, port = start_serve(postfix.port, trained_db, config, stderr=subprocess.DEVNULL)
    message = minutes(tmp_path)
    try:
        for recipients, reply in (("b@example.org,later@example.org", "451 4.3.0 The next hop deferred "
                                   "<later@example.org> (450 4.7.1 <later@example.org>: Recipient "
                                   "address rejected: busy); nothing was delivered, try again later"),
                                  ("b@example.org,refused@example.org", "554 5.7.1 <refused@example.org>: "
                                   "Recipient address rejected: no such user (nothing was delivered to "
                                   "the other recipients either)"),
                                  ("refused@example.org,later@example.org", "450 4.7.1 <later@example.org>: "
                                   "Recipient address rejected: busy")):
            assert swaks(port, message, "a@example.org", recipients) == reply
            assert postfix.held() == []
        # refused at the DATA command: the next hop's own reply, not a 451
        assert swaks(port, message, "nodata@example.org", "b@example.org") == \
            "554 5.7.1 <nodata@example.org>: Sender address rejected: not from you"
        assert postfix.held() == []
        assert swaks(port, message, "a@example.org", "b@example.org,c@example.org").startswith("250")
        assert postfix.held() == [("a@example.org", ["b@example.org", "c@example.org"])]
        # the connection the refusals left open is still good for the next message
        assert swaks(port, message, "a@example.org", "d@example.org").startswith("250")
        assert len(postfix.held()) == 2
    finally:
        assert stop_serve(process)[0] == 0


def test_each_recipient_the_next_hop_refuses_is_refused_alone_at_rcpt(
        tmp_path: Path, trained_db: Path, postfix: PostfixNextHop) -> None:
    """In front of an MTA, a message to a colleague and to a mistyped address was refused
    whole after DATA (one reply must stand for all), so the colleague never got it. Each
    recipient is now put to the next hop (a real Postfix) at RCPT: the one it refuses or
    defers hears so alone, and the others get the message, once."""
    import smtplib

    postfix.clear()
    process, port = start_serve(postfix.port, trained_db, tmp_path / "none.toml")
    message = minutes(tmp_path).read_bytes()
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
            refused = client.sendmail("a@example.org", ["b@example.org", "refused@example.org",
                                                        "later@example.org", "c@example.org"], message)
            assert {r: code for r, (code, _) in refused.items()} == \
                {"refused@example.org": 554, "later@example.org": 450}
            assert b"no such user" in refused["refused@example.org"][1]
            # a message whose only recipient is refused ends at RCPT; the session goes on
            try:
                client.sendmail("a@example.org", ["refused@example.org"], message)
                raise AssertionError("the only recipient was taken")
            except smtplib.SMTPRecipientsRefused as error:
                assert error.recipients["refused@example.org"][0] == 554
            # a refusal of the sender by the next hop at DATA still comes after the dot
            try:
                client.sendmail("nodata@example.org", ["b@example.org"], message)
                raise AssertionError("the next hop's refusal at DATA was lost")
            except smtplib.SMTPDataError as error:
                assert error.smtp_code == 554
    finally:
        status, stderr = stop_serve(process)
    assert status == 0
    assert postfix.held() == [("a@example.org", ["b@example.org", "c@example.org"])]
    log = stderr.decode()
    assert "rcpt=refused@example.org stage=rcpt reply='554' by=next-hop" in log
    assert "rcpt=later@example.org stage=rcpt reply='450' by=next-hop" in log


def test_internationalized_addresses_go_on_as_smtputf8_or_are_refused_for_good(
        tmp_path: Path, trained_db: Path, postfix: PostfixNextHop, sink: Sink) -> None:
    """serve offers SMTPUTF8 (RFC 6531), but the relay wrote every command in ASCII: mail
    from or to a non-ASCII address heard 451 at each try (a UnicodeEncodeError) and was
    never delivered. It now goes on as SMTPUTF8 mail to a next hop that takes it (Postfix),
    and to one that does not (smtp-sink) the sender hears 553 5.6.7, once: at RCPT, where
    the next hop is asked about each recipient, or after DATA without that."""
    import socket

    def send(port: int, sender: str, recipient: str) -> bytes:
        """The reply that ends the transaction: RCPT's if it refuses, else the final one."""
        client = socket.create_connection(("127.0.0.1", port), timeout=30)
        replies = client.makefile("rb")
        replies.readline()
        client.sendall(f"EHLO test\r\nMAIL FROM:<{sender}> SMTPUTF8\r\nRCPT TO:<{recipient}>\r\n".encode())
        while replies.readline()[3:4] == b"-":  # the EHLO reply
            pass
        assert replies.readline()[:3] == b"250"
        reply = replies.readline()
        if reply.startswith(b"250"):
            client.sendall(b"DATA\r\n")
            assert replies.readline()[:3] == b"354"
            client.sendall(f"From: {sender}\r\nDate: Tue, 25 Nov 2026 08:00:00 +0000\r\n"
                           "Subject: γεια σας\r\n\r\nκαλημέρα\r\n.\r\n".encode())
            reply = replies.readline()
        client.close()
        return reply

    postfix.clear()
    refused = b"553 5.6.7 The next hop does not take internationalized addresses (SMTPUTF8)\r\n"
    for next_hop, verify, reply in ((postfix.port, "true", b"250 2.0.0 Ok: queued by next hop\r\n"),
                                    (sink.port, "true", refused), (sink.port, "false", refused)):
        config = tmp_path / "spamkit.toml"
        config.write_text(f"SmtpVerifyRecipients = {verify}\n")
        process, port = start_serve(next_hop, trained_db, config, stderr=subprocess.DEVNULL)
        try:
            assert send(port, "δοκιμή@παράδειγμα.δοκιμή", "b@example.org") == reply
            assert send(port, "a@example.org", "χρήστης@example.org") == reply
        finally:
            assert stop_serve(process)[0] == 0
    assert sorted(postfix.held()) == [("a@example.org", ["χρήστης@example.org"]),
                                      ("δοκιμή@παράδειγμα.δοκιμή", ["b@example.org"])]
    assert sink.messages() == []


def test_an_address_that_is_not_utf8_is_refused_as_malformed_not_deferred(
        tmp_path: Path, trained_db: Path, postfix: PostfixNextHop) -> None:
    """A byte that is not UTF-8 in an address (b\xff@) could not be written to a next
    hop that takes SMTPUTF8 (Postfix): the relay raised, and the client heard 451 at every
    try until its queue gave up. It is malformed (553) from the start, as a control
    character is."""
    process, port = start_serve(postfix.port, trained_db, tmp_path / "none.toml", stderr=subprocess.DEVNULL)
    try:
        client = Client(port)
        client.reply()
        for command, reply in ((b"EHLO client.example.net", b"250"),
                               (b"MAIL FROM:<a\xffb@example.org> SMTPUTF8", b"553"),
                               (b"MAIL FROM:<ab@example.org> SMTPUTF8", b"250"),
                               (b"RCPT TO:<b\xff@example.org>", b"553"),
                               (b"RCPT TO:<\xce\xb2@example.org>", b"250")):  # (UTF-8 is fine)
            answer = client.command(command)
            assert answer[:3] == reply, (command, answer)
        client.sock.close()
    finally:
        assert stop_serve(process)[0] == 0


def test_many_refused_recipients_never_run_the_next_hop_connection_into_its_error_limits(
        tmp_path: Path, trained_db: Path, postfix: PostfixNextHop) -> None:
    """Each recipient the next hop refuses at RCPT is an error on the filter's kept-open
    connection to it, and Postfix slows a client down past 10 errors a session (1-4 s a
    reply, which held a worker thread as long) and drops it at 20 ("too many errors").
    A dictionary attack got there in a few dozen RCPTs. The filter now replaces a
    connection after 5 refusals: Postfix never reaches its limits, and each recipient
    still hears the next hop's own answer."""
    import smtplib

    log = postfix.config.parent / "maillog"
    before = log.read_text(errors="replace").count("too many errors")
    process, port = start_serve(postfix.port, trained_db, tmp_path / "none.toml")
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=120) as client:
            client.ehlo()
            client.mail("a@example.org")
            replies = [client.rcpt("refused@example.org")[0] for _ in range(25)]
            assert replies == [554] * 25
            assert client.rcpt("b@example.org")[0] == 250
            client.rset()
    finally:
        assert stop_serve(process)[0] == 0
    assert log.read_text(errors="replace").count("too many errors") == before


def test_a_long_run_of_recipient_checks_is_never_taken_for_junk_by_the_next_hop(
        postfix: PostfixNextHop) -> None:
    """Each recipient is put to the next hop at RCPT in a transaction ended with RSET, on a
    connection checked with RSET before each use. Postfix counts RSET as a junk command:
    past 100 in a session each is an error, and one worker thread's connection was slowed
    (3-4 s a check) and then dropped mid-check at the 60th, so a good recipient heard 451.
    The pool now replaces a connection after 40 RSETs: 150 checks in a row on one thread
    all find the recipient taken, and Postfix never runs out of patience."""
    from smtpfilter.relay import RelayPool

    log = postfix.config.parent / "maillog"
    before = log.read_text(errors="replace").count("too many errors")
    pool = RelayPool("127.0.0.1", postfix.port, timeout=60)
    assert [pool.verify("a@example.org", f"r{n}@example.org") for n in range(150)] == [None] * 150
    assert log.read_text(errors="replace").count("too many errors") == before


@pytest.mark.parametrize("archive", ["archive@example.org", "refused@example.org"])
def test_the_archive_copy_goes_with_the_message_and_its_refusal_stops_nothing(
        tmp_path: Path, trained_db: Path, postfix: PostfixNextHop, archive: str) -> None:
    """BccAddress is not a recipient the sender named: if the next hop refuses it, the
    message still reaches its recipients, and the log says the archive copy was refused."""
    postfix.clear()
    config = tmp_path / "spamkit.toml"
    config.write_text(f'BccAddress = "{archive}"\n')
    process, port = start_serve(postfix.port, trained_db, config)
    try:
        assert swaks(port, minutes(tmp_path), "a@example.org", "b@example.org").startswith("250")
    finally:
        status, stderr = stop_serve(process)
    assert status == 0
    if archive == "refused@example.org":
        assert postfix.held() == [("a@example.org", ["b@example.org"])]
        assert ("the next hop refused the archive copy to <refused@example.org>: 554 5.7.1 "
                "<refused@example.org>: Recipient address rejected: no such user") in stderr.decode()
    else:
        assert postfix.held() == [("a@example.org", ["archive@example.org", "b@example.org"])]


@pytest.fixture(scope="module")
def capped_postfix() -> Iterator[PostfixNextHop]:
    """A real Postfix that takes at most three recipients a message (smtpd_recipient_limit,
    1,000 by default; a hosted relay's cap may be lower than our MaxRecipients)."""
    yield from start_postfix({}, main_cf="smtpd_recipient_limit = 3\n")


@pytest.mark.parametrize("archive", ["", "archive@example.org"])
def test_more_recipients_than_the_next_hop_takes_are_sent_apart_not_deferred_forever(
        tmp_path: Path, trained_db: Path, capped_postfix: PostfixNextHop, archive: str) -> None:
    """Past its cap the next hop answers 452 4.5.3 (RFC 5321 4.5.3.1.10). Before, the
    filter deferred the whole message, and the sender's retry, with the same recipients,
    met the same cap until the message expired. Now the first try is deferred with the
    cap named, and from then on RCPT answers 452 past it (one fewer with an archive copy
    in the same transaction), so the sender sends the others in another transaction and
    each recipient gets the message once."""
    import smtplib

    capped_postfix.clear()
    config = tmp_path / "spamkit.toml"
    config.write_text(f'BccAddress = "{archive}"\n')
    recipients = [f"r{n}@example.org" for n in range(1, 6)]
    message = minutes(tmp_path).read_bytes()
    process, port = start_serve(capped_postfix.port, trained_db, config)
    batches = []
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
            with pytest.raises(smtplib.SMTPDataError) as deferred:
                client.sendmail("a@example.org", recipients, message)
            assert deferred.value.smtp_code == 451
            assert b"at most 3 recipients" in deferred.value.smtp_error
            assert capped_postfix.held() == []
            pending = recipients  # as a sending MTA retries: what RCPT refused goes again
            while pending:
                refused = client.sendmail("a@example.org", pending, message)
                assert {code for code, _ in refused.values()} <= {452}
                batches.append(sorted(set(pending) - set(refused)))
                pending = [r for r in pending if r in refused]
    finally:
        status, stderr = stop_serve(process)
    assert status == 0
    room = 2 if archive else 3
    assert batches == [recipients[i:i + room] for i in range(0, 5, room)]
    assert sorted(capped_postfix.held()) == sorted(
        ("a@example.org", sorted(batch + ([archive] if archive else []))) for batch in batches)
    log = stderr.decode()
    assert "takes at most 3 recipients a message (452 4.5.3 Error: too many recipients)" in log
    assert f"rcpt=r{room + 1}@example.org stage=rcpt reply='452' by=next-hop" in log


def test_serve_autolearn_learns_what_it_relays_once(tmp_path: Path, trained_db: Path, sink: Sink,
                                                    split: tuple[list[CorpusMessage], list[CorpusMessage]]) -> None:
    """`serve --autolearn`: a clear ham is learned as ham when relayed (the audit log says by
    whom), and the same message again is not learned twice."""
    import json

    db = tmp_path / "db"
    shutil.copytree(trained_db, db)

    def magic() -> dict[str, int]:
        out = subprocess.run([sys.executable, "-m", "spamkit", "db", "magic", "--json", "--db", str(db)],
                             capture_output=True, text=True, check=True).stdout
        return json.loads(out)

    before = magic()
    ham = next(m for m in split[1] if m.label == "ham" and b"\nX-Spam-" not in m.data
               and _autolearn_choice(m.data, trained_db, tmp_path) == "ham")
    path = write(tmp_path, ham.data)
    # without --autolearn nothing is learned, and the header says so: it said autolearn=ham
    process, port = start_serve(sink.port, db, tmp_path / "none.toml")
    try:
        assert swaks(port, path).startswith("250")
    finally:
        stop_serve(process)
    [relayed] = sink.messages()
    assert b"autolearn=disabled" in relayed and magic() == before
    process, port = start_serve(sink.port, db, tmp_path / "none.toml", "--autolearn")
    try:
        for _ in range(2):
            assert swaks(port, path).startswith("250")
    finally:
        returncode, stderr = stop_serve(process)
    assert returncode == 0, stderr
    delivered = [d for d in sink.messages() if d != relayed]
    assert len(delivered) == 2 and all(b"autolearn=ham" in d for d in delivered)
    after = magic()
    assert after["nham"] == before["nham"] + 1 and after["nspam"] == before["nspam"]
    # the audit log has the one autolearn decision
    from spamkit.store import LmdbStore

    with LmdbStore(db, readonly=True) as store:
        events = [json.loads(value) for _, value in store.history_records()]
    learned = [e for e in events if e["by"] == "autolearn" and e["outcome"] == "learned"]
    assert len(learned) == 1 and learned[0]["action"] == "ham", learned


def test_serve_autolearn_on_a_full_disk_still_relays_every_message(
        tmp_path: Path, trained_db: Path, sink: Sink,
        split: tuple[list[CorpusMessage], list[CorpusMessage]]) -> None:
    """Autolearning is a side job: with the database's disk full (a real tmpfs filled to
    the last byte), `serve --autolearn` still relays each message with its verdict, says
    autolearn=failed in the header, logs why, and the database is unchanged."""
    import json

    import lmdb

    from tests.servers.tmpfs import fill, free_bytes, small_disk

    with small_disk(tmp_path / "disk", "48m") as disk:
        db = disk / "db"
        db.mkdir(mode=0o700)
        with lmdb.open(str(trained_db), readonly=True, max_dbs=8) as env:
            env.copy(str(db), compact=True)  # no free pages: a commit must grow the file

        def magic() -> dict[str, int]:
            out = subprocess.run([sys.executable, "-m", "spamkit", "db", "magic", "--json", "--db", str(db)],
                                 capture_output=True, text=True, check=True).stdout
            return json.loads(out)

        before = magic()  # (which makes LMDB's lock file, as any use of the database has)
        fill(disk)
        assert free_bytes(disk) < 64 * 1024
        hams = [m for m in split[1] if m.label == "ham" and b"\nX-Spam-" not in m.data
                and _autolearn_choice(m.data, trained_db, tmp_path) == "ham"][:3]
        assert len(hams) == 3
        process, port = start_serve(sink.port, db, tmp_path / "none.toml", "--autolearn")
        try:
            for index, ham in enumerate(hams):
                assert swaks(port, write(tmp_path, ham.data, f"{index}.eml")).startswith("250")
        finally:
            returncode, stderr = stop_serve(process)
        assert returncode == 0, stderr
        delivered = sink.messages()
        assert len(delivered) == 3 and all(b"autolearn=failed" in d for d in delivered), \
            [d.split(b"autolearn=")[1][:12] for d in delivered]
        assert b"autolearn failed" in stderr and b"is full" in stderr, stderr.decode()[-3000:]
        after = magic()
        assert (after["nham"], after["nspam"], after["ntokens"]) == \
            (before["nham"], before["nspam"], before["ntokens"])


def _autolearn_choice(data: bytes, db: Path, tmp_path: Path) -> str:
    """What the default configuration's autolearn would do with a message."""
    from spamkit.config import load_config
    from spamkit.store import LmdbStore
    from spamkit.verdict import Scanner

    with LmdbStore(db, readonly=True) as store:
        return Scanner.from_config(load_config(str(tmp_path / "none.toml")), store).scan(data).autolearn


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")
def test_serve_runs_as_the_user_it_is_given_never_as_root(tmp_path: Path, trained_db: Path,
                                                         sink: Sink,
                                                         split: tuple[list[CorpusMessage], list[CorpusMessage]]) -> None:
    """Reliability checklist 39: started as root it refuses unless given --user; with it,
    it opens its databases and port as root, then runs as that user before it serves any
    session: by the time a client has its greeting, the process is that user's."""
    refused = subprocess.run([sys.executable, "-m", "spamkit", "serve", "--listen",
                              f"127.0.0.1:{free_port()}", "--db", str(trained_db)],
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "will not run as root" in refused.stderr
    db = tmp_path / "db"
    shutil.copytree(trained_db, db)
    process, port = start_serve(sink.port, db, tmp_path / "none.toml", "--user", "nobody",
                                "--autolearn")
    try:
        import socket

        with socket.create_connection(("127.0.0.1", port), timeout=30) as client:
            assert client.recv(1024).startswith(b"220")  # (the port answered before: it is bound)
            status = Path(f"/proc/{process.pid}/status").read_text()
        uids = next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1:]
        assert set(uids) == {str(pwd.getpwnam("nobody").pw_uid)}, uids  # real, effective, saved, fs
        ham = next(m for m in split[1] if m.label == "ham")
        assert swaks(port, write(tmp_path, ham.data)).startswith("250")
    finally:
        assert stop_serve(process)[0] == 0
    assert len(sink.messages()) == 1


@pytest.mark.parametrize("listen, next_hop", [("127.0.0.1", "127.0.0.1"), ("0.0.0.0", "127.0.0.1"),
                                              ("0.0.0.0", "localhost"), ("[::]", "127.0.0.2")])
def test_serve_refuses_a_next_hop_that_is_its_own_listening_address(tmp_path: Path, listen: str,
                                                                     next_hop: str) -> None:
    """Mail would go round to itself: every recipient check opened one more session of its
    own and the client heard nothing until its timeout. A wildcard --listen covers every
    address of the machine (and [::] the IPv4 ones too, on Linux's dual-stack default)."""
    port = free_port()
    as_user = ("--user", "nobody") if os.geteuid() == 0 else ()
    process = subprocess.Popen([sys.executable, "-m", "spamkit", "serve", *as_user,
                                "--listen", f"{listen}:{port}", "--next-hop", f"{next_hop}:{port}",
                                "--db", str(tmp_path / "db"), "--config", str(tmp_path / "none.toml")],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _, stderr = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise AssertionError(f"serve started with --next-hop {next_hop}:{port}") from None
    assert process.returncode == 2, stderr
    assert (f"--next-hop {next_hop}:{port} is where this filter listens (--listen {listen}:{port}): "
            "mail would go round to itself") in stderr
    assert not (tmp_path / "db").exists()  # refused before anything was opened


class Slow(Filter):
    """A DATA check that takes `seconds` (a DNS list that answers late, say)."""

    name = "slow"
    blocking = True

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def data(self, tx: Transaction):  # type: ignore[no-untyped-def]
        time.sleep(self.seconds)
        return super().data(tx)


def test_checks_over_the_scan_budget_give_451_and_nothing_relayed(sink: Sink, tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    """Reliability checklist 13: the DATA checks must decide within ScanBudget; past it
    the client hears 451 at once (before the MTA in front would give up), the late
    verdict is dropped, the log names the message, and the server goes on serving."""
    from smtpfilter.limits import LimitedController, SessionLimits

    port = free_port()
    handler = FilterHandler(FilterChain([Slow(3.0)]), ("127.0.0.1", sink.port), scan_budget=1.0)
    controller = LimitedController(handler, SessionLimits(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        started = time.monotonic()
        reply = swaks(port, write(tmp_path, b"Message-ID: <slow@example.org>\r\nSubject: hi\r\n\r\nhello\r\n"))
        assert reply.startswith("451 4.3.2 Checking the message took too long"), reply
        assert time.monotonic() - started < 2.5
        time.sleep(2.5)  # the slow check finishes meanwhile: its verdict must not relay
        assert sink.messages() == []
        assert any("<slow@example.org>" in r.getMessage() and "took over 1s" in r.getMessage()
                   for r in caplog.records)
        handler.chain = FilterChain([Slow(0.1)])
        assert swaks(port, write(tmp_path, b"Subject: again\r\n\r\nhello\r\n")).startswith("250")
    finally:
        controller.stop()


class UntilTheDeadline(Filter):
    """A DATA check that works until the transaction's deadline has just passed."""

    name = "until-the-deadline"
    blocking = True

    def data(self, tx: Transaction):  # type: ignore[no-untyped-def]
        assert tx.deadline is not None
        time.sleep(max(0.0, tx.deadline - time.monotonic()) + 0.01)
        return super().data(tx)


def test_rules_stop_at_the_deadline_and_the_verdict_comes_before_the_451(sink: Sink, tmp_path: Path) -> None:
    """The score's rules get what is left of ScanBudget less a tenth (SpamAssassin's
    master_deadline from spamd's child timeout): when the checks before them used it up,
    they are skipped and the message goes on marked TIME_LIMIT_EXCEEDED, instead of
    waiting for a 451 that the next attempt would get again."""
    from smtpfilter.limits import LimitedController, SessionLimits
    from smtpfilter.plugins.spamscore import SpamScore
    from spamkit.config import config_from_text
    from spamkit.lists import Lists
    from spamkit.rules import load_rules
    from spamkit.verdict import Scanner

    rules_file = tmp_path / "r.cf"
    rules_file.write_text("body PILLS /order now/\nscore PILLS 7.3\n")
    scanner = Scanner(config_from_text("", tmp_path / "spamkit.toml", {}),
                      load_rules([rules_file], builtin=False), Lists())
    port = free_port()
    handler = FilterHandler(FilterChain([UntilTheDeadline(), SpamScore(scanner)]),
                            ("127.0.0.1", sink.port), scan_budget=3.0)
    controller = LimitedController(handler, SessionLimits(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        reply = swaks(port, write(tmp_path, b"Subject: pills\r\n\r\norder now\r\n"))
        assert reply.startswith("250"), reply
        [delivered] = sink.messages()
        assert re.search(rb"X-Spam-Status: No, score=0\.0\s+required=5\.0\s+tests=TIME_LIMIT_EXCEEDED\s+"
                         rb"autolearn=unavailable\s",
                         delivered)
    finally:
        controller.stop()


def test_the_timeout_is_a_wait_for_the_client_not_a_limit_on_a_message(sink: Sink) -> None:
    """Checklist item 7's timeout, at one second. A client that goes quiet hears 421 4.4.2
    and is disconnected. A message that takes three seconds to arrive, a line every 0.4 s,
    is taken (aiosmtpd timed all of DATA from the command on, so it was cut off: a large
    message over a slow link never got through). Nor does the timeout run while the
    checks work on a message for two seconds."""
    import socket

    from smtpfilter.limits import LimitedController, SessionLimits

    port = free_port()
    handler = FilterHandler(FilterChain([Slow(2.0)]), ("127.0.0.1", sink.port), scan_budget=10.0)
    controller = LimitedController(handler, SessionLimits(), hostname="127.0.0.1", port=port, timeout=1.0)
    controller.start()
    try:
        quiet = socket.create_connection(("127.0.0.1", port), timeout=10)
        replies = quiet.makefile("rb")
        replies.readline()
        started = time.monotonic()
        assert replies.readline() == b"421 4.4.2 Timeout exceeded, closing the session\r\n"
        assert replies.readline() == b""  # closed
        assert 0.9 < time.monotonic() - started < 5
        quiet.close()

        client = socket.create_connection(("127.0.0.1", port), timeout=10)
        replies = client.makefile("rb")
        replies.readline()
        client.sendall(b"HELO test\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n")
        assert [replies.readline()[:3] for _ in range(4)] == [b"250", b"250", b"250", b"354"]
        client.sendall(b"From: a@example.org\r\nSubject: slow\r\n\r\n")
        for number in range(8):
            time.sleep(0.4)
            client.sendall(b"line %d\r\n" % number)
        client.sendall(b".\r\n")
        assert replies.readline().startswith(b"250")
        client.close()
        assert len(sink.messages()) == 1
    finally:
        controller.stop()


@pytest.fixture
def readable_config_dir() -> Iterator[Path]:
    """A directory the user serve becomes (nobody, under root) can read: as /etc/spamkit
    is. The test's own tmp_path is root's alone."""
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="spamkit-etc-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_sighup_reads_the_configuration_again_and_a_broken_one_changes_nothing(
        tmp_path: Path, trained_db: Path, sink: Sink, readable_config_dir: Path) -> None:
    """`systemctl reload` (SIGHUP) as SME's `signal-event email-update`: a new BadMailFrom
    entry refuses the next message without a restart; a typo is logged with its line and
    the configuration in force stays. A setting applied only at start is named as such."""
    config = readable_config_dir / "spamkit.toml"
    strangers = 'LocalNetworks = []\nRelayClients = []\n'  # (our own clients are immune to BadMailFrom)
    config.write_text(strangers + 'SmtpFilters = ["badmailfrom"]\nBadMailFrom = []\n')
    config.chmod(0o644)
    process, port = start_serve(sink.port, trained_db, config)
    message = write(tmp_path, b"From: x@pest.example\r\nSubject: hi\r\n\r\nhello\r\n")
    try:
        assert swaks(port, message, "x@pest.example").startswith("250")
        config.write_text(strangers + 'SmtpFilters = ["badmailfrom"]\nBadMailFrom = ["*@pest.example"]\n'
                          'SmtpMaxMessageSize = 1000000\n')
        process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while swaks(port, message, "x@pest.example").startswith("250"):
            assert time.monotonic() < deadline, "the reload never took effect"
            time.sleep(0.3)
        assert swaks(port, message, "x@pest.example").startswith("550")
        assert swaks(port, message, "y@fine.example").startswith("250")
        config.write_text(config.read_text() + "BadMailFromm = []\n")  # a typo
        process.send_signal(signal.SIGHUP)
        time.sleep(2)
        assert swaks(port, message, "x@pest.example").startswith("550")  # still in force
    finally:
        code, stderr = stop_serve(process)
    log = stderr.decode()
    assert code == 0
    assert "reload: configuration, rules" in log and "badmailfrom" in log
    assert "reload: SmtpMaxMessageSize changed, which takes effect only when serve restarts" in log
    # the typo's line, after the two lines that make the test client a stranger
    assert f"{config}:6" in log and "the configuration read at the last good start" in log
