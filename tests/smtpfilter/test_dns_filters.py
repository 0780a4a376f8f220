"""dnsbl, rhsbl, resolvable_fromhost and the helo rfc/strict policies against a real DNS
server (dnsmasq on loopback, the `dns` fixture of conftest.py), with swaks as the client
and smtp-sink as the next hop."""

from __future__ import annotations

import smtplib
import threading
import time
from pathlib import Path

import pytest

from smtpfilter import dns as dns_module
from smtpfilter.chain import FilterChain
from smtpfilter.dns import DnsClient, Outcome, parse_server, reversed_address
from smtpfilter.dnslists import TALLY
from smtpfilter.metrics import Metrics
from smtpfilter.plugins import build_filters
from smtpfilter.plugins.spf import _lookup_through as spf_lookup_through
from spamkit.config import config_from_text
from spamkit.errors import ConfigError
from spamkit.verdict import Scanner
from tests.servers.dnsmasq import DnsServer, start_dnsmasq
from tests.servers.smtp_sink import Sink
from tests.servers.swaks import swaks
from tests.smtpfilter.conftest import LISTED_CLIENT, PLAIN, STRANGER, dead_server, settings


def test_lookups_tell_missing_from_failed(dns: DnsServer) -> None:
    client = DnsClient([dns.address], timeout=2)
    found = client.lookup("5.0.0.127.bad.test", "A")
    assert found.outcome is Outcome.FOUND and found.records == ("127.0.0.2",)
    assert client.lookup("6.0.0.127.bad.test", "A").outcome is Outcome.MISSING  # NXDOMAIN
    assert client.lookup("aonly.example.net", "MX").outcome is Outcome.MISSING  # no MX
    refused = client.lookup("www.elsewhere.invalid", "A")  # outside its zones: REFUSED
    assert refused.outcome is Outcome.FAILED and refused.error
    down = DnsClient([dead_server()], timeout=0.5).lookup("5.0.0.127.bad.test", "A")
    assert down.outcome is Outcome.FAILED
    too_long = client.lookup("a" * 70 + ".bad.test", "A")  # a label over 63 bytes
    assert too_long.outcome is Outcome.FAILED


def test_the_systems_resolvers_are_followed_as_resolv_conf_changes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """With DnsServers empty the filters ask the resolvers /etc/resolv.conf names. The
    file was read once a process, and a reload (SIGHUP) kept the same client, so an
    administrator who pointed it at a resolver of their own, as the public-resolver
    warning asks, or a DHCP lease that named new ones, went unheard until a restart
    (Postfix's smtpd hears it: glibc reads the file again when it changes). Now it is
    looked at every FOLLOW_SECONDS and read again when changed, with a fresh cache; SPF's
    lookups follow too; a file caught naming none changes nothing. Two dnsmasq servers on
    port 53 (resolv.conf names an address, no port) answer one name differently."""
    monkeypatch.setattr(dns_module, "FOLLOW_SECONDS", 0.2)
    first = start_dnsmasq(["example.test"], ["--address=/host.example.test/10.0.0.2"], "127.0.0.2", 53)
    second = start_dnsmasq(["example.test"], ["--address=/host.example.test/10.0.0.3"], "127.0.0.3", 53)
    next(first), next(second)
    try:
        conf = tmp_path / "resolv.conf"
        conf.write_text("nameserver 127.0.0.2\n")
        client = DnsClient([], timeout=2, resolv_conf=str(conf))
        assert client.lookup("host.example.test", "A").records == ("10.0.0.2",)
        replacement = tmp_path / "resolv.conf.new"  # replaced by rename, as resolvconf does
        replacement.write_text("# from a new lease\nnameserver 127.0.0.3\n")
        replacement.rename(conf)
        assert client.lookup("host.example.test", "A").records == ("10.0.0.2",)  # (not yet looked)
        time.sleep(0.3)
        assert client.lookup("host.example.test", "A").records == ("10.0.0.3",)  # not the cached one
        assert "now go through 127.0.0.3 (before: 127.0.0.2)" in caplog.text
        assert spf_lookup_through(client)("host.example.test", "A") == [(("host.example.test", "A"), "10.0.0.3")]
        conf.write_text("# being written\n")  # written in place, and caught half way
        time.sleep(0.3)
        assert client.lookup("host.example.test", "A").records == ("10.0.0.3",)
        assert "names no resolver now" in caplog.text
        conf.write_text("nameserver 127.0.0.2\n")
        time.sleep(0.3)
        assert client.lookup("host.example.test", "A").records == ("10.0.0.2",)
        assert "public resolver" not in caplog.text
        conf.write_text("nameserver 9.9.9.9\n")  # (as `lint` warns at start, when it happens)
        time.sleep(0.3)
        assert [str(server) for server in client.current().nameservers] == ["9.9.9.9"]
        assert "9.9.9.9 is a public resolver" in caplog.text
        fixed = DnsClient(["127.0.0.3:53"], timeout=2)  # DnsServers: no file to follow
        assert fixed.current() is fixed.current() and fixed.lookup("host.example.test", "A").records == ("10.0.0.3",)
    finally:
        first.close()
        second.close()


