"""`spamkit spamd`: SpamAssassin's daemon protocol, with Debian's real spamc as the client
(and raw sockets for what spamc never sends)."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corpora.readers import CorpusMessage
from spamkit.bytemodel import META_NAME, ByteModel, read_model
from spamkit.store import LmdbStore
from tests.servers.net import free_port, wait_for_port
from tests.servers.pyzord import Pyzord


class Spamd:
    def __init__(self, process: subprocess.Popen[bytes], port: int | None, socket_path: Path | None) -> None:
        self.process = process
        self.port = port
        self.socket_path = socket_path
        self.answered = 0  # raw requests that got an answer

    def spamc(self, message: bytes, *options: str) -> subprocess.CompletedProcess[bytes]:
        assert shutil.which("spamc"), "spamc is missing: install the Debian package `spamc`"
        where = ["-U", str(self.socket_path)] if self.socket_path else ["-d", "127.0.0.1", "-p", str(self.port)]
        return subprocess.run(["spamc", *where, "-t", "30", *options], input=message,
                              capture_output=True, timeout=60)

    def ask(self, request: bytes, source: str = "127.0.0.1") -> bytes:
        """A raw request; the whole answer (b"" when the server only closed)."""
        with socket.create_connection(("127.0.0.1", self.port or 0), timeout=30,
                                      source_address=(source, 0)) as connection:
            answer = b""
            try:
                connection.sendall(request)
                connection.shutdown(socket.SHUT_WR)
                while chunk := connection.recv(65536):
                    answer += chunk
            except OSError as error:  # closed without reading what was sent: a reset, or,
                # when the close wins the race with our shutdown, no connection left to shut
                if error.errno not in (errno.ECONNRESET, errno.ENOTCONN, errno.EPIPE):
                    raise
                assert answer == b""
        self.answered += bool(answer)
        return answer

    def stop(self) -> tuple[int, str]:
        self.process.send_signal(signal.SIGTERM)
        _, stderr = self.process.communicate(timeout=30)
        return self.process.returncode, stderr.decode()


@pytest.fixture
def start_spamd(tmp_path: Path) -> Iterator:  # type: ignore[type-arg]
    started: list[Spamd] = []

    def start(db: Path | str, *options: str, config: str = "", unix: bool = False) -> Spamd:
        (tmp_path / "spamkit.toml").write_text(config)
        port = None if unix else free_port()
        socket_path = tmp_path / "spamd.sock" if unix else None
        where = ["--socket", str(socket_path)] if socket_path else ["--listen", f"127.0.0.1:{port}"]
        if os.geteuid() == 0:
            options = (*options, "--user", "nobody")  # it will not run as root
        process = subprocess.Popen([sys.executable, "-m", "spamkit", "spamd", *where, "--db", str(db),
                                    "--config", str(tmp_path / "spamkit.toml"), *options],
                                   stderr=subprocess.PIPE)
        spamd = Spamd(process, port, socket_path)
        started.append(spamd)
        # a cold rule cache: Debian's rules take ~30 s to compile here before the port opens
        deadline = time.monotonic() + 120
        if socket_path is not None:  # until it answers (a stale socket file refuses)
            while time.monotonic() < deadline:
                try:
                    with socket.socket(socket.AF_UNIX) as probe:
                        probe.connect(str(socket_path))
                    break
                except OSError:
                    time.sleep(0.05)
        else:
            wait_for_port(port or 0, 120)
        return spamd

    yield start
    for spamd in started:
        if spamd.process.poll() is None:
            spamd.process.kill()
            spamd.process.wait(10)


@pytest.fixture
def db(tmp_path: Path, trained_db: Path) -> Path:
    copy = tmp_path / "db"
    shutil.copytree(trained_db, copy)
    return copy


def _check(db: Path, message: Path, tmp_path: Path) -> dict[str, object]:
    done = subprocess.run([sys.executable, "-m", "spamkit", "check", "--json", "--db", str(db),
                           "--config", str(tmp_path / "spamkit.toml"), str(message)],
                          capture_output=True, text=True, timeout=120)
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_spamc_gets_spamkit_checks_verdicts(start_spamd, db: Path, tmp_path: Path,  # type: ignore[no-untyped-def]
                                            split: tuple[list[CorpusMessage], list[CorpusMessage]]) -> None:
    """spamc -c, -y, -R and plain spamc (PROCESS) on a test-fold spam and ham: the scores
    and rules are those `spamkit check` gives on the same database."""
    _, test = split
    spam = next(m for m in test if m.label == "spam").data
    ham = next(m for m in test if m.label == "ham").data
    spamd = start_spamd(db)
    for data, is_spam in ((spam, True), (ham, False)):
        (tmp_path / "m.eml").write_bytes(data)
        expected = _check(db, tmp_path / "m.eml", tmp_path)
        assert (expected["verdict"] != "ham") is is_spam
        checked = spamd.spamc(data, "-c")
        assert checked.returncode == (1 if is_spam else 0), checked
        assert checked.stdout.decode().strip() == f"{expected['score']:.1f}/{expected['required']:.1f}"
        symbols = spamd.spamc(data, "-y").stdout.decode().strip()
        assert symbols == ",".join(sorted(rule["name"] for rule in expected["rules"]))  # type: ignore[index, union-attr]
        report = spamd.spamc(data, "-R").stdout.decode()
        assert report.startswith(f"{expected['score']:.1f}/{expected['required']:.1f}\n")
        assert "Content analysis: score" in report
        processed = spamd.spamc(data)
        assert processed.returncode == 0
        head, _, body = processed.stdout.partition(b"\n\n")
        assert f"X-Spam-Status: {'Yes' if is_spam else 'No'}, score={expected['score']:.1f}".encode() in head
        assert (b"X-Spam-Flag: YES" in head) is is_spam
        assert b"autolearn=disabled" in head  # (this spamd does not learn: no --autolearn)
        assert body and body in data.replace(b"\r\n", b"\n")  # the message itself comes back
        # the corpus's files start with an mbox "From " line, as procmail gives spamc the
        # message: it comes back first, as SpamAssassin's spamd keeps it
        assert data.startswith(b"From ") and head.startswith(data.split(b"\n", 1)[0] + b"\nX-Spam-")
    assert spamd.spamc(b"", "-K").returncode == 0  # PING
    code, log = spamd.stop()
    assert code == 0
    assert "method=CHECK" in log and "method=PROCESS" in log and "reply='SPAMD/1.1 0 EX_OK'" in log
    # `spamkit mailstats` counts these requests from the same log
    from smtpfilter.mailstats import MailStats, read_line

    stats = MailStats(tag_level=5.0)
    stats.add_all(event for line in log.splitlines() if (event := read_line(line)) is not None)
    # four requests about each message and a PING; the spam's four said it was spam
    assert stats.as_json()["spamd"] == {"requests": 9, "spam": 4, "failed": 0}


def test_tell_learns_only_when_allowed(start_spamd, db: Path,  # type: ignore[no-untyped-def]
                                       split: tuple[list[CorpusMessage], list[CorpusMessage]]) -> None:
    """spamc -L spam|ham|forget: refused unless spamd was started with --allow-tell (as
    SpamAssassin's spamd), then learned once, forgotten, learned again as ham and forgotten:
    the byte model ends as it began."""
    _, test = split
    message = next(m for m in test if m.label == "spam").data

    def totals() -> tuple[int, int]:
        with LmdbStore(db, readonly=True) as store:
            found = store.totals()
        return found.nspam, found.nham

    def byte_model() -> ByteModel:
        with LmdbStore(db, readonly=True) as store:
            model = read_model(store.meta_value(META_NAME))
        assert model is not None
        return model

    before, first_model = totals(), byte_model()
    closed = start_spamd(db)
    refused = closed.spamc(message, "-L", "spam")
    assert refused.returncode != 0 and totals() == before
    assert closed.stop()[0] == 0

    spamd = start_spamd(db, "--allow-tell")
    assert spamd.spamc(message, "-L", "spam").stdout == b"Message successfully un/learned\n"
    assert totals() == (before[0] + 1, before[1])
    assert spamd.spamc(message, "-L", "spam").stdout == b"Message was already un/learned\n"
    assert spamd.spamc(message, "-L", "forget").stdout == b"Message successfully un/learned\n"
    assert totals() == before
    assert spamd.spamc(message, "-L", "ham").stdout == b"Message successfully un/learned\n"
    assert totals() == (before[0], before[1] + 1)
    taught = byte_model()
    assert not np.array_equal(taught.weights, first_model.weights)  # a spam taught as ham moves it
    assert spamd.spamc(message, "-L", "forget").stdout == b"Message successfully un/learned\n"
    assert totals() == before
    forgotten = byte_model()  # each forget took back the step its TELL had taken
    assert forgotten.steps == first_model.steps
    np.testing.assert_allclose(forgotten.weights, first_model.weights, atol=1e-6)
    assert spamd.stop()[0] == 0


def test_a_unix_socket_takes_spamc_and_a_stale_one_is_replaced(start_spamd, db: Path,  # type: ignore[no-untyped-def]
                                                              split) -> None:
    _, test = split
    spamd = start_spamd(db, "--socket-mode", "0660", unix=True)
    assert spamd.socket_path is not None
    assert stat.S_IMODE(spamd.socket_path.stat().st_mode) == 0o660
    message = next(m for m in test if m.label == "spam").data
    assert spamd.spamc(message, "-c").returncode == 1
    code, log = spamd.stop()
    assert code == 0
    # removed, unless the user it became may not write the directory (as here, under root)
    assert not spamd.socket_path.exists() or "could not remove" in log
    again = start_spamd(db, unix=True)  # a socket left behind is replaced
    assert again.spamc(message, "-c").returncode == 1
    assert again.stop()[0] == 0


def test_a_socket_that_cannot_be_made_names_its_path(db: Path, tmp_path: Path) -> None:
    """A --socket in a directory that is not there said only "No such file or directory"."""
    user = ("--user", "nobody") if os.geteuid() == 0 else ()
    done = subprocess.run([sys.executable, "-m", "spamkit", "spamd", "--socket", str(tmp_path / "no" / "spamd.sock"),
                           "--db", str(db), "--config", str(tmp_path / "none.toml"), *user],
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 74
    assert f"{tmp_path / 'no' / 'spamd.sock'}: No such file or directory" in done.stderr



def test_options_a_socket_or_a_port_would_ignore_are_refused(db: Path, tmp_path: Path) -> None:
    """--listen and --allowed-ips with --socket, and --socket-mode without it, were ignored
    without a word: spamd listened on the socket alone, open to whoever its mode lets in."""
    socket_path = str(tmp_path / "spamd.sock")
    for options, said in ((("--socket", socket_path, "--listen", "127.0.0.1:7830"), "--listen with --socket"),
                          (("--socket", socket_path, "--allowed-ips", "10.0.0.1"), "--allowed-ips with --socket"),
                          (("--socket-mode", "0600",), "--socket-mode is for --socket")):
        done = subprocess.run([sys.executable, "-m", "spamkit", "spamd", *options, "--db", str(db),
                               "--config", str(tmp_path / "none.toml"), "--user", "nobody"],
                              capture_output=True, text=True, timeout=180)
        assert done.returncode == 2 and said in done.stderr, (options, done.stderr)
    assert not (tmp_path / "spamd.sock").exists()


def test_what_is_not_the_protocol_gets_an_error_code_and_never_a_verdict(
        start_spamd, db: Path) -> None:  # type: ignore[no-untyped-def]
    """Raw requests spamc would not send: each answered with a sysexits code alone; a
    client outside --allowed-ips is not answered at all."""
    spamd = start_spamd(db, config="")
    message = b"Subject: hello\r\n\r\nplain words\r\n"
    assert spamd.ask(b"PING SPAMC/1.5\r\n\r\n") == b"SPAMD/1.5 0 PONG\r\n"
    assert spamd.ask(b"FETCH SPAMC/1.5\r\n\r\n").startswith(b"SPAMD/1.1 76 unknown method")
    assert spamd.ask(b"hello there\r\n\r\n").startswith(b"SPAMD/1.1 76 bad method line")
    assert spamd.ask(b"CHECK SPAMC/1.5\r\nno colon\r\n\r\n").startswith(b"SPAMD/1.1 76 bad header line")
    assert spamd.ask(b"CHECK SPAMC/1.5\r\nContent-length: 99\r\n\r\nshort").startswith(
        b"SPAMD/1.1 76 the message ended before its Content-length")
    assert spamd.ask(b"CHECK SPAMC/1.5\r\nContent-length: 999999999999\r\n\r\n").startswith(
        b"SPAMD/1.1 65 message of 999999999999 bytes is over")
    assert spamd.ask(b"CHECK SPAMC/1.5\r\n" + b"X: y\r\n" * 101 + b"\r\n").startswith(
        b"SPAMD/1.1 76 too many headers")
    assert spamd.ask(b"CHECK SPAMC/1.5\r\nX: " + b"a" * 70000 + b"\r\n\r\n").startswith(
        b"SPAMD/1.1 76 line too long")
    assert spamd.ask(b"TELL SPAMC/1.5\r\nMessage-class: spam\r\nSet: local\r\n\r\n" + message
                     ).startswith(b"SPAMD/1.1 77 TELL is not allowed here")
    assert spamd.ask(b"SKIP SPAMC/1.5\r\n\r\n") == b""
    assert spamd.ask(b"CHECK SPAMC/1.5\r\nUser: x\r\n").startswith(
        b"SPAMD/1.1 76 the connection closed in the headers")
    assert spamd.ask(b"") == b""  # a port probe: no answer, and no log line
    # Compress: zlib (spamc -z; Debian's spamc is built without it)
    plain = spamd.ask(b"CHECK SPAMC/1.5\r\n\r\n" + message)
    squeezed = spamd.ask(b"CHECK SPAMC/1.5\r\nCompress: zlib\r\n\r\n" + zlib.compress(message))
    assert plain.startswith(b"SPAMD/1.1 0 EX_OK\r\nSpam: False ; ") and squeezed == plain
    assert spamd.ask(b"CHECK SPAMC/1.5\r\nCompress: zlib\r\n\r\nnot zlib").startswith(
        b"SPAMD/1.1 65 Compress: zlib, but the message is not")
    assert spamd.ask(b"PING SPAMC/1.5\r\n\r\n", source="127.0.0.2") == b""  # not allowed
    # any byte string is a message: it gets a verdict
    for junk in (b"\x00\xff" * 5000, b"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n"):
        length = str(len(junk)).encode()
        assert spamd.ask(b"PROCESS SPAMC/1.5\r\nContent-length: " + length + b"\r\n\r\n" + junk
                         ).startswith(b"SPAMD/1.1 0 EX_OK\r\nContent-length: ")
    code, log = spamd.stop()
    assert code == 0 and "connection from 127.0.0.2 refused" in log


def test_allowed_ips_takes_spamd_s_prefix_form(start_spamd, db: Path) -> None:  # type: ignore[no-untyped-def]
    """SpamAssassin's spamd takes `-A 192.168.1.` (a prefix of whole octets): so does ours."""
    spamd = start_spamd(db, "--allowed-ips", "127.0.0.,::1", config="")
    assert spamd.ask(b"PING SPAMC/1.5\r\n\r\n", source="127.0.0.2") == b"SPAMD/1.5 0 PONG\r\n"
    assert spamd.ask(b"PING SPAMC/1.5\r\n\r\n", source="127.0.1.2") == b""
    code, log = spamd.stop()
    assert code == 0 and "connection from 127.0.1.2 refused" in log
    assert log.count("spamd: client=") == spamd.answered  # one line each; none for SKIP or a probe


@pytest.mark.skipif(os.geteuid() != 0, reason="refusing root needs root")
def test_spamd_will_not_run_as_root(db: Path) -> None:
    refused = subprocess.run([sys.executable, "-m", "spamkit", "spamd", "--listen",
                              f"127.0.0.1:{free_port()}", "--db", str(db)],
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "spamkit spamd will not run as root" in refused.stderr


def test_after_giving_up_root_it_scans_what_needs_lazy_imports(start_spamd, db: Path, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                                split) -> None:
    """Debian's rules (their date checks import email.utils on first use) and a charset
    no message had used yet (its codec is imported on first use): on this machine Python
    lives under /root, which the user spamd becomes cannot read, so both must be loaded
    before it gives up root (Scanner.warm_up). Before that, every such scan answered
    EX_SOFTWARE and spamc passed the mail on unscanned."""
    _, test = split
    config = 'UseBayes = false\nUseBuiltinRules = false\nRulePaths = ["/usr/share/spamassassin"]\n'
    spamd = start_spamd(db, config=config)
    koi8 = ("Subject: " + "привет").encode("koi8-r")
    russian = (b"Date: Mon, 2 Sep 2002 09:59:00 +0000\r\nFrom: a@example.org\r\n" + koi8 +
               b"\r\nContent-Type: text/plain; charset=koi8-r\r\n\r\n" + "скидки".encode("koi8-r") + b"\r\n")
    for data in [m.data for m in test if m.label == "spam"][:5] + [russian]:
        (tmp_path / "m.eml").write_bytes(data)
        expected = _check(db, tmp_path / "m.eml", tmp_path)
        checked = spamd.spamc(data, "-c")
        assert checked.stdout.decode().strip() == f"{expected['score']:.1f}/{expected['required']:.1f}"
    code, log = spamd.stop()
    assert code == 0 and "internal error" not in log


def test_pyzor_is_asked_about_each_message_with_pyzor(start_spamd, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                      pyzord: Pyzord) -> None:
    """spamd --pyzor asks Debian's pyzord, as SpamAssassin's spamd asks with its Pyzor
    plugin; PROCESS gives the message back with the answer in X-Spamkit-Pyzor (ours
    alone: the sender's is removed), as the filter delivers it. It runs as nobody, so
    what Pyzor's client loads was loaded before root was given up."""
    from tests.smtpfilter.test_pyzor import message

    reported, forged = message(31), message(32, "X-Spamkit-Pyzor: listed, forged\r\n")
    pyzord.tell("report", reported, 5)
    spamd = start_spamd(tmp_path / "no-db", "--pyzor",
                        config=f'UseBayes = false\nPyzorServers = ["{pyzord.address}"]\n')
    assert "PYZOR_CHECK" in spamd.spamc(reported, "-y").stdout.decode().split(",")
    assert "PYZOR_CHECK" not in spamd.spamc(forged, "-y").stdout.decode().split(",")
    for data, verdict, times in ((reported, "listed", 5), (forged, "not listed", 0)):
        head = spamd.spamc(data).stdout.partition(b"\r\n\r\n")[0]
        assert [line.decode() for line in head.split(b"\r\n") if line.startswith(b"X-Spamkit-Pyzor")] == \
            [f"X-Spamkit-Pyzor: {verdict}, reported {times} times, welcomelisted 0 times, by {pyzord.address}"]
    code, log = spamd.stop()
    assert code == 0 and "internal error" not in log


def test_a_user_given_as_an_address_gets_their_own_lists(start_spamd, db: Path, tmp_path: Path  # type: ignore[no-untyped-def]
                                                         ) -> None:
    """spamc -u alice@example.org: alice's blacklist entry (`spamkit wbl add black
    PATTERN --user alice@example.org`) applies to her mail and to no one else's. An
    entry for an account name (carol) applies to `spamc -u carol`, as procmail calls it
    with $LOGNAME; spamd used to read a user without @ as no recipient at all."""
    spamd_config = tmp_path / "spamkit.toml"
    spamd_config.write_text("")
    for user in ("alice@example.org", "carol"):
        added = subprocess.run([sys.executable, "-m", "spamkit", "wbl", "add", "black", "*@pest.example",
                                "--user", user, "--config", str(spamd_config)],
                               capture_output=True, text=True, timeout=60)
        assert added.returncode == 0, added.stderr
    spamd = start_spamd(db)
    message = b"From: someone@pest.example\r\nSubject: lunch\r\n\r\nsee you at noon\r\n"
    hers = spamd.spamc(message, "-u", "alice@example.org", "-y")
    assert hers.returncode == 0 and b"USER_IN_BLACKLIST" in hers.stdout
    assert spamd.spamc(message, "-u", "alice@example.org", "-c").returncode == 1  # spam
    for other in ("bob@example.org", "alice"):
        assert b"BLACKLIST" not in spamd.spamc(message, "-u", other, "-y").stdout
    for carol in ("carol", "carol@example.org"):
        assert b"USER_IN_BLACKLIST" in spamd.spamc(message, "-u", carol, "-y").stdout
    assert spamd.stop()[0] == 0


def _start_with_tag_level_10(db: Path, *options: str) -> tuple[Spamd, Path]:
    """spamd with a configuration (TagLevel 10) in a directory of its own, which the user
    it becomes can read, for a test to change and reload: (spamd, that directory)."""
    import tempfile

    etc = Path(tempfile.mkdtemp(prefix="spamkit-etc-"))
    etc.chmod(0o755)
    config = etc / "spamkit.toml"
    config.write_text('Sensitivity = "custom"\nTagLevel = 10\n')
    config.chmod(0o644)
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "spamkit", "spamd", "--listen", f"127.0.0.1:{port}",
                                "--db", str(db), "--config", str(config), *options,
                                *(["--user", "nobody"] if os.geteuid() == 0 else [])],
                               stderr=subprocess.PIPE)
    return Spamd(process, port, None), etc


