"""Reading rule files in SpamAssassin's .cf syntax.

Rule definitions (header, mimeheader, body, rawbody, uri, full, meta), describe, score
(absolute, four score sets, or relative in parentheses), tflags, the ReplaceTags
directives, settings (required_score, rewrite_header, add_header, use_bayes,
bayes_auto_learn*, time_limit, white/blacklists in both spellings, by sender, relay,
recipient and Subject, the util_rb_* domain lists, the named address and URI host
lists, redirector patterns), if/ifplugin blocks and include (how sa-update's directory
names its files).
Anything else is counted as an unknown directive and reported, never fatal; a
definition that cannot be used (a bad regex, an eval we do not implement) is skipped
and reported with its file and line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from spamkit.errors import ConfigError
from spamkit.rules.model import Kind, LoadReport
from spamkit.rules.namedlists import NamedLists
from spamkit.rules.perl_regex import compile_perl
from spamkit.rules.registry import RegistryLists
from spamkit.textfile import without_bom

# What `if` and `ifplugin` lines are evaluated against.
SPAMASSASSIN_VERSION = 4.000001
PERL_VERSION = 5.036
PLUGINS = frozenset({  # plugins whose rules spamkit can run (or whose evals it implements)
    "Mail::SpamAssassin::Plugin::ReplaceTags", "Mail::SpamAssassin::Plugin::MIMEHeader",
    "Mail::SpamAssassin::Plugin::Bayes", "Mail::SpamAssassin::Plugin::WLBLEval",
    "Mail::SpamAssassin::Plugin::WelcomeListSubject", "Mail::SpamAssassin::Plugin::HeaderEval",
    "Mail::SpamAssassin::Plugin::BodyEval", "Mail::SpamAssassin::Plugin::HTMLEval",
    "Mail::SpamAssassin::Plugin::MIMEEval", "Mail::SpamAssassin::Plugin::Check",
    "Mail::SpamAssassin::Plugin::FreeMail", "Mail::SpamAssassin::Plugin::RelayEval",
    # answered from the SMTP filter's Received-SPF and Authentication-Results headers
    "Mail::SpamAssassin::Plugin::SPF", "Mail::SpamAssassin::Plugin::DKIM",
    "Mail::SpamAssassin::Plugin::Dmarc",
    # answered from the pyzor filter's X-Spamkit-Pyzor header
    "Mail::SpamAssassin::Plugin::Pyzor",
    # X-Relay-Countries from a country database (spamkit.geoip), when one is found
    "Mail::SpamAssassin::Plugin::RelayCountry",
    # image parts' counts, sizes and names from the parser (spamkit.message.images)
    "Mail::SpamAssassin::Plugin::ImageInfo",
})
FEATURES = frozenset({  # `if can(Mail::SpamAssassin::Conf::X)` answers
    "feature_bug6558_free", "feature_welcomelist_blocklist", "perl_min_version_5010000",
    "feature_dns_block_rule", "feature_blocklist_welcomelist", "feature_originating_ip_headers",
    "has_check_for_spf_errors",
    # the evals of those plugins that spamkit implements (spamkit/rules/evals)
    "has_check_body_length", "has_check_for_ascii_text_illegal",
    # util_rb_* and clear_util_rb are read (spamkit/rules/registry.py)
    "feature_registryboundaries",
})

_RULE_KINDS = {kind.value: kind for kind in Kind}
_LIST_DIRECTIVES = {
    "whitelist_from": ("white", True), "welcomelist_from": ("white", True),
    "unwhitelist_from": ("white", False), "unwelcomelist_from": ("white", False),
    "blacklist_from": ("black", True), "blocklist_from": ("black", True),
    "unblacklist_from": ("black", False), "unblocklist_from": ("black", False),
}
# Directives spamkit understands to need nothing from it (network, DNS, plugin tuning).
_IGNORED_DIRECTIVES = frozenset({
    "lang", "test", "priority", "reuse", "report", "unsafe_report", "clear_report_template",
    "report_contact", "report_safe", "require_version", "loadplugin", "tryplugin",
    "bayes_ignore_header",
    "url_shortener", "uridnsbl_skip_domain",
    "urirhssub", "uridnssub", "urirhsbl", "uridnsbl", "askdns", "dns_block_rule",
    "dns_local_ports_avoid", "adsp_override", "originating_ip_headers",
    "trusted_networks", "internal_networks", "clear_trusted_networks", "skip_rbl_checks",
    "dns_available", "bayes_path", "bayes_file_mode", "lock_method", "pyzor_timeout",
    "use_razor2", "use_pyzor", "use_dcc", "ok_languages", "normalize_charset",
    "bayes_token_sources", "bayes_stopword", "bayes_stopword_languages",
    "bayes_expiry_max_db_size", "bayes_auto_expire", "bayes_learn_to_journal",
    "envelope_sender_header", "body_part_scan_size", "rawbody_part_scan_size",
    "tflags_bayes", "mimeheader_raw", "hashcash_accept", "shortcircuit",
    "geodb_module", "country_db_type",  # (the format is found from the file)
    # report templates and originating_ip_headers are not read, so neither is their reset
    "clear_unsafe_report_template", "clear_originating_ip_headers",
})
# The welcomelists that need SPF or DKIM to pass (spamkit.rules.evals.auth): each adds
# to the list of its own name, and each un- form takes off the list and its def_ list;
# the DKIM ones take one address and a signing domain a line, the others any number of
# addresses.
_AUTH_WELCOME_ADD = frozenset({"welcomelist_auth", "def_welcomelist_auth", "welcomelist_from_spf",
                               "def_welcomelist_from_spf", "welcomelist_from_dkim",
                               "def_welcomelist_from_dkim"})
_AUTH_WELCOME_REMOVE = {
    "unwelcomelist_auth": ("welcomelist_auth", "def_welcomelist_auth"),
    "unwelcomelist_from_spf": ("welcomelist_from_spf", "def_welcomelist_from_spf"),
    "unwelcomelist_from_dkim": ("welcomelist_from_dkim", "def_welcomelist_from_dkim"),
}
_AUTH_WELCOME_SPELLINGS = {**{name.replace("welcome", "white"): name
                              for name in (*_AUTH_WELCOME_ADD, *_AUTH_WELCOME_REMOVE)},
                           **{name: name for name in (*_AUTH_WELCOME_ADD, *_AUTH_WELCOME_REMOVE)}}
# the lists of addresses SpamAssassin keeps by setting (WLBLEval's welcomelist_to and its
# kin), of welcomelist_from_rcvd entries, and of WelcomeListSubject's texts; each in both
# spellings, under the 4.0 name (spamkit.rules.namedlists)
_SETTING_LISTS = {name: name for name in ("welcomelist_to", "blocklist_to", "more_spam_to", "all_spam_to",
                                          "welcomelist_allows_relays")}
_SETTING_LISTS.update({"whitelist_to": "welcomelist_to", "blacklist_to": "blocklist_to",
                       "whitelist_allows_relays": "welcomelist_allows_relays"})
_FROM_RELAY_LISTS = {"welcomelist_from_rcvd": "welcomelist_from_rcvd", "whitelist_from_rcvd": "welcomelist_from_rcvd",
                     "def_welcomelist_from_rcvd": "def_welcomelist_from_rcvd",
                     "def_whitelist_from_rcvd": "def_welcomelist_from_rcvd"}
_FROM_RELAY_REMOVE = frozenset({"unwelcomelist_from_rcvd", "unwhitelist_from_rcvd"})
_SUBJECT_LISTS = {"welcomelist_subject": "welcomelist_subject", "whitelist_subject": "welcomelist_subject",
                  "blocklist_subject": "blocklist_subject", "blacklist_subject": "blocklist_subject"}
# the named lists (spamkit.rules.namedlists), and the short forms of two host lists
_LIST_NAME = re.compile(r"\s*\((.+?)\)\s+")
_URI_HOST_SHORT_FORMS = {"blocklist_uri_host": "BLOCK", "blacklist_uri_host": "BLOCK",
                         "welcomelist_uri_host": "WELCOME", "whitelist_uri_host": "WELCOME"}
_NAMED_LIST_DIRECTIVES = frozenset({"enlist_addrlist", "enlist_uri_host", "delist_uri_host",
                                    *_URI_HOST_SHORT_FORMS})
_SETTING_FLOATS = {"required_score": "required_score", "required_hits": "required_score",
                   "bayes_auto_learn_threshold_spam": "autolearn_spam",
                   "bayes_auto_learn_threshold_nonspam": "autolearn_nonspam"}
_SETTING_BOOLS = {"use_bayes": "use_bayes", "bayes_auto_learn": "bayes_auto_learn",
                  "fold_headers": "fold_headers"}
# every directive read, for the "did you mean" of an unknown one
_KNOWN_DIRECTIVES = frozenset({
    *_RULE_KINDS, *_LIST_DIRECTIVES, *_IGNORED_DIRECTIVES, *_AUTH_WELCOME_SPELLINGS, *_SETTING_LISTS,
    *_FROM_RELAY_LISTS, *_FROM_RELAY_REMOVE, *_SUBJECT_LISTS, *_NAMED_LIST_DIRECTIVES,
    *_SETTING_FLOATS, *_SETTING_BOOLS,
    "if", "ifplugin", "else", "endif", "include", "describe", "score", "tflags", "replace_tag", "replace_pre",
    "replace_post", "replace_inter", "replace_rules", "replace_start", "replace_end",
    "freemail_domains", "freemail_whitelist", "freemail_welcomelist", "redirector_pattern",
    "util_rb_tld", "util_rb_2tld", "util_rb_3tld", "clear_util_rb", "geodb_options",
    "country_db_path", "geodb_search_path", "ok_locales", "time_limit", "rewrite_header",
    "add_header", "clear_headers",
})


@dataclass
class Definition:
    """A rule as read, before compiling (ReplaceTags may still rewrite its text)."""

    name: str
    kind: Kind
    text: str
    origin: str


@dataclass
class Settings:
    required_score: float | None = None
    rewrite_subject: str | None = None
    add_headers: list[tuple[str, str, str]] = field(default_factory=list)  # (all|spam|ham, name, text)
    use_bayes: bool | None = None
    bayes_auto_learn: bool | None = None
    fold_headers: bool | None = None  # None: not set, SpamAssassin's default (folded)
    autolearn_spam: float | None = None
    autolearn_nonspam: float | None = None
    # time_limit: seconds a message's rules may take (0: no limit; None: not set, the
    # Scanner's default); past it the rest are skipped, as SpamAssassin's time_limit
    time_limit: float | None = None
    # TIME_LIMIT_EXCEEDED's `score` line, if a file gives one (the hit is synthetic: no
    # file defines the rule itself)
    time_limit_scores: tuple[float, float, float, float] | None = None
    lists: dict[str, list[str]] = field(default_factory=lambda: {"white": [], "black": []})
    freemail_domains: list[str] = field(default_factory=list)
    freemail_welcome: list[str] = field(default_factory=list)
    # a country database named by geodb_options country:PATH or country_db_path, and the
    # directories geodb_search_path gives (spamkit.geoip)
    geodb_files: list[str] = field(default_factory=list)
    geodb_search_path: list[str] = field(default_factory=list)
    registry: RegistryLists = field(default_factory=RegistryLists)  # util_rb_*
    named_lists: NamedLists = field(default_factory=NamedLists)  # enlist_addrlist, enlist_uri_host
    # redirector_pattern: a link whose first capture is the link it redirects to
    # (spamkit.rules.sa_uris), as /regex/flags
    redirector_patterns: list[str] = field(default_factory=list)
    # ok_locales: the languages whose charsets are not "far away" (spamkit.rules.locales)
    ok_locales: list[str] = field(default_factory=lambda: ["all"])


@dataclass
class ParsedRules:
    """Everything the .cf files said, in the order they said it."""

    definitions: dict[str, Definition] = field(default_factory=dict)
    descriptions: dict[str, str] = field(default_factory=dict)
    scores: dict[str, tuple[float, float, float, float]] = field(default_factory=dict)
    tflags: dict[str, frozenset[str]] = field(default_factory=dict)
    replace_tags: dict[str, dict[str, str]] = field(
        default_factory=lambda: {"tag": {}, "pre": {}, "post": {}, "inter": {}})
    replace_rules: set[str] = field(default_factory=set)
    replace_delimiters: list[str] = field(default_factory=lambda: ["<", ">"])
    settings: Settings = field(default_factory=Settings)
    report: LoadReport = field(default_factory=LoadReport)
    # where each name's last score line is, and names defined only in a block an if or
    # ifplugin left out (a plugin spamkit does not have): for `reading_warnings`
    score_origins: dict[str, str] = field(default_factory=dict)
    # where each name's last describe and tflags lines are (directive -> name -> origin)
    naming_origins: dict[str, dict[str, str]] = field(
        default_factory=lambda: {"describe": {}, "tflags": {}})
    inactive: set[str] = field(default_factory=set)
    unknown_origins: dict[str, str] = field(default_factory=dict)  # directive -> first line


class CfReader:
    """Reads .cf files into one ParsedRules; later files override earlier ones."""

    def __init__(self, parsed: ParsedRules | None = None) -> None:
        self.parsed = parsed or ParsedRules()
        self._read: set[Path] = set()

    def read_path(self, path: Path) -> None:
        """A file, or a directory's .cf files in name order. A file already read is not
        read again, as SpamAssassin skips it, so includes cannot loop."""
        if path.is_dir():
            for child in sorted(path.glob("*.cf")):
                self.read_path(child)
            return
        resolved = path.resolve()
        if resolved in self._read:
            return
        self._read.add(resolved)
        try:
            data = path.read_bytes()
        except OSError as error:
            self.parsed.report.errors.append(f"{path}: cannot read: {error.strerror}")
            return
        try:
            data = without_bom(data, path)
        except ConfigError as error:  # (UTF-16)
            self.parsed.report.errors.append(str(error))
            return
        self.read_text(data.decode("utf-8", "replace"), str(path))

    def read_text(self, text: str, name: str) -> None:
        self.parsed.report.files += 1
        # a stack of (active, taken) for if/ifplugin ... else ... endif
        stack: list[bool] = []
        for number, raw in enumerate(text.splitlines(), start=1):
            line = _strip_comment(raw).strip()
            if not line:
                continue
            origin = f"{name}:{number}"
            directive, rest = _first_word(line)
            directive = directive.lower()
            if directive in ("if", "ifplugin"):
                condition = (rest in PLUGINS) if directive == "ifplugin" else _evaluate_if(rest, origin, self.parsed.report)
                stack.append(condition and all(stack))
                continue
            if directive == "else":
                if stack:
                    parent = all(stack[:-1])
                    stack[-1] = parent and not stack[-1]
                continue
            if directive == "endif":
                if stack:
                    stack.pop()
                else:
                    self.parsed.report.warnings.append(f"{origin}: endif without if")
                continue
            if not all(stack):
                if directive in _RULE_KINDS:
                    self.parsed.inactive.add(_first_word(rest)[0])
                continue
            if directive == "include":
                self._include(rest, name, origin)
                continue
            try:
                self._directive(directive, rest, origin)
            except ValueError as error:
                self.parsed.report.errors.append(f"{origin}: {error}")
        if stack:
            self.parsed.report.warnings.append(f"{name}: {len(stack)} if block(s) not closed")

    def _include(self, target: str, name: str, origin: str) -> None:
        """SpamAssassin's include: a file, or a directory's .cf files, named relative to
        the directory of the file that names it, read where the line stands. sa-update
        writes its channel's files as one file of includes (updates_spamassassin_org.cf)."""
        if not target:
            self.parsed.report.errors.append(f"{origin}: include needs a file name")
            return
        path = Path(target)
        if not path.is_absolute():
            path = Path(name).parent / path
        if not path.exists():  # (SpamAssassin passes over it without a word)
            self.parsed.report.warnings.append(f"{origin}: include {target}: no such file or directory")
            return
        self.read_path(path)

    def _directive(self, directive: str, rest: str, origin: str) -> None:
        parsed = self.parsed
        if directive in _RULE_KINDS:
            name, test = _first_word(rest)
            if not name or not test.strip():
                raise ValueError(f"{directive} needs a rule name and a test")
            _check_name(name)
            parsed.report.rules += 1
            parsed.definitions[name] = Definition(name, _RULE_KINDS[directive], test.strip(), origin)
        elif directive == "describe":
            name, text = _first_word(rest)
            parsed.descriptions[name] = text
            parsed.naming_origins[directive][name] = origin
        elif directive == "score":
            self._score(rest, origin)
        elif directive == "tflags":
            name, flags = _first_word(rest)
            parsed.tflags[name] = frozenset(flags.split())
            parsed.naming_origins[directive][name] = origin
        elif directive in ("replace_tag", "replace_pre", "replace_post", "replace_inter"):
            tag, value = _first_word(rest)
            parsed.replace_tags[directive.split("_", 1)[1]][tag] = value
        elif directive == "replace_rules":
            parsed.replace_rules.update(rest.split())
        elif directive in ("replace_start", "replace_end"):
            parsed.replace_delimiters[0 if directive == "replace_start" else 1] = rest.strip()
        elif directive in _LIST_DIRECTIVES:
            which, add = _LIST_DIRECTIVES[directive]
            entries = parsed.settings.lists[which]
            for pattern in rest.split():
                if add:
                    entries.append(pattern.lower())
                elif pattern.lower() in entries:
                    entries.remove(pattern.lower())
        elif directive == "freemail_domains":
            parsed.settings.freemail_domains.extend(rest.split())
        elif directive in ("freemail_whitelist", "freemail_welcomelist"):
            parsed.settings.freemail_welcome.extend(rest.split())
        elif directive == "redirector_pattern":
            compile_perl(rest.strip())  # (a bad one is reported with its line)
            parsed.settings.redirector_patterns.append(rest.strip())
        elif directive in _NAMED_LIST_DIRECTIVES:
            self._named_list(directive, rest)
        elif directive in _AUTH_WELCOME_SPELLINGS:
            self._authenticated_welcome(_AUTH_WELCOME_SPELLINGS[directive], rest)
        elif directive in _SETTING_LISTS or directive in _FROM_RELAY_REMOVE:
            if not rest.split():
                raise ValueError(f"{directive} needs at least one address")
            if directive in _FROM_RELAY_REMOVE:
                for pattern in rest.split():
                    parsed.settings.named_lists.unwelcome_from_relays(pattern)
            else:
                parsed.settings.named_lists.add_to_setting(_SETTING_LISTS[directive], rest.split())
        elif directive in _FROM_RELAY_LISTS:
            words = rest.split()
            if len(words) != 2:
                raise ValueError(f"{directive} takes an address and the domain or [address] of the relay "
                                 "it comes through")
            parsed.settings.named_lists.welcome_from_relay(_FROM_RELAY_LISTS[directive], *words)
        elif directive in _SUBJECT_LISTS:
            if not rest.strip():
                raise ValueError(f"{directive} needs the text of a Subject")
            parsed.settings.named_lists.add_subject(_SUBJECT_LISTS[directive], rest.strip())
        elif directive in ("util_rb_tld", "util_rb_2tld", "util_rb_3tld"):
            parsed.settings.registry.add(directive, rest)
        elif directive == "clear_util_rb":
            parsed.settings.registry.clear()
        elif directive in ("geodb_options", "country_db_path"):
            self._geodb_files(directive, rest)
        elif directive == "geodb_search_path":
            parsed.settings.geodb_search_path = rest.split()
        elif directive == "ok_locales":
            if not rest.split():
                raise ValueError("ok_locales needs \"all\" or the locales mail may be written for (en ja ...)")
            parsed.settings.ok_locales = rest.split()
        elif directive == "time_limit":
            seconds = _number(rest)
            if not seconds >= 0:  # (NaN too)
                raise ValueError(f"time_limit must be 0 (no limit) or more seconds, not {rest.strip()!r}")
            parsed.settings.time_limit = seconds
        elif directive in _SETTING_FLOATS:
            setattr(parsed.settings, _SETTING_FLOATS[directive], _number(rest))
        elif directive in _SETTING_BOOLS:
            setattr(parsed.settings, _SETTING_BOOLS[directive], rest.strip() not in ("0", ""))
        elif directive == "rewrite_header":
            header, text = _first_word(rest)
            if header.lower() == "subject":
                parsed.settings.rewrite_subject = text
        elif directive == "add_header":
            parts = rest.split(None, 2)
            if len(parts) < 3 or parts[0].lower() not in ("all", "spam", "ham"):
                raise ValueError("add_header needs all|spam|ham, a name and a text")
            parsed.settings.add_headers.append((parts[0].lower(), parts[1], parts[2]))
        elif directive == "clear_headers":
            parsed.settings.add_headers.clear()
        elif directive not in _IGNORED_DIRECTIVES:
            parsed.report.unknown_directives[directive] = parsed.report.unknown_directives.get(directive, 0) + 1
            parsed.unknown_origins.setdefault(directive, origin)

    def _named_list(self, directive: str, rest: str) -> None:
        """enlist_addrlist (NAME) ADDRESS..., enlist_uri_host (NAME) HOST...,
        delist_uri_host [(NAME)] HOST..., and the BLOCK and WELCOME lists' short forms."""
        lists = self.parsed.settings.named_lists
        match = _LIST_NAME.match(rest)
        name, entries = (match.group(1), rest[match.end():].split()) if match else (None, rest.split())
        if directive in _URI_HOST_SHORT_FORMS:
            name, entries = _URI_HOST_SHORT_FORMS[directive], rest.split()
        elif directive != "delist_uri_host" and name is None:
            raise ValueError(f"{directive} needs a list name in parentheses, then entries")
        if not entries:
            raise ValueError(f"{directive} needs at least one entry")
        if directive == "enlist_addrlist":
            lists.enlist_addresses(name or "", entries)
        elif directive == "delist_uri_host":
            lists.delist_uri_hosts(name, entries)
        else:
            lists.enlist_uri_hosts(name or "", entries)

    def _authenticated_welcome(self, directive: str, rest: str) -> None:
        """welcomelist_auth ADDRESS..., welcomelist_from_spf ADDRESS..., welcomelist_from_dkim
        ADDRESS [SIGNING-DOMAIN], their def_ forms, and the unwelcomelist_ ones (which take
        an entry off both the list and its def_ list, as SpamAssassin's do)."""
        lists = self.parsed.settings.named_lists
        words = rest.split()
        if not words:
            raise ValueError(f"{directive} needs an address")
        dkim = directive.endswith("_dkim")
        if dkim and len(words) > 2:
            raise ValueError(f"{directive} takes one address and at most one signing domain")
        if directive in _AUTH_WELCOME_ADD:
            for address in words[:1] if dkim else words:
                lists.welcome_authenticated(directive, address, words[1] if dkim and len(words) > 1 else "")
            return
        for name in _AUTH_WELCOME_REMOVE[directive]:
            for address in words[:1] if dkim else words:
                lists.unwelcome_authenticated(name, address, (words[1] if len(words) > 1 else "") if dkim else None)

    def _geodb_files(self, directive: str, rest: str) -> None:
        """geodb_options TYPE:PATH ... (the country and city entries: either gives the
        country) or the older country_db_path PATH."""
        if directive == "country_db_path":
            paths = rest.split()[:1]
        else:
            paths = [path for kind, _, path in (word.partition(":") for word in rest.split())
                     if kind.lower() in ("country", "city") and path]
        if paths:
            self.parsed.settings.geodb_files = paths
        elif directive == "country_db_path":
            raise ValueError("country_db_path names no file (e.g. /usr/share/GeoIP/GeoLite2-Country.mmdb)")

    def _score(self, rest: str, origin: str) -> None:
        name, text = _first_word(rest)
        _check_name(name)
        relative = text.startswith("(")
        numbers = [_number(v) for v in text.replace("(", " ").replace(")", " ").split()]
        if len(numbers) == 1:
            numbers *= 4
        if len(numbers) != 4:
            raise ValueError(f"score {name}: give one score or four, not {len(numbers)}")
        scores = (numbers[0], numbers[1], numbers[2], numbers[3])
        if relative:
            earlier = self.parsed.scores.get(name)
            if earlier is None:
                raise ValueError(f"relative score for {name}, which has no score to add to")
            scores = (earlier[0] + scores[0], earlier[1] + scores[1],
                      earlier[2] + scores[2], earlier[3] + scores[3])
        self.parsed.scores[name] = scores
        self.parsed.score_origins[name] = origin


