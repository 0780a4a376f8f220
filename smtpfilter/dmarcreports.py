"""DMARC aggregate reports (RFC 7489 7.2 and appendix C): SME's DMARCReporting.

The dmarc filter records, for each message from a domain whose policy asks for reports
(rua=mailto:...), what it found: one row per day, policy domain, client address, author
domain, result and disposition, with a count. `spamkit dmarc-reports --send` (daily, from
cron) turns each domain's finished days into one report, gzipped XML mailed to the
addresses the policy names, and forgets what it sent. An address outside the policy's
own organizational domain gets reports only if that domain agrees to take them (a
`<policy domain>._report._dmarc.<its domain>` TXT record starting v=DMARC1, RFC 7489
7.1), so a forged policy cannot aim our reports at a third party.

Rows are kept at most KEEP_DAYS days: reports that could not be sent that long are
dropped, so the file stays bounded.
"""

from __future__ import annotations

import calendar
import gzip
import json
import re
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from xml.sax.saxutils import escape as _escape

from smtpfilter.dns import DnsClient, Outcome
from smtpfilter.domains import organizational_domain
from spamkit.errors import StoreError

KEEP_DAYS = 7
# characters XML 1.0 cannot carry, even escaped: what a sender wrote is cut of them
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_KEY_COLUMNS = ("day", "policy_domain", "policy", "rua", "source_ip", "header_from",
                "disposition", "dkim", "spf", "dkim_auth", "spf_auth")


@dataclass(frozen=True)
class Observation:
    """What the dmarc filter found about one message, as a report row wants it."""

    policy_domain: str
    policy: dict[str, str | int]  # p, sp, adkim, aspf, pct: the published policy
    rua: tuple[str, ...]  # mailto: addresses
    source_ip: str
    header_from: str
    disposition: str  # what this server did: none or reject
    dkim: str  # pass or fail: an aligned DKIM pass or not
    spf: str  # likewise for SPF
    dkim_auth: tuple[tuple[str, str, str], ...]  # (domain, selector, result) of each signature
    spf_auth: tuple[str, str]  # (domain, result) of the MAIL FROM check


@dataclass
class Report:
    policy_domain: str
    day: str  # YYYY-MM-DD, UTC
    policy: dict[str, str | int]
    rua: tuple[str, ...]
    rows: list[tuple[Observation, int]] = field(default_factory=list)


class ReportStore:
    """The recorded rows, in SQLite (one writer lock per process; WAL, so the cron job
    reads while the filter writes)."""

    def __init__(self, path: Path) -> None:
        """Opens (or makes) the file; one that cannot be is a StoreError naming it."""
        self.path = path
        self._lock = threading.Lock()
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), check_same_thread=False, timeout=30)
            with self._lock, self._db:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.execute(
                    f"CREATE TABLE IF NOT EXISTS rows ({', '.join(c + ' TEXT NOT NULL' for c in _KEY_COLUMNS)}, "
                    f"count INTEGER NOT NULL, PRIMARY KEY ({', '.join(_KEY_COLUMNS)}))")
        except (OSError, sqlite3.Error) as error:
            raise StoreError(f"cannot use the DMARC report records at {path}: {error} (move the "
                             "file away to start anew, or set DmarcReporting = false)") from None

    def record(self, seen: Observation, when: float | None = None) -> None:
        day = time.strftime("%Y-%m-%d", time.gmtime(when or time.time()))
        values = (day, seen.policy_domain, json.dumps(seen.policy, sort_keys=True), json.dumps(seen.rua),
                  seen.source_ip, seen.header_from, seen.disposition, seen.dkim, seen.spf,
                  json.dumps(seen.dkim_auth), json.dumps(seen.spf_auth))
        with self._lock, self._db:
            self._db.execute(
                f"INSERT INTO rows VALUES ({', '.join('?' * (len(_KEY_COLUMNS) + 1))}) "
                f"ON CONFLICT DO UPDATE SET count = count + 1", (*values, 1))

    def reports(self, before_day: str) -> list[Report]:
        """Each domain's report for each finished day before `before_day`."""
        with self._lock:
            found = self._db.execute(
                f"SELECT {', '.join(_KEY_COLUMNS)}, count FROM rows WHERE day < ? "
                "ORDER BY policy_domain, day, source_ip", (before_day,)).fetchall()
        reports: dict[tuple[str, str], Report] = {}
        for (day, domain, policy, rua, source_ip, header_from, disposition, dkim, spf,
             dkim_auth, spf_auth, count) in found:
            report = reports.setdefault((domain, day), Report(domain, day, json.loads(policy),
                                                              tuple(json.loads(rua))))
            report.rua = tuple(dict.fromkeys(report.rua + tuple(json.loads(rua))))
            seen = Observation(domain, json.loads(policy), tuple(json.loads(rua)), source_ip,
                               header_from, disposition, dkim, spf,
                               tuple(tuple(entry) for entry in json.loads(dkim_auth)),
                               tuple(json.loads(spf_auth)))
            report.rows.append((seen, count))
        return list(reports.values())

    def forget(self, report: Report) -> None:
        with self._lock, self._db:
            self._db.execute("DELETE FROM rows WHERE policy_domain = ? AND day = ?",
                             (report.policy_domain, report.day))

    def forget_before(self, day: str) -> int:
        with self._lock, self._db:
            return self._db.execute("DELETE FROM rows WHERE day < ?", (day,)).rowcount

    def close(self) -> None:
        self._db.close()


