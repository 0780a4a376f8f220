"""`spamkit check PATH...`: the full verdict for each message (rules, Bayes, lists)."""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING

import click

from spamkit.cli import (
    batch_garbage_collection,
    config_option,
    db_option,
    json_option,
    quickexit,
    resolve_db_path,
)
from spamkit.config import load_config
from spamkit.errors import StoreError
from spamkit.sources import SourceItem, iter_messages
from spamkit.store import open_store
from spamkit.verdict import Scanner, Verdict

if TYPE_CHECKING:
    from spamkit.pyzor import PyzorCheck, Recorded

# Messages scored together (their tokens read from the database in one pass); the bytes
# cap keeps a folder of large messages from being held in memory all at once.
BATCH_MESSAGES = 256
BATCH_BYTES = 8 << 20


@click.command()
@click.argument("paths", nargs=-1, metavar="PATH...")
@db_option
@config_option
@json_option
@click.option("--rules", "rule_files", multiple=True, type=click.Path(exists=True),
              help="Add a rule file or directory (SpamAssassin .cf syntax) for this run.")
@click.option("--from", "envelope_from", help="Envelope sender, for the lists.")
@click.option("--rcpt", "recipients", multiple=True, help="Envelope recipient (repeatable).")
@click.option("--explain", is_flag=True, help="Say why each rule matched and list the "
              "tokens that decided Bayes.")
@click.option("--autolearn", "do_autolearn", is_flag=True,
              help="Learn each message when autolearn says so (opens the database for writing).")
@click.option("--pyzor", "ask_pyzor", is_flag=True,
              help="Ask PyzorServers about each message first (PYZOR_CHECK), as the SMTP "
                   "filter's pyzor check does.")
@batch_garbage_collection
def check(paths: tuple[str, ...], db_path: str | None, config_path: str | None, as_json: bool,
          rule_files: tuple[str, ...], envelope_from: str | None, recipients: tuple[str, ...],
          explain: bool, do_autolearn: bool, ask_pyzor: bool) -> None:
    """Score messages: ham, spam or reject, with the rules that hit and the Bayes probability.

    PATH is as for `spamkit learn`; with none, one message is read from standard input.
    Without --autolearn the database is opened read-only and never created, and messages
    are scored 256 at a time (their database reads shared), so output comes a batch at a
    time. Exit status: 0 when every message was read, 1 when some could not be, 74 when
    there is no database (set UseBayes false to score with the rules alone) or --autolearn
    could not write to it (every message is still checked).

    With --pyzor, a message is scored with what Pyzor's servers say of it, as it would be
    through the filter: an X-Spamkit-Pyzor it carries counts for nothing. When no server
    has answered three messages in a row, the rest are not asked about (each would wait
    PyzorTimeout), and a warning says so.
    """
    config = load_config(config_path)
    pyzor = None
    if ask_pyzor:  # (imported only then: every other run would pay for the email package)
        from spamkit.pyzor import PyzorCheck

        pyzor = PyzorAsker(PyzorCheck.from_config(config, "check --pyzor"))
    store = (open_store(resolve_db_path(db_path, config_path), readonly=not do_autolearn)
             if config["UseBayes"] else None)
    failed = 0
    learn_error: StoreError | None = None
    try:
        scanner = Scanner.from_config(config, store, rule_files)
        for error in scanner.rule_errors:  # the rule is skipped; the run goes on
            click.echo(f"spamkit: warning: {error}", err=True)
        batch: list[SourceItem] = []
        pyzor_answers: list[Recorded | None] = []
        batch_bytes = 0

        def finish_batch() -> None:
            nonlocal batch_bytes
            verdicts = scanner.scan_many([item.data or b"" for item in batch], envelope_from,
                                         recipients, explain=explain)
            for item, verdict, asked in zip(batch, verdicts, pyzor_answers):
                _print(item.name, verdict, as_json, explain, None, asked)
            batch.clear()
            pyzor_answers.clear()
            batch_bytes = 0

        for item in iter_messages(paths or ("-",)):
            if item.data is None:
                finish_batch()  # reports stay in the order of the messages
                failed += 1
                click.echo(f"spamkit: cannot read {item.name}: {item.error}", err=True)
                continue
            asked = None if pyzor is None else pyzor.recorded(item.data)
            if asked is not None:
                item = dataclasses.replace(item, data=asked.data)
            assert item.data is not None
            if do_autolearn:  # one at a time: each message sees what the last one taught
                verdict = scanner.scan(item.data, envelope_from, recipients, explain=explain)
                learned = scanner.autolearn(item.data, verdict, item.name)
                if learned == "failed" and learn_error is None:  # (a full disk): checking goes on
                    learn_error = StoreError(verdict.autolearn_reason)
                    click.echo(f"spamkit: warning: autolearn stopped: {learn_error}", err=True)
                _print(item.name, verdict, as_json, explain, learned, asked)
            else:
                batch.append(item)
                pyzor_answers.append(asked)
                batch_bytes += len(item.data)
                if len(batch) >= BATCH_MESSAGES or batch_bytes >= BATCH_BYTES:
                    finish_batch()
        finish_batch()
    finally:
        if store is not None:
            store.close()
    quickexit.request()  # every verdict is printed and the database closed
    if learn_error is not None:
        raise learn_error  # every message was checked; exit 74 says the learning was not
    if failed:
        raise SystemExit(1)


