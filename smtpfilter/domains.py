"""Organizational domains (example.co.uk for mail.example.co.uk): what DMARC aligns on and
what URI blocklists are asked about.

By the Public Suffix List when Debian's publicsuffix package is installed (read at run
time, never copied here), else by the URL tokens' heuristic.
"""

from __future__ import annotations

import functools
from pathlib import Path

from spamkit.tokenizer.urls import ascii_host, registrable_domain

PUBLIC_SUFFIX_LIST = Path("/usr/share/publicsuffix/public_suffix_list.dat")


def ascii_domain(domain: str) -> str:
    """A domain as DNS carries it: lower case, no trailing dot, an international one in
    its IDNA form (xn--...; RFC 8616: SPF, DKIM and DMARC work on these). One that IDNA
    cannot encode is left as it is, and its lookups find nothing."""
    return ascii_host(domain.strip().rstrip("."))


def organizational_domain(domain: str) -> str:
    """The registered domain (example.co.uk for mail.example.co.uk) by the Public Suffix
    List when Debian's publicsuffix package is installed, else by a heuristic."""
    labels = domain.lower().rstrip(".").split(".")
    rules = _public_suffix_rules()
    if rules is None:
        return registrable_domain(".".join(labels))  # the URL tokens' heuristic
    normal, wildcard, exception = rules
    suffix_length = 1  # the implicit "*" rule: the last label is a public suffix
    for start in range(len(labels)):
        candidate = ".".join(labels[start:])
        if candidate in exception:
            suffix_length = len(labels) - start - 1
            break
        if candidate in normal or ".".join(labels[start + 1:]) in wildcard:
            suffix_length = len(labels) - start
            break
    return ".".join(labels[-(suffix_length + 1):]) if len(labels) > suffix_length else domain


@functools.cache
def _public_suffix_rules() -> tuple[frozenset[str], frozenset[str], frozenset[str]] | None:
    try:
        lines = PUBLIC_SUFFIX_LIST.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    normal, wildcard, exception = set(), set(), set()
    for line in lines:
        rule = line.strip().split(" ")[0].lower()
        if not rule or rule.startswith("//"):
            continue
        if not rule.isascii():
            try:
                rule = rule.encode("idna").decode("ascii")  # as DNS names arrive
            except UnicodeError:
                continue
        if rule.startswith("!"):
            exception.add(rule[1:])
        elif rule.startswith("*."):
            wildcard.add(rule[2:])
        else:
            normal.add(rule)
    return frozenset(normal), frozenset(wildcard), frozenset(exception)
