"""The whole verdict on one message: rules + Bayes bands + lists, the decision, autolearn.

    scanner = Scanner.from_config(config, store)
    verdict = scanner.scan(raw, envelope_from="a@b.example", recipients=("me@x.example",))
    verdict.decision            # "ham", "spam" or "reject"
    verdict.headers()           # X-Spam-Flag, X-Spam-Status, X-Spam-Level, ...
    verdict.rewrite(raw)        # the message with those headers (and the subject tag)

Scores, levels and autolearn follow SpamAssassin and the SME guide: a message is spam at
or above the tag level (Sensitivity preset, or TagLevel when custom) and refused at or
above RejectLevel (custom only). Autolearn looks at the score without Bayes and list
rules, needs 3 points from headers and 3 from the body to learn spam, and never
overrides what someone taught.
"""

from __future__ import annotations

import functools
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from spamkit import __version__
from spamkit.analysis import Analysis, Analyzer, analyzer_for
from spamkit.bayes import BayesClassifier, BayesParams, BayesResult
from spamkit.config import Config, load_config
from spamkit.errors import SpamkitError, StoreError, StoreUnavailable
from spamkit.lists import Lists
from spamkit.message import ParsedMessage, ParseLimits
from spamkit.sources import SourceItem
from spamkit.store import Label, TokenStore

if TYPE_CHECKING:  # the rule engine is imported where rules are used (Scanner, decision 0056)
    from spamkit.rules import Hit, MessageContext, RuleSet
    from spamkit.rules.context import Verified

# a message that takes a scan through dates, an encoded word, quoted-printable, base64,
# HTML and a link: what Scanner.warm_up runs before a daemon gives up root
_WARM_UP_MESSAGE = (
    b"Received: from a.example (a.example [192.0.2.1]) by b.example; Mon, 2 Sep 2002 10:00:00 +0000\r\n"
    b"Date: Mon, 2 Sep 2002 09:59:00 +0000\r\nFrom: A <a@a.example>\r\nTo: b@b.example\r\n"
    b"Subject: =?iso-8859-1?q?caf=E9?=\r\nMessage-ID: <1@a.example>\r\nMIME-Version: 1.0\r\n"
    b"Content-Type: multipart/alternative; boundary=b\r\n\r\n--b\r\n"
    b"Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n"
    b"\r\ncaf=E9 http://www.example.com/\r\n--b\r\nContent-Type: text/html; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: base64\r\n\r\nPHA+aGkgPGEgaHJlZj0iaHR0cDovL3d3dy5leGFtcGxlLmNvbS8iPng8L2E+PC9wPg==\r\n"
    b"--b--\r\n")

AUTOLEARN_MIN_HEADER_POINTS = 3.0
AUTOLEARN_MIN_BODY_POINTS = 3.0
# SpamAssassin's AutoLearnThreshold does not teach a label the learner's own rules (the
# BAYES_* bands, tflags learn) argue against by more than a point either way
LEARNER_SAYS_SPAM_POINTS = 1.0
LEARNER_SAYS_HAM_POINTS = -1.0
_log = logging.getLogger("spamkit.verdict")
_NOT_FOR_AUTOLEARN = frozenset({"learn", "userconf", "noautolearn"})
_UNSAFE = re.compile(r"[\r\n\x00]")
_HEADER_END = re.compile(rb"\n\r?\n")  # the empty line after the header block (as split_header_block)


# every X-Spam-* field, matched (ignoring case) where a field starts: a sender's own would
# read as ours
SPAM_FIELDS = re.compile(rb"x-spam-", re.IGNORECASE)