def test_sighup_reads_the_configuration_and_lists_again(db: Path, tmp_path: Path) -> None:
    """SIGHUP (`systemctl reload`): a new TagLevel and a new blacklist entry apply to the
    next request; a typo is logged and changes nothing."""
    spamd, etc = _start_with_tag_level_10(db)
    config, process, port = etc / "spamkit.toml", spamd.process, spamd.port or 0
    message = b"From: someone@pest.example\r\nSubject: lunch\r\n\r\nsee you at noon\r\n"
    try:
        wait_for_port(port, 30)
        assert spamd.spamc(message, "-c").returncode == 0
        listed = subprocess.run([sys.executable, "-m", "spamkit", "wbl", "add", "black", "*@pest.example",
                                 "--config", str(config)], capture_output=True, text=True, timeout=60)
        assert listed.returncode == 0, listed.stderr
        (etc / "lists").chmod(0o644)
        process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while b"USER_IN_BLACKLIST" not in spamd.spamc(message, "-y").stdout:
            assert time.monotonic() < deadline, "the reload never took effect"
            time.sleep(0.3)
        config.write_text('Sensitivity = "custom"\nTagLevel = 1\nTagLevle = 2\n')  # a typo
        process.send_signal(signal.SIGHUP)
        time.sleep(2)
        checked = spamd.spamc(message, "-c")
        assert checked.stdout.decode().strip().endswith("/10.0")  # the typo changed nothing
    finally:
        code, log = spamd.stop()
        shutil.rmtree(etc, ignore_errors=True)
    assert code == 0
    assert "reload: configuration and rules" in log
    assert f"{config}:3" in log and "the configuration read at the last good start" in log


