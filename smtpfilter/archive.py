"""The archive copy: SME's "keep a copy of all emails" (qpsmtpd's Bcc), or of outgoing ones.

Every relayed message whose direction BccDirection takes also goes to BccAddress, in the
same transaction (smtpfilter/relay.py). Outgoing mail is mail from our own clients
(LocalNetworks and RelayClients, the clients the checks for strangers leave alone, and
clients that logged in with SMTP AUTH);
incoming is everyone else's. Behind an MTA that sends no XFORWARD, every client is that
MTA, so there every message counts as outgoing if the MTA is one of our own clients.
BccMode "cc" marks each copied message with `X-Copied-To: <address>`, as SME's default
does; "bcc" (ours) adds nothing, so recipients do not learn of the archive.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from smtpfilter.filter import Transaction
from smtpfilter.networks import LocalClients

if TYPE_CHECKING:
    from spamkit.config import Config


@dataclass(frozen=True)
class ArchiveCopy:
    address: str = ""  # BccAddress; empty: no copies
    mode: str = "bcc"  # BccMode
    direction: str = "all"  # BccDirection
    ours: LocalClients = field(default_factory=lambda: LocalClients([], []))

    @classmethod
    def configured(cls, config: Config) -> ArchiveCopy:
        """BccAddress, BccMode and BccDirection, with the clients that count as ours."""
        from smtpfilter.plugins import local_clients

        return cls(config["BccAddress"], config["BccMode"], config["BccDirection"], local_clients(config))

    def address_for(self, tx: Transaction) -> str:
        """Where the copy of the message goes: BccAddress, or "" for none."""
        if not self.address or self.direction == "all":
            return self.address
        outgoing = self.ours.holds(tx)
        return self.address if outgoing == (self.direction == "outgoing") else ""

    def header(self, address: str) -> bytes:
        """What the copied message gains: X-Copied-To in "cc" mode, else nothing."""
        if self.mode != "cc" or not address:
            return b""
        return b"X-Copied-To: <" + address.encode("utf-8") + b">\r\n"
