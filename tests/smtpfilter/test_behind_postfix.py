"""`spamkit serve` as Postfix's before-queue filter (smtpd_proxy_filter), and what the
client's MAIL and RCPT parameters become on their way to the next hop."""

from __future__ import annotations

import functools
import re
import shutil
import smtplib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from corpora import CorpusMessage
from smtpfilter import parameters
from smtpfilter.limits import LimitedSMTP
from tests.servers.net import free_port
from tests.servers.postfix import start_postfix_after_queue, start_postfix_around_filter, start_postfix_in_front
from tests.servers.serve import start_serve, stop_serve
from tests.servers.smtp_client import Client
from tests.servers.smtp_sink import Sink, start_sink

MESSAGE = (b"From: a@example.org\r\nTo: b@example.org\r\nDate: Tue, 25 Nov 2026 08:00:00 +0000\r\n"
           b"Message-ID: <minutes-1@example.org>\r\nSubject: minutes\r\n\r\n"
           + "The minutes of today's meeting, café at ten.\r\n".encode())


def trace(relayed: bytes, name: bytes) -> list[str]:
    """What smtp-sink noted of the commands it was sent (X-Mail-Args, X-Rcpt-Args)."""
    return [line.split(b": ", 1)[1].decode() for line in relayed.split(b"\n")
            if line.startswith(name + b": ")]


@pytest.fixture
def filter_behind_postfix(tmp_path: Path, sink: Sink) -> Iterator[tuple[int, Path]]:
    """(Postfix's port, the filter's config), with the filter relaying to smtp-sink and
    keeping an archive copy."""
    config = tmp_path / "spamkit.toml"
    config.write_text('RelayClients = ["127.0.0.1"]\nBccAddress = "archive@example.org"\n')
    process, filter_port = start_serve(sink.port, tmp_path / "db", config, stderr=subprocess.DEVNULL)
    try:
        for port in start_postfix_in_front(filter_port):
            yield port, config
    finally:
        assert stop_serve(process)[0] == 0


def test_dsn_requests_reach_the_next_hop_as_the_sender_wrote_them(
        filter_behind_postfix: tuple[int, Path], sink: Sink) -> None:
    """Postfix hands its client's MAIL command to the before-queue filter as it came.
    aiosmtpd knows no DSN parameter, so every message whose sender asked for a delivery
    notification (RET, ENVID, NOTIFY, ORCPT; Exchange and Outlook do), or that named its
    authenticated sender (AUTH=<>, as Exim does), heard 555 and bounced. Now they are
    taken. The DSN ones go on to the next hop unchanged: ENVID and ORCPT in the case the
    sender wrote (aiosmtpd upper-cases the parameters it keeps), each recipient's with
    that recipient; AUTH stops here. The archive copy asks for no notification: its
    failure must not reach a sender who never named it."""
    port, _ = filter_behind_postfix
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
        client.ehlo("client.test")
        assert client.has_extn("dsn")
        assert client.mail("a@example.org", ["BODY=8BITMIME", "RET=HDRS", "ENVID=Qz+2B7a", "AUTH=<>"])[0] == 250
        assert client.rcpt("b@example.org", ["NOTIFY=SUCCESS,DELAY", "ORCPT=rfc822;Bee@Example.org"])[0] == 250
        assert client.rcpt("c@example.org")[0] == 250
        assert client.rcpt("d@example.org", ["NOTIFY=NEVER"])[0] == 250
        code, reply = client.data(MESSAGE)
    assert (code, reply) == (250, b"2.0.0 Ok: queued by next hop")
    [relayed] = sink.messages()
    [mail] = trace(relayed, b"X-Mail-Args")
    assert mail.split()[0] == "<a@example.org>"
    assert {"BODY=8BITMIME", "RET=HDRS", "ENVID=Qz+2B7a"} <= set(mail.split()[1:])
    assert "AUTH" not in mail  # (we do not vouch for the sender's authentication)
    assert trace(relayed, b"X-Rcpt-Args") == [
        "<b@example.org> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;Bee@Example.org",
        "<c@example.org>", "<d@example.org> NOTIFY=NEVER", "<archive@example.org> NOTIFY=NEVER"]


