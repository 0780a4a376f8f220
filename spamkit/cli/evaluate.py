"""`spamkit evaluate --spam PATH --ham PATH`: how well spamkit would sort this mail,
measured by cross-validation in throw-away databases (spamkit.evaluate)."""

from __future__ import annotations

import json
import math
import sys
import time
from typing import TYPE_CHECKING

import click

from spamkit.cli import batch_garbage_collection, config_option, json_option
from spamkit.cli.progress import Progress
from spamkit.config import load_config
from spamkit.evaluate import DEFAULT_FOLDS, Evaluation, Replay, VerdictFigures, evaluate
from spamkit.evaluate import replay as replay_mail
from spamkit.learn import DEFAULT_TRAIN_MARGIN
from spamkit.metrics import Accuracy
from spamkit.sources import iter_messages

if TYPE_CHECKING:
    from spamkit.bayes import BayesParams


@click.command(name="evaluate")
@click.option("--spam", "spam_paths", multiple=True, required=True, metavar="PATH",
              help="Spam: a message file, a directory, a Maildir or an mbox (repeatable).")
@click.option("--ham", "ham_paths", multiple=True, required=True, metavar="PATH",
              help="Ham (good mail), in the same forms (repeatable).")
@click.option("--folds", type=click.IntRange(2, 20), default=DEFAULT_FOLDS, show_default=True,
              help="Parts the mail is split into; each is scored by a database that learned "
                   "the others.")
@click.option("--replay", is_flag=True,
              help="Instead of folds: the mail in arrival order into an empty database, each "
                   "message scored, then learned unless the database was sure of it; shows "
                   "the mistakes users would have corrected, tenth by tenth.")
@click.option("--corrections", is_flag=True,
              help="With --replay and --verdict: learn only what users would move (spam the "
                   "verdict let through, ham it marked spam), and what autolearn picks, as on "
                   "SME, instead of what train would learn.")
@click.option("--margin", type=click.FloatRange(0.5, 1.0, min_open=True, max_open=True),
              default=DEFAULT_TRAIN_MARGIN, show_default=True,
              help="As `spamkit train --margin`: how sure a database must be to leave a "
                   "message out.")
@click.option("--verdict", "with_verdict", is_flag=True,
              help="Also count the whole verdict's errors, as `spamkit check` decides: rules, "
                   "Bayes bands and lists at TagLevel and RejectLevel (slower: the rules run).")
@click.option("--rules", "rule_files", multiple=True, type=click.Path(exists=True),
              help="With --verdict: add a rule file or directory for this run.")
