"""SpamAssassin's SPF, DKIM and DMARC evals, answered from the headers the SMTP filter's
`spf`, `dkim` and `dmarc` checks write at the top of the message: Received-SPF and
Authentication-Results.

SpamAssassin flags these rules `net` (it makes the lookups itself); spamkit runs them
because the lookups were already made, at the door, by the filter (they are among
spamkit.rules.evals.RECORDED_RESULT_EVALS). Only the topmost header of each kind is
read, as SpamAssassin does with `use_newest_received_spf_header`: that is the one our
filter wrote, and the dkim and dmarc filters remove any Authentication-Results that
claims to be ours. A
message that never went through the filter (`spamkit check` of a file) may carry a
sender's own header; the most it can earn is DKIM_VALID's or SPF_PASS's near-zero
score, and a forged failure only hurts its sender.

The welcomelists that need SPF or DKIM to pass (def_welcomelist_auth and the like, worth
-7.5 to -100 points) are different: they read only what the filter verified as the
message arrived, handed to the scan (`Verified`), never a header (decision 0052).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from spamkit.lazyregex import LazyPattern

if TYPE_CHECKING:
    from spamkit.rules.context import MessageContext

_COMMENT = LazyPattern(r"\([^()]*\)")
_METHOD = LazyPattern(r"\s*([\w.-]+)\s*=\s*([\w-]+)(.*)", re.DOTALL)
# a property (header.d=example.com) is a run of word characters, "." and "-" whose name
# part has a dot inside it, then "=" and a value (_properties)
_PROPERTY_RUN = LazyPattern(r"[\w.-]+")
_PROPERTY_VALUE = LazyPattern(r"\s*=\s*(\"[^\"]*\"|[^\s;]+)")
_SIGNATURE_DOMAIN = LazyPattern(r"(?:^|;)\s*d\s*=\s*([^\s;]+)")
_RESULT = LazyPattern(r"\s*(pass|fail|softfail|neutral|none|permerror|temperror)\b", re.IGNORECASE)
_IDENTITY = LazyPattern(r"\bidentity\s*=\s*\"?(\w+)", re.IGNORECASE)


def spf_results(context: MessageContext) -> dict[str, str]:
    """{"mailfrom": result, "helo": result} from the topmost header of each identity."""
    cached = context.cache.get("spf")
    if isinstance(cached, dict):
        return cached
    results: dict[str, str] = {}
    for value in context.header_values("received-spf"):
        result = _RESULT.match(value)
        if result is None:
            continue
        identity = _IDENTITY.search(value)
        kind = "helo" if identity is not None and identity.group(1).lower() == "helo" else "mailfrom"
        results.setdefault(kind, result.group(1).lower())
    context.cache["spf"] = results
    return results


def _spf_eval(identity: str, result: str) -> Callable[[MessageContext], bool]:
    def check(context: MessageContext) -> bool:
        return spf_results(context).get(identity) == result

    check.__doc__ = f"The {identity} identity's SPF result is {result}."
    return check


def authentication_results(context: MessageContext) -> dict[str, list[dict[str, str]]]:
    """{method: [{"result": ..., "header.d": ..., ...}]}, each method's entries from the
    topmost Authentication-Results header that has that method."""
    cached = context.cache.get("authres")
    if isinstance(cached, dict):
        return cached
    results: dict[str, list[dict[str, str]]] = {}
    for value in context.header_values("authentication-results"):
        found: dict[str, list[dict[str, str]]] = {}
        for part in _COMMENT.sub(" ", value).split(";")[1:]:
            match = _METHOD.match(part)
            if match is None:
                continue
            entry = {"result": match.group(2).lower()}
            entry.update((name.lower(), text.strip('"').lower())
                         for name, text in _properties(match.group(3)))
            found.setdefault(match.group(1).lower(), []).append(entry)
        for method, entries in found.items():
            results.setdefault(method, entries)
    context.cache["authres"] = results
    return results


def _properties(text: str) -> list[tuple[str, str]]:
    r"""What ([\w-]+\.[\w.-]+)\s*=\s*("[^"]*"|[^\s;]+) finds all of, found in linear
    time: as one regex it was tried from every character of a run, and a header of
    "a." repeated took 40 s. A run of [\w.-] followed by "=" and a value holds a
    property from its first character other than "." when a dot comes after that and
    before the run's last character; no later start in the run can do better."""
    found = []
    position = 0
    while (run := _PROPERTY_RUN.search(text, position)) is not None:
        value = _PROPERTY_VALUE.match(text, run.end())
        start = run.end() - len(run.group().lstrip("."))
        dot = text.find(".", start, run.end())
        if value is not None and start < dot < run.end() - 1:
            found.append((text[start:run.end()], value.group(1)))
            position = value.end()
        else:
            position = run.end()
    return found


