"""The pyzor filter against Debian's own Pyzor server (tests/servers/pyzord.py): what its
users reported is scored PYZOR_CHECK, what they welcomelisted is not, a server that does
not answer delays nothing past PyzorTimeout, and a header the sender wrote counts for
nothing. Messages are reported with Debian's `pyzor` command, so the digest spamkit
computes is checked against another client's."""

from __future__ import annotations

import json
import logging
import re
import smtplib
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smtpfilter.metrics import UNCHECKED
from spamkit.pyzor import PyzorAnswer, Thresholds, body_digest
from spamkit.config import config_from_text
from spamkit.verdict import Scanner
from tests.servers.pyzord import Pyzord, free_udp_port
from tests.servers.serve import start_serve, stop_serve
from tests.servers.smtp_sink import Sink
from tests.smtpfilter.conftest import STRANGER

BODY = ("I am writing to offer you an exclusive opportunity to invest in a gold mine.\n"
        "Reply today with your bank details and we will transfer the first dividend.\n"
        "This offer is valid only for the next forty eight hours, act {n} now please.\n")


def message(n: int, extra_headers: str = "") -> bytes:
    """A message whose body is its own (Pyzor digests the body text only)."""
    return (f"From: offers@example.net\r\nTo: b@example.org\r\nSubject: investment {n}\r\n"
            f"Date: Tue, 1 Dec 2026 10:00:00 +0000\r\nMessage-ID: <{n}@example.net>\r\n{extra_headers}\r\n"
            + BODY.format(n=f"number{n}").replace("\n", "\r\n")).encode()


@pytest.mark.parametrize(("reported", "welcomelisted", "listed"), [
    (5, 0, True), (4, 0, False),            # pyzor_count_min
    (50, 9, True), (50, 10, False),         # welcomelistings count from pyzor_welcomelist_min,
    (100, 10, True), (100, 20, False),      # and only at pyzor_welcomelist_factor of the reports
    (1_000_000, 0, False), (5, 10_000, False),  # what every empty body has: no evidence
])
def test_spamassassins_reading_of_an_answer(reported: int, welcomelisted: int, listed: bool) -> None:
    assert Thresholds().listed(PyzorAnswer(reported, welcomelisted, "x")) is listed


def _pyzor_header(delivered: bytes) -> str:
    found = re.findall(rb"^X-Spamkit-Pyzor: (.*)$", delivered, re.MULTILINE)
    assert len(found) <= 1, found
    return found[0].decode().strip() if found else ""


def _tests(delivered: bytes) -> list[str]:
    """The rules X-Spam-Status names (tests=...), its folded lines joined."""
    status = re.search(rb"^X-Spam-Status: .*?(?=^\S)", delivered, re.MULTILINE | re.DOTALL)
    assert status is not None, delivered[:500]
    found = re.search(r"tests=(\S*)", re.sub(r",\s+", ",", " ".join(status.group(0).decode().split())))
    return found.group(1).split(",") if found else []


def test_what_pyzor_users_reported_is_scored_and_what_they_welcomelisted_is_not(
        filter_server, sink: Sink, pyzord: Pyzord) -> None:  # type: ignore[no-untyped-def]
    reported, welcomelisted, unknown = message(1), message(2), message(3, "X-Spamkit-Pyzor: listed, forged\r\n")
    pyzord.tell("report", reported, 5)
    pyzord.tell("report", welcomelisted, 20)
    pyzord.tell("whitelist", welcomelisted, 10)
    send = filter_server(STRANGER + f'SmtpFilters = ["pyzor", "spamscore"]\nPyzorServers = ["{pyzord.address}"]\n')
    for data in (reported, welcomelisted, unknown):
        assert send(data, sender="offers@example.net").startswith("250")
    delivered = {re.search(rb"Subject: investment (\d)", m).group(1): m for m in sink.messages()}  # type: ignore[union-attr]
    assert _pyzor_header(delivered[b"1"]) == f"listed, reported 5 times, welcomelisted 0 times, by {pyzord.address}"
    assert "PYZOR_CHECK" in _tests(delivered[b"1"])
    assert _pyzor_header(delivered[b"2"]).startswith("not listed, reported 20 times, welcomelisted 10 times")
    # the sender's own header is gone; ours says what the server said
    assert _pyzor_header(delivered[b"3"]) == f"not listed, reported 0 times, welcomelisted 0 times, by {pyzord.address}"
    for name in (b"2", b"3"):
        assert "PYZOR_CHECK" not in _tests(delivered[name])