def test_server_and_address_forms() -> None:
    assert parse_server("192.0.2.53") == ("192.0.2.53", 53)
    assert parse_server("127.0.0.1:5353") == ("127.0.0.1", 5353)
    assert parse_server("[::1]:5353") == ("::1", 5353)
    assert parse_server("2001:db8::53") == ("2001:db8::53", 53)
    for bad in ("ns1.example.org", "127.0.0.1:0", "127.0.0.1:x"):
        with pytest.raises(ValueError):
            parse_server(bad)
    assert reversed_address("192.0.2.99") == "99.2.0.192"
    assert reversed_address("::ffff:192.0.2.99") == "99.2.0.192"
    assert reversed_address("2001:db8::1") == ".".join("1" + "0" * 23 + "8bd01002")  # 32 nibbles
    assert reversed_address("not an address") is None


def test_dnsbl_refuses_a_listed_client_but_not_mail_to_postmaster(filter_server, sink: Sink,  # type: ignore[no-untyped-def]
                                                                 dns: DnsServer) -> None:
    send = filter_server(STRANGER + settings(dns, 'SmtpFilters = ["dnsbl"]',
                                             'RBLList = ["clean.test:bad.test"]'))
    reply = send(to="b@example.org", client=LISTED_CLIENT)
    assert reply.startswith(f"554 5.7.1 Service unavailable; client host [{LISTED_CLIENT}] blocked "
                            "using bad.test; Listed: see http://bad.test/why"), reply
    assert send(to="postmaster@example.org", client=LISTED_CLIENT).startswith("250")
    assert send(to="abuse@example.org", client=LISTED_CLIENT).startswith("250")
    assert send(to="b@example.org").startswith("250")  # 127.0.0.1 is not listed
    assert len(sink.messages()) == 3


def test_dnsbl_spares_local_clients_and_ignores_list_error_codes(filter_server, sink: Sink,  # type: ignore[no-untyped-def]
                                                                 dns: DnsServer) -> None:
    local = filter_server(settings(dns, 'SmtpFilters = ["dnsbl"]', 'RBLList = ["bad.test"]'))
    assert local(client=LISTED_CLIENT).startswith("250")  # in the default LocalNetworks
    refused = filter_server(STRANGER + settings(dns, 'SmtpFilters = ["dnsbl"]',
                                                'RBLList = ["refuses.test", "clean.test"]'))
    assert refused().startswith("250")  # 127.255.255.254 is the list refusing, not a listing
    assert len(sink.messages()) == 2


