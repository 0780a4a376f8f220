"""The SME guide's recipes, set as the guide sets them, checked on real corpus messages.

Each test drives the `spamkit` command the way an administrator would (`spamkit config
set` for `config setprop spamassassin`, `spamkit wbl add` for `wbl.global`) against a
copy of a database trained on the training folds.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from corpora import CorpusMessage


class Admin:
    """Runs spamkit with one configuration file and one database, like a server would."""

    def __init__(self, root: Path, trained_db: Path) -> None:
        self.config = root / "etc" / "spamkit.toml"
        self.db = root / "db"
        shutil.copytree(trained_db, self.db)
        self.env = dict(os.environ, SPAMKIT_CONFIG=str(self.config), SPAMKIT_DB=str(self.db))
        self.messages = root / "messages"
        self.messages.mkdir()

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([sys.executable, "-m", "spamkit", *args], capture_output=True,
                                text=True, env=self.env, timeout=300)
        if check:
            assert result.returncode == 0, result.stderr
        return result

    def setprop(self, key: str, value: str) -> None:
        self.run("config", "set", key, value)

    def check(self, raw: bytes, *extra: str) -> dict[str, object]:
        return self.check_many([raw], *extra)[0]

    def check_many(self, raws: list[bytes], *extra: str) -> list[dict[str, object]]:
        paths = []
        for raw in raws:
            path = self.messages / f"m{len(list(self.messages.iterdir()))}.eml"
            path.write_bytes(raw)
            paths.append(str(path))
        out = self.run("check", "--json", *extra, *paths).stdout
        return [json.loads(line) for line in out.splitlines()]


@pytest.fixture
def admin(tmp_path: Path, trained_db: Path) -> Admin:
    return Admin(tmp_path, trained_db)


@pytest.fixture(scope="module")
def test_fold(split: tuple[list[CorpusMessage], list[CorpusMessage]]) -> list[CorpusMessage]:
    return split[1]


def with_from(raw: bytes, address: str) -> bytes:
    """The message as if sent by `address` (From: header and Return-Path replaced)."""
    raw = re.sub(rb"(?im)^(from|return-path):.*(\r?\n[ \t].*)*$", b"", raw, count=0)
    return f"From: Someone <{address}>\nReturn-Path: <{address}>\n".encode() + raw.lstrip(b"\r\n")


def test_sensitivity_table(admin: Admin, test_fold: list[CorpusMessage]) -> None:
    """veryhigh 2, high 3, medium 5, low 7, verylow 9: presets tag and never reject."""
    sample = [m.data for m in test_fold if m.label == "ham"][:15]
    sample += [m.data for m in test_fold if m.label == "spam"][:25]
    scores = [r["score"] for r in admin.check_many(sample)]
    levels = {"veryhigh": 2, "high": 3, "medium": 5, "low": 7, "verylow": 9}
    admin.setprop("RejectLevel", "1")  # ignored: only custom rejects
    for preset, level in levels.items():
        admin.setprop("Sensitivity", preset)
        results = admin.check_many(sample)
        assert [r["required"] for r in results] == [level] * len(sample)
        assert [r["verdict"] for r in results] == ["spam" if s >= level else "ham" for s in scores]
    # the sample spans the levels, so each preset decided differently somewhere
    assert len({sum(s >= level for s in scores) for level in levels.values()}) >= 3


def test_what_bayes_is_sure_of_is_spam_at_the_default_level(admin: Admin, test_fold: list[CorpusMessage]) -> None:
    """At Sensitivity medium (5, the default) a message Bayes put at 0.999 or more scored
    BAYES_99 4.0 + BAYES_999 0.5 and went untagged unless a rule added half a point: the
    default verdict caught a tenth fewer spam than Bayes alone (decision 0005). BAYES_99
    is now 4.5, so Bayes's surest verdict reaches the level alone; below 0.99 it does not."""
    spams = [m for m in test_fold if m.label == "spam"]
    results = admin.check_many([m.data for m in spams])
    alone = [r for r in results if {h["name"] for h in r["rules"]} == {"BAYES_99", "BAYES_999"}]  # type: ignore[union-attr, index, attr-defined]
    assert len(alone) >= 5 and all(r["score"] == 5.0 and r["verdict"] == "spam" for r in alone)
    unsure = [r for r in results if {h["name"] for h in r["rules"]} == {"BAYES_95"}]  # type: ignore[union-attr, index, attr-defined]
    assert all(r["score"] == 4.0 and r["verdict"] == "ham" for r in unsure)


