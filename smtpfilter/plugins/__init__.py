"""Filter plugins by name, built from the configuration in the order SmtpFilters lists them."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

from smtpfilter.filter import Filter
from smtpfilter.plugins.content import Attachments, Headers
from smtpfilter.plugins.karma import Karma, KarmaStore
from smtpfilter.plugins.envelope import (
    BadHelo,
    BadMailFrom,
    BadMailFromTo,
    BadRcptTo,
    Helo,
    Relay,
    WhitelistHelo,
    WhitelistHosts,
)
from smtpfilter.plugins.spamscore import SpamScore
from spamkit.config import Config
from spamkit.errors import ConfigError
from spamkit.verdict import Scanner

Factory = Callable[[Config, Scanner, bool], Filter]

FILTERS: dict[str, Factory] = {
    "relay": lambda c, s, a: Relay(c["LocalDomains"], c["RelayClients"], c["MaxRecipients"]),
    "badmailfrom": lambda c, s, a: BadMailFrom(c["BadMailFrom"], c["WhitelistSenders"]),
    "badrcptto": lambda c, s, a: BadRcptTo(c["BadRcptTo"]),
    "badhelo": lambda c, s, a: BadHelo(c["BadHelo"]),
    "helo": lambda c, s, a: Helo([*c["HeloOwnNames"], socket.gethostname(), *c["LocalDomains"]],
                                 c["LocalNetworks"]),
    "headers": lambda c, s, a: Headers(c["RequireHeaders"], c["LocalNetworks"]),
    "attachments": lambda c, s, a: Attachments(c["BlockedExtensions"], s.analyzer.limits),
    "spamscore": lambda c, s, a: SpamScore(s, a),
    "whitelisthosts": lambda c, s, a: WhitelistHosts(c["WhitelistHosts"]),
    "whitelisthelo": lambda c, s, a: WhitelistHelo(c["WhitelistHelo"]),
    "badmailfromto": lambda c, s, a: BadMailFromTo(c["BadMailFromTo"]),
    "karma": lambda c, s, a: Karma(KarmaStore(Path(c["KarmaDatabase"] or _beside_db(c)),
                                              c["KarmaForgetDays"]),
                                   c["KarmaNegative"], c["KarmaStrikes"]),
}


def _beside_db(config: Config) -> str:
    from spamkit.store import default_db_path

    base = Path(config["Database"]) if config["Database"] else default_db_path()
    return str(base.parent / "karma")


def build_filters(config: Config, scanner: Scanner, autolearn: bool) -> list[Filter]:
    filters = []
    for name in config["SmtpFilters"]:
        if name not in FILTERS:
            known = ", ".join(sorted(FILTERS))
            raise ConfigError(f"{config.origins['SmtpFilters']}: unknown filter {name!r} (known: {known})")
        filters.append(FILTERS[name](config, scanner, autolearn))
    return filters
