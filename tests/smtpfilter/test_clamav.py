"""The clamav filter against a real clamd on loopback (tests/servers/clamd.py): a virus
refused, clean mail relayed, and a clamd that is down, stalled or refusing to scan."""

from __future__ import annotations

import base64
import contextlib
import io
import logging
import socket
import struct
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from smtpfilter.filter import Action, Transaction
from smtpfilter.metrics import UNCHECKED
from smtpfilter.plugins.clamav import Clamav, ClamdClient, ClamdRefused, ClamdUnavailable
from tests.servers.clamd import EICAR, SIGNATURE, Clamd, SilentClamd, start_clamd
from tests.servers.smtp_sink import Sink, free_port
from tests.smtpfilter.conftest import PLAIN

FOUND = f"{SIGNATURE}.UNOFFICIAL"  # clamd's name for a signature outside its official databases


@pytest.fixture(scope="module")
def clamd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Clamd]:
    yield from start_clamd(tmp_path_factory.mktemp("clamd"))


def attached(payload: bytes, name: str) -> bytes:
    return (b"From: a@example.org\r\nDate: Tue, 25 Nov 2026 08:00:00 +0000\r\nSubject: see\r\n"
            b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nsee\r\n"
            b"--b\r\nContent-Type: application/octet-stream; name=\"" + name.encode() + b"\"\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n"
            + base64.encodebytes(payload).replace(b"\n", b"\r\n") + b"--b--\r\n")


def zipped(name: str, data: bytes) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(name, data)
    return out.getvalue()


def test_clamd_finds_the_test_virus_however_it_is_sent(clamd: Clamd) -> None:
    for address in (clamd.address, str(clamd.socket), f"unix:{clamd.socket}"):
        client = ClamdClient(address, timeout=30)
        assert client.ping()
        assert client.scan(EICAR) == FOUND
        assert client.scan(attached(EICAR, "readme.txt")) == FOUND
        assert client.scan(attached(zipped("docs/readme.txt", EICAR), "docs.zip")) == FOUND
        assert client.scan(PLAIN) is None
        assert client.scan(b"") is None
    big = attached(bytes(range(256)) * 20_000, "photo.jpg") + attached(EICAR, "late.txt")  # across many chunks
    assert ClamdClient(clamd.address, timeout=30).scan(big) == FOUND


