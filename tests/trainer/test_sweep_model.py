"""The sweep's promise, checked over histories hypothesis makes up: a message leaves
LearnAsSpam or LearnAsHam only once its folder's label is committed for it, nothing else
ever leaves a Maildir (but old junkmail, below), and the token counts are always those
of each learned message counted once, with its last label.

A user delivers, reads, flags deleted (T), moves, copies (as a file of its own, or as
Dovecot does, a hard link) and deletes messages between sweeps and during them; a sweep
may be cut off at any read, at any commit (inside its write transaction) or at any
removal, as `kill -9` would cut it, and the next one starts on the database reopened.
The Maildir and the LMDB database are real; the sweep runs in this process, so that the
user's moves land between two of its reads (see test_kill_9_mid_sweep_loses_nothing for
the sweep killed as a process). The Maildir is laid out as Maildir++, and again as
Dovecot's LAYOUT=fs with the spam folder nested.

The junkmail retention (`expire_junk`) runs among the sweeps: it deletes junkmail
delivered before its cutoff and nothing else, while the user acts before any of its
deletions, and it may be cut off at one.

The Maildir keeps a Maildir++ quota (`maildirsize`), which the user's mail server writes
to as Dovecot does and the sweep as trainer/maildirquota.py does: it must always sum to
what the folders hold, but after a sweep cut off in the middle of a batch's removals
or a retention cut off in the middle of its deletions (those are written once the files
are gone), which the server then recalculates."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (RuleBasedStateMachine, initialize, invariant, precondition, rule,
                                 run_state_machine_as_test)

import trainer.retention as retention_module
import trainer.sweep as sweep_module
from corpora import CorpusMessage
from spamkit.analysis import analyzer_for
from spamkit.learn import Learner
from spamkit.message import message_key
from spamkit.store import Label, LmdbStore
from trainer.maildir import open_directory
from trainer.maildirquota import QUOTA_FILE, read_quota
from trainer.retention import expire_junk
from trainer.sweep import SweepOptions, sweep
from trainer.users import Account, accounts
from tests.trainer.sweepmodel import (CUT, PowerCut, between_reads, check_counts,
                                      check_labels_after_a_whole_sweep, cut_inside_commits, wrapped)

FOLDERS = {"LearnAsSpam": Label.SPAM, "LearnAsHam": Label.HAM, "INBOX": None, "junkmail": None}
FOLDER_NAMES = sorted(FOLDERS)
DELIVERED = 1_700_000_000  # plus a serial: when the model's messages were delivered


# what the user does, during a sweep as between sweeps
USER_ACTIONS = st.tuples(
    st.sampled_from(["deliver", "deliver", "deliver", "read", "withdraw", "move", "move", "copy", "link",
                     "delete"]),
    st.integers(0, 1000),
    st.sampled_from(["LearnAsSpam", "LearnAsSpam", "LearnAsHam", "LearnAsHam", "INBOX", "junkmail"]))


class SweepHistory(RuleBasedStateMachine):
    """Maildir++ (SME's, Courier's, Dovecot's default): each folder a dot-directory."""

    messages: list[bytes]  # corpus messages, set by the test
    layout = "maildir++"
    spam_folder = "LearnAsSpam"  # as the configuration names it
    places = {"LearnAsSpam": ".LearnAsSpam", "LearnAsHam": ".LearnAsHam", "INBOX": "", "junkmail": ".junkmail"}

    def __init__(self) -> None:
        super().__init__()
        self.directory = Path(tempfile.mkdtemp(prefix="spamkit-sweep-model-"))
        self.maildir = self.directory / "users" / "alice" / "Maildir"
        for folder in FOLDER_NAMES:
            for sub in ("cur", "new", "tmp"):
                (self.maildir / self.places[folder] / sub).mkdir(parents=True, exist_ok=True)
            if self.places[folder] and self.layout == "maildir++":
                (self.maildir / self.places[folder] / "maildirfolder").touch()
        self.folder_at = {self.maildir / place: folder for folder, place in self.places.items()}
        self.recalculate_quota()
        self.db = self.directory / "db"
        self.store = LmdbStore(self.db)
        self.files: dict[Path, bytes] = {}  # the model: every message file there should be
        self.given: dict[bytes, set[Label]] = {}  # labels the user ever gave a message
        self.serial = 0
        self.analyzer = analyzer_for(self.store)

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.directory)

    # -- the user ---------------------------------------------------------------------

    def folder_of(self, path: Path) -> str:
        return self.folder_at[path.parent.parent]

    def new_name(self) -> str:
        """A unique base name, as a delivery makes one: delivered at DELIVERED + serial."""
        self.serial += 1
        return f"{DELIVERED + self.serial}.M{self.serial}P1.model"

    def put(self, data: bytes, folder: str, sub: str = "new", flags: str = "") -> None:
        name = self.new_name() + (f":2,{flags}" if sub == "cur" else "")
        path = self.maildir / self.places[folder] / sub / name
        (self.maildir / self.places[folder] / "tmp" / name).write_bytes(data)
        (self.maildir / self.places[folder] / "tmp" / name).rename(path)  # (as a delivery does)
        self.arrived(path, data)

    def arrived(self, path: Path, data: bytes) -> None:
        self.files[path] = data
        self.quota_change(len(data), 1)
        self.placed(path)

    def placed(self, path: Path) -> None:
        """A message undeleted in LearnAsSpam or LearnAsHam has the user's label."""
        label = FOLDERS[self.folder_of(path)]
        if label is not None and not trashed(path):
            self.given.setdefault(message_key(self.files[path]), set()).add(label)

    def rename(self, path: Path, target: Path) -> None:
        path.rename(target)
        self.files[target] = self.files.pop(path)
        self.placed(target)

    def act(self, action: str, pick: int, folder: str) -> None:
        """One thing the user does with mail programs; `pick` chooses the message."""
        if action == "deliver" or not self.files:
            self.put(self.messages[pick % len(self.messages)], folder)
            return
        path = sorted(self.files)[pick % len(self.files)]
        base, _, flags = path.name.partition(":2,")
        if action == "read":
            self.rename(path, path.parent.parent / "cur" / f"{base}:2,{''.join(sorted(set(flags) | {'S'}))}")
        elif action == "withdraw":  # flagged deleted: a move by copy, not yet expunged
            self.rename(path, path.parent.parent / "cur" / f"{base}:2,{''.join(sorted(set(flags) | {'T'}))}")
        elif action == "move":
            self.rename(path, self.maildir / self.places[folder] / "cur" / f"{base}:2,{flags}")
        elif action == "copy":
            self.put(self.files[path], folder, "cur", flags.replace("T", ""))
        elif action == "link":  # Dovecot's COPY (maildir_copy_with_hardlinks)
            target = self.maildir / self.places[folder] / "cur" / f"{self.new_name()}:2,"
            os.link(path, target)
            self.arrived(target, self.files[path])
        else:
            path.unlink()
            self.quota_change(-len(self.files.pop(path)), -1)

    def quota_change(self, size: int, count: int) -> None:
        """The line the user's mail server appends to maildirsize."""
        with open(self.maildir / QUOTA_FILE, "a") as out:
            out.write(f"{size} {count}\n")

    def recalculate_quota(self) -> None:
        """What `doveadm quota recalc` writes: the limits, and what the folders hold."""
        sizes = [path.stat().st_size for path in self.on_disk()]
        (self.maildir / QUOTA_FILE).write_text(f"1000000000S,100000C\n{sum(sizes)} {len(sizes)}\n")

    def on_disk(self) -> set[Path]:
        return {path for folder in FOLDER_NAMES for sub in ("cur", "new")
                for path in (self.maildir / self.places[folder] / sub).iterdir()}

    @initialize(placed=st.lists(st.tuples(st.integers(0, 1000), st.sampled_from(["LearnAsSpam", "LearnAsHam"])),
                                min_size=1, max_size=8))
    def mail_to_learn(self, placed: list[tuple[int, str]]) -> None:
        for pick, folder in placed:
            self.act("deliver", pick, folder)

    @rule(actions=st.lists(USER_ACTIONS, min_size=1, max_size=6))
    def user(self, actions: list[tuple[str, int, str]]) -> None:
        for action in actions:
            self.act(*action)

    # -- the sweep ----------------------------------------------------------------------

    @precondition(lambda self: any(FOLDERS[self.folder_of(path)] is not None for path in self.files))
    @rule(batch_size=st.integers(1, 4), ham_to_inbox=st.booleans(), cut=CUT,
          meanwhile=st.lists(st.tuples(st.integers(0, 12), USER_ACTIONS), max_size=4))
    def sweep(self, batch_size: int, ham_to_inbox: bool, cut: tuple[str, int] | None,
              meanwhile: list[tuple[int, tuple[str, int, str]]]) -> None:
        before = {path: data for path, data in self.files.items()
                  if FOLDERS[self.folder_of(path)] is not None and not trashed(path)}
        removed: list[Path] = []

        def remove(original: Callable[..., bool], path: Path, *inbox: Path) -> bool:
            """delete(path), or move_to_inbox(path, maildir) for learned ham."""
            if cut == ("remove", len(removed)):
                raise PowerCut
            label = FOLDERS[self.folder_of(path)]
            if path.exists():  # (the user may have moved it meanwhile: then it stays)
                learned = self.store.learned_as(message_key(path.read_bytes()))
                assert label is not None and learned is label, \
                    f"{path.name} leaves {self.folder_of(path)} learned as {learned}"
            gone = original(path, *inbox)
            if gone:  # (the model follows at once: the user may act on it next)
                removed.append(path)
                data = self.files.pop(path)
                if inbox:
                    self.files[self.maildir / "cur" / path.name] = data
            return gone

        cut_off = False
        with wrapped(sweep_module, "read_message", between_reads(meanwhile, cut, self.act)), \
                wrapped(sweep_module, "delete", remove), wrapped(sweep_module, "move_to_inbox", remove), \
                cut_inside_commits(cut):
            try:
                [account] = accounts(f"{self.directory}/users/{{user}}/Maildir", "alice")
                report = sweep([Account(account.user, account.maildir, self.layout)],
                               Learner(self.store, batch_size=batch_size),
                               SweepOptions(spam_folder=self.spam_folder, ham_to_inbox=ham_to_inbox))
            except PowerCut:
                cut_off = True
        if cut_off:  # the next sweep is another process
            event("cut off")
            self.store.close()
            self.store = LmdbStore(self.db)
            if cut is not None and cut[0] == "remove":
                self.recalculate_quota()
        else:
            assert report.error is None
        self.account_for()
        if not cut_off and not meanwhile:
            self.check_a_whole_sweep(before)

    # -- the junkmail retention -------------------------------------------------------

    @rule(cutoff=st.integers(0, 40), cut_at=st.none() | st.integers(0, 12),
          meanwhile=st.lists(st.tuples(st.integers(0, 12), USER_ACTIONS), max_size=4))
    def junkmail_retention(self, cutoff: int, cut_at: int | None,
                           meanwhile: list[tuple[int, tuple[str, int, str]]]) -> None:
        """`expire_junk` with MessageRetentionTime 30 deletes junkmail delivered before
        DELIVERED + cutoff, and nothing else, while the user acts before any of its
        deletions; it may be cut off at a deletion."""
        now = DELIVERED + cutoff + 30 * 86400
        deleted: list[Path] = []
        before_each = between_reads(meanwhile, None if cut_at is None else ("read", cut_at), self.act)

        def delete(original: Callable[[Path], bool], path: Path) -> bool:
            def deleting(path: Path) -> bool:
                assert self.folder_of(path) == "junkmail" and delivered_at(path) < DELIVERED + cutoff, \
                    f"retention deletes {path}"
                gone = original(path)
                if gone:  # (not when the user moved it meanwhile)
                    deleted.append(path)
                    self.files.pop(path)
                return gone
            return bool(before_each(deleting, path))

        with wrapped(retention_module, "delete", delete):
            try:
                report = expire_junk([Account("alice", self.maildir, self.layout)], "junkmail", 30, now=now)
            except PowerCut:  # (the quota line for what it deleted is never written)
                event("retention cut off")
                self.recalculate_quota()
                report = None
        if report is not None:
            assert (report.users, report.failures) == ({"alice": len(deleted)}, [])
            if not meanwhile:
                assert not [path for path in self.files if self.folder_of(path) == "junkmail"
                            and delivered_at(path) < DELIVERED + cutoff], "old junkmail left"
        self.account_for()

    def account_for(self) -> None:
        """Every file of the model is where it was, or the sweep removed it (or put learned
        ham back in the Inbox); no other file appeared."""
        on_disk = self.on_disk()
        assert on_disk == set(self.files), f"lost {set(self.files) - on_disk}, found {on_disk - set(self.files)}"
        assert not any(list((self.maildir / self.places[folder] / "tmp").iterdir()) for folder in FOLDER_NAMES)

    def check_a_whole_sweep(self, before: dict[Path, bytes]) -> None:
        """A sweep that ran to its end alone leaves only withdrawn messages in the folders,
        and each message it took has the label of the last folder it took it from."""
        left = [path for path in self.files if FOLDERS[self.folder_of(path)] is not None and not trashed(path)]
        assert left == [], f"left in the folders: {left}"
        check_labels_after_a_whole_sweep(self.store, [(message_key(data), FOLDERS[self.folder_of(path)])
                                                      for path, data in before.items()])

    # -- what must always hold ------------------------------------------------------------

    @invariant()
    def the_quota_counts_what_the_folders_hold(self) -> None:
        fd = open_directory(self.maildir)
        try:
            quota = read_quota(fd)
        finally:
            os.close(fd)
        sizes = [path.stat().st_size for path in self.on_disk()]
        assert quota is not None and (quota.bytes_used, quota.count_used) == (sum(sizes), len(sizes))

    @invariant()
    def counts_are_each_learned_message_once(self) -> None:
        check_counts(self.store, self.analyzer, {message_key(data): data for data in self.messages}, self.given)