def with_headers(raw: bytes, added: Sequence[tuple[str, str]], subject_tag: str | None = None,
                 dropping: re.Pattern[bytes] = SPAM_FIELDS) -> bytes:
    """`raw` with `added` first, in its own line ends, and the fields it came with that
    `dropping` matches where they start (ignoring case) removed, with their continuation
    lines: every X-Spam-* unless said otherwise. With `subject_tag`, each Subject tagged
    (one made if there is none).

    The header block ends at the first empty line, in either line end (as the parser
    reads it), and the line end written is the first line's: a message whose headers end
    in LF and whose body holds a CRLF keeps its LF headers, and has its fields dropped.

    Only the fields to drop or tag are visited, found by one regex search, and the lines
    between are copied as they are: a loop over every line took 3.3 s and 526 MB for the
    15 MB header block of a message too large to scan.

    An mbox "From " line, which procmail passes to its filters and spamc on to spamd, stays
    first, as SpamAssassin keeps it: put after our fields, it became a line in the header
    block that is not a field, where a reader may take the header block to end.
    """
    envelope, raw = split_mbox_line(raw)
    first_break = raw.find(b"\n")
    cr = b"\r" if first_break > 0 and raw[first_break - 1:first_break] == b"\r" else b""
    blank = _HEADER_END.search(raw)
    head, body = (raw[:blank.start()], raw[blank.start():]) if blank else (raw, b"")
    tag = _UNSAFE.sub(" ", subject_tag).encode("utf-8") if subject_tag else None
    kept: list[bytes] = []  # runs of lines as they were (CRs kept), to be joined by line breaks
    run = 0  # where the lines not yet kept start
    lines_left = True
    tagged = False
    for mark in _fields_to_change(dropping, tag is not None).finditer(head):
        start = mark.start()
        if start > run:
            kept.append(head[run:start - 1])
        if mark.lastgroup == "subject":
            assert tag is not None
            line_end = head.find(b"\n", start)
            line = head[start:line_end] if line_end >= 0 else head[start:]
            kept.append(b"Subject: " + tag + b" " + line[8:].lstrip())
            tagged = True
            next_line = line_end + 1 if line_end >= 0 else -1
        else:  # dropped, with the continuation lines that follow it
            field_end = _FIELD_END.search(head, start)
            next_line = field_end.start() + 1 if field_end else -1
        if next_line < 0:
            lines_left = False
            break
        run = next_line
    if lines_left:
        kept.append(head[run:])
    if tag is not None and not tagged:
        kept.append(b"Subject: " + tag + cr)
    fields = [f"{name}: {value}".encode("utf-8").replace(b"\n", cr + b"\n") + cr for name, value in added]
    return envelope + b"\n".join(fields + kept) + body


FOLD_WIDTH = 78  # RFC 5322 2.1.1's "SHOULD" for a line, without its line break
_FOLD_POINT = re.compile(r"(?<=[ ,])(?=[^ ,])")  # after a space or a comma, before the next word


def folded(name: str, value: str, width: int = FOLD_WIDTH) -> str:
    """`value` with a line break and a tab before each piece that would take the field's
    line past `width` characters, broken only after a space or a comma, as SpamAssassin's
    fold_headers breaks its headers (tests=A,B,... runs on over lines). A piece longer
    than a line stays whole. Unfolded, a status naming 40 rules came to 900 characters on
    one line; past 998 a line breaks RFC 5322, and Exim's transports refuse it."""
    if len(name) + 2 + len(value) <= width:
        return value
    pieces = _FOLD_POINT.split(value)
    lines: list[str] = []
    line, used = "", len(name) + 2
    for piece in pieces:
        if line and used + len(piece.rstrip(" ")) > width:
            lines.append(line.rstrip(" "))
            line, used = "", 8  # (a tab: 8 columns)
        line += piece
        used += len(piece)
    lines.append(line)
    return "\n\t".join(lines)


def split_mbox_line(raw: bytes) -> tuple[bytes, bytes]:
    """(the mbox "From sender date" line that procmail and Postfix's local(8) put first,
    with its line break, or b""; the message after it)."""
    if raw.startswith(b"From ") and (line_end := raw.find(b"\n")) >= 0:
        return raw[:line_end + 1], raw[line_end + 1:]
    return b"", raw


_FIELD_END = re.compile(rb"\n(?![ \t])")  # the line break after a field's last line


