"""The country databases (spamkit.geoip): MaxMind DB files, judged by MaxMind's own Perl
reader; tor-geoipdb's ranges, judged by a plain scan and on Debian's own files; bad
files, named with their line; replaced files, read again; `spamkit geoip`."""

from __future__ import annotations

import ipaddress
import json
import random
import re
import shutil
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

import spamkit.geoip
from spamkit.cli import main
from spamkit.errors import GeoIPError
from spamkit.geoip import Countries, find_databases, open_database
from spamkit.geoip.mmdb import MaxMindDatabase
from spamkit.geoip.ranges import RangeDatabase
from tests.geoipfiles import maxmind_reader_countries, write_mmdb, write_ranges

CODES = ["DE", "FR", "GB", "US", "CN", "BR", "JP", "ZA", "NZ", "-"]


def _random_networks(rng: random.Random, count: int) -> list[tuple[str, str]]:
    networks = []
    for _ in range(count):
        if rng.random() < 0.7:
            prefix = rng.randint(8, 30)
            network = ipaddress.ip_network((rng.getrandbits(32), prefix), strict=False)
        else:
            prefix = rng.randint(16, 64)
            network = ipaddress.ip_network(((0x2 << 124) | rng.getrandbits(124), prefix), strict=False)
        networks.append((str(network), rng.choice(CODES)))
    return networks