def test_a_list_that_has_closed_is_not_asked(filter_server, sink: Sink, dns: DnsServer,  # type: ignore[no-untyped-def]
                                             tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """SME drops the lists that have closed from RBLList and SBLList (its guide names them);
    a configuration carried over from it may still name one. AHBL's zone answered every
    query as a listing once it closed: asked, it refused all mail (here as before the
    change). It is left out, with a warning in the log and from `spamkit lint`."""
    import json
    import logging
    import subprocess
    import sys

    from smtpfilter.dns import DnsClient

    assert DnsClient([dns.address], timeout=2).lookup("9.9.9.9.dnsbl.ahbl.org", "A").records == ("127.0.0.2",)
    config = STRANGER + settings(dns, 'SmtpFilters = ["dnsbl"]', 'RBLList = ["dnsbl.ahbl.org:clean.test"]')
    with caplog.at_level(logging.WARNING, logger="spamkit.smtpfilter"):
        send = filter_server(config)
    assert "RBLList names dnsbl.ahbl.org, a list that has closed; it is not asked" in caplog.text
    assert send().startswith("250")
    assert len(sink.messages()) == 1
    (tmp_path / "spamkit.toml").write_text(config)
    lint = subprocess.run([sys.executable, "-m", "spamkit", "lint", "--json", "--config",
                           str(tmp_path / "spamkit.toml")], capture_output=True, text=True, timeout=120)
    assert [w for w in json.loads(lint.stdout)["warnings"] if "dnsbl.ahbl.org, a list that has closed" in w]


def test_a_list_that_lists_everything_is_not_believed(filter_server, sink: Sink, dns: DnsServer,  # type: ignore[no-untyped-def]
                                                      caplog: pytest.LogCaptureFixture) -> None:
    """A list that closes or breaks may answer every query as a listing (AHBL's did, and
    everything.test here is not on SME's list of closed ones): believed, it refuses all
    mail. RFC 5782 forbids a list to list 127.0.0.1 or the name INVALID; one that does is
    left out, with an error in the log, and the sound lists beside it still count."""
    import logging

    config = STRANGER + settings(dns, 'SmtpFilters = ["dnsbl", "rhsbl"]',
                                 'RBLList = ["everything.test", "bad.test"]',
                                 'SBLList = ["everything.test", "dbl.test"]')
    with caplog.at_level(logging.WARNING, logger="spamkit.smtpfilter"):
        send = filter_server(config)
        assert send(client=LISTED_CLIENT).startswith(
            f"554 5.7.1 Service unavailable; client host [{LISTED_CLIENT}] blocked using bad.test")
        assert send(client="127.0.0.6").startswith("250")
        assert send(client="127.0.0.7", sender="x@spammer.example.net").startswith(
            "554 5.7.1 Sender address rejected: spammer.example.net is listed by dbl.test")
        assert send(client="127.0.0.7", sender="a@example.net").startswith("250")
    assert len(sink.messages()) == 2
    # said once, when found, for each kind of entry asked
    assert caplog.text.count("RBLList: everything.test lists 1.0.0.127 (127.0.0.2), which "
                             "RFC 5782 says no list may") == 1, caplog.text
    assert caplog.text.count("SBLList: everything.test lists invalid (127.0.0.2)") == 1


def test_the_metrics_count_each_lists_answers(filter_server, sink: Sink, dns: DnsServer) -> None:  # type: ignore[no-untyped-def]
    """A list that stops answering, refuses this server's queries or answers everything
    lets mail through (the last: once found out), so nothing in the mail shows it. The
    metrics count each list's answers by kind, and show which list is not believed now.
    Before, only the log said so."""
    before = TALLY.answers()
    send = filter_server(STRANGER + settings(dns, 'SmtpFilters = ["dnsbl", "rhsbl", "uribl"]',
                                             'RBLList = ["refuses.test", "everything.test", "bad.test"]',
                                             'SBLList = ["dbl.test"]', 'UBLList = ["surbl.test:8-16-64-128"]'))
    assert send(client=LISTED_CLIENT).startswith("554 5.7.1 Service unavailable")
    assert send().startswith("250")  # 127.0.0.1: refuses.test answers its error code
    assert send(sender="x@spammer.example.net", client="127.0.0.6").startswith("554")
    linking = PLAIN.replace(b"hello", b"see http://www.example.net/ and http://spam-site.biz/x")
    assert send(linking, client="127.0.0.6").startswith("554 5.7.1 Message refused: it links to spam-site.biz")
    text = Metrics().exposition()
    assert 'spamkit_dnslist_disbelieved{list="RBLList",zone="everything.test"} 1' in text
    assert 'spamkit_dnslist_disbelieved{list="RBLList",zone="bad.test"} 0' in text  # tested when it listed
    dead = filter_server(STRANGER + f'DnsServers = ["{dead_server()}"]\nDnsTimeout = 0.5\n'
                         'SmtpFilters = ["dnsbl"]\nRBLList = ["bad.test"]\n')
    assert dead().startswith("250")
    # a chain built anew (SIGHUP) has tested no list yet
    assert "spamkit_dnslist_disbelieved{" not in Metrics().exposition()
    counted = {key: n - before.get(key, 0) for key, n in TALLY.answers().items() if n != before.get(key, 0)}
    assert counted == {
        ("RBLList", "refuses.test", "error_code"): 1, ("RBLList", "refuses.test", "not_listed"): 3,
        ("RBLList", "everything.test", "disbelieved"): 4,
        ("RBLList", "bad.test", "listed"): 1, ("RBLList", "bad.test", "not_listed"): 3,
        ("RBLList", "bad.test", "failed"): 1,
        ("SBLList", "dbl.test", "not_listed"): 2, ("SBLList", "dbl.test", "listed"): 1,
        # 127.0.0.4 lists example.net, but not under the bits asked for
        ("UBLList", "surbl.test", "not_listed"): 1, ("UBLList", "surbl.test", "listed"): 1,
    }, counted
    assert ('spamkit_dnslist_answers_total{list="RBLList",zone="refuses.test",answer="error_code"} '
            f'{TALLY.answers()["RBLList", "refuses.test", "error_code"]}') in Metrics().exposition()


def test_list_health_is_kept_for_a_while_then_asked_again(dns: DnsServer) -> None:
    """The test entry is asked only when a list lists, and its answer is kept for
    RECHECK_SECONDS; a list that mends is believed again at the next asking; a test query
    that goes unanswered keeps what was known. Two DNS servers stand for the list before
    and after it mends."""
    from smtpfilter.dnslists import (
        NEVER_LISTED_IPV6,
        RECHECK_SECONDS,
        RECHECK_UNANSWERED_SECONDS,
        ListHealth,
        never_listed,
    )
    from tests.servers.dnsmasq import start_dnsmasq

    assert never_listed("5.0.0.127") == "1.0.0.127"
    assert never_listed("example.net") == never_listed("1.2.3.example") == "invalid"
    assert never_listed(reversed_address("2001:db8::1") or "") == NEVER_LISTED_IPV6
    assert NEVER_LISTED_IPV6 == ".".join("100000f7ffff" + "0" * 20)  # ::ffff:7f00:1

    now = [0.0]
    broken = DnsClient([dns.address], timeout=2)
    health = ListHealth(broken, "RBLList", clock=lambda: now[0])
    assert health.lists_everything("everything.test", "5.0.0.127")
    assert not health.lists_everything("bad.test", "5.0.0.127")
    assert not health.lists_everything("dbl.test", "spammer.example.net")
    health.dns = DnsClient([dead_server()], timeout=0.3)
    assert health.lists_everything("everything.test", "6.0.0.127")  # kept: not asked
    now[0] += RECHECK_SECONDS
    assert health.lists_everything("everything.test", "6.0.0.127")  # unanswered: as it was
    assert not health.lists_everything("bad.test", "6.0.0.127")
    mended_server = start_dnsmasq(["everything.test"], ["--address=/5.0.0.127.everything.test/127.0.0.2"])
    mended = next(mended_server)
    try:
        health.dns = DnsClient([mended.address], timeout=2)
        assert health.lists_everything("everything.test", "6.0.0.127")  # asked a minute ago
        now[0] += RECHECK_UNANSWERED_SECONDS
        assert not health.lists_everything("everything.test", "6.0.0.127")
        health.dns = broken
        assert not health.lists_everything("everything.test", "6.0.0.127")  # for ten minutes
        now[0] += RECHECK_SECONDS
        assert health.lists_everything("everything.test", "6.0.0.127")
    finally:
        mended_server.close()


def test_lint_dns_asks_each_list_its_test_entries(dns: DnsServer, tmp_path: Path) -> None:
    """`spamkit lint --dns` tells an administrator, before any mail is lost, which lists
    refuse this server's queries, list everything, do not answer, or are not lists."""
    import json
    import subprocess
    import sys

    config = tmp_path / "spamkit.toml"
    config.write_text(STRANGER + settings(
        dns, 'SmtpFilters = ["dnsbl", "rhsbl", "uribl"]',
        'RBLList = ["bad.test", "everything.test", "refuses.test", "clean.test", "lists.elsewhere"]',
        'SBLList = ["dbl.test", "dnsbl.ahbl.org"]', 'UBLList = ["uribl.test:2", "everything.test"]'))

    def lint(*options: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "spamkit", "lint", "--config", str(config), *options],
                              capture_output=True, text=True, timeout=120)

    result = lint("--dns", "--json")
    assert result.returncode == 0, result.stderr  # warnings, not errors
    out = json.loads(result.stdout)
    found = {(row["option"], row["zone"]): row for row in out["dns_lists"]}
    # the closed list is left out, as the filter leaves it out
    assert list(found) == [("RBLList", "bad.test"), ("RBLList", "everything.test"),
                           ("RBLList", "refuses.test"), ("RBLList", "clean.test"),
                           ("RBLList", "lists.elsewhere"), ("SBLList", "dbl.test"),
                           ("UBLList", "uribl.test"), ("UBLList", "everything.test")]
    sound = [key for key, row in found.items() if not row["problem"]]
    assert sound == [("RBLList", "bad.test"), ("SBLList", "dbl.test"), ("UBLList", "uribl.test")]
    assert found["RBLList", "bad.test"]["test_listed"] is True
    assert found["RBLList", "bad.test"]["lists_everything"] is False
    assert found["RBLList", "everything.test"]["lists_everything"] is True
    assert found["UBLList", "everything.test"]["never_listed"] == "invalid"
    assert found["RBLList", "refuses.test"]["error_codes"] == ["127.255.255.254"]
    assert found["RBLList", "lists.elsewhere"]["failure"]  # outside the server's zones: REFUSED
    warnings = "\n".join(out["warnings"])
    assert "RBLList: everything.test lists 1.0.0.127, which RFC 5782 says no list may" in warnings
    assert "UBLList: everything.test lists invalid, which RFC 5782 says no list may" in warnings
    assert "RBLList: refuses.test answered 127.255.255.254, an error code, not a listing" in warnings
    assert "RBLList: clean.test does not list 127.0.0.2, the test entry RFC 5782" in warnings
    assert "RBLList: lists.elsewhere did not answer (" in warnings
    assert len(out["warnings"]) == 6  # those five, and the closed list's

    text = lint("--dns")
    assert "RBLList: bad.test is sound: it lists 2.0.0.127, not 1.0.0.127" in text.stdout
    assert "SBLList: dbl.test is sound: it does not list invalid" in text.stdout
    assert "warning: RBLList: everything.test lists 1.0.0.127" in text.stderr
    without = json.loads(lint("--json").stdout)  # no --dns: nothing asked, no field
    assert "dns_lists" not in without and len(without["warnings"]) == 1


