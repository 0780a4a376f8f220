"""URL tokens: scheme, host, registrable domain, and the words of the path."""

from __future__ import annotations

import functools
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


def ascii_host(name: str) -> str:
    """A host name as DNS carries it: lower case, IDNA (xn--) for one that is not ASCII;
    one that IDNA cannot encode is kept as it is (its lookups find nothing)."""
    name = name.lower()
    if not name.isascii():
        try:
            name = name.encode("idna").decode("ascii")
        except UnicodeError:
            pass
    return name


MANY_URLS_TOKEN = "url:many"  # a message with more than MAX_URLS


def _host(authority: str) -> str:
    """The host of a URL's authority (user@host:port), lower-case, without end dots."""
    return authority.rpartition("@")[2].split(":", 1)[0].lower().strip(".")


def url_host(url: str) -> str:
    """The host a link points to ("" for mailto:, cid:, javascript:, data: and the like)."""
    match = _URL.match(url)
    if match is None:
        return ""
    scheme, authority, _ = match.groups()
    if (scheme or "").lower() in ("mailto", "cid", "javascript", "data"):
        return ""
    return _host(authority)


def url_tokens(urls: list[str]) -> set[str]:
    """The tokens of a message's URLs (the C core's url_keys gives their keys for ASCII
    URLs; this is the reference it is tested against)."""
    out: set[str] = set()
    for url in set(urls[:MAX_URLS]):
        out.update(tokens_of_url(url))
    if len(urls) > MAX_URLS:
        out.add(MANY_URLS_TOKEN)
    return out


@functools.lru_cache(maxsize=4096)
def tokens_of_url(url: str) -> tuple[str, ...]:
    """One URL's tokens. Remembered: the same links come back in message after message
    (41% of the corpus's URLs repeat one seen before), and the memory is bounded."""
    match = _URL.match(url)
    if match is None:
        return ()
    scheme, authority, rest = match.groups()
    scheme = (scheme or "").lower()
    if scheme in ("mailto",):
        return ("url:mailto",)
    if scheme in ("cid", "javascript", "data"):
        return ("url:scheme:" + scheme,)
    out = []
    host = _host(authority)
    if "@" in authority:
        out.append("url:userinfo")  # http://bank.com@evil.example/ is a classic trick
    if not host:
        return tuple(out)
    out.append("url:scheme:" + (scheme or "none"))
    if _IP_HOST.match(host):
        out.append("url:ip")
        out.append("url:ip:" + ".".join(host.split(".")[:3]))
    else:
        out.append("url:host:" + host)
        out.append("url:domain:" + registrable_domain(host))
    out.extend("url:path:" + word for word in _PATH_WORD.findall(rest.lower()[:200]))
    if "%" in rest:
        out.append("url:escaped")
    return tuple(out)
