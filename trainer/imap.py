"""The sweep over IMAP, for servers where the trainer has no disk access.

Accounts come from a TOML file (one [[account]] table each: user, password, host, port,
security = none | starttls | tls, and optionally verify = false or ca_file) that must
not be readable by others (mode 0600). Certificates are checked by default.

For each folder: UID SEARCH UNDELETED (a message its user flagged \\Deleted was taken
back), fetch with BODY.PEEK[] (the \\Seen flag is left alone) in chunks, learn, and only
after the chunk is committed remove exactly the learned UIDs: UID EXPUNGE where the
server has UIDPLUS, else MOVE to Trash, else nothing (learn-only, reported). Learned ham
goes back to the Inbox instead when LearnHamToInbox says so (MOVE, else COPY and UID
EXPUNGE). A plain EXPUNGE, which would also remove messages someone else marked deleted,
is never sent. If the folder's UIDVALIDITY changed meanwhile, nothing is removed and the
folder waits for the next run, which finds those messages known and removes them. A run
cut off between flagging its learned messages \\Deleted and expunging them is finished
by the next: flagged messages learned with the folder's label are expunged by UID then.

Folder names are looked up as given, then with their levels joined by the server's
hierarchy delimiter (Junk/LearnAsSpam is Junk.LearnAsSpam where the delimiter is '.'),
then under the personal namespace's prefix (RFC 2342): on Courier, Cyrus and Dovecots set
up like them, LearnAsSpam is INBOX.LearnAsSpam and Trash is INBOX.Trash.

Folders of any size: a command names at most UIDS_PER_COMMAND UIDs, and a folder of more
than SEARCH_WINDOW messages is searched that many at a time. A server that does not
answer is waited for once a run (`Servers`).
"""

from __future__ import annotations

import contextlib
import datetime
import ssl
import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientAbortError, IMAPClientError

from spamkit.learn import Learner, LearningStopped, Outcome
from spamkit.sources import SourceItem
from spamkit.store import Label
from trainer.accounts import ImapAccount
from trainer.folders import FolderReport
from trainer.retention import RetentionReport
from trainer.sweep import SweepOptions, SweepReport, UserReport

CHUNK = 100  # messages fetched at once
FETCH_BYTES = 16 << 20  # and no more bytes than this (by RFC822.SIZE), past one message
TIMEOUT = 60.0
UIDS_PER_COMMAND = 1_000  # at most 11 KB of command line (Dovecot refuses lines over 64 KB)
SEARCH_WINDOW = 50_000  # messages one SEARCH answers for: at most 550 KB (imaplib refuses 1 MB lines)


def connect(account: ImapAccount) -> IMAPClient:
    context = ssl.create_default_context(cafile=account.ca_file)
    if not account.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if account.security == "tls":
        client = IMAPClient(account.host, account.port, ssl=True, ssl_context=context, timeout=TIMEOUT)
    else:
        client = IMAPClient(account.host, account.port, ssl=False, timeout=TIMEOUT)
        if account.security == "starttls":
            client.starttls(context)
    try:
        if account.master_user is None:
            client.login(account.user, account.password)
        else:  # SASL PLAIN: the master user authenticates, and opens `user`'s mailbox
            client.plain_login(account.master_user, account.password, account.user)
    except BaseException:
        with contextlib.suppress(OSError):  # (a refused login leaves no connection behind)
            client.shutdown()
        raise
    return client


class NotTried(OSError):
    """An account left out because its server did not answer for another one this run."""


