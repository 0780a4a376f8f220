"""The rule engine: SpamAssassin-syntax rules, compiled once, run on a MessageContext.

    ruleset = load_rules(paths)                 # built-in rules, then each path in order
    hits = ruleset.evaluate(context, score_set)

Rules that cannot run (bad regex, too slow, an eval we do not implement, a network
test) are skipped and counted in `ruleset.report`; nothing in a rule file is fatal.
"""

from __future__ import annotations

import builtins
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import regex

from spamkit.geoip import SEARCH_DIRECTORIES, shared_countries
from spamkit.rules.cf import CfReader, ParsedRules, Settings, reading_warnings
from spamkit.rules.compile import MATCH_BUDGET, build_rules
from spamkit.rules.context import MessageContext
from spamkit.rules.evals import EVALS
from spamkit.rules.evals.freemail import AddressPattern, FreemailDomains
from spamkit.rules.linear import LinearPattern
from spamkit.rules.multiscan import MultiScan
from spamkit.rules.multiscan import available as multiscan_available
from spamkit.rules.perl_regex import from_bytes_view, superset_for, to_bytes_view
from spamkit.rules.prefilter import parse_pattern
from spamkit.rules.registry import Registry
from spamkit.rules.relays import RELAY_COUNTRY_HEADERS
from spamkit.rules.rulecache import default_cache_dir
from spamkit.rules.sa_paths import rules_read_for
from spamkit.rules.sa_uris import Redirectors
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
_log = logging.getLogger("spamkit.rules")


SCANNED_KINDS = (Kind.BODY, Kind.RAWBODY, Kind.URI)
RUN_ORDER = (Kind.HEADER, Kind.MIMEHEADER, Kind.BODY, Kind.RAWBODY, Kind.URI, Kind.FULL)
# fewer body/rawbody/uri regex rules than this run one by one; the 26 built-in ones
# already gain from the scan (0.61 -> 0.32 ms a message; compiled once in 0.2 s)
MULTISCAN_MIN_RULES = 10
MULTISCAN_MIN_HEADER_RULES = 8  # a header with fewer regex rules is not worth a scan of its own


@dataclass
class _Plan:
    """Which rules a message runs, for one score set (RuleSet._plan)."""

    unfiltered: dict[Kind, list[Rule]] = field(default_factory=dict)  # run on every message
    filtered: dict[int, Rule] = field(default_factory=dict)  # by scan id: when let through
    header_groups: dict[str, list[Rule]] = field(default_factory=dict)  # per scanned header


# hits a `multiple` rule counts without a maxhits= of its own (SpamAssassin sets none;
# every rule in Debian's files that counts names one)
MAX_MULTIPLE_HITS = 1000


def hit_limit(tflags: frozenset[str]) -> int:
    """How many matches a rule counts: 1, or with `multiple` every match (the regex
    run again after each, as Perl's /g), up to its maxhits=N."""
    if "multiple" not in tflags:
        return 1
    for flag in tflags:
        if flag.startswith("maxhits="):
            try:
                return max(1, int(flag[8:]))
            except ValueError:
                break
    return MAX_MULTIPLE_HITS


# SpamAssassin's synthetic hit for a message whose rules ran out of time, and its default
# score: near zero, so that the report shows the event (`score TIME_LIMIT_EXCEEDED` sets another)
TIME_LIMIT_RULE = "TIME_LIMIT_EXCEEDED"
TIME_LIMIT_DEFAULT_SCORE = 0.001


class DeadlinePassed(Exception):
    """The message's deadline passed while a rule ran: the rule did not finish, and is
    counted as not run (SpamAssassin's time_limit stops a rule midway too)."""


def _allowance(deadline: float | None) -> float:
    """The seconds the next regex search may take: MATCH_BUDGET, or what is left before
    the message's deadline if less. Asked before each search, not once a rule: a body
    rule searches paragraph by paragraph, and each search given the whole allowance let
    one rule run far past the deadline (decision 0047)."""
    if deadline is None:
        return MATCH_BUDGET
    left = deadline - time.monotonic()
    if left <= 0:
        raise DeadlinePassed
    return min(MATCH_BUDGET, left)


