"""What the SMTP filter's log says about a day's mail: a summary for the administrator
(SME's mailstats report), read back from the lines `spamkit serve` writes.

The filter logs one line a message (at the end of DATA) and one a refusal before DATA
(smtpfilter/server.py), one a connection a limit turned away (limits.py) and one a
failed login (auth.py). Each is read back here. The fields a client chose (HELO,
addresses) are logged as they came, spaces included, so a line is read from both ends:
the fields we wrote (reply, score, filter, time) from the right, which a client cannot
shift, and the client's address from the left. A line this module cannot read is
counted, never an error: a log holds other programs' lines too.
"""

from __future__ import annotations

import math
import re
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

MAX_LINE = 16_384  # longer than any line the filter writes (rcpts are cut at 2,000 characters)

# the tail of a message's line, which only we write (user= is the login, known to the server)
_MESSAGE_TAIL = re.compile(
    r" reply='(?P<reply>[^']*)' score=(?P<score>\S+) by=(?P<by>\S+) time=(?P<seconds>[0-9.]+)s"
    r" id=(?P<id>[0-9A-F]+)(?: user=(?P<user>.*?))?(?: disclaimer=\S+)?(?: country=(?P<country>\S+))?$")
_REFUSAL_TAIL = re.compile(
    r" stage=(?P<stage>\w+) reply='(?P<reply>[^']*)' by=(?P<by>\S+)(?: user=(?P<user>.*?))?"
    r"(?: country=(?P<country>\S+))?$")
_CONNECTION = re.compile(r"client=(?P<client>\S+) stage=connect reply='(?P<reply>[^']*)' by=(?P<by>\S+)$")
_LOGIN_FAILED = re.compile(r"client=(?P<client>\S+) auth=failed user=(?P<user>.*) method=\S+ failures=\d+")
_WOULD_REFUSE = re.compile(r"client=(?P<client>\S+) stage=\w+ would_refuse='[^']*' by=(?P<by>\S+): after the queue")
_CLIENT = re.compile(r"client=(\S+) helo=")
# spamd's request line (smtpfilter/spamd.py): the verdict as its Spam: header gave it
_SPAMD = re.compile(r"spamd: client=(?P<client>\S+) method=\S+ user=.* size=\d+ spam='(?P<spam>[^']*)' "
                    r"reply='(?P<reply>[^']*)' time=(?P<seconds>[0-9.]+)s$")
_VIRUS = re.compile(r"clamd found (?P<name>.+) in a message from (?P<client>\S+)$")

_ISO_TIME = re.compile(r"(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2}):(\d{2})")
_SYSLOG_TIME = re.compile(r"^([A-Z][a-z]{2}) +(\d{1,2}) (\d{2}):(\d{2}):(\d{2}) ")
_MONTHS = {name: number for number, name in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}

SCORE_BANDS = (-math.inf, 0, 2, 4, 6, 8, 10, 12, 15, 20, math.inf)


@dataclass(frozen=True)
class LogEvent:
    """One line of the filter's log that the report counts."""

    kind: str  # "message", "refusal" (before DATA), "connection", "login_failed", "would_refuse",
    # "virus", "spamd" (a request to `spamkit spamd`; its score 1.0 when the answer was spam)
    client: str
    when: float | None = None  # seconds since the epoch; None: the line gave no time
    reply: str = ""
    by: str = ""
    sender: str = ""
    recipients: int = 0
    score: float | None = None  # None: no score ("-": no spamscore note; "unscanned")
    unscanned: bool = False  # spamscore let it through unscored (too big, database down)
    seconds: float = 0.0
    user: str = ""
    country: str = ""


