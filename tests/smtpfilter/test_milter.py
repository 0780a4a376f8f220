"""`spamkit milter`: a real Postfix (smtpd_milters) asks the filter chain at each stage,
and keeps what the filters wrote into the message."""

from __future__ import annotations

import contextlib
import email
import email.policy
import json
import os
import shutil
import signal
import smtplib
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corpora import CorpusMessage
from smtpfilter.milter import ADD_HEADER, INSERT_HEADER, HeaderEdit, assembled, fields, header_edits
from tests.servers.postfix import PostfixNextHop, start_postfix
from tests.servers.pyzord import SilentPyzorServer
from tests.servers.serve import sigterm_while_waiting, start_milter, stop_serve

HAM = (b"From: a@example.org\r\nTo: b@example.org\r\nDate: Tue, 25 Nov 2026 08:00:00 +0000\r\n"
       b"Message-ID: <minutes-1@example.org>\r\nSubject: minutes\r\n"
       b"X-Spam-Status: No, score=-20.0 (forged by the sender)\r\nX-Folded: one\r\n two\r\n\r\n"
       b"The minutes of today's meeting.\r\n")


STRANGER = ('LocalDomains = ["example.org"]\nRelayClients = []\nLocalNetworks = []\n'
            # (the default's, but for resolvable_fromhost: example.org is no mail domain)
            'SmtpFilters = ["relay", "badmailfrom", "badrcptto", "badhelo", "helo", '
            '"headers", "attachments", "spamscore"]\n')


@contextlib.contextmanager
def milter_behind_postfix(config: Path, db: Path | str, *options: str, main_cf: str = ""
                          ) -> Iterator[tuple[PostfixNextHop, subprocess.Popen[bytes]]]:
    """(Postfix, the milter's process): Postfix's smtpd asks `spamkit milter [options]` at
    each stage, with the milter_default_action the README gives, and puts what it accepts
    on hold; `main_cf` is added to its main.cf, where `{milter}` is the milter's address.
    The milter must have stopped with 0 when the block ends."""
    process, port = start_milter(db, config, *options)
    where = f"unix:{options[options.index('--socket') + 1]}" if "--socket" in options else f"inet:127.0.0.1:{port}"
    try:
        for postfix in start_postfix({}, main_cf=f"smtpd_milters = {where}\n"
                                                 "milter_default_action = tempfail\n"
                                                 + main_cf.format(milter=where)):
            yield postfix, process
    finally:
        if process.poll() is None:
            code, stderr = stop_serve(process)
            assert code == 0, stderr.decode(errors="replace")[-2000:]


@pytest.fixture
def postfix_with_milter(open_tmp: Path, trained_db: Path
                        ) -> Iterator[tuple[PostfixNextHop, Path, subprocess.Popen[bytes]]]:
    """(Postfix, the milter's config, its process), the test's client a stranger to the
    filter; the configuration where the milter can read it again once it gave up root."""
    config = open_tmp / "spamkit.toml"
    config.write_text('Sensitivity = "custom"\nTagLevel = 4\nRejectLevel = 1000\nSubjectTag = true\n'
                      'BadMailFrom = ["refused@example.net"]\nBadRcptTo = ["nobody@example.org"]\n'
                      'BadHelo = ["bad%host.*"]\n' + STRANGER)
    with milter_behind_postfix(config, trained_db) as (postfix, process):
        yield postfix, config, process


def _spam(split: tuple[list[CorpusMessage], list[CorpusMessage]]) -> CorpusMessage:
    """A test-fold spam that scores over TagLevel 4 (its Bayes probability alone does)."""
    return next(m for m in split[1] if m.label == "spam" and b"BAYES" not in m.data and b"\nSubject:" in m.data)


def _send(port: int, message: bytes, sender: str = "a@example.org",
          recipients: tuple[str, ...] = ("b@example.org",)) -> list[tuple[int, bytes]]:
    """The replies to MAIL, each RCPT and the data, of one message sent to Postfix."""
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
        client.ehlo("client.test")
        replies = [client.mail(sender)]
        replies += [client.rcpt(recipient) for recipient in recipients]
        if any(code == 250 for code, _ in replies[1:]):
            try:
                replies.append(client.data(message))
            except smtplib.SMTPDataError as error:
                replies.append((error.smtp_code, error.smtp_error))
    return replies


