"""Rules as sa-update leaves them: `include` (how its channel file names the rule files),
and SpamAssassin's package rules read from sa-update's directory once it holds newer
ones (spamkit.rules.sa_paths), as `spamassassin` reads them."""

from __future__ import annotations

import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from spamkit.message import parse_message
from spamkit.rules import MessageContext, load_rules, sa_paths
from spamkit.rules.sa_paths import installed_version, rules_read_for
from tests.scoring.test_spamassassin_rules import DEBIAN_RULES, require_debian_rules

MESSAGE = (b"From: someone@example.com\nTo: you@example.org\nSubject: a sa-update test\n"
           b"Message-ID: <1@example.com>\nDate: Sun, 6 Dec 2026 07:00:00 +0000\n\nhello\n")


def test_include_reads_a_file_or_directory_named_from_the_including_files_directory(tmp_path: Path) -> None:
    (tmp_path / "channel").mkdir()
    (tmp_path / "channel" / "10_a.cf").write_text("header RULE_A Subject =~ /alpha/\ninclude ../top.cf\n")
    (tmp_path / "channel" / "20_b.cf").write_text("header RULE_B Subject =~ /beta/\nscore RULE_B 2.5\n")
    (tmp_path / "more").mkdir()
    (tmp_path / "more" / "c.cf").write_text("header RULE_C Subject =~ /gamma/\n")
    (tmp_path / "top.cf").write_text(
        "include channel/10_a.cf\ninclude channel/20_b.cf\ninclude more\n"  # (10_a includes this file again)
        "ifplugin Mail::SpamAssassin::Plugin::NotInstalled\ninclude never.cf\nendif\n"
        "include missing.cf\nscore RULE_B 3.0\n")
    (tmp_path / "never.cf").write_text("header RULE_NEVER Subject =~ /./\n")
    ruleset = load_rules([tmp_path / "top.cf"], builtin=False, cache=False)
    assert set(ruleset.rules) == {"RULE_A", "RULE_B", "RULE_C"}
    assert ruleset.rules["RULE_B"].scores == (3.0, 3.0, 3.0, 3.0)  # (read where the include stands)
    assert ruleset.report.files == 4 and ruleset.report.errors == []
    assert ruleset.report.warnings == [f"{tmp_path / 'top.cf'}:7: include missing.cf: no such file or directory"]


def test_the_package_rules_are_read_from_sa_updates_directory_once_it_has_rules(tmp_path: Path) -> None:
    package, updates, module = tmp_path / "share", tmp_path / "state", tmp_path / "SpamAssassin.pm"
    package.mkdir()
    (package / "50_scores.cf").write_text("score X 1\n")
    module.write_text('package Mail::SpamAssassin;\nour $VERSION = "4.000001";      # update after release\n')
    assert installed_version(module) == "4.000001"
    assert rules_read_for(package, package, updates, module) == package  # (no sa-update yet)
    (updates / "4.000001").mkdir(parents=True)
    assert rules_read_for(package, package, updates, module) == package  # (made, but nothing in it)
    (updates / "4.000001" / "updates_spamassassin_org.cf").write_text("include x\n")
    assert rules_read_for(package, package, updates, module) == updates / "4.000001"
    assert rules_read_for(tmp_path, package, updates, module) == tmp_path  # (another directory)
    module.write_text('our $VERSION = "4.000002";\n')  # (upgraded: sa-update has not run for it)
    assert rules_read_for(package, package, updates, module) == package


def _sa_update_install(rule_files: Path, into: Path) -> None:
    """Install `rule_files` as sa-update installs a channel's update (its --install, with
    no signature: this machine reaches no update mirror), into `into`."""
    archive = rule_files.parent / "1999999.tar.gz"  # (sa-update wants the version in the name)
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(rule_files.glob("*.cf")):
            tar.add(path, arcname=path.name)
    for digest in ("sha256", "sha512"):
        written = subprocess.run([f"{digest}sum", str(archive)], capture_output=True, text=True, check=True)
        Path(f"{archive}.{digest}").write_text(written.stdout.split()[0] + "\n")
    done = subprocess.run(["sa-update", "--nogpg", "--install", str(archive), "--updatedir", str(into)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and (into / "updates_spamassassin_org.cf").exists(), done.stderr


def test_rules_sa_update_installed_are_read_and_hit_as_spamassassin_hits_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Debian's rules with one rule added, installed by sa-update itself: with RulePaths
    naming /usr/share/spamassassin, spamkit reads sa-update's directory (where it had
    read the package's rules, as of 4.0.1's release in 2024, while `spamassassin` read
    the day's), and the rule hits as it hits in `spamassassin` reading that directory."""
    require_debian_rules()
    if shutil.which("sa-update") is None:
        pytest.fail("sa-update is missing: install the Debian package `spamassassin` (.ci/run does)")
    version = installed_version()
    assert version is not None, "Debian's Mail/SpamAssassin.pm names no version"
    update = tmp_path / "update"
    shutil.copytree(DEBIAN_RULES, update, ignore=shutil.ignore_patterns("*.pre", "languages", "sa-update-pubkey.txt",
                                                                          "user_prefs.template"))
    (update / "99_updated.cf").write_text("header SAUPDATE_TEST Subject =~ /sa-update test/\n"
                                          "describe SAUPDATE_TEST a rule only the update has\n"
                                          "score SAUPDATE_TEST 4.2\n")
    state = tmp_path / "state"
    _sa_update_install(update, state / version)
    monkeypatch.setattr(sa_paths, "UPDATES", state)

    ruleset = load_rules([DEBIAN_RULES], builtin=False)
    assert ruleset.report.read_from == {str(DEBIAN_RULES): str(state / version)}
    assert "SAUPDATE_TEST" in ruleset.rules and ruleset.report.errors == []
    counts, _ = ruleset.match_counts(MessageContext(MESSAGE, parse_message(MESSAGE)), 0)
    assert "SAUPDATE_TEST" in counts
    theirs = subprocess.run(["spamassassin", "-L", "-t", "-C", str(state / version)],
                            input=MESSAGE, capture_output=True, timeout=300)
    assert b"SAUPDATE_TEST" in theirs.stdout and b" 4.2 SAUPDATE_TEST" in theirs.stdout, theirs.stdout[-2000:]
    # and without sa-update's directory, the package's rules, which lack it
    monkeypatch.setattr(sa_paths, "UPDATES", tmp_path / "nowhere")
    assert "SAUPDATE_TEST" not in load_rules([DEBIAN_RULES], builtin=False).rules
