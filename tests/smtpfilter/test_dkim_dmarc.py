"""The dkim and dmarc filters against keys and policies served by dnsmasq, messages
signed by dkimpy with a key made by openssl, and SpamAssassin's DKIM and DMARC rules
reading the Authentication-Results header they write."""

from __future__ import annotations

import base64
import contextlib
import email
import email.policy
import gzip
import json
import re
import socket
import sqlite3
import subprocess
import sys
import time
from xml.etree import ElementTree
from collections.abc import Iterator
from pathlib import Path

import dkim
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smtpfilter.dns import DnsClient, Outcome
from smtpfilter.plugins import authres, machine_name
from smtpfilter import domains as domains_module
from smtpfilter.plugins.dkim import KeyLookup, verify
from smtpfilter.domains import organizational_domain
from smtpfilter.plugins.dmarc import author_domain, parse_record
from spamkit.config import config_from_text
from spamkit.verdict import Scanner
from tests.servers.dnsmasq import DnsServer, start_dnsmasq
from tests.servers.smtp_sink import Sink
from tests.smtpfilter.conftest import STRANGER, dead_server
from tests.smtpfilter.conftest import settings as dns_settings

RULES = [Path("/usr/share/spamassassin/25_dkim.cf"), Path("/usr/share/spamassassin/25_dmarc.cf")]
IDN, IDN_TLD = "xn--hxajbheg2az3al.xn--jxalpdlp", "xn--jxalpdlp"  # παράδειγμα.δοκιμή, as DNS has it
CHAIN = 'SmtpFilters = ["spf", "dkim", "dmarc"]\n'


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, str]:
    """(private key PEM, public key base64) of a fresh 2048-bit RSA key."""
    folder = tmp_path_factory.mktemp("dkim")
    private = folder / "key.pem"
    subprocess.run(["openssl", "genrsa", "-traditional", "-out", str(private), "2048"],
                   check=True, capture_output=True)
    public = subprocess.run(["openssl", "rsa", "-in", str(private), "-pubout", "-outform", "DER"],
                            check=True, capture_output=True).stdout
    return private.read_bytes(), base64.b64encode(public).decode()


