"""What a DNS list's answers mean: a listing, an error code, or a list gone bad.

Shared by the filters that ask lists (dnsbl, rhsbl, uribl). Two ways a list can refuse
all mail if its answers are taken at face value:

- It answers an error code that looks like a listing. Spamhaus answers
  127.255.255.252-255 for a query it refuses (one sent through a big public resolver,
  say) and URIBL answers 127.0.0.1; the SME guide warns of black.uribl.com "bouncing all
  emails" with an external DNS provider. A resolver that answers names that do not exist
  with its own web server's address gives an answer outside 127.0.0.0/8. `listing`
  tells these apart.
- It answers every query as a listing. A list that closes may do this on purpose to make
  its users notice (AHBL's did), and a broken one by accident. RFC 5782 section 5 gives
  every list entries it must never contain: 127.0.0.1 in an IPv4 list, ::FFFF:7F00:1 in
  an IPv6 one, the name INVALID in a domain list. `ListHealth` asks the list that entry
  whenever it lists something, and a list that lists it is not believed.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import string
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from smtpfilter.counters import LabelledCounter
from smtpfilter.dns import Answer, DnsClient, Outcome

log = logging.getLogger("spamkit.smtpfilter")

_LOOPBACK = ipaddress.ip_network("127.0.0.0/8")
_LIST_ERRORS = ipaddress.ip_network("127.255.255.0/24")
_NOT_A_LISTING = ipaddress.ip_address("127.0.0.1")

# Lists that have closed, which SME's configuration drops from RBLList and SBLList each
# time it is rebuilt (the SME guide, "Obsolete lists"). A closed list's zone may stop
# answering, or answer every query as a listing, as AHBL's did once it closed: that would
# refuse all mail. So they are left out, with a warning, wherever a configuration names them.
CLOSED_ZONES = frozenset({
    "combined.njabl.org", "list.dsbl.org", "multihop.dsbl.org", "dnsbl.ahbl.org",
    "blackhole.securitysage.com", "bulk.rhs.mailpolice.com", "fraud.rhs.mailpolice.com",
    "porn.rhs.mailpolice.com", "adult.rhs.mailpolice.com", "bogusmx.rfc-ignorant.org",
    "ex.dnsbl.org",
})

# RFC 5782 section 5: the entries no list may contain, as they are asked of a list.
NEVER_LISTED_IPV4 = "1.0.0.127"
NEVER_LISTED_IPV6 = ".".join(reversed(ipaddress.ip_address("::ffff:7f00:1").exploded.replace(":", "")))
NEVER_LISTED_DOMAIN = "invalid"

RECHECK_SECONDS = 600.0  # how long a list's test answer is believed
RECHECK_UNANSWERED_SECONDS = 60.0  # after a test query that failed: the list is believed


def zones(entries: list[str]) -> list[str]:
    """The parts of RBLList, SBLList or UBLList entries, in order: SME joins zones with ':'
    or ',' (and UBLList's answer bits follow their zone after a ':')."""
    return [zone.strip().strip(".").lower() for entry in entries
            for zone in re.split(r"[:,]", entry) if zone.strip().strip(".")]


def read_answer(answer: Answer) -> tuple[list[str], list[str]]:
    """(the records of an A answer that are listings, those that are not: error codes)."""
    listings, errors = [], []
    for record in answer.records:
        try:
            address = ipaddress.ip_address(record)
        except ValueError:
            continue
        if address in _LOOPBACK and address not in _LIST_ERRORS and address != _NOT_A_LISTING:
            listings.append(record)
        else:
            errors.append(record)
    return listings, errors


def never_listed(name: str) -> str:
    """The entry RFC 5782 forbids in a list that is asked about names like `name`: a
    reversed IPv4 address ("1.2.0.192"), 32 reversed IPv6 nibbles, or a domain."""
    labels = name.split(".")
    if len(labels) == 4 and all(label.isdigit() for label in labels):
        return NEVER_LISTED_IPV4
    if len(labels) == 32 and all(len(label) == 1 and label in string.hexdigits for label in labels):
        return NEVER_LISTED_IPV6
    return NEVER_LISTED_DOMAIN


class ListTally:
    """How each list has answered since the process started, and which lists are not
    believed now: for the metrics (spamkit_dnslist_*), where a list that has stopped
    answering, that refuses this server's queries, or that lists everything shows up
    before anyone reads the log. Each of those lets mail through (or, for the last,
    would refuse it all), so none is noticed from the mail alone."""

    def __init__(self) -> None:
        self._answers = LabelledCounter(
            "spamkit_dnslist_answers_total",
            "Answers of each DNS list (RBLList, SBLList, UBLList): listed, not_listed, "
            "error_code (the list refuses this server's queries), failed (no answer in "
            "DnsTimeout), disbelieved (a listing from a list that lists RFC 5782's forbidden "
            "entry).", ("list", "zone", "answer"))
        self._lock = threading.Lock()
        self._disbelieved: dict[tuple[str, str], bool] = {}  # (option, zone) → now

    def count(self, option: str, zone: str, answer: str) -> None:
        self._answers.count(option, zone, answer)

    def set_disbelieved(self, option: str, zone: str, disbelieved: bool) -> None:
        with self._lock:
            self._disbelieved[option, zone] = disbelieved

    def forget_disbelieved(self) -> None:
        """A new filter chain starts with no list tested: a list dropped from the
        configuration (or mended meanwhile) is not shown as disbelieved for ever."""
        with self._lock:
            self._disbelieved.clear()

    def answers(self) -> dict[tuple[str, ...], int]:
        return self._answers.counts()

    def exposition(self) -> list[str]:
        """The Prometheus text lines."""
        with self._lock:
            disbelieved = sorted(self._disbelieved.items())
        lines = self._answers.exposition()
        lines += ["# HELP spamkit_dnslist_disbelieved 1 while a list is not believed because it "
                  "lists RFC 5782's forbidden entry (it answers every query as a listing), else 0.",
                  "# TYPE spamkit_dnslist_disbelieved gauge"]
        lines += [f'spamkit_dnslist_disbelieved{{list="{option}",zone="{zone}"}} {int(now)}'
                  for (option, zone), now in disbelieved]
        return lines


TALLY = ListTally()  # the process's: the filters count into it, the metrics read it


class ListHealth:
    """Whether each list answers every query as a listing, asked only when it lists someone.

    The answer is kept for RECHECK_SECONDS, so a sound list costs one more query each ten
    minutes, and a list that has gone bad is noticed within one message and believed
    again within ten minutes of mending. A test query that fails tells nothing new: what
    was known stands (a list not yet tested is believed), and it is asked again in a minute.
    """

    def __init__(self, dns: DnsClient, option: str,
                 clock: Callable[[], float] = time.monotonic, tally: ListTally = TALLY) -> None:
        self.dns = dns
        self.option = option  # where the lists are named ("RBLList"), for the log
        self.clock = clock
        self.tally = tally
        self._lock = threading.Lock()  # uribl asks from several threads at once
        self._known: dict[tuple[str, str], tuple[bool, float]] = {}  # → (lists everything, until)

    def listed(self, zone: str, name: str, answer: Answer,
               counts: Callable[[str], bool] = lambda record: True) -> str | None:
        """The record by which `zone`'s `answer` about `name` lists it, or None: the
        lookup failed, found nothing, found an error code, found no record that `counts`
        (URIBL's answer bits), or came from a list that lists everything. Each answer is
        tallied by what it was."""
        record = None
        if answer.outcome is Outcome.FAILED:
            kind = "failed"
        elif answer.outcome is not Outcome.FOUND:
            kind = "not_listed"
        else:
            listings, errors = read_answer(answer)
            for error in errors:
                log.warning("%s answered %s, which is not a listing: is the list refusing this "
                            "server's queries (a public or forwarding resolver)?", zone, error)
            record = next((listing for listing in listings if counts(listing)), None)
            if record is None:
                kind = "error_code" if errors and not listings else "not_listed"
            elif self.lists_everything(zone, name):
                kind, record = "disbelieved", None
            else:
                kind = "listed"
        self.tally.count(self.option, zone, kind)
        return record

    def lists_everything(self, zone: str, listed_name: str) -> bool:
        """Whether `zone`, which has just listed `listed_name`, also lists the entry of
        that kind that no list may contain."""
        test = never_listed(listed_name)
        key = (zone, test)
        with self._lock:
            known = self._known.get(key)
        if known is not None and self.clock() < known[1]:
            return known[0]
        answer = self.dns.lookup(f"{test}.{zone}", "A")
        if answer.outcome is Outcome.FAILED:
            broken, keep = (known[0] if known else False), RECHECK_UNANSWERED_SECONDS
        else:
            broken, keep = answer.outcome is Outcome.FOUND and bool(read_answer(answer)[0]), RECHECK_SECONDS
        with self._lock:
            self._known[key] = (broken, self.clock() + keep)
            # (one zone may be asked for IPv4 and IPv6 entries: it is disbelieved while either is)
            self.tally.set_disbelieved(self.option, zone, any(
                known_broken for (known_zone, _), (known_broken, _) in self._known.items()
                if known_zone == zone))
        was_broken = known is not None and known[0]
        if broken and not was_broken:
            log.error("%s: %s lists %s (%s), which RFC 5782 says no list may: it answers every "
                      "query as a listing (a list that has closed or broken), so its listings "
                      "are ignored until it stops; asked again every %d minutes. Remove it "
                      "from %s.", self.option, zone, test, ", ".join(answer.records),
                      RECHECK_SECONDS // 60, self.option)
        elif was_broken and not broken and answer.outcome is not Outcome.FAILED:
            log.warning("%s: %s no longer lists %s; its listings count again", self.option,
                        zone, test)
        return broken


TEST_ENTRY_IPV4 = "2.0.0.127"  # RFC 5782: every IPv4 list lists 127.0.0.2
TEST_ENTRY_DOMAIN = "test"  # and every domain list TEST (some use a test name of their own)


@dataclass(frozen=True)
class ListReport:
    """What a list answered RFC 5782's test entries, for `spamkit lint --dns`."""

    option: str  # the setting that names it: RBLList, SBLList, UBLList
    zone: str
    test_entry: str  # the entry it should list
    test_listed: bool | None  # None: not answered
    never_listed: str  # the entry it must not list
    lists_everything: bool | None
    error_codes: tuple[str, ...]  # answers that are a list's refusal, not a listing
    failure: str  # why it did not answer

    def problem(self) -> str:
        """What an administrator should hear about this list; "" for a sound one."""
        where = f"{self.option}: {self.zone}"
        if self.failure:
            return f"{where} did not answer ({self.failure}); while it does not, it lists no one"
        if self.error_codes:
            return (f"{where} answered {', '.join(self.error_codes)}, an error code, not a "
                    "listing: it refuses this server's queries (through a public or "
                    "forwarding resolver?), so it lists no one; point DnsServers at a "
                    "resolver of your own")
        if self.lists_everything:
            return (f"{where} lists {self.never_listed}, which RFC 5782 says no list may: it "
                    "answers every query as a listing (a list that has closed or broken); the "
                    "filter does not believe it: remove it")
        if self.test_entry == TEST_ENTRY_IPV4 and not self.test_listed:
            return (f"{where} does not list 127.0.0.2, the test entry RFC 5782 gives every "
                    "IPv4 list: is the zone's name right?")
        return ""

    def describe(self) -> str:
        """One line on what it answered."""
        problem = self.problem()
        if problem:
            return problem
        listed = f"lists {self.test_entry}, not" if self.test_listed else "does not list"
        return f"{self.option}: {self.zone} is sound: it {listed} {self.never_listed}"


def ask_list(dns: DnsClient, option: str, zone: str, of_addresses: bool) -> ListReport:
    """Ask `zone` its test entries: one it should list and one it must not."""
    test, never = ((TEST_ENTRY_IPV4, NEVER_LISTED_IPV4) if of_addresses
                   else (TEST_ENTRY_DOMAIN, NEVER_LISTED_DOMAIN))
    listed: list[bool | None] = []
    codes: list[str] = []
    failure = ""
    for entry in (test, never):
        if failure:  # one lookup that failed is enough to wait out
            listed.append(None)
            continue
        answer = dns.lookup(f"{entry}.{zone}", "A")
        if answer.outcome is Outcome.FAILED:
            failure = answer.error or "no answer"
            listed.append(None)
            continue
        listings, errors = read_answer(answer)
        listed.append(bool(listings))
        codes += [code for code in errors if code not in codes]
    return ListReport(option, zone, test, listed[0], never, listed[1], tuple(codes), failure)