def read_line(line: str, now: float | None = None) -> LogEvent | None:
    """The event a log line records, or None for any other line (another program's, the
    filter's warnings, a line cut short)."""
    if len(line) > MAX_LINE:
        return None
    line = line.rstrip("\r\n")
    virus = _VIRUS.search(line)
    if virus is not None:  # (the clamav filter's line; its message's own line says by=clamav)
        return LogEvent("virus", virus["client"], line_time(line[:virus.start()], now), by=virus["name"])
    spamd = _SPAMD.search(line) if "spamd: client=" in line else None
    if spamd is not None:  # (spamd's line for what was no request is passed over below)
        return LogEvent("spamd", spamd["client"], line_time(line[:spamd.start()], now),
                        reply=spamd["reply"], score=1.0 if spamd["spam"].startswith("True") else 0.0,
                        seconds=float(spamd["seconds"]))
    start = line.find("client=")
    while start > 0 and line[start - 1] != " ":
        start = line.find("client=", start + 1)
    if start < 0 or line[max(0, start - 7):start] == "spamd: ":
        return None
    when = line_time(line[:start], now)
    body = line[start:]
    if body.startswith("client=") and " helo=" in body:
        return _message(body, when) or _refusal(body, when)
    for pattern, kind in ((_CONNECTION, "connection"), (_LOGIN_FAILED, "login_failed"),
                          (_WOULD_REFUSE, "would_refuse")):
        found = pattern.match(body)
        if found:
            groups = found.groupdict()
            return LogEvent(kind, groups["client"], when, reply=groups.get("reply") or "",
                            by=groups.get("by") or "", user=groups.get("user") or "")
    return None


def _message(body: str, when: float | None) -> LogEvent | None:
    tail = _MESSAGE_TAIL.search(body)
    envelope = _envelope(body[:tail.start()], " rcpts=") if tail else None
    if tail is None or envelope is None:
        return None
    client, sender, recipients = envelope
    return LogEvent("message", client, when, reply=tail["reply"], by=tail["by"], sender=sender,
                    recipients=len(recipients.split(",")) if recipients else 0,
                    score=_number(tail["score"]), unscanned=tail["score"] == "unscanned",
                    seconds=float(tail["seconds"]),
                    user=tail["user"] or "", country=tail["country"] or "")


def _refusal(body: str, when: float | None) -> LogEvent | None:
    tail = _REFUSAL_TAIL.search(body)
    envelope = _envelope(body[:tail.start()], " rcpt=") if tail else None
    if tail is None or envelope is None:
        return None
    client, sender, recipient = envelope
    return LogEvent("refusal", client, when, reply=tail["reply"], by=tail["by"], sender=sender,
                    recipients=0 if recipient == "-" else 1,
                    user=tail["user"] or "", country=tail["country"] or "")


def _envelope(head: str, recipients_field: str) -> tuple[str, str, str] | None:
    """(client, sender, recipients) of "client=C helo=H [tls=T] from=<S> rcpt[s]=R", the
    sender and recipients found from the right, past whatever the HELO holds."""
    recipients_at = head.rfind(recipients_field)
    from_at = head.rfind(" from=<", 0, recipients_at)
    client = _CLIENT.match(head)
    if client is None or recipients_at < 0 or from_at < 0 or not head[:recipients_at].endswith(">"):
        return None
    return (client.group(1), head[from_at + len(" from=<"):recipients_at - 1],
            head[recipients_at + len(recipients_field):])


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def line_time(prefix: str, now: float | None = None) -> float | None:
    """The time a line was written, from what comes before its fields: our own
    "2026-12-03 16:40:19,123" (local time), an ISO time (journalctl -o short-iso), or
    syslog's "Dec  3 16:40:19" (journalctl's default), whose year is the one that puts
    it in the last twelve months."""
    found = _ISO_TIME.search(prefix)
    try:
        if found:
            year, month, day, hour, minute, second = (int(part) for part in found.groups())
            return time.mktime((year, month, day, hour, minute, second, 0, 0, -1))
        found = _SYSLOG_TIME.match(prefix)
        if found is None or found.group(1) not in _MONTHS:
            return None
        month, day = _MONTHS[found.group(1)], int(found.group(2))
        hour, minute, second = (int(part) for part in found.groups()[2:])
        now = time.time() if now is None else now
        year = time.localtime(now).tm_year
        stamp = time.mktime((year, month, day, hour, minute, second, 0, 0, -1))
        if stamp > now + 86400:  # December's lines read in January
            stamp = time.mktime((year - 1, month, day, hour, minute, second, 0, 0, -1))
        return stamp
    except (OverflowError, ValueError):
        return None


