"""SME Server's configuration databases read into spamkit's settings (`spamkit config
import-sme`): what an administrator moving from SME's SpamAssassin and qpsmtpd set there
with `config setprop`, `db accounts setprop` and `db spamassassin setprop wbl.global`.

SME keeps its settings in flat files under /home/e-smith/db: one record a line,
`key=type|property|value|property|value...`, or `key=value` for a plain value
(DomainName=example.com). `config show` and `db NAME show` print the same records as a
`key=type` line followed by indented `property=value` lines; both forms are read.

What carries over, and where from:
- configuration: the spamassassin and qpsmtpd properties that have a spamkit option of
  the same name (TagLevel, RejectLevel, Sensitivity, SortSpam, RBLList, HeloPolicy,
  KarmaNegative, SPFRejectPolicy, TlsBeforeAuth, ...); qpsmtpd's switches DNSBL, RHSBL,
  URIBL, Karma and DKIMSigning as filters in SmtpFilters; its Authentication as
  SmtpAuthentication; Bcc and BccUser as BccAddress; qmail's
  MaxMessageSize as SmtpMaxMessageSize; smtpd's InstancesPerIP (connections at once from
  one host) as MaxSessionsPerClient; smtpd's disclaimer as the disclaimer filter, with
  its texts (disclaimer and disclaimer_DOMAIN in qpsmtpd's config directory) copied to
  DisclaimerFile; DomainName into LocalDomains; ScanLocalClients false, since SME
  scores no mail from its local networks.
- domains: every domain into LocalDomains (the relay filter takes mail for these only),
  and one with DKIMSigning disabled into DkimSigningExcept.
- networks: every local network into LocalNetworks and RelayClients.
- accounts: each user's own SortSpam; an account (user, group, pseudonym) with
  Visible=internal into BadRcptTo as NAME@*, as SME refuses its mail from outside; each
  pseudonym and group into SenderLogins with the users it delivers to, for the
  senderlogin filter (which SME has not, and the import does not switch on).
- spamassassin: wbl.global's White and Black entries into the lists.
- the list files qmail and qpsmtpd read (badmailfrom, badmailfromto in /var/qmail/control;
  badhelo, badrcptto, relayclients, whitelisthosts, whitelisthelo, whitelistsenders in
  /var/service/qpsmtpd/config; each looked for where qpsmtpd looks: its own directory,
  then qmail's) into the settings of those names, with the filters that read them switched
  on. The qpsmtpd files spamkit has no setting for (badrcptto_patterns, norelayclients,
  goodrcptto, ...) are reported with their entries, when they have any.
Everything else under spamassassin and qpsmtpd is reported as left out, with why, and so
is a list entry spamkit cannot read. sqpsmtpd (qpsmtpd on port 465, TLS from the first
byte) is reported with the `serve --listen-tls` that takes its place.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from spamkit.config.options import OPTIONS_BY_LOWER, OPTIONS_BY_NAME

SERVICES = ("spamassassin", "qpsmtpd")
FILTER_SWITCHES = {"DNSBL": "dnsbl", "RHSBL": "rhsbl", "URIBL": "uribl", "Karma": "karma",
                   "DKIMSigning": "dkimsign"}
# the order the filters run in a chain, for a filter a switch turns on: after the ones
# before it here that the chain has (qpsmtpd's order on SME: karma at connect, the DNS
# lists at RCPT, uribl and the score at DATA, signing last; headers before dkim and dmarc,
# which read every field, so that SmtpMaxHeaderSize bounds their work)
CHAIN_ORDER = ("whitelisthosts", "whitelisthelo", "karma", "greylist", "relay", "badmailfrom",
               "resolvable_fromhost", "rhsbl", "dnsbl", "badrcptto", "badmailfromto",
               "badhelo", "helo", "headers", "spf", "dkim", "dmarc", "attachments", "uribl",
               "spamscore", "disclaimer", "dkimsign")
# the limits SME keeps under other services than spamassassin and qpsmtpd, and the
# spamkit setting each is (qmail's size limit; the connections smtpd takes from one host)
SERVICE_LIMITS = (("qmail", "MaxMessageSize", "SmtpMaxMessageSize"),
                  ("smtpd", "InstancesPerIP", "MaxSessionsPerClient"))
# switches SME keeps under other services: (service, property, filter), the filter on
# when the property says enabled (SME's disclaimer is `config setprop smtpd disclaimer
# enabled`, its texts files in qpsmtpd's config directory)
SERVICE_SWITCHES = (("smtpd", "disclaimer", "disclaimer"),)
# qpsmtpd's properties whose spamkit setting has another name (SMTP AUTH's switch: the
# passwords are then Dovecot's, which on SME are the system's, as qpsmtpd's checked)
QPSMTPD_NAMES = {"Authentication": "SmtpAuthentication"}
# properties that are SME's but no spamkit setting's, and why they are not carried over
NOT_SPAMKITS = {
    "status": "spamkit's filtering is on wherever `serve`, `spamd` or `deliver` runs it",
    "RelayRequiresAuth": "RelayClients relay without logging in, every other client only "
                         "once logged in (SmtpAuthentication)",
    "BccUser": "read with Bcc, as BccAddress",
    "access": "which networks may connect is the firewall's and the MTA's",
    "TCPPort": "`spamkit serve --listen` says where the filter listens",
}
# qmail's and qpsmtpd's list files: the setting each fills, and the filter that reads it,
# switched on when the file has entries (not relay: whether this filter relays at all
# depends on where it sits, before or after the MTA; and whitelistsenders only spares
# senders from badmailfrom)
LIST_FILES: dict[str, tuple[str, str | None]] = {
    "badmailfrom": ("BadMailFrom", "badmailfrom"), "badmailfromto": ("BadMailFromTo", "badmailfromto"),
    "badhelo": ("BadHelo", "badhelo"), "badrcptto": ("BadRcptTo", "badrcptto"),
    "relayclients": ("RelayClients", None), "whitelisthosts": ("WhitelistHosts", "whitelisthosts"),
    "whitelisthelo": ("WhitelistHelo", "whitelisthelo"), "whitelistsenders": ("WhitelistSenders", None),
}

# the list files of qpsmtpd's that spamkit reads nothing from, and why; one with entries
# is reported as left out, so that what it did on SME is not lost without a word
UNREAD_FILES = {
    "badrcptto_patterns": "regular expressions; BadRcptTo takes patterns with * and ?: "
                          "write each as one",
    "badmailfrom_patterns": "regular expressions; BadMailFrom takes patterns with * and ?: "
                            "write each as one",
    "norelayclients": "hosts inside RelayClients' networks that may not relay; RelayClients "
                      "has no exceptions: narrow its networks instead",
    "goodrcptto": "the recipients to accept; the relay filter asks the next hop about each "
                  "recipient instead (SmtpVerifyRecipients)",
    "hosts_allow": "which hosts may connect is the firewall's and the MTA's",
}
# the accounts whose Visible=internal makes SME refuse their mail from outside (its
# badrcptto): users, groups and pseudonyms
INTERNAL_ACCOUNT_TYPES = ("user", "group", "pseudonym")


class SmeFormatError(ValueError):
    """A line that is no SME database record."""


@dataclass
class Record:
    key: str
    type: str  # "service", "user", "domain", "network"; for a plain value, the value
    props: dict[str, str] = field(default_factory=dict)


def read_db(text: str, origin: str) -> dict[str, Record]:
    """The records of an SME database file, or of `config show`'s output; SmeFormatError
    naming the line for one that is neither."""
    records: dict[str, Record] = {}
    current: Record | None = None
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line[0] in " \t":  # `show` output: "    property=value" under its record
            name, equals, value = line.strip().partition("=")
            if current is None or not equals or not name:
                raise SmeFormatError(f"{origin}:{number}: not a property=value line under a "
                                     f"record: {line.strip()[:80]!r}")
            current.props[name] = value
            continue
        key, equals, rest = line.partition("=")
        if not equals or not key.strip():
            raise SmeFormatError(f"{origin}:{number}: not an SME database record "
                                 f"(key=type|property|value...): {line[:80]!r}")
        fields = _split_fields(rest)
        if len(fields) % 2 == 0:
            raise SmeFormatError(f"{origin}:{number}: {key.strip()!r} has a property without a value")
        current = Record(key.strip(), fields[0], dict(zip(fields[1::2], fields[2::2])))
        records[current.key] = current
    return records


def _split_fields(text: str) -> list[str]:
    """Fields joined by '|'; a backslash keeps the character after it (so '\\|' is a
    '|' within a value)."""
    fields, part, escaped = [], [], False
    for char in text:
        if escaped:
            part.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "|":
            fields.append("".join(part))
            part = []
        else:
            part.append(char)
    fields.append("".join(part))
    return fields


@dataclass
class ImportPlan:
    """What `config import-sme` would set: (option, text value, user or None, from where)."""

    settings: list[tuple[str, str, str | None, str]] = field(default_factory=list)
    lists: list[tuple[str, str, str]] = field(default_factory=list)  # (white|black, pattern, from)
    # the disclaimer texts: (SME's file name, disclaimer or disclaimer_DOMAIN, its text)
    disclaimers: list[tuple[str, str]] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)

    def set(self, option: str, value: str, origin: str, user: str | None = None) -> None:
        self.settings = [s for s in self.settings if (s[0], s[2]) != (option, user)]
        self.settings.append((option, value, user, origin))


def plan_import(databases: dict[str, dict[str, Record]], list_files: dict[str, str],
                current: Mapping[str, Any], disclaimers: Mapping[str, str] | None = None) -> ImportPlan:
    """The settings SME's records (`databases` by name: configuration, domains, networks,
    accounts, spamassassin) and list files (text by file name) make, over the settings
    in force (`current`), whose lists are added to, never emptied; and the disclaimer
    texts (by file name) to copy, when SME's disclaimer is on."""
    configuration = databases.get("configuration", {})
    plan = ImportPlan()
    chain = list(current["SmtpFilters"])
    for service, name, switched in SERVICE_SWITCHES:
        switch = configuration.get(service)
        value = switch.props.get(name) if switch else None
        if value is not None:
            _switch(chain, switched, value.lower() == "enabled")
    if "disclaimer" in chain:
        plan.disclaimers = sorted((name, text) for name, text in (disclaimers or {}).items() if text.strip())
        if not plan.disclaimers:
            plan.left_out.append("configuration smtpd disclaimer=enabled: there is no disclaimer "
                                 "text in qpsmtpd's config directory to copy: write one (DisclaimerFile)")
    for service in SERVICES:
        record = configuration.get(service) or Record(service, "service")
        for name, value in record.props.items():
            where = f"configuration {service} {name}"
            if service == "qpsmtpd" and name in FILTER_SWITCHES:
                _switch(chain, FILTER_SWITCHES[name], value.lower() == "enabled")
            elif service == "qpsmtpd" and name == "Bcc":
                _bcc(plan, record, configuration, value, where)
            elif service == "qpsmtpd" and name in QPSMTPD_NAMES:
                plan.set(QPSMTPD_NAMES[name], value, where)
            elif name.lower() in OPTIONS_BY_LOWER:
                plan.set(OPTIONS_BY_LOWER[name.lower()].name, value, where)
            else:
                why = NOT_SPAMKITS.get(name, "spamkit has no such setting")
                plan.left_out.append(f"{where}={value}: {why}")
    if current["ScanLocalClients"]:
        plan.set("ScanLocalClients", "false", "SME: its spamassassin plugin is off for local connections")
    for service, name, option in SERVICE_LIMITS:
        limits = configuration.get(service)
        limit = limits.props.get(name) if limits else None
        if limit is None:
            continue
        if limit.isascii() and limit.isdigit():  # ("²" and "２" are digits to isdigit alone)
            plan.set(option, limit, f"configuration {service} {name}")
        else:
            plan.left_out.append(f"configuration {service} {name}={limit}: not a whole number")
    _smtp_over_ssl(plan, configuration.get("sqpsmtpd"))
    found = [record.key.lower() for record in databases.get("domains", {}).values()
             if record.type == "domain"]
    domain_name = configuration.get("DomainName")
    if domain_name is not None and not domain_name.props:
        found.insert(0, domain_name.type.lower())  # a plain value: DomainName=example.com
    _add_entries(plan, current, "LocalDomains", found, "domains and DomainName")
    unsigned = [record.key.lower() for record in databases.get("domains", {}).values()
                if record.type == "domain" and record.props.get("DKIMSigning", "").lower() == "disabled"]
    _add_entries(plan, current, "DkimSigningExcept", unsigned, "domains DKIMSigning=disabled")
    nets = [f"{record.key}/{record.props['Mask']}" for record in databases.get("networks", {}).values()
            if record.type == "network" and "Mask" in record.props]
    for option in ("LocalNetworks", "RelayClients"):
        _add_entries(plan, current, option, nets, "networks")
    internal = [key if "@" in key else f"{key}@*"
                for key, record in databases.get("accounts", {}).items()
                if record.type in INTERNAL_ACCOUNT_TYPES and record.props.get("Visible", "").lower() == "internal"]
    if _add_entries(plan, current, "BadRcptTo", internal, "accounts Visible=internal"):
        _switch(chain, "badrcptto", True)
    _add_entries(plan, current, "SenderLogins", _sender_logins(databases.get("accounts", {}), plan),
                 "accounts: pseudonyms and groups")
    for name, text in list_files.items():
        lines = [line.split("#", 1)[0].strip() for line in text.splitlines()]
        lines = [line for line in lines if line]
        if name in UNREAD_FILES:
            if lines:
                shown = ", ".join("".join(c if c.isprintable() else "?" for c in line[:80])
                                  for line in lines[:3]) + (", ..." if len(lines) > 3 else "")
                count = f"{len(lines)} entr{'y' if len(lines) == 1 else 'ies'}"
                plan.left_out.append(f"{name} ({count}: {shown}): {UNREAD_FILES[name]}")
            continue
        option, filter_name = LIST_FILES[name]
        entries = [" ".join(line.split()[:2 if option == "BadMailFromTo" else 1]) for line in lines]
        if _add_entries(plan, current, option, entries, name) and filter_name is not None:
            _switch(chain, filter_name, True)
    if chain != list(current["SmtpFilters"]):
        plan.set("SmtpFilters", ",".join(chain), "qpsmtpd's switches and list files")
    for user, record in databases.get("accounts", {}).items():
        if record.type == "user" and "SortSpam" in record.props:
            plan.set("SortSpam", record.props["SortSpam"], f"accounts {user} SortSpam", user)
    wbl = databases.get("spamassassin", {}).get("wbl.global")
    for pattern, kind in (wbl.props.items() if wbl else ()):
        if kind.lower() in ("white", "black"):
            plan.lists.append((kind.lower(), pattern, "spamassassin wbl.global"))
        else:
            plan.left_out.append(f"spamassassin wbl.global {pattern}={kind}: neither White nor Black")
    return plan