def _passing_dkim_domains(context: MessageContext) -> list[str]:
    return [entry.get("header.d", "") for entry in authentication_results(context).get("dkim", [])
            if entry["result"] == "pass"]


def _within(domain: str, of: str) -> bool:
    return domain == of or domain.endswith("." + of)


def _domain_of(address: str | None) -> str:
    return (address or "").strip().strip("<>").rpartition("@")[2].lower().rstrip(".")


def _dkim_checked(context: MessageContext) -> bool:
    """Whether the dkim filter looked at this message. Where it did not, every DKIM eval
    is false, as in SpamAssassin without network tests: DKIM_SIGNED alone would make
    DKIM_INVALID (signed && !valid) hit every signed message."""
    return "dkim" in authentication_results(context)


def check_dkim_signed(context: MessageContext, *domains: str) -> bool:
    """A DKIM signature is there (valid or not); with domains, one signed by one of them."""
    signatures = context.header_values("dkim-signature")
    if not _dkim_checked(context):
        return False
    if not domains:
        return bool(signatures)
    signed = {match.group(1).lower() for value in signatures
              for match in [_SIGNATURE_DOMAIN.search(value)] if match}
    return any(_within(d, wanted.lower()) for d in signed for wanted in domains)


def check_dkim_valid(context: MessageContext, *domains: str) -> bool:
    """A signature verified; with domains, one of a signing domain among them."""
    passing = _passing_dkim_domains(context)
    if not domains:
        return bool(passing)
    return any(_within(d, wanted.lower()) for d in passing for wanted in domains)


def check_dkim_valid_author_sig(context: MessageContext) -> bool:
    """A signature of the From address's domain (or a parent of it) verified."""
    author = _domain_of(context.from_address)
    return bool(author) and any(_within(author, d) for d in _passing_dkim_domains(context) if d)


def check_dkim_valid_envelopefrom(context: MessageContext) -> bool:
    """A signature of the envelope sender's domain (or a parent of it) verified."""
    envelope = _domain_of(context.envelope_from or next(iter(context.header_values("return-path")), ""))
    return bool(envelope) and any(_within(envelope, d) for d in _passing_dkim_domains(context) if d)


def check_dkim_dependable(context: MessageContext) -> bool:
    """SpamAssassin says false when it verified only the start of a long message; the
    dkim filter verifies all of it."""
    return _dkim_checked(context)


def _matching(context: MessageContext, name: str, address: str) -> list[list[str]]:
    """The signing-domain lists of welcomelist `name`'s entries that `address` matches."""
    lists = context.named_lists
    return lists.authenticated_matches(name, address) if lists is not None else []