def test_the_score_is_spamassassins_network_score(pyzord: Pyzord, tmp_path: Path) -> None:
    """PYZOR_CHECK scores as SpamAssassin scores it with network tests on, built in or
    from Debian's own 25_pyzor.cf and 50_scores.cf, whose local score sets give it 0; so
    do Debian's SPF, DKIM and DMARC rules, whose lookups the filter made too."""
    listed = message(4, "X-Spamkit-Pyzor: listed, reported 9 times, welcomelisted 0 times, by x\r\n"
                        "Received-SPF: fail (mx.example.org: no) identity=mailfrom;\r\n")
    builtin = Scanner.from_config(config_from_text("UseBayes = false\n", tmp_path / "a.toml", {}), None)
    assert {hit.name: hit.score for hit in builtin.scan(listed).hits}["PYZOR_CHECK"] == 1.985
    debian = [f"/usr/share/spamassassin/{name}" for name in ("25_pyzor.cf", "25_spf.cf", "50_scores.cf")]
    config = config_from_text(f"UseBayes = false\nUseBuiltinRules = false\nRulePaths = {debian!r}\n".replace("'", '"'),
                              tmp_path / "b.toml", {})
    scores = {hit.name: hit.score for hit in Scanner.from_config(config, None).scan(listed).hits}
    assert scores["PYZOR_CHECK"] == 1.985 and scores["SPF_FAIL"] == 0.919
    assert "PYZOR_CHECK" not in {hit.name for hit in builtin.scan(message(4)).hits}


def test_a_server_that_does_not_answer_delays_nothing_past_the_timeout(
        filter_server, sink: Sink, pyzord: Pyzord, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    silent = f"127.0.0.1:{free_udp_port()}"
    pyzord.tell("report", message(5), 5)
    # the first server says nothing: the next one is asked within the same timeout
    send = filter_server(STRANGER + 'SmtpFilters = ["pyzor", "spamscore"]\nPyzorTimeout = 3\n'
                         f'PyzorServers = ["{silent}", "{pyzord.address}"]\n')
    assert send(message(5), sender="offers@example.net").startswith("250")
    assert _pyzor_header(sink.messages()[0]).startswith("listed, reported 5 times")
    # none answers: the message goes on unasked, after the timeout, and is counted
    before = UNCHECKED.counts().get(("pyzor", "unanswered"), 0)
    alone = filter_server(STRANGER + f'SmtpFilters = ["pyzor", "spamscore"]\nPyzorTimeout = 1\nPyzorServers = ["{silent}"]\n')
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="spamkit.smtpfilter"):
        assert alone(message(6), sender="offers@example.net").startswith("250")
    assert time.monotonic() - started < 6
    assert f"pyzor server {silent} did not answer" in caplog.text
    assert UNCHECKED.counts()[("pyzor", "unanswered")] == before + 1
    assert [m for m in sink.messages() if b"investment 6" in m and b"X-Spamkit-Pyzor" not in m]


def test_our_own_clients_mail_is_not_asked_about(filter_server, sink: Sink, pyzord: Pyzord) -> None:  # type: ignore[no-untyped-def]
    """A digest of our users' mail would go to a public server."""
    ours = filter_server(f'SmtpFilters = ["pyzor"]\nLocalDomains = ["example.org"]\nPyzorServers = ["{pyzord.address}"]\n')
    assert ours(message(7, "X-Spamkit-Pyzor: listed, forged\r\n"), sender="a@example.org").startswith("250")
    assert _pyzor_header(sink.messages()[0]) == ""  # (and the forged one is gone)


