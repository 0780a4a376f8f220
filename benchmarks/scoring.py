"""`python -m benchmarks.scoring`: scoring speed against SpamAssassin with the same rules.

Both score the test fold (1,247 messages) with Debian's SpamAssassin rule files, network
tests off, without Bayes (no Bayes database for either): SpamAssassin as
`spamassassin -L --mbox` (one process for all messages), spamkit as one `spamkit check`
with only those rule files. Each tool's own startup (loading the rules) is included.
Also reported: how often the two agree on spam/ham at 5 points, and spamkit with its
own built-in rules.
"""

from __future__ import annotations

import json
import mailbox
import os
import re
import shutil
import tempfile
from pathlib import Path

from benchmarks import installed
from benchmarks.tools import run_measured
from corpora.spamassassin import TEST_FOLD, SpamAssassinCorpus, fold_of

DEBIAN_RULES = Path("/usr/share/spamassassin")
_STATUS = re.compile(r"^X-Spam-Status: (Yes|No), score=(-?[\d.]+)", re.MULTILINE)


def main() -> None:
    print(scoring_report())


def scoring_report() -> str:
    """The comparison as a markdown table and a sentence."""
    if shutil.which("spamassassin") is None or not DEBIAN_RULES.exists():
        raise SystemExit("install Debian's spamassassin package first (apt-get install spamassassin)")
    work = Path(tempfile.mkdtemp(prefix="spamkit-scoring-"))
    messages = [m for m in SpamAssassinCorpus().messages() if fold_of(m.path) == TEST_FOLD]
    folder = work / "messages"
    folder.mkdir()
    box = mailbox.mbox(work / "test.mbox")
    for index, message in enumerate(messages):
        (folder / f"{index:05d}.eml").write_bytes(message.data)
        # spamassassin --mbox does not keep the input order: a numbered header matches up
        box.add(f"X-Bench-Index: {index}\n".encode() + message.data.split(b"\n", 1)[1]
                if message.data.startswith(b"From ") else f"X-Bench-Index: {index}\n".encode() + message.data)
    box.flush()
    home = work / "home"
    (home / ".spamassassin").mkdir(parents=True)
    # keep spam as it came (no report_safe wrapping), so every message keeps our index header
    (home / ".spamassassin" / "user_prefs").write_text("report_safe 0\n")
    env = dict(os.environ, HOME=str(home))
    out_box = work / "scored.mbox"
    sa_run = run_measured(["sh", "-c", f"spamassassin -L --mbox < {work / 'test.mbox'} > {out_box}"],
                          env=env)
    sa_by_index: dict[int, float] = {}
    unscored = 0
    for scored in mailbox.mbox(out_box):
        match = _STATUS.search(f"X-Spam-Status: {scored.get('X-Spam-Status', '')}")
        if match is None:
            unscored += 1  # spamassassin passes messages over its size limit unscanned
        sa_by_index[int(scored["X-Bench-Index"])] = float(match.group(2)) if match else 0.0
    if len(sa_by_index) != len(messages):
        raise SystemExit(f"spamassassin returned {len(sa_by_index)} of {len(messages)} messages")
    sa_scores = [sa_by_index[i] for i in range(len(messages))]
    files = sorted(folder.iterdir())
    # a cache of this run's own: the first check compiles the rules (as sa-compile would),
    # the second finds them compiled, as every check after the first does
    same_rules_env = dict(os.environ, SPAMKIT_USEBAYES="false", SPAMKIT_USEBUILTINRULES="false",
                          SPAMKIT_CONFIG=str(work / "none.toml"), XDG_CACHE_HOME=str(work / "cache"))
    check = [*installed.spamkit(), "check", "--json", "--rules", str(DEBIAN_RULES),
             *map(str, files)]
    first = run_measured(check, env=same_rules_env)
    ours = run_measured(check, env=same_rules_env)
    if first.stdout != ours.stdout:
        raise SystemExit("spamkit gave different results with the compiled rules cached")
    our_scores = [json.loads(line)["score"] for line in ours.stdout.splitlines()]
    builtin_env = dict(os.environ, SPAMKIT_USEBAYES="false", SPAMKIT_CONFIG=str(work / "none.toml"))
    builtin = run_measured([*installed.spamkit(), "check", "--json", *map(str, files)],
                           env=builtin_env)
    n = len(messages)
    agree = sum((a >= 5) == (b >= 5) for a, b in zip(sa_scores, our_scores))
    labels = [m.label == "spam" for m in messages]

    def caught(scores: list[float]) -> str:
        fp = sum(1 for s, y in zip(scores, labels) if s >= 5 and not y)
        tp = sum(1 for s, y in zip(scores, labels) if s >= 5 and y)
        return f"{tp} spam caught, {fp} false positives at 5 points"

    lines = [f"| scorer (test fold, {n} messages, no Bayes, no network) | msg/s | peak RSS | result |",
             "|---|---:|---:|---|"]
    lines.append(f"| SpamAssassin {_version()} `spamassassin -L --mbox`, Debian rules | {n / sa_run.seconds:,.1f} | "
          f"{sa_run.max_rss_kib / 1024:.0f} MiB | {caught(sa_scores)} |")
    lines.append(f"| spamkit, the same rule files | {n / ours.seconds:,.1f} | {ours.max_rss_kib / 1024:.0f} MiB | "
          f"{caught(our_scores)} |")
    lines.append(f"| spamkit, the same rule files, first run (compiles and caches them) | "
                 f"{n / first.seconds:,.1f} | {first.max_rss_kib / 1024:.0f} MiB | the same |")
    lines.append(f"| spamkit, its built-in rules | {n / builtin.seconds:,.1f} | {builtin.max_rss_kib / 1024:.0f} MiB | "
          f"{caught([json.loads(l)['score'] for l in builtin.stdout.splitlines()])} |")
    lines.append("")
    if unscored:
        lines.append(f"SpamAssassin left {unscored} message(s) unscanned (over its size limit).")
    lines.append(f"With the same rules spamkit runs at {sa_run.seconds / ours.seconds:.1f}x SpamAssassin's "
          f"speed ({sa_run.seconds / first.seconds:.1f}x on the first run, which compiles the "
          f"rules; SpamAssassin ran without sa-compile); the two agree on spam/ham (5 points) for {agree} of {n} messages "
          f"({100 * agree / n:.1f}%).")
    shutil.rmtree(work, ignore_errors=True)
    return "\n".join(lines)


def _version() -> str:
    out = run_measured(["spamassassin", "-V"]).stdout
    match = re.search(r"version (\S+)", out)
    return match.group(1) if match else "?"


if __name__ == "__main__":
    main()
