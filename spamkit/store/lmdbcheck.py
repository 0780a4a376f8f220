"""Check an LMDB file's structure before LMDB itself walks it.

LMDB keeps no checksums and trusts every page header it reads: a header damaged on disk
(a bad sector, a bit flip) makes the library follow a wild page number and die of
SIGSEGV or SIGBUS, or stop on an assertion (`IS_BRANCH` in mdb_cursor_sibling). The
process gets no exception to turn into an error message, so `spamkit db magic` or the
cron job would just die.

This module reads the file itself (struct and numpy) along the same B-trees LMDB
follows. It checks everything LMDB would trust: each page's number, type, bounds and
nodes, each child and overflow page, each tree's depth and page counts, and that no page
is used by two trees or listed free twice. (LMDB's design has every page up to the last
used or listed free exactly once; a page in neither is counted, not called damage: a
leak wastes room and harms nothing.) It never writes. The layout is LMDB 0.9's on a
64-bit little-endian host, which is what py-lmdb builds here; a file of another layout
is reported, never guessed at.
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

MAGIC = 0xBEEFC0DE
DATA_VERSION = 1
PAGE_HEADER = 16  # pgno u64, pad u16, flags u16, lower u16, upper u16
NODE_HEADER = 8  # lo u16, hi u16, flags u16, ksize u16
INVALID_PAGE = 0xFFFFFFFFFFFFFFFF

P_BRANCH, P_LEAF, P_OVERFLOW, P_META, P_LEAF2, P_SUBP = 0x01, 0x02, 0x04, 0x08, 0x20, 0x40
TYPE_BITS = P_BRANCH | P_LEAF | P_OVERFLOW | P_META | P_LEAF2 | P_SUBP
F_BIGDATA, F_SUBDATA = 0x01, 0x02
MDB_DUPSORT = 0x04

_PAGE = struct.Struct("<QHHHH")
_NODE = struct.Struct("<HHHH")
_DB = struct.Struct("<IHHQQQQQ")  # pad, flags, depth, branch, leaf, overflow, entries, root
_META = struct.Struct("<IIQQ")  # magic, version, address, map size; then two _DB, last page, txnid
_TAIL = struct.Struct("<QQ")
_PGNO = struct.Struct("<Q")
MAX_PROBLEMS = 20


@dataclass
class TreeFacts:
    """What a tree's root record says, to be compared with what its pages show."""

    name: str
    flags: int
    depth: int
    branch_pages: int
    leaf_pages: int
    overflow_pages: int
    entries: int
    root: int


@dataclass
class CheckReport:
    """The outcome: `problems` is empty when the file is sound."""

    path: str
    txnid: int = 0
    page_size: int = 0
    pages: int = 0
    trees: dict[str, int] = field(default_factory=dict)  # entries per tree, as walked
    problems: list[str] = field(default_factory=list)
    snapshot_gone: bool = False  # later commits rewrote the meta page of the snapshot asked for
    snapshot_missing: bool = False  # neither meta page holds the transaction asked for
    unused_pages: int = 0  # neither in a tree nor listed free: leaked, not damage

    @property
    def sound(self) -> bool:
        return not self.problems


class _Damaged(Exception):
    """Stops the walk of one tree at its first bad page."""


