"""The spf filter against SPF records served by dnsmasq, and the SpamAssassin SPF rules
scoring its Received-SPF header, as the SME guide sets them up."""

from __future__ import annotations

from pathlib import Path

import pytest

from spamkit.config import config_from_text
from spamkit.verdict import Scanner
from tests.servers.dnsmasq import DnsServer
from tests.servers.smtp_sink import Sink
from tests.smtpfilter.conftest import PLAIN, STRANGER, settings

SPF_RULES = Path("/usr/share/spamassassin/25_spf.cf")


def spf_headers(delivered: bytes) -> list[bytes]:
    head = delivered.split(b"\n\n", 1)[0].replace(b"\n\t", b" ")
    return [line for line in head.split(b"\n") if line.startswith(b"Received-SPF:")]


def test_results_go_into_received_spf_headers(filter_server, sink: Sink, dns: DnsServer) -> None:  # type: ignore[no-untyped-def]
    send = filter_server(STRANGER + settings(dns, 'SmtpFilters = ["spf"]'))
    expected = {"a@example.net": b"pass", "a@fails.example.net": b"fail",
                "a@soft.example.net": b"softfail", "a@example.org": b"none",
                "a@elsewhere.invalid": b"temperror"}  # REFUSED: DNS failed, mail passes
    for sender in expected:
        assert send(sender=sender, helo="client.example.net").startswith("250"), sender
    delivered = {spf_headers(m)[0].split(b'envelope-from="')[1].split(b'"')[0].decode(): m
                 for m in sink.messages_as_sent()}  # smtp-sink's file names are random
    assert sorted(delivered) == sorted(expected)
    for sender, result in expected.items():
        message = delivered[sender]
        mailfrom, helo = spf_headers(message)
        assert mailfrom.startswith(b"Received-SPF: " + result + b" ("), (sender, mailfrom)
        assert f'envelope-from="{sender}"'.encode() in mailfrom and b"identity=mailfrom;" in mailfrom
        assert b"client-ip=127.0.0.1;" in mailfrom
        assert helo.startswith(b"Received-SPF: pass (") and b"identity=helo;" in helo
        assert b"identity=helo;\n" + PLAIN.replace(b"\r\n", b"\n") in message  # then the message as sent


def test_a_bounce_is_checked_against_the_helo_name(filter_server, sink: Sink, dns: DnsServer) -> None:  # type: ignore[no-untyped-def]
    send = filter_server(STRANGER + settings(dns, 'SmtpFilters = ["spf"]'))
    assert send(sender="<>", helo="client.example.net").startswith("250")
    mailfrom = spf_headers(sink.messages_as_sent()[0])[0]
    assert mailfrom.startswith(b"Received-SPF: pass") and b'envelope-from="postmaster@client.example.net"' in mailfrom


def test_local_clients_are_not_checked(filter_server, sink: Sink, dns: DnsServer) -> None:  # type: ignore[no-untyped-def]
    send = filter_server(settings(dns, 'SmtpFilters = ["spf"]', "SpfRejectFail = true"))
    assert send(sender="a@fails.example.net").startswith("250")
    assert spf_headers(sink.messages_as_sent()[0]) == []


def test_spf_reject_fail(filter_server, sink: Sink, dns: DnsServer) -> None:  # type: ignore[no-untyped-def]
    send = filter_server(STRANGER + settings(dns, 'SmtpFilters = ["spf"]', "SpfRejectFail = true"))
    assert send(sender="a@fails.example.net").startswith("550 5.7.23 SPF validation failed")
    assert send(sender="a@soft.example.net").startswith("250")  # softfail is for the score
    assert len(sink.messages()) == 1