# asked in a row with no server answering: the rest of the run is not asked about
UNANSWERED_BEFORE_GIVING_UP = 3


class PyzorAsker:
    """--pyzor over a run of messages: a server that is down would hold each of them
    PyzorTimeout, so after UNANSWERED_BEFORE_GIVING_UP in a row nothing more is asked
    (an X-Spamkit-Pyzor a message carries is still removed)."""

    def __init__(self, check: PyzorCheck) -> None:
        self.check = check
        self.unanswered = 0

    def recorded(self, data: bytes) -> Recorded:
        if self.unanswered >= UNANSWERED_BEFORE_GIVING_UP:
            return self.check.recorded(data, ask=False)
        recorded = self.check.recorded(data)
        if recorded.asked:
            self.unanswered = 0 if recorded.answer is not None else self.unanswered + 1
            if self.unanswered == UNANSWERED_BEFORE_GIVING_UP:
                click.echo(f"spamkit: warning: no Pyzor server answered {self.unanswered} messages "
                           "in a row; the rest are scored without asking", err=True)
        return recorded


def _print(name: str, verdict: Verdict, as_json: bool, explain: bool, learned: str | None,
           pyzor: Recorded | None) -> None:
    bayes = verdict.bayes
    if as_json:
        record: dict[str, object] = {
            "path": name, "verdict": verdict.decision, "score": verdict.score,
            "required": verdict.required,
            "bayes": None if bayes is None else bayes.probability,
            "bayes_verdict": None if bayes is None else bayes.verdict,
            "bayes_log_odds": None if bayes is None or bayes.probability is None else round(bayes.log_odds, 4),
            "rules": [{"name": h.name, "score": h.score} for h in verdict.hits],
            "autolearn": verdict.autolearn, "listed": verdict.listed,
        }
        if bayes is not None:
            record.update(tokens=bayes.tokens, known_tokens=bayes.known, used_tokens=bayes.used,
                          bayes_chi2=bayes.chi2_probability if bayes.byte_log_odds is not None
                          else bayes.probability,
                          byte_model_log_odds=None if bayes.byte_log_odds is None
                          else round(bayes.byte_log_odds, 4))
            if bayes.reason:
                record["reason"] = bayes.reason
        if learned is not None:
            record["autolearned"] = learned
        if pyzor is not None:
            record["pyzor"] = pyzor.as_json()
        if explain:
            record["autolearn_reason"] = verdict.autolearn_reason
            record["rules"] = [{"name": h.name, "score": h.score, "description": h.description,
                                "matched": h.detail} for h in verdict.hits]
            if bayes is not None:
                record["clues"] = [{"token": c.token, "probability": round(c.probability, 4),
                                    "spam": c.spam, "ham": c.ham} for c in bayes.clues]
        click.echo(json.dumps(record, ensure_ascii=False))
        return
    probability = "n/a" if bayes is None or bayes.probability is None else f"{bayes.probability:.4f}"
    tests = ",".join(h.name for h in verdict.hits) or "none"
    # without --autolearn, what autolearn would do: said so, since nothing was learned
    not_run = " (not learned without --autolearn)" \
        if learned is None and verdict.autolearn in ("spam", "ham") else ""
    click.echo(f"{name}: {verdict.decision} (score {verdict.score:.1f}, required "
               f"{verdict.required:.1f}, bayes {probability}) tests={tests} "
               f"autolearn={verdict.autolearn}{not_run}")
    if explain:
        for hit in sorted(verdict.hits, key=lambda h: -abs(h.score)):
            matched = f"  matched {hit.detail!r}" if hit.detail else ""
            click.echo(f"    {hit.score:6.1f}  {hit.name:<24} {hit.description}{matched}")
        click.echo(f"    autolearn: {verdict.autolearn} ({verdict.autolearn_reason}){not_run}")
        if pyzor is not None:
            click.echo(f"    pyzor: {_pyzor_said(pyzor)}")
        if bayes is not None:
            if bayes.reason:
                click.echo(f"    bayes: {bayes.reason}")
            if bayes.byte_log_odds is not None and bayes.chi2_probability is not None:
                click.echo(f"    bayes: chi-square {bayes.chi2_probability:.4f}, byte model "
                           f"log-odds {bayes.byte_log_odds:+.2f} (docs/decisions/0024)")
            for clue in bayes.clues:
                click.echo(f"    bayes {clue.probability:.4f}  spam {clue.spam:>5}  "
                           f"ham {clue.ham:>5}  {clue.token!r}")


def _pyzor_said(pyzor: Recorded) -> str:
    """What --explain says of Pyzor: the header the message now carries, or why none."""
    if pyzor.header is not None:
        return pyzor.header
    return "no server answered" if pyzor.asked else "not asked"