def _sender_logins(accounts: dict[str, Record], plan: ImportPlan) -> list[str]:
    """The addresses SME's users receive at besides their own, as SenderLogins entries
    for the senderlogin filter (which SME has not; off unless SmtpFilters names it): a
    pseudonym is its user's (or its group's members'), and a group's address its
    members'. A pseudonym of anything else is left out, saying why."""
    def logins_of(name: str) -> list[str]:
        record = accounts.get(name)
        if record is None:
            return []
        if record.type == "user":
            return [name]
        if record.type == "group":
            return [member.strip() for member in record.props.get("Members", "").split(",") if member.strip()]
        return []

    entries = []
    for key, record in accounts.items():
        if record.type == "group":
            logins = logins_of(key)
        elif record.type == "pseudonym":
            target = record.props.get("Account", "")
            logins = logins_of(target)
            if not logins:
                plan.left_out.append(f"accounts {key} Account={target}: a pseudonym of no user "
                                     "or group with members, so no login may send as it")
                continue
        else:
            continue
        if logins:
            entries.append(" ".join([key, *logins]))
    return entries


def _smtp_over_ssl(plan: ImportPlan, record: Record | None) -> None:
    """SME's sqpsmtpd: qpsmtpd again, on a port that is TLS from the first byte (465),
    where its users' mail programs set to "SSL" send. A port is `serve`'s command line,
    not a setting: said, with the option that opens it."""
    if record is None or record.props.get("status", "enabled").lower() != "enabled":
        return
    port = record.props.get("TCPPort", "465")
    plan.left_out.append(f"configuration sqpsmtpd status=enabled TCPPort={port}: SMTP over SSL; "
                         f"give `spamkit serve --listen-tls 0.0.0.0:{port}` (with TlsCertificate "
                         "and TlsKey) for the mail programs that send there")


