"""The address lists of SpamAssassin's rule files, as Conf.pm keeps them: the named ones
(`enlist_addrlist (NAME) ...`), URI hosts (`enlist_uri_host (NAME) ...`,
`delist_uri_host`, `blocklist_uri_host`, `welcomelist_uri_host`), the recipient lists
(welcomelist_to and its kin), the welcomelists that need a relay (welcomelist_from_rcvd)
or SPF and DKIM (welcomelist_auth), and the Subject lists. The WLBLEval evals read them
(spamkit.rules.evals.wlbl, .auth).

welcomelist_from and blocklist_from are not here: they join spamkit's own lists
(spamkit.lists), global and per recipient."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field


@dataclass
class NamedLists:
    """The lists the rule files named: address globs and URI host verdicts, by list."""

    addresses: dict[str, dict[str, re.Pattern[str]]] = field(default_factory=dict)
    # host -> True (listed), False ("!host": a subdomain excepted from a listed domain)
    uri_hosts: dict[str, dict[str, bool]] = field(default_factory=dict)
    # the welcomelists that need SPF or DKIM to pass (welcomelist_auth, def_welcomelist_auth,
    # [def_]welcomelist_from_spf, [def_]welcomelist_from_dkim; spamkit.rules.evals.auth):
    # list -> address pattern -> the signing domains a DKIM entry accepts ("" for the
    # author's own domain). The patterns are compiled on first use (lazy_address_glob):
    # Debian's 1,004 entries took 50 ms a load, and only the SMTP filter's scans read them.
    authenticated: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    # per list, its patterns by the domain they name ("*@bank.example": "bank.example";
    # "*@*.bank.example": ".bank.example"), and the rest: an address is tried against the
    # few for its domain and that domain's parents, not all of Debian's 1,004 (0.3 ms a
    # message with SPF or DKIM passing). Built on first use, dropped on every change.
    _by_domain: dict[str, tuple[dict[str, list[str]], list[str]]] = field(
        default_factory=dict, repr=False, compare=False)
    # lists of address patterns by SpamAssassin's setting: welcomelist_to, blocklist_to,
    # more_spam_to, all_spam_to, welcomelist_allows_relays (whitelist_ spellings folded in)
    by_setting: dict[str, dict[str, re.Pattern[str]]] = field(default_factory=dict)
    # welcomelist_from_rcvd and def_welcomelist_from_rcvd: address pattern -> the relays'
    # domains or [addresses] that vouch for it, in the order given
    from_relays: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    # welcomelist_subject and blocklist_subject: the text as written (lower case) -> its glob
    subjects: dict[str, dict[str, SubjectGlob]] = field(default_factory=dict)

    def enlist_addresses(self, name: str, patterns: list[str]) -> None:
        _add_globs(self.addresses.setdefault(name, {}), patterns)

    def enlisted(self, name: str, address: str) -> bool:
        """The (lower-case) address is on the named list (enlist_addrlist); no for a list
        never enlisted to (SpamAssassin warns of it, and says no)."""
        return _any_glob(self.addresses.get(name), address)

    def enlist_uri_hosts(self, name: str, hosts: list[str]) -> None:
        entries = self.uri_hosts.setdefault(name, {})
        for host in hosts:
            host = host.lower()
            entries[host.removeprefix("!")] = not host.startswith("!")

    def add_to_setting(self, setting: str, patterns: list[str]) -> None:
        _add_globs(self.by_setting.setdefault(setting, {}), patterns)

    def in_setting(self, setting: str, address: str) -> bool:
        """The (lower-case) address matches a pattern of the setting's list."""
        return _any_glob(self.by_setting.get(setting), address)

    def welcome_from_relay(self, setting: str, pattern: str, relay: str) -> None:
        """One welcomelist_from_rcvd line: the pattern, and a relay that vouches for it (a
        pattern on several lines keeps every relay, as Conf.pm does)."""
        relays = self.from_relays.setdefault(setting, {}).setdefault(pattern.lower(), [])
        relays.append(relay.lower())

    def unwelcome_from_relays(self, pattern: str) -> None:
        """unwelcomelist_from_rcvd: the pattern leaves both lists, whatever its relays."""
        for entries in self.from_relays.values():
            entries.pop(pattern.lower(), None)

    def add_subject(self, setting: str, text: str) -> None:
        self.subjects.setdefault(setting, {})[text.lower()] = SubjectGlob(text.lower())

    def subject_listed(self, setting: str, subject: str) -> bool:
        """The (lower-case) Subject holds a text of the list, its globs as SpamAssassin's
        WelcomeListSubject reads them."""
        entries = self.subjects.get(setting)
        if not entries:
            return False
        return subject in entries or any(glob.search(subject) for glob in entries.values())

    def welcome_authenticated(self, name: str, pattern: str, signing_domain: str = "") -> None:
        """An address pattern on welcomelist `name`; for the DKIM lists, with the signing
        domain accepted (one line each, as DKIM.pm keeps them)."""
        self._by_domain.pop(name, None)
        domains = self.authenticated.setdefault(name, {}).setdefault(pattern.lower(), [])
        if signing_domain.lower() not in domains:
            domains.append(signing_domain.lower())

    def unwelcome_authenticated(self, name: str, pattern: str, signing_domain: str | None = None) -> None:
        """Take an entry off: the whole pattern, or (DKIM lists) that signing domain of it,
        the pattern going once it accepts none."""
        self._by_domain.pop(name, None)
        entries = self.authenticated.get(name, {})
        domains = entries.get(pattern.lower())
        if domains is None:
            return
        if signing_domain is not None:
            domains[:] = [domain for domain in domains if domain != signing_domain.lower()]
            if domains:
                return
        del entries[pattern.lower()]

    def authenticated_matches(self, name: str, address: str) -> list[list[str]]:
        """The signing-domain lists of every entry of welcomelist `name` whose pattern the
        (lower-case) address matches: "*@example.com" and "joe@example.com" both count
        for joe. A pattern whose domain is written out ("bank.example", "*.bank.example")
        can match only an address in that domain (below it), so only those patterns, and
        the ones with other wildcards in their domain, are tried."""
        entries = self.authenticated.get(name)
        if not entries:
            return []
        index = self._by_domain.get(name)
        if index is None:
            index = self._by_domain[name] = _index_by_domain(entries)
        by_domain, others = index
        domain = address.rpartition("@")[2]
        keys = [domain, *(domain[dot:] for dot, c in enumerate(domain) if c == ".")]
        candidates = [pattern for key in keys for pattern in by_domain.get(key, ())]
        return [entries[pattern] for pattern in [*candidates, *others]
                if lazy_address_glob(pattern).match(address)]

    def delist_uri_hosts(self, name: str | None, hosts: list[str]) -> None:
        """From the named list, or from every list made so far when none is named."""
        names = [name] if name is not None else list(self.uri_hosts)
        for listed in names:
            for host in hosts:
                self.uri_hosts.get(listed, {}).pop(host.lower().removeprefix("!"), None)


