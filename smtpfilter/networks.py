"""Networks: "is this client one of ours?", the question LocalNetworks, RelayClients,
WhitelistHosts and the session limits each ask."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable


class Networks:
    """Addresses and networks from the settings ("127.0.0.1", "10.0.0.0/8", "::1/128"),
    parsed once; `peer in networks` is False for anything that is not an IP address."""

    def __init__(self, entries: Iterable[str]) -> None:
        self.networks = [ipaddress.ip_network(entry, strict=False) for entry in entries]

    def __contains__(self, peer: object) -> bool:
        try:
            address = ipaddress.ip_address(str(peer))
        except ValueError:
            return False
        return any(address in network for network in self.networks)