class _Walker:
    def __init__(self, data: mmap.mmap | bytes, page_size: int, last_page: int,
                 report: CheckReport, file_pages: int) -> None:
        self.data = data
        self.page_size = page_size
        self.last_page = last_page
        self.file_pages = file_pages  # whole pages in the file; those past it were never written
        self.report = report
        self.owner: dict[int, str] = {}  # page -> the tree (or free list) that uses it
        self.leaves: dict[str, list[int]] = {}  # tree -> its leaf pages

    def problem(self, text: str) -> None:
        if len(self.report.problems) < MAX_PROBLEMS:
            self.report.problems.append(text)

    def claim(self, page: int, count: int, tree: str) -> None:
        for number in range(page, page + count):
            earlier = self.owner.get(number)
            if earlier is not None:
                raise _Damaged(f"page {number} is used twice ({earlier} and {tree})")
            self.owner[number] = tree

    def page(self, number: int, tree: str) -> tuple[int, int, int, int]:
        """The header of page `number`: (flags, lower, upper, start offset)."""
        if not 2 <= number <= self.last_page:
            raise _Damaged(f"{tree}: a link to page {number}, outside pages 2-{self.last_page}")
        if number >= self.file_pages:
            raise _Damaged(f"{tree}: page {number} is past the end of the file "
                           f"({self.file_pages} pages)")
        start = number * self.page_size
        stored, _pad, flags, lower, upper = _PAGE.unpack_from(self.data, start)
        if stored != number:
            raise _Damaged(f"{tree}: page {number} says it is page {stored}")
        return flags, lower, upper, start

    def walk_tree(self, facts: TreeFacts) -> list[tuple[bytes, bytes]]:
        """Walk one tree; return the leaves' records that are sub-databases (name, record)."""
        tree = facts.name
        if facts.flags & MDB_DUPSORT:
            raise _Damaged(f"{tree}: a sorted-duplicates tree, which spamkit never makes")
        if facts.root == INVALID_PAGE:
            if facts.depth or facts.entries or facts.branch_pages or facts.leaf_pages:
                raise _Damaged(f"{tree}: empty, yet its record counts pages or entries")
            self.report.trees[tree] = 0
            return []
        counted = {"branch": 0, "leaf": 0, "overflow": 0, "entries": 0}
        named: list[tuple[bytes, bytes]] = []
        level = [facts.root]
        for depth in range(1, facts.depth + 1):
            below: list[int] = []
            for number in level:
                self.claim(number, 1, tree)
                if depth < facts.depth:
                    below.extend(self.branch(number, tree))
                    counted["branch"] += 1
                else:
                    self.leaf(number, tree, counted, named)
                    self.leaves.setdefault(tree, []).append(number)
                    counted["leaf"] += 1
            level = below
            if depth < facts.depth and not level:
                raise _Damaged(f"{tree}: no pages at depth {depth + 1} of {facts.depth}")
        found = (counted["branch"], counted["leaf"], counted["overflow"], counted["entries"])
        recorded = (facts.branch_pages, facts.leaf_pages, facts.overflow_pages, facts.entries)
        if found != recorded:
            raise _Damaged(f"{tree}: its record says branch/leaf/overflow pages and entries "
                           f"{recorded}, its pages hold {found}")
        self.report.trees[tree] = counted["entries"]
        return named

    def nodes(self, number: int, tree: str, kind: int) -> tuple[int, np.ndarray, np.ndarray]:
        """A branch or leaf page's node offsets and its 16-bit words (node headers are
        2-byte aligned), checked to lie inside the page."""
        flags, lower, upper, start = self.page(number, tree)
        if flags & TYPE_BITS != kind:
            wanted = "branch" if kind == P_BRANCH else "leaf"
            raise _Damaged(f"{tree}: page {number} should be a {wanted} page; its flags are {flags:#x}")
        if not (PAGE_HEADER < lower <= upper <= self.page_size) or lower % 2:
            raise _Damaged(f"{tree}: page {number} has free space from {lower} to {upper}")
        words = np.frombuffer(self.data[start:start + self.page_size], dtype="<u2").astype(np.int64)
        offsets = words[PAGE_HEADER // 2:lower // 2]
        bad = (offsets < upper) | (offsets > self.page_size - NODE_HEADER) | (offsets % 2 == 1)
        if bad.any():
            raise _Damaged(f"{tree}: page {number} has a node at offset {offsets[bad][0]}")
        return start, offsets, words

    def branch(self, number: int, tree: str) -> list[int]:
        _start, offsets, words = self.nodes(number, tree, P_BRANCH)
        at = offsets // 2
        if (offsets + NODE_HEADER + words[at + 3] > self.page_size).any():
            raise _Damaged(f"{tree}: page {number} has a key running off the page")
        children: list[int] = (words[at] | words[at + 1] << 16 | words[at + 2] << 32).tolist()
        return children

    def leaf(self, number: int, tree: str, counted: dict[str, int],
             named: list[tuple[bytes, bytes]]) -> None:
        start, offsets, words = self.nodes(number, tree, P_LEAF)
        at = offsets // 2
        sizes, node_flags, key_sizes = words[at] | words[at + 1] << 16, words[at + 2], words[at + 3]
        stored = np.where(node_flags & F_BIGDATA, _PGNO.size, sizes)
        bad = (node_flags & ~(F_BIGDATA | F_SUBDATA) != 0) | \
            (offsets + NODE_HEADER + key_sizes + stored > self.page_size)
        if bad.any():
            index = int(np.flatnonzero(bad)[0])
            raise _Damaged(f"{tree}: page {number} has a record that is not what spamkit writes "
                           f"(flags {node_flags[index]:#x}, {key_sizes[index]}-byte key, "
                           f"{sizes[index]} bytes)")
        for index in np.flatnonzero(node_flags).tolist():
            key_at = start + int(offsets[index]) + NODE_HEADER
            key_size, size = int(key_sizes[index]), int(sizes[index])
            if node_flags[index] & F_BIGDATA:
                first = _PGNO.unpack_from(self.data, key_at + key_size)[0]
                counted["overflow"] += self.overflow(first, size, tree)
            else:  # F_SUBDATA: a named tree's record
                if size != _DB.size:
                    raise _Damaged(f"{tree}: page {number} has a sub-database record of {size} bytes")
                named.append((bytes(self.data[key_at:key_at + key_size]),
                              bytes(self.data[key_at + key_size:key_at + key_size + size])))
        counted["entries"] += len(offsets)

    def overflow(self, first: int, size: int, tree: str) -> int:
        flags, _lower, _upper, start = self.page(first, tree)
        pages = int(struct.unpack_from("<I", self.data, start + 12)[0])
        wanted = (PAGE_HEADER - 1 + size) // self.page_size + 1
        if flags & TYPE_BITS != P_OVERFLOW or pages != wanted or first + pages > self.file_pages:
            raise _Damaged(f"{tree}: the {size}-byte value at page {first} is not there "
                           f"(flags {flags:#x}, {pages} pages where {wanted} are needed)")
        self.claim(first, pages, tree)
        return pages

    def free_pages(self, facts: TreeFacts) -> None:
        """The free list's records (transaction id -> page numbers) name pages too."""
        for number in self.leaves.get(facts.name, []):
            start, offsets, _words = self.nodes(number, facts.name, P_LEAF)
            for offset in offsets.tolist():
                low, high, node_flags, key_size = _NODE.unpack_from(self.data, start + offset)
                value_at = start + offset + NODE_HEADER + key_size
                if node_flags & F_BIGDATA:
                    value_at = _PGNO.unpack_from(self.data, value_at)[0] * self.page_size + PAGE_HEADER
                size = low | high << 16
                listed = _PGNO.unpack_from(self.data, value_at)[0]
                if (listed + 1) * _PGNO.size > size:
                    raise _Damaged(f"free list: a record lists {listed} pages in {size} bytes")
                for page in struct.unpack_from(f"<{listed}Q", self.data, value_at + _PGNO.size):
                    if not 2 <= page <= self.last_page:
                        raise _Damaged(f"free list: page {page} is outside pages 2-{self.last_page}")
                    self.claim(page, 1, "free list (as free)")

    def past_end_free(self) -> None:
        """Every page the file does not reach must be listed free (see `check_length`)."""
        for number in range(self.file_pages, self.last_page + 1):
            if self.owner.get(number) != "free list (as free)":
                self.problem(f"the file holds {self.file_pages} pages; its meta page says "
                             f"{self.last_page + 1}, and page {number} past its end is not "
                             "listed free")
                return


def _tree(name: str, record: bytes | mmap.mmap, offset: int = 0) -> TreeFacts:
    return TreeFacts(name, *_DB.unpack_from(record, offset)[1:])


def check_file(path: str | Path, txnid: int | None = None) -> CheckReport:
    """Check data.mdb at `path`, at the snapshot of transaction `txnid` (the newer of the
    two meta pages if None). Pin that snapshot with an open read transaction while this
    runs: a writer may reuse the pages of any snapshot no reader holds."""
    return _mapped(path, txnid, _check_mapped)


def check_length(path: str | Path, txnid: int | None = None) -> CheckReport:
    """The part of `check_file` that every open can afford: whether the file holds every
    page its meta page counts, except pages listed free.

    LMDB counts pages a transaction took from the end of the file and freed again before
    it committed, yet never writes them ("loose" pages, put on the free list). So a
    sound file may end before its last page; only when a page past its end is not listed
    free is it cut short (a copy that stopped, a damaged disk), and would be read
    through the memory map past its end: a SIGBUS, a crash with no message. Only the
    free list is walked, and only when the file ends early. An empty file, one LMDB has
    yet to write, is left to LMDB's own open."""
    return _mapped(path, txnid, _check_length, empty_is_sound=True)


def _mapped(path: str | Path, txnid: int | None,
            check: Callable[[mmap.mmap, int, int | None, CheckReport], None],
            empty_is_sound: bool = False) -> CheckReport:
    report = CheckReport(path=str(path))
    with open(path, "rb") as file:
        size = file.seek(0, 2)
        if size == 0 and empty_is_sound:
            return report
        if size < 2 * 4096:
            report.problems.append(f"the file is {size} bytes, too short for LMDB's two meta pages")
            return report
        with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
            check(data, size, txnid, report)
    return report


def _check_length(data: mmap.mmap, size: int, txnid: int | None, report: CheckReport) -> None:
    chosen = _meta(data, size, txnid, report)
    if chosen is None:
        return
    page_size, last_page, record = chosen
    if (last_page + 1) * page_size <= size:
        return
    walker = _Walker(data, page_size, last_page, report, size // page_size)
    free = _tree("free list", record, _META.size)
    try:
        walker.walk_tree(free)
        walker.free_pages(free)
    except _Damaged as damage:
        walker.problem(str(damage))
        return
    except struct.error as error:
        walker.problem(f"free list: a page points outside the file ({error})")
        return
    walker.past_end_free()


def _meta(data: mmap.mmap, size: int, txnid: int | None,
          report: CheckReport) -> tuple[int, int, bytes] | None:
    """(page size, last page, a copy of the meta record) of the snapshot to check, or
    None with the problem in `report`."""
    page_size = 4096
    metas = []
    for index in range(2):
        start = index * page_size + PAGE_HEADER
        magic, version, _address, _map_size = _META.unpack_from(data, start)
        if index == 0 and magic == MAGIC:
            # the first meta page's free tree record holds the page size in its pad
            page_size = _DB.unpack_from(data, start + _META.size)[0] or page_size
        last_page, meta_txnid = _TAIL.unpack_from(data, index * page_size + PAGE_HEADER
                                                  + _META.size + 2 * _DB.size)
        metas.append((magic, version, meta_txnid, last_page, index * page_size + PAGE_HEADER))
    usable = [m for m in metas if m[0] == MAGIC and m[1] == DATA_VERSION]
    if not usable:
        report.problems.append("neither meta page is an LMDB 0.9 meta page")
        return None
    chosen = max(usable, key=lambda m: m[2]) if txnid is None else \
        next((m for m in usable if m[2] == txnid), None)
    if chosen is None:
        report.snapshot_gone = all(m[2] > txnid for m in usable)
        report.snapshot_missing = True
        report.problems.append(f"no meta page holds transaction {txnid}")
        return None
    _magic, _version, report.txnid, _last_page, meta_at = chosen
    if page_size not in {1 << bits for bits in range(9, 17)}:  # (LMDB's pages: 512 B to 64 KiB)
        report.problems.append(f"the meta page gives a page size of {page_size} bytes")
        return None
    # The meta page is copied, and the copy used: a reader's transaction pins its
    # snapshot's pages but not the meta page, which the commit after next rewrites. Read
    # from the file later, the trees' roots could be a newer snapshot's beside this one's
    # last page (a free list naming page 603 of 600, seen while `spamkit learn` ran).
    length = _META.size + 2 * _DB.size + _TAIL.size
    record = bytes(data[meta_at:meta_at + length])
    last_page, copied_txnid = _TAIL.unpack_from(record, length - _TAIL.size)
    if record != data[meta_at:meta_at + length] or copied_txnid != report.txnid:
        report.snapshot_gone = True  # rewritten while it was copied: look again
        report.problems.append(f"the meta page of transaction {report.txnid} was rewritten while it was read")
        return None
    report.page_size = page_size
    report.pages = last_page + 1
    return page_size, last_page, record


def _check_mapped(data: mmap.mmap, size: int, txnid: int | None, report: CheckReport) -> None:
    chosen = _meta(data, size, txnid, report)
    if chosen is None:
        return
    page_size, last_page, record = chosen
    walker = _Walker(data, page_size, last_page, report, size // page_size)
    free = _tree("free list", record, _META.size)
    main = _tree("main", record, _META.size + _DB.size)
    try:
        walker.walk_tree(free)
        walker.free_pages(free)
        named = walker.walk_tree(main)
    except _Damaged as damage:
        walker.problem(str(damage))
        return
    except struct.error as error:  # a read past the end of the map
        walker.problem(f"a page points outside the file ({error})")
        return
    for name, record in named:
        text = name.decode("utf-8", "replace")
        try:
            walker.walk_tree(_tree(text, record))
        except _Damaged as damage:
            walker.problem(str(damage))
        except struct.error as error:
            walker.problem(f"{text}: a page points outside the file ({error})")
    if not report.problems:
        walker.past_end_free()
    if not report.problems:  # (a leaked page wastes room and harms nothing: not damage)
        report.unused_pages = sum(1 for page in range(2, last_page + 1) if page not in walker.owner)
