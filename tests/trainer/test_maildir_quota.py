"""Maildir++ quota (`maildirsize`) kept true by what spamkit adds and removes.

Dovecot's maildir quota backend trusts the file's sum: before, a message the sweep or
expire-junk deleted stayed counted (users met "Quota exceeded" with room to spare), and
one `deliver` wrote was never counted. Here Debian's Dovecot keeps the quota (doveadm with
the quota plugin), and `doveadm quota recalc` is the truth each sum is held to.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from corpora import CorpusMessage
from tests.servers.dovecot import Dovecot
from tests.trainer.commands import SPAMMER, spamkit_with
from trainer.maildirquota import Quota, read_quota, record_change, stored_size

QUOTA = ("-o", "mail_plugins=quota", "-o", "plugin/quota=maildir:User quota",
         "-o", "plugin/quota_rule=*:storage=200K")


def save(server: Dovecot, folder: str, data: bytes) -> None:
    """Deliver as Dovecot does with the quota kept (the message is counted)."""
    server.doveadm(*QUOTA, "save", "-u", "alice", "-m", folder, input=data)


def usage(server: Dovecot) -> tuple[int, int]:
    """(bytes, messages) as alice's maildirsize sums them."""
    lines = (server.maildir("alice") / "maildirsize").read_text().splitlines()
    changes = [tuple(int(field) for field in line.split()) for line in lines[1:] if line.strip()]
    return sum(change[0] for change in changes), sum(change[1] for change in changes)


def recalculated(server: Dovecot) -> tuple[int, int]:
    """(bytes, messages) as Dovecot counts them afresh from every folder."""
    server.doveadm(*QUOTA, "quota", "recalc", "-u", "alice")
    return usage(server)


def test_what_the_sweep_deliver_and_expire_junk_add_and_remove_is_counted_as_dovecot_counts_it(
        server: Dovecot, tmp_path: Path, split: tuple[list[CorpusMessage], list[CorpusMessage]]) -> None:
    spam = [m.data for m in split[0] if m.label == "spam"][:5]
    ham = [m.data for m in split[0] if m.label == "ham"][:3]
    server.fill("alice", "LearnAsSpam", [])
    server.fill("alice", "LearnAsHam", [])
    for data in spam:
        save(server, "LearnAsSpam", data)
    for data in ham:
        save(server, "LearnAsHam", data)
    save(server, "INBOX", ham[0])
    assert usage(server)[1] == 9  # (Dovecot counted what it saved)
    config = tmp_path / "spamkit.toml"
    config.write_text("SortSpam = true\n")
    (tmp_path / "lists").write_text(f"black {SPAMMER}\n")
    maildirs = f"{server.root}/mail/{{user}}/Maildir"

    swept = spamkit_with("learn", "--maildirs", maildirs, "--db", str(tmp_path / "db"), "--json", config=config)
    assert swept.returncode == 0, swept.stderr
    assert json.loads(swept.stdout)["totals"]["removed"] == 8
    after_sweep = usage(server)
    assert after_sweep[1] == 1

    junk = f"From: {SPAMMER}\nTo: alice@example.org\nSubject: cheap\n\n" + "buy now\n" * 200
    for _ in range(2):
        delivered = spamkit_with("deliver", "alice", "--maildirs", maildirs, "--db", str(tmp_path / "no-db"),
                            config=config, input=junk)
        assert delivered.returncode == 0, delivered.stderr
    junkmail = server.maildir("alice") / ".junkmail" / "new"
    sizes = {name: (junkmail / name).stat().st_size for name in sorted(os.listdir(junkmail))}
    assert usage(server) == (after_sweep[0] + sum(sizes.values()), 3)  # (with spamkit's headers)

    oldest = next(iter(sizes))
    os.rename(junkmail / oldest, junkmail / ("1000000000." + oldest.split(".", 1)[1]))
    expired = spamkit_with("expire-junk", "--maildirs", maildirs, "--json", config=config)
    assert json.loads(expired.stdout)["totals"]["deleted"] == 1, expired.stderr
    assert usage(server) == (after_sweep[0] + sum(sizes.values()) - sizes[oldest], 2)
    assert usage(server) == recalculated(server)


