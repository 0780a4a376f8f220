"""Filter plugins by name, built from the configuration in the order SmtpFilters lists them."""

from __future__ import annotations

import functools
import glob
import logging
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from smtpfilter.auth import auth_warnings
from smtpfilter.chain import FilterChain
from smtpfilter.dkimkeys import key_problems, key_root
from smtpfilter.dmarcreports import ReportStore
from smtpfilter.dns import PUBLIC_RESOLVERS, DnsClient
from smtpfilter.dnslists import CLOSED_ZONES, TALLY, ListReport, ask_list, zones
from smtpfilter.filter import Filter
from smtpfilter.plugins.clamav import Clamav, ClamdClient
from smtpfilter.plugins.content import Attachments, Headers
from smtpfilter.plugins.dkim import Dkim
from smtpfilter.plugins.dkimsign import DkimSign
from smtpfilter.plugins.disclaimer import Disclaimer, DisclaimerTexts
from smtpfilter.plugins.dmarc import Dmarc
from smtpfilter.networks import LocalClients
from smtpfilter.plugins.dns import Dnsbl, DnsHelo, ResolvableFromHost, Rhsbl
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
from smtpfilter.plugins.geoip import GeoIP
from smtpfilter.plugins.greylist import Greylist, GreylistStore
from smtpfilter.plugins.pyzor import Pyzor
from smtpfilter.plugins.karma import Karma, KarmaStore
from smtpfilter.plugins.senderlogin import SenderLogin
from smtpfilter.plugins.sendlimit import SendCounts, SendLimit
from smtpfilter.plugins.spamscore import SpamScore
from smtpfilter.plugins.spf import Spf
from smtpfilter.plugins.uribl import LOOKUP_THREADS, Uribl, UriZone, uri_zones
from smtpfilter.privatekeys import readable_by_everyone
from smtpfilter.tls import expiry_warnings, server_context
from spamkit.config import Config, default_config_path
from spamkit.errors import ConfigError
from spamkit.geoip import Countries, GeoIPError, shared_countries
from spamkit.pyzor import PyzorCheck
from spamkit.verdict import Scanner

log = logging.getLogger("spamkit.smtpfilter")

Factory = Callable[[Config, Scanner, bool], Filter]


def our_name(config: Config) -> str:
    """This server's name: in the greeting, our Received header, the receiver in
    Received-SPF and the authserv-id of Authentication-Results. SmtpHostname, else the
    machine's own."""
    return config["SmtpHostname"].rstrip(".") or machine_name()


@functools.cache
def machine_name() -> str:
    """The machine's fully qualified name, looked up once (getfqdn may ask DNS). Where
    /etc/hosts puts the host's name on the loopback line, getfqdn says "localhost" (which
    a greeting and a Received header should never claim): then the host name."""
    name = socket.getfqdn()
    if name.lower().startswith("localhost"):
        name = socket.gethostname() or name
    return name


