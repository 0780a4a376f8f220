"""Maildir++ quota: the `maildirsize` file that Courier (deliverquota, maildrop) and
Dovecot's maildir quota backend keep in the Maildir, kept true by what spamkit adds and
removes.

The file's first line gives the limits ("102400S,1000C": bytes, messages; either may be
missing); every line after it is a change, "<bytes> <messages>", appended in one write
by whoever adds or removes mail, negative for a removal. The usage is their sum. Dovecot
trusts that sum: a message the sweep deleted without a line stayed counted, so a user
whose LearnAsSpam was emptied every half hour met "Quota exceeded" with room to spare
(measured on Debian 12's Dovecot: after 2 of 3 messages went this way it still counted 3,
and refused the 11th message of a quota that 8 filled). And a message `deliver` wrote
without a line was never counted. Dovecot recalculates the file from the folders when it
grows past 5,120 bytes, or when it is removed (`doveadm quota recalc`); spamkit never
rewrites it, it only appends.

A Maildir without the file has no Maildir++ quota to keep: nothing is written.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass

QUOTA_FILE = "maildirsize"
# Dovecot's quota_grace default: a delivery may take a user under the limit up to this
# much over it (Dovecot's LDA and LMTP do; a mail then over the limit is refused)
GRACE = 0.10
_READ_LIMIT = 1 << 20  # a file this large is past all sense (Dovecot recalculates at 5,120 bytes)
_LIMIT = re.compile(rb"^(\d+)([SC])$")
_SIZE_IN_NAME = re.compile(r",S=(\d+)")


@dataclass(frozen=True)
class Quota:
    bytes_limit: int | None
    count_limit: int | None
    bytes_used: int
    count_used: int

    def refusal(self, size: int) -> str | None:
        """Why a message of `size` bytes may not be delivered now, or None: as Dovecot's
        delivery decides with its default grace."""
        if self.count_limit is not None and self.count_used + 1 > self.count_limit:
            return f"over quota: {self.count_used} of {self.count_limit} messages ({QUOTA_FILE})"
        if self.bytes_limit is not None and (
                self.bytes_used >= self.bytes_limit
                or self.bytes_used + size > self.bytes_limit * (1 + GRACE)):
            return (f"over quota: {self.bytes_used} of {self.bytes_limit} bytes in use, and the "
                    f"message is {size} ({QUOTA_FILE})")
        return None


def stored_size(name: str, size_on_disk: int) -> int:
    """What a message counts for: the S= its file name carries (Dovecot's and Courier's
    names do; for a compressed file, the size of the message), else its size on disk."""
    found = _SIZE_IN_NAME.search(name)
    return int(found.group(1)) if found else size_on_disk


def _open_file(maildir_fd: int, flags: int) -> int | None:
    """The Maildir's maildirsize, if it is a regular file there (never through a link,
    never a FIFO that would block)."""
    try:
        fd = os.open(QUOTA_FILE, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=maildir_fd)
    except OSError:  # (none; a link, ELOOP; not ours to read)
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return fd


def read_quota(maildir_fd: int) -> Quota | None:
    """The Maildir's quota and usage, or None when it keeps none (no file, no limit, or a
    file too large to be read, which Dovecot will recalculate)."""
    fd = _open_file(maildir_fd, os.O_RDONLY)
    if fd is None:
        return None
    try:
        data = os.read(fd, _READ_LIMIT + 1)
    finally:
        os.close(fd)
    if len(data) > _READ_LIMIT:
        return None
    lines = data.split(b"\n")
    limits: dict[bytes, int] = {}
    for part in lines[0].split(b","):
        match = _LIMIT.match(part.strip())
        if match:
            limits[match.group(2)] = int(match.group(1))
    if not limits:
        return None
    used_bytes = used_count = 0
    for line in lines[1:]:
        fields = line.split()
        if len(fields) == 2 and all(re.fullmatch(rb"-?\d+", field) for field in fields):
            used_bytes += int(fields[0])
            used_count += int(fields[1])
    return Quota(limits.get(b"S"), limits.get(b"C"), used_bytes, used_count)


def record_change(maildir_fd: int, bytes_delta: int, count_delta: int) -> bool:
    """Append "<bytes> <messages>" to the Maildir's maildirsize, in one write, when it has
    one; True if a line was written. Raises OSError when it cannot be written."""
    if bytes_delta == 0 and count_delta == 0:
        return False
    fd = _open_file(maildir_fd, os.O_WRONLY | os.O_APPEND)
    if fd is None:
        return False
    try:
        os.write(fd, f"{bytes_delta} {count_delta}\n".encode("ascii"))
    finally:
        os.close(fd)
    return True
