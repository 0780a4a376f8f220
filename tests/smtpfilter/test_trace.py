"""Our Received header (smtpfilter/trace.py): the sending host as the message records it."""

from __future__ import annotations

import email.parser
import email.policy
import smtplib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smtpfilter.dns import DnsClient
from smtpfilter.trace import Trace
from spamkit.rules.relays import parse_received
from tests.servers.dnsmasq import DnsServer, start_dnsmasq
from tests.servers.serve import start_serve, stop_serve
from tests.servers.smtp_sink import Sink


@pytest.fixture(scope="module")
def reverse_dns() -> Iterator[DnsServer]:
    yield from start_dnsmasq(
        ["example.net", "in-addr.arpa", "ip6.arpa"],
        ["--host-record=mail.example.net,8.8.4.4",  # (its A and its PTR)
         "--host-record=mx6.example.net,2001:4860:4860::8844",
         "--ptr-record=9.9.9.9.in-addr.arpa,liar.example.net",  # a name that leads nowhere
         "--ptr-record=7.7.7.7.in-addr.arpa,mail.example.net"])  # someone else's name


def test_the_name_written_is_the_clients_only_where_it_leads_back(reverse_dns: DnsServer) -> None:
    """The reverse name goes into the header only if it leads back to the client's
    address (as Postfix writes it): a PTR anyone can set for their own address is no
    proof. Loopback is localhost; a private address is not asked about."""
    trace = Trace(DnsClient([reverse_dns.address], timeout=2), "mx.example.org")
    assert trace.confirmed_name("8.8.4.4") == "mail.example.net"
    assert trace.confirmed_name("2001:4860:4860::8844") == "mx6.example.net"
    assert trace.confirmed_name("9.9.9.9") == "unknown"  # the name has no address
    assert trace.confirmed_name("7.7.7.7") == "unknown"  # the name is another host's
    assert trace.confirmed_name("1.1.1.1") == "unknown"  # no PTR
    assert trace.confirmed_name("127.0.0.1") == trace.confirmed_name("::1") == "localhost"
    assert Trace(DnsClient(["127.0.0.1:9"], timeout=0.5), "mx").confirmed_name("192.168.1.5") == "unknown"
    header = trace.received("8.8.4.4", "mail.example.net", esmtp=True, tls=True,
                            rcpt_tos=["b@example.org"], message_id="0123456789AB", now=0)
    assert header.decode().startswith(
        "Received: from mail.example.net (mail.example.net [8.8.4.4])\r\n"
        "\tby mx.example.org (spamkit) with ESMTPS id 0123456789AB\r\n\tfor <b@example.org>; ")
    relay = parse_received(header.decode().split(":", 1)[1])
    assert relay and (relay.ip, relay.rdns, relay.helo, relay.by, relay.id) == (
        "8.8.4.4", "mail.example.net", "mail.example.net", "mx.example.org", "0123456789AB")
    relay = parse_received(trace.received("2001:4860:4860::8844", "mx6", esmtp=False, tls=False,
                                          rcpt_tos=[], message_id="X1", now=0).decode().split(":", 1)[1])
    # (the relay's address as SpamAssassin writes it: without the "IPv6:" of the header)
    assert relay and (relay.ip, relay.rdns, relay.helo) == ("2001:4860:4860::8844", "mx6.example.net", "mx6")


@settings(max_examples=300, deadline=None)
@given(helo=st.text(max_size=300), recipients=st.lists(st.text(max_size=80), max_size=2))
def test_whatever_the_client_sent_the_header_is_one_header(helo: str, recipients: list[str]) -> None:
    """The HELO name and the recipient come from the client; no CR, LF or other byte
    of theirs can end our header early or put another after it (reliability checklist
    23), and a relay reader still finds the client's address in it."""
    header = Trace(None, "mx.example.org").received("192.0.2.7", helo, esmtp=True, tls=False,
                                                     rcpt_tos=recipients, message_id="ABC", now=0)
    assert header.isascii() and header.endswith(b"\r\n")
    assert all(line.startswith(b"\t") for line in header.split(b"\r\n")[1:-1])
    parsed = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(header + b"\r\nbody\r\n")
    assert parsed.keys() == ["Received"] and parsed.get_payload() == "body\r\n"
    relay = parse_received(header.decode().split(":", 1)[1])
    assert relay and relay.ip == "192.0.2.7" and relay.by == "mx.example.org"


def test_the_server_names_itself_as_smtphostname(tmp_path: Path, sink: Sink) -> None:
    """SmtpHostname (Postfix's myhostname) is the name in the greeting and in our
    Received header; a value that is not a host name is refused with its line."""
    config = tmp_path / "spamkit.toml"
    config.write_text('SmtpHostname = "mx1.example.org"\n')
    process, port = start_serve(sink.port, tmp_path / "db", config, stderr=subprocess.DEVNULL)
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
            assert client.ehlo("client.example.net")[1].split(b"\n")[0] == b"mx1.example.org"
            client.sendmail("a@example.org", ["b@example.org"], b"Subject: hi\r\n\r\nhello\r\n")
    finally:
        assert stop_serve(process)[0] == 0
    [relayed] = sink.messages_as_sent()
    assert b"Received: from client.example.net (localhost [127.0.0.1])\n\tby mx1.example.org (spamkit)" in relayed
    config.write_text('UseBayes = false\nSmtpHostname = "mx1 example.org"\n')
    refused = subprocess.run([sys.executable, "-m", "spamkit", "lint", "--config", str(config)],
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0 and f"{config}:2" in refused.stderr and "not a host name" in refused.stderr
