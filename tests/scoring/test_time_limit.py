"""A message's rules stop at its time limit, as SpamAssassin's `time_limit` makes them:
the rules not yet started are skipped, the verdict says TIME_LIMIT_EXCEEDED, and
autolearn leaves the message alone (autolearn=unavailable)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import spamkit.rules
from spamkit.config import config_from_text
from spamkit.lists import Lists
from spamkit.message import parse_message
from spamkit.rules import TIME_LIMIT_DEFAULT_SCORE, TIME_LIMIT_RULE, MessageContext, load_rules
from spamkit.store import open_store
from spamkit.verdict import Scanner

RAW = (b"From: Pills <x@pills.example>\r\nTo: you@example.org\r\nSubject: cheap pills\r\n"
       b"\r\nclick here to order now\r\n")
RULES = ("header PILLS_SUBJECT Subject =~ /pills/\nscore PILLS_SUBJECT 3.5\n"
         "body PILLS_ORDER /order now/\nscore PILLS_ORDER 3.5\n")
# so short that a message's parse alone outlasts it (time.monotonic() counts nanoseconds)
NO_TIME = "time_limit 0.000000001\n"


def scanner(tmp_path: Path, rules_text: str, config_text: str = "", with_store: bool = False) -> Scanner:
    rules_file = tmp_path / "r.cf"
    rules_file.write_text(rules_text)
    config = config_from_text(config_text, tmp_path / "spamkit.toml", {})
    store = open_store(tmp_path / "db") if with_store else None
    return Scanner(config, load_rules([rules_file], builtin=False), Lists(), store)


def names(scanner: Scanner, **options: object) -> list[str]:
    return [hit.name for hit in scanner.scan(RAW, **options).hits]  # type: ignore[arg-type]


def test_rules_not_started_by_the_deadline_are_skipped_and_the_verdict_says_so(tmp_path: Path) -> None:
    s = scanner(tmp_path, RULES)
    assert names(s) == ["PILLS_SUBJECT", "PILLS_ORDER"]  # SpamAssassin's 300 s: all run
    verdict = s.scan(RAW, deadline=time.monotonic() - 1)
    [hit] = verdict.hits
    assert (hit.name, hit.score) == (TIME_LIMIT_RULE, TIME_LIMIT_DEFAULT_SCORE)
    assert hit.detail == "2 rules not run"
    assert verdict.decision == "ham"  # what ran decides: nothing did
    assert "tests=TIME_LIMIT_EXCEEDED " in verdict.status_line()
    assert TIME_LIMIT_RULE in verdict.report()


def test_a_rule_files_time_limit_and_a_score_for_the_hit(tmp_path: Path) -> None:
    s = scanner(tmp_path, RULES + NO_TIME + "score TIME_LIMIT_EXCEEDED 2.5\n")
    assert s.time_limit == pytest.approx(1e-9)
    [hit] = s.scan(RAW).hits
    assert (hit.name, hit.score) == (TIME_LIMIT_RULE, 2.5)
    assert "time_limit" not in s.rules.report.unknown_directives
    # a score of 0 takes the hit out of the verdict, as for any rule
    assert names(scanner(tmp_path, RULES + NO_TIME + "score TIME_LIMIT_EXCEEDED 0\n")) == []


def test_the_configuration_overrides_a_rule_files_time_limit(tmp_path: Path) -> None:
    assert names(scanner(tmp_path, RULES + NO_TIME, "RuleTimeLimit = 0\n")) == ["PILLS_SUBJECT", "PILLS_ORDER"]
    assert names(scanner(tmp_path, RULES, "RuleTimeLimit = 0.000000001\n")) == [TIME_LIMIT_RULE]


def test_the_earlier_of_the_time_limit_and_the_callers_deadline_applies(tmp_path: Path) -> None:
    far = time.monotonic() + 3600
    assert names(scanner(tmp_path, RULES + NO_TIME), deadline=far) == [TIME_LIMIT_RULE]
    assert names(scanner(tmp_path, RULES), deadline=far) == ["PILLS_SUBJECT", "PILLS_ORDER"]
    # no limit of its own (0): the caller's deadline alone
    unlimited = scanner(tmp_path, RULES, "RuleTimeLimit = 0\n")
    assert names(unlimited) == ["PILLS_SUBJECT", "PILLS_ORDER"]
    assert names(unlimited, deadline=time.monotonic() - 1) == [TIME_LIMIT_RULE]


def test_scanning_many_gives_each_message_its_own_time_limit(tmp_path: Path) -> None:
    verdicts = scanner(tmp_path, RULES + NO_TIME).scan_many([RAW, RAW])
    assert [[hit.name for hit in verdict.hits] for verdict in verdicts] == [[TIME_LIMIT_RULE]] * 2
    verdicts = scanner(tmp_path, RULES).scan_many([RAW, RAW])
    assert [[hit.name for hit in verdict.hits] for verdict in verdicts] == [["PILLS_SUBJECT", "PILLS_ORDER"]] * 2


def test_autolearn_leaves_a_message_whose_rules_did_not_all_run(tmp_path: Path) -> None:
    """As SpamAssassin's: autolearn=unavailable, since learning is never reached."""
    s = scanner(tmp_path, RULES, "BayesAutoLearnThresholdSpam = 6\n", with_store=True)
    assert s.scan(RAW).autolearn == "spam"  # 3.5 from the header, 3.5 from the body
    late = s.scan(RAW, deadline=time.monotonic() - 1)
    assert (late.autolearn, late.autolearn_reason) == ("unavailable", "2 rules not run: the time limit passed")
    assert "autolearn=unavailable " in late.status_line()  # SpamAssassin's word for it
    assert s.autolearn(RAW, late) == "no"
    late.not_learned_here("a service that does not learn")
    assert late.autolearn == "unavailable"