def _probes(rng: random.Random, networks: list[tuple[str, str]], count: int) -> list[str]:
    """Addresses inside the networks, at their edges, and anywhere."""
    probes = []
    for text, _ in networks:
        network = ipaddress.ip_network(text)
        probes += [str(network[0]), str(network[-1]), str(network[rng.randrange(network.num_addresses)])]
    probes += [str(ipaddress.IPv4Address(rng.getrandbits(32))) for _ in range(count)]
    probes += [str(ipaddress.IPv6Address((0x2 << 124) | rng.getrandbits(124))) for _ in range(count // 4)]
    return probes


def test_mmdb_lookups_agree_with_maxminds_reader(tmp_path: Path) -> None:
    """800 overlapping networks, IPv4 and IPv6, one with a record but no country: on
    every one of ~5,000 addresses we say what MaxMind's Perl reader says."""
    rng = random.Random(7)
    networks = _random_networks(rng, 800)
    path = write_mmdb(tmp_path / "t.mmdb", networks)
    probes = _probes(rng, networks, 2400)
    database = open_database(path)
    assert isinstance(database, MaxMindDatabase)
    ours = [database.country(ipaddress.ip_address(address)) for address in probes]
    theirs = maxmind_reader_countries(path, probes)
    assert ours == theirs
    assert sum(code is not None for code in ours) > 2000  # (most probes are placed)
    assert "spamkit-test-Country" in database.describe()


def test_ranges_agree_with_a_plain_scan(tmp_path: Path) -> None:
    rng = random.Random(11)
    lines, ranges = [], []
    start = 1 << 24
    for _ in range(3000):  # sorted, with gaps, as tor's files are
        first = start + rng.randint(0, 5000)
        last = first + rng.randint(0, 70000)
        code = rng.choice(["DE", "FR", "US", "??", "cn"])
        lines.append(f"{first},{last},{code}")
        ranges.append((first, last, None if code == "??" else code.upper()))
        start = last + 1
    v6 = []
    for index in range(300):
        first = (0x2001 << 112) + (index << 80)
        last = first + rng.randint(0, 1 << 79)
        v6.append((first, last, rng.choice(["JP", "BR"])))
        lines.append(f"{ipaddress.IPv6Address(first)},{ipaddress.IPv6Address(last)},{v6[-1][2]}")
    rng.shuffle(lines)  # (a file out of order is read all the same)
    path = write_ranges(tmp_path / "geoip", lines, "# a comment\n# Generated: Thu, 25 Jun 2026 04:33:59 GMT\n\n")
    database = open_database(path)
    assert isinstance(database, RangeDatabase) and database.ranges == 3300
    assert "made 2026-06-25" in database.describe()

    def scan(value: int, table: list[tuple[int, int, str | None]]) -> str | None:
        return next((code for first, last, code in table if first <= value <= last), None)

    probes = [value for first, last, _ in ranges for value in (first - 1, first, last, last + 1)]
    probes += [rng.randint(0, 1 << 32) - 1 for _ in range(2000)]
    for value in probes:
        if 0 <= value < 1 << 32:
            assert database.country(ipaddress.IPv4Address(value)) == scan(value, ranges), value
    for first, last, _code in v6:
        for value in (first - 1, first, (first + last) // 2, last, last + 1):
            assert database.country(ipaddress.IPv6Address(value)) == scan(value, v6)


@pytest.mark.skipif(not Path("/usr/share/tor/geoip").exists(), reason="tor-geoipdb is not installed")
def test_debians_tor_files(tmp_path: Path) -> None:
    """Debian's own files (scripts/install-test-deps.sh installs them): every sampled line's
    first, middle and last address give its country; found when nothing is configured."""
    countries = Countries((), directories=[str(tmp_path)])  # (no MaxMind DB there)
    assert [str(d.path) for d in countries.open()] == ["/usr/share/tor/geoip", "/usr/share/tor/geoip6"]
    v4, v6 = countries.open()
    rng = random.Random(3)
    for path, database in (("/usr/share/tor/geoip", v4), ("/usr/share/tor/geoip6", v6)):
        rows = [line.split(",") for line in Path(path).read_text().splitlines() if line and line[0] != "#"]
        for first, last, code in rng.sample(rows, 1500):
            low, high = (int(first), int(last)) if "." not in first and ":" not in first else \
                (int(ipaddress.ip_address(first)), int(ipaddress.ip_address(last)))
            family = ipaddress.IPv6Address if ":" in first else ipaddress.IPv4Address
            for value in (low, (low + high) // 2, high):
                assert database.country(family(value)) == (None if code == "??" else code)


@pytest.mark.parametrize(("content", "message"), [
    (b"16777216,16777471,AU\n16777472,oops,CN\n", ":2: not a range"),
    (b"16777216,16777471,AUS\n", ":1: not a range"),
    (b"5,4,DE\n", ":1: not a range"),  # last before first
    (b"1,4294967296,DE\n", ":1: not a range"),  # past IPv4
    (b"2001::,zz::,DE\n", ":1: not a range"),
    (b"# only comments\n\n", "no address ranges"),
    (b"", "no address ranges"),
    (b"\x00\x01binary" * 50 + b"\xff\xff\xff\x01\x00\x00", "legacy GeoIP (version 1)"),
], ids=["bad-number", "long-code", "backwards", "past-ipv4", "bad-ipv6", "comments", "empty", "legacy"])
def test_a_bad_file_is_named_with_its_line(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "geoip"
    path.write_bytes(content)
    with pytest.raises(GeoIPError, match=re.escape(message)) as caught:
        open_database(path)
    assert str(path) in str(caught.value)


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(GeoIPError, match="No such file"):
        Countries([str(tmp_path / "nothing.mmdb")]).open()
    with pytest.raises(GeoIPError, match="Is a directory"):
        Countries([str(tmp_path)]).open()
    with pytest.raises(GeoIPError, match="no country database: install"):
        Countries((), directories=[str(tmp_path)]).open() if not Path("/usr/share/tor/geoip").exists() \
            else _no_tor(tmp_path)
    whole = write_mmdb(tmp_path / "whole.mmdb", [("81.2.69.0/24", "GB")]).read_bytes()
    truncated = tmp_path / "cut.mmdb"  # the search tree cut away, the metadata kept
    truncated.write_bytes(whole[whole.index(b"\xab\xcd\xefMaxMind.com") - 5:])
    with pytest.raises(GeoIPError, match="cut.mmdb: not a MaxMind DB file that can be read"):
        open_database(truncated)


def _no_tor(tmp_path: Path) -> None:
    saved = spamkit.geoip.TOR_FILES
    spamkit.geoip.TOR_FILES = (str(tmp_path / "none"),)
    try:
        Countries((), directories=[str(tmp_path)]).open()
    finally:
        spamkit.geoip.TOR_FILES = saved


def test_the_first_maxmind_db_where_spamassassin_looks_is_found(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir(), second.mkdir()
    write_mmdb(second / "GeoLite2-Country.mmdb", [("81.2.69.0/24", "GB")])
    write_mmdb(second / "dbip-country-lite.mmdb", [("81.2.69.0/24", "FR")])
    assert find_databases([], [str(first), str(second)]) == [second / "GeoLite2-Country.mmdb"]
    write_mmdb(first / "dbip-city-lite.mmdb", [("81.2.69.0/24", "DE")])
    assert find_databases([], [str(first), str(second)]) == [first / "dbip-city-lite.mmdb"]
    assert Countries((), [str(first), str(second)]).country("81.2.69.160") == "DE"


def test_what_no_database_places(tmp_path: Path) -> None:
    """Private, loopback and documentation addresses are nobody's country even when a
    database lists them; an IPv4 address written as IPv6 is looked up as IPv4."""
    path = write_mmdb(tmp_path / "t.mmdb", [("0.0.0.0/1", "US"), ("128.0.0.0/1", "DE"), ("2000::/3", "JP"), ("fc00::/7", "JP")])
    countries = Countries([str(path)])
    assert [countries.country(a) for a in ("10.1.2.3", "127.0.0.1", "192.0.2.1", "::1", "fe80::1",
                                           "not an address", "", "192.168.1.1")] == [None] * 8
    assert countries.country("81.2.69.160") == "US"
    assert countries.country("::ffff:200.1.1.1") == "DE" == countries.country("[IPv6:::ffff:200.1.1.1]")
    assert countries.country("2a00:1450::1") == "JP"


def test_files_asked_in_order(tmp_path: Path) -> None:
    first = write_ranges(tmp_path / "geoip", ["1358102528,1358102783,GB"])  # 80.243.0.0/24
    second = write_mmdb(tmp_path / "t.mmdb", [("80.243.0.0/16", "FR")])
    countries = Countries([str(first), str(second)])
    assert countries.country("80.243.0.9") == "GB" and countries.country("80.243.7.9") == "FR"


def test_a_replaced_file_is_read_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """geoipupdate renames a new file into place: within RECHECK_SECONDS the next lookups
    see it (read on a thread of their own); a replacement that cannot be read leaves the
    old data in use."""
    monkeypatch.setattr(spamkit.geoip, "RECHECK_SECONDS", 0.0)
    path = write_mmdb(tmp_path / "t.mmdb", [("81.2.69.0/24", "GB")])
    countries = Countries([str(path)])
    assert countries.country("81.2.69.160") == "GB"
    write_mmdb(tmp_path / "new.mmdb", [("81.2.69.0/24", "IE")]).rename(path)
    assert _eventually(lambda: countries.country("81.2.69.160") == "IE")
    path.write_bytes(b"garbage, not a database\n")  # (in place: the data read stays whole)
    for _ in range(20):  # lookups go on, with the data read before
        assert countries.country("81.2.69.160") == "IE"
    shutil.copy(write_mmdb(tmp_path / "fixed.mmdb", [("81.2.69.0/24", "GB")]), path)
    assert _eventually(lambda: countries.country("81.2.69.160") == "GB")


def _eventually(condition: object) -> bool:
    import time

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return True
        time.sleep(0.05)
    return False


def _lookups_never_raise(content: bytes, addresses: tuple[str, ...]) -> None:
    """`content` as a database file: refused with GeoIPError, or read, and then every
    lookup gives a country code or None."""
    with tempfile.NamedTemporaryFile() as file:
        file.write(content)
        file.flush()
        try:
            database = open_database(Path(file.name))
        except GeoIPError:
            return
        for address in addresses:
            code = database.country(ipaddress.ip_address(address))
            assert code is None or (len(code) == 2 and code.isupper())


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_any_bytes_as_a_range_file(content: bytes) -> None:
    _lookups_never_raise(content, ("1.2.3.4", "255.255.255.255", "0.0.0.0", "2001:db8::1", "::"))


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_a_damaged_mmdb_never_raises_on_lookup(damaged_mmdb: Path, data: st.DataObject) -> None:
    content = bytearray(damaged_mmdb.read_bytes())
    for _ in range(data.draw(st.integers(1, 20))):
        content[data.draw(st.integers(0, len(content) - 1))] = data.draw(st.integers(0, 255))
    _lookups_never_raise(bytes(content), ("81.2.69.160", "81.2.69.1", "8.8.8.8", "2a00::5", "200.1.1.1"))


@pytest.fixture(scope="module")
def damaged_mmdb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = random.Random(5)
    return write_mmdb(tmp_path_factory.mktemp("mmdb") / "t.mmdb", _random_networks(rng, 60))


def test_the_geoip_command(tmp_path: Path) -> None:
    path = write_mmdb(tmp_path / "t.mmdb", [("81.2.69.0/24", "GB")])
    config = tmp_path / "spamkit.toml"
    config.write_text(f'GeoIPDatabase = ["{path}"]\n')
    runner = CliRunner()
    shown = runner.invoke(main, ["geoip", "--config", str(config)])
    assert shown.exit_code == 0 and f"{path}: MaxMind DB spamkit-test-Country, built " in shown.output
    looked = runner.invoke(main, ["geoip", "--config", str(config), "81.2.69.160", "8.8.8.8", "10.0.0.1"])
    assert looked.exit_code == 0
    assert looked.output.splitlines() == ["81.2.69.160\tGB", "8.8.8.8\t-", "10.0.0.1\t-"]
    piped = runner.invoke(main, ["geoip", "--config", str(config), "--json", "-"], input="81.2.69.1\nbogus\n")
    assert piped.exit_code == 1  # (an address that is not one)
    answer = json.loads(piped.output)
    assert answer["addresses"] == [{"address": "81.2.69.1", "country": "GB"},
                                   {"address": "bogus", "country": None, "error": "not an IP address"}]
    assert answer["databases"][0]["path"] == str(path) and len(answer["databases"][0]["built"]) == 10
    config.write_text(f'GeoIPDatabase = ["{tmp_path / "none.mmdb"}"]\n')
    missing = runner.invoke(main, ["geoip", "--config", str(config), "81.2.69.1"])
    assert missing.exit_code == 66 and "none.mmdb: No such file or directory" in missing.output