def test_a_token_database_gone_answers_as_when_database_down_says(start_spamd, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Reliability checklist 12 for the spamd front end: with its Redis stopped, spamd
    answers EX_TEMPFAIL (WhenDatabaseDown = tempfail, the default; spamc then passes the
    message on unscanned), or scores with the rules alone (rules); never a verdict of ham
    from a database it could not read."""
    from tests.servers.redis import start_redis

    (tmp_path / "redis").mkdir()
    servers = start_redis(tmp_path / "redis")
    redis = next(servers)
    url = redis.url(prefix="spamd-test:")
    tempfail = start_spamd(url)
    rules_only = start_spamd(url, config='WhenDatabaseDown = "rules"\n')
    message = b"Subject: hello\r\nFrom: a@example.org\r\n\r\nplain words\r\n"
    request = b"CHECK SPAMC/1.5\r\nContent-length: " + str(len(message)).encode() + b"\r\n\r\n" + message
    assert tempfail.ask(request).startswith(b"SPAMD/1.1 0 EX_OK\r\nSpam: False ; ")
    redis.process.terminate()
    redis.process.wait(10)
    started = time.monotonic()
    assert tempfail.ask(request) == b"SPAMD/1.1 75 the token database is unavailable\r\n"
    assert time.monotonic() - started < 5
    assert rules_only.ask(request).startswith(b"SPAMD/1.1 0 EX_OK\r\nSpam: False ; ")
    processed = rules_only.spamc(message)  # (the rules' verdict says it was scored without the database)
    assert processed.returncode == 0 and b"autolearn=unavailable" in processed.stdout
    unscanned = tempfail.spamc(message)  # spamc's safe fallback: the message, unchanged
    assert unscanned.returncode == 0 and unscanned.stdout == message
    for spamd in (tempfail, rules_only):
        code, log = spamd.stop()
        assert code == 0 and "token database unusable" in log


def test_many_large_requests_at_once_hold_memory_for_max_children_only(start_spamd, db: Path) -> None:  # type: ignore[no-untyped-def]
    """Reliability checklist 4 for spamd: 12 clients each sending a 20 MB message at
    once. With --max-children 2 only two are read at a time (the others wait, unread, as
    for a free spamd child), so the daemon's peak memory grows by a few messages' worth,
    not by 240 MB; every client gets its answer."""
    import threading

    spamd = start_spamd(db, "--max-children", "2")
    status = Path(f"/proc/{spamd.process.pid}/status")

    def kib(field: str) -> int:
        line = next(line for line in status.read_text().splitlines() if line.startswith(field))
        return int(line.split()[1])

    before = kib("VmRSS:")
    body = b"Subject: big\r\n\r\n" + b"0123456789abcdef " * (20 * 1024 * 1024 // 17)
    request = b"CHECK SPAMC/1.5\r\nContent-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    answers: list[bytes] = []
    threads = [threading.Thread(target=lambda: answers.append(spamd.ask(request))) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert len(answers) == 12 and all(a.startswith(b"SPAMD/1.1 0 EX_OK\r\nSpam: ") for a in answers)
    grown_mib = (kib("VmHWM:") - before) / 1024
    assert grown_mib < 150, grown_mib  # 12 messages held at once would be 240 MiB and more
    assert spamd.stop()[0] == 0


def _children(parent: int) -> set[int]:
    """The live processes whose parent is `parent` (from /proc, as ps reads it)."""
    found = set()
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat_file.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # ended while we looked
        if int(fields[1]) == parent and fields[0] != "Z":
            found.add(int(stat_file.parent.name))
    return found


def _running(pid: int) -> bool:
    """Whether `pid` is a process that has not ended (a zombie has)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait_for(condition, what: str, seconds: float = 30):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while not (value := condition()):
        assert time.monotonic() < deadline, what
        time.sleep(0.05)
    return value


_SMALL = b"From: a@example.org\r\nSubject: lunch\r\n\r\nsee you at noon\r\n"


def test_processes_take_connections_only_with_a_free_slot(start_spamd, db: Path) -> None:  # type: ignore[no-untyped-def]
    """--processes 2 --max-children 2: two children of one slot each. Two requests held
    half-sent at once must be in different children (a child with no free slot takes no
    connection), and both are answered once whole."""
    spamd = start_spamd(db, "--processes", "2", "--max-children", "2")
    children = _wait_for(lambda: len(_children(spamd.process.pid)) == 2 and _children(spamd.process.pid),
                         "two children")
    request = b"CHECK SPAMC/1.5\r\nContent-length: " + str(len(_SMALL)).encode() + b"\r\n\r\n" + _SMALL
    held = [socket.create_connection(("127.0.0.1", spamd.port), timeout=30) for _ in range(2)]
    try:
        for connection in held:
            connection.sendall(request[:-10])
        time.sleep(0.5)  # both taken and waiting for the rest
        answers = []
        for connection in held:
            connection.sendall(request[-10:])
            connection.shutdown(socket.SHUT_WR)
            answer = b""
            while chunk := connection.recv(65536):
                answer += chunk
            answers.append(answer)
    finally:
        for connection in held:
            connection.close()
    assert all(a.startswith(b"SPAMD/1.1 0 EX_OK\r\n") for a in answers), answers
    assert spamd.spamc(_SMALL, "-c").returncode == 0
    code, log = spamd.stop()
    assert code == 0
    served_by = {int(line.split("spamkit.spamd[", 1)[1].split("]", 1)[0])
                 for line in log.splitlines() if "method=CHECK" in line}
    assert served_by == children, (served_by, children)
    from smtpfilter.mailstats import MailStats, read_line  # (its lines, a pid in them, still count)

    stats = MailStats(tag_level=5.0)
    stats.add_all(event for line in log.splitlines() if (event := read_line(line)) is not None)
    assert stats.as_json()["spamd"] == {"requests": 3, "spam": 0, "failed": 0}


def test_a_child_that_dies_is_replaced_and_sighup_starts_new_ones(db: Path, tmp_path: Path) -> None:
    """kill -9 of a child: another takes its place and requests go on. SIGHUP: the parent
    reads the configuration again and new children answer with it; SIGTERM ends them all."""
    spamd, etc = _start_with_tag_level_10(db, "--processes", "2")
    config, process, port = etc / "spamkit.toml", spamd.process, spamd.port or 0
    try:
        wait_for_port(port, 60)
        first = _wait_for(lambda: len(_children(process.pid)) == 2 and _children(process.pid), "two children")
        killed = min(first)
        os.kill(killed, signal.SIGKILL)
        second = _wait_for(lambda: (now := _children(process.pid)) and len(now) == 2 and killed not in now
                           and now, "a child in place of the one killed")
        for _ in range(4):
            checked = spamd.spamc(_SMALL, "-c")
            assert checked.returncode == 0 and checked.stdout.decode().strip().endswith("/10.0"), checked
        config.write_text('Sensitivity = "custom"\nTagLevel = 12\n')
        process.send_signal(signal.SIGHUP)
        third = _wait_for(lambda: (now := _children(process.pid)) and len(now) == 2 and not now & second
                          and now, "new children after SIGHUP")
        for _ in range(4):
            assert spamd.spamc(_SMALL, "-c").stdout.decode().strip().endswith("/12.0")
        config.write_text('Sensitivity = "custom"\nTagLevel = 1\nTagLevle = 2\n')  # a typo
        process.send_signal(signal.SIGHUP)
        time.sleep(2)
        assert _children(process.pid) == third  # the children it has go on, unchanged
        assert spamd.spamc(_SMALL, "-c").stdout.decode().strip().endswith("/12.0")
    finally:
        code, log = spamd.stop()
        shutil.rmtree(etc, ignore_errors=True)
    assert code == 0
    assert f"(pid {killed}) was killed by SIGKILL" in log
    assert log.count("new children start") == 1
    assert f"{config}:3" in log  # the typo, with its line
    # the supervisor waited for its children before it ended
    assert not any(_running(pid) for pid in first | second | third)


def test_children_stop_when_the_parent_is_killed(start_spamd, db: Path) -> None:  # type: ignore[no-untyped-def]
    """The parent killed with -9 cannot pass SIGTERM on: its children see it gone and stop
    by themselves, leaving no process on the port. On a Unix socket, too."""
    spamd = start_spamd(db, "--processes", "2", "--max-children", "4", unix=True)
    children = _wait_for(lambda: len(_children(spamd.process.pid)) == 2 and _children(spamd.process.pid),
                         "two children")
    assert spamd.spamc(_SMALL, "-c").returncode == 0
    spamd.process.kill()
    spamd.process.wait(10)
    _wait_for(lambda: not any(_running(pid) for pid in children), "children still running", 10)


def test_a_child_s_start_is_tried_once_and_its_failure_said() -> None:
    """try_in_a_child, which --processes runs before its children start for good: what
    the child raised comes back as its message, and a child killed says so."""
    from smtpfilter.prefork import try_in_a_child

    def fails() -> None:
        raise OSError("nobody cannot read /root/.pyenv")

    assert try_in_a_child(lambda: None) is None
    assert try_in_a_child(fails) == "nobody cannot read /root/.pyenv"
    assert try_in_a_child(lambda: os.kill(os.getpid(), signal.SIGKILL)) == "the child was killed by SIGKILL"


def test_a_child_that_cannot_run_is_not_forked_in_a_tight_loop(tmp_path: Path) -> None:
    """A child that ends at once is replaced after delays that double (0.1 s, 0.2 s, ...):
    a handful of starts in three seconds, not thousands; SIGTERM then ends the supervisor
    with status 0."""
    import logging

    from smtpfilter.prefork import Prefork

    starts = tmp_path / "starts"

    def child(index: int) -> int:
        with starts.open("a") as record:
            record.write(f"{time.monotonic()}\n")
        return 1

    supervisor = os.fork()
    if supervisor == 0:
        code = 1
        try:
            code = Prefork(1, child, lambda: False, logging.getLogger("test-prefork")).run()
        finally:
            os._exit(code)
    time.sleep(3)
    os.kill(supervisor, signal.SIGTERM)
    _, status = os.waitpid(supervisor, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    times = [float(line) for line in starts.read_text().split()]
    assert 3 <= len(times) <= 8, times
    assert times[-1] - times[-2] >= 0.5  # the delay has grown


def test_more_processes_than_children_is_refused(db: Path, tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "spamkit", "spamd", "--listen", f"127.0.0.1:{free_port()}",
                           "--db", str(db), "--processes", "3", "--max-children", "2",
                           *(["--user", "nobody"] if os.geteuid() == 0 else [])],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "--processes" in done.stderr and "3 processes cannot share 2 children" in done.stderr


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3000) | st.builds(
    lambda method, headers, body: method + b" SPAMC/1.5\r\n" + b"".join(headers) + b"\r\n" + body,
    st.sampled_from([b"CHECK", b"PROCESS", b"TELL", b"PING", b"SKIP", b"HEADERS", b"check"]),
    st.lists(st.sampled_from([b"Content-length: 5\r\n", b"Content-length: -1\r\n", b"Content-length: \xb2\r\n",
                              b"Content-length: \xc2\xb2\r\n", b"Content-length: " + b"9" * 5000 + b"\r\n",
                              b"Compress: zlib\r\n", b"User: \x00\xff\r\n", b"Set: local\r\n",
                              b"Message-class: spam\r\n", b": empty\r\n", b"X\r\n"]), max_size=5),
    st.binary(max_size=200)))
