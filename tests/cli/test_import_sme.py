"""`spamkit config import-sme`: an SME Server's spam settings carried over, from database
files written here the way SME writes them (key=type|property|value...), and from
`config show` output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

CONFIGURATION = """\
# written for this test in SME's format
DomainName=example.org
SystemName=mail
spamassassin=service|RejectLevel|12|Sensitivity|custom|SortSpam|enabled|TagLevel|4|MessageRetentionTime|60|UseBayes|1|BayesAutoLearnThresholdSpam|6.00|BayesAutoLearnThresholdNonspam|0.10|PyzorTimeout|15|status|enabled
qpsmtpd=service|DNSBL|enabled|RHSBL|enabled|RBLList|zen.spamhaus.org|SBLList|multi.surbl.org:rhsbl.sorbs.net:dbl.spamhaus.org|URIBL|enabled|UBLList|multi.surbl.org:8-16-64-128,black.uribl.com|Karma|enabled|KarmaNegative|3|HeloPolicy|rfc|DMARCReject|disabled|SPFRejectPolicy|2|Bcc|enabled|BccMode|bcc|Authentication|enabled|TlsBeforeAuth|0|RelayRequiresAuth|enabled|MaxLoad|7
qmail=service|MaxMessageSize|20000000|ConcurrencyRemote|10
smtpd=service|InstancesPerIP|4|TCPPort|25|access|public
sqpsmtpd=service|TCPPort|465|access|public|status|enabled
"""
DATABASES = {
    "domains": "example.net=domain|Description|Second site|Nameservers|internet\n"
               "example.info=domain|Description|Parked|DKIMSigning|disabled\n",
    "networks": "192.168.1.0=network|Mask|255.255.255.0|Router|192.168.1.1\n",
    "accounts": "alice=user|FirstName|Alice|SortSpam|disabled\nbob=user|FirstName|Bob\n"
                "john.smith=user|FirstName|John|SortSpam|disabled\n"  # (a dot: quoted in TOML)
                "admin=system|Description|the administrator\n",
    "spamassassin": "wbl.global=wbl|*@vonage.com|White|*domain2.com|White|"
                    "spammer@spamdomain.com|Black|*@*.xyz|Black|@bad.example|Black\n",
}


def spamkit(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "spamkit", *args], capture_output=True,
                          text=True, timeout=120)


def import_sme(sme: Path, config: Path, *options: str) -> subprocess.CompletedProcess[str]:
    """With qmail's and qpsmtpd's list files looked for beside the databases, never in
    this machine's own /var."""
    return spamkit("config", "import-sme", "--from", str(sme), "--config", str(config),
                   "--qmail-control", str(sme / "control"), "--qpsmtpd-config", str(sme / "qpsmtpd"),
                   *options)


