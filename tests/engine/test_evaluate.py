"""`spamkit evaluate`: cross-validation of train and Bayes on a user's labelled mail, here
the SpamAssassin corpus's training folds."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

from corpora.readers import CorpusMessage
from spamkit.bayes import BayesParams
from spamkit.evaluate import Evaluation, TooLittleMail, evaluate
from spamkit.sources import SourceItem


def _items(messages: list[CorpusMessage], label: str) -> list[SourceItem]:
    return [SourceItem(m.path, m.data) for m in messages if m.label == label]


@pytest.fixture(scope="module")
def sample(split: tuple[list[CorpusMessage], list[CorpusMessage]]) -> list[CorpusMessage]:
    """600 spam and 900 ham of the training folds (the test fold stays unread)."""
    train, _ = split
    return [m for m in train if m.label == "spam"][:600] + [m for m in train if m.label == "ham"][:900]


@pytest.fixture(scope="module")
def evaluated(sample: list[CorpusMessage]) -> Evaluation:
    return evaluate(_items(sample, "spam"), _items(sample, "ham"), BayesParams(), folds=3)


def test_every_message_is_scored_once_and_the_folds_add_up(evaluated: Evaluation) -> None:
    assert (evaluated.spam, evaluated.ham, evaluated.duplicates, evaluated.failures) == (600, 900, 0, [])
    assert len(evaluated.folds) == 3 and evaluated.abstained == 0
    assert sum(f.spam for f in evaluated.folds) == 600 and sum(f.ham for f in evaluated.folds) == 900
    for figure in ("false_positives", "false_negatives", "unsure_spam", "unsure_ham"):
        assert sum(getattr(f.accuracy, figure) for f in evaluated.folds) == \
            getattr(evaluated.pooled, figure)
    # train leaves out what a fold's database is already sure of
    assert all(0 < f.learned < 1500 - f.spam - f.ham for f in evaluated.folds)
    # the cutoff table's row for the configured cutoff is the verdicts' own count
    [(_, false_positives, missed)] = [row for row in evaluated.cutoffs if row[0] == 0.9]
    assert (false_positives, missed) == (evaluated.pooled.false_positives,
                                         evaluated.pooled.false_negatives)
    # lower cutoffs never miss more, nor call less ham spam
    assert [row[2] for row in evaluated.cutoffs] == sorted(row[2] for row in evaluated.cutoffs)
    assert [row[1] for row in evaluated.cutoffs] == sorted((row[1] for row in evaluated.cutoffs), reverse=True)


def test_the_figures_are_those_of_a_filter_that_learned(evaluated: Evaluation) -> None:
    """Each message is judged by a database that never saw it: the figures are real
    errors, and on this mail there are few of them (the benchmarks' cross-validation of
    the same folds: 1-AUC 0.013%, 3% of spam missed)."""
    pooled = evaluated.pooled
    assert pooled.false_positives <= 9  # 1% of 900 ham
    assert pooled.false_negatives <= 60  # 10% of 600 spam
    assert pooled.one_minus_auc_percent < 0.5
    assert pooled.caught_at_zero_fp_percent > 50


def test_the_result_depends_on_the_mail_not_on_its_order(sample: list[CorpusMessage],
                                                          evaluated: Evaluation) -> None:
    """Folds and training order come from each message's content, so the same mail
    read in another order (another file system, another listing) gives the same figures;
    mail given twice counts once, with the first label it was given."""
    shuffled = sample[:]
    random.Random(7).shuffle(shuffled)
    again = evaluate(_items(shuffled, "spam") + _items(shuffled, "spam")[:5],
                     _items(shuffled, "ham") + [SourceItem("missing", None, "no such file")],
                     BayesParams(), folds=3)
    assert again.pooled == evaluated.pooled and again.cutoffs == evaluated.cutoffs
    assert again.duplicates == 5 and again.failures == [("missing", "no such file")]


def test_the_whole_verdict_is_counted_with_the_same_bayes_under_it(
        sample: list[CorpusMessage], evaluated: Evaluation, tmp_path: Path) -> None:
    """--verdict: each fold's messages judged by a Scanner over that fold's database, as
    `spamkit check` would judge them (the SME guide's TagLevel 4 here): its Bayes results
    are the Bayes-only run's, and the rules and bands around them decide."""
    from spamkit.config import config_from_text
    from spamkit.verdict import Scanner

    config = config_from_text('Sensitivity = "custom"\nTagLevel = 4\n', tmp_path / "s.toml", {})
    judged = evaluate(_items(sample, "spam"), _items(sample, "ham"), BayesParams(), folds=3,
                      judge=Scanner.factory(config))
    assert judged.pooled == evaluated.pooled and judged.log_odds == evaluated.log_odds
    assert evaluated.verdict is None and judged.verdict is not None
    figures = judged.verdict
    assert figures.rejected_ham == figures.rejected_spam == 0  # no RejectLevel set
    assert figures.false_positives <= 9  # 1% of 900 ham
    assert figures.false_negatives <= 60  # 10% of 600 spam
    assert judged.as_json()["verdict"] == {"false_positives": figures.false_positives,
                                           "false_negatives": figures.false_negatives,
                                           "rejected_ham": 0, "rejected_spam": 0}


def test_too_little_mail_for_bayes_to_judge_is_refused_with_what_it_takes(
        sample: list[CorpusMessage]) -> None:
    ham = _items(sample, "ham")
    with pytest.raises(TooLittleMail, match=r"250 spam messages are too few to evaluate with 4 "
                                            r"folds: .* learned 200 \(BayesMinSpam\); give "
                                            r"about 267 or more"):
        evaluate(_items(sample, "spam")[:250], ham, BayesParams(), folds=4)
    # a path that could not be read is the likely cause: the error says so
    with pytest.raises(TooLittleMail, match=r"give about 267 or more \(gone could not be "
                                            r"read: no such file and 1 more\)"):
        evaluate(_items(sample, "spam")[:250] + [SourceItem("gone", None, "no such file")] * 2,
                 ham, BayesParams(), folds=4)


def test_the_command_reports_as_json_and_text(sample: list[CorpusMessage], tmp_path: Path) -> None:
    for label in ("spam", "ham"):
        folder = tmp_path / label
        folder.mkdir()
        for i, message in enumerate(m for m in sample if m.label == label):
            (folder / f"{i}.eml").write_bytes(message.data)
    command = [sys.executable, "-m", "spamkit", "evaluate", "--spam", str(tmp_path / "spam"),
               "--ham", str(tmp_path / "ham"), "--folds", "3", "--config", str(tmp_path / "none.toml")]
    done = subprocess.run([*command, "--json"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["spam"], report["ham"], report["failed"], len(report["folds"])) == (600, 900, 0, 3)
    assert report["false_positives"] == sum(f["false_positives"] for f in report["folds"])
    assert {row["cutoff"] for row in report["cutoffs"]} >= {0.5, 0.9, 0.99}

    (tmp_path / "none.toml").write_text("BayesSpamCutoff = 0.7\n")
    done = subprocess.run([*command, "--ham", str(tmp_path / "nowhere"), "--verdict"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1  # one path could not be read; the rest is evaluated
    assert "3-fold cross-validation of 600 spam and 900 ham" in done.stdout
    assert "at BayesSpamCutoff 0.7:" in done.stdout
    assert re.search(r"^ +0\.7 +\d+ +\d+  \(set\)$", done.stdout, re.MULTILINE), done.stdout
    assert "could not read" in done.stderr and "nowhere" in done.stderr
    assert re.search(r"spam at 5 points\):\n  ham marked spam or refused +\d+ of 900 .*\n"
                     r"  spam let through as ham +\d+ of 600", done.stdout), done.stdout
    assert not list(tmp_path.glob("**/data.mdb"))  # no database left anywhere

    one_spam = [*command[:5], str(tmp_path / "spam" / "1.eml"), *command[6:]]
    done = subprocess.run(one_spam, capture_output=True, text=True, timeout=300)
    assert done.returncode == 65 and "too few to evaluate" in done.stderr


def test_a_fold_without_one_label_shows_no_ranking(sample: list[CorpusMessage], tmp_path: Path) -> None:
    """With BayesMinSpam and BayesMinHam at 1, a little mail is enough, and a fold may hold
    no spam: its 1-AUC compares nothing and shows "-" (it printed "nan")."""
    for label in ("spam", "ham"):
        (tmp_path / label).mkdir()
        for i, message in enumerate([m for m in sample if m.label == label][:5]):
            (tmp_path / label / f"{i}.eml").write_bytes(message.data)
    (tmp_path / "min.toml").write_text("BayesMinSpam = 1\nBayesMinHam = 1\n")
    done = subprocess.run([sys.executable, "-m", "spamkit", "evaluate", "--spam", str(tmp_path / "spam"),
                           "--ham", str(tmp_path / "ham"), "--config", str(tmp_path / "min.toml")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "nan" not in done.stdout
    rows = re.findall(r"^ +(\d) +(\d+) +(\d+) +\d+ +\d+ +\d+  (\S+)$", done.stdout, re.MULTILINE)
    assert len(rows) == 4 and sum(int(spam) for _, spam, _, _ in rows) == 5
    one_label = [auc for _, spam, ham, auc in rows if spam == "0" or ham == "0"]
    assert one_label and set(one_label) == {"-"}, done.stdout


def test_arrival_is_the_topmost_dated_received_header_else_the_date() -> None:
    from spamkit.evaluate import arrival_time
    from spamkit.message import parse_message

    relayed = (b"Received: from mx.example.org by mail.example.org; Tue, 3 Sep 2002 10:00:00 +0000\r\n"
               b"Received: from client by mx.example.org; Tue, 3 Sep 2002 09:59:00 +0000\r\n"
               b"Date: Mon, 2 Sep 2002 08:00:00 +0000\r\n\r\nhello\r\n")
    assert arrival_time(parse_message(relayed)) == 1031047200.0
    undated_hop = b"Received: from localhost by mail.example.org (no date)\r\n" + relayed.split(b"\r\n", 1)[1]
    assert arrival_time(parse_message(undated_hop)) == 1031047140.0  # the next hop down
    assert arrival_time(parse_message(b"Date: Mon, 2 Sep 2002 08:00:00 +0000\r\n\r\nx")) == 1030953600.0
    assert arrival_time(parse_message(b"Date: yesterday\r\n\r\nx")) is None
    assert arrival_time(parse_message(b"\x00\xff no headers at all")) is None


def test_a_replay_meets_the_mail_in_arrival_order_and_learns_as_it_goes(
        sample: list[CorpusMessage], tmp_path: Path) -> None:
    """--replay: an empty database meets the mail in the order it arrived; Bayes waits
    until it has learned BayesMinSpam and BayesMinHam, then judges each message with
    what came before it. The outcome depends on the mail, not on the order it is given."""
    from spamkit.config import config_from_text
    from spamkit.evaluate import replay
    from spamkit.sources import SourceItem as Item
    from spamkit.verdict import Scanner

    params = BayesParams(min_spam_learned=50, min_ham_learned=50)
    undated = Item("undated", b"Subject: no date anywhere\r\n\r\nplain words\r\n")
    result = replay(_items(sample, "spam"), _items(sample, "ham") + [undated], params)
    assert (result.spam, result.ham, result.undated, result.duplicates) == (600, 901, 1, 0)
    assert len(result.segments) == 10
    assert sum(s.spam for s in result.segments) == 600 and sum(s.ham for s in result.segments) == 901
    assert sum(s.false_positives for s in result.segments) == result.pooled.false_positives
    assert sum(s.false_negatives for s in result.segments) == result.pooled.false_negatives
    assert sum(s.abstained for s in result.segments) == result.abstained
    # arrival order: the segments follow one another in time, the undated one comes last
    dated = [s for s in result.segments if s.first is not None]
    assert all(a.last <= b.first for a, b in zip(dated, dated[1:]))  # type: ignore[operator]
    # Bayes waited for 50 of each, learning everything meanwhile, then judged the rest
    assert 100 <= result.abstained < 1501 and result.segments[-1].abstained == 0
    assert result.abstained <= result.learned < 1501
    assert result.judged is not None and result.judged_spam + result.judged_ham == 1501 - result.abstained
    assert result.judged.false_positives == result.pooled.false_positives
    assert result.judged.one_minus_auc_percent < 1.0  # it learned

    shuffled = sample[:]
    random.Random(3).shuffle(shuffled)
    again = replay(_items(shuffled, "spam"), [undated] + _items(shuffled, "ham"), params)
    assert again.pooled == result.pooled and again.segments == result.segments

    config = config_from_text('BayesMinSpam = 50\nBayesMinHam = 50\n', tmp_path / "s.toml", {})
    judged = replay(_items(sample, "spam"), _items(sample, "ham") + [undated], params,
                    judge=Scanner.factory(config))
    assert judged.pooled == result.pooled and judged.verdict is not None
    assert judged.as_json()["mode"] == "replay" and judged.as_json()["verdict"] is not None
    assert all(s.verdict_false_positives is not None for s in judged.segments)
    assert sum(s.verdict_false_negatives or 0 for s in judged.segments) == judged.verdict.false_negatives

    # as on SME: users move only what the verdict misfiled, autolearn teaches the rest
    moved = replay(_items(sample, "spam"), _items(sample, "ham") + [undated], params,
                   judge=Scanner.factory(config), corrections=True)
    assert moved.learning == "corrections" and moved.verdict is not None
    assert moved.learned == moved.verdict.false_positives + moved.verdict.false_negatives  # no RejectLevel
    assert moved.autolearned > 0 and moved.as_json()["autolearned"] == moved.autolearned
    with pytest.raises(ValueError, match="give a judge"):
        replay(_items(sample, "spam"), _items(sample, "ham"), params, corrections=True)
    # one label alone has no ranking to measure: refused, with what could not be read
    with pytest.raises(TooLittleMail, match=r"^no ham could be read: .* needs some of each "
                                            r"\(gone could not be read: no such file\)$"):
        replay(_items(sample, "spam"), [SourceItem("gone", None, "no such file")], params)
    with pytest.raises(TooLittleMail, match=r"^no spam could be read"):
        replay([], [], params)


def test_the_command_replays_on_request_and_refuses_folds_with_it(
        sample: list[CorpusMessage], tmp_path: Path) -> None:
    for label in ("spam", "ham"):
        folder = tmp_path / label
        folder.mkdir()
        for i, message in enumerate(m for m in sample if m.label == label):
            (folder / f"{i}.eml").write_bytes(message.data)
    command = [sys.executable, "-m", "spamkit", "evaluate", "--replay", "--spam",
               str(tmp_path / "spam"), "--ham", str(tmp_path / "ham"), "--config",
               str(tmp_path / "none.toml")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("replay of 600 spam and 900 ham in arrival order")
    assert re.search(r"scored before Bayes could judge +\d+ \(until 200 spam and 200 ham were "
                     r"learned\)\n  learned +\d+\nonce Bayes judged:\n", done.stdout), done.stdout
    assert len(re.findall(r"^\d{4}-\d\d-\d\d \d\d:\d\d  \d{4}-", done.stdout, re.MULTILINE)) == 10
    done = subprocess.run([*command, "--folds", "3"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "give one of --replay and --folds" in done.stderr
    done = subprocess.run([*command, "--corrections"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "give it with --replay and --verdict" in done.stderr
    done = subprocess.run([*command, "--rules", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "give it with --verdict" in done.stderr
    done = subprocess.run([*command, "--verdict", "--corrections", "--margin", "0.9"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "give one of --corrections and --margin" in done.stderr
    (tmp_path / "empty").mkdir()
    no_ham = [*command[:8], str(tmp_path / "empty"), *command[9:]]
    done = subprocess.run(no_ham, capture_output=True, text=True, timeout=300)
    assert (done.returncode, done.stdout) == (65, "")
    assert done.stderr == ("spamkit: error: no ham could be read: a replay measures how spam and "
                           "ham are told apart, so it needs some of each\n")