@functools.lru_cache(maxsize=8)
def _fields_to_change(dropping: re.Pattern[bytes], subject: bool) -> re.Pattern[bytes]:
    """Where a field starts that `dropping` matches (group "drop"), or a Subject (group
    "subject") when tagging."""
    subject_group = b"|(?P<subject>subject:)" if subject else b""
    return re.compile(b"^(?:(?P<drop>" + dropping.pattern + b")" + subject_group + b")",
                      re.IGNORECASE | re.MULTILINE)


def header_block(raw: bytes) -> bytes:
    """The header block with the empty line after it (all of `raw` when it has none)."""
    blank = _HEADER_END.search(raw)
    return raw if blank is None else raw[:blank.end()]


def unscanned(raw: bytes, reason: str) -> bytes:
    """The message passed on without a verdict, saying why in X-Spam-Status (and with no
    X-Spam-* header of the sender's that a reader could take for ours)."""
    return with_headers(raw, [("X-Spam-Status", _UNSAFE.sub(" ", f"unscanned, {reason}"))])


@dataclass
class Verdict:
    score: float
    required: float
    reject_level: float | None
    decision: str  # "ham", "spam" or "reject"
    hits: list[Hit]
    bayes: BayesResult | None
    # "spam", "ham", "no": autolearn's choice; "failed": the database could not take it;
    # "unavailable": scored without the database, or the rules ran out of time;
    # "disabled": nothing here learns
    autolearn: str = "no"
    autolearn_reason: str = ""
    listed: str | None = None
    subject_tag: str | None = None  # text put before the Subject when spam
    add_headers: list[tuple[str, str, str]] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)  # add_header's tags from the message (_RELAYCOUNTRY_)
    fold: bool = True  # fold our headers at 78 columns (SpamAssassin's fold_headers, on by default)
    token_keys: list[bytes] = field(default_factory=list, repr=False)  # for autolearn: no second tokenizing

    @property
    def is_spam(self) -> bool:
        return self.decision in ("spam", "reject")

    def not_learned_here(self, why: str) -> None:
        """autolearn=disabled, as SpamAssassin says when it does not learn, for a service
        that does not (started without --autolearn, or `deliver`): its header said
        autolearn=ham for mail nothing learned, and administrators read that header to
        see what the database was taught."""
        if self.autolearn in ("spam", "ham", "no"):
            self.autolearn, self.autolearn_reason = "disabled", why

    def status_line(self) -> str:
        tests = ",".join(hit.name for hit in sorted(self.hits, key=lambda h: h.name)) or "none"
        return (f"{'Yes' if self.is_spam else 'No'}, score={self.score:.1f} "
                f"required={self.required:.1f} tests={tests} autolearn={self.autolearn} "
                f"version=spamkit-{__version__}")

    def headers(self) -> list[tuple[str, str]]:
        """The headers SpamAssassin adds, in its format, folded as it folds them (`fold`)."""
        out = [("X-Spam-Checker-Version", f"spamkit {__version__}")]
        if self.is_spam:
            out.append(("X-Spam-Flag", "YES"))
        out.append(("X-Spam-Level", "*" * max(0, min(50, int(self.score)))))
        out.append(("X-Spam-Status", self.status_line()))
        for which, name, template in self.add_headers:
            if which == "all" or (which == "spam") == self.is_spam:
                out.append((f"X-Spam-{name}", self._expand(template)))
        safe = [(name, _UNSAFE.sub(" ", value)) for name, value in out]
        return [(name, folded(name, value)) for name, value in safe] if self.fold else safe

    def _expand(self, template: str) -> str:
        values = {"_SCORE_": f"{self.score:.1f}", "_REQD_": f"{self.required:.1f}",
                  "_TESTS_": ",".join(h.name for h in self.hits) or "none",
                  "_AUTOLEARN_": self.autolearn, "_VERSION_": __version__,
                  "_YESNO_": "Yes" if self.is_spam else "No",
                  "_YESNOCAPS_": "YES" if self.is_spam else "NO", **self.tags}
        return re.sub(r"_[A-Z]+_", lambda m: values.get(m.group(0), m.group(0)), template)

    def rewrite(self, raw: bytes) -> bytes:
        """The message with our headers first (old X-Spam-* removed) and the subject tagged."""
        tag = self.subject_tag.replace("_SCORE_", f"{self.score:.1f}") \
            if self.is_spam and self.subject_tag else None
        return with_headers(raw, self.headers(), tag)

    def report(self) -> str:
        lines = [f"Content analysis: score {self.score:.1f}, required {self.required:.1f}, "
                 f"decision {self.decision}"]
        lines.append(" pts rule name              description")
        lines.append("---- ---------------------- --------------------------------------------------")
        for hit in sorted(self.hits, key=lambda h: -abs(h.score)):
            lines.append(f"{hit.score:4.1f} {hit.name:<22} {hit.description}")
        return "\n".join(lines)