def reading_warnings(parsed: ParsedRules, meta_dependencies: dict[str, tuple[str, ...]]) -> list[str]:
    """Mistakes spamkit would otherwise pass over in silence, each with its file and line:
    a directive spamkit does not know (`heder` skips the rule it was to define), and a
    rule name in a score, a meta, a describe or a tflags line that no file defines but
    that is one letter or two from one that is (`score BAYES99 5` leaves BAYES_99 at its
    score, `tflags LOCAL_GOD nice` leaves LOCAL_GOOD without its flag). A name with no such
    neighbour is not warned of: SpamAssassin's own files score rules that some plugin or
    release defines (SpamAssassin stopped warning of those, its bug 5514), and a name
    defined in a block left out for a plugin spamkit does not have is not undefined."""
    warnings = []
    for directive, origin in parsed.unknown_origins.items():
        count = parsed.report.unknown_directives[directive]
        skipped = f"{count} lines, the first here: spamkit skips them" if count > 1 else "spamkit skips the line"
        close = _close_name(directive, _KNOWN_DIRECTIVES)
        warnings.append(f"{origin}: unknown directive {directive!r} ({skipped})"
                        + (f"; did you mean {close}?" if close else ""))
    known = parsed.definitions.keys() | parsed.inactive
    scored = [name for name in parsed.definitions if not name.startswith("__")]  # (sub-rules have no score)
    for name, origin in parsed.score_origins.items():
        if name not in known and (close := _close_name(name, scored)):
            warnings.append(f"{origin}: score for {name}, which no rule file defines; did you mean {close}?")
    for directive, origins in parsed.naming_origins.items():  # (tflags nice, noautolearn, net... lost)
        for name, origin in origins.items():
            if name not in known and (close := _close_name(name, parsed.definitions.keys())):
                warnings.append(f"{origin}: {directive} for {name}, which no rule file defines; "
                                f"did you mean {close}?")
    for meta, dependencies in meta_dependencies.items():
        for name in dependencies:
            if name not in known and (close := _close_name(name, parsed.definitions.keys() - {meta})):
                warnings.append(f"{parsed.definitions[meta].origin}: meta {meta} reads {name}, which no "
                                f"rule file defines (it counts as not hit); did you mean {close}?")
    return warnings