def test_a_next_hop_without_dsn_gets_the_message_without_the_requests(tmp_path: Path) -> None:
    """qmail offers no DSN: the message goes on without the parameters, as a relaying
    MTA sends it (RFC 3461 4.1), and is delivered rather than refused."""
    config = tmp_path / "spamkit.toml"
    config.write_text("")
    for sink in start_sink("-N", "-8"):
        process, port = start_serve(sink.port, tmp_path / "db", config, stderr=subprocess.DEVNULL)
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
                client.ehlo("client.test")
                assert client.mail("a@example.org", ["RET=FULL", "ENVID=x1", "BODY=8BITMIME"])[0] == 250
                assert client.rcpt("b@example.org", ["NOTIFY=FAILURE"])[0] == 250
                assert client.data(MESSAGE)[0] == 250
        finally:
            assert stop_serve(process)[0] == 0
        [relayed] = sink.messages()
        assert trace(relayed, b"X-Mail-Args") == ["<a@example.org>"]
        assert trace(relayed, b"X-Rcpt-Args") == ["<b@example.org>"]


def test_parameters_as_long_as_their_rfcs_allow_are_taken(tmp_path: Path, sink: Sink) -> None:
    """RFC 3461 lets a DSN request make RCPT 500 characters longer than SMTP's 512, and MAIL
    100 longer, and RFC 4954 lets AUTH= add 500 more to MAIL. aiosmtpd allowed 512 (538
    with SIZE), so a notification request for a long address (an SRS or VERP one, whose
    "=" xtext writes as "+3D") heard "500 Command line too long" and its message bounced.
    Its allowance was also shared by all sessions: a client connecting took back the one
    another session's EHLO had given. Over the allowance, the line is still refused."""
    config = tmp_path / "spamkit.toml"
    config.write_text("")
    original = "SRS0=" + "=".join(["Ab12"] * 66) + "@lists.example.org"  # (ORCPT: 500 at most)
    rcpt = f"RCPT TO:<b@example.org> NOTIFY=SUCCESS,FAILURE,DELAY ORCPT=rfc822;{original.replace('=', '+3D')}"
    mail = ("MAIL FROM:<a@example.org> SIZE=1000 BODY=8BITMIME RET=HDRS ENVID=" + "e" * 100
            + " AUTH=" + "u" * 450 + "@example.org")
    assert 512 + 26 < len(mail) <= 512 + 26 + 100 + 500 + 14 and 512 < len(rcpt) <= 512 + 500
    process, port = start_serve(sink.port, tmp_path / "db", config, stderr=subprocess.DEVNULL)
    try:
        client = Client(port)
        assert client.reply().startswith(b"220")
        assert client.command(b"EHLO client.test").startswith(b"250")
        other = Client(port)  # (its connection cleared the allowances aiosmtpd kept for all)
        assert other.reply().startswith(b"220")
        assert client.command(mail.encode()).startswith(b"250")
        assert client.command(rcpt.encode()).startswith(b"250")
        assert client.command(b"EHLO client.test").startswith(b"250")  # (a second EHLO adds nothing)
        assert client.command(b"RCPT TO:<c@example.org> ORCPT=rfc822;" + b"x" * 1000).startswith(b"500")
        assert client.command(mail.encode() + b"x" * 600).startswith(b"500")
        assert client.command(mail.encode()).startswith(b"250")
        assert client.command(rcpt.encode()).startswith(b"250")
        assert client.command(b"DATA").startswith(b"354")
        assert client.command(MESSAGE + b".").startswith(b"250")
        client.sock.close()
        other.sock.close()
    finally:
        assert stop_serve(process)[0] == 0
    [relayed] = sink.messages()
    assert trace(relayed, b"X-Rcpt-Args") == [rcpt.removeprefix("RCPT TO:")]


