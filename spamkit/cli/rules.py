"""`spamkit lint` and `spamkit rules stats`: check rule files, and measure rules on mail."""

from __future__ import annotations

import dataclasses
import json
import sys

import click

from spamkit.cli import config_option, json_option
from spamkit.config import Config, load_config
from spamkit.errors import ConfigError, GeoIPError, TooLittleMail
from spamkit.lists import Lists
from spamkit.rules import RuleSet, load_rules
from spamkit.rules.stats import rule_stats
from spamkit.sources import iter_messages


@click.command()
@config_option
@json_option
@click.option("--rules", "rule_files", multiple=True, type=click.Path(),
              help="Also check this rule file or directory (repeatable).")
@click.option("--dns", "ask_dns", is_flag=True,
              help="Also ask each DNS list the SMTP filter uses (RBLList, SBLList, UBLList) "
                   "its RFC 5782 test entries, now, through DnsServers.")
@click.option("--skipped", "list_skipped", is_flag=True,
              help="Name each rule that does not run here, where it is defined and why "
                   "(--json always lists them, in skipped_rules).")
def lint(config_path: str | None, as_json: bool, rule_files: tuple[str, ...], ask_dns: bool,
         list_skipped: bool) -> None:
    """Check the configuration, rule files and lists, like `spamassassin --lint`.

    Every rule is compiled and tried on adversarial input. Exit status 0 when there are
    no errors; unknown directives and rules that cannot run here are reported, not errors.
    With --dns, a DNS list that does not answer, refuses this server's queries or lists
    everything is a warning.
    """
    from smtpfilter.plugins import ask_lists, lint_chain

    config = load_config(config_path)
    ruleset = load_rules([*config["RulePaths"], *rule_files], builtin=config["UseBuiltinRules"], lint=True)
    report = ruleset.report
    errors = list(report.errors)
    list_warnings: list[str] = []
    try:
        lists = Lists.load(config.lists_path)
        list_warnings = [f"{config.lists_path}: {text}" for text in lists.warnings()]
    except Exception as error:  # noqa: BLE001 - a broken list file is a lint finding
        errors.append(str(error))
    chain_errors, chain_warnings = lint_chain(config)  # what `spamkit serve` would meet
    errors += chain_errors
    warnings = [*config.levels_not_in_force(), *report.warnings, *list_warnings, *chain_warnings,
                *_country_rule_warnings(ruleset, config)]
    dns_lists = []
    if ask_dns:
        try:
            dns_lists = ask_lists(config)
        except ConfigError:
            pass  # DnsServers, which lint_chain has reported
        warnings += [problem for problem in (listed.problem() for listed in dns_lists) if problem]
    if as_json:
        out = report.as_json()
        out["errors"] = errors
        out["warnings"] = warnings
        if ask_dns:
            out["dns_lists"] = [{**dataclasses.asdict(listed), "problem": listed.problem()}
                                for listed in dns_lists]
        click.echo(json.dumps(out))
    else:
        for line in errors:
            click.echo(f"error: {line}", err=True)
        for line in warnings:
            click.echo(f"warning: {line}", err=True)
        for listed in dns_lists:
            if not listed.problem():
                click.echo(listed.describe())
        if ask_dns and not dns_lists:
            click.echo("--dns: the SMTP filter asks no DNS list (SmtpFilters has no dnsbl, "
                       "rhsbl or uribl with a list)")
        for given, read in report.read_from.items():
            click.echo(f"{given}: read from {read}, where sa-update put newer rules (as SpamAssassin reads them)")
        for skipped_rule in report.skipped_rules if list_skipped else ():
            click.echo(f"skipped: {skipped_rule.describe()}")
        for bounded in report.bounded_rules if list_skipped else ():
            click.echo(f"bounded: {bounded.describe()}")
        skipped = ", ".join(f"{n} {why}" for why, n in sorted(report.skipped.items())) or "none"
        unknown = sum(report.unknown_directives.values())
        bounded_count = (f" ({len(report.bounded_rules)} on the start of their header only)"
                         if report.bounded_rules else "")
        click.echo(f"{report.files} files, {report.rules} rules read, {report.loaded} run{bounded_count}, "
                   f"skipped: {skipped}; {unknown} unknown directives; {len(errors)} errors")
        if (report.skipped_rules or report.bounded_rules) and not list_skipped:
            click.echo("(`spamkit lint --skipped` names the rules skipped, and those on the start of their header)")
    sys.exit(1 if errors else 0)


