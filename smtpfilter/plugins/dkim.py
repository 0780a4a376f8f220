"""dkim: verify a message's DKIM signatures (RFC 6376) and say so in Authentication-Results.

dkimpy does the verification; its key lookups go through the filter's resolver. The
result refuses nothing: SpamAssassin's DKIM rules (DKIM_VALID, DKIM_VALID_AU, ...) read
the header, and dmarc (which runs after this filter) uses what it found.
"""

from __future__ import annotations

import logging

import dkim

from smtpfilter.dns import DnsClient, Outcome
from smtpfilter.filter import CONTINUE, Decision, Filter, Transaction
from smtpfilter.plugins import authres
from smtpfilter.networks import LocalClients

log = logging.getLogger("spamkit.smtpfilter")
# dkimpy logs every bad signature at ERROR; what it found is said in our header instead
_DKIMPY_LOG = logging.getLogger("spamkit.smtpfilter.dkimpy")
_DKIMPY_LOG.addHandler(logging.NullHandler())
_DKIMPY_LOG.propagate = False

MAX_SIGNATURES = 5  # verified per message; each costs a key lookup and a body hash


class Dkim(Filter):
    name = "dkim"
    blocking = True

    def __init__(self, local: LocalClients, dns_client: DnsClient, authserv_id: str) -> None:
        self.local = local
        self.authserv_id = authres.clean(authserv_id, 100)
        self.dns = dns_client

    def data(self, tx: Transaction) -> Decision:
        if self.local.holds(tx):
            return CONTINUE
        results, identities = verify_with_identities(tx.data, KeyLookup(self.dns, tx.deadline))  # (one a message)
        tx.notes["dkim"] = results  # [(result, domain, selector)] for dmarc
        tx.notes["dkim_identities"] = identities  # for the welcomelists (spamscore's Verified)
        lines = [f"dkim={result}" + (f" header.d={authres.clean(domain, 100)} "
                                     f"header.s={authres.clean(selector, 100)}" if domain else "")
                 for result, domain, selector in results]
        tx.data = authres.header(self.authserv_id, lines or ["dkim=none"]) \
            + authres.without_ours(tx.data, self.authserv_id)
        return CONTINUE


def verify(message: bytes, dnsfunc: KeyLookup) -> list[tuple[str, str, str]]:
    """(result, signing domain, selector) for each of the first MAX_SIGNATURES
    signatures; result is pass, fail (the signature or the body hash does not match),
    permerror (a signature or key that cannot be used, or no key) or temperror (the key
    lookup failed)."""
    return verify_with_identities(message, dnsfunc)[0]


def verify_with_identities(message: bytes, dnsfunc: KeyLookup) -> tuple[list[tuple[str, str, str]], list[str]]:
    """verify's results, and beside each the domain of the signature's identity: i=
    after its "@", which a signer may set to a subdomain of d= (d= itself when there is
    no i=; "" for an i= with no "@"). SpamAssassin's DKIM welcomelists compare this, not
    d= (decision 0052)."""
    try:
        verifier = dkim.DKIM(message, logger=_DKIMPY_LOG, minkey=1024)
    except Exception:  # a header section dkimpy cannot read (stray bytes, no colon)
        log.info("DKIM: message not parsable")
        head = message.split(b"\r\n\r\n", 1)[0].lower()
        signed = head.startswith(b"dkim-signature:") or b"\ndkim-signature:" in head
        return ([("permerror", "", "")], [""]) if signed else ([], [])
    count = sum(1 for name, _ in verifier.headers if name.lower() == b"dkim-signature")
    results = []
    identities = []
    for index in range(min(count, MAX_SIGNATURES)):
        verifier.domain, verifier.selector = None, "default"
        verifier.signature_fields = {}
        dnsfunc.outcome = None
        try:
            if verifier.verify(idx=index, dnsfunc=dnsfunc):
                result = "pass"
            elif dnsfunc.outcome is Outcome.FAILED:
                result = "temperror"  # dkimpy says False when the key lookup fails
            elif dnsfunc.outcome is not Outcome.FOUND or dnsfunc.unusable:
                result = "permerror"  # no key there, or not one dkimpy can use
            else:
                result = "fail"
        except dkim.ValidationError as error:
            result = "fail" if "body hash mismatch" in str(error) else "permerror"
        except dkim.DKIMException as error:
            log.info("DKIM signature %d: %s", index, error)
            result = "permerror"
        except Exception:  # dkimpy on input it did not expect: say so, refuse nothing
            log.exception("DKIM signature %d could not be checked", index)
            result = "permerror"
        results.append((result, _text(verifier.domain), _text(verifier.selector)))
        identity = _text(verifier.signature_fields.get(b"i"))
        # (an i= without "@" names no domain DKIM.pm can read: it matches no entry there)
        identities.append(identity.partition("@")[2] if identity else _text(verifier.domain))
    return results, identities


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("ascii", "replace").lower()
    return str(value or "").lower()


class KeyLookup:
    """dkimpy's dnsfunc(name, timeout) on our resolver: the key record's text, or None.
    It remembers what the last lookup found, since dkimpy answers False alike for a
    signature that does not match, a key that is missing and a lookup that failed. Past
    `deadline` (the DATA checks'), a lookup fails at once: temperror."""

    def __init__(self, dns_client: DnsClient, deadline: float | None = None) -> None:
        self.dns = dns_client
        self.deadline = deadline
        self.outcome: Outcome | None = None
        self.unusable = False

    def __call__(self, name: bytes | str, timeout: float = 5) -> bytes | None:
        text = name.decode("ascii", "replace") if isinstance(name, bytes) else name
        answer = self.dns.lookup(text.rstrip("."), "TXT", self.deadline)
        self.outcome = answer.outcome
        record = answer.texts[0] if answer.texts else None
        self.unusable = record is not None and not _looks_like_key(record)
        if answer.outcome is Outcome.FOUND and record is None:
            self.outcome = Outcome.MISSING
        return record


def _looks_like_key(record: bytes) -> bool:
    try:
        dkim.evaluate_pk(b"key", record)
    except Exception:
        return False
    return True
