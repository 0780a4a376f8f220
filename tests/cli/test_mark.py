"""`spamkit mark`: the filter mode of `spamassassin` and `bogofilter -p`, under a real
procmail, and what comes out when something goes wrong (always the message)."""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from corpora import CorpusMessage
from spamkit.stored import MAIL_CRYPT

SPAMKIT = [sys.executable, "-m", "spamkit"]


def mark(data: bytes, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*SPAMKIT, "mark", *args], input=data, capture_output=True, timeout=120,
                          env=env)


@pytest.fixture(scope="module")
def samples(split: tuple[list[CorpusMessage], list[CorpusMessage]]) -> dict[str, bytes]:
    _, test = split
    return {"spam": next(m.data for m in test if m.label == "spam" and b"\nSubject: " in m.data),
            "ham": next(m.data for m in test if m.label == "ham" and b"\nSubject: " in m.data)}


def headers_and_body(message: bytes) -> tuple[bytes, bytes]:
    head, _, body = message.replace(b"\r\n", b"\n").partition(b"\n\n")
    return head, body


def test_procmail_sorts_what_mark_marks(tmp_path: Path, trained_db: Path, samples: dict[str, bytes]) -> None:
    if shutil.which("procmail") is None:
        pytest.fail("procmail is not installed (scripts/install-test-deps.sh installs it)")
    config = tmp_path / "spamkit.toml"
    config.write_text('SubjectTag = true\nSubjectTagText = "[SPAM]"\n')
    maildir = tmp_path / "Maildir"
    for folder in (maildir, maildir / ".junkmail"):
        for part in ("cur", "new", "tmp"):
            (folder / part).mkdir(parents=True)
    rcfile = tmp_path / "procmailrc"
    command = " ".join([*SPAMKIT, "mark", "--db", str(trained_db), "--config", str(config)])
    rcfile.write_text(f"SHELL=/bin/sh\nMAILDIR={maildir}\nDEFAULT={maildir}/\nLOGFILE={tmp_path}/procmail.log\n"
                      f"PYTHONPATH={os.getcwd()}\n"
                      f":0fw\n| {command}\n\n:0\n* ^X-Spam-Flag: YES\n.junkmail/\n")
    for kind in ("spam", "ham"):
        done = subprocess.run(["procmail", "-m", str(rcfile)], input=samples[kind], capture_output=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr
    [spam] = [path.read_bytes() for path in (maildir / ".junkmail" / "new").iterdir()]
    [ham] = [path.read_bytes() for path in (maildir / "new").iterdir()]
    spam_head, spam_body = headers_and_body(spam)
    assert b"\nX-Spam-Flag: YES" in b"\n" + spam_head and b"Subject: [SPAM] " in spam_head
    assert b"X-Spam-Status: Yes, score=" in spam_head and b"autolearn=disabled" in spam_head
    assert spam_body == headers_and_body(samples["spam"])[1]
    ham_head, ham_body = headers_and_body(ham)
    assert b"X-Spam-Status: No, score=" in ham_head and b"X-Spam-Flag: YES" not in ham_head
    assert ham_body == headers_and_body(samples["ham"])[1]

    # a configuration broken meanwhile: mark passes the message on, unchanged, with 75,
    # and procmail delivers its own copy; nothing is lost
    config.write_text("SubjectTag = \n")
    done = subprocess.run(["procmail", "-m", str(rcfile)], input=samples["spam"], capture_output=True, timeout=120)
    assert done.returncode == 0
    delivered = [path.read_bytes() for folder in (maildir, maildir / ".junkmail")
                 for path in (folder / "new").iterdir()]
    assert len(delivered) == 3
    # (as it came: procmail keeps the mbox "From " line out of a Maildir)
    assert samples["spam"].split(b"\n", 1)[1] in delivered


def test_whatever_goes_wrong_the_message_comes_out(tmp_path: Path, trained_db: Path,
                                                   samples: dict[str, bytes]) -> None:
    message = samples["ham"]
    good = tmp_path / "good.toml"
    good.write_text("UseBayes = true\n")
    scored = mark(message, "--db", str(trained_db), "--config", str(good))
    assert scored.returncode == 0 and scored.stdout.endswith(headers_and_body(message)[1])
    assert scored.stdout != message

    broken = tmp_path / "broken.toml"
    broken.write_text("TagLevel = \n")
    for args in (["--db", str(trained_db), "--config", str(broken)],  # a broken configuration
                 ["--db", str(trained_db), "--config", str(good), "--bogus"]):  # a misspelt option
        passed = mark(message, *args)
        assert passed.returncode == 75 and passed.stdout == message, passed.stderr
    assert b"broken.toml:1: " in mark(message, "--db", str(trained_db), "--config", str(broken)).stderr

    damaged = tmp_path / "damaged"
    damaged.mkdir(mode=0o700)
    (damaged / "data.mdb").write_bytes(b"not a database" * 1000)
    down = mark(message, "--db", str(damaged), "--config", str(good))
    assert down.returncode == 75 and down.stdout == message
    assert b"not scored, passed on unchanged" in down.stderr and b"WhenDatabaseDown=tempfail" in down.stderr
    unscanned = tmp_path / "unscanned.toml"
    unscanned.write_text('WhenDatabaseDown = "unscanned"\n')
    passed = mark(message, "--db", str(damaged), "--config", str(unscanned))
    envelope, rest = passed.stdout.split(b"\n", 1)  # (the mbox "From " line stays first)
    assert passed.returncode == 0 and envelope == message.split(b"\n", 1)[0]
    assert rest.startswith(b"X-Spam-Status: unscanned, spam database unavailable")

    # any bytes are a message: no headers, NULs, no line end
    odd = b"\x00\xff no header here \x00"
    weird = mark(odd, "--db", str(trained_db), "--config", str(good))
    assert weird.returncode == 0 and weird.stdout.endswith(odd) and b"X-Spam-Status: " in weird.stdout
    # a file named instead of standard input; one that is not there is EX_NOINPUT
    (tmp_path / "m.eml").write_bytes(message)
    assert mark(b"", str(tmp_path / "m.eml"), "--db", str(trained_db), "--config", str(good)).stdout \
        == scored.stdout
    assert mark(b"", str(tmp_path / "gone.eml"), "--config", str(good)).returncode == 66
    # a Maildir file Dovecot compressed is the message it holds; one encrypted comes out as it is
    (tmp_path / "m.eml.gz").write_bytes(gzip.compress(message))
    assert mark(b"", str(tmp_path / "m.eml.gz"), "--db", str(trained_db), "--config", str(good)).stdout \
        == scored.stdout
    (tmp_path / "crypted").write_bytes(MAIL_CRYPT + b"\x00" * 64)
    crypted = mark(b"", str(tmp_path / "crypted"), "--db", str(trained_db), "--config", str(good))
    assert crypted.returncode == 75 and crypted.stdout == MAIL_CRYPT + b"\x00" * 64
    assert b"encrypted by Dovecot's mail_crypt plugin" in crypted.stderr


def test_the_envelope_comes_from_the_mta_environment(tmp_path: Path, samples: dict[str, bytes]) -> None:
    """$SENDER and $RECIPIENT, as qmail and Postfix's local and pipe set them, reach the
    lists: a recipient's own blacklist entry marks the message."""
    config = tmp_path / "spamkit.toml"
    config.write_text("UseBayes = false\n")  # (the list file: `lists` beside it)
    added = subprocess.run([*SPAMKIT, "wbl", "add", "black", "*@pills.example", "--user", "alice@example.org",
                            "--config", str(config)], capture_output=True, text=True, timeout=60)
    assert added.returncode == 0, added.stderr
    message = b"From: x@pills.example\nSubject: hi\n\nhello\n"
    env = dict(os.environ, SENDER="x@pills.example", RECIPIENT="alice@example.org")
    listed = mark(message, "--config", str(config), env=env)
    assert listed.returncode == 0 and b"USER_IN_BLACKLIST" in listed.stdout
    env["RECIPIENT"] = "bob@example.org"
    assert b"USER_IN_BLACKLIST" not in mark(message, "--config", str(config), env=env).stdout
    assert b"USER_IN_BLACKLIST" in mark(message, "--config", str(config), "--rcpt", "alice@example.org",
                                        env=env).stdout