def test_deliver_defers_what_the_quota_has_no_room_for_as_dovecot_refuses_it(server: Dovecot,
                                                                            tmp_path: Path) -> None:
    """Over the limit (with Dovecot's 10% grace for a delivery), 75: the MTA keeps the
    message and tries again; nothing is written. Dovecot's own save is refused there too."""
    server.fill("alice", "INBOX", [])
    big = b"Subject: big\n\n" + b"x" * 60_000 + b"\n"
    for _ in range(3):
        save(server, "INBOX", big)  # 180 kB of the 200 kB
    before = sorted(os.listdir(server.maildir("alice") / "new"))
    config = tmp_path / "spamkit.toml"
    config.write_text("")
    message = "Subject: one more\n\n" + "y" * 50_000 + "\n"
    refused = spamkit_with("deliver", "alice", "--maildirs", f"{server.root}/mail/{{user}}/Maildir",
                      "--db", str(tmp_path / "no-db"), config=config, input=message)
    assert refused.returncode == 75
    assert refused.stderr.startswith("spamkit deliver: cannot deliver to alice now: over quota: "
                                     f"{usage(server)[0]} of 204800 bytes in use, and the message is ")
    assert sorted(os.listdir(server.maildir("alice") / "new")) == before
    dovecot = server.doveadm(*QUOTA, "save", "-u", "alice", input=message.encode(), check=False)
    assert dovecot.returncode != 0 and b"Quota exceeded" in dovecot.stderr
    # a small one fits in the grace, as Dovecot's delivery would take it
    taken = spamkit_with("deliver", "alice", "--maildirs", f"{server.root}/mail/{{user}}/Maildir",
                    "--db", str(tmp_path / "no-db"), config=config, input="Subject: small\n\nhi\n")
    assert taken.returncode == 0, taken.stderr
    assert usage(server) == recalculated(server)


def test_the_sweep_run_as_root_writes_no_quota_line_through_a_link(server: Dovecot, tmp_path: Path,
                                                                   split: tuple[list[CorpusMessage],
                                                                                list[CorpusMessage]]) -> None:
    """maildirsize is the user's file: one made a link to a file of root's is not followed."""
    server.fill("alice", "LearnAsSpam", [m.data for m in split[0] if m.label == "spam"][:2])
    target = tmp_path / "roots-file"
    target.write_text("102400S\n")
    (server.maildir("alice") / "maildirsize").symlink_to(target)
    config = tmp_path / "spamkit.toml"
    config.write_text("")
    swept = spamkit_with("learn", "--maildirs", f"{server.root}/mail/{{user}}/Maildir", "--db", str(tmp_path / "db"),
                    "--json", config=config)
    assert swept.returncode == 0, swept.stderr
    assert json.loads(swept.stdout)["totals"]["removed"] == 2
    assert target.read_text() == "102400S\n"


def test_the_file_read_as_courier_and_dovecot_write_it(tmp_path: Path) -> None:
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert read_quota(fd) is None and not record_change(fd, 10, 1)  # no file: no quota kept
        (tmp_path / "maildirsize").write_bytes(b"1000S,3C\n0 0\n400 1\n-100 -1\ngarbage\n1 2 3\n250 1\n")
        assert read_quota(fd) == Quota(1000, 3, 550, 1)
        assert record_change(fd, -550, -1)
        assert (tmp_path / "maildirsize").read_bytes().endswith(b"250 1\n-550 -1\n")
        (tmp_path / "maildirsize").write_bytes(b"\n10 1\n")  # no limit: none kept
        assert read_quota(fd) is None
        os.unlink(tmp_path / "maildirsize")
        os.mkfifo(tmp_path / "maildirsize")  # never waited on
        assert read_quota(fd) is None and not record_change(fd, 10, 1)
    finally:
        os.close(fd)
    quota = Quota(bytes_limit=1000, count_limit=None, bytes_used=900, count_used=9)
    assert quota.refusal(200) is None  # 1,100: within the 10% grace
    assert quota.refusal(201) == "over quota: 900 of 1000 bytes in use, and the message is 201 (maildirsize)"
    assert Quota(1000, None, 1000, 9).refusal(1) is not None  # at the limit: nothing more
    assert Quota(None, 10, 0, 10).refusal(1) == "over quota: 10 of 10 messages (maildirsize)"
    assert stored_size("1700000000.M1P2.host,S=2048,W=2100:2,S", 900) == 2048
    assert stored_size("1700000000.M1P2.host", 900) == 900