FILTERS: dict[str, Factory] = {
    "relay": lambda c, s, a: Relay(c["LocalDomains"], c["RelayClients"], c["MaxRecipients"]),
    "badmailfrom": lambda c, s, a: BadMailFrom(c["BadMailFrom"], c["WhitelistSenders"], local_clients(c)),
    "badrcptto": lambda c, s, a: BadRcptTo(c["BadRcptTo"], local_clients(c)),
    "badhelo": lambda c, s, a: BadHelo(c["BadHelo"], local_clients(c)),
    "senderlogin": lambda c, s, a: SenderLogin(c["LocalDomains"], c["SenderLogins"]),
    "sendlimit": lambda c, s, a: _sendlimit(c),
    "helo": lambda c, s, a: _helo(c),
    "headers": lambda c, s, a: Headers(c["RequireHeaders"], c["LocalNetworks"], c["RefuseRepeatedHeaders"],
                                       c["SmtpMaxHeaderSize"]),
    "attachments": lambda c, s, a: Attachments(c["BlockedExtensions"], c["BlockInArchives"],
                                               c["SmtpMaxMessageSize"], c["BlockEncryptedArchives"]),
    "clamav": lambda c, s, a: Clamav(ClamdClient(c["ClamdAddress"], c["ClamdTimeout"]), c["ClamavWhenDown"],
                                     our_name(c)),
    "spamscore": lambda c, s, a: SpamScore(s, a, None if c["ScanLocalClients"] else local_clients(c)),
    "whitelisthosts": lambda c, s, a: WhitelistHosts(c["WhitelistHosts"]),
    "whitelisthelo": lambda c, s, a: WhitelistHelo(c["WhitelistHelo"]),
    "badmailfromto": lambda c, s, a: BadMailFromTo(c["BadMailFromTo"], local_clients(c)),
    "karma": lambda c, s, a: Karma(KarmaStore(karma_database(c), c["KarmaForgetDays"]),
                                   c["KarmaNegative"], c["KarmaStrikes"], local_clients(c)),
    "greylist": lambda c, s, a: _greylist(c),
    "dnsbl": lambda c, s, a: Dnsbl(_zones(c, "RBLList", "dnsbl"), local_clients(c), configured_dns(c)),
    "rhsbl": lambda c, s, a: Rhsbl(_zones(c, "SBLList", "rhsbl"), local_clients(c), configured_dns(c)),
    "resolvable_fromhost": lambda c, s, a: ResolvableFromHost(local_clients(c), configured_dns(c)),
    "spf": lambda c, s, a: Spf(local_clients(c), configured_dns(c), our_name(c), c["SpfRejectFail"],
                               c["SpfRejectPolicy"]),
    "dkim": lambda c, s, a: Dkim(local_clients(c), configured_dns(c), our_name(c)),
    "dmarc": lambda c, s, a: Dmarc(local_clients(c), configured_dns(c), our_name(c), c["DmarcReject"],
                                   ReportStore(report_database(c)) if c["DmarcReporting"] else None),
    "uribl": lambda c, s, a: _uribl(c, s),
    "pyzor": lambda c, s, a: Pyzor(PyzorCheck.from_config(c, "the pyzor filter"), local_clients(c)),
    "geoip": lambda c, s, a: GeoIP(geoip_countries(c), c["BlockedCountries"], c["AllowedCountries"],
                                   local_clients(c)),
    "disclaimer": lambda c, s, a: Disclaimer(local_clients(c), DisclaimerTexts(disclaimer_path(c),
                                                                                c["LocalDomains"])),
    "dkimsign": lambda c, s, a: DkimSign(local_clients(c), key_root(c), c["LocalDomains"],
                                         c["DkimSigningExcept"]),
}

STALE_GEOIP_DAYS = 365

NEEDS_BEFORE = {"dmarc": ("spf", "dkim")}
# (first, then): where a chain has both, `first` must come before `then` (a footer added
# after the DKIM signature would break it; pyzor's answer is for the score)
ORDER = (("disclaimer", "dkimsign"), ("pyzor", "spamscore"))


def _helo(config: Config) -> Helo:
    own_names = [*config["HeloOwnNames"], socket.gethostname(), *config["LocalDomains"]]
    if config["HeloPolicy"] == "lenient":
        return Helo(own_names, config["LocalNetworks"])
    return DnsHelo(own_names, config["LocalNetworks"], config["HeloPolicy"], configured_dns(config))


def greylist_database(config: Config) -> str:
    """GreylistDatabase (a directory or a Redis URL), else `greylist` beside the token database."""
    return str(config["GreylistDatabase"] or _beside_db(config, "greylist"))


def greylist_store(config: Config, location: str | None = None) -> GreylistStore:
    return GreylistStore(location or greylist_database(config),
                         delay=config["GreylistDelay"],
                         retry_window=config["GreylistRetryHours"] * 3600.0,
                         pass_lifetime=config["GreylistPassDays"] * 86400.0,
                         auto_whitelist=config["GreylistAutoWhitelist"])


def _greylist(config: Config) -> Greylist:
    store = greylist_store(config)
    return Greylist(store, local_clients(config), config["WhitelistSenders"],
                    config["GreylistBySubnet"], config["GreylistAction"], our_name(config),
                    config["GreylistExceptRecipients"])


