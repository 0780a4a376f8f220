"""The local Maildir sweep on folders where Dovecot saved mail compressed, or encrypted.

Dovecot's zlib plugin (mail_compress in 2.4; mailcow saves every message so) writes each
Maildir file gzip, bzip2, zstd or LZ4 compressed, and reads any of them by its first
bytes. Before, the sweep learned those bytes as they lay: a compressed spam's garbage
went into the token database under a key no other copy of it has, and the message was
deleted. Here real Dovecot (`doveadm save`) writes the files.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


from corpora import CorpusMessage
from spamkit.message import message_key
from spamkit.store import LmdbStore
from tests.servers.dovecot import Dovecot

# what Debian 12's Dovecot can save (its xz support is not built), and each one's first bytes
COMPRESSIONS = {"gz": b"\x1f\x8b", "bz2": b"BZh", "lz4": b"Dovecot-LZ4", "zstd": b"\x28\xb5\x2f\xfd"}


def save(server: Dovecot, user: str, folder: str, data: bytes, *settings: str) -> None:
    """Deliver as Dovecot does, with `settings` (-o NAME=VALUE) over its configuration."""
    options = [part for setting in settings for part in ("-o", setting)]
    server.doveadm(*options, "save", "-u", user, "-m", folder, input=data)


def folder_files(server: Dovecot, user: str, folder: str) -> list[Path]:
    base = server.maildir(user) / f".{folder}"
    return sorted(p for sub in ("new", "cur") for p in (base / sub).iterdir())


def sweep(server: Dovecot, db: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, SPAMKIT_CONFIG="/nonexistent/spamkit.toml")
    return subprocess.run([sys.executable, "-m", "spamkit", "learn", "--maildirs",
                           f"{server.root}/mail/{{user}}/Maildir", "--db", str(db), "--json"],
                          capture_output=True, text=True, env=env, timeout=300)


def test_mail_dovecot_compressed_is_learned_as_the_message_it_holds(
        server: Dovecot, tmp_path: Path, split: tuple[list[CorpusMessage], list[CorpusMessage]]) -> None:
    spam = [m.data for m in split[0] if m.label == "spam"][:10]
    ham = [m.data for m in split[0] if m.label == "ham"][:10]
    server.fill("alice", "LearnAsSpam", [])
    server.fill("alice", "LearnAsHam", [])
    methods = list(COMPRESSIONS) + [None]
    for index, data in enumerate(spam + ham):
        method = methods[index % len(methods)]
        settings = () if method is None else ("mail_plugins=zlib", f"plugin/zlib_save={method}")
        save(server, "alice", "LearnAsSpam" if index < len(spam) else "LearnAsHam", data, *settings)
    stored = [path.read_bytes() for folder in ("LearnAsSpam", "LearnAsHam")
              for path in folder_files(server, "alice", folder)]
    for signature in COMPRESSIONS.values():  # (Dovecot did compress them)
        assert sum(data.startswith(signature) for data in stored) == 4

    done = sweep(server, tmp_path / "db")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["totals"]["spam_learned"], report["totals"]["ham_learned"], report["totals"]["failed"]) == (10, 10, 0)
    assert folder_files(server, "alice", "LearnAsSpam") == folder_files(server, "alice", "LearnAsHam") == []
    # learned as the messages themselves: the same seen keys, the same tokens and counts
    # as learning the plain messages
    plain = tmp_path / "plain"
    for name, messages in (("spam", spam), ("ham", ham)):
        (plain / name).mkdir(parents=True)
        for index, data in enumerate(messages):
            (plain / name / str(index)).write_bytes(data)
    env = dict(os.environ, SPAMKIT_CONFIG="/nonexistent/spamkit.toml")
    for label in ("spam", "ham"):
        subprocess.run([sys.executable, "-m", "spamkit", "learn", f"--{label}", str(plain / label),
                        "--db", str(tmp_path / "plain-db")], check=True, env=env, capture_output=True, timeout=300)
    with LmdbStore(tmp_path / "db") as swept, LmdbStore(tmp_path / "plain-db") as learned:
        assert {m.key for m in swept.seen_records()} == {message_key(data) for data in spam + ham}
        assert [(r.key, r.spam, r.ham) for r in swept.records()] == \
            [(r.key, r.spam, r.ham) for r in learned.records()]


def test_mail_dovecot_encrypted_is_left_in_its_folder_and_said(server: Dovecot, tmp_path: Path) -> None:
    """mail_crypt's files can be read only through Dovecot, which has the key: the sweep
    reports each and leaves it, and learns the rest."""
    key = subprocess.run(["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout"],
                         capture_output=True, check=True).stdout
    private = subprocess.run(["openssl", "pkey"], input=key, capture_output=True, check=True).stdout.decode()
    public = subprocess.run(["openssl", "pkey", "-pubout"], input=key, capture_output=True, check=True).stdout.decode()
    server.fill("alice", "LearnAsSpam", [])
    secret = b"From: a@example.com\nSubject: kept secret\nMessage-ID: <1@example.com>\n\nsecret words\n"
    save(server, "alice", "LearnAsSpam", secret, "mail_plugins=mail_crypt", "plugin/mail_crypt_save_version=2",
         f"plugin/mail_crypt_global_private_key={private}", f"plugin/mail_crypt_global_public_key={public}")
    save(server, "alice", "LearnAsSpam", b"From: b@example.com\nSubject: plain\n\nplain words\n")
    encrypted = [path for path in folder_files(server, "alice", "LearnAsSpam")
                 if path.read_bytes().startswith(b"CRYPTED")]
    assert len(encrypted) == 1

    done = sweep(server, tmp_path / "db")
    assert done.returncode == 1, done.stderr  # one message left behind, and said so
    alice = next(u for u in json.loads(done.stdout)["users"] if u["user"] == "alice")
    assert alice["spam_learned"] == 1 and alice["failed"] == 1
    assert alice["failures"] == [{"message": str(encrypted[0]), "reason":
                                  "encrypted by Dovecot's mail_crypt plugin: it can be read only through "
                                  "Dovecot (sweep this mailbox over IMAP); left in the folder"}]
    assert folder_files(server, "alice", "LearnAsSpam") == encrypted