class Servers:
    """The servers that did not answer in this run: no connection in TIMEOUT seconds, no
    route, no such host, or no answer to a command for TIMEOUT seconds after login (its
    mail storage hung, say). The accounts after the first on such a server are not
    tried: each would wait the same TIMEOUT for the same silence, and with fifty accounts
    on one server that was down, a cron run took fifty minutes to say so."""

    def __init__(self) -> None:
        self._silent: dict[tuple[str, int], str] = {}

    def connect(self, account: ImapAccount) -> IMAPClient:
        where = (account.host, account.port)
        if where in self._silent:
            raise NotTried(f"not tried: {account.host}:{account.port} did not answer for an account "
                           f"before this one in this run ({self._silent[where]})")
        try:
            return connect(account)
        except OSError as error:
            if not isinstance(error, (ssl.SSLError, NotTried)):  # (TLS or login trouble: the account's own)
                self._silent[where] = str(error) or type(error).__name__
            raise

    @contextlib.contextmanager
    def session(self, account: ImapAccount, client: IMAPClient) -> Iterator[IMAPClient]:
        """The account's session on `client` (from `connect`), logged out of at the end. A
        command that waits TIMEOUT seconds for an answer makes its server silent for the
        rest of the run. (A server that answers slowly still answers: Dovecot sends
        progress lines during a long SEARCH, so TIMEOUT of silence means it hangs.)"""
        try:
            yield client
        except TimeoutError as error:
            self._silent.setdefault((account.host, account.port), f"stopped answering after login: {error}")
            raise
        finally:
            _logout(client)


def _logout(client: IMAPClient) -> None:
    """End the session; a connection already gone has nothing more to say."""
    try:
        client.logout()
    except (IMAPClientError, OSError):
        pass


def imap_sweep(accounts: list[ImapAccount], learner: Learner, options: SweepOptions) -> SweepReport:
    started = time.perf_counter()
    report = SweepReport(dry_run=options.dry_run)
    try:
        _sweep_accounts(accounts, learner, options, report)
    except LearningStopped as stopped:  # e.g. a full disk: what is uncommitted stays on the server
        report.error, report.stopped_by = str(stopped), stopped.cause
    report.seconds = time.perf_counter() - started
    return report


def _sweep_accounts(accounts: list[ImapAccount], learner: Learner, options: SweepOptions,
                    report: SweepReport) -> None:
    servers = Servers()
    for account in accounts:
        user = UserReport(account.label)
        report.users.append(user)
        try:
            client = servers.connect(account)
        except (IMAPClientError, OSError, ssl.SSLError) as error:
            user.failed += 1
            user.failures.append((f"{account.user}@{account.host}", f"cannot log in: {error}"))
            continue
        try:
            with servers.session(account, client):
                personal = personal_namespace(client)
                folders = [(find_folder(client, name, personal), label)
                           for name, label in ((options.spam_folder, Label.SPAM), (options.ham_folder, Label.HAM))]
                if not any(folder for folder, _ in folders):
                    user.skipped.append((account.user,
                                         _no_folders(options.spam_folder, options.ham_folder, personal.prefix)))
                for folder, label in folders:
                    if folder is not None:
                        _sweep_folder(client, account, folder, label, learner, options, user)
        except (IMAPClientError, OSError) as error:  # the rest of this account waits for the next run
            user.failed += 1
            user.failures.append((f"{account.user}@{account.host}", _broken_off(error)))


def _broken_off(error: IMAPClientError | OSError) -> str:
    """Why an account's run stopped: the server stopped answering, the connection broke,
    or a command failed (the server answered NO or BAD, or imaplib refused the answer),
    which an administrator looks into differently."""
    if isinstance(error, TimeoutError):
        return f"no answer for {TIMEOUT:g} s: the server stopped answering ({error})"
    if isinstance(error, (OSError, IMAPClientAbortError)):
        return f"connection lost: {error}"
    return f"IMAP command failed: {error}"


@dataclass(frozen=True)
class Personal:
    """The personal namespace: its prefix ("INBOX." on Courier and Cyrus, "" on a Dovecot
    as installed and on a server without NAMESPACE) and its hierarchy delimiter."""
    prefix: str = ""
    delimiter: str | None = None


