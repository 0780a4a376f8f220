"""`python -m benchmarks.run`: spamkit, bogofilter and spamprobe on the standard split.

Each tool trains on folds 1-4 of the SpamAssassin corpus (1,502 spam, 3,297 ham) and
scores fold 0 (394 spam, 853 ham), one process per command, in the same run on the same
machine. Speed is the best of --repeat runs, taken in rounds that interleave the
tools; accuracy is the same every run. Writes the
table to benchmarks/RESULTS.md and the ROC curves to benchmarks/roc.png.
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from spamkit.metrics import Accuracy, accuracy
from benchmarks import installed
from benchmarks.profile import profile_stages
from benchmarks.tools import TOOLS, Tool, ToolResult, ensure_installed
from corpora.spamassassin import SpamAssassinCorpus

HERE = Path(__file__).resolve().parent
CODE = ("spamkit", "smtpfilter", "trainer", "corpora")  # what the figures measure


def code_state(root: Path = HERE.parent) -> str:
    """A digest of the code the benchmark runs (sources, rule files, C extensions): a
    run during which it changed mixes two versions, and under PYTHONDONTWRITEBYTECODE
    every later process also compiles the changed modules again."""
    import hashlib

    digest = hashlib.sha256()
    for package in CODE:
        for path in sorted((root / package).rglob("*")):
            if path.is_file() and path.suffix in (".py", ".so", ".cf", ".c"):
                digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def commit_described(root: Path = HERE.parent) -> str:
    """The commit the code is at, and whether the tree differs from it."""
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", *CODE],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "an unknown commit"
    return f"commit {head}" + (" with uncommitted changes" if dirty else "")


def run_tools(tool_classes: list[type[Tool]], workdir: Path, split_dir: Path,
              repeat: int) -> list[ToolResult]:
    """Each tool learns and checks `repeat` times; each speed is its best run.

    The rounds interleave the tools (all of them once, then all again) rather than
    running one tool's repeats back to back: this machine's speed drifts by 10-20% over
    minutes, and interleaving puts every tool's runs in the same stretches of time, so
    the ratios compare like with like.
    """
    spam = sorted((split_dir / "train" / "spam").iterdir())
    ham = sorted((split_dir / "train" / "ham").iterdir())
    test = sorted((split_dir / "test" / "spam").iterdir()) + sorted((split_dir / "test" / "ham").iterdir())
    results = [ToolResult(tool_class.name) for tool_class in tool_classes]
    for attempt in range(repeat):
        for tool_class, result in zip(tool_classes, results):
            print(f"running {tool_class.name} ({attempt + 1} of {repeat}) ...", file=sys.stderr, flush=True)
            tool = tool_class(workdir)
            learn_runs = tool.learn(spam, ham, split_dir / "train" / "spam", split_dir / "train" / "ham")
            check_run, scores, verdicts = tool.check(test, split_dir / "test")
            learn_seconds = sum(r.seconds for r in learn_runs)
            if attempt == 0 or learn_seconds < result.learn_seconds:
                result.learn_seconds = learn_seconds
            if attempt == 0 or check_run.seconds < result.check_seconds:
                result.check_seconds = check_run.seconds
            result.learn_rss_kib = max(r.max_rss_kib for r in learn_runs)
            result.check_rss_kib = check_run.max_rss_kib
            result.db_bytes = tool.db_bytes()
            result.scores, result.verdicts = scores, verdicts
    return results


def tool_version(name: str) -> str:
    if name.startswith("spamkit"):
        from spamkit import __version__

        return __version__
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", name], capture_output=True,
                             text=True, check=True).stdout
        return out.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


def render_table(results: list[ToolResult], accuracies: dict[str, Accuracy], n_train: int,
                 n_test: int) -> str:
    lines = ["| tool | learn msg/s | check msg/s | FP | FN (of which unsure) | 1-AUC % "
             "| caught at 0 FP | db | peak RSS learn / check |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        a = accuracies[r.name]
        lines.append(
            f"| {r.name} {tool_version(r.name)} | {n_train / r.learn_seconds:,.0f} | "
            f"{n_test / r.check_seconds:,.0f} | {a.false_positives} | {a.false_negatives} "
            f"({a.unsure_spam}) | {a.one_minus_auc_percent:.4f} | {a.caught_at_zero_fp_percent:.1f}% | "
            f"{r.db_bytes / 1e6:.1f} MB | {r.learn_rss_kib / 1024:.0f} / {r.check_rss_kib / 1024:.0f} MiB |")
    return "\n".join(lines)


def render_ratios(results: list[ToolResult], n_train: int, n_test: int) -> str:
    by_name = {r.name: r for r in results}
    if "spamkit" not in by_name:
        return ""
    ours = by_name["spamkit"]
    rows = []
    for name, other in by_name.items():
        if name.startswith("spamkit"):
            continue
        rows.append(f"- against {name}: learn {other.learn_seconds / ours.learn_seconds:.2f}x, "
                    f"check {other.check_seconds / ours.check_seconds:.2f}x its speed; "
                    f"database {ours.db_bytes / max(other.db_bytes, 1):.2f}x its size")
    return "\n".join(rows)


def plot_roc(results: list[ToolResult], labels: list[bool], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    figure, axis = plt.subplots(figsize=(6.5, 4.5), dpi=110)
    y = np.array(labels)
    for result in results:
        s = np.array(result.scores)
        thresholds = np.unique(s)[::-1]
        fpr = [float(((s >= t) & ~y).sum() / (~y).sum()) for t in thresholds]
        tpr = [float(((s >= t) & y).sum() / y.sum()) for t in thresholds]
        axis.step([0.0] + fpr, [0.0] + tpr, where="post", label=result.name)
    axis.set_xscale("symlog", linthresh=0.001)
    axis.set_xlim(0, 1)
    axis.set_ylim(0.8, 1.001)
    axis.set_xlabel("false positive rate (symlog)")
    axis.set_ylabel("spam caught")
    axis.set_title("ROC on the standard split (fold 0: 394 spam, 853 ham)")
    axis.legend(loc="lower right")
    axis.grid(True, alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tools", default="spamkit,spamkit-learn-all,spamkit-redis,bogofilter,spamprobe")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--results", type=Path, default=HERE / "RESULTS.md")
    parser.add_argument("--roc", type=Path, default=HERE / "roc.png")
    parser.add_argument("--no-write", action="store_true", help="print, do not write files")
    parser.add_argument("--skip-scoring", action="store_true",
                        help="leave out the rules + Bayes verdicts, the SpamAssassin comparison, "
                             "the sweep, the SMTP load test and the spamd comparison")
    parser.add_argument("--skip-crossval", action="store_true",
                        help="leave out the tools' 4-fold cross-validation on folds 1-4")
    args = parser.parse_args(argv)
    if not args.no_write:
        try:  # the ROC plot comes last: say so now, not after minutes of work
            import matplotlib  # noqa: F401
        except ImportError:
            parser.error("the ROC plot needs matplotlib: pip install '.[bench]' (or use --no-write)")

    tool_classes = [TOOLS[name] for name in args.tools.split(",")]
    ensure_installed(tool_classes)
    code_at_start, commit = code_state(), commit_described()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="spamkit-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    installed.install(workdir)
    split_dir = workdir / "split"
    corpus = SpamAssassinCorpus()
    if not split_dir.exists():
        corpus.write_split(split_dir)
    n_train = sum(1 for _ in (split_dir / "train").rglob("*") if _.is_file())
    test_files = sorted((split_dir / "test" / "spam").iterdir()) + sorted((split_dir / "test" / "ham").iterdir())
    labels = [p.parent.name == "spam" for p in test_files]

    results = run_tools(tool_classes, workdir, split_dir, args.repeat)
    accuracies = {r.name: accuracy(labels, r.scores, r.verdicts) for r in results}

    table = render_table(results, accuracies, n_train, len(test_files))
    ratios = render_ratios(results, n_train, len(test_files))
    stages = profile_stages(corpus)
    crossval = "" if args.skip_crossval else _crossval_section(tool_classes, workdir, corpus)
    scoring = "" if args.skip_scoring else _scoring_sections()
    command = "python3 -m benchmarks.run " + " ".join(argv if argv is not None else sys.argv[1:])
    report = f"""# Benchmark results