def _domain(address: str) -> str:
    return address.rpartition("@")[2].lower() if "@" in address else ("<>" if not address else "-")


@dataclass
class _Counts:
    relayed: int = 0
    spam: int = 0
    rejected: int = 0
    deferred: int = 0

    def count(self, event: LogEvent, spam: bool) -> None:
        if event.reply.startswith("2"):
            self.relayed += event.kind == "message"
            self.spam += spam
        elif event.reply.startswith("5"):
            self.rejected += 1
        elif event.reply.startswith("4"):
            self.deferred += 1

    def total(self) -> int:
        return self.relayed + self.rejected + self.deferred

    def as_json(self) -> dict[str, int]:
        return {"relayed": self.relayed, "spam": self.spam, "rejected": self.rejected,
                "deferred": self.deferred}


@dataclass
class MailStats:
    """The counts of a stretch of log. `tag_level`: the score from which a relayed
    message was tagged as spam (the configuration's, after its Sensitivity preset)."""

    tag_level: float
    top: int = 10
    lines: int = 0
    unread: int = 0  # lines over MAX_LINE or not text
    first: float | None = None
    last: float | None = None
    messages: _Counts = field(default_factory=_Counts)
    before_data: _Counts = field(default_factory=_Counts)  # refused commands (MAIL, RCPT, ...)
    connections_refused: int = 0
    logins_failed: int = 0
    filters: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    scores: Counter[int] = field(default_factory=Counter)
    unscanned: int = 0
    clients: dict[str, _Counts] = field(default_factory=lambda: defaultdict(_Counts))
    countries: dict[str, str] = field(default_factory=dict)
    domains: dict[str, _Counts] = field(default_factory=lambda: defaultdict(_Counts))
    logins: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    hours: dict[str, _Counts] = field(default_factory=lambda: defaultdict(_Counts))
    # the times at DATA, counted by their millisecond (as the log writes them): a day of a
    # million messages takes as many entries as there are distinct times, not a million
    scan_seconds: Counter[float] = field(default_factory=Counter)
    viruses: Counter[str] = field(default_factory=Counter)
    spamd: Counter[str] = field(default_factory=Counter)  # requests, spam, failed

    def add_all(self, events: Iterable[LogEvent]) -> None:
        for event in events:
            self.add(event)

    def add(self, event: LogEvent) -> None:
        if event.when is not None:
            self.first = event.when if self.first is None else min(self.first, event.when)
            self.last = event.when if self.last is None else max(self.last, event.when)
        if event.kind == "login_failed":
            self.logins_failed += 1
            self.logins[event.user]["failed"] += 1
            return
        if event.kind == "would_refuse":
            self.filters[event.by]["would_refuse"] += 1
            return
        if event.kind == "virus":
            self.viruses[event.by] += 1
            return
        if event.kind == "spamd":
            self.spamd["requests"] += 1
            self.spamd["spam"] += event.score == 1.0
            self.spamd["failed"] += event.reply.split()[1:2] != ["0"]  # ("SPAMD/1.1 0 EX_OK", "... 0 PONG")
            return
        spam = event.kind == "message" and event.score is not None and event.score >= self.tag_level
        if event.kind == "connection":
            self.connections_refused += 1
        elif event.kind == "message":
            self.messages.count(event, spam)
            self._scanned(event)
        else:
            self.before_data.count(event, spam)
        outcome = {"4": "deferred", "5": "rejected"}.get(event.reply[:1])
        if outcome is not None:
            self.filters[event.by][outcome] += 1
        self.clients[event.client].count(event, spam)
        if event.country:
            self.countries[event.client] = event.country
        if event.kind != "connection":
            self.domains[_domain(event.sender)].count(event, spam)
        if event.user and event.kind == "message" and event.reply.startswith("2"):
            self.logins[event.user]["messages"] += 1
            self.logins[event.user]["recipients"] += event.recipients
        if event.when is not None:
            self.hours[time.strftime("%Y-%m-%d %H:00", time.localtime(event.when))].count(event, spam)

    def _scanned(self, event: LogEvent) -> None:
        self.scan_seconds[round(event.seconds, 3)] += 1
        self.unscanned += event.unscanned
        if event.score is None:
            return
        band = next(index for index, upper in enumerate(SCORE_BANDS[1:]) if event.score < upper)
        self.scores[band] += 1

    def as_json(self) -> dict[str, Any]:
        """The report for scripts and monitoring (spamkit mailstats --json)."""
        def ranked(table: dict[str, _Counts], name: str) -> list[dict[str, Any]]:
            rows = sorted(table.items(), key=lambda item: (-(item[1].rejected + item[1].deferred + item[1].spam),
                                                           -item[1].total(), item[0]))
            return [{name: key, **counts.as_json()} | ({"country": self.countries.get(key, "")}
                                                       if name == "client" else {})
                    for key, counts in rows[:self.top]]

        return {
            "first": _iso(self.first), "last": _iso(self.last), "lines": self.lines,
            "unread": self.unread, "tag_level": self.tag_level,
            "messages": self.messages.as_json(),
            "before_data": {"rejected": self.before_data.rejected, "deferred": self.before_data.deferred},
            "connections_refused": self.connections_refused, "logins_failed": self.logins_failed,
            "filters": [{"filter": name, "rejected": counts["rejected"], "deferred": counts["deferred"],
                         "would_refuse": counts["would_refuse"]}
                        for name, counts in sorted(self.filters.items(),
                                                   key=lambda item: (-sum(item[1].values()), item[0]))],
            "scores": [{"from": _bound(SCORE_BANDS[band]), "to": _bound(SCORE_BANDS[band + 1]),
                        "messages": self.scores[band]} for band in range(len(SCORE_BANDS) - 1)],
            "unscanned": self.unscanned,
            "clients": ranked(self.clients, "client"),
            "sender_domains": ranked(self.domains, "domain"),
            "logins": [{"user": user, "messages": counts["messages"], "recipients": counts["recipients"],
                        "failed": counts["failed"]}
                       for user, counts in sorted(self.logins.items(),
                                                  key=lambda item: (-item[1]["failed"], -item[1]["messages"],
                                                                    item[0]))[:self.top]],
            "spamd": {"requests": self.spamd["requests"], "spam": self.spamd["spam"],
                      "failed": self.spamd["failed"]},
            "viruses": [{"name": name, "messages": count} for name, count in
                        sorted(self.viruses.items(), key=lambda item: (-item[1], item[0]))[:self.top]],
            "hours": [{"hour": hour, **counts.as_json()} for hour, counts in sorted(self.hours.items())],
            "scan_seconds": _timing(self.scan_seconds),
        }