def personal_namespace(client: IMAPClient) -> Personal:
    """Asked once a connection (a MOVE-only server's every removal looks for Trash in it)."""
    personal = _NAMESPACES.get(client)
    if personal is None:
        first = client.namespace().personal if client.has_capability("NAMESPACE") else None
        personal = _NAMESPACES[client] = (Personal(str(first[0][0]), str(first[0][1]) if first[0][1] else None)
                                          if first else Personal())
    return personal


_NAMESPACES: weakref.WeakKeyDictionary[IMAPClient, Personal] = weakref.WeakKeyDictionary()


def _candidates(name: str, personal: Personal) -> tuple[str, ...]:
    """The names a folder set as `name` may have on the server: as given; with its levels
    (split at '.' or '/', as the setting allows) joined by the server's delimiter; and
    each of those under the personal prefix. A new folder takes the last."""
    if name.upper() == "INBOX":
        return (name,)
    spellings = [name]
    if personal.delimiter:
        spellings.append(name.replace("/", ".").replace(".", personal.delimiter))
    if personal.prefix:
        spellings += [personal.prefix + spelling for spelling in spellings if not spelling.startswith(personal.prefix)]
    return tuple(dict.fromkeys(spellings))


def find_folder(client: IMAPClient, name: str, personal: Personal) -> str | None:
    """The server's name for the folder set as `name` (`_candidates`); None if none exists."""
    for candidate in _candidates(name, personal):
        if client.folder_exists(candidate):
            return candidate
    return None


def _no_folders(spam: str, ham: str, prefix: str) -> str:
    looked = f"no folder {spam} or {ham}"
    if prefix:
        looked += f" (nor {prefix}{spam} or {prefix}{ham})"
    return looked + " on the server: nothing to learn for this account (`spamkit make-folders` makes them)"


def _sweep_folder(client: IMAPClient, account: ImapAccount, folder: str, label: Label,
                  learner: Learner, options: SweepOptions, user: UserReport) -> None:
    selected = _select(client, folder, readonly=options.dry_run)
    if not options.dry_run:
        _finish_removal(client, account, selected, label, learner, options, user)
    uids = _search(client, selected, "UNDELETED")  # flagged \Deleted: withdrawn by the user
    if options.limit is not None:
        uids = uids[: options.limit]
    left_in_place = 0  # learned, but the server offers no way to remove only them
    for group in _fetch_groups(client, account, folder, uids, options, user):
        items, by_name = _fetch(client, account, folder, group, user)
        if options.dry_run:
            for item in items:
                known = learner.store.learned_as(_key(item)) is label
                _count(user, label, Outcome.SKIPPED if known else Outcome.LEARNED)
            continue
        learned: list[int] = []

        def committed(outcomes: list[tuple[SourceItem, Outcome]], learned: list[int] = learned,
                      by_name: dict[str, int] = by_name) -> None:
            for item, outcome in outcomes:
                if outcome in (Outcome.LEARNED, Outcome.RELEARNED, Outcome.SKIPPED):
                    _count(user, label, outcome)
                    learned.append(by_name[item.name])

        learner.learn(items, label, on_commit=committed, by=f"trainer:{account.label}")
        if not learned:
            continue
        back_to_inbox = label is Label.HAM and options.ham_to_inbox
        removal = _remove(client, account, folder, selected.validity, learned, "INBOX" if back_to_inbox else None)
        if removal is _Removal.VALIDITY_CHANGED:
            # The UIDs fetched no longer name the same messages: stop here. What was
            # learned stays on the server and is known (so only removed) next time.
            user.failures.append((f"{account.user}/{folder}", "UIDVALIDITY changed; nothing removed"))
            return
        if removal is _Removal.NOT_OFFERED:
            left_in_place += len(learned)
        else:
            user.removed += len(learned)
    if left_in_place:
        user.skipped.append((f"{account.user}/{folder}",
                             f"{left_in_place} learned messages left in the folder: the server offers "
                             "neither UIDPLUS nor MOVE, and a plain EXPUNGE would also remove what "
                             "others marked deleted (learn-only; remove them by hand)"))


