"""Session limits checked at connect, before any greeting: total sessions, sessions per
client address (hosts_allow's instances), and the load average (loadcheck). Clients over
a limit hear 421 and may retry later; sessions already open are not disturbed."""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from dataclasses import dataclass, field

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP


@dataclass
class SessionLimits:
    max_sessions: int = 100
    max_per_client: int = 10
    max_load: float = 0.0  # 0: no load check
    active: Counter[str] = field(default_factory=Counter)

    def admit(self, client: str) -> str | None:
        """None to let the client in, else the 421 reply that turns it away."""
        if self.max_load and os.getloadavg()[0] > self.max_load:
            return "421 4.3.2 System busy, try again later"
        if sum(self.active.values()) >= self.max_sessions:
            return "421 4.7.0 Too many connections, try again later"
        if self.active[client] >= self.max_per_client:
            return "421 4.7.0 Too many connections from your address, try again later"
        self.active[client] += 1
        return None

    def release(self, client: str) -> None:
        self.active[client] -= 1
        if self.active[client] <= 0:
            del self.active[client]


class LimitedSMTP(SMTP):
    """aiosmtpd's SMTP with the limits applied when a connection is made."""

    def __init__(self, handler: object, limits: SessionLimits, **kwargs: object) -> None:
        super().__init__(handler, **kwargs)  # type: ignore[arg-type]
        self._limits = limits
        self._client: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        client = str(peer[0]) if isinstance(peer, tuple) and peer else "?"
        refusal = self._limits.admit(client)
        if refusal is not None:
            transport.write(f"{refusal}\r\n".encode())  # type: ignore[attr-defined]
            transport.close()
            return
        self._client = client
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if self._client is None:
            return  # refused at connect: nothing was started
        self._limits.release(self._client)
        self._client = None
        super().connection_lost(error)


class LimitedController(Controller):
    def __init__(self, handler: object, limits: SessionLimits, **kwargs: object) -> None:
        self.limits = limits
        super().__init__(handler, **kwargs)  # type: ignore[arg-type]

    def factory(self) -> SMTP:
        return LimitedSMTP(self.handler, self.limits, **self.SMTP_kwargs)
