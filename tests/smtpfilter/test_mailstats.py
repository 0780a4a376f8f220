"""`spamkit mailstats`: the filter's own log, read back. The figures are checked against
what a real `spamkit serve` was sent (swaks, smtp-sink) and answered; the line reader
against the fields a client chooses (HELO and addresses with spaces, forged fields),
other programs' lines and any text at all."""

from __future__ import annotations

import email
import email.policy
import gzip
import json
import re
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path

from hypothesis import example, given, settings
from hypothesis import strategies as st

from corpora import CorpusMessage
from smtpfilter.mailstats import MailStats, read_line, render
from tests.servers.serve import start_serve, stop_serve
from tests.servers.smtp_sink import Sink, free_port
from tests.servers.swaks import swaks
from tests.smtpfilter.conftest import PLAIN


def _mailstats(*arguments: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "spamkit", "mailstats", *arguments], input=stdin,
                          capture_output=True, timeout=120)


def test_a_days_mail_through_serve_is_counted_as_it_was_answered(
        tmp_path: Path, trained_db: Path, sink: Sink,
        split: tuple[list[CorpusMessage], list[CorpusMessage]]) -> None:
    db = tmp_path / "db"
    shutil.copytree(trained_db, db)
    config = tmp_path / "spamkit.toml"
    config.write_text('Sensitivity = "custom"\nTagLevel = 4\nRejectLevel = 12\n'
                      'LocalNetworks = []\nRelayClients = []\nLocalDomains = ["example.org"]\n'
                      'SmtpFilters = ["relay", "badmailfrom", "spamscore"]\n'
                      'BadMailFrom = ["known@spammer.example"]\n')
    (tmp_path / "lists").write_text("black *@*.xyz\n")  # the last two spams' senders: over 12
    test = [m for m in split[1] if m.data.isascii()]  # (swaks's echo of it is read as text)
    hams = [m for m in test if m.label == "ham" and b"\r" not in m.data][:4]
    spams = [m for m in test if m.label == "spam"][:6]
    process, port = start_serve(sink.port, db, config)
    replies: list[str] = []
    try:
        for number, message in enumerate([*hams, *spams]):
            path = tmp_path / f"{number}.eml"
            path.write_bytes(message.data.split(b"\n", 1)[1] if message.data.startswith(b"From ")
                             else message.data)
            sender = f"sender{number}@{'deals.xyz' if number >= 8 else 'corpus.example'}"
            replies.append(swaks(port, path, sender=sender,
                                 helo="a helo with spaces tls=yes reply='250'"))
        plain = tmp_path / "plain.eml"
        plain.write_bytes(PLAIN)
        refused = [swaks(port, plain, recipient="someone@elsewhere.example"),  # not ours: 554 at RCPT
                   swaks(port, plain, sender="known@spammer.example")]  # 550 at MAIL
    finally:
        status, log = stop_serve(process)
    assert status == 0
    assert refused[0].startswith("554") and refused[1].startswith("550"), refused
    (tmp_path / "serve.log").write_bytes(log)
    done = _mailstats(str(tmp_path / "serve.log"), "--json", "--config", str(config))
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)

    relayed = [reply for reply in replies if reply.startswith("250")]
    rejected = [reply for reply in replies if reply.startswith("5")]
    assert len(relayed) == 8 and len(rejected) == 2, replies
    tagged = [m for m in sink.messages() if b"X-Spam-Flag: YES" in m]
    assert report["messages"] == {"relayed": len(relayed), "spam": len(tagged),
                                  "rejected": len(rejected), "deferred": 0}
    assert report["before_data"] == {"rejected": 2, "deferred": 0}
    filters = {row["filter"]: row for row in report["filters"]}
    assert filters["relay"]["rejected"] == 1 and filters["badmailfrom"]["rejected"] == 1
    assert filters["spamscore"]["rejected"] == len(rejected)
    assert sum(row["messages"] for row in report["scores"]) == 10 and report["unscanned"] == 0
    scores = sorted(float(s) for s in re.findall(rb"X-Spam-Status: \w+, score=(-?[\d.]+)", b"\n".join(sink.messages())))
    low_band = next(row for row in report["scores"] if row["to"] == 2)
    assert low_band["messages"] == sum(1 for s in scores if 0 <= s < 2)
    [client] = report["clients"]
    assert client == {"client": "127.0.0.1", "relayed": len(relayed), "spam": len(tagged),
                      "rejected": len(rejected) + 2, "deferred": 0, "country": ""}
    assert {row["domain"] for row in report["sender_domains"]} == {"corpus.example", "deals.xyz",
                                                                     "example.org", "spammer.example"}
    domains = {row["domain"]: row for row in report["sender_domains"]}
    assert domains["deals.xyz"] == {"domain": "deals.xyz", "relayed": 0, "spam": 0, "rejected": 2,
                                    "deferred": 0}
    assert domains["corpus.example"]["spam"] == len(tagged) and len(tagged) >= 3
    assert sum(row["relayed"] + row["rejected"] for row in report["hours"]) == 12
    assert report["first"] is not None and report["scan_seconds"]["max"] >= report["scan_seconds"]["mean"] > 0

    # the same as text, and from a rotated, compressed log on stdin
    with gzip.open(tmp_path / "serve.log.1.gz", "wb") as packed:
        packed.write(log)
    text = _mailstats("-", "--config", str(config), stdin=(tmp_path / "serve.log.1.gz").read_bytes())
    assert text.returncode == 0, text.stderr
    assert re.search(rf"relayed +{len(relayed)} +of which spam \(score >= 4\): {len(tagged)}\n",
                     text.stdout.decode()), text.stdout.decode()
    compressed = _mailstats(str(tmp_path / "serve.log.1.gz"), "--json", "--config", str(config))
    assert json.loads(compressed.stdout)["messages"] == report["messages"]