class Scanner:
    """Everything needed to judge messages; build once, scan many.

    `rules` None: the configuration names no rules (UseBuiltinRules false, no RulePaths),
    so Bayes and the lists judge alone and the rule engine is not imported: it was ~40 ms
    of each such `check` or `deliver` process's start (decision 0056). `self.rules` then
    makes an empty RuleSet the first time something asks for it (a daemon's warm_up does).
    """

    def __init__(self, config: Config, rules: RuleSet | None, lists: Lists,
                 store: TokenStore | None = None, analyzer: Analyzer | None = None,
                 database_down: str | None = None) -> None:
        self.config = config
        self._rules = rules
        self.lists = lists
        self.store = store
        # a service's database that cannot be used (DatabaseWatch): why. Each scan with
        # Bayes then raises StoreUnavailable, and the service does what WhenDatabaseDown says
        self.database_down = database_down
        self.analyzer = analyzer or analyzer_for(  # the database's own tokenizer
            store, ParseLimits(max_message_bytes=config["MaxMessageSize"]))
        # what the rule files set (SpamAssassin's own options), under the configuration's
        settings = rules.settings if rules is not None else None  # (None: no rule files)
        self.use_bayes = _setting(config, "UseBayes", settings.use_bayes if settings else None)
        self.autolearn_enabled = _setting(config, "BayesAutoLearn",
                                          settings.bayes_auto_learn if settings else None)
        self.autolearn_spam = _setting(config, "BayesAutoLearnThresholdSpam",
                                       settings.autolearn_spam if settings else None)
        self.autolearn_ham = _setting(config, "BayesAutoLearnThresholdNonspam",
                                      settings.autolearn_nonspam if settings else None)
        self.time_limit: float = _setting(config, "RuleTimeLimit", settings.time_limit if settings else None)
        required_score = settings.required_score if settings else None
        rewrite_subject = settings.rewrite_subject if settings else None
        self.required = config.tag_level
        if required_score is not None and config.origins["Sensitivity"] == "default" \
                and config.origins["TagLevel"] == "default":
            self.required = required_score
        subject_on = config["SubjectTag"] or (rewrite_subject is not None
                                              and config.origins["SubjectTag"] == "default")
        text = config["SubjectTagText"] if config.origins["SubjectTagText"] != "default" or \
            rewrite_subject is None else rewrite_subject
        self.subject_tag = text if subject_on else None
        self.add_headers: list[tuple[str, str, str]] = settings.add_headers if settings else []
        self.fold_headers = settings is None or settings.fold_headers is not False
        self.bayes = BayesClassifier(store, bayes_params(config)) if store is not None else None
        # (looked for once, not at every message)
        self._country_tags_used = any("_RELAYCOUNTRY" in template for _, _, template in self.add_headers)

    @property
    def rules(self) -> RuleSet:
        """The rules in force: with none configured, an empty RuleSet made on first ask."""
        if self._rules is None:
            from spamkit.rules import load_rules

            self._rules = load_rules([], builtin=False)
        return self._rules

    @property
    def rule_errors(self) -> list[str]:
        """Why rules from the rule files were skipped (file and line), for a warning."""
        return [] if self._rules is None else self._rules.report.errors

    @classmethod
    def from_config(cls, config: Config, store: TokenStore | None,
                    extra_rules: tuple[str, ...] = (), database_down: str | None = None) -> Scanner:
        scanner = cls.factory(config, extra_rules)(store)
        scanner.database_down = database_down
        return scanner

    def with_store(self, store: TokenStore | None, database_down: str | None = None) -> Scanner:
        """This configuration, rules and lists over another database (a service's, once it
        can be used again): nothing is read or compiled again."""
        return Scanner(self.config, self._rules, self.lists, store, database_down=database_down)

    @classmethod
    def factory(cls, config: Config, extra_rules: tuple[str, ...] = ()
                ) -> Callable[[TokenStore | None], Scanner]:
        """Scanners for one configuration over several databases (`spamkit evaluate`'s
        folds): the rules and lists are read and compiled once."""
        rules = None
        if config["UseBuiltinRules"] or config["RulePaths"] or extra_rules:
            from spamkit.rules import load_rules

            rules = load_rules([*config["RulePaths"], *extra_rules], builtin=config["UseBuiltinRules"])
            use_configured_countries(rules, config)
        lists = Lists.load(config.lists_path, rules.settings.lists if rules is not None else None)
        return lambda store: cls(config, rules, lists, store)

    def warm_up(self) -> None:
        """Load now what a scan would load on its first use: every codec a charset may name,
        the date parser, the learner, the rules' compiled forms. A daemon calls this before it gives up
        root, after which it may not be able to read the Python installation (a pyenv under
        /root), and then calls it again to prove it can still scan (`scan` raises if not)."""
        import difflib  # noqa: F401  (a reloaded configuration's misspelt option)
        import email.utils  # noqa: F401  (the date evals import it on first use)
        import encodings
        import importlib
        import pkgutil
        import urllib.parse  # noqa: F401

        import spamkit.learn  # noqa: F401  (autolearning, the first time it learns)

        for module in pkgutil.iter_modules(encodings.__path__):
            try:
                importlib.import_module(f"encodings.{module.name}")
            except ImportError:
                pass  # mbcs and oem: Windows only
        self.rules.prepare_linear()  # (and with no rules configured, the engine's modules:
        self.scan(_WARM_UP_MESSAGE, with_bayes=False)  # a reload may bring lists or rules)

    def scan(self, raw: bytes, envelope_from: str | None = None, recipients: tuple[str, ...] = (),
             explain: bool = False, parsed: ParsedMessage | None = None,
             with_bayes: bool = True, deadline: float | None = None,
             verified: Verified | None = None) -> Verdict:
        """`parsed`: `raw` already parsed with self.analyzer.limits, to save parsing twice.
        `with_bayes` False scores with the rules alone (the database is unreachable).
        `deadline` (time.monotonic()): the caller's own limit on the rules (the SMTP
        filter's ScanBudget); the earlier of it and RuleTimeLimit from now applies.
        `verified`: what the SMTP filter's spf and dkim checks found as the message arrived
        (the welcomelist evals trust nothing else)."""
        if with_bayes and self.use_bayes and self.database_down is not None:
            raise StoreUnavailable(self.database_down)
        deadline = self._deadline(deadline)
        analysis = self.analyzer.analyze(raw, parsed, with_tokens=explain)
        bayes = None
        if with_bayes and self.use_bayes and self.bayes is not None:
            bayes = self.bayes.score(analysis.hashes, analysis.tokens, explain=15 if explain else 0,
                                     message=raw)
        return self._judge(raw, analysis, bayes, envelope_from, recipients, explain, deadline, verified)

    def _deadline(self, caller: float | None) -> float | None:
        """When a message's rules must stop: RuleTimeLimit from now, or the caller's
        deadline if that is earlier (SpamAssassin's time_limit and master_deadline)."""
        if self.time_limit <= 0:
            return caller
        own = time.monotonic() + self.time_limit
        return own if caller is None else min(own, caller)

    def scan_many(self, raws: Sequence[bytes], envelope_from: str | None = None,
                  recipients: tuple[str, ...] = (), explain: bool = False) -> list[Verdict]:
        """`scan` for several messages, as `spamkit check` does with many files.

        The same verdicts as scanning one by one; the messages' tokens are read from the
        database together and their Bayes arithmetic done together
        (BayesClassifier.score_many): 115 against 190 us a message on the test fold.
        Not for autolearning: each message must see what the one before it taught.
        """
        if self.use_bayes and self.database_down is not None:
            raise StoreUnavailable(self.database_down)
        analyses = [self.analyzer.analyze(raw, with_tokens=explain) for raw in raws]
        results: list[BayesResult | None] = [None] * len(raws)
        if self.use_bayes and self.bayes is not None:
            results = list(self.bayes.score_many(
                [a.hashes for a in analyses], [a.tokens for a in analyses],
                explain=15 if explain else 0, messages=raws))
        # (each message's time limit starts with its rules: its parse took microseconds)
        return [self._judge(raw, analysis, bayes, envelope_from, recipients, explain, self._deadline(None))
                for raw, analysis, bayes in zip(raws, analyses, results)]

    def _judge(self, raw: bytes, analysis: Analysis, bayes: BayesResult | None,
               envelope_from: str | None, recipients: tuple[str, ...], explain: bool,
               deadline: float | None, verified: Verified | None = None) -> Verdict:
        """Rules, lists and the decision, once the message is analysed and Bayes has spoken.
        With no rules and no list entries, there is nothing to ask of the message beyond
        Bayes: no MessageContext is made, and the verdict is the one an empty RuleSet gives."""
        hits: list[Hit] = []
        listed: str | None = None
        tags: dict[str, str] = {}
        skipped = 0
        self.lists = self.lists.current()  # (the list file as `wbl add` left it)
        if self._rules is not None or not self.lists.empty:
            context = self._context(raw, analysis, bayes, envelope_from, recipients, verified)
            hits = self._rules_and_lists(context, bayes, recipients, explain, deadline)
            listed, tags, skipped = context.listed, self._message_tags(context), len(context.skipped_rules)
        score = round(sum(hit.score for hit in hits), 3)
        reject = self.config.reject_level
        decision = ("reject" if reject is not None and score >= reject
                    else "spam" if score >= self.required else "ham")
        verdict = Verdict(score, self.required, reject, decision, hits, bayes,
                          listed=listed, subject_tag=self.subject_tag,
                          add_headers=self.add_headers, token_keys=analysis.hashes, tags=tags,
                          fold=self.fold_headers)
        verdict.autolearn, verdict.autolearn_reason = self._autolearn_choice(hits, skipped)
        return verdict

    def _context(self, raw: bytes, analysis: Analysis, bayes: BayesResult | None,
                 envelope_from: str | None, recipients: tuple[str, ...],
                 verified: Verified | None) -> MessageContext:
        from spamkit.rules import MessageContext

        return MessageContext(raw, analysis.message, envelope_from=envelope_from, recipients=recipients,
                              bayes_probability=bayes.probability if bayes else None,
                              max_bytes=self.config["MaxMessageSize"], verified=verified)

    def _rules_and_lists(self, context: MessageContext, bayes: BayesResult | None,
                         recipients: tuple[str, ...], explain: bool, deadline: float | None) -> list[Hit]:
        """The lists' say (in `context.listed`) and the rules' hits."""
        from spamkit.rules import SCORE_SET_WITH_BAYES, SCORE_SET_WITHOUT_BAYES
        from spamkit.rules.context import first_address

        if not self.lists.empty:  # (the From address found only when a list may need it)
            senders = [first_address(context.envelope_from or ""), context.from_address]
            context.listed = self.lists.classify(senders, recipients)
        with_bayes = bayes is not None and bayes.probability is not None
        score_set = SCORE_SET_WITH_BAYES if with_bayes else SCORE_SET_WITHOUT_BAYES
        hits = self.rules.evaluate(context, score_set, explain=explain, deadline=deadline)
        if context.skipped_rules:
            _log.warning("%d rules not run on %s: its time limit passed (RuleTimeLimit %gs, or "
                         "the caller's deadline)", len(context.skipped_rules),
                         (context.header_text("Message-ID") or "a message without a Message-ID").strip()[:200],
                         self.time_limit)
        return hits

    def _message_tags(self, context: MessageContext) -> dict[str, str]:
        """The add_header tags that come from the message itself, when a template uses
        them: RelayCountry's (unset without a country database, so the template keeps
        the tag's name, as SpamAssassin's does)."""
        if not self._country_tags_used:
            return {}
        from spamkit.rules.relays import RELAY_COUNTRY_TAGS

        values = {tag: context.header_text(header) for tag, header in RELAY_COUNTRY_TAGS.items()}
        return {tag: value for tag, value in values.items() if value is not None}

    def _autolearn_choice(self, hits: list[Hit], skipped_rules: int) -> tuple[str, str]:
        if skipped_rules:  # the points of only some rules: as SpamAssassin, whose
            # learning is then never reached, so it says "unavailable" whatever the settings
            return "unavailable", f"{skipped_rules} rules not run: the time limit passed"
        if not (self.autolearn_enabled and self.use_bayes and self.store is not None):
            return "no", "autolearn is off"
        if not hits:  # (no rule hit: no points, and Bayes's bands have not spoken)
            return self._autolearn_by_points(0.0, 0.0, 0.0)
        from spamkit.rules import SCORE_SET_WITHOUT_BAYES

        rules = self.rules.rules
        learn_hits = [h for h in hits if not (rules[h.name].tflags & _NOT_FOR_AUTOLEARN)]
        if any("noautolearn" in rules[h.name].tflags for h in hits):
            return "no", "a list or noautolearn rule hit"
        points = sum(rules[h.name].score(SCORE_SET_WITHOUT_BAYES) for h in learn_hits)
        head = sum(rules[h.name].score(SCORE_SET_WITHOUT_BAYES) for h in learn_hits
                   if h.kind.counts_as_header) if points >= self.autolearn_spam else 0.0  # (read only then)
        # what Bayes itself says, in its bands' points: a spam the rules miss is one it
        # may well know, and learning it as ham would teach it its own mistake
        learner = sum(h.score for h in hits if "learn" in rules[h.name].tflags)
        return self._autolearn_by_points(points, head, learner)

    def _autolearn_by_points(self, points: float, head: float, learner: float) -> tuple[str, str]:
        """Autolearn's choice from the points without Bayes and the lists (`head` of them
        from header rules) and what Bayes's own bands gave (`learner`)."""
        if points <= self.autolearn_ham:
            if learner > LEARNER_SAYS_SPAM_POINTS:
                return "no", f"{points:.1f} points, but Bayes says spam ({learner:+.1f} points)"
            return "ham", f"{points:.1f} points, at or below {self.autolearn_ham:g}"
        if points >= self.autolearn_spam:
            body = points - head
            if head < AUTOLEARN_MIN_HEADER_POINTS or body < AUTOLEARN_MIN_BODY_POINTS:
                return "no", f"{points:.1f} points but {head:.1f} from headers and {body:.1f} from the body"
            if learner < LEARNER_SAYS_HAM_POINTS:
                return "no", f"{points:.1f} points, but Bayes says ham ({learner:+.1f} points)"
            return "spam", f"{points:.1f} points, at or above {self.autolearn_spam:g}"
        return "no", f"{points:.1f} points, between the thresholds"

    def autolearn(self, raw: bytes, verdict: Verdict, name: str = "-") -> str:
        """Learn the message as the verdict's autolearn choice says; returns the outcome:
        "learned", "skipped", "no", or "failed" when the database could not take the write
        (a full disk). Autolearning is a side job: a failure never stops the verdict; the
        verdict then says autolearn=failed, as SpamAssassin's does, and the reason why."""
        if verdict.autolearn not in ("spam", "ham") or self.store is None:
            return "no"
        from spamkit.learn import Learner  # (only autolearning needs it: 4 ms of each check's start)

        # the byte model the scans hold: decoding the stored one cost each autolearn ~4 ms
        models = self.bayes.byte_models if self.bayes is not None else None
        learner = Learner(self.store, self.analyzer, max_tokens=self.config["BayesMaxTokens"],
                          seen_days=self.config["BayesSeenDays"],
                          byte_model=models.held() if models is not None else None)
        try:
            summary = learner.learn([SourceItem(name, raw, token_keys=verdict.token_keys)],
                                    Label(verdict.autolearn), by="autolearn")
        except StoreError as error:
            verdict.autolearn, verdict.autolearn_reason = "failed", str(error)
            return "failed"
        if models is not None and learner.byte_model is not None:
            models.keep(*learner.byte_model)
        return "learned" if summary.learned else "skipped"