def _count_matches(pattern: regex.Pattern[str] | LinearPattern, text: str, limit: int,
                   deadline: float | None) -> tuple[int, str]:
    """(matches in `text`, at most `limit`; the first one's text): one search when only
    one counts (most rules), else every match as Perl's /g finds them."""
    if limit == 1:
        match = pattern.search(text, timeout=_allowance(deadline))
        return (1, match.group(0)[:80]) if match is not None else (0, "")
    count, first = 0, ""
    for match in pattern.finditer(text, timeout=_allowance(deadline)):
        count += 1
        first = first or match.group(0)[:80]
        if count >= limit:
            break
    return count, first


# the texts a built-in rule of these kinds reads instead (Rule.builtin_view)
BUILTIN_VIEWS = {Kind.URI: "links", Kind.RAWBODY: "rawbody_lines", Kind.BODY: "builtin_body"}
# a rule from SpamAssassin's files reads its kind's texts as bytes (the full message is
# bytes already); made once, not a string a rule run
_BYTE_VIEWS = {kind: kind.value if kind is Kind.FULL else kind.value + ":bytes" for kind in Kind}


def view_of(rule: Rule) -> str:
    """The texts a body, rawbody, uri or full rule reads (MessageContext.texts): a
    built-in rule's own view, or SpamAssassin's as UTF-8 bytes ("body:bytes"; the full
    message is bytes already)."""
    if rule.builtin_view:
        return BUILTIN_VIEWS.get(rule.kind, rule.kind.value)
    return _BYTE_VIEWS[rule.kind] if rule.reads_bytes else rule.kind.value


def header_group(rule: Rule) -> str:
    """The prefilter database of a header rule: one a header, modifier and way of reading."""
    return f"header {rule.header} {rule.modifier}" + (" bytes" if rule.reads_bytes else "")