def test_a_list_that_does_not_answer_lets_mail_through(filter_server, sink: Sink) -> None:  # type: ignore[no-untyped-def]
    send = filter_server(STRANGER + f'DnsServers = ["{dead_server()}"]\nDnsTimeout = 0.5\n'
                         'SmtpFilters = ["dnsbl", "rhsbl"]\nRBLList = ["bad.test"]\n'
                         'SBLList = ["dbl.test"]\n')
    assert send(sender="x@spammer.example.net").startswith("250")
    assert len(sink.messages()) == 1


def test_rhsbl_refuses_a_listed_sender_domain(filter_server, sink: Sink, dns: DnsServer) -> None:  # type: ignore[no-untyped-def]
    send = filter_server(STRANGER + settings(dns, 'SmtpFilters = ["rhsbl"]', 'SBLList = ["dbl.test"]'))
    reply = send(sender="offers@spammer.example.net")
    assert reply.startswith("554 5.7.1 Sender address rejected: spammer.example.net is listed "
                            "by dbl.test"), reply
    assert send(sender="offers@spammer.example.net", to="postmaster@example.org").startswith("250")
    assert send(sender="friend@example.org").startswith("250")
    assert send(sender="<>").startswith("250")  # a bounce has no sender domain to ask about
    assert len(sink.messages()) == 3