def _dkim_welcomelisted(context: MessageContext, lists: tuple[str, str]) -> bool:
    """A From address is on `lists` ([def_]welcomelist_from_dkim, [def_]welcomelist_auth)
    and the filter verified a DKIM signature whose domain that entry accepts: by default
    (always, for a welcomelist_auth entry) the author's own domain exactly; else the
    domain the entry names, or, with "*." or "." before it, any domain below it. As
    DKIM.pm's _check_dkim_welcomelist: a signature's domain here is its identity's (i=
    after the "@", which is d= unless the signer names a subdomain)."""
    signers = context.verified.dkim_domains if context.verified is not None else ()
    if not signers:
        return False
    from_dkim, auth = lists
    for author in context.addresses("From"):
        author_domain = author.rpartition("@")[2] if "@" in author else ""
        accepted = [domain for domains in _matching(context, from_dkim, author) for domain in domains]
        accepted += [""] * bool(_matching(context, auth, author))
        for wanted in accepted:
            wanted = wanted.rpartition("@")[2]  # (an identity's address was once allowed)
            if not wanted:
                if author_domain in signers:
                    return True
            elif wanted.startswith((".", "*.")):
                below = "." + wanted.lstrip("*").lstrip(".")
                if any(signer.endswith(below) for signer in signers):
                    return True
            elif wanted in signers:
                return True
    return False


def _spf_welcomelisted(context: MessageContext, lists: tuple[str, str]) -> bool:
    """The envelope sender is on `lists` ([def_]welcomelist_from_spf, [def_]welcomelist_auth)
    and the filter found its SPF to pass. As SPF.pm's _check_spf_welcomelist."""
    if context.verified is None or context.verified.spf != "pass" or not context.envelope_from:
        return False  # (a bounce's SPF was checked for its HELO name, not a sender)
    sender = _bare_address(context.envelope_from)
    return bool(sender) and any(_matching(context, name, sender) for name in lists)


def _bare_address(envelope_from: str) -> str:
    """MAIL FROM's address, lower-case, without its angle brackets."""
    return envelope_from.strip().strip("<>").strip().lower()


def _dmarc_eval(result: str, policy: str | None) -> Callable[[MessageContext], bool]:
    def check(context: MessageContext) -> bool:
        entries = authentication_results(context).get("dmarc", [])
        if not entries:
            return False
        entry = entries[0]
        return entry["result"] == result and (policy is None or entry.get("policy.dmarc") == policy)

    check.__doc__ = f"DMARC {result}" + (f" with the author domain's policy {policy}." if policy else ".")
    return check


EVALS: dict[str, Callable[..., bool]] = {
    "check_dkim_signed": check_dkim_signed,
    "check_dkim_valid": check_dkim_valid,
    "check_dkim_valid_author_sig": check_dkim_valid_author_sig,
    "check_dkim_valid_envelopefrom": check_dkim_valid_envelopefrom,
    "check_dkim_dependable": check_dkim_dependable,
    "check_dmarc_pass": _dmarc_eval("pass", None),
    "check_dmarc_reject": _dmarc_eval("fail", "reject"),
    "check_dmarc_quarantine": _dmarc_eval("fail", "quarantine"),
    "check_dmarc_none": _dmarc_eval("fail", "none"),
    "check_dmarc_missing": _dmarc_eval("none", None),
}
for _spelling in ("welcomelist", "whitelist"):  # (SpamAssassin 4.0 reads both names)
    EVALS[f"check_for_dkim_{_spelling}_from"] = functools.partial(
        _dkim_welcomelisted, lists=("welcomelist_from_dkim", "welcomelist_auth"))
    EVALS[f"check_for_def_dkim_{_spelling}_from"] = functools.partial(
        _dkim_welcomelisted, lists=("def_welcomelist_from_dkim", "def_welcomelist_auth"))
    EVALS[f"check_for_spf_{_spelling}_from"] = functools.partial(
        _spf_welcomelisted, lists=("welcomelist_from_spf", "welcomelist_auth"))
    EVALS[f"check_for_def_spf_{_spelling}_from"] = functools.partial(
        _spf_welcomelisted, lists=("def_welcomelist_from_spf", "def_welcomelist_auth"))
for _result in ("pass", "fail", "softfail", "neutral", "none", "permerror", "temperror"):
    EVALS[f"check_for_spf_{_result}"] = _spf_eval("mailfrom", _result)
    EVALS[f"check_for_spf_helo_{_result}"] = _spf_eval("helo", _result)