def imported(sme: Path, config: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(import-sme's --json report, `config show --json` after it); the import succeeded."""
    done = import_sme(sme, config, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout), json.loads(spamkit("config", "show", "--json", "--config", str(config)).stdout)


def sme_dir(tmp_path: Path, configuration: str = CONFIGURATION) -> Path:
    directory = tmp_path / "e-smith-db"
    directory.mkdir()
    (directory / "configuration").write_text(configuration)
    for name, text in DATABASES.items():
        (directory / name).write_text(text)
    return directory


def test_an_sme_servers_settings_carry_over(tmp_path: Path) -> None:
    sme = sme_dir(tmp_path)
    config = tmp_path / "spamkit.toml"
    config.write_text(f'LocalDomains = ["example.com"]\nListsFile = "{tmp_path / "lists"}"\n')
    before = config.read_bytes()

    dry = import_sme(sme, config, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would set TagLevel = '4'  (from configuration spamassassin TagLevel)" in dry.stdout
    assert config.read_bytes() == before and not (tmp_path / "lists").exists()

    report, shown = imported(sme, config)
    expected = {
        "TagLevel": 4.0, "RejectLevel": 12.0, "Sensitivity": "custom", "SortSpam": True,
        "MessageRetentionTime": 60, "UseBayes": True, "BayesAutoLearnThresholdSpam": 6.0,
        "BayesAutoLearnThresholdNonspam": 0.1, "KarmaNegative": 3, "HeloPolicy": "rfc",
        "DmarcReject": False, "SpfRejectPolicy": 2, "BccAddress": "maillog@example.org",
        "BccMode": "bcc", "MaxLoad": 7.0, "SmtpMaxMessageSize": 20_000_000, "MaxSessionsPerClient": 4,
        "ScanLocalClients": False,  # SME scores no mail from its local networks
        "PyzorTimeout": 15.0,  # the guide's `config setprop spamassassin PyzorTimeout 15`
        # SMTP AUTH, the passwords then checked by Dovecot (SME's own, through PAM)
        "SmtpAuthentication": True, "TlsBeforeAuth": False,
        "RBLList": ["zen.spamhaus.org"],
        "SBLList": ["multi.surbl.org:rhsbl.sorbs.net:dbl.spamhaus.org"],
        "UBLList": ["multi.surbl.org:8-16-64-128", "black.uribl.com"],
        # added to what the file had, never emptied
        "LocalDomains": ["example.com", "example.org", "example.net", "example.info"],
        "DkimSigningExcept": ["example.info"],  # `db domains setprop example.info DKIMSigning disabled`
        "LocalNetworks": ["127.0.0.0/8", "::1/128", "192.168.1.0/255.255.255.0"],
        "RelayClients": ["127.0.0.1", "::1", "192.168.1.0/255.255.255.0"],
        # the switches, each where qpsmtpd runs it on SME
        "SmtpFilters": ["karma", "relay", "badmailfrom", "resolvable_fromhost", "rhsbl", "dnsbl",
                        "badrcptto", "badhelo", "helo", "headers", "attachments", "uribl", "spamscore"],
    }
    assert {key: shown[key] for key in expected} == expected
    alice = spamkit("config", "get", "SortSpam", "--user", "alice", "--config", str(config))
    assert alice.stdout.strip() == "false"
    john = spamkit("config", "get", "SortSpam", "--user", "john.smith", "--config", str(config))
    assert john.stdout.strip() == "false" and '[user."john.smith"]' in config.read_text()
    lists = json.loads(spamkit("wbl", "list", "--json", "--config", str(config)).stdout)
    assert [(e["kind"], e["pattern"]) for e in lists] == [
        ("white", "*@vonage.com"), ("white", "*domain2.com"), ("black", "spammer@spamdomain.com"),
        ("black", "*@*.xyz")]
    left_out = "\n".join(report["left_out"])
    for why in ("configuration qpsmtpd RelayRequiresAuth=enabled: RelayClients relay without logging in",
                "spamassassin wbl.global @bad.example:",
                "configuration sqpsmtpd status=enabled TCPPort=465: SMTP over SSL; give "
                "`spamkit serve --listen-tls 0.0.0.0:465`"):
        assert why in left_out, left_out
    assert "ConcurrencyRemote" not in left_out  # qmail's own settings are not spamkit's to judge
    # what was imported makes a chain `spamkit serve` would start with
    lint = spamkit("lint", "--config", str(config))
    assert lint.returncode == 0, lint.stderr

    again = import_sme(sme, config, "--json")
    assert json.loads(again.stdout)["lists"] == []  # listed once
    shown_again = json.loads(spamkit("config", "show", "--json", "--config", str(config)).stdout)
    assert shown_again["LocalDomains"] == expected["LocalDomains"]


def test_qmail_and_qpsmtpd_list_files_carry_over(tmp_path: Path) -> None:
    """SME's WBL panel writes qmail's and qpsmtpd's list files; their entries, in their own
    forms (qmail's @host, qpsmtpd's 192.168.1. prefix, badmailfromto's tab-joined pairs),
    join the settings of the same names, and the filters that read them are switched on.
    Each file is read where qpsmtpd reads it: from its own directory, else from qmail's."""
    sme = sme_dir(tmp_path, "DomainName=example.org\n")
    (sme / "control").mkdir()
    (sme / "qpsmtpd").mkdir()
    (sme / "control" / "badmailfrom").write_text("# senders refused\n@pest.example\nspammer@spam.example\n")
    (sme / "control" / "badhelo").write_text("shadowed.example\n")  # qpsmtpd's own comes first
    (sme / "qpsmtpd" / "badhelo").write_text("bad-helo.example\n")
    (sme / "control" / "badrcptto").write_text("old-list@example.org\n")  # only here, on SME
    (sme / "control" / "badmailfromto").write_text("john@aol.example\tmary@example.org\n")
    (sme / "qpsmtpd" / "whitelisthosts").write_text("192.168.7.\n10.1.2.3\nnot-an-address\n")
    (sme / "qpsmtpd" / "whitelistsenders").write_text("partner.example\n")
    (sme / "qpsmtpd" / "relayclients").write_text("127.0.0.1\n192.168.1.\n")
    config = tmp_path / "spamkit.toml"
    config.write_text('BadMailFrom = ["*@old.example"]\n')
    report, shown = imported(sme, config)
    assert shown["BadMailFrom"] == ["*@old.example", "@pest.example", "spammer@spam.example"]
    assert shown["BadMailFromTo"] == ["john@aol.example mary@example.org"]
    assert shown["BadHelo"] == ["bad-helo.example"]
    assert shown["BadRcptTo"] == ["old-list@example.org"]
    assert shown["WhitelistHosts"] == ["192.168.7.", "10.1.2.3"]
    assert shown["WhitelistSenders"] == ["partner.example"]
    # (the networks database's own network too, as SME's relayclients template adds it)
    assert shown["RelayClients"] == ["127.0.0.1", "::1", "192.168.1.0/255.255.255.0", "192.168.1."]
    assert shown["SmtpFilters"][:2] == ["whitelisthosts", "relay"]
    assert "badmailfromto" in shown["SmtpFilters"]
    left_out = report["left_out"]
    assert any("whitelisthosts: WhitelistHosts: 'not-an-address' is not an IP address" in line
               for line in left_out), left_out
    assert spamkit("lint", "--config", str(config)).returncode == 0
    # relayclients switches no relay filter on: whether this one relays depends on where it sits
    after_queue = tmp_path / "after-queue.toml"
    after_queue.write_text('SmtpFilters = ["spamscore"]\n')
    assert import_sme(sme, after_queue).returncode == 0
    chain = json.loads(spamkit("config", "show", "--json", "--config", str(after_queue)).stdout)["SmtpFilters"]
    assert "relay" not in chain and chain[0] == "whitelisthosts"


def test_internal_accounts_and_the_files_spamkit_cannot_read(tmp_path: Path) -> None:
    """`db accounts setprop NAME Visible internal` makes SME refuse mail to NAME from
    outside (its badrcptto); the account goes into BadRcptTo as NAME@*, which the badrcptto
    filter applies to strangers only. qpsmtpd's files that no spamkit setting takes
    (regular expressions, norelayclients, goodrcptto) are reported with their entries, not
    dropped without a word; empty or commented ones are not reported."""
    sme = sme_dir(tmp_path, "DomainName=example.org\n")
    (sme / "accounts").write_text(
        "alice=user|FirstName|Alice|Visible|internal\nbob=user|FirstName|Bob\n"
        "staff=group|Description|Staff|Visible|internal\n"
        "a.smith=pseudonym|Account|alice|Visible|internal\nadmin=system|Visible|internal\n")
    (sme / "qpsmtpd").mkdir()
    (sme / "qpsmtpd" / "badrcptto_patterns").write_text("# patterns\n^info@.*\n^sales[0-9]+@\n")
    (sme / "qpsmtpd" / "norelayclients").write_text("192.168.1.99\n\x1b]0;retitled\x07\n")
    (sme / "qpsmtpd" / "goodrcptto").write_text("# nothing yet\n\n")
    config = tmp_path / "spamkit.toml"
    config.write_text('SmtpFilters = ["relay", "spamscore"]\n')
    report, shown = imported(sme, config)
    assert shown["BadRcptTo"] == ["alice@*", "staff@*", "a.smith@*"]
    assert shown["SmtpFilters"] == ["relay", "badrcptto", "spamscore"]
    left_out = report["left_out"]
    assert ("badrcptto_patterns (2 entries: ^info@.*, ^sales[0-9]+@): regular expressions; "
            "BadRcptTo takes patterns with * and ?: write each as one") in left_out, left_out
    # (a control character is not sent to the terminal as it is)
    assert any(line.startswith("norelayclients (2 entries: 192.168.1.99, ?]0;retitled?): ")
               for line in left_out), left_out
    assert not any("goodrcptto" in line for line in left_out)
    assert spamkit("lint", "--config", str(config)).returncode == 0


def test_pseudonyms_and_groups_become_addresses_their_users_may_send_as(tmp_path: Path) -> None:
    """For the senderlogin filter (which SME has not, so the import leaves it off): a
    pseudonym is its user's, or its group's members'; a group's address its members'."""
    sme = sme_dir(tmp_path, "DomainName=example.org\n")
    (sme / "accounts").write_text(
        "alice=user|FirstName|Alice\nbob=user|FirstName|Bob\nadmin=system|Description|x\n"
        "sales=group|Description|Sales|Members|alice,bob\nempty=group|Description|Nobody\n"
        "john.smith=pseudonym|Account|alice\norders=pseudonym|Account|sales\n"
        "info@example.net=pseudonym|Account|bob\nroot=pseudonym|Account|admin\n")
    config = tmp_path / "spamkit.toml"
    config.write_text('SmtpFilters = ["relay", "spamscore"]\n')
    report, shown = imported(sme, config)
    assert shown["SenderLogins"] == ["sales alice bob", "john.smith alice", "orders alice bob",
                                     "info@example.net bob"]
    assert "senderlogin" not in shown["SmtpFilters"]
    assert ("accounts root Account=admin: a pseudonym of no user or group with members, so no "
            "login may send as it") in report["left_out"]
    assert spamkit("lint", "--config", str(config)).returncode == 0


def test_config_show_output_reads_as_the_file(tmp_path: Path) -> None:
    shown = ("spamassassin=service\n    RejectLevel=9\n    Sensitivity=custom\n    TagLevel=3\n"
             "qpsmtpd=service\n    HeloPolicy=strict\n    DNSBL=disabled\n")
    sme = sme_dir(tmp_path, shown)
    config = tmp_path / "spamkit.toml"
    config.write_text('SmtpFilters = ["relay", "dnsbl", "spamscore"]\nRBLList = ["zen.spamhaus.org"]\n')
    done = import_sme(sme, config)
    assert done.returncode == 0, done.stderr
    shown_config = json.loads(spamkit("config", "show", "--json", "--config", str(config)).stdout)
    assert (shown_config["TagLevel"], shown_config["RejectLevel"], shown_config["HeloPolicy"]) == (3.0, 9.0, "strict")
    assert shown_config["SmtpFilters"] == ["relay", "spamscore"]  # DNSBL disabled on SME


def test_a_refused_value_changes_nothing_and_bad_input_says_where(tmp_path: Path) -> None:
    sme = sme_dir(tmp_path, "qpsmtpd=service|RBLList|zen.spamhaus.org|HeloPolicy|sloppy\n")
    config = tmp_path / "spamkit.toml"
    config.write_text("TagLevel = 5\n")
    dry = import_sme(sme, config, "--dry-run")  # a dry run finds it too
    assert dry.returncode == 1 and "configuration qpsmtpd HeloPolicy" in dry.stderr
    refused = import_sme(sme, config)
    assert refused.returncode == 1
    assert "configuration qpsmtpd HeloPolicy" in refused.stderr and "nothing was changed" in refused.stderr
    assert config.read_text() == "TagLevel = 5\n"

    (sme / "configuration").write_text("spamassassin=service|TagLevel|4\nthis is not a record\n")
    broken = import_sme(sme, config)
    assert broken.returncode == 1 and f"{sme / 'configuration'}:2: not an SME database record" in broken.stderr

    missing = spamkit("config", "import-sme", "--from", str(tmp_path / "nowhere"), "--config", str(config))
    assert missing.returncode == 66 and "no SME configuration database" in missing.stderr
    assert config.read_text() == "TagLevel = 5\n"


def test_limits_that_are_not_plain_numbers_are_reported_and_not_carried_over(tmp_path: Path) -> None:
    """qmail's MaxMessageSize and smtpd's InstancesPerIP are carried over only as ASCII
    digits: "２００００" (full-width) and "²" are digits to str.isdigit, and int() reads the
    first as 20000, so a damaged or hand-typed database set a limit nobody wrote."""
    sme = sme_dir(tmp_path, "qmail=service|MaxMessageSize|２００００\nsmtpd=service|InstancesPerIP|²\n")
    config = tmp_path / "spamkit.toml"
    config.write_text("TagLevel = 5\n")
    report, shown = imported(sme, config)
    assert (shown["SmtpMaxMessageSize"], shown["MaxSessionsPerClient"]) == (15_000_000, 10)  # the defaults
    left_out = "\n".join(report["left_out"])
    assert "configuration qmail MaxMessageSize=２００００: not a whole number" in left_out, left_out
    assert "configuration smtpd InstancesPerIP=²: not a whole number" in left_out, left_out


def test_the_disclaimer_and_its_texts_carry_over(tmp_path: Path) -> None:
    """`config setprop smtpd disclaimer enabled` switches the disclaimer filter on, before
    dkimsign, and qpsmtpd's disclaimer texts are copied to where the filter reads them; a
    text already there is kept."""
    sme = sme_dir(tmp_path, CONFIGURATION.replace("smtpd=service|", "smtpd=service|disclaimer|enabled|")
                  .replace("|Karma|enabled|", "|Karma|enabled|DKIMSigning|enabled|"))
    texts = sme / "qpsmtpd"
    texts.mkdir()
    (texts / "disclaimer").write_text("Confidential.\n")
    (texts / "disclaimer_example.net").write_text("Example Net GmbH\n")
    (texts / "disclaimer.orig").write_text("an editor's backup\n")
    config = tmp_path / "etc" / "spamkit.toml"
    config.parent.mkdir()
    (tmp_path / "etc" / "disclaimer_example.net").write_text("Our own text\n")
    report, shown = imported(sme, config)
    assert shown["SmtpFilters"][-3:] == ["spamscore", "disclaimer", "dkimsign"]
    assert report["disclaimers"] == [{"from": str(texts / "disclaimer"), "to": str(tmp_path / "etc" / "disclaimer")}]
    assert (tmp_path / "etc" / "disclaimer").read_text() == "Confidential.\n"
    assert (tmp_path / "etc" / "disclaimer_example.net").read_text() == "Our own text\n"
    assert any(line.startswith(f"{texts / 'disclaimer_example.net'}: {tmp_path / 'etc' / 'disclaimer_example.net'} "
                               "exists with another text; it is kept") for line in report["left_out"])
    assert not (tmp_path / "etc" / "disclaimer.orig").exists()
    lint = spamkit("lint", "--json", "--config", str(config))
    assert not any("disclaimer filter" in warning for warning in json.loads(lint.stdout)["warnings"])

    (texts / "disclaimer").unlink()
    (texts / "disclaimer_example.net").unlink()
    (tmp_path / "etc" / "disclaimer").unlink()
    report, _ = imported(sme, config)
    assert report["disclaimers"] == []
    assert "configuration smtpd disclaimer=enabled: there is no disclaimer text" in "\n".join(report["left_out"])