def _finish_removal(client: IMAPClient, account: ImapAccount, selected: _Selected, label: Label,
                    learner: Learner, options: SweepOptions, user: UserReport) -> None:
    """Remove what an earlier sweep learned and flagged \\Deleted but could not expunge
    (its connection dropped in between). Of the messages flagged \\Deleted, only those
    learned with this folder's label are ours: one its user took back before it was
    learned is left for the user's own expunge."""
    folder = selected.name
    flagged = _search(client, selected, "DELETED")
    ours: list[int] = []
    for group in _fetch_groups(client, account, folder, flagged, options, None):
        items, by_name = _fetch(client, account, folder, group, None)
        known = learner.store.learned_as_many([_key(item) for item in items])
        ours += [by_name[item.name] for item, learned in zip(items, known) if learned is label]
    if ours and _remove(client, account, folder, selected.validity, ours) is _Removal.DONE:
        user.removed += len(ours)


def _fetch_groups(client: IMAPClient, account: ImapAccount, folder: str, uids: list[int],
                  options: SweepOptions, user: UserReport | None) -> Iterator[list[int]]:
    """The UIDs to fetch, in groups of at most CHUNK messages and FETCH_BYTES (a single
    larger message is a group of its own), so that a folder of large messages is never
    held in memory at once. A message over the size cap is left unread (and reported, to
    `user`)."""
    for start in range(0, len(uids), CHUNK):
        chunk = uids[start:start + CHUNK]
        sizes = client.fetch(chunk, ["RFC822.SIZE"])
        group: list[int] = []
        held = 0
        for uid in chunk:
            size = int(sizes.get(uid, {}).get(b"RFC822.SIZE", 0))
            if size > options.max_file_size:
                if user is not None:
                    user.failed += 1
                    user.failures.append((f"{account.user}/{folder}/{uid}",
                                          f"larger than {options.max_file_size} bytes; left in the folder"))
                continue
            if group and held + size > FETCH_BYTES:
                yield group
                group, held = [], 0
            group.append(uid)
            held += size
        if group:
            yield group


def _fetch(client: IMAPClient, account: ImapAccount, folder: str, uids: list[int],
           user: UserReport | None) -> tuple[list[SourceItem], dict[str, int]]:
    """The messages, fetched with BODY.PEEK[] (their \\Seen flag is left alone); one the
    server sends no body for is left out (and reported, to `user`)."""
    bodies = client.fetch(uids, ["BODY.PEEK[]"])
    items, by_name = [], {}
    for uid in uids:
        data = bodies.get(uid, {}).get(b"BODY[]")
        name = f"{account.user}/{folder}/{uid}"
        if data is None:
            if user is not None:
                user.failed += 1
                user.failures.append((name, "the server sent no body (expunged meanwhile?)"))
            continue
        items.append(SourceItem(name, bytes(data)))
        by_name[name] = uid
    return items, by_name


class _Removal(Enum):
    DONE = "removed"
    NOT_OFFERED = "the server offers neither UIDPLUS nor MOVE"
    VALIDITY_CHANGED = "UIDVALIDITY changed"


def _remove(client: IMAPClient, account: ImapAccount, folder: str, validity: int,
            uids: list[int], to: str | None = None) -> _Removal:
    """Remove exactly these UIDs, never with a plain EXPUNGE; with `to` (the Inbox, for
    LearnHamToInbox), into that folder: MOVE, else COPY and then UID EXPUNGE (a run cut
    off between the two leaves a second copy in `to`, never none)."""
    if _select(client, folder).validity != validity:
        return _Removal.VALIDITY_CHANGED
    move, uidplus = client.has_capability("MOVE"), client.has_capability("UIDPLUS")
    if to is None and move and not uidplus:  # no UID EXPUNGE: into the Trash instead
        personal = personal_namespace(client)
        to = find_folder(client, account.trash, personal)
        if to is None:
            to = _candidates(account.trash, personal)[-1]  # a new folder goes where the user's are
            client.create_folder(to)
    moving = move and to is not None
    if not moving and not uidplus:
        return _Removal.NOT_OFFERED
    for group in _uid_groups(uids):
        if moving:
            client.move(group, to)
            continue
        if to is not None:
            client.copy(group, to)
        client.delete_messages(group, silent=True)
        client.uid_expunge(group)
    return _Removal.DONE


