"""`spamkit deliver USER`: Maildir delivery with the exit codes MTAs understand."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from corpora import CorpusMessage


def deliver(user: str, data: bytes, root: Path, db: Path, config: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "spamkit", "deliver", user, "--maildirs",
                           f"{root}/{{user}}/Maildir", "--db", str(db), "--config", str(config)],
                          input=data, capture_output=True, timeout=120,
                          env=dict(os.environ, SENDER="someone@example.org"))


def test_ham_to_inbox_spam_to_junkmail(tmp_path: Path, trained_db: Path,
                                        split: tuple[list[CorpusMessage], list[CorpusMessage]]) -> None:
    root = tmp_path / "users"
    (root / "alice" / "Maildir" / "cur").mkdir(parents=True)
    db = tmp_path / "db"
    shutil.copytree(trained_db, db)
    config = tmp_path / "spamkit.toml"
    config.write_text('SortSpam = true\nSensitivity = "custom"\nTagLevel = 4\n')
    ham = next(m for m in split[1] if m.label == "ham")
    spam = next(m for m in split[1] if m.label == "spam" and b"BAYES" not in m.data)
    assert deliver("alice", ham.data, root, db, config).returncode == 0
    assert deliver("alice", spam.data, root, db, config).returncode == 0
    [inbox] = list((root / "alice" / "Maildir" / "new").iterdir())
    [junk] = list((root / "alice" / "Maildir" / ".junkmail" / "new").iterdir())
    assert b"X-Spam-Status: No," in inbox.read_bytes()
    assert b"X-Spam-Flag: YES" in junk.read_bytes()
    assert list((root / "alice" / "Maildir" / "tmp").iterdir()) == []


def test_a_user_with_sortspam_disabled_gets_spam_in_the_inbox(
        tmp_path: Path, trained_db: Path, split: tuple[list[CorpusMessage], list[CorpusMessage]]) -> None:
    """The SME guide's per-user switch (`db accounts setprop NAME SortSpam disabled`),
    set with `spamkit config set SortSpam false --user NAME`: that user's spam is tagged
    but stays in the Inbox; everyone else's goes to junkmail."""
    root = tmp_path / "users"
    for user in ("alice", "bob"):
        (root / user / "Maildir" / "cur").mkdir(parents=True)
    config = tmp_path / "spamkit.toml"
    config.write_text('SortSpam = true\nSensitivity = "custom"\nTagLevel = 4\n')
    result = subprocess.run([sys.executable, "-m", "spamkit", "config", "set", "SortSpam", "false",
                             "--user", "bob", "--config", str(config)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    for command in ("get", "show"):  # a name no account can have is refused, not looked up
        unsafe = subprocess.run([sys.executable, "-m", "spamkit", "config", command,
                                 *(["SortSpam"] if command == "get" else []), "--user", "../bob",
                                 "--config", str(config)], capture_output=True, text=True)
        assert unsafe.returncode == 2 and "refusing user name" in unsafe.stderr
        assert "Traceback" not in unsafe.stderr
    spam = next(m for m in split[1] if m.label == "spam" and b"BAYES" not in m.data)
    for user in ("alice", "bob"):
        assert deliver(user, spam.data, root, trained_db, config).returncode == 0
    [junk] = list((root / "alice" / "Maildir" / ".junkmail" / "new").iterdir())
    [inbox] = list((root / "bob" / "Maildir" / "new").iterdir())
    assert b"X-Spam-Flag: YES" in junk.read_bytes() and b"X-Spam-Flag: YES" in inbox.read_bytes()
    alice_inbox = root / "alice" / "Maildir" / "new"
    assert not alice_inbox.exists() or list(alice_inbox.iterdir()) == []
    assert not (root / "bob" / "Maildir" / ".junkmail").exists()


def test_unknown_or_unsafe_user_is_permanent(tmp_path: Path, trained_db: Path) -> None:
    root = tmp_path / "users"
    root.mkdir()
    for user in ("nobody-here", "../etc"):
        result = deliver(user, b"Subject: x\n\ny\n", root, trained_db, tmp_path / "none.toml")
        assert result.returncode == 69, result.stderr


def test_a_failed_write_is_temporary(tmp_path: Path, trained_db: Path) -> None:
    root = tmp_path / "users"
    (root / "bob" / "Maildir" / "cur").mkdir(parents=True)
    (root / "bob" / "Maildir" / "tmp").write_text("not a directory")
    result = deliver("bob", b"Subject: x\n\ny\n", root, trained_db, tmp_path / "none.toml")
    assert result.returncode == 75, result.stderr
    assert b"try" in result.stderr or b"cannot deliver" in result.stderr
