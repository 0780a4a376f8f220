"""The named lists of SpamAssassin's rule files: addresses (`enlist_addrlist (NAME) ...`)
and URI hosts (`enlist_uri_host (NAME) ...`, `delist_uri_host`, `blocklist_uri_host`,
`welcomelist_uri_host`), as Conf.pm keeps them. The WLBLEval evals read them
(spamkit.rules.evals.wlbl)."""

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

    def enlist_addresses(self, name: str, patterns: list[str]) -> None:
        entries = self.addresses.setdefault(name, {})
        for pattern in patterns:
            entries[pattern.lower()] = address_glob(pattern)

    def enlist_uri_hosts(self, name: str, hosts: list[str]) -> None:
        entries = self.uri_hosts.setdefault(name, {})
        for host in hosts:
            host = host.lower()
            entries[host.removeprefix("!")] = not host.startswith("!")

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