def _close_name(name: str, names: Iterable[str]) -> str | None:
    """A name that `name` looks like a typo of (not its own sub-rule `__NAME` or testing
    rule `T_NAME`, which SpamAssassin's files define beside scores for NAME)."""
    import difflib

    bare = _bare_name(name)
    choices = [other for other in names if _bare_name(other) != bare]
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.85)
    return close[0] if close else None


def _bare_name(name: str) -> str:
    return name.lstrip("_").removeprefix("T_").lstrip("_")


def _first_word(text: str) -> tuple[str, str]:
    """('word', 'the rest') split at the first run of spaces or tabs."""
    parts = text.strip().split(None, 1)
    if not parts:
        return "", ""
    return parts[0], parts[1].strip() if len(parts) > 1 else ""


def _strip_comment(line: str) -> str:
    """Cut a '#' comment; '\\#' is a literal '#'."""
    index = 0
    while True:
        index = line.find("#", index)
        if index < 0:
            return line
        if index == 0 or line[index - 1] != "\\":
            return line[:index]
        index += 1


_NAME = re.compile(r"^[A-Za-z0-9_]{1,200}$")


def _check_name(name: str) -> None:
    if not _NAME.match(name):
        raise ValueError(f"bad rule name {name!r}")


def _number(text: str) -> float:
    try:
        return float(text.strip())
    except ValueError:
        raise ValueError(f"not a number: {text.strip()!r}") from None