Made by `{command.strip()}` at {commit}, on {time.strftime('%Y-%m-%d')}, {platform.machine()},
{_cpu_name()}, Python {platform.python_version()}; every tool in the same run, one process
per command, speed the best of {args.repeat} runs (startup included), the tools taking
turns round by round. spamkit's commands run as `pip install .` installs it, in a virtual
environment of the run's own (benchmarks/installed.py).

Standard split of the SpamAssassin public corpus: train on folds 1-4 ({n_train} messages),
score fold 0 ({sum(labels)} spam, {len(labels) - sum(labels)} ham). FP: ham called spam
at the tool's own default threshold; FN: spam not called spam (unsure counts as missed);
caught at 0 FP: spam scored above the highest-scored ham.

{table}

The `spamkit` row fills its database with `spamkit train` (only what the database is not yet
sure of, docs/decisions/0012), as spamprobe runs in its train mode; `spamkit-learn-all`
learns every message (`spamkit learn --spam`, then `--ham`), as bogofilter is run here.
`spamkit-redis` is the `spamkit` row with its database in Redis on loopback (decision
0017; its db column is the memory Redis reports for it).

Speed ratios (spamkit's speed as a multiple of the other tool's; above 1 is faster):
{ratios}
{crossval}
## Where spamkit's time goes

