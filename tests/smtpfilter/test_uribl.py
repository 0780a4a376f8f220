"""uribl (SME's URIBL plugin, UBLList) against a real DNS server: the domains a message
links to, found in any part and encoding, asked of URI blocklists."""

from __future__ import annotations

import base64
import re
import time

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from smtpfilter.plugins import build_filters
from smtpfilter.dnslists import zones
from smtpfilter.plugins.uribl import MAX_DOMAINS, UriZone, link_names, uri_zones
from spamkit.config import config_from_text
from spamkit.errors import ConfigError
from spamkit.message import parse_message
from spamkit.verdict import Scanner
from tests.servers.dnsmasq import DnsServer
from tests.servers.smtp_sink import Sink
from tests.smtpfilter.conftest import STRANGER, dead_server, settings


def message(*links: str, extra_headers: str = "") -> bytes:
    """A multipart message: the links in a base64 HTML part, nothing in the plain one."""
    html = "<html><body>" + "".join(f'<a href="{link}">here</a> ' for link in links) + "</body></html>"
    return (f"From: a@example.net\r\nDate: Tue, 25 Nov 2026 08:00:00 +0000\r\nSubject: offer\r\n"
            f"{extra_headers}MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n"
            "--b\r\nContent-Type: text/plain\r\n\r\nsee the other part\r\n"
            "--b\r\nContent-Type: text/html\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            f"{base64.encodebytes(html.encode()).decode()}\r\n--b--\r\n").encode()


def uribl(dns: DnsServer, *lines: str) -> str:
    return STRANGER + settings(dns, 'SmtpFilters = ["uribl"]',
                               'UBLList = ["surbl.test:8-16-64-128", "uribl.test"]', *lines)


def test_a_link_to_a_listed_domain_is_refused(filter_server, sink: Sink,  # type: ignore[no-untyped-def]
                                              dns: DnsServer) -> None:
    send = filter_server(uribl(dns))
    reply = send(message("http://www.offers.spam-site.biz/buy?id=1"))
    assert reply.startswith("554 5.7.1 Message refused: it links to spam-site.biz, listed by "
                            "surbl.test"), reply
    assert reply.startswith("554") and sink.messages() == []
    # organizational domain under a two-level suffix; a link to a listed IP address
    assert send(message("https://shop.bad-shop.co.uk/")).startswith("554"), "bad-shop.co.uk"
    assert send(message("http://8.8.4.4/login")).startswith("554"), "4.4.8.8"
    assert sink.messages() == []


def test_what_is_not_a_listing_passes(filter_server, sink: Sink,  # type: ignore[no-untyped-def]
                                      dns: DnsServer) -> None:
    send = filter_server(uribl(dns))
    # an answer without the chosen bits (127.0.0.4 under 8-16-64-128), URIBL's "query
    # refused" code 127.0.0.1, a domain no list knows, mailto: and a private address
    for links in (["http://www.example.net/"], ["http://refused.biz/"], ["http://fine.example.com/"],
                  ["mailto:someone@spam-site.biz", "http://10.0.0.1/"]):
        assert send(message(*links)).startswith("250"), links
    assert len(sink.messages()) == 4
    # without a mask, any listing counts
    strict = filter_server(STRANGER + settings(dns, 'SmtpFilters = ["uribl"]', 'UBLList = ["surbl.test"]'))
    assert strict(message("http://www.example.net/")).startswith("554")


def test_a_list_that_lists_everything_lists_nothing(filter_server, sink: Sink,  # type: ignore[no-untyped-def]
                                                     dns: DnsServer, caplog: pytest.LogCaptureFixture) -> None:
    """everything.test answers every name as listed, INVALID too, which RFC 5782 forbids:
    its listings are not believed, and the sound list beside it still refuses."""
    import logging

    with caplog.at_level(logging.WARNING, logger="spamkit.smtpfilter"):
        send = filter_server(STRANGER + settings(dns, 'SmtpFilters = ["uribl"]',
                                                 'UBLList = ["everything.test", "uribl.test"]'))
        assert send(message("http://fine.example.com/", "http://8.8.8.8/")).startswith("250")
        assert send(message("http://fine.example.com/", "https://shop.bad-shop.co.uk/")).startswith(
            "554 5.7.1 Message refused: it links to bad-shop.co.uk, listed by uribl.test")
    assert len(sink.messages()) == 1
    assert "UBLList: everything.test lists invalid (127.0.0.2)" in caplog.text
    assert "UBLList: everything.test lists 1.0.0.127 (127.0.0.2)" in caplog.text


def test_add_header_marks_the_message_and_drops_a_forged_mark(filter_server, sink: Sink,  # type: ignore[no-untyped-def]
                                                              dns: DnsServer) -> None:
    send = filter_server(uribl(dns, 'UriblAction = "add-header"'))
    forged = "X-URIBL-Match: nothing to see\r\n"
    assert send(message("http://spam-site.biz/", "https://bad-shop.co.uk/x",
                        extra_headers=forged)).startswith("250")
    assert send(message("http://fine.example.com/", extra_headers=forged)).startswith("250")
    marked, clean = sorted(sink.messages(), key=lambda m: b"X-URIBL-Match" not in m)
    assert b"X-URIBL-Match: spam-site.biz in surbl.test: 127.0.0.72" in marked
    assert b"bad-shop.co.uk in uribl.test: 127.0.0.2" in marked
    assert b"nothing to see" not in marked and b"X-URIBL-Match" not in clean


def test_skipped_domains_local_clients_and_denysoft(filter_server, sink: Sink,  # type: ignore[no-untyped-def]
                                                    dns: DnsServer) -> None:
    skipping = filter_server(uribl(dns, 'UriblSkipDomains = ["spam-site.biz"]'))
    assert skipping(message("http://spam-site.biz/")).startswith("250")
    local = filter_server(settings(dns, 'SmtpFilters = ["uribl"]', 'UBLList = ["uribl.test"]',
                                   'LocalNetworks = ["127.0.0.0/8"]'))
    assert local(message("http://bad-shop.co.uk/")).startswith("250"), "our own users' mail"
    soft = filter_server(uribl(dns, 'UriblAction = "denysoft"'))
    assert soft(message("http://bad-shop.co.uk/")).startswith("451 4.7.1")


def test_a_list_that_does_not_answer_lists_nothing(filter_server, sink: Sink) -> None:  # type: ignore[no-untyped-def]
    send = filter_server(STRANGER + f'DnsServers = ["{dead_server()}"]\nDnsTimeout = 1\n'
                         'SmtpFilters = ["uribl"]\nUBLList = ["surbl.test", "uribl.test"]\n')
    links = [f"http://www.site{n}.example/" for n in range(MAX_DOMAINS)]
    started = time.monotonic()
    assert send(message(*links)).startswith("250")
    # 40 lookups: the first ones wait out their second together, the rest are not sent
    assert time.monotonic() - started < 4


def test_zone_lists_and_what_is_asked() -> None:
    assert uri_zones(["multi.surbl.org:8-16-64-128", "black.uribl.com", "a.test:b.test."]) == [
        UriZone("multi.surbl.org", 8 | 16 | 64 | 128), UriZone("black.uribl.com"),
        UriZone("a.test"), UriZone("b.test")]
    with pytest.raises(ConfigError, match="before any zone"):
        uri_zones(["8-16:multi.surbl.org"])
    # SME's own default, comma-joined in one value, as a hand-written file may carry it
    assert uri_zones(["multi.surbl.org:8-16-64-128,black.uribl.com,rhsbl.sorbs.net"]) == [
        UriZone("multi.surbl.org", 8 | 16 | 64 | 128), UriZone("black.uribl.com"),
        UriZone("rhsbl.sorbs.net")]
    assert zones(["zen.spamhaus.org,bl.spamcop.net:dnsbl.example."]) == [
        "zen.spamhaus.org", "bl.spamcop.net", "dnsbl.example"]
    links = [f"http://www.site{n}.example/" for n in range(30)]
    parsed = parse_message(message("http://a.shop.example.co.uk/", "HTTP://WWW.Shop.Example.CO.UK/x",
                                   "http://192.168.1.1/", "http://[::1]/", "http://-bad-.com/",
                                   "http://xn--bcher-kva.example/", *links))
    names = link_names(parsed, frozenset({"site3.example"}))
    assert names[:2] == ["example.co.uk", "xn--bcher-kva.example"]
    assert "site3.example" not in names and len(names) == MAX_DOMAINS


def test_uribl_needs_its_lists(tmp_path) -> None:  # type: ignore[no-untyped-def]
    config = config_from_text('SmtpFilters = ["uribl"]\n', tmp_path / "spamkit.toml", {})
    with pytest.raises(ConfigError, match="UBLList"):
        build_filters(config, Scanner.from_config(config, None), False)


@hypothesis_settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(st.text(max_size=80), st.sampled_from(
    ["http://", "https://[::1]/", "http://256.1.1.1/", "http://8.8.8.8:80/x", "mailto:", "www.",
     "http://a..b/", "http://xn--/", "http://\u00e9x\u00e4mple.com/", "HTTP://X.CO.UK",
     "http://-a-.com", "http://" + "a" * 300 + ".com/"])), max_size=40))
def test_any_links_give_names_that_are_safe_to_ask_and_to_write(urls: list[str]) -> None:
    """Whatever a message links to: no exception, at most MAX_DOMAINS names, each one a
    DNS name (letters, digits, dots, hyphens) that is safe in a query and in a header."""
    message = parse_message(b"Subject: x\r\n\r\n")
    message.urls = urls
    names = link_names(message, frozenset())
    assert len(names) <= MAX_DOMAINS and len(set(names)) == len(names)
    for name in names:
        assert re.fullmatch(r"[a-z0-9.-]{1,253}", name), name
