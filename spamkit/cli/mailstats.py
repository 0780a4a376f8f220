"""`spamkit mailstats [LOG...]`: a summary of the SMTP filter's log for a stretch of time
(SME's mailstats report): what was relayed, tagged, refused and by which filter, the
clients and sender domains most refused, logins, the hours, the time spent at DATA."""

from __future__ import annotations

import datetime
import gzip
import io
import json
import smtplib
import sys
import time
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import click

from spamkit.cli import config_option, json_option
from spamkit.config import Config, load_config
from smtpfilter.mailstats import MAX_LINE, MailStats, read_line, render
from spamkit.errors import MessageSourceError, SpamkitError


class _Lines(Protocol):
    def readline(self, size: int = -1, /) -> bytes: ...


class ReportNotSent(SpamkitError):
    exit_code = 75  # EX_TEMPFAIL: cron tries again


@click.command()
@click.argument("logs", nargs=-1, metavar="[LOG...]")
@click.option("--since", metavar="WHEN", help="Only lines from this time on: YYYY-MM-DD, "
              "'YYYY-MM-DD HH:MM', today or yesterday (local time).")
@click.option("--until", metavar="WHEN", help="Only lines before this time (same forms).")
@click.option("--top", type=click.IntRange(1, 10_000), default=10, show_default=True,
              help="How many clients, sender domains and logins to list.")
@click.option("--mail-report", "mail_to", metavar="ADDRESS",
              help="Also mail the report to ADDRESS (through ReportSmtpServer, from ReportFrom).")
@config_option
@json_option
def mailstats(logs: tuple[str, ...], since: str | None, until: str | None, top: int,
              mail_to: str | None, config_path: str | None, as_json: bool) -> None:
    """Summarize the log `spamkit serve` writes: LOG files (rotated .gz ones too), or `-`
    for stdin, e.g. `journalctl -u spamkit-filter --since yesterday --until today |
    spamkit mailstats -`. Spam is a relayed message scored at or above the tag level in
    force (TagLevel, or the Sensitivity preset's). Other programs' lines are passed
    over; with --since or --until, so are lines that give no time. Exit 66 if a LOG
    cannot be read, 75 if the report could not be mailed."""
    if not logs:
        if sys.stdin.isatty():
            raise click.UsageError("name the filter's log files, or - to read stdin "
                                   "(journalctl -u spamkit-filter | spamkit mailstats -)")
        logs = ("-",)
    config = load_config(config_path)
    start, end = _moment(since, "--since"), _moment(until, "--until")
    stats = MailStats(tag_level=config.tag_level, top=top)
    now = time.time()
    for log in logs:
        for line in _lines(log):
            stats.lines += 1
            if line is None:
                stats.unread += 1
                continue
            event = read_line(line, now)
            if event is None:
                continue
            if (start is not None or end is not None) and (
                    event.when is None or start is not None and event.when < start
                    or end is not None and event.when >= end):
                continue
            stats.add(event)
    report = stats.as_json()
    text = render(report)
    if mail_to:
        _mail(report, text, config, mail_to)
    click.echo(json.dumps(report) if as_json else text, nl=as_json)


def _lines(log: str) -> Iterator[str | None]:
    """The lines of a log file (gzip-compressed or not) or of stdin, as text (bytes that
    are not UTF-8 replaced: a log may hold any program's lines); None for a line over
    MAX_LINE bytes."""
    try:
        with (nullcontext(_peekable(sys.stdin.buffer)) if log == "-" else Path(log).open("rb")) as raw:
            if raw.peek(2)[:2] == b"\x1f\x8b":  # gzip's magic: a rotated log
                with gzip.open(raw) as unpacked:
                    yield from _decoded(unpacked)
            else:
                yield from _decoded(raw)
    except (OSError, EOFError) as error:
        raise MessageSourceError(f"cannot read the log {log}: {error}") from None


def _peekable(stream: BinaryIO) -> io.BufferedReader:
    return stream if isinstance(stream, io.BufferedReader) else io.BufferedReader(stream)  # type: ignore[arg-type]


def _decoded(stream: _Lines) -> Iterator[str | None]:
    """Each line, read at most MAX_LINE + 1 bytes at a time: a longer one (a binary file
    named by mistake) is None, and the rest of it skipped, so no line is held whole."""
    while line := stream.readline(MAX_LINE + 1):
        if len(line) > MAX_LINE:
            while not line.endswith(b"\n") and (line := stream.readline(MAX_LINE)):
                pass
            yield None
            continue
        yield line.decode("utf-8", "replace")


def _moment(text: str | None, option: str) -> float | None:
    """A --since/--until time as seconds since the epoch (local time)."""
    if text is None:
        return None
    today = datetime.datetime.combine(datetime.date.today(), datetime.time())
    named = {"today": today, "yesterday": today - datetime.timedelta(days=1)}
    value = named.get(text.strip().lower())
    if value is None:
        for form in ("%Y-%m-%d", "%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"):
            try:
                value = datetime.datetime.strptime(text.strip(), form)
                break
            except ValueError:
                continue
    if value is None:
        raise click.BadParameter(f"{text!r} is not a time: YYYY-MM-DD, 'YYYY-MM-DD HH:MM', today "
                                 "or yesterday", param_hint=option)
    return value.timestamp()


def _mail(report: dict[str, Any], text: str, config: Config, mail_to: str) -> None:
    from trainer.sweep import send_text_mail

    messages = report["messages"]
    subject = (f"spamkit mailstats {report['first'] or '?'} to {report['last'] or '?'}: "
               f"{messages['relayed']:,} relayed, {messages['spam']:,} spam, "
               f"{messages['rejected'] + report['before_data']['rejected']:,} rejected")
    try:
        send_text_mail(config["ReportSmtpServer"], config["ReportFrom"], mail_to, subject, text)
    except (OSError, smtplib.SMTPException) as error:
        raise ReportNotSent(f"the report to {mail_to} could not be sent through "
                            f"{config['ReportSmtpServer']}: {error}") from None
