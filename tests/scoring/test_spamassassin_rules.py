"""Debian's SpamAssassin rules, read from the system at run time: how many load and run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from corpora import CorpusMessage
from spamkit.message import parse_message
from spamkit.rules import MessageContext, load_rules

DEBIAN_RULES = Path("/usr/share/spamassassin")


def require_debian_rules() -> None:
    assert (DEBIAN_RULES / "50_scores.cf").exists(), (
        "Debian's SpamAssassin rules are missing: install the package `spamassassin` "
        "(.ci/run does)")


def test_debian_rules_load_and_run(all_messages: list[CorpusMessage]) -> None:
    require_debian_rules()
    ruleset = load_rules([DEBIAN_RULES])
    report = ruleset.report
    assert report.files >= 50
    # nearly every definition runs: what does not is an eval or network test (reported)
    assert report.loaded >= 0.9 * report.rules, report.skipped
    assert len(report.errors) <= 5, report.errors
    spam_scores, ham_scores = [], []
    for message in all_messages[::12]:
        context = MessageContext(message.data, parse_message(message.data))
        score = sum(h.score for h in ruleset.evaluate(context, score_set=0))
        (spam_scores if message.label == "spam" else ham_scores).append(score)
    # the rules work: spam scores higher than ham on average, by a wide margin
    assert sum(spam_scores) / len(spam_scores) > 3 * max(0.5, sum(ham_scores) / len(ham_scores))
    # (their speed is benchmarks.scoring's to measure, not an assertion here)


def test_lint_reports_debian_rules(tmp_path: Path) -> None:
    require_debian_rules()
    result = subprocess.run([sys.executable, "-m", "spamkit", "lint", "--json", "--rules",
                             str(DEBIAN_RULES), "--config", str(tmp_path / "none.toml")],
                            capture_output=True, text=True, timeout=300)
    report = json.loads(result.stdout)
    assert {"files", "rules", "loaded", "skipped", "errors", "skipped_rules", "bounded_rules"} <= report.keys()
    assert report["loaded"] > 2000
    # Debian's own files lint clean (an sa-update hook can go by the exit status): the
    # one rule too slow on a whole hostile header reads its start (decision 0057)
    assert report["errors"] == [] and result.returncode == 0, report["errors"]
    assert [bounded["rule"] for bounded in report["bounded_rules"]] == ["__PDS_TONAME_EQ_TOLOCAL"]
    # each rule that does not run is named, as many as are counted
    assert len(report["skipped_rules"]) == report["skipped"] > 0
    assert all(skipped["origin"].startswith(str(DEBIAN_RULES)) for skipped in report["skipped_rules"])
    text = subprocess.run([sys.executable, "-m", "spamkit", "lint", "--skipped", "--rules",
                           str(DEBIAN_RULES), "--config", str(tmp_path / "none.toml")],
                          capture_output=True, text=True, timeout=300)
    named = [line for line in text.stdout.splitlines() if line.startswith("skipped: ")]
    assert named == [f"skipped: {s['origin']}: {s['rule']}: {s['reason']}"
                     + (f" ({s['detail']})" if s["detail"] else "") for s in report["skipped_rules"]]
    assert [line for line in text.stdout.splitlines() if line.startswith("bounded: ")] == [
        f"bounded: {b['origin']}: {b['rule']}: too slow on a whole header; reads its first {b['characters']} characters"
        for b in report["bounded_rules"]]
    plain = subprocess.run([sys.executable, "-m", "spamkit", "lint", "--rules", str(DEBIAN_RULES),
                            "--config", str(tmp_path / "none.toml")], capture_output=True, text=True, timeout=300)
    assert "`spamkit lint --skipped` names the rules skipped" in plain.stdout
    assert not [line for line in plain.stdout.splitlines() if line.startswith("skipped: ")]


def test_joined_paragraph_search_changes_no_result(all_messages: list[CorpusMessage]) -> None:
    """The one-search-over-all-paragraphs shortcut gives the same hits as searching each
    paragraph, with Debian's rules on a sample of the corpus."""
    require_debian_rules()
    ruleset = load_rules([DEBIAN_RULES], builtin=False)
    local = [rule for rule in ruleset.rules.values() if rule.paragraph_local]
    assert len(local) > 500
    sample = all_messages[5::24]
    contexts = [(m.data, parse_message(m.data)) for m in sample]
    fast = [ruleset.match_counts(MessageContext(raw, parsed), 0)[0] for raw, parsed in contexts]
    for rule in local:
        rule.paragraph_local = False
    slow = [ruleset.match_counts(MessageContext(raw, parsed), 0)[0] for raw, parsed in contexts]
    assert fast == slow