def test_resolvable_fromhost(filter_server, sink: Sink, dns: DnsServer) -> None:  # type: ignore[no-untyped-def]
    send = filter_server(STRANGER + settings(dns, 'SmtpFilters = ["resolvable_fromhost"]'))
    assert send(sender="a@example.org").startswith("250")  # has an MX
    assert send(sender="a@aonly.example.net").startswith("250")  # no MX, an address
    assert send(sender="<>").startswith("250")  # the null sender
    assert send(sender="a@[192.0.2.7]").startswith("250")  # an address literal
    refused = {
        "a@nowhere.example.net": "550 5.1.8 Sender address rejected: domain nowhere.example.net "
                                 "has no mail server or address",
        "a@nullmx.example.net": "550 5.1.8 Sender address rejected: nullmx.example.net accepts "
                                "no mail (null MX)",
        "a@no_dots": "550 5.1.8 Sender address rejected: 'no_dots' is not a domain name",
        "a@elsewhere.invalid": "451 4.1.8 Sender address rejected: cannot look up "
                               "elsewhere.invalid now",  # REFUSED: the sender retries later
    }
    for sender, expected in refused.items():
        reply = send(sender=sender)
        assert reply.startswith(expected), (sender, reply)
    assert len(sink.messages()) == 4


def test_resolvable_fromhost_defers_when_dns_is_down(filter_server, sink: Sink) -> None:  # type: ignore[no-untyped-def]
    send = filter_server(STRANGER + f'DnsServers = ["{dead_server()}"]\nDnsTimeout = 0.5\n'
                         'SmtpFilters = ["resolvable_fromhost"]\n')
    assert send(sender="a@example.org").startswith("451 4.1.8")
    assert sink.messages() == []