@pytest.fixture(scope="module")
def dns(key: tuple[bytes, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[DnsServer]:
    public = key[1]
    # aggregate reports: to an address of its own, to one at reports.test (which agreed,
    # below), and to one at elsewhere.test (which did not). A record with commas in it
    # goes through a configuration file: on the command line dnsmasq splits it there.
    with_commas = tmp_path_factory.mktemp("dnsmasq") / "records.conf"
    with_commas.write_text('txt-record=_dmarc.example.com,"v=DMARC1; p=reject; '
                           'rua=mailto:dmarc@example.com,mailto:agg@reports.test!10m,'
                           'mailto:x@elsewhere.test"\n')
    chunks = ",".join(["v=DKIM1; k=rsa; p=" + public[:200], *(public[i:i + 250] for i in range(200, len(public), 250))])
    yield from start_dnsmasq(["example.com", "example.net", "example.org", "reports.test",
                              "elsewhere.test", IDN_TLD], [
        f"--txt-record=sel._domainkey.example.com,{chunks}",
        f"--txt-record={IDN},v=spf1 ip4:127.0.0.1 -all",
        f"--txt-record=_dmarc.{IDN},v=DMARC1; p=reject",
        "--txt-record=xn--jxalpdlp.example.net,v=spf1 -all",  # δοκιμή.example.net
        f"--conf-file={with_commas}",
        "--txt-record=example.com._report._dmarc.reports.test,v=DMARC1",
        "--txt-record=example.com,v=spf1 -all",  # the test client fails SPF for example.com
        "--txt-record=_dmarc.example.net,v=DMARC1; p=quarantine; sp=none",
        "--txt-record=example.net,v=spf1 ip4:127.0.0.1 -all",
    ])


def message(sender: str, subject: str = "hello") -> bytes:
    return (f"From: Someone <{sender}>\r\nTo: b@example.org\r\nDate: Tue, 25 Nov 2026 08:00:00 +0000\r\n"
            f"Subject: {subject}\r\nMessage-ID: <{subject}@example.test>\r\n\r\nThe body of it.\r\n").encode()


def signed(data: bytes, key: tuple[bytes, str], selector: bytes = b"sel", identity: bytes | None = None) -> bytes:
    signature = dkim.sign(data, selector, b"example.com", key[0], identity=identity,
                          include_headers=[b"from", b"to", b"subject", b"date"])
    return signature + data


def authentication_results(delivered: bytes) -> list[bytes]:
    head = delivered.split(b"\n\n", 1)[0].replace(b"\n\t", b" ")
    return [line for line in head.split(b"\n") if line.startswith(b"Authentication-Results:")]


def test_signatures_and_policies(filter_server, sink: Sink, dns: DnsServer,  # type: ignore[no-untyped-def]
                                 key: tuple[bytes, str], tmp_path: Path) -> None:
    send = filter_server(STRANGER + dns_settings(dns, CHAIN))
    ours = machine_name().encode()
    good = signed(message("a@example.com", "good"), key)
    cases = {
        # signed by the author's domain: DKIM passes, so DMARC does although SPF fails
        "good": (good, "a@example.com", [b"dmarc=pass header.from=example.com policy.dmarc=reject",
                                         b"dkim=pass header.d=example.com header.s=sel"]),
        # the body changed after signing: the signature fails, and so does DMARC (p=reject)
        "altered": (good.replace(b"The body of it.", b"The body of it, changed.").replace(b"<good@", b"<altered@"),
                    "a@example.com", [b"dmarc=fail header.from=example.com policy.dmarc=reject",
                                      b"dkim=fail header.d=example.com header.s=sel"]),
        # no key under that selector: the signature cannot be checked
        "nokey": (signed(message("a@example.com", "nokey"), key, b"gone"), "a@example.com",
                  [b"dmarc=fail", b"dkim=permerror header.d=example.com header.s=gone"]),
        # unsigned, but SPF passes for an aligned envelope domain
        "spf": (message("a@example.net", "spf"), "a@example.net",
                [b"dmarc=pass header.from=example.net policy.dmarc=quarantine", b"dkim=none"]),
        # a subdomain without its own record takes the organizational domain's sp=none
        "sub": (message("a@sub.example.net", "sub"), "a@sub.example.net",
                [b"dmarc=fail header.from=sub.example.net policy.dmarc=none", b"dkim=none"]),
        # no DMARC record anywhere; and a forged result in our name is removed
        "nopolicy": (b"Authentication-Results: " + ours + b"; dkim=pass header.d=example.org\r\n"
                     + message("a@example.org", "nopolicy"), "a@example.org",
                     [b"dmarc=none header.from=example.org", b"dkim=none"]),
    }
    for name, (data, sender, _) in cases.items():
        assert send(data, sender=sender).startswith("250"), name
    delivered = {m.split(b"Message-ID: <")[1].split(b"@")[0].decode(): m for m in sink.messages_as_sent()}
    assert sorted(delivered) == sorted(cases)
    for name, (_, _, expected) in cases.items():
        found = authentication_results(delivered[name])
        assert len(found) == 2, (name, found)  # dmarc's, then dkim's; the forged one gone
        for line, wanted in zip(found, expected):
            assert line.startswith(b"Authentication-Results: " + ours + b"; " + wanted), (name, line)

    rules = tmp_path / "scores.cf"
    rules.write_text("score DMARC_REJECT 5\nscore DKIM_VALID -0.1\n")
    config = config_from_text(f'UseBayes = false\nUseBuiltinRules = false\nRulePaths = '
                              f'["{RULES[0]}", "{RULES[1]}", "{rules}"]\n', tmp_path / "spamkit.toml", {})
    scanner = Scanner.from_config(config, None)
    hits = {name: {hit.name for hit in scanner.scan(data).hits} for name, data in delivered.items()}
    assert {"DKIM_SIGNED", "DKIM_VALID", "DKIM_VALID_AU", "DMARC_PASS"} <= hits["good"]
    assert {"DKIM_SIGNED", "DKIM_INVALID", "DMARC_REJECT"} <= hits["altered"]
    assert "DKIM_VALID" not in hits["altered"]
    assert "DMARC_PASS" in hits["spf"] and "DKIM_SIGNED" not in hits["spf"]
    assert "DMARC_NONE" in hits["sub"]
    assert "DMARC_MISSING" in hits["nopolicy"] and "DKIM_VALID" not in hits["nopolicy"]
    # a signed message the filter never saw (`spamkit check` of a file): no DKIM rule at all
    unchecked = {hit.name for hit in scanner.scan(signed(message("a@example.com", "file"), key)).hits}
    assert not {name for name in unchecked if name.startswith(("DKIM", "DMARC"))}, unchecked


def test_the_welcomelists_read_what_the_filter_verified(filter_server, sink: Sink, dns: DnsServer,  # type: ignore[no-untyped-def]
                                                       key: tuple[bytes, str], tmp_path: Path) -> None:
    """def_welcomelist_auth and def_welcomelist_from_spf through the filter: a signature of
    the author's domain that verifies earns USER_IN_DEF_DKIM_WL, an envelope sender whose
    SPF passes USER_IN_DEF_SPF_WL; a result forged in our name earns nothing, and the same
    message scanned outside the filter earns nothing either. A signature's domain is its
    identity's, as DKIM.pm reads it: d=example.com with i=@mail.example.com speaks for
    mail.example.com's authors, not example.com's."""
    rules = tmp_path / "welcome.cf"
    rules.write_text("def_welcomelist_auth *@example.com *@mail.example.com\ndef_welcomelist_from_spf a@example.net\n"
                     + "".join(f"header {name} eval:{function}()\ntflags {name} nice net\nscore {name} -7.5\n"
                               for name, function in (("USER_IN_DEF_DKIM_WL", "check_for_def_dkim_welcomelist_from"),
                                                      ("USER_IN_DEF_SPF_WL", "check_for_def_spf_welcomelist_from"))))
    send = filter_server(STRANGER + dns_settings(dns, 'SmtpFilters = ["spf", "dkim", "spamscore"]\n')
                         + f'UseBuiltinRules = false\nRulePaths = ["{rules}"]\n')
    ours = machine_name().encode()
    cases = {  # name: (message, envelope sender, what X-Spam-Status names)
        "signed": (signed(message("a@example.com", "signed"), key), "a@example.com", ["USER_IN_DEF_DKIM_WL"]),
        "forged": (b"Authentication-Results: " + ours + b"; dkim=pass header.d=example.com\r\n"
                   + message("a@example.com", "forged"), "a@example.com", []),
        "spf": (message("a@example.net", "spf"), "a@example.net", ["USER_IN_DEF_SPF_WL"]),
        "below": (signed(message("a@example.com", "below"), key, identity=b"@mail.example.com"),
                  "a@example.com", []),
        "identity": (signed(message("a@mail.example.com", "identity"), key, identity=b"@mail.example.com"),
                     "a@mail.example.com", ["USER_IN_DEF_DKIM_WL"]),
        "unlisted": (message("b@example.net", "unlisted"), "b@example.net", []),
    }
    for name, (data, sender, _) in cases.items():
        assert send(data, sender=sender).startswith("250"), name
    delivered = {m.split(b"Message-ID: <")[1].split(b"@")[0].decode(): m for m in sink.messages_as_sent()}
    for name, (_, _, expected) in cases.items():
        status = re.search(rb"^X-Spam-Status: .*?(?=^\S)", delivered[name], re.MULTILINE | re.DOTALL)
        assert status is not None, name
        named = re.search(r"tests=(\S*)", re.sub(r",\s+", ",", " ".join(status.group(0).decode().split())))
        assert (named.group(1).split(",") if named and named.group(1) != "none" else []) == expected, (name, status)
    config = config_from_text(f'UseBayes = false\nUseBuiltinRules = false\nRulePaths = ["{rules}"]\n',
                              tmp_path / "spamkit.toml", {})
    outside = Scanner.from_config(config, None).scan(delivered["signed"], "a@example.com")
    assert not outside.hits  # its Authentication-Results is a header: only the filter's word counts


def test_dmarc_reject_refuses_failures_of_a_reject_policy(filter_server, sink: Sink, dns: DnsServer,  # type: ignore[no-untyped-def]
                                                          key: tuple[bytes, str]) -> None:
    send = filter_server(STRANGER + dns_settings(dns, CHAIN, "DmarcReject = true"))
    good = signed(message("a@example.com", "good"), key)
    assert send(good, sender="a@example.com").startswith("250")
    altered = good.replace(b"The body of it.", b"Pay this invoice.")
    assert send(altered, sender="a@example.com").startswith(
        "550 5.7.1 Rejected by the DMARC policy of example.com")
    assert send(message("a@sub.example.net", "sub"), sender="a@sub.example.net").startswith("250")
    assert len(sink.messages()) == 2


def test_international_domains_are_checked_in_their_dns_form(filter_server, sink: Sink,  # type: ignore[no-untyped-def]
                                                               dns: DnsServer) -> None:
    """RFC 8616: SPF and DMARC work on a domain's A-labels. The From header's domain in
    UTF-8 was read as undecoded bytes, so DMARC looked up a name DNS cannot carry and a
    reject policy of παράδειγμα.δοκιμή was never applied. (SPF of a UTF-8 envelope
    domain was already looked up by its A-labels: dnspython encodes the name.)"""

    # (smtp-sink takes no SMTPUTF8, so with the next hop asked at RCPT the UTF-8 sender
    # below would hear 553 5.6.7 there, before SPF is asked at DATA)
    send = filter_server(STRANGER + dns_settings(dns, CHAIN, "DmarcReject = true\nSpfRejectFail = true\n"
                                                 "SmtpVerifyRecipients = false"))
    author = "From: a@παράδειγμα.δοκιμή\r\nTo: b@example.org\r\nDate: Tue, 25 Nov 2026 08:00:00 +0000\r\n"
    aligned = (author + "Subject: aligned\r\nMessage-ID: <idn@example.test>\r\n\r\nThe body.\r\n").encode()
    assert send(aligned, sender=f"a@{IDN}").startswith("250")  # SPF passes for the author domain
    [delivered] = sink.messages_as_sent()
    assert authentication_results(delivered)[0].split(b"; ", 1)[1].startswith(
        f"dmarc=pass header.from={IDN} policy.dmarc=reject".encode())
    assert send(aligned, sender="a@example.org").startswith(  # neither SPF nor DKIM aligned
        f"550 5.7.1 Rejected by the DMARC policy of {IDN}")

    client = socket.create_connection(("127.0.0.1", send.port), timeout=30)
    replies = client.makefile("rb")
    replies.readline()
    client.sendall("EHLO client.example.org\r\nMAIL FROM:<a@δοκιμή.example.net> SMTPUTF8\r\n"
                   "RCPT TO:<b@example.org>\r\nDATA\r\n".encode())
    while replies.readline()[3:4] == b"-":  # the EHLO reply
        pass
    assert [replies.readline()[:3] for _ in range(3)] == [b"250", b"250", b"354"]
    client.sendall(b"From: a@example.net\r\nSubject: spf\r\n\r\nbody\r\n.\r\n")
    assert replies.readline().startswith(b"550 5.7.23 SPF validation failed")  # -all, found
    client.close()
    assert len(sink.messages()) == 1


def test_dns_that_does_not_answer_is_a_temperror(filter_server, sink: Sink,  # type: ignore[no-untyped-def]
                                                key: tuple[bytes, str]) -> None:
    send = filter_server(STRANGER + f'DnsServers = ["{dead_server()}"]\nDnsTimeout = 0.3\n' + CHAIN)
    assert send(signed(message("a@example.com", "good"), key), sender="a@example.com").startswith("250")
    found = authentication_results(sink.messages_as_sent()[0])
    assert [line.split(b"; ", 1)[1].split(b" ")[0] for line in found] == [b"dmarc=temperror", b"dkim=temperror"]


def test_dmarc_needs_spf_and_dkim_before_it(filter_server) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(Exception, match="dmarc filter uses what spf and dkim found"):
        filter_server('SmtpFilters = ["dmarc", "spf", "dkim"]\n')


def test_organizational_domains(monkeypatch: pytest.MonkeyPatch) -> None:
    for suffix_list in (domains_module.PUBLIC_SUFFIX_LIST, Path("/nonexistent/list.dat")):
        monkeypatch.setattr(domains_module, "PUBLIC_SUFFIX_LIST", suffix_list)
        domains_module._public_suffix_rules.cache_clear()
        assert organizational_domain("mail.example.com") == "example.com"
        assert organizational_domain("a.b.example.co.uk") == "example.co.uk"
        assert organizational_domain("example.com") == "example.com"
    monkeypatch.undo()
    domains_module._public_suffix_rules.cache_clear()
    if domains_module.PUBLIC_SUFFIX_LIST.exists():  # what only the real list knows
        assert organizational_domain("someone.github.io") == "someone.github.io"


def test_policy_records() -> None:
    policy = parse_record("v=DMARC1; p=Reject; sp=quarantine; adkim=s; pct=200; rua=mailto:x@y", "example.com")
    assert policy is not None and (policy.p, policy.sp, policy.adkim, policy.aspf, policy.pct) == \
        ("reject", "quarantine", "s", "r", 100)
    assert policy.rua == ("mailto:x@y",)
    assert parse_record("v=DMARC1; rua=mailto:x@y", "example.com") is None
    assert parse_record("v=DMARC1; p=bogus", "example.com") is None
    defaulted = parse_record("v=DMARC1; p=none; sp=bogus; pct=x", "example.com")
    assert defaulted is not None and (defaulted.sp, defaulted.pct) == ("none", 100)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=2000),
                 st.lists(st.sampled_from([b"DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=sel; "
                                           b"h=from; bh=AAAA; b=AAAA", b"From: a@example.com",
                                           b"From: <>", b"From: a@b, c@d", b"\xff\xfe", b"", b" folded",
                                           b"Authentication-Results: localhost; dkim=pass",
                                           b"Subject: =?utf-8?q?x?="]),
                          max_size=8).map(lambda lines: b"\r\n".join(lines) + b"\r\n\r\nbody\r\n")))