def geoip_countries(config: Config) -> Countries:
    """The geoip filter's country database, read now: a filter that cannot place anyone
    would refuse no one in silence, so `serve` does not start without one."""
    countries = shared_countries(tuple(config["GeoIPDatabase"]))
    try:
        countries.open()
    except GeoIPError as error:
        where = config.origins["GeoIPDatabase" if config["GeoIPDatabase"] else "SmtpFilters"]
        raise ConfigError(f"{where}: the geoip filter has no country database: {error}") from None
    return countries


def geoip_warnings(config: Config, now: float | None = None) -> list[str]:
    """What leaves the geoip filter, when the chain has it, with little to go on: data
    over a year old, or settings that refuse every country."""
    if "geoip" not in config["SmtpFilters"]:
        return []
    warnings = []
    try:
        databases = geoip_countries(config).open()
    except ConfigError:
        return []  # (lint_chain reports it as an error)
    now = time.time() if now is None else now
    for database in databases:
        if database.built is not None and now - database.built > STALE_GEOIP_DAYS * 86400:
            warnings.append(f"{database.path}: the country data is {int((now - database.built) // 86400)} "
                            "days old, and addresses move between countries: update it (geoipupdate, "
                            "or Debian's tor-geoipdb)")
    allowed = {code.upper() for code in config["AllowedCountries"]}
    if allowed and allowed <= {code.upper() for code in config["BlockedCountries"]}:
        warnings.append(f"{config.origins['AllowedCountries']}: every country AllowedCountries names "
                        "is in BlockedCountries too, so the geoip filter refuses every client it places")
    return warnings


def disclaimer_path(config: Config) -> Path:
    """DisclaimerFile, else `disclaimer` beside the configuration file (SME keeps its
    disclaimer files beside qpsmtpd's configuration)."""
    if config["DisclaimerFile"]:
        return Path(config["DisclaimerFile"])
    return (config.path or default_config_path()).parent / "disclaimer"


def _sendlimit(config: Config) -> SendLimit:
    return SendLimit(SendCounts(sendlimit_database(config)), send_limits(config))


def send_limits(config: Config) -> Callable[[str], int]:
    """A login's SendLimitPerHour: its own from its [user.NAME] table, else everyone's."""
    limits = {user.lower(): config.for_user(user)["SendLimitPerHour"] for user in config.users}
    default = config["SendLimitPerHour"]
    return lambda login: int(limits.get(login.lower(), default))


def sendlimit_database(config: Config) -> str:
    """SendLimitDatabase (a directory or a Redis URL), else `sendlimit` beside the token database."""
    return str(config["SendLimitDatabase"] or _beside_db(config, "sendlimit"))


def _uribl(config: Config, scanner: Scanner) -> Uribl:
    return Uribl(_uri_zones(config), local_clients(config), configured_dns(config), config["UriblAction"],
                 [*config["LocalDomains"], *config["UriblSkipDomains"]], scanner.analyzer.limits)


def _uri_zones(config: Config) -> list[UriZone]:
    zones = uri_zones(config["UBLList"], config.origins["UBLList"])
    if not zones:
        raise ConfigError(f"{config.origins['SmtpFilters']}: the uribl filter needs UBLList (the "
                          "zones to ask, e.g. multi.surbl.org:8-16-64-128), which is empty")
    return zones


def local_clients(config: Config) -> LocalClients:
    """Our own clients (LocalNetworks, RelayClients), which the checks for strangers leave
    alone and whose mail is outgoing (BccDirection)."""
    return LocalClients(config["LocalNetworks"], config["RelayClients"])


def _open_zones(config: Config, option: str) -> list[str]:
    """The zones to ask: RBLList or SBLList less the lists that have closed."""
    return [name for name in zones(config[option]) if name not in CLOSED_ZONES]


def _zones(config: Config, option: str, filter_name: str) -> list[str]:
    """_open_zones, or ConfigError when none is left."""
    names = _open_zones(config, option)
    if not names:
        what = "and every list it names has closed" if config[option] else "which is empty"
        raise ConfigError(f"{config.origins['SmtpFilters']}: the {filter_name} filter needs "
                          f"{option} (the zones to ask), {what}")
    return names


def closed_zone_warnings(config: Config) -> list[str]:
    """The closed lists that the chain's dnsbl and rhsbl filters leave out (`_zones`)."""
    return [f"{config.origins[option]}: {option} names {name}, a list that has closed; it is "
            "not asked (SME drops it too): remove it"
            for filter_name, option in (("dnsbl", "RBLList"), ("rhsbl", "SBLList"))
            if filter_name in config["SmtpFilters"]
            for name in zones(config[option]) if name in CLOSED_ZONES]