def test_sme_guide_spf_scores(filter_server, sink: Sink, dns: DnsServer, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The guide's setup: SpamAssassin's SPF rules with `score SPF_SOFTFAIL 6` and
    `score SPF_FAIL 14`; a softfail is tagged as spam (TagLevel 4), a fail refused
    (RejectLevel 12)."""
    if not SPF_RULES.exists():
        pytest.fail(f"{SPF_RULES} is missing: install Debian's spamassassin package")
    local = tmp_path / "20localscores.cf"
    local.write_text("score SPF_SOFTFAIL 6.000\nscore SPF_FAIL 14.000\n")
    send = filter_server(STRANGER + settings(
        dns, 'SmtpFilters = ["spf", "spamscore"]', 'Sensitivity = "custom"', "TagLevel = 4",
        "RejectLevel = 12", "UseBuiltinRules = false", f'RulePaths = ["{SPF_RULES}", "{local}"]'))
    assert send(sender="a@fails.example.net", helo="client.example.net").startswith("550")
    assert send(sender="a@soft.example.net", helo="client.example.net").startswith("250")
    assert send(sender="a@example.net", helo="client.example.net").startswith("250")
    tagged, clean = sorted(sink.messages_as_sent(), key=lambda m: b"soft.example.net" not in m)
    assert b"X-Spam-Flag: YES" in tagged and b"SPF_SOFTFAIL" in tagged
    assert b"X-Spam-Flag: YES" not in clean and b"SPF_PASS" in clean


def test_only_the_topmost_header_of_each_identity_counts(tmp_path: Path) -> None:
    config = config_from_text(f'UseBayes = false\nUseBuiltinRules = false\nRulePaths = ["{SPF_RULES}"]\n',
                              tmp_path / "spamkit.toml", {})
    scanner = Scanner.from_config(config, None)
    message = (b"Received-SPF: fail (mx.example.org: no) identity=mailfrom;\r\n"
               b"Received-SPF: pass (mx.example.org: yes) identity=helo;\r\n"
               b"Received-SPF: pass (forged by the sender) identity=mailfrom;\r\n" + PLAIN)
    hits = {hit.name for hit in scanner.scan(message).hits}
    assert {"SPF_FAIL", "SPF_HELO_PASS"} <= hits and "SPF_PASS" not in hits
    assert not {hit.name for hit in scanner.scan(PLAIN).hits} & {"SPF_FAIL", "SPF_PASS", "SPF_NONE"}


def test_an_address_literal_helo_has_no_helo_identity(filter_server, sink: Sink, dns: DnsServer) -> None:  # type: ignore[no-untyped-def]
    send = filter_server(STRANGER + settings(dns, 'SmtpFilters = ["spf"]'))
    assert send(sender="a@example.net", helo="[127.0.0.1]").startswith("250")
    headers = spf_headers(sink.messages_as_sent()[0])
    assert len(headers) == 1 and headers[0].startswith(b"Received-SPF: pass") and b"identity=mailfrom;" in headers[0]


def test_spf_reject_policy_applies_only_without_a_dmarc_policy(filter_server, sink: Sink,  # type: ignore[no-untyped-def]
                                                               dns: DnsServer) -> None:
    """SME's SPFRejectPolicy, level by level: each level refuses what the one before did
    and one result more, and never mail whose author domain publishes a DMARC policy."""
    lowest_refusing = {"fails.example.net": 1, "soft.example.net": 2, "neutral.example.net": 3,
                       "example.org": 4, "broken.example.net": 4,  # none; permerror
                       "example.net": None,  # pass
                       "withdmarc.example.net": None}  # fail, but _dmarc says p=none
    for level in range(5):
        send = filter_server(STRANGER + settings(dns, 'SmtpFilters = ["spf"]',
                                                 f"SpfRejectPolicy = {level}"))
        for domain, lowest in lowest_refusing.items():
            message = PLAIN.replace(b"From: a@example.org", f"From: a@{domain}".encode())
            reply = send(message, sender=f"a@{domain}", helo="client.example.net")
            refused = lowest is not None and lowest <= level
            assert reply.startswith("550 5.7.23 SPF" if refused else "250"), (level, domain, reply)
    results = {line.split(b" ")[1] for m in sink.messages_as_sent() for line in spf_headers(m)}
    assert {b"fail", b"softfail", b"neutral", b"none", b"permerror", b"pass"} <= results