def test_postfix_keeps_the_headers_the_milter_writes(
        postfix_with_milter: tuple[PostfixNextHop, Path, subprocess.Popen[bytes]],
        split: tuple[list[CorpusMessage], list[CorpusMessage]]) -> None:
    """A ham gets X-Spam-Status No in place of the sender's forged one, a spam X-Spam-Flag
    YES and its subject tagged, both above Postfix's own Received header as a proxy filter
    writes them; the rest of each message, folded header and body included, is as sent."""
    postfix, _, _ = postfix_with_milter
    spam = _spam(split)
    sent = _send(postfix.port, HAM)
    assert sent[-1][0] == 250, sent
    assert _send(postfix.port, spam.data.replace(b"\n", b"\r\n"))[-1][0] == 250
    held = {email.message_from_bytes(raw, policy=email.policy.compat32)["Message-ID"]: raw
            for raw in postfix.messages()}
    ham = held.pop("<minutes-1@example.org>")
    [tagged] = held.values()
    parsed = email.message_from_bytes(ham, policy=email.policy.compat32)
    assert [value.split(",")[0] for value in parsed.get_all("X-Spam-Status")] == ["No"]
    assert "forged" not in ham.decode()
    assert ham.index(b"X-Spam-Status") < ham.index(b"Received: from client.test")
    assert b"X-Folded: one\n two\n" in ham and ham.endswith(b"\nThe minutes of today's meeting.\n")
    assert parsed["Subject"] == "minutes"
    parsed = email.message_from_bytes(tagged, policy=email.policy.compat32)
    assert parsed["X-Spam-Flag"] == "YES" and parsed["Subject"].startswith("***SPAM***")
    assert len(parsed.get_all("Subject")) == 1


def test_refusals_are_postfixs_replies(postfix_with_milter: tuple[PostfixNextHop, Path, subprocess.Popen[bytes]]) -> None:
    """A sender BadMailFrom names is refused at MAIL; a recipient BadRcptTo names at its
    RCPT, the others of the message going on; each in the filter's words, a "%" in them
    included (Postfix dropped it: a HELO of "bad%host" was quoted as "badhost")."""
    postfix, _, _ = postfix_with_milter
    with smtplib.SMTP("127.0.0.1", postfix.port, timeout=60) as client:
        client.ehlo("bad%host.example")
        code, reply = client.mail("a@example.org")
    assert code == 550 and b"bad%host.example" in reply, reply
    refused_sender = _send(postfix.port, HAM, sender="refused@example.net")
    assert refused_sender[0][0] == 550, refused_sender
    one_refused = _send(postfix.port, HAM, recipients=("nobody@example.org", "b@example.org"))
    assert one_refused[1][0] == 550 and one_refused[2][0] == 250 and one_refused[3][0] == 250, one_refused
    assert postfix.held() == [("a@example.org", ["b@example.org"])]


HIDDEN = (b"Received", b" (Postfix's own, not shown to the milter)")


def _as_postfix_applies(before: list[tuple[bytes, bytes]], edits: list[HeaderEdit]) -> list[tuple[bytes, bytes]]:
    """The header section after `edits`, as Postfix's cleanup applies them (seen above in a
    real Postfix): its own Received first, counted by INSHEADER's index; CHGHEADER's
    index counts the fields of its name, an empty value removing the field; ADDHEADER
    appends."""
    section = [HIDDEN, *before]
    for edit in edits:
        if edit.command == ADD_HEADER:
            section.append((edit.name, edit.value))
        elif edit.command == INSERT_HEADER:
            section.insert(edit.index, (edit.name, edit.value))
        else:
            named = [k for k, (name, _) in enumerate(section)
                     if name.lower() == edit.name.lower() and (name, _) != HIDDEN]
            k = named[edit.index - 1]
            if edit.value:
                section[k] = (section[k][0], edit.value)
            else:
                del section[k]
    return section