def test_any_bytes_are_a_request_or_a_protocol_error(data: bytes) -> None:
    """Whatever a client sends, reading it gives a request or one of the two errors the
    server answers (or drops silently); nothing else escapes, and an answer to a request
    always starts with a status line."""
    import asyncio

    from smtpfilter.spamd import ClientGone, ProtocolError, answer, read_request

    async def read() -> object:
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        return await read_request(reader, max_message=1000)

    try:
        request = asyncio.run(read())
    except ClientGone:
        assert data == b""
        return
    except ProtocolError as error:
        assert answer(error.code, str(error)).startswith(b"SPAMD/1.1 ")
        assert answer(error.code, str(error)).count(b"\r\n") == 1  # one line, whatever the input
        return
    assert request.method in {"CHECK", "PROCESS", "TELL", "PING", "SKIP", "HEADERS", "SYMBOLS",  # type: ignore[attr-defined]
                              "REPORT", "REPORT_IFSPAM"}
    assert len(request.body) <= 1000  # type: ignore[attr-defined]


def test_headers_gives_the_header_block_alone_whatever_the_body_holds(tmp_path: Path) -> None:
    """HEADERS (spamc --headers) answers the rewritten header block and its empty line;
    spamc puts the body back itself. An LF message whose body holds a CRLF once got the
    whole message back, its header block not found."""
    from smtpfilter.spamd import Request, SpamdService
    from spamkit.config import config_from_text
    from spamkit.verdict import Scanner

    service = SpamdService(Scanner.from_config(config_from_text("UseBayes = false\n", tmp_path / "c.toml", {}),
                                               None))
    for message, newline in ((b"From: a@example.net\nSubject: hi\n\nbody\r\nmore\r\n", b"\n"),
                             (b"From: a@example.net\r\nSubject: hi\r\n\r\nbody\r\n", b"\r\n")):
        answer = service.respond(Request("HEADERS", "1.5", body=message))
        status, _, body = answer.partition(b"\r\n\r\n")
        assert status.startswith(b"SPAMD/1.1 0 EX_OK")
        assert body.startswith(b"X-Spam-") and body.endswith(b"Subject: hi" + newline * 2), body