def test_a_meta_reading_a_skipped_rule_does_not_count(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The header rules run first; a clock that jumps after the first rule leaves the body
    rule unrun. `!__ORDER` is then no evidence, nor is a meta built on it; a meta that
    reads only what ran still counts."""
    rules_file = tmp_path / "r.cf"
    rules_file.write_text("header SUBJECT Subject =~ /pills/\nbody __ORDER /order now/\n"
                          "meta NO_ORDER !__ORDER\nmeta NO_ORDER_AGAIN NO_ORDER || 0\n"
                          "meta SUBJECT_AGAIN SUBJECT\n")
    ruleset = load_rules([rules_file], builtin=False)
    # the header rule looks at the clock twice (before it starts, before its search), at
    # 0; every later look says 10
    readings = iter([0.0, 0.0])
    monkeypatch.setattr(spamkit.rules.time, "monotonic", lambda: next(readings, 10.0))
    context = MessageContext(RAW, parse_message(RAW))
    hits = ruleset.evaluate(context, deadline=5.0)
    assert [hit.name for hit in hits] == ["SUBJECT", "SUBJECT_AGAIN", TIME_LIMIT_RULE]
    assert context.skipped_rules == ["__ORDER"]
    monkeypatch.undo()
    # where __ORDER has run and not matched, the metas on it do count
    message = RAW.replace(b"order now", b"buy now")
    assert sorted(hit.name for hit in ruleset.evaluate(MessageContext(message, parse_message(message)))) == [
        "NO_ORDER", "NO_ORDER_AGAIN", "SUBJECT", "SUBJECT_AGAIN"]


def test_a_rule_the_deadline_stops_midway_counts_as_not_run(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A body rule searches paragraph by paragraph; each search gets what is left before
    the deadline, not the whole allowance (one rule ran past the deadline by a search's
    budget for each paragraph). A rule cut short is no evidence either way: it is listed
    as not run, and its hits so far do not count."""
    rules_file = tmp_path / "r.cf"
    rules_file.write_text("body PILLS /pills/\ntflags PILLS multiple\nscore PILLS 1\n")
    ruleset = load_rules([rules_file], builtin=False)
    message = b"Subject: hello\r\n\r\n" + b"pills\r\n\r\n" * 8
    context = MessageContext(message, parse_message(message))
    counts, _ = ruleset.match_counts(context, deadline=time.monotonic() + 3600)
    assert counts == {"PILLS": 8}  # one match a paragraph
    ticks = iter(range(1000))  # each look at the clock is a second later than the last
    monkeypatch.setattr(spamkit.rules.time, "monotonic", lambda: float(next(ticks)))
    context = MessageContext(message, parse_message(message))
    # the rule starts at 0, searches the whole text at 1, the paragraphs from 2
    hits = ruleset.evaluate(context, deadline=4.5)
    assert [hit.name for hit in hits] == [TIME_LIMIT_RULE]
    assert context.skipped_rules == ["PILLS"]
    assert next(ticks) == 6  # the search at 5 was never made, nor those after it


@pytest.mark.parametrize(("line", "error"), [
    ("time_limit -1", "time_limit must be 0 (no limit) or more seconds, not '-1'"),
    ("time_limit nan", "time_limit must be 0 (no limit) or more seconds, not 'nan'"),
    ("time_limit soon", "not a number: 'soon'"),
])
def test_a_bad_time_limit_is_reported_with_its_line(tmp_path: Path, line: str, error: str) -> None:
    s = scanner(tmp_path, RULES + line + "\n")
    assert f"r.cf:5: {error}" in "\n".join(s.rules.report.errors)
    assert names(s) == ["PILLS_SUBJECT", "PILLS_ORDER"]  # the default stands
