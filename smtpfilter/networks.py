"""Networks: "is this client one of ours?", the question LocalNetworks, RelayClients,
WhitelistHosts and the session limits each ask."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from smtpfilter.filter import Transaction
from spamkit.config.endpoints import client_network


class Networks:
    """Addresses and networks from the settings ("127.0.0.1", "10.0.0.0/8", "::1/128",
    qpsmtpd's "192.168.1."), parsed once; `peer in networks` is False for anything that
    is not an IP address."""

    def __init__(self, entries: Iterable[str]) -> None:
        self.networks = [client_network(entry) for entry in entries]

    def __contains__(self, peer: object) -> bool:
        try:
            address = ipaddress.ip_address(str(peer))
        except ValueError:
            return False
        return any(address in network for network in self.networks)


class LocalClients(Networks):
    """LocalNetworks and RelayClients: our own clients, which the checks for strangers
    leave alone, as qpsmtpd's plugins leave a relay client ("immune"). (The server gives
    an IPv4 client of a dual-stack socket as plain IPv4.)"""

    def __init__(self, local_networks: list[str], relay_clients: list[str]) -> None:
        super().__init__([*local_networks, *relay_clients])

    def holds(self, tx: Transaction) -> bool:
        """Whether the transaction is one of ours: from one of these networks, or from a
        client that logged in (SMTP AUTH), wherever it is."""
        return bool(tx.authenticated) or tx.peer in self
