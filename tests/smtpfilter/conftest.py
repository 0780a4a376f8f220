"""The SMTP filter tests' peers: Postfix's smtp-sink as the next hop, and a filter built
in-process from a configuration text, driven by swaks."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from smtpfilter.chain import FilterChain
from smtpfilter.limits import LimitedController, SessionLimits
from smtpfilter.plugins import build_filters
from smtpfilter.server import FilterHandler
from spamkit.config import config_from_text
from spamkit.verdict import Scanner
from tests.servers.dnsmasq import DnsServer, start_dnsmasq
from tests.servers.pyzord import Pyzord, start_pyzord
from tests.servers.redis import RedisServer, start_redis
from tests.servers.smtp_sink import Sink, free_port, start_sink
from tests.servers.swaks import swaks

PLAIN = b"From: a@example.org\r\nDate: Tue, 25 Nov 2026 08:00:00 +0000\r\nSubject: hi\r\n\r\nhello\r\n"

Run = Callable[..., str]

# The DNS the filter's DNS checks are tested against. The clients are on loopback: the
# lists list LISTED_CLIENT (a test sends from it with send(client=...)), never 127.0.0.1,
# which RFC 5782 forbids a list to list. Tests that want a client treated as a stranger
# use STRANGER, which empties LocalNetworks and RelayClients, as a server facing the
# Internet has them for every client but its own.
LISTED_CLIENT = "127.0.0.5"
ZONES = ["bad.test", "clean.test", "refuses.test", "dbl.test", "example.org", "example.net",
         "in-addr.arpa", "surbl.test", "uribl.test", "dnsbl.ahbl.org", "everything.test"]
RECORDS = [
    # a list that closed and then answered every query as a listing, as AHBL's did
    "--address=/dnsbl.ahbl.org/127.0.0.2",
    # one not on SME's list of closed lists that does the same, for any kind of name
    "--address=/everything.test/127.0.0.2",
    "--address=/5.0.0.127.bad.test/127.0.0.2",  # LISTED_CLIENT
    "--address=/2.0.0.127.bad.test/127.0.0.2",  # the test entry RFC 5782 asks every list for
    "--address=/9.2.0.192.bad.test/127.0.0.2",  # a client named by XFORWARD
    "--txt-record=5.0.0.127.bad.test,Listed: see http://bad.test/why",
    # what Spamhaus answers a query it refuses (one from a big public resolver)
    "--address=/1.0.0.127.refuses.test/127.255.255.254",
    "--address=/spammer.example.net.dbl.test/127.0.1.2",
    "--mx-host=example.org,mail.example.org,10",
    "--host-record=aonly.example.net,192.0.2.1",
    "--mx-host=nullmx.example.net,.,0",
    # SPF: 127.0.0.1 (the test client) is permitted for example.net and its HELO name
    "--txt-record=example.net,v=spf1 ip4:127.0.0.1 -all",
    "--host-record=client.example.net,127.0.0.1",
    "--txt-record=client.example.net,v=spf1 a -all",
    "--txt-record=fails.example.net,v=spf1 ip4:192.0.2.0/24 -all",
    "--txt-record=soft.example.net,v=spf1 ~all",
    "--txt-record=neutral.example.net,v=spf1 ?all",
    "--txt-record=broken.example.net,v=spf1 ip4:not-an-address -all",
    # SpfRejectPolicy applies only where the author domain publishes no DMARC policy
    "--txt-record=withdmarc.example.net,v=spf1 ip4:192.0.2.0/24 -all",
    "--txt-record=_dmarc.withdmarc.example.net,v=DMARC1; p=none",
    # the reverse name of 127.0.0.1 (127.0.0.2 has none), for the helo rfc/strict policies
    "--ptr-record=1.0.0.127.in-addr.arpa,client.example.net",
    # URI blocklists: a combined list answering bits (64|8 counts under the mask
    # 8-16-64-128, 4 does not), and one answering 127.0.0.2, or 127.0.0.1 for a query it
    # refuses (URIBL's code, never a listing)
    "--address=/spam-site.biz.surbl.test/127.0.0.72",
    "--address=/example.net.surbl.test/127.0.0.4",
    "--address=/bad-shop.co.uk.uribl.test/127.0.0.2",
    "--address=/4.4.8.8.uribl.test/127.0.0.2",
    "--address=/refused.biz.uribl.test/127.0.0.1",
]
STRANGER = 'LocalNetworks = []\nRelayClients = []\nLocalDomains = ["example.org"]\n'


@pytest.fixture(scope="session")
def dns() -> Iterator[DnsServer]:
    yield from start_dnsmasq(ZONES, RECORDS)


def settings(dns: DnsServer, *lines: str) -> str:
    return "\n".join([f'DnsServers = ["{dns.address}"]', "DnsTimeout = 2", *lines]) + "\n"


def dead_server() -> str:
    """A loopback port where nothing answers DNS."""
    return f"127.0.0.1:{free_port()}"


@pytest.fixture(scope="module")
def pyzord(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pyzord]:
    """Debian's Pyzor server on loopback (tests/servers/pyzord.py)."""
    yield from start_pyzord(tmp_path_factory.mktemp("pyzord"))


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server for the filters' shared-state tests; each test keys under a
    prefix of its own."""
    yield from start_redis(tmp_path_factory.mktemp("redis"))


@pytest.fixture
def sink() -> Iterator[Sink]:
    yield from start_sink()


@pytest.fixture
def filter_server(sink: Sink, tmp_path: Path) -> Iterator[Callable[[str], Run]]:
    """start(config text) -> send(data, sender, to, helo): the reply to the message."""
    controllers = []

    def start(config_text: str) -> Run:
        # the test's own DMARC report rows, never the real place beside /var/lib/spamkit
        private = f'UseBayes = false\nDmarcReportDatabase = "{tmp_path / "dmarc-reports.sqlite"}"\n'
        config = config_from_text(private + config_text, tmp_path / "spamkit.toml", {})
        scanner = Scanner.from_config(config, None)
        port = free_port()
        handler = FilterHandler(FilterChain(build_filters(config, scanner, False)), ("127.0.0.1", sink.port),
                                forwarders=tuple(config["RelayClients"]),
                                verify_recipients=config["SmtpVerifyRecipients"],
                                scan_budget=config["ScanBudget"])
        controller = LimitedController(handler, SessionLimits(), hostname="127.0.0.1", port=port)
        controller.start()
        controllers.append(controller)

        def send(data: bytes = PLAIN, sender: str = "a@example.org", to: str = "b@example.org",
                 helo: str = "client.example.org", client: str = "127.0.0.1") -> str:
            message = tmp_path / "m.eml"
            message.write_bytes(data)
            return swaks(port, message, sender, to, helo, extra=("--local-interface", client))

        send.port = port  # type: ignore[attr-defined]
        return send

    yield start
    for controller in controllers:
        controller.stop()