def test_a_client_that_takes_no_answer_frees_its_slot_and_sigterm_waits_a_bounded_time(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """One slot (--max-children 1), 1 s to take an answer and 1 s of stop wait, here (30 s
    in the daemon). A client whose PROCESS answer (8 MB) it never reads loses its connection
    after that second, and the next client gets its PONG; at the stop, a request that never
    finishes arriving is closed unanswered a second later, not READ_TIMEOUT later."""
    import asyncio
    import logging
    import threading

    from smtpfilter.networks import Networks
    from smtpfilter.spamd import SpamdServer, SpamdService
    from spamkit.config import config_from_text
    from spamkit.verdict import Scanner

    service = SpamdService(Scanner.from_config(config_from_text("UseBayes = false\n", tmp_path / "c.toml", {}),
                                               None))
    server = SpamdServer(service, Networks(["127.0.0.1"]), max_children=1, reply_timeout=1, stop_wait=1)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    serving = threading.Thread(target=lambda: loop.run_until_complete(server.serve([listener], stop)))
    caplog.set_level(logging.INFO, logger="spamkit.spamd")
    serving.start()
    try:
        body = b"Subject: big\r\n\r\n" + b"0123456789abcdef\r\n" * (8 * 1024 * 1024 // 18)
        deaf = socket.socket()
        deaf.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # (before connecting: a small window)
        deaf.connect(("127.0.0.1", port))
        deaf.sendall(b"PROCESS SPAMC/1.5\r\nContent-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", port), timeout=30) as next_client:
            next_client.sendall(b"PING SPAMC/1.5\r\n\r\n")
            assert next_client.recv(100).startswith(b"SPAMD/1.5 0 PONG")
        assert 1 <= time.monotonic() - started < 20
        deaf.close()
        half = socket.create_connection(("127.0.0.1", port), timeout=30)
        half.sendall(b"CHECK SPAMC/1.5\r\nContent-length: 100\r\n\r\nonly part")
        time.sleep(0.2)  # (taken: its slot is the one free)
        stopping = time.monotonic()
        loop.call_soon_threadsafe(stop.set)
        serving.join(30)
        assert not serving.is_alive() and time.monotonic() - stopping < 5
        assert half.recv(100) == b""  # closed, unanswered
        half.close()
    finally:
        loop.call_soon_threadsafe(stop.set)
        serving.join(30)
        loop.close()
        listener.close()
    said = [record.getMessage() for record in caplog.records]
    assert "spamd: client=127.0.0.1 took no answer in 1 s; its connection is closed" in said, said
    assert "spamd: stopping; 1 request(s) taken get up to 1 s to be answered" in said, said
    assert "spamd: 1 request(s) still unanswered after 1 s: closed without an answer" in said, said