@pytest.mark.parametrize("data", [b"", b"\xff\xfe" * 100, b"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n",
                                  b"Subject: x\r\n\r\n" + b"a" * 2_000_000])
def test_any_bytes_give_a_digest_or_none(data: bytes) -> None:
    digest = body_digest(data)
    assert digest is None or re.fullmatch(r"[0-9a-f]{40}", digest)


def test_lint_wants_pyzor_before_spamscore_and_servers_it_can_read(tmp_path: Path) -> None:
    from smtpfilter.plugins import chain_problems

    config = config_from_text('SmtpFilters = ["spamscore", "pyzor"]\n', tmp_path / "c.toml", {})
    assert any("pyzor filter" in problem and "before spamscore" in problem for problem in chain_problems(config))
    from spamkit.errors import ConfigError

    with pytest.raises(ConfigError, match="PyzorServers"):
        config_from_text('PyzorServers = ["host:notaport"]\n', tmp_path / "d.toml", {})


def test_without_the_pyzor_package_the_filter_says_so_at_start(monkeypatch: pytest.MonkeyPatch,
                                                               tmp_path: Path) -> None:
    import sys

    from smtpfilter.plugins import FILTERS
    from spamkit.errors import SpamkitError

    monkeypatch.setitem(sys.modules, "pyzor.client", None)  # (import of it raises ImportError)
    config = config_from_text('SmtpFilters = ["pyzor", "spamscore"]\n', tmp_path / "c.toml", {})
    with pytest.raises(SpamkitError, match="the pyzor filter needs the Python package pyzor"):
        FILTERS["pyzor"](config, None, False)  # type: ignore[arg-type]


def _spamkit(*args: str, data: bytes | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "spamkit", *args], input=None if data is None else data.decode(),
                          capture_output=True, text=True, timeout=120)


def test_check_asks_pyzor_as_the_filter_does(pyzord: Pyzord, tmp_path: Path) -> None:
    """`check --pyzor` scores a file as the filter would have: what the server says, in
    the same header, and a sender's own header removed first. The reported message is
    written with LF line ends, as a file on disk usually is: the same digest, and our
    header in the file's own line ends."""
    pyzord.tell("report", message(11), 5)
    (tmp_path / "reported.eml").write_bytes(message(11).replace(b"\r\n", b"\n"))
    (tmp_path / "forged.eml").write_bytes(message(12, "X-Spamkit-Pyzor : listed, forged\r\n"))
    config = tmp_path / "spamkit.toml"
    config.write_text(f'UseBayes = false\nPyzorServers = ["{pyzord.address}"]\n')
    done = _spamkit("check", "--json", "--pyzor", "--config", str(config), str(tmp_path / "reported.eml"),
                    str(tmp_path / "forged.eml"))
    assert done.returncode == 0, done.stderr
    reported, forged = (json.loads(line) for line in done.stdout.splitlines())
    assert reported["pyzor"] == {"listed": True, "reported": 5, "welcomelisted": 0, "server": pyzord.address}
    assert {"name": "PYZOR_CHECK", "score": 1.985} in reported["rules"]
    assert forged["pyzor"] == {"listed": False, "reported": 0, "welcomelisted": 0, "server": pyzord.address}
    assert "PYZOR_CHECK" not in {rule["name"] for rule in forged["rules"]}
    # without --pyzor a file is scored as it is: the sender's header counts, against it
    unasked = json.loads(_spamkit("check", "--json", "--config", str(config), str(tmp_path / "forged.eml")).stdout)
    assert "pyzor" not in unasked and "PYZOR_CHECK" in {rule["name"] for rule in unasked["rules"]}
    explained = _spamkit("check", "--explain", "--pyzor", "--config", str(config), str(tmp_path / "reported.eml"))
    assert f"pyzor: listed, reported 5 times, welcomelisted 0 times, by {pyzord.address}" in explained.stdout