def compact_reports(path: Path) -> tuple[int, int]:
    """Give the file's unused pages back to the disk (SQLite's VACUUM): the rows of the
    reports sent are deleted and their pages reused, but the file never shortens, so a day
    of many sources leaves it at its largest. (bytes before, after), the write-ahead log
    counted. Needs the file to itself, as `db compact` needs `serve` stopped."""
    before = _bytes_of(path)
    try:
        db = sqlite3.connect(str(path), timeout=30)
        try:
            db.execute("VACUUM")
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the log's pages back into the file
        finally:
            db.close()
    except sqlite3.Error as error:
        raise StoreError(f"cannot compact the DMARC report records at {path}: {error}") from None
    return before, _bytes_of(path)


def _bytes_of(path: Path) -> int:
    log = path.with_name(path.name + "-wal")
    return path.stat().st_size + (log.stat().st_size if log.exists() else 0)


def report_xml(report: Report, org_name: str, email: str, report_id: str) -> bytes:
    """The aggregate report of RFC 7489 appendix C for one domain and one UTC day."""
    begin = _day_start(report.day)
    end = begin + 86399
    p = report.policy
    lines = ['<?xml version="1.0" encoding="UTF-8"?>', "<feedback>", "  <report_metadata>",
             f"    <org_name>{escape(org_name)}</org_name>", f"    <email>{escape(email)}</email>",
             f"    <report_id>{escape(report_id)}</report_id>",
             f"    <date_range><begin>{begin}</begin><end>{end}</end></date_range>",
             "  </report_metadata>", "  <policy_published>",
             f"    <domain>{escape(report.policy_domain)}</domain>",
             f"    <adkim>{escape(str(p.get('adkim', 'r')))}</adkim><aspf>{escape(str(p.get('aspf', 'r')))}</aspf>",
             f"    <p>{escape(str(p.get('p', 'none')))}</p><sp>{escape(str(p.get('sp', 'none')))}</sp>",
             f"    <pct>{int(p.get('pct', 100))}</pct>", "  </policy_published>"]
    for seen, count in report.rows:
        lines += ["  <record>", "    <row>", f"      <source_ip>{escape(seen.source_ip)}</source_ip>",
                  f"      <count>{count}</count>",
                  f"      <policy_evaluated><disposition>{seen.disposition}</disposition>"
                  f"<dkim>{seen.dkim}</dkim><spf>{seen.spf}</spf></policy_evaluated>",
                  "    </row>",
                  f"    <identifiers><header_from>{escape(seen.header_from)}</header_from></identifiers>",
                  "    <auth_results>"]
        for domain, selector, result in seen.dkim_auth:
            lines.append(f"      <dkim><domain>{escape(domain)}</domain><selector>{escape(selector)}"
                         f"</selector><result>{escape(result)}</result></dkim>")
        spf_domain, spf_result = seen.spf_auth
        lines += [f"      <spf><domain>{escape(spf_domain)}</domain><scope>mfrom</scope>"
                  f"<result>{escape(spf_result)}</result></spf>", "    </auth_results>", "  </record>"]
    lines.append("</feedback>")
    return ("\n".join(lines) + "\n").encode("utf-8")


def allowed_recipients(report: Report, dns: DnsClient) -> tuple[list[str], list[str]]:
    """(addresses that may get this report, addresses refused and why): one outside the
    policy's organizational domain must have agreed (RFC 7489 7.1)."""
    allowed, refused = [], []
    ours = organizational_domain(report.policy_domain)
    for uri in report.rua:
        address = uri[len("mailto:"):].split("!", 1)[0].strip()
        domain = address.rpartition("@")[2].lower()
        if "@" not in address or not domain:
            refused.append(f"{uri}: not an address")
            continue
        if organizational_domain(domain) != ours:
            answer = dns.lookup(f"{report.policy_domain}._report._dmarc.{domain}", "TXT")
            if answer.outcome is not Outcome.FOUND or not any(
                    text.startswith(b"v=DMARC1") for text in answer.texts):
                refused.append(f"{address}: {domain} has not agreed to take reports for "
                               f"{report.policy_domain}")
                continue
        allowed.append(address)
    return allowed, refused


def report_message(report: Report, xml: bytes, receiver: str, sender: str, report_id: str,
                   recipients: list[str]) -> EmailMessage:
    """The mail carrying one report (RFC 7489 7.2.1.1: its file name and subject)."""
    begin = _day_start(report.day)
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain=receiver)
    message["Subject"] = (f"Report Domain: {report.policy_domain} Submitter: {receiver} "
                          f"Report-ID: <{report_id}>")
    message.set_content(f"DMARC aggregate report for {report.policy_domain}, {report.day} (UTC), "
                        f"from {receiver}.\n")
    name = f"{receiver}!{report.policy_domain}!{begin}!{begin + 86399}!{report_id}.xml.gz"
    message.add_attachment(gzip.compress(xml, mtime=0), maintype="application", subtype="gzip",
                           filename=name)
    return message


def escape(value: str) -> str:
    """Text for an XML element: escaped, and without the characters XML cannot carry."""
    return _escape(_NOT_XML.sub("", value))


def _day_start(day: str) -> int:
    """The Unix time at which a UTC day (YYYY-MM-DD) begins."""
    return calendar.timegm(time.strptime(day, "%Y-%m-%d"))


def new_report_id() -> str:
    return uuid.uuid4().hex