_IF_TOKEN = re.compile(r"\s*(?:(?P<call>can|plugin|has)\s*\(\s*(?P<arg>[\w:]+)\s*\)|(?P<word>version|perl_version)"
                       r"|(?P<number>\d+(?:\.\d+)?)|(?P<op>&&|\|\||!=|==|>=|<=|[<>()!]))")


def _evaluate_if(expression: str, origin: str, report: LoadReport) -> bool:
    """An `if` condition over version, perl_version, can(...), plugin(...)."""
    python: list[str] = []
    position = 0
    expression = expression.strip()
    while position < len(expression):
        match = _IF_TOKEN.match(expression, position)
        if match is None or match.end() == position:
            report.warnings.append(f"{origin}: cannot read condition {expression!r}; block skipped")
            return False
        position = match.end()
        if match.group("call"):
            arg = match.group("arg")
            known = arg.rsplit("::", 1)[-1] in FEATURES if match.group("call") != "plugin" else arg in PLUGINS
            python.append("True" if known else "False")
        elif match.group("word"):
            python.append(repr(SPAMASSASSIN_VERSION if match.group("word") == "version" else PERL_VERSION))
        elif match.group("number"):
            python.append(match.group("number"))
        else:
            python.append({"&&": " and ", "||": " or ", "!": " not "}.get(match.group("op"), match.group("op")))
    try:
        return bool(eval("".join(python), {"__builtins__": {}}, {}))  # noqa: S307 - tokens checked above
    except Exception:
        report.warnings.append(f"{origin}: cannot evaluate condition {expression!r}; block skipped")
        return False