def _add_globs(entries: dict[str, re.Pattern[str]], patterns: list[str]) -> None:
    for pattern in patterns:
        entries[pattern.lower()] = address_glob(pattern)


def _any_glob(entries: dict[str, re.Pattern[str]] | None, address: str) -> bool:
    """The address is a pattern of `entries` as written, or matches one (Conf.pm's
    _check_welcomelist: the first catches what address_glob's rewriting would miss)."""
    if not entries:
        return False
    return address in entries or any(glob.match(address) for glob in entries.values())


def _index_by_domain(patterns: dict[str, list[str]]) -> tuple[dict[str, list[str]], list[str]]:
    """(key -> its patterns, the other patterns), each in the order given. The key is the
    domain a pattern writes out ("bank.example"), or with "*." before it, "." and the rest
    (".bank.example": any domain below it). A domain with other wildcards, or with a
    character address_glob rewrites, goes to the others."""
    by_domain: dict[str, list[str]] = {}
    others: list[str] = []
    for pattern in patterns:
        _, at, domain = pattern.rpartition("@")
        key = domain[1:] if domain.startswith("*.") else domain
        if at and key and not any(c in key for c in "*?\0\\("):
            by_domain.setdefault(key, []).append(pattern)
        else:
            others.append(pattern)
    return by_domain, others


@functools.lru_cache(maxsize=None)
def lazy_address_glob(pattern: str) -> re.Pattern[str]:
    """address_glob, compiled the first time a pattern is asked for (a process keeps it)."""
    return address_glob(pattern)


def address_glob(pattern: str) -> re.Pattern[str]:
    """SpamAssassin's address pattern: `*` any run, `?` one character, every other
    character itself, the whole address, case ignored (Conf::Parser's add_to_addrlist)."""
    text = re.sub(r"[\0\\(]", "_", pattern.lower())
    text = re.sub(r"([^*?_a-zA-Z0-9])", r"\\\1", text).replace("?", ".")
    if "*" not in text:
        return re.compile("^" + text + "$")
    first, *middle, last = re.split(r"\*+", text)
    # Each run between two stars matched where it first can and not tried again: the
    # same answers as ".*" for each star (a later place only leaves less room for the
    # rest; addresses hold no line break, which "." would not cross), and no backtracking.
    # As ".*" each, "*@*.example" backtracked over an address of "a@" repeated for
    # seconds, once for every such list entry.
    return re.compile("^" + first + "".join(f"(?>.*?{run})" for run in middle) + ".*" + last + "$")


class SubjectGlob:
    """A welcomelist_subject text: found anywhere in the Subject, "*" any run and "?" any
    one character, neither across a line break (WelcomeListSubject's regex: ".*" and ".").

    Matched a run at a time, each where it first fits (which leaves the most room for the
    rest), so a search is linear in the Subject: as one regex, "a*b" over a Subject of
    100,000 "a"s and no "b" is tried from every "a" to the end.
    """

    def __init__(self, text: str) -> None:
        runs = [run for run in re.split(r"\*+", text) if run]
        self._runs = [re.compile(re.escape(run).replace(r"\?", "[^\n]")) for run in runs]

    def search(self, subject: str) -> bool:
        if not self._runs:
            return True  # "*" alone (or nothing): any Subject
        return any(self._in_line(line) for line in subject.split("\n"))

    def _in_line(self, line: str) -> bool:
        position = 0
        for run in self._runs:
            found = run.search(line, position)
            if found is None:
                return False
            position = found.end()
        return True