def test_check_stops_asking_a_server_that_does_not_answer(tmp_path: Path) -> None:
    """Five files, no server: three are asked (each waits PyzorTimeout), then a warning,
    and the other two are scored without asking."""
    (tmp_path / "mail").mkdir()
    for n in range(5):
        (tmp_path / "mail" / f"{n}.eml").write_bytes(message(20 + n))
    config = tmp_path / "spamkit.toml"
    config.write_text(f'UseBayes = false\nPyzorTimeout = 0.3\nPyzorServers = ["127.0.0.1:{free_udp_port()}"]\n')
    done = _spamkit("check", "--json", "--pyzor", "--config", str(config), str(tmp_path / "mail"))
    assert done.returncode == 0, done.stderr
    assert [json.loads(line)["pyzor"] for line in done.stdout.splitlines()] == [None] * 5
    assert done.stderr.count("did not answer") == 3, done.stderr
    assert done.stderr.count("no Pyzor server answered 3 messages in a row") == 1


def test_deliver_asks_pyzor_and_the_user_gets_the_answer(pyzord: Pyzord, tmp_path: Path) -> None:
    pyzord.tell("report", message(13), 5)
    (tmp_path / "users" / "alice" / "Maildir" / "cur").mkdir(parents=True)
    config = tmp_path / "spamkit.toml"
    config.write_text(f'UseBayes = false\nPyzorServers = ["{pyzord.address}"]\n')
    done = subprocess.run([sys.executable, "-m", "spamkit", "deliver", "alice", "--pyzor", "--maildirs",
                           f"{tmp_path}/users/{{user}}/Maildir", "--config", str(config)],
                          input=message(13), capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr
    [delivered] = (tmp_path / "users" / "alice" / "Maildir" / "new").iterdir()
    assert _pyzor_header(delivered.read_bytes()).startswith("listed, reported 5 times")
    assert "PYZOR_CHECK" in _tests(delivered.read_bytes())


def test_serve_as_nobody_digests_and_asks(pyzord: Pyzord, sink: Sink, tmp_path: Path) -> None:
    """`spamkit serve --user nobody`, as it runs: the digest's lazy imports were made
    before it gave up root (Python here lives under /root, which nobody cannot read)."""
    pyzord.tell("report", message(41), 5)
    config = tmp_path / "spamkit.toml"
    config.write_text(STRANGER + f'UseBayes = false\nSmtpFilters = ["pyzor", "spamscore"]\n'
                                 f'PyzorServers = ["{pyzord.address}"]\n')
    process, port = start_serve(sink.port, tmp_path / "db", config)
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
            client.sendmail("offers@example.net", ["b@example.org"], message(41))
    finally:
        code, log = stop_serve(process)
    assert code == 0 and b"no digest" not in log, log
    [delivered] = sink.messages()
    assert _pyzor_header(delivered).startswith("listed, reported 5 times")


_LINE_PIECES = st.lists(st.sampled_from([b"a", b"x-spamkit-pyzor: y", b" ", b"\r\n", b"\n", b"\r", b"\xff"]),
                        max_size=60).map(b"".join)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000) | _LINE_PIECES, st.sampled_from([b"\r\n", b"\n"]), st.booleans())
def test_any_message_comes_back_whole_with_no_header_of_the_senders(
        body: bytes, newline: bytes, forged: bool) -> None:
    """What spamd, check and deliver do to a message before scoring it, with no server
    to ask (an empty PyzorServers): any bytes come back, with any X-Spamkit-Pyzor the
    sender wrote gone from the header block and the rest as it was, whatever line ends
    the body holds (a CRLF in an LF message's body once hid its header block).""" 
    from spamkit.pyzor import PyzorCheck, PyzorClient

    head = [b"From: a@example.net", b"Subject: x"]
    if forged:
        head.insert(1, b"X-Spamkit-Pyzor : listed, forged")
    raw = newline.join(head) + newline + newline + body
    recorded = PyzorCheck(PyzorClient([], 1.0), Thresholds(), 500_000).recorded(raw)
    assert recorded.answer is None and recorded.header is None
    kept = newline.join(line for line in head if not line.startswith(b"X-Spamkit-Pyzor"))
    assert recorded.data == kept + newline + newline + body