class RuleSet:
    def __init__(self, rules: dict[str, Rule], settings: Settings, report: LoadReport,
                 multiscan: bool = True) -> None:
        """`multiscan`: prefilter body, rawbody and uri rules in one Hyperscan pass when
        Hyperscan is installed (spamkit.rules.multiscan); False runs every rule's regex."""
        self.rules = rules
        self.settings = settings
        self.report = report
        self._by_kind: dict[Kind, list[Rule]] = {}
        for rule in rules.values():
            self._by_kind.setdefault(rule.kind, []).append(rule)
        self._meta_needs = {d for r in self._by_kind.get(Kind.META, ()) for d in r.meta_dependencies}
        self.freemail = FreemailDomains(settings.freemail_domains, settings.freemail_welcome)
        self.registry = Registry(settings.registry)
        self.address_pattern = AddressPattern(self.registry)  # (compiled when FreeMail first asks)
        self.redirectors = Redirectors(settings.redirector_patterns)
        # where X-Relay-Countries comes from: the .cf files' geodb settings, else the places
        # SpamAssassin looks (a Scanner puts GeoIPDatabase first); opened when a rule asks
        self.countries = shared_countries(tuple(settings.geodb_files),
                                          tuple(settings.geodb_search_path) or SEARCH_DIRECTORIES)
        self.use_multiscan = multiscan
        self._plans: dict[int | None, _Plan] = {}
        # the order hits are reported in: by kind as they run, then as the files define them
        self._position = {rule.name: index for index, rule in enumerate(
            r for kind in (*RUN_ORDER, Kind.META) for r in self._by_kind.get(kind, ()))}
        self._metas: Callable[[dict[str, int]], None] | None = None
        self._multiscan: MultiScan | None = None
        self._multiscan_lock = threading.Lock()
        # the prefilter's databases for each scanned kind: one a view its rules read
        self._scan_views: dict[Kind, list[str]] = {}

    def prepare_linear(self) -> int:
        """Compile now the rules RE2 runs (spamkit.rules.linear), which imports its module:
        a daemon does this before it gives up root. Returns how many there are."""
        linear = [rule for rule in self.rules.values() if rule.re2_form]
        for rule in linear:
            assert rule.pattern is not None
        return len(linear)

    def country_rules(self) -> list[str]:
        """The rules that read RelayCountry's headers (X-Relay-Countries and its kin),
        which never hit without a country database."""
        return sorted(rule.name for rule in self._by_kind.get(Kind.HEADER, ())
                      if rule.header in RELAY_COUNTRY_HEADERS)

    def prepare_multiscan(self, cache_dir: Path | None = None) -> MultiScan | None:
        """Build (or load from the cache) the prefilter databases; None when not used.

        Called on the first message; the SMTP filter and `spamkit rules compile` call it
        at start so that no message waits for a compile.
        """
        with self._multiscan_lock:
            if self._multiscan is not None or not self.use_multiscan:
                return self._multiscan
            scanned = [r for k in SCANNED_KINDS for r in self._by_kind.get(k, ()) if r.prefiltered]
            if len(scanned) < MULTISCAN_MIN_RULES or not multiscan_available():
                self.use_multiscan = False
                return None
            scan_views: dict[Kind, list[str]] = {}
            for rule in scanned:
                rule.scan_group = view_of(rule)  # (its texts are the database's haystack)
                if rule.scan_group not in scan_views.setdefault(rule.kind, []):
                    scan_views[rule.kind].append(rule.scan_group)
            by_header: dict[str, list[Rule]] = {}
            for rule in self._by_kind.get(Kind.HEADER, ()):
                if rule.prefiltered:
                    by_header.setdefault(header_group(rule), []).append(rule)
            for group, members in by_header.items():
                if len(members) >= MULTISCAN_MIN_HEADER_RULES:
                    for rule in members:
                        rule.scan_group = group
                    scanned += members
            groups: dict[str, dict[int, str]] = {}
            for scan_id, rule in enumerate(scanned):
                groups.setdefault(rule.scan_group, {})[scan_id] = rule.regex_source
            try:
                scan = MultiScan(groups, superset_for, cache_dir or default_cache_dir())
            except Exception as error:  # noqa: BLE001 - Hyperscan failing: every rule runs
                _log.warning("rule prefilter unavailable, rules run one by one: %s", error)
                self.use_multiscan = False
                return None
            finally:
                parse_pattern.cache_clear()  # the parse trees of a cold compile: not needed again
            for scan_id, rule in enumerate(scanned):
                if scan_id in scan.covered.get(rule.scan_group, ()):
                    rule.scan_id = scan_id
            self._multiscan = scan
            self._scan_views = scan_views
            self._plans.clear()  # worked out without the prefilter: again, with it
            return scan

    def evaluate(self, context: MessageContext, score_set: int = SCORE_SET_WITH_BAYES,
                 explain: bool = False, deadline: float | None = None) -> list[Hit]:
        """Every scoring rule that hits, in rule order. Never raises on any message.

        `deadline` (time.monotonic()): rules not yet run then are skipped, and the hits
        end with TIME_LIMIT_EXCEEDED, as SpamAssassin's time_limit does."""
        if not self.rules:  # (Bayes alone: UseBuiltinRules off and no rule files)
            return []
        counts, details = self.match_counts(context, score_set, explain, deadline)
        hits = []
        for name in sorted(counts, key=self._position.__getitem__):
            rule = self.rules[name]
            score = rule.score(score_set)
            if rule.is_subrule or score == 0:
                continue
            hits.append(Hit(name, score, rule.kind, rule.description, details.get(name, "")))
        if context.skipped_rules:
            scores = self.settings.time_limit_scores
            score = scores[score_set] if scores is not None else TIME_LIMIT_DEFAULT_SCORE
            if score != 0:
                hits.append(Hit(TIME_LIMIT_RULE, score, Kind.META, "Some rules not run: the message's time limit passed",
                                f"{len(context.skipped_rules)} rules not run"))
        return hits

    def match_counts(self, context: MessageContext, score_set: int | None = None,
                     explain: bool = False, deadline: float | None = None
                     ) -> tuple[dict[str, int], dict[str, str]]:
        """{rule: hit count} for the rules that match, metas included, and what matched.

        With a score set, rules scored 0 in it are not run (SpamAssassin's way to turn a
        rule off) unless a meta rule needs them; with None every rule runs (for stats).
        Rules the prefilter answers for run only when it lets them through.

        With a `deadline` (time.monotonic()), a rule starts only before it, and each of its
        regex searches gets no more than the time left; a rule the deadline stops midway
        counts as not run. The rules not run are listed in
        `context.skipped_rules`. A meta rule counts only where none of the rules it
        reads, directly or through other metas, was skipped: `!RULE` of one that never
        ran is no evidence (SpamAssassin stops its metas there too).
        """
        counts: dict[str, int] = {}
        details: dict[str, str] = {}
        context.freemail = self.freemail
        context.registry = self.registry
        context.address_pattern = self.address_pattern
        context.countries = self.countries
        context.named_lists = self.settings.named_lists
        context.ok_locales = tuple(self.settings.ok_locales)
        context.redirectors = self.redirectors
        scan = self.prepare_multiscan() if self.use_multiscan else None
        plan = self._plan(score_set)

        def run(rule: Rule) -> None:
            try:
                if deadline is not None and deadline <= time.monotonic():
                    raise DeadlinePassed
                count, detail = self._run(rule, context, explain, deadline)
            except DeadlinePassed:
                context.skipped_rules.append(rule.name)
                return
            if count:
                counts[rule.name] = count
                if detail:
                    details[rule.name] = detail

        for rule in plan.unfiltered.get(Kind.HEADER, ()):
            run(rule)
        if scan is not None:
            for group, members in plan.header_groups.items():
                text = context.header_text(members[0].header, members[0].modifier, members[0].reads_bytes)
                if text is None:  # absent: each rule's own logic (if-unset) decides
                    for rule in members:
                        run(rule)
                    continue
                possible = scan.candidates(group, text)
                for rule in members:
                    if rule.scan_id in possible:
                        run(rule)
                    elif rule.negate:  # the header is there and cannot match
                        counts[rule.name] = 1
        for kind in RUN_ORDER[1:]:
            for rule in plan.unfiltered.get(kind, ()):
                run(rule)
            if scan is not None and kind in SCANNED_KINDS:
                for view in self._scan_views.get(kind, ()):
                    for scan_id in sorted(scan.candidates(view, context.haystack(view, False))):
                        candidate = plan.filtered.get(scan_id)
                        if candidate is not None:
                            run(candidate)
        self._meta_function()(counts)
        if context.skipped_rules:
            self._drop_metas_reading(context.skipped_rules, counts)
        return counts, details

    def _drop_metas_reading(self, skipped: list[str], counts: dict[str, int]) -> None:
        """Take out of `counts` each meta that reads a skipped rule, directly or through
        another meta (the metas are in dependency order: each after what it reads)."""
        unknown = set(skipped)
        for meta in self._by_kind.get(Kind.META, ()):
            if not unknown.isdisjoint(meta.meta_dependencies):
                unknown.add(meta.name)
                counts.pop(meta.name, None)

    def _plan(self, score_set: int | None) -> _Plan:
        """The rules to run for a score set, worked out once per score set: a rule scored 0
        there is off (SpamAssassin's way to turn one off) unless a meta needs it."""
        plan = self._plans.get(score_set)
        if plan is None:
            plan = _Plan()
            for kind, rules in self._by_kind.items():
                if kind is Kind.META:
                    continue
                for rule in rules:
                    if not (score_set is None or rule.score(score_set) != 0 or rule.is_subrule
                            or rule.name in self._meta_needs):
                        continue
                    if rule.scan_id is None or self._multiscan is None:
                        plan.unfiltered.setdefault(kind, []).append(rule)
                    elif kind is Kind.HEADER:
                        plan.header_groups.setdefault(rule.scan_group, []).append(rule)
                    else:
                        plan.filtered[rule.scan_id] = rule
            self._plans[score_set] = plan
        return plan

    def _meta_function(self) -> Callable[[dict[str, int]], None]:
        """Every meta rule, in dependency order, as one compiled function over the counts.

        One call a message instead of one eval() per meta (~860 with SpamAssassin's rules,
        each building its own namespace): 0.9 ms a message less (docs/decisions/0011).
        """
        if self._metas is None:
            lines = ["def run_metas(h):", "    get = h.get"]
            for rule in self._by_kind.get(Kind.META, ()):
                lines += ["    try:", f"        if {rule.meta_python.replace('h.get(', 'get(')}:",
                          f"            h[{rule.name!r}] = 1",
                          "    except (ArithmeticError, TypeError):", "        pass"]
            namespace: dict[str, Any] = {}
            # builtins.compile: in this package `compile` is the spamkit.rules.compile module
            exec(builtins.compile("\n".join(lines) + "\n", "<meta rules>", "exec"),  # noqa: S102
                 {"__builtins__": {"ArithmeticError": ArithmeticError, "TypeError": TypeError}},
                 namespace)
            self._metas = namespace["run_metas"]
        return self._metas

    def _run(self, rule: Rule, context: MessageContext, explain: bool,
             deadline: float | None = None) -> tuple[int, str]:
        """(hit count, what matched) for one non-meta rule. A regex search may take
        MATCH_BUDGET seconds (past it, no match), or what is left before `deadline`
        (past that, DeadlinePassed)."""
        try:
            if rule.eval_name:
                return (1 if EVALS[rule.eval_name](context, *rule.eval_args) else 0), ""
            if rule.kind in (Kind.HEADER, Kind.MIMEHEADER):
                return self._run_header(rule, context, explain, deadline)
            assert rule.pattern is not None
            view = view_of(rule)
            if rule.literals is not None:
                haystack = context.haystack(view, rule.literals_ignorecase)
                if not any(literal in haystack for literal in rule.literals):
                    return 0, ""  # the text lacks what every match needs
            if rule.paragraph_local:
                try:  # one search over all the paragraphs: no match there, none in any
                    if rule.pattern.search(context.haystack(view, False), timeout=_allowance(deadline)) is None:
                        return 0, ""
                except TimeoutError:
                    pass  # too long at once: paragraph by paragraph, each with its budget
            texts = context.texts(view)
            # a paragraph without one of the literals cannot hold a match: not searched
            looked_in = context.texts(view, rule.literals_ignorecase) if rule.literals is not None else texts
            limit = hit_limit(rule.tflags)
            count = 0
            detail = ""
            # the body's first paragraph is the Subject, which `nosubject` rules skip
            first = 1 if rule.kind is Kind.BODY and "nosubject" in rule.tflags else 0
            for index, text in enumerate(texts[first:], first):
                if rule.literals is not None and not any(
                        literal in looked_in[index] for literal in rule.literals):
                    continue
                found, matched = _count_matches(rule.pattern, text, limit - count, deadline)
                count += found
                detail = detail or matched
                if count >= limit:
                    break
            return count, _shown(rule, detail) if explain else ""
        except TimeoutError:
            if deadline is not None and deadline <= time.monotonic():
                raise DeadlinePassed from None  # cut short by the deadline, not its own budget
            return 0, ""
        except (regex.error, ValueError, TypeError):
            return 0, ""

    @staticmethod
    def _run_mimeheader(rule: Rule, context: MessageContext, explain: bool,
                        deadline: float | None) -> tuple[int, str]:
        """As SpamAssassin's MIMEHeader: each entity's value on its own (the message's own
        header too), an entity without the header tested as if_unset or as empty text.
        A negated rule hits when no entity matches (SpamAssassin 4.0.1's always hits)."""
        values = context.part_header_values(rule.header, raw=rule.modifier == "raw")
        if rule.exists:
            return (1 if any(value is not None for value in values) else 0), ""
        assert rule.pattern is not None
        for value in values:
            text = value if value is not None else (rule.if_unset if rule.if_unset is not None else "")
            text = to_bytes_view(text) if rule.reads_bytes else text
            match = rule.pattern.search(text[:rule.bounded] if rule.bounded else text,
                                        timeout=_allowance(deadline))
            if match is not None:
                return (0, "") if rule.negate else (1, _shown(rule, match.group(0)[:80]) if explain else "")
        return (1, "") if rule.negate else (0, "")

    @classmethod
    def _run_header(cls, rule: Rule, context: MessageContext, explain: bool,
                    deadline: float | None) -> tuple[int, str]:
        if rule.kind is Kind.MIMEHEADER:
            return cls._run_mimeheader(rule, context, explain, deadline)
        text = context.header_text(rule.header, rule.modifier, rule.reads_bytes)
        if rule.exists:
            return (1 if text is not None else 0), ""
        if text is None:
            if rule.if_unset is None:
                # a missing header matches nothing; SpamAssassin 4.0 tests it as undef,
                # which `!~` does not match: a rule from its files that negates hits (as
                # __TO_NO_ARROWS_R does on mail without a To). The built-in rules' scores
                # were fitted with no hit (decision 0005).
                return (1 if rule.negate and rule.reads_bytes else 0), ""
            text = to_bytes_view(rule.if_unset) if rule.reads_bytes else rule.if_unset
        assert rule.pattern is not None
        if rule.bounded:
            text = text[:rule.bounded]  # (too slow on all of a hostile header: compile.py)
        if rule.negate:
            return (0 if rule.pattern.search(text, timeout=_allowance(deadline)) else 1), ""
        count, first = _count_matches(rule.pattern, text, hit_limit(rule.tflags), deadline)
        return count, _shown(rule, first) if explain else ""