def test_malformed_dsn_parameters_are_refused_with_501(tmp_path: Path, sink: Sink) -> None:
    """A parameter that breaks RFC 3461 is refused alone, the way Postfix refuses it; the
    session goes on, and a well-formed retry is taken. After HELO (not EHLO) no parameter
    is taken at all, as before."""
    config = tmp_path / "spamkit.toml"
    config.write_text("")
    process, port = start_serve(sink.port, tmp_path / "db", config, stderr=subprocess.DEVNULL)
    try:
        client = Client(port)

        def say(command: str) -> str:
            return client.command(command.encode()).decode().split("\n")[-1]

        assert client.reply().startswith(b"220")
        assert say("HELO client.test").startswith("250")
        assert say("MAIL FROM:<a@example.org> RET=HDRS").startswith("501")
        assert say("EHLO client.test").startswith("250")
        for refused in ("MAIL FROM:<a@example.org> RET=ALL", "MAIL FROM:<a@example.org> RET=HDRS RET=FULL",
                        "MAIL FROM:<a@example.org> ENVID=" + "x" * 101, "MAIL FROM:<a@example.org> ENVID=a+zz",
                        "MAIL FROM:<a@example.org> ENVID", "MAIL FROM:<a@example.org> AUTH=a=b"):
            assert say(refused) == parameters.SYNTAX_ERROR, refused
        assert say("MAIL FROM:<a@example.org> ENVID=" + "x" * 100 + " AUTH=a+2Bb@example.org").startswith("250")
        for refused in ("RCPT TO:<b@example.org> NOTIFY=NEVER,SUCCESS", "RCPT TO:<b@example.org> NOTIFY=SOMETIMES",
                        "RCPT TO:<b@example.org> NOTIFY=DELAY,DELAY", "RCPT TO:<b@example.org> ORCPT=b@example.org",
                        "RCPT TO:<b@example.org> ORCPT=;b@example.org"):
            assert say(refused) == parameters.SYNTAX_ERROR, refused
        assert say("RCPT TO:<b@example.org> notify=failure orcpt=RFC822;b@example.org").startswith("250")
        assert say("DATA").startswith("354")
        assert client.command(MESSAGE + b".").startswith(b"250")
        client.sock.close()
    finally:
        assert stop_serve(process)[0] == 0
    [relayed] = sink.messages()
    assert trace(relayed, b"X-Mail-Args")[0].endswith("ENVID=" + "x" * 100)
    assert trace(relayed, b"X-Rcpt-Args") == ["<b@example.org> NOTIFY=failure ORCPT=RFC822;b@example.org"]


_PARAMETER = st.one_of(
    st.sampled_from(["RET=HDRS", "ret=full", "ENVID=a+2Bb", "NOTIFY=NEVER", "Notify=success,delay",
                     "ORCPT=rfc822;x@y", "AUTH=<>", "SIZE=100", "BODY=8BITMIME", "SMTPUTF8", "RET=", "ENVID"]),
    st.text(st.characters(blacklist_categories=("Zs", "Cc")), min_size=1, max_size=20))


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(["MAIL", "RCPT"]), st.text(max_size=300), st.lists(_PARAMETER, max_size=6))
@example("MAIL", "", ["(", "RET=HDRS"])  # ("(" opened a comment for the address parser: RET was lost)
def test_our_parameters_are_moved_never_lost_or_invented(command: str, noise: str, written: list[str]) -> None:
    """Whatever a client writes after MAIL or RCPT, the split never raises: it gives an
    argument for aiosmtpd with every other parameter in its place, and the DSN ones as
    written (names in capitals), or a 501 with the argument left as it came."""
    names = parameters.MAIL_PARAMETERS if command == "MAIL" else parameters.RCPT_PARAMETERS
    parse = functools.partial(LimitedSMTP._getaddr, SimpleNamespace(local_part_limit=0))
    keyword = "FROM:" if command == "MAIL" else "TO:"
    parameters.take(command, noise, names, parse)  # (anything at all: no exception)
    arg = " ".join([f"{keyword}<a@example.org>", *written])
    rest, taken, refusal = parameters.take(command, arg, names, parse)
    ours = [p for p in written if p.partition("=")[0].upper() in names]
    if refusal is not None or not ours:
        assert (rest, taken) == (arg, ())
        assert refusal is None or refusal == parameters.SYNTAX_ERROR
        return
    assert rest.split() == [f"{keyword}<a@example.org>", *(p for p in written if p not in ours)]
    assert taken == tuple(f"{p.partition('=')[0].upper()}={p.partition('=')[2]}" for p in ours)


def test_a_bounce_goes_on_from_the_null_sender_and_is_logged_so(tmp_path: Path, sink: Sink) -> None:
    """A bounce (MAIL FROM:<>) is relayed from the null sender, and the log names it
    from=<> as Postfix does (it said from=<<>>)."""
    process, port = start_serve(sink.port, tmp_path / "db", tmp_path / "none.toml")
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
            assert client.sendmail("<>", ["b@example.org"], MESSAGE) == {}
    finally:
        status, stderr = stop_serve(process)
    assert status == 0
    [relayed] = sink.messages()
    assert trace(relayed, b"X-Mail-Args") == ["<>"]
    assert " from=<> rcpts=b@example.org reply='250'" in stderr.decode()


def serve_between(tmp_path: Path, trained_db: Path, reinjection_port: int, settings: str,
                  stderr: int) -> tuple[subprocess.Popen[bytes], int]:
    """`spamkit serve` between a Postfix's two sides, on a copy of the trained database:
    TagLevel 4, RejectLevel 12, *.xyz senders blacklisted, the recipients left to Postfix
    (which has checked them), and `settings`."""
    config = tmp_path / "spamkit.toml"
    config.write_text('Sensitivity = "custom"\nTagLevel = 4\nRejectLevel = 12\n'
                      "SmtpVerifyRecipients = false\n" + settings)
    (tmp_path / "lists").write_text("black *@*.xyz\n")
    db = tmp_path / "db"
    shutil.copytree(trained_db, db)
    return start_serve(reinjection_port, db, config, stderr=stderr)