@dataclass(frozen=True)
class _Selected:
    """The folder selected, as SELECT (or EXAMINE) described it."""
    name: str
    validity: int
    exists: int  # messages


def _select(client: IMAPClient, folder: str, readonly: bool = False) -> _Selected:
    answer = client.select_folder(folder, readonly=readonly)
    return _Selected(folder, answer[b"UIDVALIDITY"], int(answer.get(b"EXISTS", 0)))


def _search(client: IMAPClient, selected: _Selected, *criteria: object) -> list[int]:
    """UID SEARCH of the selected folder, sorted. Python's imaplib refuses an answer line
    over 1 MB, about 150,000 UIDs, so a larger folder is searched SEARCH_WINDOW messages
    at a time, by sequence number: those run 1 to EXISTS however sparse the UIDs are.
    (Another client's expunge meanwhile shifts them: a message it moves across a window's
    edge may be missed, and is found by the next run.)"""
    if selected.exists <= SEARCH_WINDOW:
        return sorted(client.search(list(criteria)))
    found: set[int] = set()
    for low in range(1, selected.exists + 1, SEARCH_WINDOW):
        high = low + SEARCH_WINDOW - 1
        # RFC 3501: a server should answer BAD to a number past the last message, so the
        # last window ends at "*", the last message whatever the count is by then
        window = f"{low}:{high}" if high < selected.exists else f"{low}:*"
        found.update(client.search([window, *criteria]))
    return sorted(found)


def _uid_groups(uids: list[int]) -> Iterator[list[int]]:
    """The UIDs in groups of at most UIDS_PER_COMMAND. imapclient writes a list out one
    UID at a time, so one command removing ten thousand messages would pass Dovecot's
    64 KB line limit and fail."""
    for start in range(0, len(uids), UIDS_PER_COMMAND):
        yield uids[start:start + UIDS_PER_COMMAND]


def _count(user: UserReport, label: Label, outcome: Outcome) -> None:
    if outcome is Outcome.SKIPPED:
        user.known += 1
    elif label is Label.SPAM:
        user.spam_learned += 1
    else:
        user.ham_learned += 1


def _key(item: SourceItem) -> bytes:
    from spamkit.message import message_key

    assert item.data is not None
    return message_key(item.data)


def imap_expire_junk(accounts: list[ImapAccount], folder: str, days: int, dry_run: bool,
                     now: float | None = None) -> RetentionReport:
    """Junkmail retention over IMAP (MessageRetentionTime): delete the messages of each
    account's junk folder that arrived more than `days` days ago, as `_remove` removes
    learned mail: by UID, never with a plain EXPUNGE. An account that cannot be reached,
    or whose server can remove nothing this way, is reported in `failures`."""
    cutoff = datetime.datetime.fromtimestamp(time.time() if now is None else now, datetime.timezone.utc) \
        - datetime.timedelta(days=days)
    report = RetentionReport(dry_run=dry_run)
    servers = Servers()
    for account in accounts:
        report.users[account.label] = 0
        try:
            client = servers.connect(account)
        except (IMAPClientError, OSError, ssl.SSLError) as error:
            report.failures.append((account.label, f"cannot log in: {error}"))
            continue
        try:
            with servers.session(account, client):
                name = find_folder(client, folder, personal_namespace(client))
                if name is None:
                    continue
                selected = _select(client, name, readonly=dry_run)
                uids = _arrived_before(client, selected, cutoff)
                if dry_run or not uids:
                    report.users[account.label] = len(uids)
                    continue
                removal = _remove(client, account, name, selected.validity, uids)
                if removal is _Removal.DONE:
                    report.users[account.label] = len(uids)
                else:
                    report.failures.append((account.label, f"{len(uids)} messages in {name} not "
                                            f"deleted: {removal.value}"))
        except (IMAPClientError, OSError) as error:
            report.failures.append((account.label, _broken_off(error)))
    return report


