"""dkimsign: sign our own users' outgoing mail with DKIM (SME's DKIMSigning).

Mail from LocalNetworks or RelayClients whose author domain (From:) is one of
LocalDomains, or has a key pair of its own in DkimKeyDirectory, is signed with d= that
domain, so the signature aligns for DMARC. Domains in DkimSigningExcept are not signed
(SME's per-domain `DKIMSigning disabled`). Keys: smtpfilter/dkimkeys.py.

Put it last in SmtpFilters: a filter after it that rewrote a signed header (spamscore's
subject tag) would break the signature. Headers added on top (X-Spam-*) do not.

Signing never costs a message: a key that cannot be read or used is logged and the mail
goes on unsigned.
"""

from __future__ import annotations

import logging
from pathlib import Path

import dkim

from smtpfilter.dkimkeys import DEFAULT, SigningKey, signing_keys
from smtpfilter.filter import CONTINUE, Decision, Filter, Transaction
from smtpfilter.plugins.dmarc import author_domain
from smtpfilter.networks import LocalClients

log = logging.getLogger("spamkit.smtpfilter")

# header and body canonicalization: relaxed for both, since relays re-fold headers and
# trim trailing blanks (dkimpy's default body form, simple, breaks on either). The
# headers signed are dkimpy's default set (From, Subject, Date, To, Cc, ...).
CANONICALIZE = (b"relaxed", b"relaxed")


class DkimSign(Filter):
    name = "dkimsign"
    blocking = True  # reads key files

    def __init__(self, local: LocalClients, key_root: Path, our_domains: list[str],
                 except_domains: list[str]) -> None:
        self.local = local
        self.key_root = key_root
        self.our_domains = {d.lower().rstrip(".") for d in our_domains}
        self.except_domains = {d.lower().rstrip(".") for d in except_domains}
        # read now, as `serve` builds its filters, before it gives up root (smtpfilter/dkimkeys.py);
        # a new key takes a restart, as on SME a signal-event does
        self._keys: dict[str, SigningKey | None] = signing_keys(key_root)

    def data(self, tx: Transaction) -> Decision:
        if not self.local.holds(tx):
            return CONTINUE  # only our own users' mail is ours to sign
        author = author_domain(tx.data)
        if author is None or author in self.except_domains:
            return CONTINUE
        if author not in self.our_domains and author not in self._keys:
            return CONTINUE  # not a domain we manage
        key = self._keys.get(author, self._keys.get(DEFAULT))  # (its own pair, unreadable: None)
        if key is None:
            log.error("dkimsign: no readable key for %s in %s (make one with `spamkit dkim "
                      "keygen`)", author, self.key_root)
            return CONTINUE
        try:
            signature = dkim.sign(tx.data, key.selector.encode(), author.encode(), key.private_pem,
                                  canonicalize=CANONICALIZE)
        except Exception as error:  # a damaged key, or a message dkimpy cannot take
            log.error("dkimsign: could not sign mail from %s as %s: %s: %s", tx.peer, author,
                      type(error).__name__, error)
            return CONTINUE
        tx.data = signature + tx.data
        tx.notes["dkimsign"] = f"d={author} s={key.selector}"
        return CONTINUE