def test_the_readmes_postfix_layout_filters_between_its_two_smtpd(
        tmp_path: Path, trained_db: Path, split: tuple[list[CorpusMessage], list[CorpusMessage]]) -> None:
    """Postfix's public smtpd -> `spamkit serve` (smtpd_proxy_filter) -> Postfix's
    reinjection smtpd -> the queue, with the README's two services and their options (on
    test ports, and a mynetworks that makes the test's client a stranger): a ham is queued
    with our headers and a Received line for each hop, and the reinjection smtpd logs
    the client the filter's XFORWARD names; a blacklisted sender hears our
    550 from Postfix itself and nothing is queued; a domain Postfix does not serve is
    refused at RCPT by Postfix, before the filter is asked."""
    reinjection_port = free_port()
    process, filter_port = serve_between(tmp_path, trained_db, reinjection_port, "", subprocess.DEVNULL)
    ham = next(m for m in split[1] if m.label == "ham" and not m.data.startswith(b"From "))
    try:
        for postfix in start_postfix_around_filter(filter_port, reinjection_port):
            with smtplib.SMTP("127.0.0.1", postfix.port, timeout=60) as client:
                client.ehlo("client.example.net")
                assert client.sendmail("a@example.org", ["b@example.org"], ham.data) == {}
                try:
                    client.sendmail("promo@deals.xyz", ["b@example.org"], ham.data)
                    raise AssertionError("the blacklisted sender's message was taken")
                except smtplib.SMTPDataError as error:
                    assert error.smtp_code == 550 and b"rejected as spam" in error.smtp_error
                try:
                    client.sendmail("a@example.org", ["someone@elsewhere.example"], ham.data)
                    raise AssertionError("Postfix relayed for a stranger's domain")
                except smtplib.SMTPRecipientsRefused as error:
                    assert error.recipients["someone@elsewhere.example"][0] == 454
            for _ in range(50):  # (the reinjection smtpd hands the message to the queue)
                if postfix.held():
                    break
                time.sleep(0.1)
            assert postfix.held() == [("a@example.org", ["b@example.org"])]
            [queued] = postfix.messages()
            maillog = (postfix.config.parent / "maillog").read_text()
    finally:
        assert stop_serve(process)[0] == 0
    head = queued.split(b"\n\n", 1)[0]
    assert b"X-Spam-Status: No, score=" in head
    assert re.search(rb"Received: from \S+ \(localhost \[127\.0\.0\.1\]\)\s+by \S+ \(spamkit\)", head)
    assert head.count(b"by nexthop.test (Postfix)") == 2  # (the public smtpd's, and the reinjection's)
    # the reinjection smtpd logs the client as the filter's XFORWARD named it (Postfix
    # writes orig_client= only for a forwarded client; it named only the filter)
    assert re.search(r"smtpd\[\d+\]: \w+: client=localhost\[127\.0\.0\.1\], "
                     r"orig_client=localhost\[127\.0\.0\.1\]", maillog)


