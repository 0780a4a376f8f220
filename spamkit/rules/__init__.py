"""The rule engine: SpamAssassin-syntax rules, compiled once, run on a MessageContext.

    ruleset = load_rules(paths)                 # built-in rules, then each path in order
    hits = ruleset.evaluate(context, score_set)

Rules that cannot run (bad regex, too slow, an eval we do not implement, a network
test) are skipped and counted in `ruleset.report`; nothing in a rule file is fatal.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import regex

from spamkit.rules.cf import CfReader, ParsedRules, Settings
from spamkit.rules.compile import MATCH_BUDGET, build_rules
from spamkit.rules.context import MessageContext
from spamkit.rules.evals import EVALS
from spamkit.rules.evals.freemail import FreemailDomains
from spamkit.rules.model import (
    SCORE_SET_WITH_BAYES,
    SCORE_SET_WITHOUT_BAYES,
    Hit,
    Kind,
    LoadReport,
    Rule,
)

__all__ = ["BUILTIN_RULES", "Hit", "Kind", "LoadReport", "MessageContext", "Rule", "RuleSet",
           "SCORE_SET_WITHOUT_BAYES", "SCORE_SET_WITH_BAYES", "Settings", "load_rules"]

BUILTIN_RULES = Path(__file__).resolve().parent / "builtin"


class RuleSet:
    def __init__(self, rules: dict[str, Rule], settings: Settings, report: LoadReport) -> None:
        self.rules = rules
        self.settings = settings
        self.report = report
        self._by_kind: dict[Kind, list[Rule]] = {}
        for rule in rules.values():
            self._by_kind.setdefault(rule.kind, []).append(rule)
        self._meta_needs = {d for r in self._by_kind.get(Kind.META, ()) for d in r.meta_dependencies}
        self.freemail = FreemailDomains(settings.freemail_domains, settings.freemail_welcome)

    def evaluate(self, context: MessageContext, score_set: int = SCORE_SET_WITH_BAYES,
                 explain: bool = False) -> list[Hit]:
        """Every scoring rule that hits, in rule order. Never raises on any message."""
        counts, details = self.match_counts(context, score_set, explain)
        hits = []
        for name in counts:
            rule = self.rules[name]
            score = rule.score(score_set)
            if rule.is_subrule or score == 0:
                continue
            hits.append(Hit(name, score, rule.kind, rule.description, details.get(name, "")))
        return hits

    def match_counts(self, context: MessageContext, score_set: int | None = None,
                     explain: bool = False) -> tuple[dict[str, int], dict[str, str]]:
        """{rule: hit count} for the rules that match, metas included, and what matched.

        With a score set, rules scored 0 in it are not run (SpamAssassin's way to turn a
        rule off) unless a meta rule needs them; with None every rule runs (for stats).
        """
        counts: dict[str, int] = {}
        details: dict[str, str] = {}
        context.freemail = self.freemail
        for kind in (Kind.HEADER, Kind.MIMEHEADER, Kind.BODY, Kind.RAWBODY, Kind.URI, Kind.FULL):
            for rule in self._by_kind.get(kind, ()):
                if (score_set is not None and rule.score(score_set) == 0 and not rule.is_subrule
                        and rule.name not in self._meta_needs):
                    continue
                count, detail = self._run(rule, context, explain)
                if count:
                    counts[rule.name] = count
                    if detail:
                        details[rule.name] = detail
        for rule in self._by_kind.get(Kind.META, ()):
            try:
                value = eval(rule.meta_code, {"__builtins__": {}}, {"h": counts})  # noqa: S307
            except (ArithmeticError, TypeError):
                value = 0
            if value:
                counts[rule.name] = 1
        return counts, details

    def _run(self, rule: Rule, context: MessageContext, explain: bool) -> tuple[int, str]:
        """(hit count, what matched) for one non-meta rule."""
        try:
            if rule.eval_name:
                return (1 if EVALS[rule.eval_name](context, *rule.eval_args) else 0), ""
            if rule.kind in (Kind.HEADER, Kind.MIMEHEADER):
                return self._run_header(rule, context, explain)
            assert rule.pattern is not None
            if rule.literals is not None:
                haystack = context.haystack(rule.kind.value, rule.literals_ignorecase)
                if not any(literal in haystack for literal in rule.literals):
                    return 0, ""  # the text lacks what every match needs
            if rule.paragraph_local:
                try:  # one search over all the paragraphs: no match there, none in any
                    if rule.pattern.search(context.haystack(rule.kind.value, False),
                                           timeout=MATCH_BUDGET) is None:
                        return 0, ""
                except TimeoutError:
                    pass  # too long at once: paragraph by paragraph, each with its budget
            texts = {Kind.BODY: context.body_paragraphs, Kind.RAWBODY: context.rawbody_lines,
                     Kind.URI: context.uris, Kind.FULL: [context.full_text]}[rule.kind]
            multiple = "multiple" in rule.tflags
            count = 0
            detail = ""
            for text in texts:
                match = rule.pattern.search(text, timeout=MATCH_BUDGET)
                if match is not None:
                    count += 1
                    detail = detail or match.group(0)[:80]
                    if not multiple:
                        break
            return count, detail if explain else ""
        except (TimeoutError, regex.error, ValueError, TypeError):
            return 0, ""

    @staticmethod
    def _run_header(rule: Rule, context: MessageContext, explain: bool) -> tuple[int, str]:
        if rule.kind is Kind.MIMEHEADER:
            text = context.part_header_text(rule.header)
        else:
            text = context.header_text(rule.header, rule.modifier)
        if rule.exists:
            return (1 if text is not None else 0), ""
        if text is None:
            if rule.if_unset is None:
                return 0, ""  # SpamAssassin: a missing header matches nothing, even with !~
            text = rule.if_unset
        assert rule.pattern is not None
        match = rule.pattern.search(text, timeout=MATCH_BUDGET)
        if rule.negate:
            return (0 if match else 1), ""
        return (1, match.group(0)[:80] if explain else "") if match else (0, "")


def load_rules(paths: Iterable[str | Path] = (), *, builtin: bool = True,
               probe: bool = True) -> RuleSet:
    """The built-in rules (unless `builtin` is False), then each path (file or directory).

    With `probe`, every rule from `paths` is tried on adversarial input at load. The
    built-in rules are tried by the test suite (tests/scoring/test_rules.py), not at every
    start: that saved 30 ms of each `spamkit check`.
    """
    reader = CfReader(ParsedRules())
    if builtin:
        reader.read_path(BUILTIN_RULES)
    for path in paths:
        path = Path(path)
        if not path.exists():
            reader.parsed.report.errors.append(f"{path}: no such rule file or directory")
            continue
        reader.read_path(path)
    vetted = {str(BUILTIN_RULES)} if builtin else set()
    rules = build_rules(reader.parsed, probe=probe, vetted_prefixes=tuple(vetted))
    return RuleSet(rules, reader.parsed.settings, reader.parsed.report)