def test_a_virus_is_refused_and_clean_mail_relayed(
        clamd: Clamd, filter_server, sink: Sink, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    send = filter_server(f'SmtpFilters = ["clamav"]\nClamdAddress = "{clamd.socket}"\n')
    with caplog.at_level(logging.INFO, logger="spamkit.smtpfilter"):
        assert send(attached(zipped("invoice.doc", EICAR), "invoice.zip")) == f"552 5.7.0 Virus found: {FOUND}"
        assert send(PLAIN).startswith("250")
    assert f"clamd found {FOUND} in a message from 127.0.0.1" in caplog.text
    assert len(sink.messages()) == 1 and b"hello" in sink.messages()[0]
    # and `spamkit mailstats` counts it from those log lines, by name
    from smtpfilter.mailstats import MailStats, read_line

    stats = MailStats(tag_level=5.0)
    stats.add_all(event for record in caplog.records if (event := read_line(record.getMessage())) is not None)
    report = stats.as_json()
    assert report["viruses"] == [{"name": FOUND, "messages": 1}]
    assert report["messages"] == {"relayed": 1, "spam": 0, "rejected": 1, "deferred": 0}
    assert report["filters"] == [{"filter": "clamav", "rejected": 1, "deferred": 0, "would_refuse": 0}]


def test_clean_mail_says_it_was_checked_and_only_our_scan_says_so(
        clamd: Clamd, filter_server, sink: Sink) -> None:  # type: ignore[no-untyped-def]
    """qpsmtpd's X-Virus-Checked, as SME's mail carries it, on top of a message found
    clean; one that arrived claiming our name is removed (another server's is kept), and
    mail let through unscanned gets none."""
    forged = (b"X-Virus-Checked: Checked by ClamAV on mx.example.org\r\n"
              b"X-Virus-Checked: Checked by ClamAV on relay.example.net\r\n" + PLAIN)
    send = filter_server(f'SmtpFilters = ["clamav"]\nClamdAddress = "{clamd.socket}"\n'
                         'SmtpHostname = "mx.example.org"\n')
    assert send(forged).startswith("250")
    [relayed] = sink.messages_as_sent()
    headers = relayed.split(b"\n\n", 1)[0].split(b"\n")  # (smtp-sink keeps LF line ends)
    ours = [index for index, line in enumerate(headers) if line.startswith(b"X-Virus-Checked:")]
    assert headers[ours[0]] == b"X-Virus-Checked: Checked by ClamAV on mx.example.org"
    assert all(line.startswith((b"Received:", b" ", b"\t")) for line in headers[:ours[0]])  # (on top)
    assert relayed.count(b"Checked by ClamAV on mx.example.org") == 1
    assert b"X-Virus-Checked: Checked by ClamAV on relay.example.net" in relayed
    unscanned = filter_server(f'SmtpFilters = ["clamav"]\nClamdAddress = "127.0.0.1:{free_port()}"\n'
                              'ClamavWhenDown = "accept"\nSmtpHostname = "mx.example.org"\n')
    assert unscanned(forged).startswith("250")
    # (smtp-sink's files sort by name, not by arrival)
    assert sorted(message.count(b"on mx.example.org") for message in sink.messages_as_sent()) == [0, 1]


def test_a_clamd_that_is_down_defers_unless_told_to_let_mail_through(
        filter_server, sink: Sink, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    nowhere = f"127.0.0.1:{free_port()}"
    with caplog.at_level(logging.WARNING, logger="spamkit.smtpfilter"):
        deferred = filter_server(f'SmtpFilters = ["clamav"]\nClamdAddress = "{nowhere}"\n')
    assert f"clamd does not answer PING at {nowhere}: every message would get 451" in caplog.text  # at start
    assert deferred(PLAIN) == "451 4.3.0 Virus scanner unavailable, try again later"
    assert sink.messages() == []
    before = UNCHECKED.counts().get(("clamav", "down"), 0)
    let_through = filter_server(f'SmtpFilters = ["clamav"]\nClamdAddress = "{nowhere}"\n'
                                'ClamavWhenDown = "accept"\n')
    assert let_through(PLAIN).startswith("250")
    assert len(sink.messages()) == 1 and UNCHECKED.counts()[("clamav", "down")] == before + 1
    missing = Clamav(ClamdClient("/nonexistent/clamd.ctl", timeout=5))
    decision = missing.data(Transaction(peer="192.0.2.1", data=PLAIN))
    assert decision.action is Action.TEMPFAIL


def test_a_clamd_that_never_answers_is_waited_for_only_its_timeout() -> None:
    """A clamd stuck reloading its signatures takes the connection and says nothing."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)  # connections wait in the backlog, never answered
        client = ClamdClient(f"127.0.0.1:{listener.getsockname()[1]}", timeout=1.5)
        started = time.monotonic()
        with pytest.raises(ClamdUnavailable, match="timed out"):
            client.scan(PLAIN)
        assert 1.4 < time.monotonic() - started < 10
        assert not client.ping()


def test_a_clamd_that_never_answers_is_given_up_at_the_checks_deadline() -> None:
    """ClamdTimeout (30 s) past the DATA checks' deadline (1 s on): the deadline ends it."""
    with SilentClamd() as clamd:
        client = ClamdClient(clamd.address, timeout=30)
        started = time.monotonic()
        with pytest.raises(ClamdUnavailable, match="no verdict by the DATA checks' deadline"):
            client.scan(PLAIN, deadline=started + 1)
        assert 0.9 < time.monotonic() - started < 10


def test_a_clamd_that_answers_a_byte_at_a_time_is_waited_for_only_its_timeout() -> None:
    """ClamdTimeout bounds the whole exchange: it once bounded each read, and a clamd
    that sent its 11-byte verdict a byte every 0.4 s was waited for 4.4 s of a 1.5 s timeout."""
    def drip(listener: socket.socket) -> None:
        connection, _ = listener.accept()
        with connection:
            connection.settimeout(30)
            while not connection.recv(1 << 16).endswith(struct.pack(">I", 0)):
                pass
            with contextlib.suppress(OSError):  # (the client hangs up on it)
                for byte in b"stream: OK\0":
                    connection.sendall(bytes([byte]))
                    time.sleep(0.4)

    with socket.create_server(("127.0.0.1", 0)) as listener:
        threading.Thread(target=drip, args=(listener,), daemon=True).start()
        client = ClamdClient(f"127.0.0.1:{listener.getsockname()[1]}", timeout=1.5)
        started = time.monotonic()
        with pytest.raises(ClamdUnavailable, match=r"within ClamdTimeout \(1.5 s\): timed out"):
            client.scan(PLAIN)
        assert time.monotonic() - started < 3


def test_a_clamd_that_hangs_is_down_at_the_deadline_in_time_for_clamavwhendown(
        filter_server, sink: Sink, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    """ClamdTimeout at or past ScanBudget: the clamav filter once waited past the budget,
    so the client heard ScanBudget's 451 4.3.2 and ClamavWhenDown = "accept" never applied
    to a clamd that hangs. Now the scan ends at the DATA checks' deadline (0.9 of the 2 s
    budget): "accept" relays the message unscanned, counted; the default defers it with
    the scanner's own 451."""
    with SilentClamd() as clamd:
        budget = f"ScanBudget = 2\nClamdTimeout = 30\n{clamd.as_config}"
        before = UNCHECKED.counts().get(("clamav", "down"), 0)
        let_through = filter_server(f'SmtpFilters = ["clamav"]\n{budget}ClamavWhenDown = "accept"\n')
        with caplog.at_level(logging.ERROR, logger="spamkit.smtpfilter"):
            assert let_through(PLAIN).startswith("250")
        assert "no verdict by the DATA checks' deadline" in caplog.text
        assert UNCHECKED.counts()[("clamav", "down")] == before + 1
        [relayed] = sink.messages()
        assert b"X-Virus-Checked" not in relayed
        deferred = filter_server(f'SmtpFilters = ["clamav"]\n{budget}')
        assert deferred(PLAIN) == "451 4.3.0 Virus scanner unavailable, try again later"
        assert len(sink.messages()) == 1


def test_mail_over_clamds_stream_limit_passes_unscanned(tmp_path: Path) -> None:
    """clamd stops reading past its StreamMaxLength and answers "INSTREAM size limit
    exceeded": not a verdict. The message passes unscanned, as qpsmtpd lets it, and is
    counted; a smaller one is still scanned."""
    for server in start_clamd(tmp_path, stream_max="1M"):
        client = ClamdClient(server.address, timeout=30)
        with pytest.raises(ClamdRefused, match="size limit"):
            client.scan(attached(EICAR, "a.txt") + b"x" * (3 << 20))
        before = UNCHECKED.counts().get(("clamav", "refused"), 0)
        transaction = Transaction(peer="192.0.2.1", data=PLAIN + b"x" * (3 << 20))
        assert Clamav(client).data(transaction).action is Action.CONTINUE
        assert UNCHECKED.counts()[("clamav", "refused")] == before + 1
        assert client.scan(attached(EICAR, "a.txt")) == FOUND


def test_lint_says_when_clamd_does_not_answer(clamd: Clamd, tmp_path: Path) -> None:
    config = tmp_path / "spamkit.toml"
    for address, warned in ((clamd.address, False), (str(clamd.socket), False), (f"127.0.0.1:{free_port()}", True)):
        config.write_text(f'SmtpFilters = ["clamav", "spamscore"]\nClamdAddress = "{address}"\n')
        lint = subprocess.run([sys.executable, "-m", "spamkit", "lint", "--config", str(config)],
                              capture_output=True, text=True, timeout=120)
        assert lint.returncode == 0, lint.stderr
        assert (f"{config}:2: clamd does not answer PING at {address}: every message would get 451"
                in lint.stderr) == warned, lint.stderr