def test_custom_levels_4_and_12(admin: Admin, test_fold: list[CorpusMessage]) -> None:
    """The guide's order of commands: RejectLevel 12, TagLevel 4, Sensitivity custom."""
    admin.setprop("RejectLevel", "12")
    admin.setprop("TagLevel", "4")
    admin.setprop("Sensitivity", "custom")
    ham = next(m for m in test_fold if m.label == "ham")
    spams = [m for m in test_fold if m.label == "spam"][:20]
    spam = next(m for m, r in zip(spams, admin.check_many([m.data for m in spams]))
                if 4 <= r["score"] < 12)
    assert admin.check(ham.data)["verdict"] == "ham"
    assert admin.check(spam.data)["verdict"] == "spam"
    admin.run("wbl", "add", "black", "*@*.xyz")
    refused = admin.check(with_from(spam.data, "promo@deals.xyz"))
    assert refused["verdict"] == "reject" and refused["score"] >= 12
    assert {"name": "USER_IN_BLACKLIST", "score": 100.0} in refused["rules"]


def test_autolearn_thresholds_6_and_010(admin: Admin, test_fold: list[CorpusMessage]) -> None:
    admin.setprop("BayesAutoLearnThresholdSpam", "6.00")
    admin.setprop("BayesAutoLearnThresholdNonspam", "0.10")
    before = json.loads(admin.run("db", "magic", "--json").stdout)
    # find one message of each that autolearn takes, without learning anything yet
    candidates = [m for m in test_fold if m.label == "ham"][:5] + [m for m in test_fold if m.label == "spam"]
    choice = {}
    for message, result in zip(candidates, admin.check_many([m.data for m in candidates])):
        choice.setdefault(result["autolearn"], message)
    assert {"spam", "ham"} <= set(choice)
    would = admin.messages / "would.eml"
    would.write_bytes(choice["ham"].data)  # in text, what was not learned is said to be not
    assert "autolearn=ham (not learned without --autolearn)" in admin.run("check", str(would)).stdout
    learned = {}
    for kind in ("spam", "ham"):
        learned[kind] = (choice[kind], admin.check(choice[kind].data, "--autolearn"))
    spam_message, spam_result = learned["spam"]
    assert spam_message.label == "spam" and spam_result["autolearned"] == "learned"
    after = json.loads(admin.run("db", "magic", "--json").stdout)
    assert after["nspam"] == before["nspam"] + 1 and after["nham"] == before["nham"] + 1
    path = admin.messages / "history.eml"
    path.write_bytes(spam_message.data)
    history = json.loads(admin.run("db", "history", "--json", str(path)).stdout)
    assert history["learned_as"] == "spam"
    assert history["events"][-1]["by"] == "autolearn"
    # a user who teaches it as ham wins, and autolearn does not take it back
    admin.run("learn", "--ham", str(path))
    admin.check(spam_message.data, "--autolearn")
    history = json.loads(admin.run("db", "history", "--json", str(path)).stdout)
    assert history["learned_as"] == "ham"
    assert [e["by"] for e in history["events"]] == ["autolearn", "manual"]


def test_autolearn_does_not_teach_bayes_its_own_mistake(admin: Admin, test_fold: list[CorpusMessage]) -> None:
    """SpamAssassin's autolearn leaves a message alone when the learner's own rules (the
    BAYES_* bands) argue against the label by more than a point. spamkit's did not: spam
    no rule fires on (0 points: at or below 0.10) was learned as ham while Bayes scored
    it spam, 12 of fold 0's 394 spam (42 of folds 1-4's, each scored out of fold)."""
    spams = [m for m in test_fold if m.label == "spam"]
    results = admin.check_many([m.data for m in spams], "--explain")
    assert not [r for r in results if r["autolearn"] == "ham" and r["bayes_verdict"] == "spam"]
    held_back = [(m, r) for m, r in zip(spams, results)
                 if re.fullmatch(r"\d+\.\d points, but Bayes says spam \(\+\d+\.\d points\)", str(r["autolearn_reason"]))]
    assert len(held_back) >= 5
    message, result = held_back[0]
    bands = sum(r["score"] for r in result["rules"] if r["name"].startswith("BAYES_"))  # type: ignore[attr-defined, index]
    assert result["autolearn"] == "no" and bands > 1.0
    before = json.loads(admin.run("db", "magic", "--json").stdout)
    assert admin.check(message.data, "--autolearn")["autolearned"] == "no"
    ham = next(m for m, r in zip([m for m in test_fold if m.label == "ham"],
                                 admin.check_many([m.data for m in test_fold if m.label == "ham"][:20]))
               if r["autolearn"] == "ham")
    assert admin.check(ham.data, "--autolearn")["autolearned"] == "learned"  # agreed with: still learned
    after = json.loads(admin.run("db", "magic", "--json").stdout)
    assert (after["nspam"], after["nham"]) == (before["nspam"], before["nham"] + 1)