@config_option
@json_option
@click.pass_context
@batch_garbage_collection
def evaluate_command(ctx: click.Context, spam_paths: tuple[str, ...], ham_paths: tuple[str, ...],
                     folds: int, replay: bool, corrections: bool, margin: float,
                     with_verdict: bool,
                     rule_files: tuple[str, ...], config_path: str | None, as_json: bool) -> None:
    """Measure how well spamkit's Bayes would sort your own labelled mail, before you
    rely on it or after changing a setting, with this configuration's BayesSpamCutoff,
    BayesHamCutoff, BayesMinSpam and BayesMinHam.

    By default, k-fold cross-validation of `spamkit train` and the verdict: each message
    is scored by a database that learned only the other folds, so no message is judged
    by a database that has seen it. With --replay, the mail in the order it arrived
    instead, as a new server would meet it with every mistake corrected.

    Prints the false positives, the spam missed (unsure counted as missed), 1-AUC, the
    spam caught with no false positive at all, each fold's (or each tenth's) figures, and
    what other spam cutoffs would have done; with --verdict, also the ham marked spam or
    refused and the spam let through by the whole verdict. Nothing is written to the
    database `spamkit check` uses.

    Exit status: 0; 1 when some messages could not be read (the rest are evaluated);
    65 when there is too little mail of a label for Bayes to judge (with --replay: none
    of a label).
    """
    from click.core import ParameterSource

    from spamkit.analysis import Analyzer
    from spamkit.message import ParseLimits
    from spamkit.verdict import bayes_params

    if replay and ctx.get_parameter_source("folds") is ParameterSource.COMMANDLINE:
        raise click.UsageError("--replay takes the mail in arrival order, not in folds: "
                               "give one of --replay and --folds")
    if corrections and not (replay and with_verdict):
        raise click.UsageError("--corrections replays what users do with the whole verdict: "
                               "give it with --replay and --verdict")
    if corrections and ctx.get_parameter_source("margin") is ParameterSource.COMMANDLINE:
        raise click.UsageError("--corrections learns what users would move, whatever the "
                               "database was sure of: give one of --corrections and --margin")
    if rule_files and not with_verdict:  # (Bayes alone is measured without: they would be read for nothing)
        raise click.UsageError("--rules adds rules to the whole verdict: give it with --verdict")
    config = load_config(config_path)
    params = bayes_params(config)
    judge = None
    if with_verdict:
        from spamkit.verdict import Scanner

        judge = Scanner.factory(config, rule_files)
        for error in judge(None).rule_errors:  # the rule is skipped; the run goes on
            click.echo(f"spamkit: warning: {error}", err=True)
    analyzer = Analyzer(limits=ParseLimits(max_message_bytes=config["MaxMessageSize"]))
    progress = Progress("evaluating", enabled=None if not as_json else False)
    result: Evaluation | Replay
    try:
        if replay:
            result = replay_mail(iter_messages(spam_paths), iter_messages(ham_paths), params,
                                 analyzer, margin, progress, judge, corrections)
        else:
            result = evaluate(iter_messages(spam_paths), iter_messages(ham_paths), params,
                              analyzer, folds, margin, progress, judge)
    finally:
        progress.done()
    if as_json:
        click.echo(json.dumps(result.as_json()))
    else:
        click.echo(_replay_report(result, params) if isinstance(result, Replay)
                   else _report(result, folds))
        if judge is not None and result.verdict is not None:
            scanner = judge(None)
            click.echo(_verdict_report(result.verdict, result.spam, result.ham, scanner.required,
                                       scanner.config.reject_level))
    for name, why in result.failures:
        click.echo(f"spamkit: could not read {name}: {why}", err=True)
    if result.failures:
        sys.exit(1)


def _figures(pooled: Accuracy, spam: int, ham: int, spam_cutoff: float) -> list[str]:
    """The pooled figures, the same lines for folds and for a replay."""
    return [
        f"at BayesSpamCutoff {spam_cutoff:g}:",
        f"  {'ham called spam (false positives)':<40}{pooled.false_positives:>7,} of "
        f"{ham:,} ({_share(pooled.false_positives, ham)})",
        f"  {'spam not called spam (unsure or ham)':<40}{pooled.false_negatives:>7,} of "
        f"{spam:,} ({_share(pooled.false_negatives, spam)}), "
        f"{pooled.unsure_spam:,} of them unsure",
        f"  {'ham left unsure':<40}{pooled.unsure_ham:>7,}",
        f"  {'1-AUC (a ham outranks a spam)':<40}{_percent(pooled.one_minus_auc_percent, 4)}",
        f"  {'spam caught with no false positive':<40}{_percent(pooled.caught_at_zero_fp_percent, 1)}",
    ]


def _figure(value: float, digits: int) -> str:
    """A figure that compares spam with ham, or "-" where one of them is missing (NaN)."""
    return "-" if math.isnan(value) else f"{value:.{digits}f}"


def _percent(value: float, digits: int) -> str:
    return f"{_figure(value, digits) + ('' if math.isnan(value) else '%'):>8}"


def _given_twice(duplicates: int) -> str:
    return f"; {duplicates} given twice, counted once" if duplicates else ""


