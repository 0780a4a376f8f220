"""`spamkit check PATH...`: a verdict for each message."""

from __future__ import annotations

import json

import click

from spamkit.analysis import Analyzer
from spamkit.bayes import BayesClassifier, BayesResult
from spamkit.cli import db_option, json_option
from spamkit.sources import iter_messages
from spamkit.store import open_store


@click.command()
@click.argument("paths", nargs=-1, metavar="PATH...")
@db_option
@json_option
@click.option("--explain", is_flag=True, help="List the tokens that decided each verdict.")
@click.option("--clues", type=click.IntRange(1, 150), default=15, show_default=True,
              help="How many tokens --explain lists.")
def check(paths: tuple[str, ...], db_path: str | None, as_json: bool, explain: bool,
          clues: int) -> None:
    """Score messages: ham, unsure or spam, with the Bayes probability.

    PATH is as for `spamkit learn`; with none, one message is read from standard input.
    The database is opened read-only and never created.
    """
    analyzer = Analyzer()
    failed = 0
    with open_store(db_path, readonly=True) as store:
        classifier = BayesClassifier(store)
        for item in iter_messages(paths or ("-",)):
            if item.data is None:
                failed += 1
                click.echo(f"spamkit: cannot read {item.name}: {item.error}", err=True)
                continue
            analysis = analyzer.analyze(item.data)
            result = classifier.score(analysis.hashes, analysis.tokens,
                                      explain=clues if explain else 0)
            _print(item.name, result, as_json, explain)
    if failed:
        raise SystemExit(1)


def _print(name: str, result: BayesResult, as_json: bool, explain: bool) -> None:
    if as_json:
        record: dict[str, object] = {
            "path": name, "verdict": result.verdict,
            "bayes": result.probability,
            "bayes_log_odds": None if result.probability is None else round(result.log_odds, 4),
            "tokens": result.tokens, "known_tokens": result.known, "used_tokens": result.used,
        }
        if result.reason:
            record["reason"] = result.reason
        if explain:
            record["clues"] = [{"token": c.token, "probability": round(c.probability, 4),
                                "spam": c.spam, "ham": c.ham} for c in result.clues]
        click.echo(json.dumps(record, ensure_ascii=False))
        return
    probability = "n/a" if result.probability is None else f"{result.probability:.4f}"
    line = f"{name}: {result.verdict} (bayes {probability})"
    if result.reason:
        line += f" [{result.reason}]"
    click.echo(line)
    if explain:
        for clue in result.clues:
            click.echo(f"    {clue.probability:.4f}  spam {clue.spam:>5}  ham {clue.ham:>5}  "
                       f"{clue.token!r}")