def test_custom_rule_scores_as_in_local_cf(admin: Admin, tmp_path: Path,
                                            test_fold: list[CorpusMessage]) -> None:
    """`echo "score SARE_ADULT2 20.000" >> 20localscores` and a relative `score TEST (-1)`."""
    third_party = tmp_path / "70_sare_adult.cf"  # stands in for a third-party rule set
    third_party.write_text("body SARE_ADULT2 /\\bclick here\\b/i\nscore SARE_ADULT2 1.5\n")
    local = tmp_path / "local.cf"
    local.write_text("score SARE_ADULT2 20.000\nscore BODY_CLICK_HERE (-1)\n")
    admin.setprop("RulePaths", f"{third_party},{local}")
    message = next(m for m in test_fold if m.label == "spam" and b"lick here" in m.data)
    result = admin.check(message.data)
    scores = {r["name"]: r["score"] for r in result["rules"]}
    assert scores["SARE_ADULT2"] == 20.0
    assert scores.get("BODY_CLICK_HERE", 0) <= 0  # its 0.56 lowered by 1
    local.write_text("score NO_SUCH_RULE (-1)\n")
    lint = admin.run("lint", "--json", check=False)
    assert lint.returncode == 1
    assert any(e.startswith(f"{local}:1: relative score") for e in json.loads(lint.stdout)["errors"])


def test_levels_set_under_a_preset_are_said_to_be_ignored(admin: Admin) -> None:
    """The guide: "The Custom spam rejection level will only work when Spam sensitivity is
    set to custom." An administrator who sets the levels alone is told so, where before the
    setting took silently no effect."""
    set_level = admin.run("config", "set", "RejectLevel", "9")
    assert "RejectLevel is not in force: Sensitivity is medium" in set_level.stderr
    shown = admin.run("config", "show").stdout
    assert re.search(r"^RejectLevel = 9\.0 .*not in force \(Sensitivity is medium", shown, re.M)
    warnings = json.loads(admin.run("lint", "--json").stdout)["warnings"]
    assert [w for w in warnings if "RejectLevel is not in force" in w] and \
        not [w for w in warnings if "TagLevel" in w]  # TagLevel was never set
    admin.setprop("Sensitivity", "custom")
    assert "not in force" not in admin.run("config", "set", "TagLevel", "4").stderr
    assert not [w for w in json.loads(admin.run("lint", "--json").stdout)["warnings"] if "in force" in w]


@pytest.mark.parametrize("kind, pattern, sender, listed", [
    ("white", "*@vonage.com", "billing@vonage.com", True),
    ("white", "*domain2.com", "news@sub.domain2.com", True),
    ("white", "user@domain3.com", "user@domain3.com", True),
    ("white", "user@domain3.com", "other@domain3.com", False),
    ("black", "spammer@spamdomain.com", "spammer@spamdomain.com", True),
    ("black", "*@*.xyz", "x@promo.xyz", True),
    ("black", "*@*.xyz", "x@xyz.com", False),
])
def test_wbl_patterns(admin: Admin, test_fold: list[CorpusMessage], kind: str, pattern: str,
                      sender: str, listed: bool) -> None:
    admin.run("wbl", "add", kind, pattern)
    assert admin.run("wbl", "list").stdout.strip() == f"{kind} {pattern.lower()}"
    message = next(m for m in test_fold if m.label == ("spam" if kind == "white" else "ham"))
    result = admin.check(with_from(message.data, sender))
    rule = "USER_IN_WHITELIST" if kind == "white" else "USER_IN_BLACKLIST"
    assert (rule in {r["name"] for r in result["rules"]}) is listed
    if listed:
        assert result["verdict"] == ("ham" if kind == "white" else "spam")
        assert result["autolearn"] == "no"  # list rules never teach Bayes