def ask_lists(config: Config) -> list[ListReport]:
    """Every list that the chain's dnsbl, rhsbl and uribl filters would ask, asked its
    RFC 5782 test entries now (`spamkit lint --dns`), LOOKUP_THREADS at a time. A setting
    that cannot be read is lint_chain's error, and its lists are not asked."""
    names = set(config["SmtpFilters"])
    wanted: list[tuple[str, str, bool]] = []
    if "dnsbl" in names:
        wanted += [("RBLList", zone, True) for zone in _open_zones(config, "RBLList")]
    if "rhsbl" in names:
        wanted += [("SBLList", zone, False) for zone in _open_zones(config, "SBLList")]
    if "uribl" in names:
        try:
            wanted += [("UBLList", zone.zone, False) for zone in _uri_zones(config)]
        except ConfigError:
            pass
    if not wanted:
        return []
    dns = configured_dns(config)
    with ThreadPoolExecutor(LOOKUP_THREADS) as pool:
        return list(pool.map(lambda want: ask_list(dns, *want), wanted))


def configured_dns(config: Config) -> DnsClient:
    try:
        return _dns_client(tuple(config["DnsServers"]), config["DnsTimeout"])
    except ValueError as error:
        raise ConfigError(f"{config.origins['DnsServers']}: DnsServers: {error}") from None


@functools.cache
def _dns_client(servers: tuple[str, ...], timeout: float) -> DnsClient:
    """One client (and one answer cache) for every DNS filter of a process."""
    return DnsClient(list(servers), timeout)


def _beside_db(config: Config, name: str = "karma") -> str:
    """Where the filter's own databases (karma, DMARC report rows) go by default: beside
    the token database's directory, or beside this machine's default one when the tokens
    are in a shared Redis (these stay local to each machine)."""
    from spamkit.store import backend_of, default_db_path

    database = config["Database"]
    base = Path(database) if database and backend_of(database) == "lmdb" else default_db_path()
    return str(base.parent / name)


def karma_database(config: Config) -> str:
    """KarmaDatabase (a directory or a Redis URL), else `karma` beside the token database."""
    return str(config["KarmaDatabase"] or _beside_db(config))


def report_database(config: Config) -> Path:
    """DmarcReportDatabase, else dmarc-reports.sqlite beside the token database."""
    return Path(config["DmarcReportDatabase"] or _beside_db(config, "dmarc-reports.sqlite"))


def build_filters(config: Config, scanner: Scanner, autolearn: bool) -> list[Filter]:
    check_chain(config)
    TALLY.forget_disbelieved()  # (the lists' health is the new chain's to find)
    filters = [FILTERS[name](config, scanner, autolearn) for name in config["SmtpFilters"]]
    for warning in [*closed_zone_warnings(config), *clamd_warnings(config), *login_filter_warnings(config)]:
        log.warning("%s", warning)
    return filters


def clamd_warnings(config: Config) -> list[str]:
    """That clamd does not answer, when the clamav filter is in the chain (asked once, with
    a PING: at `serve`'s start and by lint)."""
    if "clamav" not in config["SmtpFilters"] or ClamdClient(config["ClamdAddress"], timeout=5).ping():
        return []
    consequence = ("every message would get 451" if config["ClamavWhenDown"] == "tempfail"
                   else "every message would pass unscanned")
    return [f"{config.where('ClamdAddress')}: clamd does not answer PING "
            f"at {config['ClamdAddress']}: {consequence} (ClamavWhenDown = {config['ClamavWhenDown']})"]


def login_filter_warnings(config: Config) -> list[str]:
    """What leaves the filters for users who log in (senderlogin, sendlimit), when the
    chain has them, with little to do."""
    where = config.origins["SmtpFilters"]
    named = [name for name in ("senderlogin", "sendlimit") if name in config["SmtpFilters"]]
    if named and not config["SmtpAuthentication"]:
        return [f"{where}: the {name} filter checks the mail of users who log in, and "
                "SmtpAuthentication is off: it checks nothing" for name in named]
    if "senderlogin" in named and not config["LocalDomains"]:
        return [f"{where}: LocalDomains is empty, so the senderlogin filter lets a login send "
                "only as the addresses SenderLogins gives it (or as itself, when it is an address)"]
    return []