LINE = ("2026-12-02 10:00:01,123 spamkit.smtpfilter client=192.0.2.7 helo={helo} tls=yes from=<{sender}> "
        "rcpts={rcpts} reply='{reply}' score={score} by={by} time=0.041s id=0A1B2C3D4E5F{extra}")


def test_fields_a_client_chose_cannot_move_ours() -> None:
    """HELO and addresses are logged as sent, spaces and all: a client that writes our
    field names into them still has its own line read by the fields we wrote."""
    forged = LINE.format(helo="x reply='250' score=-5 by=relay time=0.1s id=0", sender="a b@x> rcpts=y",
                         rcpts="b@example.org,c@example.org", reply="554", score="15.0", by="spamscore",
                         extra=" country=CN")
    event = read_line(forged)
    assert event is not None and event.kind == "message"
    assert (event.client, event.reply, event.by, event.score, event.country) == \
        ("192.0.2.7", "554", "spamscore", 15.0, "CN")
    assert event.recipients == 2
    login = read_line(LINE.format(helo="pc", sender="alice@example.org", rcpts="x@y", reply="250",
                                  score="-", by="relay", extra=" user=alice smith disclaimer=added"))
    assert login is not None and login.user == "alice smith" and login.score is None
    # nor can a HELO that looks like another line's start hide the message
    for disguise in ("spamd: client=1.2.3.4 method=CHECK", "clamd found X in a message from 1.2.3.4"):
        hidden = read_line(LINE.format(helo=disguise, sender="a@x", rcpts="b@example.org", reply="554",
                                       score="15.0", by="spamscore", extra=""))
        assert hidden is not None and (hidden.kind, hidden.reply) == ("message", "554"), disguise
    refusal = read_line("Dec  2 10:00:01 mx spamkit[42]: 2026-12-02 10:00:01,001 spamkit.smtpfilter "
                        "client=2001:db8::1 helo=h h from=<> rcpt=- stage=mail reply='550' by=badmailfrom")
    assert refusal is not None and (refusal.kind, refusal.sender, refusal.recipients, refusal.by) == \
        ("refusal", "", 0, "badmailfrom")


def test_other_lines_are_passed_over_and_times_read_from_each_kind_of_prefix() -> None:
    for other in ("", "random text", "spamkit.spamd spamd: client=127.0.0.1 reply='SPAMD/1.0 76 Bad header line' "
                  "time=0.001s",  # (spamd's line for what was no request)
                  "spamkit.smtpfilter greylist: would defer client=192.0.2.1 from=<a@b> rcpt=c@d",
                  "spamkit.smtpfilter client=192.0.2.1 helo=h tls=no from=<a@b> rcpts=c@d reply='250'",
                  "xclient=1.2.3.4 helo=h from=<a> rcpt=b stage=rcpt reply='550' by=relay"):
        assert read_line(other) is None, other
    spamd = read_line("spamkit.spamd spamd: client=127.0.0.1 method=CHECK user=a b size=10 spam='True ; 7.0 / 5.0' "
                      "reply='SPAMD/1.1 0 EX_OK' time=0.1s")
    assert spamd is not None and (spamd.kind, spamd.score) == ("spamd", 1.0)
    ours = read_line("2026-12-02 10:00:01,123 spamkit.smtpfilter client=192.0.2.1 stage=connect "
                     "reply='421' by=max_sessions")
    assert ours is not None and ours.when == time.mktime((2026, 12, 2, 10, 0, 1, 0, 0, -1))
    iso = read_line("2026-12-02T10:00:01+0000 mx spamkit[1]: client=192.0.2.1 auth=failed user=admin "
                    "method=LOGIN failures=3")
    assert iso is not None and iso.kind == "login_failed" and iso.user == "admin"
    # syslog's time has no year: the one that puts it in the last twelve months
    january = time.mktime((2027, 1, 2, 12, 0, 0, 0, 0, -1))
    december = read_line("Dec 31 23:59:59 mx spamkit[1]: client=192.0.2.1 stage=connect reply='421' by=x",
                         now=january)
    assert december is not None and december.when == time.mktime((2026, 12, 31, 23, 59, 59, 0, 0, -1))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=3000))