def test_resolvable_fromhost_is_in_the_default_chain_and_spares_local_clients(  # type: ignore[no-untyped-def]
        filter_server, sink: Sink) -> None:
    # DNS that never answers: a local client is never asked about, so its mail goes through
    send = filter_server(f'DnsServers = ["{dead_server()}"]\nDnsTimeout = 0.5\n'
                         'LocalDomains = ["example.org"]\n')
    assert send(sender="a@nowhere.example.net").startswith("250")
    assert len(sink.messages()) == 1


def test_dns_settings_are_checked_when_the_filter_is_built(tmp_path: Path) -> None:
    def build(text: str) -> None:
        config = config_from_text("UseBayes = false\n" + text, tmp_path / "spamkit.toml", {})
        build_filters(config, Scanner.from_config(config, None), False)

    with pytest.raises(ConfigError, match="dnsbl filter needs RBLList"):
        build('SmtpFilters = ["dnsbl"]\n')
    with pytest.raises(ConfigError, match=r"needs RBLList \(the zones to ask\), and every list it "
                                          r"names has closed"):
        build('SmtpFilters = ["dnsbl"]\nRBLList = ["dnsbl.ahbl.org"]\n')
    with pytest.raises(ConfigError, match="rhsbl filter needs SBLList"):
        build('SmtpFilters = ["rhsbl"]\nSBLList = [":"]\n')
    with pytest.raises(ConfigError, match=r"spamkit.toml:3: DnsServers: .*ns1.example.org"):
        build('SmtpFilters = ["resolvable_fromhost"]\nDnsServers = ["ns1.example.org"]\n')


