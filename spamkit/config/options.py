"""Every setting, declared once: name, type, default, choices and one line of help.

Names follow SME Server's `config setprop spamassassin NAME VALUE` where one exists, so
an administrator's habits carry over; `spamkit config set TagLevel 4` is
`config setprop spamassassin TagLevel 4`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from spamkit.config.endpoints import (
    client_network,
    endpoint_problem,
    host_name_problem,
    is_host_name,
    server_problem,
    smtp_server_problem,
    socket_problem,
)

SENSITIVITY_LEVELS = {"veryhigh": 2.0, "high": 3.0, "medium": 5.0, "low": 7.0, "verylow": 9.0}


@dataclass(frozen=True)
class Option:
    name: str
    kind: type  # bool, int, float, str or list (of str)
    default: Any
    help: str
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    group: str = "general"
    aliases: tuple[str, ...] = field(default=())
    per_user: bool = False  # may also be set for one user, in a [user.NAME] table
    # for a list: what is wrong with one entry, or None; checked when the file is read, so
    # that a bad entry names its line instead of failing later, where it is used
    entry_problem: Callable[[str], str | None] | None = None
    # for text: what is wrong with the value, or None; checked when it is read, as above
    value_problem: Callable[[str], str | None] | None = None


def _not_a_network(entry: str) -> str | None:
    try:
        client_network(entry)
    except ValueError:
        return (f"{entry!r} is not an IP address or network (e.g. 192.0.2.7, 10.0.0.0/8, "
                "192.168.1., 2001:db8::/32)")
    return None


_LIST_SEPARATORS = re.compile(r"[:,]")
_ANSWER_BITS = re.compile(r"[0-9]+(?:-[0-9]+)*")


def _not_zones(entry: str, bits_allowed: bool = False) -> str | None:
    """What is wrong with an RBLList, SBLList or UBLList entry: zones, joined by ':' or ','
    as SME writes them, and in UBLList the answer bits after a zone."""
    for part in _LIST_SEPARATORS.split(entry):
        part = part.strip()
        if not part or (is_host_name(part) and "." in part.strip(".")) \
                or (bits_allowed and _ANSWER_BITS.fullmatch(part)):
            continue
        return f"{part!r} is not a DNS list's zone name (e.g. zen.spamhaus.org)"
    return None


def _not_uri_zones(entry: str) -> str | None:
    return _not_zones(entry, bits_allowed=True)


def _not_a_pair(entry: str) -> str | None:
    if len(entry.split()) != 2:
        return f"{entry!r} is not a \"SENDER RECIPIENT\" pair of patterns"
    return None


def _not_a_grant(entry: str) -> str | None:
    """A SenderLogins entry: an address (or local part, @domain, pattern), then logins."""
    if len(entry.split()) < 2:
        return f"{entry!r} is not ADDRESS LOGIN... (e.g. 'sales@example.org alice bob')"
    if any(not c.isprintable() or c in "<>,;\"" for c in "".join(entry.split())):
        return f"{entry!r} has a character that is in no address or login name"
    return None


USER_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")  # what SME allows; no "/", "..", NUL


def user_name_problem(user: str) -> str | None:
    if not USER_NAME.match(user) or ".." in user:
        return f"refusing user name {user!r}: only a-z, 0-9, '.', '_' and '-'"
    return None


def _not_a_country(entry: str) -> str | None:
    if len(entry) == 2 and entry.isascii() and entry.isalpha():
        return None
    return f"{entry!r} is not a two-letter country code (ISO 3166, e.g. DE, CN, US)"


def _not_an_account(entry: str) -> str | None:
    name, equals, path = entry.partition("=")
    if not (equals and name.strip() and path.strip()):
        return f"{entry!r} is not NAME=MAILDIR"
    if not path.strip().startswith("/"):
        return f"{entry!r}: the Maildir must be an absolute path (cron's working directory is not yours)"
    return user_name_problem(name.strip())


def maildir_pattern_problem(pattern: str, absolute: bool = True) -> str | None:
    """Users are the entries of the directory before {user}: the pattern must name it (in
    the configuration absolutely, for cron), and hold no other brace (a typo that matched
    no one, in silence)."""
    before, user, after = pattern.partition("{user}")
    if not user or "{user}" in after:
        return f"{pattern!r} must contain {{user}} once (e.g. /home/e-smith/files/users/{{user}}/Maildir)"
    if absolute and not pattern.startswith("/"):
        return f"{pattern!r} must be an absolute path (cron's working directory is not yours)"
    if not before.endswith("/") or not (after == "" or after.startswith("/")):
        return f"{{user}} must be a whole directory name in {pattern!r}"
    if any(brace in before + after for brace in "{}"):
        return f"{pattern!r} holds a brace other than {{user}}'s"
    return None


def address_problem(text: str) -> str | None:
    """An envelope address: one local part, '@', a domain; nothing an SMTP command or a
    header line would split on."""
    local, at, domain = text.rpartition("@")
    if not (at and local and domain) or any(c.isspace() or ord(c) < 32 or c in "<>,;" for c in text):
        return f"{text!r} is not an address (name@example.org)"
    return None


def folder_problem(name: str) -> str | None:
    """A trainer folder must be one folder of each user's own, not INBOX (the sweep deletes
    what it learns, expire-junk what is old) and not a path out of the Maildir: levels
    are separated by '.' (Maildir++) or '/' (IMAP servers that use it), none empty."""
    if name.upper() == "INBOX":
        return "INBOX is the users' inbox, and the trainer deletes mail from this folder"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return f"{name!r} holds a control character"
    levels = name.replace("/", ".").split(".")
    if not all(level.strip() for level in levels):
        return (f"{name!r} is not a folder name: levels are separated by one '.' or '/' "
                "(Junk.LearnAsSpam), none empty, none at either end")
    return None


OPTIONS: tuple[Option, ...] = (
    Option("Sensitivity", str, "medium", "Spam tagging preset: veryhigh 2, high 3, medium 5, low 7, "
           "verylow 9 (presets never reject), or custom (TagLevel and RejectLevel).",
           choices=(*SENSITIVITY_LEVELS, "custom"), group="scoring"),
    Option("TagLevel", float, 4.0, "Custom spam tagging level: a score at or above it is spam "
           "(used when Sensitivity is custom).", minimum=-100, maximum=1000, group="scoring"),
    Option("RejectLevel", float, 12.0, "Custom rejection level: a score at or above it is refused "
           "(used only when Sensitivity is custom; 0 disables).", minimum=0, maximum=1000,
           group="scoring"),
    Option("SortSpam", bool, False, "Deliver tagged spam to the junkmail folder (also per user: "
           "`spamkit config set SortSpam false --user NAME`, SME's `db accounts setprop NAME "
           "SortSpam disabled`).", group="delivery", per_user=True),
    Option("SubjectTag", bool, False, "Rewrite the Subject of tagged spam.", group="delivery"),
    Option("SubjectTagText", str, "***SPAM***", "Text put before the Subject of tagged spam "
           "(_SCORE_ is replaced by the score).", group="delivery"),
    Option("UseBayes", bool, True, "Use the Bayes classifier in the score.", group="bayes"),
    Option("BayesAutoLearn", bool, True, "Learn from messages whose rule score is clearly spam "
           "or clearly ham (unless Bayes's own BAYES_* points argue against it by more than one, "
           "as SpamAssassin's autolearn), where learning is asked for: `serve --autolearn`, `spamd --autolearn`, "
           "`check --autolearn` (elsewhere X-Spam-Status says autolearn=disabled).", group="bayes"),
    Option("BayesAutoLearnThresholdSpam", float, 6.0, "Autolearn as spam at or above this score "
           "(without Bayes and list rules; at least 3 points from headers and 3 from the body).",
           minimum=0, group="bayes"),
    Option("BayesAutoLearnThresholdNonspam", float, 0.10, "Autolearn as ham at or below this "
           "score (without Bayes and list rules).", maximum=100, group="bayes"),
    Option("BayesMinSpam", int, 200, "Bayes abstains until this many spam are learned.",
           minimum=0, group="bayes"),
    Option("BayesMinHam", int, 200, "Bayes abstains until this many ham are learned.",
           minimum=0, group="bayes"),
    Option("BayesHamCutoff", float, 0.20, "Bayes probability below which its verdict is ham.",
           minimum=0, maximum=1, group="bayes"),
    Option("BayesSpamCutoff", float, 0.90, "Bayes probability at or above which its verdict is "
           "spam (between the two: unsure).", minimum=0, maximum=1, group="bayes"),
    Option("BayesMaxTokens", int, 1_000_000, "Above this many tokens, learning expires the oldest "
           "and rarest down to 75% of it.", minimum=1000, group="bayes"),
    Option("BayesSeenDays", int, 365, "Days a learned message is remembered as learned (its "
           "seen mark and audit-log events; about 200 bytes a message). After that, learning it "
           "again counts it again. `spamkit stats` reads 30 days of the audit log. 0: forever.",
           minimum=0, group="bayes"),
    Option("Database", str, "", "Token database directory, or a Redis URL "
           "(redis://[:password@]host[:port][/N][?prefix=name:]) for a database several machines "
           "share (empty: $SPAMKIT_DB or the built-in location; --db overrides).", group="storage"),
    Option("WhenDatabaseDown", str, "tempfail", "What `serve` does with a message when the token "
           "database cannot be used (a Redis that is down, a file found damaged): tempfail "
           "answers 451 and the client tries again later; rules scores it with the rules alone, without Bayes "
           "(autolearn=unavailable in X-Spam-Status); unscanned relays it with an X-Spam-Status "
           "header saying so. Never a verdict of ham. (`spamd` answers EX_TEMPFAIL, scores with "
           "the rules, or answers EX_UNAVAILABLE; spamc passes a message it got no verdict for "
           "on unchanged. `deliver` exits 75, scores with the rules, or delivers it unscanned; "
           "for `deliver`, a database the recipient may not read counts as down. `serve` and "
           "`spamd` try a database they could not use again every DatabaseRetry seconds.)",
           choices=("tempfail", "rules", "unscanned"), group="storage"),
    Option("DatabaseRetry", float, 30.0, "Seconds between tries of a token database `serve` or "
           "`spamd` cannot use (unreachable, or found damaged as it opened): meanwhile every "
           "message gets WhenDatabaseDown, and the database is used again from the first try "
           "that finds it answering and sound.", minimum=1, maximum=3600, group="storage"),
    Option("MaxMessageSize", int, 500_000, "Bytes of a message that are scanned: `check` and "
           "`deliver` scan larger mail up to this size; `serve` passes it unscanned, with an "
           "X-Spam-Status header saying so.", minimum=1000, group="scanning"),
    Option("MessageRetentionTime", int, 30, "Days junkmail is kept before `spamkit expire-junk` "
           "deletes it.", minimum=1, group="delivery"),
    Option("MaildirPattern", str, "/home/e-smith/files/users/{user}/Maildir", "Where users' "
           "Maildirs are: a path with {user}; the user names are what fills it.", group="trainer",
           value_problem=maildir_pattern_problem),
    Option("MaildirLayout", str, "maildir++", "How folders lie in each Maildir: maildir++ "
           "(.LearnAsSpam, .Junk.LearnAsSpam: SME, Courier, and Dovecot's default) or fs "
           "(LearnAsSpam/, Junk/LearnAsSpam/: Dovecot's mail_location with LAYOUT=fs). Also per "
           "user, for users whose Dovecot userdb sets a mail location of their own.",
           choices=("maildir++", "fs"), group="trainer", per_user=True),
    Option("ExtraAccounts", list, [], "More accounts to sweep, as NAME=MAILDIR (e.g. "
           "admin=/home/e-smith/Maildir).", group="trainer", entry_problem=_not_an_account),
    Option("SpamFolder", str, "LearnAsSpam", "Folder users move missed spam into.", group="trainer",
           value_problem=folder_problem),
    Option("HamFolder", str, "LearnAsHam", "Folder users copy good mail into.", group="trainer",
           value_problem=folder_problem),
    Option("JunkFolder", str, "junkmail", "Folder tagged spam is sorted into.", group="trainer",
           value_problem=folder_problem),
    Option("LearnHamToInbox", bool, False, "After learning a message as ham, put it back in the "
           "Inbox instead of deleting it.", group="trainer"),
    Option("TrainerMaxFileSize", int, 10_000_000, "Messages larger than this (bytes) are left "
           "in their folder, with a warning.", minimum=1000, group="trainer"),
    Option("ReportSmtpServer", str, "127.0.0.1:25", "host[:port] (port 25 if none) that `spamkit "
           "learn --mail-report` and `spamkit dmarc-reports --send` send through.", group="trainer",
           value_problem=smtp_server_problem),
    Option("ReportFrom", str, "spamkit@localhost", "Sender of the mailed sweep report and of the "
           "DMARC reports (which need a real address of yours).",
           group="trainer", value_problem=address_problem),
    Option("SmtpFilters", list, ["relay", "badmailfrom", "resolvable_fromhost", "badrcptto",
                                  "badhelo", "helo", "headers", "attachments", "spamscore"],
           "Filters of `spamkit serve` and `spamkit milter`, in the order they run.", group="smtp"),
    Option("LocalDomains", list, [], "Domains this server takes mail for; mail to others is "
           "relayed only for RelayClients.", group="smtp"),
    Option("RelayClients", list, ["127.0.0.1", "::1"], "Client addresses allowed to relay "
           "(the MTA in front of the filter).", group="smtp", entry_problem=_not_a_network),
    Option("LocalNetworks", list, ["127.0.0.0/8", "::1/128"], "Networks whose clients the "
           "headers check spares (the guide's separate setting for local networks).", group="smtp",
           entry_problem=_not_a_network),
    Option("BadMailFrom", list, [], "Senders refused at MAIL FROM (patterns with * and ?, or "
           "@domain for every address at a domain, as qmail's badmailfrom), from clients outside "
           "LocalNetworks and RelayClients.",
           group="smtp"),
    Option("WhitelistSenders", list, [], "Senders never refused by the envelope checks (user@host, "
           "a host alone or @host for its every address, or patterns with * and ?).",
           group="smtp"),
    Option("BadRcptTo", list, [], "Recipients refused at RCPT TO (patterns with * and ?, or "
           "@domain), to clients outside LocalNetworks and RelayClients: SME's internal-only "
           "addresses.",
           group="smtp"),
    Option("BadHelo", list, [], "HELO names refused (patterns with * and ?) from clients outside "
           "LocalNetworks and RelayClients.", group="smtp"),
    Option("ScanLocalClients", bool, True, "The spamscore filter scores the mail of our own "
           "clients (LocalNetworks, RelayClients) too. SME never does (its spamassassin plugin "
           "is off for local connections; `config import-sme` sets this false): then their mail "
           "goes on unscored, untagged, never refused as spam nor autolearned. Keep it true "
           "behind an MTA that names no client with XFORWARD, where every session comes from "
           "that MTA and nothing would be scored (the log says so, once, when mail from "
           "loopback that no XFORWARD names goes on unscored).", group="smtp"),
    Option("RequireHeaders", bool, True, "Refuse mail without From: or Date: from clients "
           "outside LocalNetworks.", group="smtp"),
    Option("RefuseRepeatedHeaders", bool, True, "Refuse mail from clients outside LocalNetworks "
           "with more than one of a field RFC 5322 allows once (From, Date, Sender, Reply-To, To, "
           "Cc, Bcc, Message-ID, In-Reply-To, References, Subject), as qpsmtpd's headers plugin "
           "does: two From fields leave DMARC no author to judge.", group="smtp"),
    Option("SmtpMaxHeaderSize", int, 1_000_000, "Bytes of header section the headers filter "
           "takes from clients outside LocalNetworks; more hears 552, as Exim's header_maxsize "
           "(the same 1 MB) refuses it. The corpus's largest is 15 kB; a message of millions "
           "of header lines cost the checks after it seconds and hundreds of MB.",
           minimum=10_000, maximum=1_000_000_000, group="smtp"),
    Option("BlockedExtensions", list, ["exe", "scr", "pif", "bat", "com", "vbs", "cpl", "js"],
           "Attachment file name extensions refused: every name a part gives, anywhere in the "
           "message.", group="smtp"),
    Option("BlockInArchives", bool, True, "BlockedExtensions apply to the files inside zip, "
           "7z, rar, tar and cab attachments too (and a zip inside a zip), to the file inside a gz, "
           "bz2 or xz, and to the files in .iso and .img disk images (every file system's names), "
           "read from the archive's directory and headers: nothing is unpacked but a nested zip or "
           "a compressed stream, up to 10 MB.", group="smtp"),
    Option("BlockEncryptedArchives", bool, False, "Refuse zip, 7z or rar attachments with encrypted "
           "files or names (or a zip inside with them): nothing, a virus scanner included, can "
           "look into them, "
           "and a password-protected zip with its password in the text is how Emotet spread.",
           group="smtp"),
    Option("ClamdAddress", str, "/run/clamav/clamd.ctl", "The clamav filter's ClamAV daemon: "
           "its LocalSocket (Debian's default path) or HOST:PORT of its TCPSocket.", group="smtp",
           value_problem=socket_problem),
    Option("ClamdTimeout", float, 20.0, "Seconds the clamav filter waits for clamd's verdict on "
           "one message, the whole exchange; the wait ends sooner at the DATA checks' deadline "
           "(0.9 of ScanBudget).", minimum=1, maximum=90, group="smtp"),
    Option("ClamavWhenDown", str, "tempfail", "What the clamav filter does with a message when "
           "clamd cannot be reached or does not answer in time: tempfail answers 451 and the "
           "client tries again later (as clamav-milter's default); accept lets it through "
           "unscanned (as qpsmtpd's clamdscan), counted in spamkit_filter_unchecked_total. A "
           "message clamd refuses to scan (over its StreamMaxLength) passes unscanned either "
           "way.", choices=("tempfail", "accept"), group="smtp"),
    Option("GeoIPDatabase", list, [], "The country database: a MaxMind DB (.mmdb: GeoLite2 or "
           "DB-IP Country or City) or the range files of Debian's tor-geoipdb, asked in order "
           "(empty: the first MaxMind DB SpamAssassin would find in /usr/share/GeoIP or "
           "/var/lib/GeoIP, else /usr/share/tor/geoip and geoip6). For the geoip filter and "
           "the rules' X-Relay-Countries; a replaced file is read again within a minute.",
           group="smtp"),
    Option("BlockedCountries", list, [], "The geoip filter refuses mail (550, at RCPT; not to "
           "postmaster or abuse) from clients whose address the country database places in one "
           "of these countries (ISO 3166 codes: CN, RU, ...). LocalNetworks, RelayClients and "
           "clients that log in are never refused.", group="smtp", entry_problem=_not_a_country),
    Option("AllowedCountries", list, [], "When not empty, the geoip filter refuses mail, as for "
           "BlockedCountries, from clients placed in any country not named here. A client the "
           "database does not place passes.", group="smtp", entry_problem=_not_a_country),
    Option("MaxRecipients", int, 100, "Recipients accepted per message.", minimum=1, group="smtp"),
    Option("SmtpMaxMessageSize", int, 15_000_000, "Bytes of one message `serve` takes, offered "
           "as SIZE in EHLO; larger mail hears 552 (SME's qmail MaxMessageSize). Read at start.",
           minimum=10_000, maximum=1_000_000_000, group="smtp"),
    Option("MaxSessions", int, 100, "SMTP sessions at once; more hear 421.", minimum=1,
           group="smtp"),
    Option("MaxSessionsPerClient", int, 10, "SMTP sessions at once from one address "
           "(hosts_allow's instances); more hear 421. LocalNetworks are not limited.",
           minimum=1, group="smtp"),
    Option("MaxLoad", float, 0.0, "Above this one-minute load average mail from the outside "
           "is deferred, as on SME (loadcheck; 0 turns it off): new sessions from outside "
           "LocalNetworks hear 421, and at MAIL 451 for a client outside them that the MTA in "
           "front names with XFORWARD, or for any mail it sends naming no client.", minimum=0,
           group="smtp"),
    Option("EarlyTalkerDelay", float, 0.0, "Seconds to wait before the greeting; a client "
           "that talks first is refused (earlytalker; 0 turns it off). LocalNetworks are "
           "greeted at once, as on SME.", minimum=0, maximum=30,
           group="smtp"),
    Option("SmtpHostname", str, "", "This server's name in the filter's greeting, its Received "
           "header and its Authentication-Results and Received-SPF (Postfix's myhostname, "
           "qpsmtpd's me); empty: the machine's fully qualified name.", group="smtp",
           value_problem=host_name_problem),
    Option("BccAddress", str, "", "An archive copy of every relayed message also goes here "
           "(SME's Bcc and BccUser; which messages: BccDirection).",
           group="smtp", value_problem=lambda text: address_problem(text) if text else None),
    Option("BccMode", str, "bcc", "How the archive copy shows: bcc adds nothing; cc adds "
           "X-Copied-To: <BccAddress> to each copied message, as SME does unless its BccMode "
           "is bcc (recipients then see where their mail is archived).",
           choices=("bcc", "cc"), group="smtp"),
    Option("BccDirection", str, "all", "Which messages BccAddress gets: all; outgoing, the mail "
           "of our own clients (LocalNetworks, RelayClients: SME's \"copy of outgoing emails "
           "only\"); or incoming, everyone else's.", choices=("all", "outgoing", "incoming"),
           group="smtp"),
    Option("MetricsListen", str, "", "host:port for Prometheus metrics at /metrics (empty: off).",
           group="smtp", value_problem=endpoint_problem),
    Option("TlsCertificate", str, "", "PEM certificate (with its chain) for STARTTLS; with "
           "TlsKey set too, `serve` offers STARTTLS (empty: not offered). A running `serve` "
           "loads the pair again when either file changes (a renewal) and at SIGHUP.", group="smtp"),
    Option("TlsKey", str, "", "PEM private key of TlsCertificate.", group="smtp"),
    Option("SmtpAuthentication", bool, False, "`serve` offers SMTP AUTH (PLAIN, LOGIN) and has "
           "Dovecot's auth service (DovecotAuthAddress) check the password: a client that logs in "
           "may relay, and the checks for strangers leave its mail alone, as RelayClients' "
           "(SME's qpsmtpd Authentication, for users sending from outside the office).",
           group="smtp"),
    Option("TlsBeforeAuth", bool, True, "AUTH only on an encrypted session (after STARTTLS, so "
           "TlsCertificate and TlsKey are needed), as SME's default: no password crosses the "
           "network in clear. False takes logins on plain sessions too (then Dovecot must allow "
           "it: disable_plaintext_auth = no).", group="smtp"),
    Option("ImplicitTlsLoginRequired", bool, False, "Sessions on serve's --listen-tls port (465) "
           "must log in before MAIL, as on --listen-submission (RFC 8314 makes 465 a submission "
           "port). Off, as on SME, that port takes what port 25 takes. Read at start.",
           group="smtp"),
    Option("DovecotAuthAddress", str, "/run/dovecot/auth-client", "Where SmtpAuthentication asks "
           "Dovecot: the path of a unix_listener of its `service auth` that the user `serve` runs "
           "as may use, or HOST:PORT of an inet_listener there.", group="smtp",
           value_problem=socket_problem),
    Option("AuthTimeout", float, 30.0, "Seconds `serve` waits for Dovecot's answer to one login "
           "(Dovecot answers a wrong password after 2 s, and up to 15 s for an address that keeps "
           "failing); past it the client gets 454 and may try again.", minimum=1, maximum=120,
           group="smtp"),
    Option("AuthFailureLimit", int, 10, "Failed logins from one address (an IPv6 client's /64) "
           "in an hour, after which its AUTH is answered 454 without Dovecot being asked, until "
           "the oldest is an hour old (0: no limit). LocalNetworks are never held back.",
           minimum=0, group="smtp"),
    Option("SenderLogins", list, [], "More addresses a login may send as, for the senderlogin "
           "filter, as \"ADDRESS LOGIN...\": ADDRESS a local part (at each of LocalDomains, e.g. "
           "'john.smith jsmith', an SME pseudonym), an address, @domain or a pattern with * and ?. "
           "Besides these, a login owns LOGIN@ each of LocalDomains (or itself, when it is an "
           "address).", group="smtp", entry_problem=_not_a_grant),
    Option("SendLimitPerHour", int, 500, "The sendlimit filter: recipients one user who logged "
           "in may send to in an hour, over all their sessions; past it, their RCPT hears 450 4.7.1 "
           "(deferred: the mail program tries again) and the log a warning, since a script on a "
           "stolen password sends thousands. Per user in a [user.NAME] table, for one who needs "
           "more; 0: no limit.", minimum=0, group="smtp", per_user=True),
    Option("SendLimitDatabase", str, "", "Directory of the sendlimit filter's counts (empty: "
           "`sendlimit` beside the token database), or a Redis URL that filters on several "
           "machines share.", group="smtp"),
    Option("HeloPolicy", str, "lenient", "The helo filter's checks: lenient (syntax, bare IPs, "
           "forged address literals, localhost, our own names); rfc adds a fully qualified name "
           "that resolves and a reverse name for the client; strict adds that the name is the "
           "client's (its address, or its reverse name).", choices=("lenient", "rfc", "strict"),
           group="smtp"),
    Option("HeloOwnNames", list, [], "Names a client must not claim in HELO because they are "
           "ours (the helo filter); this host's name and LocalDomains are always included.",
           group="smtp"),
    Option("WhitelistHosts", list, [], "Client addresses or networks whose mail skips the "
           "other filters (whitelisthosts).", group="smtp", entry_problem=_not_a_network),
    Option("WhitelistHelo", list, [], "HELO names (patterns) whose mail skips the other "
           "filters (whitelisthelo).", group="smtp"),
    Option("BadMailFromTo", list, [], "\"SENDER RECIPIENT\" pattern pairs refused together "
           "(badmailfromto), from clients outside LocalNetworks and RelayClients.", group="smtp", entry_problem=_not_a_pair),
    Option("KarmaDatabase", str, "", "Directory of the karma plugin's database (empty: "
           "`karma` beside the token database), or a Redis URL (redis://host/N?prefix=...) "
           "that filters on several machines share.", group="smtp"),
    Option("KarmaNegative", int, 3, "karma: how many more bad messages than good make an "
           "address naughty (qpsmtpd's and SME's KarmaNegative: 2 makes 8 good and 10 bad "
           "naughty). A negative number, the form spamkit read before, counts as its size.",
           group="smtp"),
    Option("KarmaStrikes", int, 3, "karma: bad messages needed before an address can be "
           "naughty (on SME, the karma points that make one connection bad; here each refused "
           "or spam message is one bad message).", minimum=1, group="smtp"),
    Option("KarmaForgetDays", int, 30, "karma: an address not heard from for this many days is "
           "forgotten (its counts start again from nothing).", minimum=2, group="smtp"),
    Option("GreylistDatabase", str, "", "Directory of the greylist filter's database (empty: "
           "`greylist` beside the token database), or a Redis URL (redis://host/N?prefix=...) "
           "that the filters of several MX hosts share, so a retry may come to any of them.",
           group="smtp"),
    Option("GreylistDelay", int, 300, "greylist: seconds a new (client network, sender, "
           "recipient) must wait before its retry is taken.", minimum=0, maximum=86400,
           group="smtp"),
    Option("GreylistRetryHours", int, 48, "greylist: hours after the delay within which the "
           "retry must come; later, the wait starts again.", minimum=1, maximum=24 * 30,
           group="smtp"),
    Option("GreylistPassDays", int, 36, "greylist: days a triplet that passed keeps passing "
           "at once after it last sent (qpsmtpd's white_timeout).", minimum=1, maximum=3650,
           group="smtp"),
    Option("GreylistAutoWhitelist", int, 5, "greylist: a client network whose triplets have "
           "passed this many times is not greylisted again (0: never).", minimum=0,
           group="smtp"),
    Option("GreylistBySubnet", bool, True, "greylist: a triplet's client is its /24 (IPv6 "
           "/64), since big senders retry from another address of a pool; false: the "
           "address itself.", group="smtp"),
    Option("GreylistExceptRecipients", list, [], "greylist: recipients whose mail is never "
           "greylisted, as WhitelistSenders is written (user@host, @host, patterns with * "
           "and ?): an address where a delay costs more than the spam it lets in. Mail to "
           "postmaster@ and abuse@ never is.", group="smtp"),
    Option("GreylistAction", str, "denysoft", "What the greylist filter does with a triplet "
           "that must wait: denysoft (450 at RCPT) or log (only logs it, to see what it "
           "would do).", choices=("denysoft", "log"), group="smtp"),
    Option("SmtpTimeout", float, 60.0, "Seconds `serve` waits for a client's next command, "
           "or for more of a message during DATA, before it closes the session with 421: an "
           "idle client holds a session no longer. Read at start.", minimum=1, maximum=3600,
           group="smtp"),
    Option("SmtpAfterQueue", bool, False, "`serve` is the MTA's after-queue content filter "
           "(Postfix's content_filter), not before its queue: it then refuses nothing for good, "
           "since the MTA would bounce what it refuses to a sender who is usually forged "
           "(backscatter). A message it would have refused goes on with an X-Spam-Would-Refuse "
           "header saying what it would have answered (and, at RejectLevel, tagged as spam); "
           "temporary refusals stand, as the MTA retries them. Set SmtpVerifyRecipients off "
           "there: the MTA has checked the recipients.", group="smtp"),
    Option("SmtpVerifyRecipients", bool, True, "`serve` puts each recipient its filters "
           "pass to the next hop at RCPT (MAIL, RCPT, RSET) and passes a refusal on for that "
           "recipient alone: an unknown user then bounces alone, where after DATA one reply "
           "must stand for every recipient of the message.", group="smtp"),
    Option("ScanBudget", float, 30.0, "Seconds `serve` (and `milter`) gives the DATA checks of one message "
           "(DNS lists, SPF, DKIM, the score); past it the client gets 451 and nothing is "
           "relayed, before the MTA in front gives up (Postfix waits 100 s).",
           minimum=1, maximum=90, group="smtp"),
    Option("RBLList", list, [], "DNSBL zones the dnsbl filter asks about each client's address "
           "(SME's RBLList; zen.spamhaus.org is the conservative choice). SME's "
           "colon- or comma-joined form is read too.", group="smtp", entry_problem=_not_zones),
    Option("SBLList", list, [], "Zones the rhsbl filter asks about each sender's domain "
           "(SME's SBLList, e.g. dbl.spamhaus.org).", group="smtp", entry_problem=_not_zones),
    Option("UBLList", list, [], "URI blocklists the uribl filter asks about the domains a "
           "message links to (SME's UBLList): zone, or zone:bits to count only some answer bits "
           "of a combined list, e.g. multi.surbl.org:8-16-64-128, black.uribl.com, "
           "dbl.spamhaus.org.", group="smtp", entry_problem=_not_uri_zones),
    Option("UriblAction", str, "deny", "What the uribl filter does with a message that links "
           "to a listed domain: deny (554), denysoft (451), add-header (X-URIBL-Match) or log.",
           choices=("deny", "denysoft", "add-header", "log"), group="smtp"),
    Option("UriblSkipDomains", list, [], "Domains the uribl filter never asks about (besides "
           "LocalDomains): ones your own mail links to often.", group="smtp"),
    Option("DnsServers", list, [], "Resolvers the DNS filters ask, as address or address:port "
           "(empty: those of /etc/resolv.conf, read again when it changes). DNSBLs refuse queries from large public "
           "resolvers: use this server's own.", group="smtp"),
    Option("DnsTimeout", float, 5.0, "Seconds a DNS filter waits for one lookup; a list that "
           "does not answer in time lets the mail through. In the DATA checks (spf, dkim, dmarc, "
           "uribl) no lookup waits past their deadline (0.9 of ScanBudget).", minimum=0.1, maximum=30,
           group="smtp"),
    Option("PyzorServers", list, ["public.pyzor.org:24441"], "pyzor: the Pyzor servers asked "
           "about each message, in turn until one answers (HOST[:PORT], port 24441 if none).",
           group="smtp", entry_problem=lambda entry: server_problem(entry, 24441)),
    Option("PyzorTimeout", float, 5.0, "pyzor: seconds to wait for the servers' answer, all "
           "of them together (SpamAssassin's pyzor_timeout); then the message is scored "
           "without it.", minimum=0.1, maximum=60, group="smtp"),
    Option("PyzorCountMin", int, 5, "pyzor: reports needed for PYZOR_CHECK to hit "
           "(SpamAssassin's pyzor_count_min).", minimum=1, group="smtp"),
    Option("PyzorWelcomelistMin", int, 10, "pyzor: welcomelistings that may cancel the "
           "reports (SpamAssassin's pyzor_welcomelist_min).", minimum=1, group="smtp"),
    Option("PyzorWelcomelistFactor", float, 0.2, "pyzor: with PyzorWelcomelistMin or more "
           "welcomelistings, reports are cancelled when the welcomelistings are at least this "
           "share of them (SpamAssassin's pyzor_welcomelist_factor).", minimum=0, maximum=1,
           group="smtp"),
    Option("SpfRejectFail", bool, False, "spf: refuse mail whose sender domain's SPF record "
           "says fail (550 5.7.23), instead of leaving it to the score (SPF_FAIL).",
           group="smtp"),
    Option("SpfRejectPolicy", int, 0, "spf, as SME's SPFRejectPolicy: refuse mail by its "
           "SPF result when the author domain publishes no DMARC policy (with one, even p=none, "
           "DMARC decides). 0 refuses nothing; 1 fail; 2 softfail too; 3 neutral too; 4 also "
           "no SPF record or a broken one (550), and a failed lookup (451).",
           minimum=0, maximum=4, group="smtp"),
    Option("DkimKeyDirectory", str, "", "Where the dkimsign filter's keys are, as SME lays "
           "them out: default/{private,selector,public} for every domain, <domain>/... for one "
           "(empty: dkim_keys beside the configuration file). `spamkit dkim keygen` makes them.",
           group="smtp"),
    Option("DisclaimerFile", str, "", "The disclaimer filter's text, added to mail our users "
           "send outside LocalDomains (SME's smtpd disclaimer); DisclaimerFile_DOMAIN, if there "
           "is one, for mail from DOMAIN instead, and either with .html after it for HTML bodies "
           "(empty: `disclaimer` beside the configuration file).", group="smtp"),
    Option("DkimSigningExcept", list, [], "Domains the dkimsign filter does not sign (SME's "
           "per-domain `DKIMSigning disabled`).", group="smtp"),
    Option("DmarcReject", bool, False, "dmarc: refuse mail that fails DMARC when the author "
           "domain's policy is reject (550 5.7.1), instead of leaving it to the score "
           "(DMARC_REJECT). Mailing lists that rewrite messages fail DMARC.", group="smtp"),
    Option("DmarcReporting", bool, True, "dmarc: record what was found for domains whose "
           "policy asks for aggregate reports (rua=), for `spamkit dmarc-reports --send` to mail "
           "them once a day (SME's DMARCReporting).", group="smtp"),
    Option("DmarcReportDatabase", str, "", "Where those records are kept (empty: "
           "dmarc-reports.sqlite beside the token database's directory).", group="smtp"),
    Option("DmarcReportOrg", str, "", "The organization named in the reports sent (empty: "
           "this host's name).", group="smtp"),
    Option("UseBuiltinRules", bool, True, "Load spamkit's own rule set. Off, with no RulePaths: "
           "Bayes and the lists judge alone, and the rule engine is not loaded at all.",
           group="rules"),
    Option("RulePaths", list, [], "Rule files or directories (SpamAssassin .cf syntax) loaded "
           "after the built-in rules, in order; later scores override earlier ones.",
           group="rules"),
    Option("ListsFile", str, "", "White/blacklist file (empty: `lists` beside the configuration "
           "file).", group="rules"),
    Option("RuleTimeLimit", float, 300.0, "Seconds one message's rules may take; rules not started "
           "by then are skipped and the message gets TIME_LIMIT_EXCEEDED, as SpamAssassin's "
           "time_limit (whose default this is; a rule file's time_limit sets it unless this "
           "is set). 0: no limit. `serve` also stops them a tenth of ScanBudget before its 451.",
           minimum=0, group="rules"),
)

OPTIONS_BY_NAME = {option.name: option for option in OPTIONS}
OPTIONS_BY_LOWER = {option.name.lower(): option for option in OPTIONS}