def test_any_text_is_a_line_or_none(text: str) -> None:
    event = read_line(text)
    if event is not None:
        MailStats(tag_level=5.0).add(event)


@settings(max_examples=200, deadline=None)
@given(helo=st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), max_size=200),
       sender=st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), max_size=100),
       reply=st.sampled_from(["250", "451", "550", "554"]),
       score=st.one_of(st.just("-"), st.just("unscanned"),
                       st.floats(-100, 100).map(lambda value: f"{value:.1f}")))
def test_what_the_server_writes_is_read_back(helo: str, sender: str, reply: str, score: str) -> None:
    line = LINE.format(helo=helo, sender=sender, rcpts="b@example.org", reply=reply, score=score,
                       by="spamscore", extra="")
    event = read_line(line)
    assert event is not None and (event.reply, event.by, event.client) == (reply, "spamscore", "192.0.2.7")
    assert event.unscanned == (score == "unscanned")
    assert (event.score is None) == (score in ("-", "unscanned"))


def test_a_window_a_binary_file_a_missing_one_and_the_mailed_report(tmp_path: Path, sink: Sink) -> None:
    lines = [LINE.format(helo="h", sender="a@x.example", rcpts="b@example.org", reply="250", score=f"{s}.0",
                         by="relay", extra="").replace("2026-12-02 10", f"2026-12-02 {hour:02d}")
             for hour, s in ((9, 1), (10, 6), (11, 1))]
    log = tmp_path / "serve.log"
    log.write_bytes(("\n".join(lines) + "\n").encode() + b"\xff" * 40_000 + b"\nnot ours\n")
    done = _mailstats(str(log), "--since", "2026-12-02 10:00", "--until", "2026-12-02 11:00", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["messages"]["relayed"] == 1 and report["messages"]["spam"] == 1
    assert report["lines"] == 5 and report["unread"] == 1
    assert _mailstats(str(log), "--since", "last week").returncode == 2
    missing = _mailstats(str(tmp_path / "gone.log"))
    assert missing.returncode == 66 and b"cannot read the log" in missing.stderr

    config = tmp_path / "spamkit.toml"
    config.write_text(f'ReportSmtpServer = "127.0.0.1:{sink.port}"\nReportFrom = "postmaster@example.org"\n')
    mailed = _mailstats(str(log), "--mail-report", "admin@example.org", "--config", str(config))
    assert mailed.returncode == 0, mailed.stderr
    [report_mail] = [email.message_from_bytes(m, policy=email.policy.default) for m in sink.messages()]
    assert report_mail["Subject"] == ("spamkit mailstats 2026-12-02 09:00:01 to 2026-12-02 11:00:01: "
                                      "3 relayed, 1 spam, 0 rejected")
    body = report_mail.get_content()
    assert "By filter" not in body and "Hours" in body and "of which spam (score >= 5): 1" in body
    config.write_text(f'ReportSmtpServer = "127.0.0.1:{free_port()}"\n')
    unsent = _mailstats(str(log), "--mail-report", "admin@example.org", "--config", str(config))
    assert unsent.returncode == 75 and b"could not be sent" in unsent.stderr


def test_the_text_report_says_what_the_json_says() -> None:
    stats = MailStats(tag_level=5.0)
    for line in (LINE.format(helo="h", sender="a@x.example", rcpts="b@example.org", reply="250",
                             score="7.0", by="relay", extra=" country=FR"),
                 LINE.format(helo="h", sender="a@x.example", rcpts="b@example.org", reply="451",
                             score="unscanned", by="error", extra="")):
        event = read_line(line)
        assert event is not None
        stats.add(event)
    text = render(stats.as_json())
    assert "of which spam (score >= 5): 1" in text and "not scanned" in text
    assert re.search(r"192\.0\.2\.7 +1 +1 +0 +1  FR", text), text
    assert re.search(r"error +0 +1 +0", text), text


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=40_000), min_size=1, max_size=500))
@example([536, 1621, 1621, 1621])  # means 1.34975 either side in the last bit: 1.3497 and 1.3498
def test_times_counted_by_millisecond_give_what_the_whole_list_gives(milliseconds: list[int]) -> None:
    """The report's mean, 95th percentile and longest time at DATA, from times counted
    by their value, equal those of the sorted list of every time."""
    from collections import Counter

    from smtpfilter.mailstats import _timing

    times = sorted(n / 1000 for n in milliseconds)
    expected = {"mean": round(sum(times) / len(times), 4), "max": times[-1],
                "p95": times[min(len(times) - 1, math.ceil(0.95 * len(times)) - 1)]}
    got = _timing(Counter(times))
    assert got["p95"] == expected["p95"] and got["max"] == expected["max"]
    # both are rounded to 4 places: sums in another order may round a mean that ends in 5
    # either way, one step of 1e-4 (plus the float error of that difference) apart
    assert abs(got["mean"] - expected["mean"]) <= 1e-4 + 1e-12  # type: ignore[operator]
    assert _timing(Counter()) == {"mean": None, "p95": None, "max": None}