def test_any_bytes_give_a_result_and_never_an_exception(data: bytes) -> None:
    for result, _domain, _selector in verify(data, KeyLookup(_UNANSWERED)):
        assert result in ("pass", "fail", "permerror", "temperror")
    author = author_domain(data)
    assert author is None or (author and "@" not in author)
    assert len(authres.without_ours(data, "localhost")) <= len(data)


_UNANSWERED = DnsClient([dead_server()], timeout=0.05)


@contextlib.contextmanager
def silent_resolver() -> Iterator[str]:
    """A resolver's address that takes queries and never answers: DNS down, as a firewall
    that drops the packets, or a resolver that hangs, leaves it."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as resolver:
        resolver.bind(("127.0.0.1", 0))
        yield f"127.0.0.1:{resolver.getsockname()[1]}"


def test_a_lookup_ends_at_the_deadline_it_is_given() -> None:
    with silent_resolver() as address:
        client = DnsClient([address], timeout=30)
        started = time.monotonic()
        answer = client.lookup("sel._domainkey.example.com", "TXT", deadline=started + 1)
        assert answer.outcome is Outcome.FAILED and 0.9 < time.monotonic() - started < 10
        passed = client.lookup("_dmarc.example.com", "TXT", deadline=time.monotonic() - 1)
        assert passed.outcome is Outcome.FAILED and "deadline has passed" in passed.error


def test_dns_down_costs_a_message_no_more_than_the_checks_deadline(  # type: ignore[no-untyped-def]
        filter_server, sink: Sink, key: tuple[bytes, str]) -> None:
    """DnsTimeout 30 s and ScanBudget 10 s, the resolver silent: SPF, the DKIM key and the
    DMARC policy each waited up to DnsTimeout, so every message got ScanBudget's 451 4.3.2
    while DNS was down. Their lookups now end at the DATA checks' deadline (9 s, give or
    take dnspython's 0.1 s pause between tries), and the message is relayed with each
    result temperror, scored."""
    with silent_resolver() as address:
        send = filter_server(STRANGER + 'SmtpFilters = ["spf", "dkim", "dmarc", "spamscore"]\n'
                             f'ScanBudget = 10\nDnsTimeout = 30\nDnsServers = ["{address}"]\n')
        reply = send(signed(message("a@example.com"), key), sender="a@example.com")
    assert reply.startswith("250"), reply
    [relayed] = sink.messages()
    assert relayed.startswith(b"X-Spam-") or b"\nX-Spam-Status: " in relayed
    assert b"Received-SPF: temperror" in relayed
    results = b" ".join(authentication_results(relayed))
    assert b"dkim=temperror" in results and b"dmarc=temperror" in results, results


def test_aggregate_reports_are_recorded_and_mailed(filter_server, sink: Sink, dns: DnsServer,  # type: ignore[no-untyped-def]
                                                   key: tuple[bytes, str], tmp_path: Path) -> None:
    """SME's DMARCReporting: rows recorded per message for a domain whose policy has rua=,
    then `spamkit dmarc-reports --send` mails yesterday's report, gzipped XML, to the
    addresses allowed to have it, and forgets it."""
    send = filter_server(STRANGER + dns_settings(dns, CHAIN, "DmarcReject = true"))
    good = signed(message("a@example.com", "good"), key)
    assert send(good, sender="a@example.com").startswith("250")
    assert send(good.replace(b"The body of it.", b"Changed."), sender="a@example.com").startswith("550")
    assert send(message("a@example.net", "net"), sender="a@example.net").startswith("250")  # no rua=
    database = tmp_path / "dmarc-reports.sqlite"  # where filter_server puts them
    rows = sqlite3.connect(database).execute(
        "SELECT policy_domain, disposition, dkim, spf, count FROM rows ORDER BY disposition").fetchall()
    assert rows == [("example.com", "none", "pass", "fail", 1), ("example.com", "reject", "fail", "fail", 1)]
    # the reports go out for finished days: make these yesterday's
    with sqlite3.connect(database) as db:
        db.execute("UPDATE rows SET day = date('now', '-1 day')")
    unset = tmp_path / "unset.toml"  # ReportFrom left at its placeholder: refused
    unset.write_text(f'DmarcReportDatabase = "{database}"\n')
    refused = subprocess.run([sys.executable, "-m", "spamkit", "dmarc-reports", "--send", "--config",
                              str(unset)], capture_output=True, text=True)
    assert refused.returncode == 2 and "ReportFrom" in refused.stderr
    config = tmp_path / "report.toml"
    config.write_text(dns_settings(dns, f'DmarcReportDatabase = "{database}"',
                                   f'ReportSmtpServer = "127.0.0.1:{sink.port}"',
                                   'ReportFrom = "dmarc-reports@ours.test"', 'DmarcReportOrg = "ours.test"'))
    listed = json.loads(subprocess.run(
        [sys.executable, "-m", "spamkit", "dmarc-reports", "--json", "--config", str(config)],
        capture_output=True, text=True, check=True).stdout)
    (entry,) = listed["reports"]
    assert (entry["domain"], entry["messages"], entry["rows"], entry["sent"]) == ("example.com", 2, 2, False)
    assert entry["to"] == ["dmarc@example.com", "agg@reports.test"]
    assert entry["refused"] == ["x@elsewhere.test: elsewhere.test has not agreed to take reports for "
                                "example.com"]
    sent = json.loads(subprocess.run(
        [sys.executable, "-m", "spamkit", "dmarc-reports", "--send", "--json", "--config", str(config)],
        capture_output=True, text=True, check=True).stdout)
    assert sent["reports"][0]["sent"] is True
    (parsed,) = [m for m in (email.message_from_bytes(data, policy=email.policy.default)
                             for data in sink.messages()) if m["Subject"].startswith("Report Domain")]
    assert parsed["Subject"].startswith("Report Domain: example.com Submitter: ours.test Report-ID: <")
    assert parsed["To"] == "dmarc@example.com, agg@reports.test"
    (attachment,) = [part for part in parsed.iter_attachments()]
    assert attachment.get_filename().startswith("ours.test!example.com!")
    feedback = ElementTree.fromstring(gzip.decompress(attachment.get_content()))
    assert feedback.findtext("policy_published/domain") == "example.com"
    assert feedback.findtext("policy_published/p") == "reject"
    records = {r.findtext("row/policy_evaluated/disposition"): r for r in feedback.iter("record")}
    assert sorted(records) == ["none", "reject"]
    assert records["none"].findtext("row/source_ip") == "127.0.0.1"
    assert records["none"].findtext("row/count") == "1"
    assert records["none"].findtext("auth_results/dkim/result") == "pass"
    assert records["reject"].findtext("auth_results/dkim/result") == "fail"
    assert records["none"].findtext("identifiers/header_from") == "example.com"
    again = json.loads(subprocess.run(
        [sys.executable, "-m", "spamkit", "dmarc-reports", "--json", "--config", str(config)],
        capture_output=True, text=True, check=True).stdout)
    assert again["reports"] == [], "a sent report is forgotten"


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=60), st.text(max_size=60), st.text(max_size=40), st.integers(1, 10**6))
def test_any_report_row_gives_well_formed_xml(domain: str, header_from: str, selector: str,
                                              count: int) -> None:
    """What a sender chose (the From domain, a signature's selector) goes into the report
    XML escaped: whatever it is, the report parses and says it back."""
    from smtpfilter.dmarcreports import Observation, Report, report_xml

    seen = Observation(domain or "example.com", {"p": "reject", "sp": "reject", "adkim": "r",
                                                 "aspf": "r", "pct": 100}, ("mailto:a@example.com",),
                       "192.0.2.1", header_from, "none", "pass", "fail",
                       ((header_from, selector, "pass"),), ("example.com", "fail"))
    report = Report("example.com", "2026-11-29", seen.policy, seen.rua, [(seen, count)])
    feedback = ElementTree.fromstring(report_xml(report, "ours.test", "r@ours.test", "id1"))
    # what XML can carry comes back as written (a parser reads a CR as a line end)
    kept = "".join(c for c in header_from if c in "\t\n\r" or (c >= " " and not 0xD800 <= ord(c) <= 0xDFFF
                                                                and c not in "\ufffe\uffff"))
    kept = kept.replace("\r\n", "\n").replace("\r", "\n")
    assert (feedback.findtext("record/identifiers/header_from") or "") == kept
    assert feedback.findtext("record/row/count") == str(count)


def test_a_damaged_report_file_is_a_clear_error(tmp_path: Path) -> None:
    """Not a database at all: one line naming the file and what to do, exit 74."""
    damaged = tmp_path / "dmarc-reports.sqlite"
    damaged.write_bytes(b"this is not SQLite " * 100)
    config = tmp_path / "spamkit.toml"
    config.write_text(f'DmarcReportDatabase = "{damaged}"\nReportFrom = "r@ours.test"\n')
    run = subprocess.run([sys.executable, "-m", "spamkit", "dmarc-reports", "--send", "--config",
                          str(config)], capture_output=True, text=True)
    assert run.returncode == 74 and "Traceback" not in run.stderr
    assert f"cannot use the DMARC report records at {damaged}" in run.stderr