def disclaimer_warnings(config: Config) -> list[str]:
    """What leaves the disclaimer filter, when the chain has it, with nothing to add."""
    if "disclaimer" not in config["SmtpFilters"]:
        return []
    where = config.origins["SmtpFilters"]
    path = disclaimer_path(config)
    domains = [domain.lower().rstrip(".") for domain in config["LocalDomains"]]
    if not domains:
        return [f"{where}: LocalDomains is empty, so the disclaimer filter takes every recipient "
                "for an outside one and adds only the texts of DisclaimerFile_DOMAIN files"]
    texts = DisclaimerTexts(path, domains)
    if not any(texts.file_for(domain) for domain in domains) \
            and not any(path.parent.glob(glob.escape(path.name) + "_*")):
        return [f"{config.origins['DisclaimerFile'] if config['DisclaimerFile'] else where}: the "
                f"disclaimer filter has no text to add: write it to {path.absolute()} (or to "
                f"{path.name}_DOMAIN for one domain)"]
    return []


def build_chain(config: Config, scanner: Scanner, autolearn: bool) -> FilterChain:
    """The filters of SmtpFilters in a chain that refuses, or, after the MTA's queue
    (SmtpAfterQueue), one that marks what it would have refused."""
    return FilterChain(build_filters(config, scanner, autolearn), refuse=not config["SmtpAfterQueue"])


def check_chain(config: Config) -> None:
    """SmtpFilters names known filters, each after the ones it needs; else ConfigError."""
    problems = chain_problems(config)
    if problems:
        raise ConfigError(problems[0])


def chain_problems(config: Config) -> list[str]:
    """Every unknown filter name in SmtpFilters, and every filter before one it needs."""
    problems = []
    names = list(config["SmtpFilters"])
    for position, name in enumerate(names):
        if name not in FILTERS:
            known = ", ".join(sorted(FILTERS))
            problems.append(f"{config.origins['SmtpFilters']}: unknown filter {name!r} (known: {known})")
        missing = [needed for needed in NEEDS_BEFORE.get(name, ()) if needed not in names[:position]]
        if missing:
            problems.append(f"{config.origins['SmtpFilters']}: the {name} filter uses what "
                            f"{' and '.join(missing)} found, so they must come before it")
    for first, then in ORDER:
        if first in names and then in names and names.index(first) > names.index(then):
            problems.append(f"{config.origins['SmtpFilters']}: the {first} filter changes the "
                            f"message, so it must come before {then}")
    return problems + _shared_directories(config, names)


# the filters that keep records in a directory of their own (smtpfilter/recordstore.py)
_STORE_OPTIONS = (("karma", "KarmaDatabase", karma_database), ("greylist", "GreylistDatabase", greylist_database),
                  ("sendlimit", "SendLimitDatabase", sendlimit_database))


def _shared_directories(config: Config, names: list[str]) -> list[str]:
    """Two of the chain's stores given one LMDB directory, or one given the token
    database's: each store prunes what it takes for its own records, and would read the
    other's (or the token database's tables) as such."""
    from spamkit.store import backend_of, default_db_path

    token = config["Database"] or str(default_db_path())
    taken: dict[Path, str] = {} if backend_of(token) != "lmdb" else {Path(token).resolve(): "the token database"}
    problems = []
    for name, option, location_of in _STORE_OPTIONS:
        location = location_of(config)
        if name not in names or backend_of(location) != "lmdb":
            continue
        directory = Path(location).resolve()
        if directory in taken:
            problems.append(f"{config.origins[option]}: the {name} filter's database is {location}, "
                            f"{taken[directory]}'s directory too: give each its own ({option})")
        taken.setdefault(directory, f"the {name} filter's database")
    return problems


DNS_LIST_FILTERS = ("dnsbl", "rhsbl", "uribl")
# DATA filters that read every header field: the headers filter's SmtpMaxHeaderSize bounds
# their work only when it runs first (dkimpy read 15 MB of short fields in about 4 s)
READ_EVERY_FIELD = ("dkim", "dmarc")