def _arrived_before(client: IMAPClient, selected: _Selected, cutoff: datetime.datetime) -> list[int]:
    """The UIDs of the selected folder's messages whose INTERNALDATE is before `cutoff`,
    to the second, as the Maildir retention compares. SEARCH BEFORE compares the day of
    each date in its own zone, so it only finds the candidates (two days later than the
    cutoff's day in UTC: no zone is a whole day ahead), and each one's INTERNALDATE,
    which carries its zone, decides. A message flagged \\Deleted is due like any other,
    as a trashed file is in a Maildir: so a run cut off between flagging its messages and
    UID EXPUNGE is finished by the next, and one due that a user flagged goes as well
    (where the sweep leaves such a message, taken back before it was learned)."""
    candidates = _search(client, selected, "BEFORE", (cutoff + datetime.timedelta(days=2)).date())
    if not candidates:
        return []
    arrived = {}
    for group in _uid_groups(candidates):
        arrived.update(client.fetch(group, ["INTERNALDATE"]))
    return [uid for uid in candidates  # (no date: left alone)
            if isinstance(date := arrived.get(uid, {}).get(b"INTERNALDATE"), datetime.datetime)
            and _aware(date) < cutoff]


def _aware(moment: datetime.datetime) -> datetime.datetime:
    """imapclient gives INTERNALDATE in local time without a zone unless told otherwise."""
    return moment if moment.tzinfo is not None else moment.astimezone()


def imap_folder_counts(account: ImapAccount, folders: dict[str, str],
                       servers: Servers | None = None) -> dict[str, tuple[int, int]]:
    """{name: (messages, unseen)}, for `spamkit stats` over IMAP. A message flagged
    \\Deleted is not counted: the sweep leaves it, as the Maildir counts do (STATUS
    would count it), so the folder is examined (read-only) and searched. With `servers`,
    one shared by a run's accounts, an account on a server that did not answer is not tried."""
    servers = servers or Servers()
    with servers.session(account, servers.connect(account)) as client:
        out = {}
        personal = personal_namespace(client)
        for name, setting in folders.items():
            folder = find_folder(client, setting, personal)
            if folder is not None:
                selected = _select(client, folder, readonly=True)
                out[name] = (len(_search(client, selected, "UNDELETED")),
                             len(_search(client, selected, "UNSEEN", "UNDELETED")))
            else:
                out[name] = (0, 0)
        return out


def imap_make_folders(accounts: list[ImapAccount], names: list[str], dry_run: bool = False) -> FolderReport:
    """`spamkit make-folders` over IMAP: each of `names` an account lacks, created and
    subscribed, under the personal namespace's prefix and delimiter (`_candidates`:
    Junk/LearnAsSpam is INBOX.Junk.LearnAsSpam on Courier)."""
    report = FolderReport()
    servers = Servers()
    for account in accounts:
        try:
            client = servers.connect(account)
        except (IMAPClientError, OSError, ssl.SSLError) as error:
            report.failed.append((account.label, f"cannot log in: {error}"))
            continue
        try:
            with servers.session(account, client):
                personal = personal_namespace(client)
                for name in names:
                    found = find_folder(client, name, personal)
                    if found is not None:
                        report.present.append((account.label, found))
                        continue
                    made = _candidates(name, personal)[-1]
                    if not dry_run:
                        client.create_folder(made)
                        client.subscribe_folder(made)
                    report.made.append((account.label, made))
        except (IMAPClientError, OSError) as error:
            report.failed.append((account.label, _broken_off(error)))
    return report