def _shown(rule: Rule, matched: str) -> str:
    """What a rule matched, as characters (a byte rule's match is UTF-8 bytes)."""
    return from_bytes_view(matched) if rule.reads_bytes else matched


def load_rules(paths: Iterable[str | Path] = (), *, builtin: bool = True,
               probe: bool = True, multiscan: bool = True, cache: bool = True,
               lint: bool = False) -> RuleSet:
    """The built-in rules (unless `builtin` is False), then each path (file or directory).

    With `probe`, every rule from `paths` is tried on adversarial input at load. The
    built-in rules are tried by the test suite (tests/scoring/test_rules.py), not at every
    start: that saved 30 ms of each `spamkit check`. `lint` adds the report's warnings of
    likely typos (`cf.reading_warnings`: 17 ms with Debian's rules, so not at every start).
    """
    reader = CfReader(ParsedRules())
    if builtin:
        reader.read_path(BUILTIN_RULES)
    for path in paths:
        path = Path(path)
        if not path.exists():
            reader.parsed.report.errors.append(f"{path}: no such rule file or directory")
            continue
        read = rules_read_for(path)  # (sa-update's rules, which SpamAssassin reads in their place)
        if read != path:
            reader.parsed.report.read_from[str(path)] = str(read)
        reader.read_path(read)
    vetted = {str(BUILTIN_RULES)} if builtin else set()
    rules = build_rules(reader.parsed, probe=probe, vetted_prefixes=tuple(vetted),
                        text_prefixes=(str(BUILTIN_RULES),),
                        cache_dir=default_cache_dir() if cache else None)
    reader.parsed.settings.time_limit_scores = reader.parsed.scores.get(TIME_LIMIT_RULE)
    if lint:
        reader.parsed.report.warnings += reading_warnings(
            reader.parsed, {name: rule.meta_dependencies for name, rule in rules.items()
                            if rule.kind is Kind.META})
    for rule in rules.values():
        # the built-in rules' scores were fitted on the links alone and on rawbody lines
        # (docs/decisions/0005); the addresses written in the text, which SpamAssassin's
        # uri rules also see, would make URI_REMOVE_ME hit list footers (decision 0038)
        rule.builtin_view = rule.origin.startswith(str(BUILTIN_RULES))
    return RuleSet(rules, reader.parsed.settings, reader.parsed.report, multiscan)