def _country_rule_warnings(ruleset: RuleSet, config: Config) -> list[str]:
    """Rules on X-Relay-Countries when no country database can be read: they never hit."""
    from spamkit.verdict import use_configured_countries

    names = ruleset.country_rules()
    if not names:
        return []
    use_configured_countries(ruleset, config)
    try:
        ruleset.countries.open()
    except GeoIPError as error:
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        return [f"{shown} read X-Relay-Countries, and no country database can be read, so "
                f"they never hit: {error}"]
    return []


@click.group()
def rules() -> None:
    """Look at the rules."""


@rules.command()
@config_option
@json_option
@click.option("--rules", "rule_files", multiple=True, type=click.Path(exists=True),
              help="Also load this rule file or directory (repeatable).")
@click.option("--spam", "spam_paths", multiple=True, type=click.Path(exists=True),
              help="Spam to measure on (file, directory, Maildir, mbox); repeatable.")
@click.option("--ham", "ham_paths", multiple=True, type=click.Path(exists=True),
              help="Ham to measure on; repeatable.")
@click.option("--all", "show_all", is_flag=True, help="Also list rules that never hit.")
def stats(config_path: str | None, as_json: bool, rule_files: tuple[str, ...],
          spam_paths: tuple[str, ...], ham_paths: tuple[str, ...], show_all: bool) -> None:
    """Hit rates of each rule on spam and ham, and the scores they suggest.

    SCORE is the rule's score now without Bayes; SUGGEST and +BAYES are the scores its
    hit rates suggest without and with Bayes (spamkit.rules.stats says how).

    Without --spam/--ham, the training folds (1-4) of the SpamAssassin corpus in
    ../shared are used (the standard split's test fold is left alone).
    """
    if bool(spam_paths) != bool(ham_paths):
        raise click.UsageError("hit rates compare spam with ham: give both --spam and --ham "
                               "(or neither, for the SpamAssassin corpus)")
    config = load_config(config_path)
    ruleset = load_rules([*config["RulePaths"], *rule_files], builtin=config["UseBuiltinRules"])
    failures: list[tuple[str, str]] = []
    if spam_paths:
        messages: list[tuple[bool, bytes]] = []
        for is_spam, paths in ((True, spam_paths), (False, ham_paths)):
            for item in iter_messages(paths):
                if item.data is None:
                    failures.append((item.name, item.error or "unreadable"))
                else:
                    messages.append((is_spam, item.data))
        for kind, is_spam in (("spam", True), ("ham", False)):
            if not any(label is is_spam for label, _ in messages):
                raise TooLittleMail(f"no {kind} could be read: hit rates compare spam with ham, "
                                    "so they need some of each")
    else:
        from corpora.spamassassin import TEST_FOLD, SpamAssassinCorpus, fold_of

        try:
            corpus = SpamAssassinCorpus()
        except FileNotFoundError as error:
            raise click.UsageError(f"{error}; or give your own mail with --spam and --ham") from None
        messages = [(m.label == "spam", m.data) for m in corpus.messages()
                    if fold_of(m.path) != TEST_FOLD]
    for name, why in failures:
        click.echo(f"spamkit: could not read {name}: {why}", err=True)
    results = sorted(rule_stats(ruleset, messages), key=lambda r: (-r.spam_rate + r.ham_rate, r.name))
    if not show_all:
        results = [r for r in results if r.spam_hits or r.ham_hits]
    if as_json:
        click.echo(json.dumps([{"name": r.name, "spam_percent": round(100 * r.spam_rate, 3),
                                "ham_percent": round(100 * r.ham_rate, 3),
                                "s_over_o": round(r.s_over_o, 3), "score": r.score,
                                "suggested": r.suggested,
                                "suggested_with_bayes": r.suggested_with_bayes} for r in results]))
        sys.exit(1 if failures else 0)
    spam_total = sum(is_spam for is_spam, _ in messages)
    click.echo(f"{spam_total} spam, {len(messages) - spam_total} ham")
    click.echo(f"{'SPAM%':>7} {'HAM%':>7} {'S/O':>5} {'SCORE':>6} {'SUGGEST':>8} {'+BAYES':>7}  RULE")
    for r in results:
        click.echo(f"{100 * r.spam_rate:7.2f} {100 * r.ham_rate:7.2f} {r.s_over_o:5.2f} "
                   f"{r.score:6.2f} {r.suggested:8.2f} {r.suggested_with_bayes:7.2f}  {r.name}")
    if failures:
        sys.exit(1)