@pytest.mark.parametrize("after_queue", [True, False])
def test_after_postfixs_queue_nothing_is_refused_for_good(
        tmp_path: Path, trained_db: Path, split: tuple[list[CorpusMessage], list[CorpusMessage]],
        after_queue: bool) -> None:
    """Behind Postfix's content_filter the message is already queued: a 5xx from the
    filter makes Postfix bounce it to its sender, who for spam is someone else whose
    address was forged (backscatter). With SmtpAfterQueue the filter refuses nothing for
    good: a blacklisted sender's spam and a BadMailFrom sender's mail are queued behind it
    marked (X-Spam-Would-Refuse, the spam tagged), and Postfix bounces nothing. Without
    it (the control case), Postfix bounces both."""
    reinjection_port = free_port()
    process, filter_port = serve_between(
        tmp_path, trained_db, reinjection_port,
        'LocalDomains = ["example.org"]\nBadMailFrom = ["pest@example.net"]\n'
        'LocalNetworks = []\n'  # (the client, 127.0.0.2, is a stranger; Postfix is 127.0.0.1)
        'SmtpFilters = ["relay", "badmailfrom", "spamscore"]\n'  # (no DNS here)
        f"SmtpAfterQueue = {str(after_queue).lower()}\n", subprocess.PIPE)
    ham = next(m for m in split[1] if m.label == "ham" and not m.data.startswith(b"From "))
    try:
        for postfix in start_postfix_after_queue(filter_port, reinjection_port):
            with smtplib.SMTP("127.0.0.1", postfix.port, timeout=60, source_address=("127.0.0.2", 0)) as client:
                client.ehlo("client.example.net")
                for sender in ("promo@deals.xyz", "pest@example.net", "a@example.net"):
                    assert client.sendmail(sender, ["b@example.org"], ham.data) == {}  # (queued)
            maillog = postfix.config.parent / "maillog"
            relayed = "status=sent (250 2.0.0 Ok: queued by next hop)"  # (through the filter)
            for _ in range(300):  # (the queue manager hands each on, and Postfix logs the outcome)
                log = maillog.read_text() if maillog.exists() else ""
                if log.count(relayed) + log.count("status=bounced") >= 3:
                    break
                time.sleep(0.1)
            held = {sender: message for (sender, _), message in zip(postfix.held(), postfix.messages())}
    finally:
        code, stderr = stop_serve(process)
        assert code == 0
    if after_queue:
        assert "status=bounced" not in log and log.count(relayed) == 3
        assert set(held) >= {"promo@deals.xyz", "pest@example.net", "a@example.net"}
        spam, pest, plain = held["promo@deals.xyz"], held["pest@example.net"], held["a@example.net"]
        assert b"X-Spam-Would-Refuse: 550 5.7.1 Message rejected as spam (score" in spam
        assert b"(spamscore, at DATA)" in spam and b"X-Spam-Flag: YES" in spam
        assert re.search(rb"X-Spam-Would-Refuse: 5\d\d [^\n]*\(badmailfrom, at MAIL\)", pest)
        assert b"X-Spam-Would-Refuse" not in plain
        assert b"would_refuse='550' by=spamscore" in stderr
    else:  # what happened before: Postfix bounces what the filter refuses
        assert log.count("status=bounced") == 2 and log.count(relayed) == 1
        assert "a@example.net" in held and "promo@deals.xyz" not in held


def test_an_orcpt_in_utf8_goes_on_only_in_smtputf8_mail(tmp_path: Path, sink: Sink) -> None:
    """RFC 6533's ORCPT=utf-8;... in UTF-8 may come with plain ASCII addresses; the next
    hop (smtp-sink: DSN, no SMTPUTF8) cannot be sent it, so that recipient goes on with
    its NOTIFY and without the ORCPT, and the message is delivered: the relay wrote every
    command in ASCII, and such a recipient had the message deferred (451) at each try."""
    process, port = start_serve(sink.port, tmp_path / "db", tmp_path / "none.toml", stderr=subprocess.DEVNULL)
    try:
        client = Client(port)
        assert client.reply().startswith(b"220")
        assert client.command(b"EHLO client.test").startswith(b"250")
        assert client.command(b"MAIL FROM:<a@example.org>").startswith(b"250")
        assert client.command("RCPT TO:<b@example.org> NOTIFY=FAILURE ORCPT=utf-8;χρήστης@example.org"
                              .encode()).startswith(b"250")
        assert client.command(b"DATA").startswith(b"354")
        assert client.command(MESSAGE + b".").startswith(b"250")
        client.sock.close()
    finally:
        assert stop_serve(process)[0] == 0
    [relayed] = sink.messages()
    assert trace(relayed, b"X-Rcpt-Args") == ["<b@example.org> NOTIFY=FAILURE"]


@settings(max_examples=500, deadline=None)
@given(st.text(st.characters(blacklist_categories=()), max_size=60))  # (surrogates too: a HELO's \xff)
def test_xtext_round_trips_and_never_decodes_to_a_control_character(value: str) -> None:
    """XFORWARD's values travel in xtext both ways: what we encode decodes back to the
    value (when the value has no control character), the encoding is printable ASCII
    without '=' or a space, and no value a forwarder sends decodes to a CR, LF or other
    control character (which could end a header the value is written into)."""
    def controls(text: str) -> bool:
        return any(ord(c) < 32 or ord(c) == 127 for c in text)

    encoded = parameters.xtext(value)
    assert encoded.isascii() and encoded.isprintable() and " " not in encoded and "=" not in encoded
    if not controls(value) and not any(0xD800 <= ord(c) <= 0xDFFF for c in value):
        assert parameters.unxtext(encoded) == value
    sent = value.replace("\r", "+0D").replace("\n", "+0A")  # (a forwarder's value: one line)
    assert controls(parameters.unxtext(sent)) == controls(sent)  # (never made by decoding)
