"""`spamkit train --spam PATH --ham PATH`: fill a database from a labelled corpus,
learning only what it needs (train on or near error, docs/decisions/0012)."""

from __future__ import annotations

import click

from spamkit.cli import (
    batch_garbage_collection,
    config_option,
    configured_learner,
    db_option,
    json_option,
    quickexit,
    resolve_db_path,
)
from spamkit.cli.learn import report_summary, report_unread, reporting_a_stop, unless_nothing_readable
from spamkit.cli.progress import Progress
from spamkit.config import load_config
from spamkit.learn import DEFAULT_TRAIN_BATCH, DEFAULT_TRAIN_MARGIN, LearnSummary, train_selector
from spamkit.sources import iter_messages
from spamkit.store import open_store


@click.command()
@click.option("--spam", "spam_paths", multiple=True, required=True, metavar="PATH",
              help="Spam: a message file, a directory, a Maildir or an mbox (repeatable).")
@click.option("--ham", "ham_paths", multiple=True, required=True, metavar="PATH",
              help="Ham (good mail), in the same forms (repeatable).")
@click.option("--margin", type=click.FloatRange(0.5, 1.0, min_open=True, max_open=True),
              default=DEFAULT_TRAIN_MARGIN, show_default=True,
              help="Learn a message unless Bayes already puts it on its side with at least "
                   "this probability.")
@click.option("--batch-size", type=click.IntRange(1, 100_000), default=DEFAULT_TRAIN_BATCH,
              show_default=True, help="Messages scored and committed together.")
@db_option
@config_option
@json_option
@click.option("-q", "--quiet", is_flag=True, help="Print nothing unless something failed.")
@batch_garbage_collection
def train(spam_paths: tuple[str, ...], ham_paths: tuple[str, ...], margin: float,
          batch_size: int, db_path: str | None, config_path: str | None, as_json: bool,
          quiet: bool) -> None:
    """Train on a labelled corpus: learn only the messages the database gets wrong or
    is unsure of.

    Both labels are read first, then visited in an order drawn from their content, each
    message scored against what is learned so far; one that Bayes already classifies
    right with at least --margin confidence is left out. The database ends up smaller
    and ranks mail better than one that learned every message (docs/decisions/0012).
    A message learned before is skipped, or relearned if it had the other label; one
    given both as spam and as ham in the same run ends up learned as ham.

    `spamkit learn --spam/--ham` still learns every message it is given: use it for
    users' corrections, which are errors by definition.

    Exit status: 0 when every message was read, 1 when some could not be.
    """
    config = load_config(config_path)
    progress = Progress("reading", enabled=None if not (as_json or quiet) else False)

    def counts(summary: LearnSummary) -> str:
        return (f"learned: {summary.learned}, relearned: {summary.relearned}, already sure: "
                f"{summary.confident}, already known: {summary.skipped}")

    location = resolve_db_path(db_path, config_path)
    [spam, ham], unread = unless_nothing_readable(location, [iter_messages(spam_paths), iter_messages(ham_paths)])
    if unread is not None:
        report_unread(unread, as_json, quiet, counts(unread))
        return
    with reporting_a_stop(progress, as_json, quiet, counts):
        with open_store(location) as store:
            learner = configured_learner(store, config, batch_size)
            summary = learner.train(spam, ham,
                                    train_selector(store, config["BayesMinSpam"], config["BayesMinHam"]),
                                    margin, progress=progress)
    progress.done()
    quickexit.request()  # every batch is committed and the database closed
    report_summary(summary, as_json, quiet, counts(summary))