def header_size_warnings(config: Config) -> list[str]:
    """That a filter reading every header field comes before the headers filter, which
    refuses an oversized header section (SmtpMaxHeaderSize) only for the filters after it."""
    names = list(config["SmtpFilters"])
    if "headers" not in names:
        return []
    early = [name for name in names[:names.index("headers")] if name in READ_EVERY_FIELD]
    if not early:
        return []
    them = "them" if len(early) > 1 else "it"
    return [f"{config.origins['SmtpFilters']}: {' and '.join(early)} "
            f"{'come' if len(early) > 1 else 'comes'} before the headers filter, so "
            f"{'they read' if len(early) > 1 else 'it reads'} a header section of any size before "
            f"it is refused (SmtpMaxHeaderSize): put headers before {them}"]


def start_warnings(config: Config) -> list[str]:
    """What `serve` logs as it starts, and `spamkit lint` reports: a TLS certificate that
    has expired or soon will, a private key every user may read, and DKIM keys that would
    leave mail unsigned. `serve` asks
    before it gives up root, which the private keys are readable by."""
    warnings = []
    if config["TlsCertificate"]:
        warnings += expiry_warnings(config["TlsCertificate"], config.origins["TlsCertificate"])
    if config["TlsKey"] and (mode := readable_by_everyone(config["TlsKey"])) is not None:
        warnings.append(f"TlsKey ({config.origins['TlsKey']}): {config['TlsKey']} can be read by every "
                        f"user of this machine (mode {mode}): anyone with a login can pose as this "
                        "server; chmod 600 it (640, group ssl-cert, for serve's user to read it)")
    if "dkimsign" in config["SmtpFilters"]:
        warnings += key_problems(key_root(config))
    return warnings


def lint_chain(config: Config) -> tuple[list[str], list[str]]:
    """(errors, warnings) about the SMTP filter's settings, for `spamkit lint`: what
    `spamkit serve` would refuse to start with, found without opening any database."""
    errors = chain_problems(config)
    checks: list[Callable[[], object]] = []
    names = set(config["SmtpFilters"])
    if "dnsbl" in names:
        checks.append(lambda: _zones(config, "RBLList", "dnsbl"))
    if "rhsbl" in names:
        checks.append(lambda: _zones(config, "SBLList", "rhsbl"))
    if "uribl" in names:
        checks.append(lambda: _uri_zones(config))
    uses_dns = bool(names & {"dnsbl", "rhsbl", "uribl", "resolvable_fromhost", "spf", "dkim", "dmarc"}) \
        or (config["HeloPolicy"] != "lenient" and "helo" in names)
    if "geoip" in names:
        checks.append(lambda: geoip_countries(config))
    if config["TlsCertificate"] or config["TlsKey"]:
        checks.append(lambda: server_context(config["TlsCertificate"], config["TlsKey"], config.origins))
    for check in checks:
        try:
            check()
        except ConfigError as error:
            errors.append(str(error))
    resolvers: list[str] = []
    if uses_dns:
        try:
            resolvers = [str(server) for server in configured_dns(config).current().nameservers]
        except ConfigError as error:
            errors.append(str(error))
    warnings = closed_zone_warnings(config)
    warnings += clamd_warnings(config)
    warnings += login_filter_warnings(config)
    warnings += disclaimer_warnings(config)
    warnings += geoip_warnings(config)
    warnings += auth_warnings(config)
    warnings += header_size_warnings(config)
    warnings += start_warnings(config)
    lists = sorted(names.intersection(DNS_LIST_FILTERS))
    if lists:
        public = [server for server in resolvers if server in PUBLIC_RESOLVERS]
        if public:
            where = config.origins["DnsServers"]
            where = "/etc/resolv.conf (DnsServers is empty)" if where == "default" else where
            warnings.append(
                f"{where}: the resolver {public[0]} is a public one; Spamhaus and URIBL refuse "
                "queries that come through public resolvers (an error answer, which is not "
                f"taken for a listing), so {' and '.join(lists)} would refuse nothing: point "
                "DnsServers at a resolver of your own (unbound, for instance)")
    return errors, warnings
