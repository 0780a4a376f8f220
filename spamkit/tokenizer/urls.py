"""URL tokens: scheme, host, registrable domain, and the words of the path."""

from __future__ import annotations

import re

_URL = re.compile(r"^\s*(?:([a-zA-Z][a-zA-Z0-9+.-]{0,15}):)?(?://)?([^/?#\s]*)([^\s]*)")
_IP_HOST = re.compile(r"^\d{1,3}(?:\.\d{1,3}){3}$")
_PATH_WORD = re.compile(r"[A-Za-z0-9]{3,20}")
# Second-level labels under which registrations happen one level deeper (co.uk, com.au).
_SHORT_SLDS = frozenset({"co", "com", "net", "org", "gov", "ac", "edu", "ne", "or", "go"})
MAX_URLS = 200


def registrable_domain(host: str) -> str:
    """example.co.uk for www.mail.example.co.uk: a heuristic, not the Public Suffix List."""
    labels = host.split(".")
    if len(labels) >= 3 and labels[-2] in _SHORT_SLDS and len(labels[-1]) == 2:
        return ".".join(labels[-3:])
    return ".".join(labels[-2:])


def url_tokens(urls: list[str]) -> set[str]:
    out: set[str] = set()
    for url in set(urls[:MAX_URLS]):
        match = _URL.match(url)
        if match is None:
            continue
        scheme, authority, rest = match.groups()
        scheme = (scheme or "").lower()
        if scheme in ("mailto",):
            out.add("url:mailto")
            continue
        if scheme in ("cid", "javascript", "data"):
            out.add("url:scheme:" + scheme)
            continue
        host = authority.rpartition("@")[2].split(":", 1)[0].lower().strip(".")
        if "@" in authority:
            out.add("url:userinfo")  # http://bank.com@evil.example/ is a classic trick
        if not host:
            continue
        out.add("url:scheme:" + (scheme or "none"))
        if _IP_HOST.match(host):
            out.add("url:ip")
            out.add("url:ip:" + ".".join(host.split(".")[:3]))
        else:
            out.add("url:host:" + host)
            out.add("url:domain:" + registrable_domain(host))
        for word in _PATH_WORD.findall(rest.lower()[:200]):
            out.add("url:path:" + word)
        if "%" in rest:
            out.add("url:escaped")
    if len(urls) > MAX_URLS:
        out.add("url:many")
    return out