_FIELD = st.tuples(st.sampled_from([b"Subject", b"X-Spam-Status", b"x-spam-status", b"From", b"X-A"]),
                   st.sampled_from([b" a", b" b", b" c\n\td"]))


@given(st.lists(_FIELD, max_size=4),
       st.lists(st.sampled_from([b"\r\n", b"Subject: not a field\r\n", b"text", b":"]), max_size=6).map(b"".join))
@settings(max_examples=300, deadline=None)
def test_a_message_put_together_comes_apart_as_it_was(headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    """The message scored is the MTA's fields and body put together, and what the filters
    leave is taken apart the same way: a message with no field at all, whose body has
    empty lines and lines like fields, gave the body's first lines as fields (edits that
    would have written them into the header) and the rest as its body."""
    assert fields(assembled(headers, body)) == (headers, body)


@given(st.lists(_FIELD, max_size=8), st.data())
@settings(max_examples=600, deadline=None)
def test_header_edits_turn_one_section_into_the_other(before: list[tuple[bytes, bytes]], data: st.DataObject) -> None:
    """Whatever the filters did to the header section (fields put on top, taken out, changed,
    put in the middle or at the end), the edits sent make Postfix's copy the same, with
    Postfix's own Received header below what went on top and above every field it had."""
    top = data.draw(st.lists(_FIELD, max_size=3))
    after = top + list(before)
    changes = data.draw(st.integers(0, 3))
    for _ in range(changes):
        if after:
            k = data.draw(st.integers(0, len(after) - 1))
            operation = data.draw(st.sampled_from(["remove", "change", "insert"]))
            if operation == "remove":
                del after[k]
            elif operation == "change":
                after[k] = (after[k][0], data.draw(_FIELD)[1])
            else:
                after.insert(k, data.draw(_FIELD))
    appended = data.draw(st.lists(_FIELD, max_size=2))
    after += appended
    result = _as_postfix_applies(before, header_edits(before, after))

    def folded(fields: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        return [(name.lower(), value) for name, value in fields]  # (a field's name has no case)

    assert folded([field for field in result if field != HIDDEN]) == folded(after)
    if not changes and not appended and not set(folded(top)) & set(folded(before)):
        # (the usual case: the filters' own fields on top; a field like one already
        # there could as well be the one further down)
        assert folded(result) == folded([*top, HIDDEN, *before])


def test_a_reload_puts_a_reject_level_in_force_and_spam_over_it_is_refused_at_the_dot(
        postfix_with_milter: tuple[PostfixNextHop, Path, subprocess.Popen[bytes]], trained_db: Path,
        split: tuple[list[CorpusMessage], list[CorpusMessage]]) -> None:
    """SIGHUP reads the configuration again: with RejectLevel lowered, a spam scoring over
    it hears the filter's 5xx at the end of its data, through Postfix, and nothing is
    queued; a ham still goes through."""
    postfix, config, process = postfix_with_milter
    config.write_text(config.read_text().replace("RejectLevel = 1000", "RejectLevel = 4"))
    os.kill(process.pid, signal.SIGHUP)
    spam = _spam(split)
    deadline = time.monotonic() + 30
    while (sent := _send(postfix.port, spam.data.replace(b"\n", b"\r\n")))[-1][0] == 250:
        assert time.monotonic() < deadline, "the reload never took effect"
        postfix.clear()
        time.sleep(0.2)
    assert sent[-1][0] == 550 and b"5.7.1" in sent[-1][1], sent
    assert postfix.held() == []
    assert _send(postfix.port, HAM)[-1][0] == 250


def test_a_footer_is_written_into_postfixs_copy(open_tmp: Path, trained_db: Path) -> None:
    """The disclaimer filter changes the body: the milter replaces Postfix's copy of it
    (REPLBODY), so mail our users send out carries the text."""
    (open_tmp / "disclaimer").write_text("Example Ltd, Cardiff\n")
    config = open_tmp / "spamkit.toml"
    config.write_text('LocalNetworks = ["127.0.0.0/8"]\nLocalDomains = ["example.com"]\n'
                      'SmtpFilters = ["disclaimer", "spamscore"]\n')
    note = (b"From: Ann <ann@example.com>\r\nTo: bob@example.org\r\nSubject: out\r\n"
            b"Date: Thu, 03 Dec 2026 10:00:00 +0000\r\nMessage-ID: <out@example.com>\r\n\r\n"
            b"Hello Bob,\r\nsee you at 10.\r\n")
    with milter_behind_postfix(config, trained_db) as (postfix, _):
        assert _send(postfix.port, note, sender="ann@example.com")[-1][0] == 250
        [held] = postfix.messages()
    assert held.endswith(b"\nHello Bob,\nsee you at 10.\n\nExample Ltd, Cardiff\n"), held[-200:]
    assert b"X-Spam-Status: No" in held


def test_a_database_that_is_down_defers_and_so_does_a_milter_that_is_not_running(tmp_path: Path) -> None:
    """With the token database unreachable, WhenDatabaseDown (tempfail) answers 451 at the
    end of the data: the sender keeps the message. With the milter stopped, Postfix's
    milter_default_action = tempfail, as the README sets it, does the same."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    config = tmp_path / "spamkit.toml"
    config.write_text(STRANGER)
    with milter_behind_postfix(config, f"redis://127.0.0.1:{closed}/0") as (postfix, process):
        down = _send(postfix.port, HAM)
        assert down[-1][0] == 451 and b"4.3.0" in down[-1][1], down
        assert stop_serve(process)[0] == 0
        stopped = _send(postfix.port, HAM)
        assert 400 <= stopped[0][0] < 500 or 400 <= stopped[-1][0] < 500, stopped
        assert postfix.held() == []



def _sendmail(postfix: PostfixNextHop, message: bytes) -> None:
    """`message` handed to Postfix as a local program does (sendmail(1), as root)."""
    subprocess.run(["sendmail", "-C", str(postfix.config), "-f", "root@example.org", "b@example.org"],
                   input=message, check=True, capture_output=True, timeout=60)


def _queued(postfix: PostfixNextHop, queue: str) -> list[str]:
    """The queue IDs in one of Postfix's queues (maildrop, hold, ...)."""
    out = subprocess.run(["postqueue", "-c", str(postfix.config), "-j"], capture_output=True,
                         text=True, check=True, timeout=30).stdout
    return [entry["queue_id"] for entry in map(json.loads, out.splitlines()) if entry["queue_name"] == queue]


def test_mail_a_local_program_sends_is_asked_about_too(open_tmp: Path, trained_db: Path,
                                                       split: tuple[list[CorpusMessage], list[CorpusMessage]]
                                                       ) -> None:
    """With non_smtpd_milters (the mail that cron, a web form or a webmail hands to
    Postfix's sendmail), Postfix asks the milter as if the message came from
    localhost[127.0.0.1], one of our own clients: its headers land above Postfix's own Received header (the
    pickup's "by ... from userid 0", which the milter is not shown either), a spam is
    tagged, a forged X-Spam-Status goes. With the database down, the 451 leaves the
    message in Postfix's maildrop, where its pickup tries it again: none is lost."""
    (open_tmp / "hold").write_text("/^Subject:/ HOLD\n")  # (the smtpd's HOLD does not see it)
    config = open_tmp / "spamkit.toml"
    config.write_text('Sensitivity = "custom"\nTagLevel = 4\nRejectLevel = 1000\nSubjectTag = true\n')
    local = f"non_smtpd_milters = {{milter}}\nheader_checks = regexp:{open_tmp}/hold\n"
    with milter_behind_postfix(config, trained_db, main_cf=local) as (postfix, _):
        _sendmail(postfix, HAM.replace(b"\r\n", b"\n"))
        _sendmail(postfix, _spam(split).data)
        deadline = time.monotonic() + 30
        while len(_queued(postfix, "hold")) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        held = {email.message_from_bytes(raw, policy=email.policy.compat32)["Subject"].startswith("***SPAM***"): raw
                for raw in postfix.messages()}
    ham, spam = held[False], held[True]
    assert "forged" not in ham.decode() and b"X-Spam-Status: No" in ham
    assert ham.index(b"X-Spam-Status") < ham.index(b"Received: by nexthop.test (Postfix, from userid 0)")
    assert ham.endswith(b"\nThe minutes of today's meeting.\n")
    assert b"X-Spam-Flag: YES" in spam
    assert spam.index(b"X-Spam-Flag") < spam.index(b"Received: by nexthop.test (Postfix, from userid 0)")
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    with milter_behind_postfix(config, f"redis://127.0.0.1:{closed}/0", main_cf=local) as (postfix, _):
        _sendmail(postfix, HAM.replace(b"\r\n", b"\n"))
        maillog = postfix.config.parent / "maillog"
        deadline = time.monotonic() + 30
        while b"milter-reject: END-OF-MESSAGE" not in maillog.read_bytes():
            assert time.monotonic() < deadline, maillog.read_text()[-2000:]
            time.sleep(0.1)
        assert b"4.3.0" in maillog.read_bytes().split(b"milter-reject: END-OF-MESSAGE")[1].split(b"\n")[0]
        assert len(_queued(postfix, "maildrop")) == 1 and _queued(postfix, "hold") == []


class _RawMta:
    """The MTA's side of the milter protocol, written out by hand, for what Postfix never
    sends: a broken packet, a session cut off, a transaction aborted halfway."""

    def __init__(self, port: int) -> None:
        import socket

        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)

    def send(self, command: bytes, data: bytes = b"") -> None:
        self.sock.sendall(struct.pack(">I", len(data) + 1) + command + data)

    def replies(self, until: bytes = b"cyrt") -> list[tuple[bytes, bytes]]:
        """Packets up to and including the first whose command is one of `until`."""
        got = []
        while True:
            length = struct.unpack(">I", self._exactly(4))[0]
            body = self._exactly(length)
            got.append((body[:1], body[1:]))
            if body[:1] in [bytes([c]) for c in until]:
                return got

    def _exactly(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self.sock.recv(size - len(data))
            if not chunk:
                raise ConnectionError("closed")
            data += chunk
        return data

    def session(self, peer: bytes = b"192.0.2.7") -> None:
        self.send(b"O", struct.pack(">III", 6, 0x1FF, 0x1FFFFF))
        assert self.replies(b"O")[0][0] == b"O"
        self.send(b"C", b"mail.example.net\0" + b"4" + struct.pack(">H", 4242) + peer + b"\0")
        assert self.replies() == [(b"c", b"")]
        self.send(b"H", b"mail.example.net\0")
        assert self.replies() == [(b"c", b"")]


@pytest.fixture
def bare_milter(open_tmp: Path) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """`spamkit milter` with the envelope checks and the rules, no Bayes, and no MTA."""
    config = open_tmp / "spamkit.toml"
    config.write_text(STRANGER + 'UseBayes = false\nBadMailFrom = ["refused@example.net"]\n')
    process, port = start_milter(open_tmp / "db", config)
    try:
        yield port, process
    finally:
        code, stderr = stop_serve(process)
        assert code == 0, stderr.decode(errors="replace")[-2000:]


def test_a_broken_or_cut_off_connection_closes_that_one_and_the_milter_goes_on(
        bare_milter: tuple[int, subprocess.Popen[bytes]]) -> None:
    """A packet longer than any the protocol sends, one of no length, a command it does not
    know, and an MTA gone in the middle of a message: each ends that connection (Postfix
    then applies milter_default_action), and the next connection is answered."""
    port, process = bare_milter
    for broken in (struct.pack(">I", 1 << 30) + b"B", struct.pack(">I", 0), struct.pack(">I", 1) + b"Z"):
        mta = _RawMta(port)
        mta.session()
        mta.sock.sendall(broken)
        with pytest.raises(ConnectionError):
            mta.replies()
    cut = _RawMta(port)
    cut.session()
    cut.send(b"M", b"<a@example.org>\0")
    cut.replies()
    cut.send(b"B", b"half a mess")
    cut.sock.close()
    mta = _RawMta(port)
    mta.session()
    mta.send(b"M", b"<refused@example.net>\0")
    [(code, reply)] = mta.replies()
    assert code == b"y" and reply.startswith(b"550 ") and reply.endswith(b"\0")
    assert process.poll() is None


def test_an_aborted_transaction_leaves_nothing_behind(bare_milter: tuple[int, subprocess.Popen[bytes]]) -> None:
    """ABORT (the client's RSET, or Postfix's own refusal of a recipient) drops the
    transaction's sender, recipients, headers and body: the next message on the same
    connection is scored as itself alone, and its edits name its own fields."""
    port, _ = bare_milter
    mta = _RawMta(port)
    mta.session()
    mta.send(b"M", b"<first@example.org>\0")
    mta.replies()
    mta.send(b"R", b"<one@example.org>\0")
    mta.replies()
    mta.send(b"L", b"Subject\0 first message\0")
    mta.send(b"A")
    mta.send(b"M", b"<second@example.org>\0")
    assert mta.replies() == [(b"c", b"")]
    mta.send(b"R", b"<two@example.org>\0")
    assert mta.replies() == [(b"c", b"")]
    for name, value in ((b"From", b" second@example.org"), (b"Subject", b" second message"),
                        (b"Date", b" Sun, 6 Dec 2026 12:00:00 +0000"), (b"X-Spam-Status", b" No, forged")):
        mta.send(b"L", name + b"\0" + value + b"\0")
    mta.send(b"N")
    assert mta.replies() == [(b"c", b"")]
    mta.send(b"B", b"hello\r\n")
    mta.send(b"E")
    answer = mta.replies()
    assert answer[-1] == (b"c", b""), answer
    edits = answer[:-1]
    assert (b"m", struct.pack(">I", 1) + b"X-Spam-Status\0\0") in edits  # (the forged one out)
    added = [data[4:].split(b"\0")[0] for command, data in edits if command == b"i"]
    assert b"X-Spam-Status" in added and all(command in b"mi" for command, _ in edits)
    assert not any(b"first" in data for _, data in edits)


def test_postfix_asks_over_a_unix_socket(open_tmp: Path, trained_db: Path) -> None:
    """--socket: Postfix's smtpd (as the postfix user) asks over a Unix socket of the
    mode given; the socket goes when the milter stops (from a directory of the milter's
    user, as /var/spool/postfix/spamkit would be). With --listen too, or --socket-mode
    without --socket, the command line is refused: one of them would be ignored."""
    config = open_tmp / "spamkit.toml"
    config.write_text(STRANGER)
    run = open_tmp / "run"
    run.mkdir()
    if os.geteuid() == 0:
        shutil.chown(run, "nobody")
    path = run / "milter.sock"
    with milter_behind_postfix(config, trained_db, "--socket", str(path), "--socket-mode", "666") as (postfix, _):
        assert oct(path.stat().st_mode & 0o777) == "0o666"
        assert _send(postfix.port, HAM)[-1][0] == 250
        [held] = postfix.messages()
        assert b"X-Spam-Status: No" in held
    assert not path.exists()
    for both in (["--socket", str(path), "--listen", "127.0.0.1:8897"], ["--socket-mode", "600"]):
        refused = subprocess.run([sys.executable, "-m", "spamkit", "milter", *both, "--config", str(config)],
                                 capture_output=True, text=True, timeout=60)
        assert refused.returncode == 2 and "--socket" in refused.stderr, refused.stderr


def test_a_login_postfix_names_is_one_of_ours(bare_milter: tuple[int, subprocess.Popen[bytes]]) -> None:
    """Postfix passes the user who logged in ({auth_authen}, one of its default MAIL
    macros): the filters treat the client as one of ours, so its mail to another domain
    is not refused as relaying, as a stranger's is."""
    port, _ = bare_milter
    for login, expected in ((b"", b"y"), (b"alice", b"c")):
        mta = _RawMta(port)
        mta.session(peer=b"198.51.100.20")
        if login:
            mta.send(b"D", b"M{auth_type}\0PLAIN\0{auth_authen}\0" + login + b"\0")
        mta.send(b"M", b"<alice@example.org>\0")
        assert mta.replies()[0][0] == b"c"
        mta.send(b"R", b"<bob@elsewhere.example>\0")
        [(code, reply)] = mta.replies()
        assert code == expected, reply


def test_checks_over_the_scan_budget_answer_451_and_the_milter_goes_on(open_tmp: Path, trained_db: Path) -> None:
    """A Pyzor server that never answers holds the DATA checks past ScanBudget (1 s here,
    PyzorTimeout 4 s): the milter answers 451 at 1 s, Postfix keeps nothing, and the next
    message, the pyzor filter dropped by a reload, goes through."""
    with SilentPyzorServer() as pyzor:
        config = open_tmp / "spamkit.toml"
        chain = 'SmtpFilters = ["pyzor", "spamscore"]\n'
        config.write_text(STRANGER.split("SmtpFilters")[0] + chain + "ScanBudget = 1\nPyzorTimeout = 4\n"
                          + pyzor.as_config)
        with milter_behind_postfix(config, trained_db) as (postfix, process):
            started = time.monotonic()
            late = _send(postfix.port, HAM)
            assert late[-1][0] == 451 and b"4.3.2" in late[-1][1], late
            assert time.monotonic() - started < 3.5
            assert postfix.held() == []
            config.write_text(config.read_text().replace(chain, 'SmtpFilters = ["spamscore"]\n'))
            os.kill(process.pid, signal.SIGHUP)
            deadline = time.monotonic() + 30
            while _send(postfix.port, HAM)[-1][0] != 250:
                assert time.monotonic() < deadline, "the milter did not go on"
                time.sleep(0.2)


def test_sigterm_lets_the_message_being_checked_be_answered_and_says_so(open_tmp: Path, trained_db: Path) -> None:
    """SIGTERM while a message waits on a silent Pyzor server: the milter's log says it
    stops with one message being checked, that message still gets its answer (451 at the
    3 s ScanBudget, so Postfix keeps nothing), and only once the check itself has ended
    (at PyzorTimeout, 5 s) does it say it stopped and exit 0."""
    with SilentPyzorServer() as pyzor:
        config = open_tmp / "spamkit.toml"
        config.write_text(STRANGER.split("SmtpFilters")[0] + 'SmtpFilters = ["pyzor", "spamscore"]\n'
                          'ScanBudget = 3\nPyzorTimeout = 5\n' + pyzor.as_config)
        with milter_behind_postfix(config, trained_db) as (postfix, process):
            replies, log = sigterm_while_waiting(process, lambda: _send(postfix.port, HAM), pyzor.asked)
            assert process.returncode == 0
            assert replies[-1][0] == 451 and b"4.3.2" in replies[-1][1], replies
            assert postfix.held() == []
    lines = log.decode(errors="replace").splitlines()
    stopping = next(i for i, line in enumerate(lines) if "SIGTERM: stopping." in line)
    assert "1 message(s) being checked get up to 30 s to be answered" in lines[stopping], lines[stopping]
    answered = next(i for i, line in enumerate(lines) if "took over 3s; answered 451" in line)
    given_up = next(i for i, line in enumerate(lines) if "did not answer" in line and "pyzor server" in line)
    assert stopping < answered < given_up < len(lines) - 1, lines[stopping:]
    assert lines[-1].endswith(" spamkit.smtpfilter stopped"), lines[stopping:]


def test_a_new_session_on_the_same_connection_starts_afresh(bare_milter: tuple[int, subprocess.Popen[bytes]]) -> None:
    """QUIT_NC (the MTA's next SMTP session on the connection it keeps): the client, HELO
    and login of the session before are forgotten, and the next is answered as its own."""
    port, _ = bare_milter
    mta = _RawMta(port)
    mta.session(peer=b"198.51.100.20")
    mta.send(b"D", b"M{auth_authen}\0alice\0")
    mta.send(b"M", b"<alice@example.org>\0")
    mta.replies()
    mta.send(b"R", b"<bob@elsewhere.example>\0")
    assert mta.replies() == [(b"c", b"")]  # (alice logged in: hers may go anywhere)
    mta.send(b"K")
    mta.send(b"C", b"mail.example.net\0" + b"4" + struct.pack(">H", 4242) + b"198.51.100.21\0")
    assert mta.replies() == [(b"c", b"")]
    mta.send(b"M", b"<alice@example.org>\0")
    mta.replies()
    mta.send(b"R", b"<bob@elsewhere.example>\0")
    [(code, reply)] = mta.replies()
    assert code == b"y" and b"Relay access denied" in reply