{stages}
{scoring}

![ROC](roc.png)
"""
    print(report)
    if code_state() != code_at_start:
        print("benchmarks.run: spamkit's code changed during the run, so these figures mix two "
              "versions of it; nothing written. Run it again with the tree left alone.",
              file=sys.stderr)
        return 1
    if not args.no_write:
        args.results.write_text(report)
        plot_roc(results, labels, args.roc)
    return 0


def _crossval_section(tool_classes: list[type[Tool]], workdir: Path,
                      corpus: SpamAssassinCorpus) -> str:
    from benchmarks.crossval import cross_validate, render

    print("cross-validating on folds 1-4 ...", file=sys.stderr, flush=True)
    # a tool that repeats another's model (the same spamkit on Redis) repeats its folds too
    table = render(cross_validate([t for t in tool_classes if not t.same_model_as],
                                  workdir / "crossval", corpus))
    return f"""
## The same tools in 4-fold cross-validation (`python3 -m benchmarks.crossval`)

Fold 0 is one sample: a few messages move its FN and 1-AUC figures. The same commands,
run on folds 1-4 only (each scored by a database trained on the other three), show how
each tool does on four more samples. Decisions in docs/decisions/ are made on these
folds, never on fold 0.

{table}
"""


def _scoring_sections() -> str:
    from benchmarks.combined import evaluate
    from benchmarks.scoring import scoring_report

    rows = ["| verdict | false positives | spam caught |", "|---|---:|---:|"]
    for name, row in evaluate().items():
        caught = row["spam"] - row["fn"]
        rows.append(f"| {name} | {row['fp']} of {row['ham']} | {caught} of {row['spam']} "
                    f"({100 * caught / row['spam']:.1f}%) |")
    from benchmarks.milter_load import milter_report
    from benchmarks.smtp_load import load_report
    from benchmarks.spamd_load import spamd_report
    from benchmarks.sweep import sweep_report

    return ("\n## The full verdict: rules + Bayes (`python3 -m benchmarks.combined`)\n\n"
            + "\n".join(rows)
            + "\n\n## Rules: spamkit against SpamAssassin (`python3 -m benchmarks.scoring`)\n\n"
            + scoring_report()
            + "\n\n## The trainer's sweep (`python3 -m benchmarks.sweep`)\n\n"
            + sweep_report()
            + "\n\n## The SMTP filter under load (`python3 -m benchmarks.smtp_load`)\n\n"
            + load_report()
            + "\n\n## Postfix with the filter as a milter and as a proxy "
            "(`python3 -m benchmarks.milter_load`)\n\n"
            + milter_report()
            + "\n\n## spamd's protocol: spamkit against SpamAssassin's daemon "
            "(`python3 -m benchmarks.spamd_load`)\n\n"
            + spamd_report() + "\n")


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


if __name__ == "__main__":
    sys.exit(main())
