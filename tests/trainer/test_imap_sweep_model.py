"""The IMAP sweep's promise, checked over histories hypothesis makes up against a real
Dovecot: the sweep changes the server only when it removes what it learned, each message
it removes from LearnAsSpam or LearnAsHam is committed with that folder's label first, a
message moved elsewhere (the Inbox, the Trash) arrives there, no message's \\Seen flag
changes, and the token counts are always those of each learned message counted once.

The user's mail program (a session of its own) appends, reads, flags deleted, moves,
copies, deletes and expunges, between sweeps and between the sweep's fetches. Each sweep
talks to one of the server's four faces: MOVE and UIDPLUS, MOVE alone (what is learned
goes to the Trash), UIDPLUS alone, or neither (learn only). A sweep may be cut off at a
fetch, inside a commit's write transaction, before a removal, or between flagging
\\Deleted and UID EXPUNGE with its connection dropped, as `kill -9` would cut it.

Every change the server shows must fall in one of the windows the model opens around the
user's actions and the sweep's removals: the server's state is read before and after
each, and nothing may change between two of them."""

from __future__ import annotations

import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (RuleBasedStateMachine, initialize, invariant, precondition, rule,
                                 run_state_machine_as_test)
from imapclient import IMAPClient

import trainer.imap as imap_module
from corpora import CorpusMessage
from spamkit.analysis import analyzer_for
from spamkit.learn import Learner
from spamkit.message import message_key
from spamkit.store import Label, LmdbStore
from trainer.accounts import load_accounts
from trainer.sweep import SweepOptions
from tests.servers.dovecot import BARE_HOST, MOVE_ONLY_HOST, UIDPLUS_ONLY_HOST, USERS, Dovecot
from tests.trainer.sweepmodel import (PowerCut, between_reads, check_counts,
                                      check_labels_after_a_whole_sweep, cut_inside_commits, wrapped)

LABELS = {"LearnAsSpam": Label.SPAM, "LearnAsHam": Label.HAM}
FOLDERS = ("INBOX", "LearnAsSpam", "LearnAsHam", "Trash")
HOSTS = ("127.0.0.1", MOVE_ONLY_HOST, UIDPLUS_ONLY_HOST, BARE_HOST)
USER_ACTIONS = st.tuples(
    st.sampled_from(["append", "append", "append", "read", "withdraw", "move", "move", "copy", "delete",
                     "expunge"]),
    st.integers(0, 1000), st.sampled_from(["LearnAsSpam", "LearnAsSpam", "LearnAsHam", "LearnAsHam", "INBOX"]))
# (its own points: an IMAP sweep of a few messages fetches and commits a few times)
IMAP_CUT = st.one_of(st.none(), st.tuples(st.sampled_from(["read", "commit", "remove", "expunge"]),
                                          st.integers(0, 2)))

# a message as the server shows it: (message key, flagged \Deleted, flagged \Seen)
Shown = tuple[bytes, bool, bool]
State = dict[str, Counter[Shown]]