def _bound(value: float) -> float | None:
    return None if math.isinf(value) else value


def _timing(times: Counter[float]) -> dict[str, float | None]:
    """Mean, 95th percentile (the time 95% of messages took at most) and longest."""
    count = sum(times.values())
    if not count:
        return {"mean": None, "p95": None, "max": None}
    rank = math.ceil(0.95 * count)  # the 95th percentile is the rank-th time, in order
    seen = 0
    p95 = 0.0
    for seconds in sorted(times):
        seen += times[seconds]
        if seen >= rank:
            p95 = seconds
            break
    return {"mean": round(sum(seconds * n for seconds, n in times.items()) / count, 4), "p95": p95,
            "max": max(times)}


def _iso(stamp: float | None) -> str | None:
    return None if stamp is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp))


def render(report: dict[str, Any]) -> str:
    """The report as the text an administrator reads (and the mailed report's body)."""
    lines = [f"spamkit mailstats: {report['first'] or '?'} to {report['last'] or '?'} "
             f"({report['lines']:,} log lines read"
             + (f", {report['unread']:,} not text or too long" if report["unread"] else "") + ")", ""]
    messages = report["messages"]
    lines += ["Messages (whole transactions, at the end of DATA)",
              f"  relayed     {messages['relayed']:>9,}   of which spam (score >= {report['tag_level']:g}): "
              f"{messages['spam']:,}",
              f"  rejected    {messages['rejected']:>9,}",
              f"  deferred    {messages['deferred']:>9,}",
              "Refused before DATA (each refused MAIL, RCPT or other command)",
              f"  rejected    {report['before_data']['rejected']:>9,}",
              f"  deferred    {report['before_data']['deferred']:>9,}",
              f"Connections turned away by a limit: {report['connections_refused']:,}",
              f"Failed logins: {report['logins_failed']:,}"]
    if report["spamd"]["requests"]:
        lines.append(f"spamd requests: {report['spamd']['requests']:,}, of which spam "
                     f"{report['spamd']['spam']:,}, failed {report['spamd']['failed']:,}")
    if report["filters"]:
        lines += ["", f"{'By filter':<28} {'rejected':>9} {'deferred':>9} {'would refuse':>13}"]
        lines += [f"  {row['filter']:<26} {row['rejected']:>9,} {row['deferred']:>9,} {row['would_refuse']:>13,}"
                  for row in report["filters"]]
    if any(row["messages"] for row in report["scores"]) or report["unscanned"]:
        lines += ["", f"{'Spam scores':<24} {'messages':>9}"]
        for row in report["scores"]:
            low, high = row["from"], row["to"]
            band = f"below {high:g}" if low is None else f"{low:g} and over" if high is None \
                else f"{low:g} to below {high:g}"
            lines.append(f"  {band:<22} {row['messages']:>9,}")
        if report["unscanned"]:
            lines.append(f"  {'not scanned':<22} {report['unscanned']:>9,}")
    for title, key, name in (("Clients", "clients", "client"), ("Sender domains", "sender_domains", "domain")):
        if report[key]:
            lines += ["", f"{title + ' (most refused and spam first)':<44} {'relayed':>8} {'spam':>6} "
                          f"{'rejected':>9} {'deferred':>9}" + ("  country" if name == "client" else "")]
            lines += [f"  {row[name][:42]:<42} {row['relayed']:>8,} {row['spam']:>6,} {row['rejected']:>9,} "
                      f"{row['deferred']:>9,}" + (f"  {row['country'] or '-'}" if name == "client" else "")
                      for row in report[key]]
    if report["viruses"]:
        lines += ["", f"{'Viruses (clamav)':<44} {'messages':>8}"]
        lines += [f"  {row['name'][:42]:<42} {row['messages']:>8,}" for row in report["viruses"]]
    if report["logins"]:
        lines += ["", f"{'Logins':<44} {'messages':>8} {'recipients':>10} {'failed':>7}"]
        lines += [f"  {row['user'][:42]:<42} {row['messages']:>8,} {row['recipients']:>10,} {row['failed']:>7,}"
                  for row in report["logins"]]
    periods = _by_day(report["hours"]) if len(report["hours"]) > 48 else report["hours"]
    if periods:
        title = "Days" if periods is not report["hours"] else "Hours"
        lines += ["", f"{title:<24} {'relayed':>8} {'spam':>6} {'rejected':>9} {'deferred':>9}"]
        lines += [f"  {row['hour']:<22} {row['relayed']:>8,} {row['spam']:>6,} {row['rejected']:>9,} "
                  f"{row['deferred']:>9,}" for row in periods]
    timing = report["scan_seconds"]
    if timing["mean"] is not None:
        lines += ["", f"Time at DATA (checks and relaying), seconds: mean {timing['mean']:.3f}, "
                      f"95% within {timing['p95']:.3f}, longest {timing['max']:.3f}"]
    return "\n".join(lines) + "\n"


def _by_day(hours: list[dict[str, Any]]) -> list[dict[str, Any]]:
    days: dict[str, dict[str, Any]] = {}
    for row in hours:
        day = days.setdefault(row["hour"][:10], {"hour": row["hour"][:10], "relayed": 0, "spam": 0,
                                                 "rejected": 0, "deferred": 0})
        for key in ("relayed", "spam", "rejected", "deferred"):
            day[key] += row[key]
    return list(days.values())