def test_a_session_waiting_on_dns_holds_up_no_other(filter_server, sink: Sink, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The envelope stages run on worker threads: while one client's lookup waits out its
    timeout, a client that needs no lookup is served."""
    send = filter_server(f'LocalNetworks = ["127.0.0.2/32"]\nRelayClients = []\n'
                         f'LocalDomains = ["example.org"]\nDnsServers = ["{dead_server()}"]\n'
                         'DnsTimeout = 4\nSmtpFilters = ["resolvable_fromhost"]\n')
    message = tmp_path / "local.eml"
    message.write_bytes(PLAIN)
    waiting: dict[str, str] = {}
    stranger = threading.Thread(target=lambda: waiting.update(reply=send(sender="a@example.org")))
    stranger.start()
    time.sleep(0.5)  # its MAIL FROM is waiting on DNS now
    reply = swaks(send.port, message, "a@example.org", "b@example.org", "client.example.org",
                  extra=("--local-interface", "127.0.0.2"))
    assert reply.startswith("250")
    assert stranger.is_alive()  # served while the stranger's lookup was still waiting
    stranger.join(30)
    assert waiting["reply"].startswith("451 4.1.8")
    assert len(sink.messages()) == 1


def test_only_the_stages_that_may_wait_leave_the_event_loop(tmp_path: Path) -> None:
    config = config_from_text('UseBayes = false\nDnsServers = ["127.0.0.1"]\nRBLList = ["bad.test"]\n'
                              'SmtpFilters = ["relay", "resolvable_fromhost", "dnsbl", "spamscore"]\n',
                              tmp_path / "spamkit.toml", {})
    chain = FilterChain(build_filters(config, Scanner.from_config(config, None), False))
    assert [chain.may_block(stage) for stage in ("connect", "helo", "mail", "rcpt", "data")] == \
        [False, False, True, True, False]


def test_helo_rfc_and_strict_policies(filter_server, sink: Sink, dns: DnsServer, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rfc = filter_server(STRANGER + settings(dns, 'SmtpFilters = ["helo"]', 'HeloPolicy = "rfc"'))
    strict = filter_server(STRANGER + settings(dns, 'SmtpFilters = ["helo"]', 'HeloPolicy = "strict"'))
    # client.example.net resolves to 127.0.0.1, which resolves back to it
    assert rfc(helo="client.example.net").startswith("250")
    assert strict(helo="client.example.net").startswith("250")
    # aonly.example.net resolves, but to another address
    assert rfc(helo="aonly.example.net").startswith("250")
    assert strict(helo="aonly.example.net").startswith(
        "550 5.7.1 HELO aonly.example.net does not match your address [127.0.0.1]")
    assert rfc(helo="nowhere.example.net").startswith("550 5.7.1 HELO nowhere.example.net does not resolve")
    assert rfc(helo="DESKTOP-7QX2").startswith("550 5.7.1 HELO desktop-7qx2 is not a fully qualified")
    assert rfc(helo="[127.0.0.1]").startswith("250")  # its own address literal
    assert rfc(helo="1.2.3.4").startswith("550 5.7.1 HELO 1.2.3.4: a bare IP")  # lenient's checks still run
    # a client without a reverse name (127.0.0.2 has no PTR record)
    message = tmp_path / "m.eml"
    message.write_bytes(PLAIN)
    reply = swaks(rfc.port, message, "a@example.org", "b@example.org", "client.example.net",
                  extra=("--local-interface", "127.0.0.2"))
    assert reply.startswith("550 5.7.1 Your address [127.0.0.2] has no reverse DNS name"), reply
    # DNS that does not answer refuses nothing
    down = filter_server(STRANGER + f'DnsServers = ["{dead_server()}"]\nDnsTimeout = 0.3\n'
                         'SmtpFilters = ["helo"]\nHeloPolicy = "strict"\n')
    assert down(helo="aonly.example.net").startswith("250")
    assert len(sink.messages()) == 5


def test_xforward_from_the_mta_in_front_names_the_client(filter_server, sink: Sink, dns: DnsServer) -> None:  # type: ignore[no-untyped-def]
    """Behind Postfix (smtpd_proxy_filter, or content_filter with
    smtp_send_xforward_command) every session comes from the MTA; XFORWARD says which
    client the message is from, and the checks are about that client."""
    send = filter_server('LocalNetworks = []\nRelayClients = ["127.0.0.1"]\n'
                         'LocalDomains = ["example.org"]\n'
                         + settings(dns, 'SmtpFilters = ["dnsbl", "helo"]', 'RBLList = ["bad.test"]'))
    with smtplib.SMTP("127.0.0.1", send.port, timeout=30) as client:
        code, features = client.ehlo("mta.example.org")
        assert code == 250 and b"XFORWARD NAME ADDR PROTO HELO SOURCE" in features
        assert client.docmd("XFORWARD", "NAME=[UNAVAILABLE] ADDR=192.0.2.9 HELO=1.2.3.4")[0] == 250
        code, reply = client.mail("a@example.net")
        assert code == 550 and b"HELO 1.2.3.4: a bare IP" in reply  # the client's HELO
        client.rset()  # the attributes belong to one transaction
        assert client.docmd("XFORWARD", "ADDR=192.0.2.9 HELO=mx.example.net")[0] == 250
        client.mail("a@example.net")
        code, reply = client.rcpt("b@example.org")
        assert code == 554 and b"client host [192.0.2.9] blocked using bad.test" in reply
        client.rset()
        client.sendmail("a@example.net", ["b@example.org"], PLAIN)  # the MTA's own: trusted
        assert client.docmd("XFORWARD", "ADDR=not-an-address")[0] == 501
        assert client.docmd("XFORWARD", "COLOUR=blue")[0] == 501
    assert len(sink.messages()) == 1


def test_a_proxy_protocol_header_is_not_believed(filter_server, sink: Sink, dns: DnsServer) -> None:  # type: ignore[no-untyped-def]
    """Reliability checklist 15: the filter speaks no PROXY protocol (aiosmtpd's is off),
    so a header claiming another address is an unknown command, and every check is
    about the peer that really connected (listed here, LISTED_CLIENT), not the claimed one."""
    from tests.servers.smtp_client import Client

    send = filter_server(STRANGER + settings(dns, 'SmtpFilters = ["dnsbl"]', 'RBLList = ["bad.test"]'))
    client = Client(send.port, source=LISTED_CLIENT)
    assert client.reply().startswith(b"220")
    assert client.command(b"PROXY TCP4 198.51.100.7 127.0.0.1 40000 25").startswith(b"500")
    assert client.command(b"EHLO client.example.net").startswith(b"250")
    assert client.command(b"MAIL FROM:<a@example.net>").startswith(b"250")
    assert client.command(b"RCPT TO:<b@example.org>").startswith(
        f"554 5.7.1 Service unavailable; client host [{LISTED_CLIENT}] blocked using bad.test".encode())
    client.sock.close()
    assert sink.messages() == []


def test_xforward_only_from_relay_clients(filter_server, sink: Sink, dns: DnsServer) -> None:  # type: ignore[no-untyped-def]
    send = filter_server(STRANGER + settings(dns, 'SmtpFilters = ["dnsbl"]', 'RBLList = ["clean.test"]'))
    with smtplib.SMTP("127.0.0.1", send.port, timeout=30) as client:
        code, features = client.ehlo("client.example.net")
        assert b"XFORWARD" not in features
        code, reply = client.docmd("XFORWARD", "ADDR=192.0.2.9")
        assert code == 550 and b"insufficient authorization" in reply
        client.sendmail("a@example.net", ["b@example.org"], PLAIN)
    assert len(sink.messages()) == 1