class ImapSweepHistory(RuleBasedStateMachine):
    server: Dovecot
    messages: list[bytes]
    accounts_files: dict[str, Path]  # host -> alice's accounts file for it

    def __init__(self) -> None:
        super().__init__()
        self.user = IMAPClient("127.0.0.1", self.server.plain_port, ssl=False, timeout=30)
        self.user.login("alice", USERS["alice"])
        for folder in FOLDERS:  # (each example starts from empty folders)
            if folder != "INBOX" and not self.user.folder_exists(folder):
                self.user.create_folder(folder)
            self.user.select_folder(folder)
            self.user.delete_messages(self.user.search("ALL"))
            self.user.expunge()
        self.directory = Path(tempfile.mkdtemp(prefix="spamkit-imap-model-"))
        self.store = LmdbStore(self.directory / "db")
        self.analyzer = analyzer_for(self.store)
        self.bodies: dict[bytes, bytes] = {}  # message key -> the bytes the server gives
        self.given: dict[bytes, set[Label]] = {}
        self.state = self.shown()  # the server as the model last saw it

    def teardown(self) -> None:
        self.user.logout()
        self.store.close()
        shutil.rmtree(self.directory)

    # -- what the server shows -----------------------------------------------------------

    def shown(self) -> State:
        """Every folder's messages, read by the user's session (BODY.PEEK: no flag changes);
        an undeleted message in LearnAsSpam or LearnAsHam counts as the user's label."""
        state: State = {}
        for folder in FOLDERS:
            self.user.select_folder(folder, readonly=True)
            uids = self.user.search("ALL")
            found = self.user.fetch(uids, ["BODY.PEEK[]", "FLAGS"]) if uids else {}
            state[folder] = Counter()
            for answer in found.values():
                data, flags = bytes(answer[b"BODY[]"]), answer[b"FLAGS"]
                key = message_key(data)
                self.bodies[key] = data
                shown = (key, b"\\Deleted" in flags, b"\\Seen" in flags)
                state[folder][shown] += 1
                if folder in LABELS and not shown[1]:
                    self.given.setdefault(key, set()).add(LABELS[folder])
        return state

    def unchanged_since_last_seen(self) -> None:
        now = self.shown()
        assert now == self.state, f"the server changed outside any window: {diff(self.state, now)}"

    # -- the user ---------------------------------------------------------------------------

    def act(self, action: str, pick: int, folder: str) -> None:
        """One thing the user's mail program does; the server's state after it is the new
        state (checked unchanged since the last look first)."""
        self.unchanged_since_last_seen()
        held = [(name, uid) for name in FOLDERS if name != "Trash"
                for uid in self._uids(name)]
        if action == "append" or not held:
            self.user.append(folder, self.messages[pick % len(self.messages)])
        else:
            source, uid = held[pick % len(held)]
            self.user.select_folder(source)
            if action == "read":
                self.user.add_flags([uid], [b"\\Seen"])
            elif action == "withdraw":
                self.user.add_flags([uid], [b"\\Deleted"])
            elif action == "move":
                self.user.move([uid], folder)
            elif action == "copy":
                self.user.copy([uid], folder)
            elif action == "delete":
                self.user.add_flags([uid], [b"\\Deleted"])
                self.user.uid_expunge([uid])
            else:  # the mail program expunges the folder: what was flagged \Deleted goes
                self.user.expunge()
        self.state = self.shown()

    def _uids(self, folder: str) -> list[int]:
        self.user.select_folder(folder, readonly=True)
        return sorted(self.user.search("ALL"))

    @initialize(placed=st.lists(st.tuples(st.integers(0, 1000), st.sampled_from(sorted(LABELS))),
                                min_size=1, max_size=8))
    def mail_to_learn(self, placed: list[tuple[int, str]]) -> None:
        for pick, folder in placed:
            self.act("append", pick, folder)

    @rule(actions=st.lists(USER_ACTIONS, min_size=1, max_size=5))
    def mail_program(self, actions: list[tuple[str, int, str]]) -> None:
        for action in actions:
            self.act(*action)

    # -- the sweep ---------------------------------------------------------------------------

    @precondition(lambda self: any(self.state[folder] for folder in LABELS))  # (else nothing to do)
    @rule(host=st.sampled_from(HOSTS), batch_size=st.integers(1, 4), ham_to_inbox=st.booleans(),
          cut=IMAP_CUT, meanwhile=st.lists(st.tuples(st.integers(0, 6), USER_ACTIONS), max_size=3))
    def sweep(self, host: str, batch_size: int, ham_to_inbox: bool, cut: tuple[str, int] | None,
              meanwhile: list[tuple[int, tuple[str, int, str]]]) -> None:
        self.unchanged_since_last_seen()
        before = {folder: Counter(self.state[folder]) for folder in LABELS}
        removals = [0]

        def remove(original: Callable[..., Any], client: IMAPClient, account: Any, folder: str,
                   validity: int, uids: list[int], *to: str | None) -> Any:
            self.unchanged_since_last_seen()
            label = LABELS[folder]
            bodies = client.fetch(uids, ["BODY.PEEK[]"])  # (the sweep's own session, as it stands)
            for uid in uids:
                if uid in bodies:  # (else the user moved or deleted it meanwhile)
                    learned = self.store.learned_as(message_key(bytes(bodies[uid][b"BODY[]"])))
                    assert learned is label, f"UID {uid} leaves {folder} learned as {learned}"
            if cut == ("remove", removals[0]):
                raise PowerCut
            removals[0] += 1
            try:
                if cut == ("expunge", removals[0] - 1):
                    with wrapped(client, "uid_expunge", lambda *_: drop(client)):
                        return original(client, account, folder, validity, uids, *to)
                return original(client, account, folder, validity, uids, *to)
            finally:
                self.the_sweep_removed(folder, label)

        def drop(client: IMAPClient) -> None:
            """The connection lost after STORE \\Deleted, before UID EXPUNGE."""
            client.shutdown()
            raise PowerCut

        cut_off = False
        accounts = load_accounts(self.accounts_files[host])
        with wrapped(imap_module, "_fetch", between_reads(meanwhile, cut, self.act)), \
                wrapped(imap_module, "_remove", remove), cut_inside_commits(cut):
            try:
                report = imap_module.imap_sweep(accounts, Learner(self.store, batch_size=batch_size),
                                                SweepOptions(ham_to_inbox=ham_to_inbox))
            except PowerCut:
                cut_off = True
        self.unchanged_since_last_seen()
        if cut_off:  # the next sweep is another process
            event("cut off")
            self.store.close()
            self.store = LmdbStore(self.directory / "db")
            return
        assert report.error is None
        if not meanwhile:  # (a message the user moved away between SEARCH and FETCH is named)
            assert not report.users[0].failures, report.users[0].failures
            if host != BARE_HOST:
                self.check_a_whole_sweep(before)

    def the_sweep_removed(self, source: str, label: Label) -> None:
        """The server after one of the sweep's removals: the source folder lost messages
        (or, cut off, flagged them \\Deleted) committed with its label, and any other folder
        that changed gained only those messages."""
        now = self.shown()
        changes = diff(self.state, now)
        lost, flagged = Counter[bytes](), Counter[bytes]()
        for folder, (gone, came) in changes.items():
            if folder == source:
                lost.update(key for key, _, _ in gone.elements())
                assert all(deleted for _, deleted, _ in came), f"{folder} gained {came}"
                flagged.update(key for key, _, _ in came.elements())
            else:
                assert not gone, f"{folder} lost {gone} when the sweep removed from {source}"
        assert not flagged - lost, "flagged \\Deleted without being taken out of the folder"
        for key in lost:
            assert self.store.learned_as(key) is label
        for folder, (_, came) in changes.items():
            if folder != source:
                assert not Counter(key for key, _, _ in came.elements()) - lost, f"{folder} gained {came}"
        self.state = now

    def check_a_whole_sweep(self, before: dict[str, Counter[Shown]]) -> None:
        """A sweep that ran to its end alone, on a server that lets it remove: nothing
        undeleted is left in the folders, and each message it found has the label of the
        last folder it found it in."""
        for folder in LABELS:
            assert not [shown for shown in self.state[folder] if not shown[1]], f"left in {folder}"
        check_labels_after_a_whole_sweep(self.store, [(key, LABELS[folder]) for folder in LABELS
                                                      for key, deleted, _ in before[folder] if not deleted])

    # -- what must always hold ------------------------------------------------------------------

    @invariant()
    def counts_are_each_learned_message_once(self) -> None:
        check_counts(self.store, self.analyzer, self.bodies, self.given)


def diff(before: State, after: State) -> dict[str, tuple[Counter[Shown], Counter[Shown]]]:
    """Each folder that changed: (what went, what came)."""
    return {folder: (before[folder] - after[folder], after[folder] - before[folder])
            for folder in FOLDERS if before[folder] != after[folder]}


@pytest.fixture
def accounts_files(server: Dovecot, tmp_path: Path) -> Iterator[dict[str, Path]]:
    yield {host: server.accounts_file(tmp_path / f"{host}.toml", users=("alice",), host=host)
           for host in HOSTS}


def test_an_imap_sweep_removes_only_what_it_committed_whatever_the_user_does(
        server: Dovecot, accounts_files: dict[str, Path],
        split: tuple[list[CorpusMessage], list[CorpusMessage]]) -> None:
    train, _ = split
    ImapSweepHistory.server, ImapSweepHistory.accounts_files = server, accounts_files
    ImapSweepHistory.messages = [m.data for m in train if m.label == "spam"][:6] + \
        [m.data for m in train if m.label == "ham"][:6]
    run_state_machine_as_test(ImapSweepHistory, settings=settings(
        max_examples=60, stateful_step_count=15, deadline=None,
        suppress_health_check=[HealthCheck.too_slow]))
