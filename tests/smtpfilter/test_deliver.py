"""`spamkit deliver USER`: Maildir delivery with the exit codes MTAs understand."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from corpora import CorpusMessage


def deliver(user: str, data: bytes, root: Path, db: Path | str, config: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "spamkit", "deliver", user, "--maildirs",
                           f"{root}/{{user}}/Maildir", "--db", str(db), "--config", str(config)],
                          input=data, capture_output=True, timeout=120,
                          env=dict(os.environ, SENDER="someone@example.org"))


def deliver_ham_and_spam(user: str, root: Path, db: Path, tmp_path: Path,
                         split: tuple[list[CorpusMessage], list[CorpusMessage]]) -> tuple[Path, Path]:
    """A test-fold ham and spam delivered with SortSpam at TagLevel 4: (the ham in the
    Inbox, the spam in junkmail)."""
    config = tmp_path / "spamkit.toml"
    config.write_text('SortSpam = true\nSensitivity = "custom"\nTagLevel = 4\n')
    ham = next(m for m in split[1] if m.label == "ham")
    spam = next(m for m in split[1] if m.label == "spam" and b"BAYES" not in m.data)
    assert deliver(user, ham.data, root, db, config).returncode == 0
    assert deliver(user, spam.data, root, db, config).returncode == 0
    [inbox] = list((root / user / "Maildir" / "new").iterdir())
    [junk] = list((root / user / "Maildir" / ".junkmail" / "new").iterdir())
    return inbox, junk


def test_ham_to_inbox_spam_to_junkmail(tmp_path: Path, trained_db: Path,
                                        split: tuple[list[CorpusMessage], list[CorpusMessage]]) -> None:
    root = tmp_path / "users"
    (root / "alice" / "Maildir" / "cur").mkdir(parents=True)
    db = tmp_path / "db"
    shutil.copytree(trained_db, db)
    inbox, junk = deliver_ham_and_spam("alice", root, db, tmp_path, split)
    assert b"X-Spam-Status: No," in inbox.read_bytes()
    assert b"X-Spam-Flag: YES" in junk.read_bytes()
    assert b"autolearn=disabled" in inbox.read_bytes() and b"autolearn=disabled" in junk.read_bytes()
    assert list((root / "alice" / "Maildir" / "tmp").iterdir()) == []


def test_the_mbox_from_line_is_not_delivered(tmp_path: Path, trained_db: Path,
                                             split: tuple[list[CorpusMessage], list[CorpusMessage]]) -> None:
    """Postfix's local(8) puts "From sender date" before the message it gives
    mailbox_command, as procmail does (the corpus's files have it too): a Maildir message
    has none. Kept, it sat after our fields as a line that is not a field, and Python's
    parser saw no header after it."""
    import email
    import email.policy

    root = tmp_path / "users"
    (root / "alice" / "Maildir" / "cur").mkdir(parents=True)
    inbox, junk = deliver_ham_and_spam("alice", root, trained_db, tmp_path, split)
    for delivered in (inbox.read_bytes(), junk.read_bytes()):
        assert not re.search(rb"^From ", delivered.split(b"\n\n", 1)[0], re.MULTILINE)
        parsed = email.message_from_bytes(delivered, policy=email.policy.compat32)
        assert parsed["X-Spam-Status"] and parsed["Return-Path"] and parsed["Subject"] is not None
        assert not parsed.defects


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


FORGED = (b"X-Spam-Status: No, score=-9.0 required=5.0 tests=FORGED\n"
          b"X-Spam-Flag: NO\nSubject: cheap pills\n\nbuy now\n")


def _closed_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # closed again when the block ends: nothing listens


@pytest.mark.parametrize("policy", ["tempfail", "rules", "unscanned"])
def test_a_database_that_is_down_is_dealt_with_as_when_database_down_says(
        tmp_path: Path, policy: str) -> None:
    """A Redis nothing listens on: `deliver` did not read WhenDatabaseDown and always
    exited 75. Now tempfail still does (the MTA keeps the mail), rules scores with the
    rules alone, and unscanned delivers it saying so. The sender's own X-Spam-* headers
    never reach the mailbox, where they would read as ours."""
    root = tmp_path / "users"
    (root / "carol" / "Maildir" / "cur").mkdir(parents=True)
    config = tmp_path / "spamkit.toml"
    config.write_text(f'WhenDatabaseDown = "{policy}"\n')
    result = deliver("carol", FORGED, root, f"redis://127.0.0.1:{_closed_port()}/0", config)
    new = root / "carol" / "Maildir" / "new"
    if policy == "tempfail":
        assert result.returncode == 75, result.stderr
        assert b"WhenDatabaseDown=tempfail" in result.stderr
        assert not new.exists() or list(new.iterdir()) == []
        return
    assert result.returncode == 0, result.stderr
    [delivered] = list(new.iterdir())
    data = delivered.read_bytes()
    assert b"FORGED" not in data and b"X-Spam-Flag: NO" not in data
    assert data.endswith(b"Subject: cheap pills\n\nbuy now\n")
    if policy == "rules":
        assert re.search(rb"^X-Spam-Status: No, score=\S+ required=5\.0\s.*?autolearn=unavailable", data, re.M | re.S)
    else:
        assert data.startswith(b"X-Spam-Status: unscanned, spam database unavailable\n")


@pytest.mark.parametrize("policy", ["tempfail", "rules"])
def test_a_damaged_database_is_dealt_with_as_when_database_down_says(
        tmp_path: Path, trained_db: Path, policy: str) -> None:
    """Token records the wrong length (damage LMDB opens and reads past): `deliver`
    deferred the mail (75) whatever WhenDatabaseDown said, where the filter and spamd now
    apply it to a database found damaged. Now tempfail still defers, and rules delivers
    it scored with the rules alone."""
    import lmdb

    from spamkit.analysis import Analyzer

    db = tmp_path / "db"
    shutil.copytree(trained_db, db)
    env = lmdb.open(str(db), max_dbs=8)
    with env.begin(write=True) as txn:
        tokens = env.open_db(b"tokens", txn=txn)
        for key in Analyzer().analyze(FORGED).hashes:
            txn.put(key, b"\x01\x02\x03", db=tokens)
    env.close()
    root = tmp_path / "users"
    (root / "dave" / "Maildir" / "cur").mkdir(parents=True)
    config = tmp_path / "spamkit.toml"
    config.write_text(f'WhenDatabaseDown = "{policy}"\n')
    result = deliver("dave", FORGED, root, db, config)
    new = root / "dave" / "Maildir" / "new"
    if policy == "tempfail":
        assert result.returncode == 75, result.stderr
        assert b"is damaged" in result.stderr and b"WhenDatabaseDown=tempfail" in result.stderr
        assert not new.exists() or list(new.iterdir()) == []
        return
    assert result.returncode == 0, result.stderr
    [delivered] = list(new.iterdir())
    assert re.search(rb"^X-Spam-Status: No, score=\S+ required=5\.0\s.*?autolearn=unavailable",
                     delivered.read_bytes(), re.M | re.S)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root, to deliver as another user")
def test_run_as_root_it_writes_as_the_maildirs_owner(
        trained_db: Path, split: tuple[list[CorpusMessage], list[CorpusMessage]]) -> None:
    """As root, `deliver` wrote the message 0600 as root (unreadable to its user) and made
    .junkmail root's (the user could not move or delete junkmail); and it wrote through a
    symbolic link the user had planted, into a directory only root may write."""
    tmp_path = Path(tempfile.mkdtemp(prefix="spamkit-deliver-"))  # pytest's own is root's alone
    try:
        _deliver_as_root(tmp_path, trained_db, split)
    finally:
        shutil.rmtree(tmp_path)


def _deliver_as_root(tmp_path: Path, trained_db: Path,
                     split: tuple[list[CorpusMessage], list[CorpusMessage]]) -> None:
    nobody = pwd.getpwnam("nobody")
    root = tmp_path / "users"
    maildir = root / "erin" / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True)
    for path in (root / "erin", maildir, *(maildir / sub for sub in ("cur", "new", "tmp"))):
        os.chown(path, nobody.pw_uid, nobody.pw_gid)
    tmp_path.chmod(0o755)
    inbox, junk = deliver_ham_and_spam("erin", root, trained_db, tmp_path, split)
    junkmail = maildir / ".junkmail"
    for path in (inbox, junk, junkmail, junkmail / "new"):
        assert (path.stat().st_uid, path.stat().st_gid) == (nobody.pw_uid, nobody.pw_gid), path
    assert oct(junkmail.stat().st_mode & 0o777) == "0o700"
    # a link the user planted: root's directory must not receive the message
    protected = tmp_path / "root-only"
    protected.mkdir(mode=0o700)
    shutil.rmtree(junkmail / "new")
    (junkmail / "new").symlink_to(protected)
    spam = next(m for m in split[1] if m.label == "spam" and b"BAYES" not in m.data)
    done = deliver("erin", spam.data, root, trained_db, tmp_path / "spamkit.toml")
    assert done.returncode == 75, done.stderr
    assert list(protected.iterdir()) == [] and list((junkmail / "tmp").iterdir()) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root, to deliver as another user")
def test_a_database_the_recipient_may_not_read_counts_as_down(trained_db: Path) -> None:
    """Under .qmail, procmail and mailbox_command, `deliver` runs as the recipient, and
    a database is made 0700 for its owner. Such a delivery used to end in 75 with a bare
    "Permission denied" on every message; now it follows WhenDatabaseDown and says why.
    Run as `nobody` in a forked child (this interpreter's files are not nobody's to read,
    so a new process could not start as nobody)."""
    nobody = pwd.getpwnam("nobody")
    tmp_path = Path(tempfile.mkdtemp(prefix="spamkit-deliver-"))  # pytest's own is root's alone
    try:
        _deliver_as_nobody(tmp_path, trained_db, nobody)
    finally:
        shutil.rmtree(tmp_path)


def _deliver_as_nobody(tmp_path: Path, trained_db: Path, nobody: pwd.struct_passwd) -> None:
    import io

    from spamkit.cli import main

    root = tmp_path / "users"
    maildir = root / "dave" / "Maildir"
    (maildir / "cur").mkdir(parents=True)
    db = tmp_path / "db"
    shutil.copytree(trained_db, db)
    os.chmod(db, 0o700)  # as spamkit makes it, owned by root
    os.chown(root / "dave", nobody.pw_uid, nobody.pw_gid)
    os.chown(maildir, nobody.pw_uid, nobody.pw_gid)
    os.chown(maildir / "cur", nobody.pw_uid, nobody.pw_gid)
    for directory in (tmp_path, root):
        os.chmod(directory, 0o755)
    codes = {}
    for policy in ("tempfail", "rules"):
        config = tmp_path / f"{policy}.toml"
        config.write_text(f'WhenDatabaseDown = "{policy}"\n')
        os.chmod(config, 0o644)
        stderr = tmp_path / f"{policy}.err"
        stderr.touch()
        os.chown(stderr, nobody.pw_uid, nobody.pw_gid)
        main(["deliver", "--help"], standalone_mode=False)  # the command's modules, loaded as root
        pid = os.fork()
        if pid == 0:  # the child: become nobody, deliver, exit with deliver's status
            code = 70
            try:
                os.setgroups([])
                os.setgid(nobody.pw_gid)
                os.setuid(nobody.pw_uid)
                sys.stdin = io.TextIOWrapper(io.BytesIO(FORGED))
                sys.stderr = open(stderr, "w")  # noqa: SIM115 - flushed below; the exit closes it
                try:
                    main(["deliver", "dave", "--maildirs", f"{root}/{{user}}/Maildir", "--db", str(db),
                          "--config", str(config)], standalone_mode=False)
                    code = 0
                except SystemExit as exit_:
                    code = int(exit_.code or 0)
                sys.stderr.flush()
            except BaseException:  # noqa: BLE001 - said in the file the parent reads
                import traceback

                stderr.write_text(traceback.format_exc())
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        codes[policy] = (os.waitstatus_to_exitcode(status), stderr.read_text())
    assert codes["tempfail"][0] == 75, codes
    assert "cannot be read as user nobody" in codes["tempfail"][1] and "WhenDatabaseDown" in codes["tempfail"][1]
    assert codes["rules"][0] == 0, codes
    [delivered] = list((maildir / "new").iterdir())
    assert b"autolearn=unavailable" in delivered.read_bytes()


def test_a_broken_configuration_or_command_line_defers_the_mail_never_bounces_it(
        tmp_path: Path, trained_db: Path) -> None:
    """Postfix bounces mail when mailbox_command exits 69 or 2 (it defers on 75, EX_TEMPFAIL,
    and a few other sysexits codes). A typo in the configuration gave 69 and a misspelt
    option click's 2: every message bounced until the administrator noticed. Both are the
    administrator's to mend, so the mail now waits (75)."""
    root = tmp_path / "users"
    (root / "erin" / "Maildir" / "cur").mkdir(parents=True)
    config = tmp_path / "spamkit.toml"
    config.write_text('SortSpam = true\nTagLevel = "four"\n')
    broken = deliver("erin", b"Subject: x\n\ny\n", root, trained_db, config)
    assert broken.returncode == 75, broken.stderr
    assert f"{config}:2: TagLevel must be a number".encode() in broken.stderr
    misspelt = subprocess.run([sys.executable, "-m", "spamkit", "deliver", "erin", "--maildir",
                               f"{root}/{{user}}/Maildir"], input=b"Subject: x\n\ny\n",
                              capture_output=True, timeout=120)
    assert misspelt.returncode == 75 and b"No such option '--maildir'" in misspelt.stderr
    assert not (root / "erin" / "Maildir" / "new").exists()


def _as_qmail_local_runs_it(user: str, root: Path, db: Path, config: Path, data: bytes,
                            *options: str, dtline: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    """`deliver` run from a .qmail line: qmail-local gives a command the envelope in its
    environment, RPLINE and DTLINE among it, and the message without them
    (qmail-command(8); qmail itself has left Debian, so the environment is set here as that
    page documents it)."""
    env = {key: value for key, value in os.environb.items() if key not in (b"SENDER", b"RECIPIENT")}
    env.update({b"SENDER": b"someone@example.org", b"RECIPIENT": f"{user}@example.com".encode(),
                b"USER": user.encode(), b"LOCAL": user.encode(), b"HOST": b"example.com",
                b"UFLINE": b"From someone@example.org Sun Dec  6 11:00:00 2026\n",
                b"RPLINE": b"Return-Path: <someone@example.org>\n",
                b"DTLINE": dtline or f"Delivered-To: {user}@example.com\n".encode()})
    return subprocess.run([sys.executable, "-m", "spamkit", "deliver", user, "--maildirs",
                           f"{root}/{{user}}/Maildir", "--db", str(db), "--config", str(config),
                           *options], input=data, capture_output=True, timeout=120, env=env)


def test_under_qmail_the_exit_codes_are_qmails(tmp_path: Path, trained_db: Path) -> None:
    """qmail-local reads 100 as a hard error and 111 as a soft one; of the sysexits codes it
    takes 69 as soft, so mail for no such user waited out qmail's queue lifetime (a week)
    before it bounced. Under qmail the same outcomes now exit 100 and 111."""
    root = tmp_path / "users"
    (root / "bob" / "Maildir" / "cur").mkdir(parents=True)
    (root / "bob" / "Maildir" / "tmp").write_text("not a directory")
    none = tmp_path / "none.toml"
    for user in ("nobody-here", "../etc"):
        result = _as_qmail_local_runs_it(user, root, trained_db, none, b"Subject: x\n\ny\n")
        assert result.returncode == 100, result.stderr
        assert b"spamkit deliver:" in result.stderr  # (qmail-local puts it in the bounce)
    failed_write = _as_qmail_local_runs_it("bob", root, trained_db, none, b"Subject: x\n\ny\n")
    assert failed_write.returncode == 111 and b"cannot deliver to bob now" in failed_write.stderr
    broken = tmp_path / "broken.toml"
    broken.write_text('TagLevel = "four"\n')
    assert _as_qmail_local_runs_it("bob", root, trained_db, broken, b"Subject: x\n\ny\n").returncode == 111
    misspelt = _as_qmail_local_runs_it("bob", root, trained_db, none, b"Subject: x\n\ny\n", "--maildir", "x")
    assert misspelt.returncode == 111 and b"No such option '--maildir'" in misspelt.stderr


def test_under_qmail_the_return_path_and_delivered_to_lines_are_written_once(
        tmp_path: Path, trained_db: Path) -> None:
    """qmail-local writes Return-Path and Delivered-To first in a Maildir it delivers to,
    and gives a command the message without them: a message `deliver` wrote under qmail had
    neither (no sender for a vacation reply or the mail program to show). Now it writes
    them, once even when preline(1) already put them before the message, and a DTLINE
    carrying a line break makes no field of its own."""
    import email
    import email.policy

    root = tmp_path / "users"
    (root / "carol" / "Maildir" / "cur").mkdir(parents=True)
    config = tmp_path / "none.toml"
    message = b"From: someone@example.org\nSubject: lunch\n\nat noon\n"
    plain = _as_qmail_local_runs_it("carol", root, trained_db, config, message)
    prelined = _as_qmail_local_runs_it(
        "carol", root, trained_db, config, b"From someone@example.org Sun Dec  6 11:00:00 2026\n"
        b"Return-Path: <someone@example.org>\nDelivered-To: carol@example.com\n" + message)
    hostile = _as_qmail_local_runs_it("carol", root, trained_db, config, message,
                                      dtline=b"Delivered-To: carol@example.com\rX-Spam-Flag: NO\n")
    assert (plain.returncode, prelined.returncode, hostile.returncode) == (0, 0, 0), plain.stderr
    delivered = sorted((root / "carol" / "Maildir" / "new").iterdir(), key=lambda path: path.stat().st_mtime_ns)
    assert len(delivered) == 3
    for path in delivered[:2]:
        parsed = email.message_from_bytes(path.read_bytes(), policy=email.policy.compat32)
        assert parsed.get_all("Return-Path") == ["<someone@example.org>"]
        assert parsed.get_all("Delivered-To") == ["carol@example.com"]
        assert parsed["Subject"] == "lunch" and parsed["X-Spam-Status"]
    parsed = email.message_from_bytes(delivered[2].read_bytes(), policy=email.policy.compat32)
    assert parsed.get_all("Delivered-To") == ["carol@example.com_X-Spam-Flag: NO"]
    assert parsed["Subject"] == "lunch"
    outside_qmail = deliver("carol", message, root, trained_db, config)
    assert outside_qmail.returncode == 0
    [newest] = [path for path in (root / "carol" / "Maildir" / "new").iterdir() if path not in delivered]
    assert b"Delivered-To" not in newest.read_bytes() and b"Return-Path" not in newest.read_bytes()