def delivered_at(path: Path) -> int:
    return int(path.name.split(".", 1)[0])


def trashed(path: Path) -> bool:
    return "T" in path.name.partition(":2,")[2]


def test_a_sweep_removes_only_what_it_committed_whatever_the_user_does(
        split: tuple[list[CorpusMessage], list[CorpusMessage]]) -> None:
    train, _ = split
    spam = [m.data for m in train if m.label == "spam"][:6]
    ham = [m.data for m in train if m.label == "ham"][:6]
    SweepHistory.messages = spam + ham
    run_state_machine_as_test(SweepHistory, settings=settings(
        max_examples=150, stateful_step_count=25, deadline=None,
        suppress_health_check=[HealthCheck.too_slow]))


class FsLayoutHistory(SweepHistory):
    """Dovecot's LAYOUT=fs, with LearnAsSpam under Junk, as a user's mail program may keep it:
    folders nested as directories, with no maildirfolder file."""

    layout = "fs"
    spam_folder = "Junk/LearnAsSpam"
    places = {"LearnAsSpam": "Junk/LearnAsSpam", "LearnAsHam": "LearnAsHam", "INBOX": "", "junkmail": "junkmail"}


def test_the_same_in_dovecots_fs_layout(split: tuple[list[CorpusMessage], list[CorpusMessage]]) -> None:
    train, _ = split
    FsLayoutHistory.messages = [m.data for m in train if m.label == "spam"][:6] + \
        [m.data for m in train if m.label == "ham"][:6]
    run_state_machine_as_test(FsLayoutHistory, settings=settings(
        max_examples=60, stateful_step_count=25, deadline=None,
        suppress_health_check=[HealthCheck.too_slow]))
