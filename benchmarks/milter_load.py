"""`python -m benchmarks.milter_load`: what the filter costs Postfix, as a milter and as a
before-queue proxy, against Postfix alone.

One private Postfix, whose queue discards what it takes (relay_transport = discard), has
three public smtpd ports: one with no filter, one that asks `spamkit milter`
(smtpd_milters), and one that hands each session to `spamkit serve` (smtpd_proxy_filter),
which relays to a fourth, unfiltered smtpd, as the README lays it out. Both filters are
trained on the corpus's training folds and score with Bayes. smtp-source sends MESSAGES
messages of SIZE bytes over SESSIONS sessions to each public port in turn; every message
must be accounted for in Postfix's log.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks.smtp_load import MESSAGES, SESSIONS, SIZE, _cpu_seconds, _source
from corpora.spamassassin import TEST_FOLD, SpamAssassinCorpus, fold_of
from spamkit.learn import Learner
from spamkit.sources import SourceItem
from spamkit.store import Label, LmdbStore
from tests.servers.net import free_port
from tests.servers.postfix import _run_postfix
from tests.servers.serve import start_milter, start_serve, stop_serve

CONFIG = 'LocalDomains = ["example.org"]\nRequireHeaders = false\n'


def milter_report() -> str:
    if shutil.which("smtp-source") is None or shutil.which("postfix") is None:
        raise SystemExit("install Debian's postfix package for Postfix and smtp-source")
    work = Path(tempfile.mkdtemp(prefix="spamkit-milter-"))
    os.chmod(work, 0o755)  # the filters read it as nobody
    train = [m for m in SpamAssassinCorpus().messages() if fold_of(m.path) != TEST_FOLD]
    db = work / "db"
    with LmdbStore(db) as store:
        for label in (Label.SPAM, Label.HAM):
            Learner(store).learn([SourceItem(m.path, m.data) for m in train if m.label == label.value], label)
    config = work / "spamkit.toml"
    config.write_text(CONFIG)
    milter, milter_port = start_milter(db, config, stderr=subprocess.DEVNULL)
    reinjection_port, milter_smtpd, proxy_smtpd = free_port(), free_port(), free_port()
    serve, serve_port = start_serve(reinjection_port, db, config, wait=False, stderr=subprocess.DEVNULL)
    services = f"""\
127.0.0.1:{milter_smtpd} inet n - n - - smtpd
  -o smtpd_milters=inet:127.0.0.1:{milter_port}
  -o milter_default_action=tempfail
127.0.0.1:{proxy_smtpd} inet n - n - - smtpd
  -o smtpd_proxy_filter=127.0.0.1:{serve_port}
127.0.0.1:{reinjection_port} inet n - n - - smtpd
  -o smtpd_authorized_xforward_hosts=127.0.0.0/8
"""
    rows, cpu = [], {}
    try:
        for postfix in _run_postfix(lambda _: "relay_transport = discard\n", "", services):
            log = postfix.config.parent / "maillog"
            for name, port, process in (("Postfix alone", postfix.port, None),
                                        ("Postfix asking `spamkit milter` (smtpd_milters)", milter_smtpd, milter),
                                        ("Postfix through `spamkit serve` (smtpd_proxy_filter)", proxy_smtpd, serve)):
                before = _discarded(log)
                cpu_before = _cpu_seconds(process.pid) if process is not None else 0.0
                seconds = _source(port)
                if process is not None:
                    cpu[name] = _cpu_seconds(process.pid) - cpu_before
                rows.append((name, seconds, _settled(log, before)))
    finally:
        for process in (milter, serve):
            stop_serve(process)
        shutil.rmtree(work, ignore_errors=True)
    alone = rows[0][1]
    lines = [f"| path ({MESSAGES} messages of {SIZE} bytes, {SESSIONS} sessions) | seconds | msg/s | "
             "of Postfix alone | filter's CPU a message | queued and discarded |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, seconds, count in rows:
        spent = f"{cpu[name] / MESSAGES * 1000:.2f} ms" if name in cpu else "-"
        lines.append(f"| {name} | {seconds:.2f} | {MESSAGES / seconds:,.0f} | {alone / seconds:.2f} | "
                     f"{spent} | {count} |")
    return "\n".join(lines)


def _discarded(log: Path) -> int:
    """Messages Postfix's queue has passed to its discard transport so far."""
    if not log.exists():
        return 0
    return len(re.findall(r"status=sent \(", log.read_text(errors="replace")))


def _settled(log: Path, before: int) -> int:
    """Messages discarded since `before`, once the queue has had time to empty."""
    deadline = time.monotonic() + 60
    count = _discarded(log) - before
    while count < MESSAGES and time.monotonic() < deadline:
        time.sleep(0.5)
        count = _discarded(log) - before
    return count


if __name__ == "__main__":
    print(milter_report())
