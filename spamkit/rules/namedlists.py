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
        domains = self.authenticated.setdefault(name, {}).setdefault(pattern.lower(), [])
        if signing_domain.lower() not in domains:
            domains.append(signing_domain.lower())

    def unwelcome_authenticated(self, name: str, pattern: str, signing_domain: str | None = None) -> None:
        """Take an entry off: the whole pattern, or (DKIM lists) that signing domain of it,
        the pattern going once it accepts none."""
        entries = self.authenticated.get(name, {})
        domains = entries.get(pattern.lower())
        if domains is None:
            return
        if signing_domain is not None:
            domains[:] = [domain for domain in domains if domain != signing_domain.lower()]
            if domains:
                return
        del entries[pattern.lower()]

    def delist_uri_hosts(self, name: str | None, hosts: list[str]) -> None:
        """From the named list, or from every list made so far when none is named."""
        names = [name] if name is not None else list(self.uri_hosts)
        for listed in names:
            for host in hosts:
                self.uri_hosts.get(listed, {}).pop(host.lower().removeprefix("!"), None)


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
