"""X-Relay-Countries (SpamAssassin's RelayCountry plugin): each relay's country, for an
administrator's rules to score; judged against SpamAssassin itself on corpus mail, with
the same country database, and through `spamkit check`."""

from __future__ import annotations

import json
import mailbox
import re
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from corpora import CorpusMessage
from spamkit.cli import main
from spamkit.config import config_from_text
from spamkit.geoip import Countries
from spamkit.message import parse_message
from spamkit.rules import MessageContext
from spamkit.verdict import Scanner
from tests.geoipfiles import write_mmdb

# every public IPv4 address placed: each /8 in a made-up country of its own
EVERY_8 = [(f"{n}.0.0.0/8", chr(65 + n % 26) + chr(65 + n // 26 % 26)) for n in range(256)]
TAGS = {"RC": "_RELAYCOUNTRY_", "RCA": "_RELAYCOUNTRYALL_", "RCAUTH": "_RELAYCOUNTRYAUTH_",
        "RT": "_RELAYSTRUSTED_", "RU": "_RELAYSUNTRUSTED_"}


def _spamassassin(mbox: Path, database: Path) -> list[mailbox.mboxMessage]:
    """Debian's SpamAssassin over an mbox, RelayCountry loaded with `database`, each
    message coming back with its relays and their countries in headers of its own."""
    config = ["report_safe 0", "loadplugin Mail::SpamAssassin::Plugin::RelayCountry",
              f"geodb_options country:{database}",
              *(f"add_header all {name} {tag}" for name, tag in TAGS.items())]
    out = subprocess.run(["spamassassin", "-L", "--mbox", *(f"--cf={line}" for line in config)],
                         stdin=mbox.open("rb"), capture_output=True, check=True, timeout=600).stdout
    mbox.with_suffix(".out").write_bytes(out)
    return list(mailbox.mbox(mbox.with_suffix(".out")))


def test_the_relays_and_their_countries_are_spamassassins(
        tmp_path: Path, split: tuple[list[CorpusMessage], list[CorpusMessage]]) -> None:
    """On the first 200 messages of the test fold, by path: the relays (every field of
    every entry, trusted and untrusted), and the countries in headers made by the same
    add_header lines (_RELAYCOUNTRY_, _RELAYCOUNTRYALL_, _RELAYCOUNTRYAUTH_), as
    SpamAssassin 4.0 makes them. On the whole fold the entries differ in 18 of 1,247
    messages (the addresses in 9), formats this reader does not know (decision 0035);
    none of them is among these 200."""
    messages = sorted(split[1], key=lambda m: m.path)[:200]
    mbox = tmp_path / "fold.mbox"
    with mbox.open("wb") as out:
        for message in messages:
            data = message.data.replace(b"\r\n", b"\n")
            if data.startswith(b"From "):
                data = data.split(b"\n", 1)[1]
            out.write(b"From test@example.org Mon Dec  1 10:00:00 2026\n" + data.replace(b"\nFrom ", b"\n>From ")
                      + b"\n")
    database = write_mmdb(tmp_path / "every8.mmdb", EVERY_8)
    theirs = _spamassassin(mbox, database)
    assert len(theirs) == 200
    # the same add_header lines, through spamkit's own headers (the tags of add_header)
    rules = tmp_path / "local.cf"
    rules.write_text(f"geodb_options country:{database}\n"
                     + "".join(f"add_header all {name} {tag}\n" for name, tag in TAGS.items() if name.startswith("RC")))
    config = config_from_text(f'UseBayes = false\nRulePaths = ["{rules}"]\n', tmp_path / "spamkit.toml", {})
    scanner = Scanner.from_config(config, None)
    differ, placed = [], 0
    for judged in theirs:
        raw = judged.as_bytes()
        context = MessageContext(raw, parse_message(raw))
        ours = {name[len("X-Spam-"):]: value for name, value in scanner.scan(raw).headers()
                if name in ("X-Spam-RC", "X-Spam-RCA", "X-Spam-RCAUTH")}
        ours |= {"RT": context.header_text("X-Spam-Relays-Trusted"),
                 "RU": context.header_text("X-Spam-Relays-Untrusted")}
        expected = {name: " ".join(str(judged[f"X-Spam-{name}"] or "").split()) for name in TAGS}
        if ours != expected:
            differ.append((judged["Message-ID"], ours, expected))
        placed += bool(re.search(r"\b[A-Z]{2}\b", ours["RC"] or ""))
    assert differ == []
    assert placed > 150  # (the comparison is about countries, not empty headers)


MESSAGE = (b"Received: from mx.example.org (mx.example.org [192.168.1.5]) by in.example.org with ESMTP id 1;"
           b" Mon, 1 Dec 2026 10:00:00 +0000\n"
           b"Received: from relay.example.net (relay.example.net [93.184.216.34]) by mx.example.org with ESMTP"
           b" id 2; Mon, 1 Dec 2026 09:59:00 +0000\n"
           b"Received: from client.example.co.uk (client.example.co.uk [81.2.69.160]) by relay.example.net"
           b" with ESMTP id 3; Mon, 1 Dec 2026 09:58:00 +0000\n"
           b"Received: from laptop (dsl.example.com [198.51.100.8]) by client.example.co.uk with ESMTPA id 4;"
           b" Mon, 1 Dec 2026 09:57:00 +0000\n"
           b"From: a@example.net\nTo: b@example.org\nSubject: hello\nMessage-ID: <1@example.net>\n\nhi\n")

RULES = r"""
header RELAY_GB      X-Relay-Countries =~ /\bGB\b/
score  RELAY_GB      2.5
header RELAY_PATH    X-Relay-Countries-All =~ /^\*\* US GB XX$/
score  RELAY_PATH    0.5
header RELAY_NONE    X-Relay-Countries !~ /GB/
score  RELAY_NONE    0.1
"""


@pytest.mark.parametrize("where", ["GeoIPDatabase", "geodb_options", "country_db_path"])
def test_rules_score_the_countries(tmp_path: Path, where: str) -> None:
    """The database from spamkit's setting, or from the .cf files as SpamAssassin users
    already name it. (198.51.100.8 is a documentation address: no country, "XX".)"""
    database = write_mmdb(tmp_path / "t.mmdb", [("81.2.69.0/24", "GB"), ("93.184.216.0/24", "US")])
    rules = tmp_path / "local.cf"
    rules.write_text(RULES + {"GeoIPDatabase": "", "geodb_options": f"geodb_options country:{database}\n",
                              "country_db_path": f"country_db_path {database}\n"}[where])
    config = tmp_path / "spamkit.toml"
    config.write_text("UseBayes = false\n" + (f'GeoIPDatabase = ["{database}"]\n' if where == "GeoIPDatabase" else ""))
    message = tmp_path / "m.eml"
    message.write_bytes(MESSAGE)
    result = CliRunner().invoke(main, ["check", "--config", str(config), "--rules", str(rules), str(message)])
    assert result.exit_code == 0, result.output
    assert "tests=RELAY_GB,RELAY_PATH " in result.output and "score 3.0" in result.output


def test_without_a_database_the_headers_are_absent(tmp_path: Path) -> None:
    """As in SpamAssassin 4.0 without one (its RelayCountry plugin is off in Debian's
    init.pre): no rule on them hits but a `!~` one, since 4.0's header rules test a
    missing header as undef, which `!~` does not match (checked against
    Mail::SpamAssassin; decision 0042)."""
    rules = tmp_path / "local.cf"
    rules.write_text(RULES)
    config = tmp_path / "spamkit.toml"
    config.write_text(f'UseBayes = false\nGeoIPDatabase = ["{tmp_path / "none.mmdb"}"]\n')
    message = tmp_path / "m.eml"
    message.write_bytes(MESSAGE)
    result = CliRunner().invoke(main, ["check", "--config", str(config), "--rules", str(rules), str(message)])
    assert result.exit_code == 0, result.output
    assert "tests=RELAY_NONE " in result.output


def test_the_auth_header_starts_at_the_first_login() -> None:
    """X-Relay-Countries-Auth: the trusted relays from the first that logged in (a
    user of ours sending from abroad)."""
    database_free = Countries(["/nonexistent"])
    assert not database_free.available()
    raw = (b"Received: from gate (gate.lan [10.0.0.2]) by in.example.org with ESMTP id 1\n"
           b"Received: from laptop (host.example [81.2.69.160]) by gate.lan with ESMTPSA id 2\n"
           b"Received: from phone (host.example [93.184.216.34]) by laptop with ESMTP id 3\n\nhi\n")

    class Fixed:
        @staticmethod
        def available() -> bool:
            return True

        @staticmethod
        def country(address: str) -> str | None:
            return {"81.2.69.160": "GB", "93.184.216.34": "US"}.get(address)

    context = MessageContext(raw, parse_message(raw))
    context.countries = Fixed()  # type: ignore[assignment]
    assert context.header_text("X-Relay-Countries-Auth") == "GB"
    assert context.header_text("X-Relay-Countries") == "US"
    assert context.header_text("X-Relay-Countries-All") == "** GB US"


def test_lint_warns_of_country_rules_without_a_database(tmp_path: Path) -> None:
    rules = tmp_path / "local.cf"
    rules.write_text(RULES)
    config = tmp_path / "spamkit.toml"
    config.write_text(f'GeoIPDatabase = ["{tmp_path / "none.mmdb"}"]\n')
    result = CliRunner().invoke(main, ["lint", "--config", str(config), "--rules", str(rules), "--json"])
    assert result.exit_code == 0, result.output  # (a warning)
    warnings = json.loads(result.output)["warnings"]
    assert [w for w in warnings if "X-Relay-Countries" in w] == [
        "RELAY_GB, RELAY_NONE, RELAY_PATH read X-Relay-Countries, and no country database can be read, "
        f"so they never hit: {tmp_path / 'none.mmdb'}: No such file or directory"]
    database = write_mmdb(tmp_path / "t.mmdb", [("81.2.69.0/24", "GB")])
    config.write_text(f'GeoIPDatabase = ["{database}"]\n')
    result = CliRunner().invoke(main, ["lint", "--config", str(config), "--rules", str(rules), "--json"])
    assert not [w for w in json.loads(result.output)["warnings"] if "X-Relay-Countries" in w]
