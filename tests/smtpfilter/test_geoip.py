"""The geoip filter: clients refused by their country (BlockedCountries, AllowedCountries),
never our own and never mail to postmaster; the country on the log line; the filter
that has no database refuses to start. Clients are named by XFORWARD, as the MTA in
front names them (loopback addresses are nobody's country)."""

from __future__ import annotations

import logging
import smtplib
import time
from pathlib import Path

import pytest

from smtpfilter.plugins import build_filters, lint_chain
from spamkit.config import config_from_text
from spamkit.errors import ConfigError
from spamkit.verdict import Scanner
from tests.geoipfiles import write_mmdb, write_ranges
from tests.servers.smtp_sink import Sink
from tests.smtpfilter.conftest import PLAIN

CN_CLIENT, US_CLIENT, DE_CLIENT, NOWHERE = "81.2.69.160", "93.184.216.34", "80.243.0.9", "198.51.100.7"


@pytest.fixture
def database(tmp_path: Path) -> Path:
    return write_mmdb(tmp_path / "countries.mmdb", [("81.2.69.0/24", "CN"), ("93.184.216.0/24", "US"),
                                                    ("80.243.0.0/16", "DE")])


def _settings(database: Path, *lines: str) -> str:
    return ('LocalNetworks = []\nRelayClients = ["127.0.0.1"]\nLocalDomains = ["example.org"]\n'
            f'SmtpFilters = ["geoip"]\nGeoIPDatabase = ["{database}"]\n' + "".join(line + "\n" for line in lines))


def _send_as(port: int, client: str | None, rcpts: list[str]) -> list[tuple[int, bytes]]:
    """The replies to RCPT TO, and to DATA when a recipient was taken, for mail from
    `client` (named by XFORWARD; None: the MTA's own)."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
        smtp.ehlo("mta.example.org")
        if client is not None:
            assert smtp.docmd("XFORWARD", f"ADDR={client} HELO=mx.example.net")[0] == 250
        smtp.mail("a@example.net")
        replies = [smtp.rcpt(rcpt) for rcpt in rcpts]
        if any(code == 250 for code, _ in replies):
            smtp.putcmd("data")
            smtp.getreply()
            smtp.send(PLAIN + b".\r\n")
            replies.append(smtp.getreply())
    return replies


def test_blocked_countries(filter_server, sink: Sink, database: Path,  # type: ignore[no-untyped-def]
                           caplog: pytest.LogCaptureFixture) -> None:
    send = filter_server(_settings(database, 'BlockedCountries = ["cn", "RU"]'))
    with caplog.at_level(logging.INFO, logger="spamkit.smtpfilter"):
        refused, postmaster, data = _send_as(send.port, CN_CLIENT, ["b@example.org", "postmaster@example.org"])
        assert refused[0] == 550 and f"[{CN_CLIENT}] in CN is not accepted here".encode() in refused[1]
        assert postmaster[0] == 250 and data[0] == 250  # a refused sender may still ask why
        assert [code for code, _ in _send_as(send.port, US_CLIENT, ["b@example.org"])] == [250, 250]
        assert [code for code, _ in _send_as(send.port, NOWHERE, ["b@example.org"])] == [250, 250]
        assert [code for code, _ in _send_as(send.port, None, ["b@example.org"])] == [250, 250]
    assert len(sink.messages()) == 4
    assert f"client={CN_CLIENT} helo=mx.example.net from=<a@example.net> rcpt=b@example.org stage=rcpt " \
           "reply='550' by=geoip country=CN" in caplog.text
    assert f"client={US_CLIENT} " in caplog.text and " country=US" in caplog.text
    assert f"client={NOWHERE} " in caplog.text and " country=-" in caplog.text


def test_allowed_countries(filter_server, sink: Sink, database: Path) -> None:  # type: ignore[no-untyped-def]
    """Only mail from the countries named, and from addresses the database does not place."""
    send = filter_server(_settings(database, 'AllowedCountries = ["DE", "US"]'))
    assert _send_as(send.port, CN_CLIENT, ["b@example.org"])[0][0] == 550
    for client in (DE_CLIENT, US_CLIENT, NOWHERE):
        assert [code for code, _ in _send_as(send.port, client, ["b@example.org"])] == [250, 250]
    assert len(sink.messages()) == 3


def test_our_own_clients_are_never_refused(filter_server, sink: Sink, database: Path) -> None:  # type: ignore[no-untyped-def]
    """A user of ours on a trip: a client in RelayClients passes from any country."""
    send = filter_server(_settings(database, 'BlockedCountries = ["CN"]').replace(
        'RelayClients = ["127.0.0.1"]', f'RelayClients = ["127.0.0.1", "{CN_CLIENT}"]'))
    assert [code for code, _ in _send_as(send.port, CN_CLIENT, ["b@example.org"])] == [250, 250]
    assert len(sink.messages()) == 1


def test_no_database_no_start(tmp_path: Path) -> None:
    """A geoip filter with no database would place no one, and refuse no one, in
    silence: the chain is not built, and lint says why."""
    text = _settings(tmp_path / "missing.mmdb", 'BlockedCountries = ["CN"]')
    config = config_from_text(text, tmp_path / "spamkit.toml", {})
    with pytest.raises(ConfigError, match=r"spamkit.toml:5: the geoip filter has no country database: "
                                          r".*missing.mmdb: No such file or directory"):
        build_filters(config, Scanner.from_config(config, None), False)
    errors, _ = lint_chain(config)
    assert any("the geoip filter has no country database" in error for error in errors)


def test_lint_warns_of_old_data_and_of_refusing_everyone(tmp_path: Path) -> None:
    old = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() - 500 * 86400))
    ranges = write_ranges(tmp_path / "geoip", ["1358102528,1358102783,DE"], f"# Generated: {old}\n")
    config = config_from_text(_settings(ranges, 'BlockedCountries = ["DE"]', 'AllowedCountries = ["de"]'),
                              tmp_path / "spamkit.toml", {})
    errors, warnings = lint_chain(config)
    assert errors == []
    assert any(f"{ranges}: the country data is 500 days old" in warning for warning in warnings)
    assert any("every country AllowedCountries names is in BlockedCountries too" in w for w in warnings)


def test_a_bad_country_code_names_its_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"spamkit.toml:6: .*'China' is not a two-letter country code"):
        config_from_text(_settings(tmp_path / "x.mmdb", 'BlockedCountries = ["China"]'),
                         tmp_path / "spamkit.toml", {})