def _add_entries(plan: ImportPlan, current: Mapping[str, Any], option: str, entries: list[str],
                 origin: str) -> bool:
    """Add to a list setting what it does not have yet (an entry spamkit cannot read is
    left out, saying why); whether there was anything to add."""
    problem_of = OPTIONS_BY_NAME[option].entry_problem
    planned = next((value for name, value, user, _ in plan.settings if (name, user) == (option, None)), None)
    have = planned.split(",") if planned is not None else list(current[option])
    added = []
    for entry in entries:
        problem = problem_of(entry) if problem_of else None
        if problem:
            plan.left_out.append(f"{origin}: {option}: {problem}")
        elif entry not in have and entry not in added:
            added.append(entry)
    if added:
        plan.set(option, ",".join([*have, *added]), origin)
    return bool(entries)


def _switch(chain: list[str], name: str, on: bool) -> None:
    if not on:
        while name in chain:
            chain.remove(name)
        return
    if name in chain:
        return
    before = CHAIN_ORDER[:CHAIN_ORDER.index(name)]
    position = max((index + 1 for index, other in enumerate(chain) if other in before), default=0)
    chain.insert(position, name)


def _bcc(plan: ImportPlan, qpsmtpd: Record, configuration: dict[str, Record], value: str,
         where: str) -> None:
    """Bcc enabled copies all mail to BccUser (SME's default, maillog) at DomainName."""
    if value.lower() != "enabled":
        plan.set("BccAddress", "", where)
        return
    user = qpsmtpd.props.get("BccUser", "maillog")
    domain = configuration.get("DomainName")
    if domain is None or domain.props:
        plan.left_out.append(f"{where}={value}: no DomainName to make BccUser {user} an address; "
                             "set BccAddress")
        return
    plan.set("BccAddress", f"{user}@{domain.type}", f"{where}, BccUser, DomainName")