@pytest.mark.parametrize("pattern", ["@spamdomain.com", "spammer@", "@"])
def test_wbl_refuses_a_pattern_that_matches_no_address(admin: Admin, pattern: str) -> None:
    """`@spamdomain.com` (Postfix's way to name a domain) matched only the text
    "@spamdomain.com", no sender at all, and was listed without a word; so was a
    hand-edited list file with it. Both now say what to give instead."""
    refused = admin.run("wbl", "add", "black", pattern, check=False)
    assert refused.returncode == 2 and "matches no address" in refused.stderr
    assert "give *@domain, e.g. *@example.com" in refused.stderr
    assert admin.run("wbl", "list").stdout == ""
    lists = admin.config.parent / "lists"  # (the list file's default place)
    lists.parent.mkdir(parents=True, exist_ok=True)
    lists.write_text(f"# by hand\nblack {pattern}\n")
    lint = admin.run("lint", check=False)
    assert lint.returncode == 1 and f"{lists}:2: {pattern!r} matches no address" in lint.stderr


def test_a_list_entry_for_everyone_that_matches_every_sender_is_warned_of(admin: Admin) -> None:
    """A global `black *@*` makes all mail spam (refused at RejectLevel); a global
    `white *` turns the filter off. Both were taken in silence. A recipient's own entry
    may mean it (a spam trap), so it is not warned of."""
    for kind, pattern in (("black", "*@*"), ("white", "*")):
        added = admin.run("wbl", "add", kind, pattern)
        assert f"spamkit: warning: {kind} {pattern} matches every sender" in added.stderr
    trap = admin.run("wbl", "add", "black", "*", "--user", "trap@example.org")
    assert "warning" not in trap.stderr
    added = admin.run("wbl", "add", "black", "*@*.xyz")
    assert "warning" not in added.stderr
    warnings = json.loads(admin.run("lint", "--json").stdout)["warnings"]
    assert sorted(w.split(": ", 1)[1] for w in warnings if "every sender" in w) == [
        "black *@* matches every sender: all mail is blacklisted as spam",
        "white * matches every sender: no mail is filtered as spam"]


def test_wbl_per_recipient(admin: Admin, test_fold: list[CorpusMessage]) -> None:
    admin.run("wbl", "add", "white", "*@vonage.com", "--user", "alice@example.org")
    spam = next(m for m in test_fold if m.label == "spam")
    raw = with_from(spam.data, "bill@vonage.com")
    for_alice = admin.check(raw, "--rcpt", "alice@example.org")
    for_bob = admin.check(raw, "--rcpt", "bob@example.org")
    assert for_alice["listed"] == "white" and for_bob["listed"] is None
    admin.run("wbl", "remove", "white", "*@vonage.com", "--user", "alice@example.org")
    assert admin.run("wbl", "list").stdout == ""


def test_wbl_per_account_holds_for_the_name_and_each_of_its_addresses(
        admin: Admin, test_fold: list[CorpusMessage], tmp_path: Path) -> None:
    """An entry for the account `alice` (SpamAssassin's per-user preferences are by
    account) matched only a recipient written exactly `alice`: never over SMTP, where
    recipients are addresses. An entry for alice@example.org never held for `deliver
    alice`, which knew only the name. Now the name holds for alice@ any domain, and
    `deliver` reads the address too (RECIPIENT, as Postfix and qmail set it)."""
    admin.run("wbl", "add", "white", "*@vonage.com", "--user", "alice")
    spam = next(m for m in test_fold if m.label == "spam")
    raw = with_from(spam.data, "bill@vonage.com")
    assert admin.check(raw, "--rcpt", "alice@example.org")["listed"] == "white"
    assert admin.check(raw, "--rcpt", "Alice@Example.net")["listed"] == "white"
    assert admin.check(raw, "--rcpt", "bob@example.org")["listed"] is None
    admin.run("wbl", "remove", "white", "*@vonage.com", "--user", "alice")
    admin.run("wbl", "add", "white", "*@vonage.com", "--user", "alice@example.org")
    (tmp_path / "users" / "alice" / "Maildir" / "cur").mkdir(parents=True)
    delivered = subprocess.run(
        [sys.executable, "-m", "spamkit", "deliver", "alice", "--maildirs", f"{tmp_path}/users/{{user}}/Maildir"],
        input=raw, capture_output=True, timeout=120,
        env=dict(admin.env, SENDER="bill@vonage.com", RECIPIENT="alice@example.org"))
    assert delivered.returncode == 0, delivered.stderr
    [message] = (tmp_path / "users" / "alice" / "Maildir" / "new").iterdir()
    assert b"USER_IN_WHITELIST" in message.read_bytes()