def _report(result: Evaluation, folds: int) -> str:
    lines = [
        f"{folds}-fold cross-validation of {result.spam:,} spam and {result.ham:,} ham"
        f"{_given_twice(result.duplicates)} ({result.seconds:.1f} s)",
        *_figures(result.pooled, result.spam, result.ham, result.spam_cutoff),
        "",
        "fold   spam    ham  learned  false positives  spam missed  1-AUC %",
    ]
    for fold in result.folds:
        a = fold.accuracy
        lines.append(f"{fold.fold:>4} {fold.spam:>6,} {fold.ham:>6,} {fold.learned:>8,} "
                     f"{a.false_positives:>16,} {a.false_negatives:>12,}  "
                     f"{_figure(a.one_minus_auc_percent, 4)}")
    lines += ["", "other spam cutoffs (BayesSpamCutoff):",
              "cutoff  false positives  spam missed"]
    for cutoff, false_positives, missed in result.cutoffs:
        mark = "  (set)" if cutoff == result.spam_cutoff else ""
        lines.append(f"{cutoff:>6g} {false_positives:>16,} {missed:>12,}{mark}")
    return "\n".join(lines)


def _replay_report(result: Replay, params: BayesParams) -> str:
    undated = f"; {result.undated:,} with no date, last" if result.undated else ""
    lines = [
        f"replay of {result.spam:,} spam and {result.ham:,} ham in arrival order"
        f"{_given_twice(result.duplicates)}{undated} ({result.seconds:.1f} s): each message "
        "scored with what the earlier ones taught, then learned unless the database was sure",
        *_figures(result.pooled, result.spam, result.ham, result.spam_cutoff),
        f"  {'scored before Bayes could judge':<40}{result.abstained:>7,} (until "
        f"{params.min_spam_learned} spam and {params.min_ham_learned} ham were learned)",
        *([f"  {'learned from users moving them':<40}{result.learned:>7,}",
            f"  {'autolearned':<40}{result.autolearned:>7,}"]
          if result.learning == "corrections" else [f"  {'learned':<40}{result.learned:>7,}"]),
    ]
    if result.judged is not None:
        lines += ["once Bayes judged:", *_figures(result.judged, result.judged_spam,
                                                   result.judged_ham, result.spam_cutoff)[1:]]
    judged_by_verdict = result.verdict is not None
    lines += [
        "",
        "arrived from      to                  spam    ham  false positives  spam missed  "
        "Bayes waiting" + ("  verdict: ham marked  spam through" if judged_by_verdict else ""),
    ]
    for segment in result.segments:
        verdict = (f" {segment.verdict_false_positives:>19,} {segment.verdict_false_negatives:>13,}"
                   if judged_by_verdict else "")
        lines.append(f"{_day(segment.first):<17} {_day(segment.last):<17} {segment.spam:>6,} "
                     f"{segment.ham:>6,} {segment.false_positives:>16,} "
                     f"{segment.false_negatives:>12,} {segment.abstained:>14,}{verdict}")
    return "\n".join(lines)


def _day(stamp: float | None) -> str:
    return "-" if stamp is None else time.strftime("%Y-%m-%d %H:%M", time.localtime(stamp))


def _verdict_report(figures: VerdictFigures, spam: int, ham: int, required: float,
                    reject_level: float | None) -> str:
    refused = f", refused at {reject_level:g}" if reject_level is not None else ""
    return "\n".join([
        "",
        f"the whole verdict (rules, Bayes bands and lists; spam at {required:g} points{refused}):",
        f"  {'ham marked spam or refused':<40}{figures.false_positives:>7,} of {ham:,} "
        f"({_share(figures.false_positives, ham)}), {figures.rejected_ham:,} of them refused",
        f"  {'spam let through as ham':<40}{figures.false_negatives:>7,} of {spam:,} "
        f"({_share(figures.false_negatives, spam)})",
    ])


def _share(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.2f}%" if whole else "-"
