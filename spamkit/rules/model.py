"""What a rule is, once loaded: its test, where it was written, and its scores."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import regex

if TYPE_CHECKING:
    from spamkit.rules.linear import LinearPattern


class Kind(enum.Enum):
    HEADER = "header"
    MIMEHEADER = "mimeheader"
    BODY = "body"
    RAWBODY = "rawbody"
    URI = "uri"
    FULL = "full"
    META = "meta"

    @property
    def counts_as_header(self) -> bool:
        """For autolearn: header points come from header tests, body points from the rest."""
        return self in (Kind.HEADER, Kind.MIMEHEADER)


# SpamAssassin's four score sets: [no Bayes, no network], [network], [Bayes], [Bayes + network].
# spamkit makes no network tests, so it uses set 0 without Bayes and set 2 with it.
SCORE_SET_WITHOUT_BAYES = 0
SCORE_SET_WITH_BAYES = 2


@dataclass
class Rule:
    name: str
    kind: Kind
    origin: str  # "file:line" of its definition
    description: str = ""
    tflags: frozenset[str] = frozenset()
    compiled: regex.Pattern[str] | LinearPattern | None = field(default=None, repr=False)
    literals: tuple[str, ...] | None = None  # one of these is in any text the pattern matches
    literals_ignorecase: bool = False
    paragraph_local: bool = False  # one search over the joined text can rule out every paragraph
    regex_source: str = ""  # the /regex/flags part of the test
    # the regex as RE2 runs it, for a rule too slow for the backtracking engine that RE2
    # runs with the same meaning (spamkit.rules.linear); "" for the others
    re2_form: str = ""
    scan_id: int | None = None  # its id in the RuleSet's multi-pattern prefilter, if it has one
    scan_group: str = ""  # which of the prefilter's databases: the texts it reads (a view), or "header NAME MODIFIER"
    source: str = ""  # the test as written, for --explain and lint
    header: str = ""  # for header rules: the header name, ALL, ToCc, ...
    modifier: str = ""  # raw, addr or name
    negate: bool = False  # !~
    exists: bool = False  # exists:Name
    if_unset: str | None = None
    eval_name: str = ""
    eval_args: tuple[str, ...] = ()
    meta_python: str = ""  # the expression as Python over h.get(NAME, 0), for the meta function
    meta_dependencies: tuple[str, ...] = ()
    scores: tuple[float, float, float, float] | None = None  # from `score`, per score set
    # a `net` rule whose lookup the SMTP filter made and recorded in the message (SPF, DKIM,
    # DMARC, Pyzor): scored from SpamAssassin's network score sets (1, 3), since its result
    # exists only where network checks ran; the local sets give most such rules 0
    network_result: bool = False
    # a built-in rule, which reads the texts its score was fitted on where they differ from
    # SpamAssassin's: uri rules the message's links only (not the addresses in its text),
    # rawbody rules one line at a time (not SpamAssassin's chunks of a part)
    builtin_view: bool = False
    # a rule from SpamAssassin's files: its regex matches the text's UTF-8 bytes with
    # ASCII rules, as Perl matches it on SpamAssassin's byte strings (perl_regex.as_byte_rule)
    reads_bytes: bool = False
    # a header rule too slow on a whole header that reads only its first `bounded`
    # characters (compile.BOUNDED_HEADER_LENGTH); 0 for the others, which read all
    bounded: int = 0

    @property
    def pattern(self) -> regex.Pattern[str] | LinearPattern | None:
        """The compiled regex; compiled on first use when the load came from the rule cache
        (spamkit.rules.rulecache), which already knows that it compiles and is not too slow
        (or which form RE2 runs it in)."""
        if self.compiled is None and self.re2_form:
            from spamkit.rules.linear import LinearPattern

            self.compiled = LinearPattern(self.re2_form)
        elif self.compiled is None and self.regex_source:
            from spamkit.rules.perl_regex import compile_perl

            self.compiled = compile_perl(self.regex_source)
        return self.compiled

    @property
    def prefiltered(self) -> bool:
        """Whether the prefilter (spamkit.rules.multiscan) takes this rule: a regex rule,
        unless RE2 runs it, whose own search over a message's texts is exact and linear
        (the prefilter's looser form of such a rule cost more than it saved, decision 0049)."""
        return bool(self.regex_source) and not self.re2_form

    @property
    def is_subrule(self) -> bool:
        """`__NAME` rules only feed meta rules: never scored or reported."""
        return self.name.startswith("__")

    def score(self, score_set: int) -> float:
        """The score line's value; without one, SpamAssassin's default: 1.0, 0.01 for a
        rule under test (T_), and negative for a rule flagged `nice` (it points to ham)."""
        if self.scores is not None:
            return self.scores[score_set | 1 if self.network_result else score_set]
        if self.is_subrule:
            return 0.0
        default = 0.01 if self.name.startswith("T_") else 1.0
        return -default if "nice" in self.tflags else default


@dataclass(frozen=True)
class Hit:
    name: str
    score: float
    kind: Kind
    description: str = ""
    detail: str = ""  # what matched, for --explain


@dataclass
class LoadReport:
    """What loading rule files found: for `spamkit lint` and the load log line."""

    files: int = 0
    rules: int = 0  # definitions read
    loaded: int = 0  # rules that run
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> count
    # each rule skipped, named: an administrator asks which rules of theirs never run
    skipped_rules: list[SkippedRule] = field(default_factory=list)
    unknown_directives: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)  # "file:line: message"
    warnings: list[str] = field(default_factory=list)
    # rules that run on the start of their header only, being too slow on all of it
    bounded_rules: list[BoundedRule] = field(default_factory=list)
    # a path given -> the directory read for it: SpamAssassin's package rules -> sa-update's
    # newer ones (spamkit.rules.sa_paths)
    read_from: dict[str, str] = field(default_factory=dict)

    def skip(self, reason: str, rule: str, origin: str, detail: str = "") -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        self.skipped_rules.append(SkippedRule(rule, origin, reason, detail))

    def as_json(self) -> dict[str, object]:
        return {"files": self.files, "rules": self.rules, "loaded": self.loaded,
                "skipped": sum(self.skipped.values()), "skipped_by_reason": self.skipped,
                "skipped_rules": [vars(skipped) for skipped in self.skipped_rules],
                "unknown_directives": self.unknown_directives, "errors": self.errors,
                "warnings": self.warnings, "bounded_rules": [vars(bounded) for bounded in self.bounded_rules],
                "read_from": self.read_from}


@dataclass(frozen=True)
class BoundedRule:
    """A header rule that runs on its header's first `characters` only: on the whole of
    a hostile one it took longer than the load's probe budget, and RE2 cannot run it."""

    rule: str
    origin: str  # "file:line" of its definition
    characters: int

    def describe(self) -> str:
        return (f"{self.origin}: {self.rule}: too slow on a whole header; reads its first "
                f"{self.characters} characters")


@dataclass(frozen=True)
class SkippedRule:
    """A rule that does not run, and why ("eval not implemented": `detail` names the eval)."""

    rule: str
    origin: str  # "file:line" of its definition
    reason: str
    detail: str = ""

    def describe(self) -> str:
        return f"{self.origin}: {self.rule}: {self.reason}{f' ({self.detail})' if self.detail else ''}"