@rules.command(name="compile")
@config_option
@json_option
@click.option("--rules", "rule_files", multiple=True, type=click.Path(exists=True),
              help="Also load this rule file or directory (repeatable).")
def compile_rules(config_path: str | None, as_json: bool, rule_files: tuple[str, ...]) -> None:
    """Compile the body, rawbody and uri rules into the one-pass prefilter, as sa-compile does.

    Not required: the first check compiles them if this was not run. For SpamAssassin's
    rule set that takes 10-20 s once; the result is kept in the cache directory
    ($XDG_CACHE_HOME/spamkit or ~/.cache/spamkit) and later runs load it in milliseconds.
    """
    import time

    from spamkit.rules import SCANNED_KINDS
    from spamkit.rules.multiscan import available
    from spamkit.rules.rulecache import default_cache_dir

    config = load_config(config_path)
    ruleset = load_rules([*config["RulePaths"], *rule_files], builtin=config["UseBuiltinRules"])
    started = time.perf_counter()
    scan = ruleset.prepare_multiscan()
    seconds = time.perf_counter() - started
    candidates = [r for r in ruleset.rules.values()
                  if r.kind in SCANNED_KINDS and r.regex_source]
    covered = sum(1 for r in candidates if r.scan_id is not None)
    # of those, the largest patterns, which RE2 scans instead of Hyperscan (decision 0039)
    by_re2 = sum(len(tests) for tests in scan.by_re2.values()) if scan is not None else 0
    # rules RE2 runs itself (decisions 0043 and 0049), which need no prefilter
    on_re2 = sum(1 for r in ruleset.rules.values() if r.re2_form)
    out = {"available": available(), "used": scan is not None, "rules": len(candidates),
           "covered": covered, "re2": by_re2, "rules_on_re2": on_re2, "seconds": round(seconds, 3),
           "cache": str(default_cache_dir())}
    if as_json:
        click.echo(json.dumps(out))
        return
    if not out["available"]:
        click.echo("Hyperscan is not installed or does not run on this processor: "
                   "rules run one by one.")
    elif scan is None:
        click.echo(f"{len(candidates)} body/rawbody/uri rules: too few for the one-pass "
                   "prefilter; they run one by one.")
    else:
        click.echo(f"{covered} of {len(candidates)} body/rawbody/uri rules in the one-pass "
                   f"prefilter ({seconds:.1f} s; cache {out['cache']})")
        if by_re2:
            click.echo(f"{by_re2} of the largest patterns (header rules' included) scanned by "
                       "RE2 instead of Hyperscan")
        if on_re2:
            click.echo(f"{on_re2} rules run on RE2 themselves (long, or too slow for Python's "
                       "engine), with no prefilter")