def reload_scanner(current: Scanner | None, config_path: str | None, store: TokenStore | None,
                   extra_rules: tuple[str, ...] = ()) -> tuple[Scanner, list[str]]:
    """A scanner for the configuration as it is now, or the current one if that is broken.

    A service calls this on SIGHUP: a typo, an unknown option, a rule that does not
    compile or a relative score with nothing to add to is reported (file and line) and
    the last good configuration stays in force. Rules the current scanner already skipped
    (Debian's rule files have three that fail the adversarial-time check) do not count
    against the new one: only errors it did not have before keep it. Without a current
    scanner, errors raise.
    """
    try:
        config = load_config(config_path)
        candidate = Scanner.from_config(config, store, extra_rules,
                                        database_down=current.database_down if current else None)
    except SpamkitError as error:
        if current is None:
            raise
        return current, [str(error)]
    errors = list(candidate.rule_errors)
    if current is not None:
        new = [error for error in errors if error not in current.rule_errors]
        if new:
            return current, new
    return candidate, errors


def reload_logged(current: Scanner, config_path: str | None, store: TokenStore | None,
                  log: logging.Logger) -> Scanner | None:
    """`reload_scanner` for a daemon's SIGHUP: the new scanner, its rules compiled, or None
    (the configuration in force stays) with each reason logged."""
    try:
        candidate, errors = reload_scanner(current, config_path, store)
        if candidate is not current:
            candidate.rules.prepare_multiscan()
    except Exception as failure:  # a daemon's reload must never take it down
        errors, candidate = [f"{type(failure).__name__}: {failure}"], current
    for reason in errors:
        log.error("reload: %s", reason)
    if candidate is current:
        log.error("reload: nothing changed; the configuration read at the last good start or "
                  "reload stays in force")
        return None
    return candidate


def bayes_params(config: Config) -> BayesParams:
    """The Bayes constants a configuration sets (its abstention counts and cutoffs)."""
    return BayesParams(min_spam_learned=config["BayesMinSpam"], min_ham_learned=config["BayesMinHam"],
                       ham_cutoff=config["BayesHamCutoff"], spam_cutoff=config["BayesSpamCutoff"])


def use_configured_countries(rules: RuleSet, config: Config) -> None:
    """GeoIPDatabase, when set, is where the rules' X-Relay-Countries come from (before the
    .cf files' geodb settings)."""
    if config["GeoIPDatabase"]:
        from spamkit.geoip import shared_countries

        rules.countries = shared_countries(tuple(config["GeoIPDatabase"]))


def _setting(config: Config, name: str, from_rules: Any) -> Any:
    """The configuration's value, unless it is a default and a rule file set one."""
    if from_rules is not None and config.origins[name] == "default":
        return from_rules
    return config[name]
