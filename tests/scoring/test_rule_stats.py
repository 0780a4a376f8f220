"""`spamkit rules stats`: each rule's hit rates on labelled spam and ham, and the scores
those rates suggest (spamkit.rules.stats, decision 0005)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from spamkit.rules import load_rules
from spamkit.rules.stats import rule_stats

RULES = """\
header   SUBJ_FREE    Subject =~ /\\bfree\\b/i
score    SUBJ_FREE    1.0
body     BODY_AGENDA  /\\bagenda\\b/i
score    BODY_AGENDA  -0.5
tflags   BODY_AGENDA  nice
body     BODY_NEVER   /\\bzyxxyzzy\\b/
score    BODY_NEVER   2.0
"""


def _message(subject: str, body: str) -> bytes:
    return f"From: a@example.org\r\nTo: b@example.net\r\nSubject: {subject}\r\n\r\n{body}\r\n".encode()


# 4 spam, 3 with "free" in the subject; 5 ham, 1 with "free", 4 with "agenda" in the body
SPAM = [_message("free money", "buy now"), _message("Free gift", "click"),
        _message("a free offer", "act today"), _message("cheap pills", "order")]
HAM = [_message("free for lunch?", "the agenda is attached"), _message("minutes", "agenda items"),
       _message("re: agenda", "see the agenda"), _message("meeting", "agenda below"),
       _message("hello", "how are you")]


@pytest.fixture
def rule_file(tmp_path: Path) -> Path:
    path = tmp_path / "local.cf"
    path.write_text(RULES)
    return path


def _expected(spam_rate: float, ham_rate: float, weight: float, cap: float, nice: bool) -> float:
    value = math.log2((spam_rate + 0.005) / (ham_rate + 0.005)) * weight
    return round(max(-cap, min(0.0, value)) if nice else max(0.0, min(cap, value)), 2)


def test_hit_rates_and_suggested_scores(rule_file: Path) -> None:
    ruleset = load_rules([rule_file], builtin=False)
    found = {r.name: r for r in rule_stats(ruleset, [(True, m) for m in SPAM] + [(False, m) for m in HAM])}
    free, agenda, never = found["SUBJ_FREE"], found["BODY_AGENDA"], found["BODY_NEVER"]
    assert (free.spam_hits, free.ham_hits, free.spam_total, free.ham_total) == (3, 1, 4, 5)
    assert (agenda.spam_hits, agenda.ham_hits, agenda.nice) == (0, 4, True)
    assert (never.spam_hits, never.ham_hits) == (0, 0)
    assert free.s_over_o == pytest.approx(0.75 / (0.75 + 0.2))
    assert free.suggested == _expected(0.75, 0.2, 0.25, 1.5, False) > 0
    assert free.suggested_with_bayes == _expected(0.75, 0.2, 0.15, 0.9, False) > 0
    # a nice rule that hits ham gets a score at or below zero, never a spam score
    assert agenda.suggested == _expected(0.0, 0.8, 0.25, 1.5, True) == -1.5
    assert agenda.suggested_with_bayes == -0.9
    assert never.suggested == never.suggested_with_bayes == 0.0 and never.s_over_o == 0.0


def _write(folder: Path, messages: list[bytes]) -> Path:
    folder.mkdir()
    for number, message in enumerate(messages):
        (folder / f"{number}.eml").write_bytes(message)
    return folder


def _stats(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "spamkit", "rules", "stats", *args],
                          capture_output=True, text=True, timeout=300)


def test_the_command_measures_given_mail_and_refuses_one_label(tmp_path: Path, rule_file: Path) -> None:
    spam, ham = _write(tmp_path / "spam", SPAM), _write(tmp_path / "ham", HAM)
    config = tmp_path / "spamkit.toml"
    config.write_text("UseBuiltinRules = false\n")
    common = ["--config", str(config), "--rules", str(rule_file)]
    done = _stats(*common, "--spam", str(spam), "--ham", str(ham), "--json")
    assert done.returncode == 0, done.stderr
    rows = {row["name"]: row for row in json.loads(done.stdout)}
    assert set(rows) == {"SUBJ_FREE", "BODY_AGENDA"}  # (one that never hit shows with --all)
    assert (rows["SUBJ_FREE"]["spam_percent"], rows["SUBJ_FREE"]["ham_percent"]) == (75.0, 20.0)
    assert rows["SUBJ_FREE"]["score"] == 1.0 and rows["BODY_AGENDA"]["suggested"] == -1.5

    # an unreadable message is named and the exit status says so; the rest is measured
    (ham / "gone.eml").symlink_to(tmp_path / "nowhere")
    done = _stats(*common, "--spam", str(spam), "--ham", str(ham), "--all")
    assert done.returncode == 1
    assert f"could not read {ham / 'gone.eml'}" in done.stderr
    assert done.stdout.startswith("4 spam, 5 ham\n") and "BODY_NEVER" in done.stdout

    # hit rates on one label alone suggested scores from nothing (it printed "5 spam, 0 ham")
    done = _stats(*common, "--spam", str(spam))
    assert done.returncode == 2 and "give both --spam and --ham" in done.stderr
    done = _stats(*common, "--spam", str(spam), "--ham", str(_write(tmp_path / "empty", [])))
    assert (done.returncode, done.stdout) == (65, "")
    assert done.stderr == ("spamkit: error: no ham could be read: hit rates compare spam with "
                           "ham, so they need some of each\n")
