"""Damage to an LMDB file of spamkit's, one field at a time, as a bad sector might do it:
the engine's and the command line's tests of the file check share it."""

from __future__ import annotations

import struct
from pathlib import Path

import lmdb


def _tree_root(path: Path, name: bytes) -> tuple[int, int]:
    """(root page, depth) of a named tree, as its record in LMDB's main tree says."""
    env = lmdb.open(str(path), max_dbs=8, readonly=True)
    with env.begin() as txn:
        record = txn.get(name)
    env.close()
    _pad, _flags, depth, *_counts, root = struct.unpack("<IHHQQQQQ", record)
    return root, depth


def _first_node(data: bytes, page: int) -> int:
    """The file offset of the first node of a branch or leaf page."""
    return page * 4096 + struct.unpack_from("<H", data, page * 4096 + 16)[0]


def _first_leaf(data: bytes, root: int, depth: int) -> int:
    """The leftmost leaf page of a tree, down its first child links."""
    page = root
    for _level in range(depth - 1):
        low, high, top = struct.unpack_from("<HHH", data, _first_node(data, page))
        page = low | high << 16 | top << 32
    return page


def _overflow_page(data: bytes, leaf: int) -> int:
    """The first overflow page of the first value too large for a leaf page `leaf`."""
    lower = struct.unpack_from("<H", data, leaf * 4096 + 12)[0]
    for index in range((lower - 16) // 2):
        node = leaf * 4096 + struct.unpack_from("<H", data, leaf * 4096 + 16 + 2 * index)[0]
        _low, _high, flags, key_size = struct.unpack_from("<HHHH", data, node)
        if flags & 0x01:
            return struct.unpack_from("<Q", data, node + 8 + key_size)[0]
    raise AssertionError("no value on an overflow page")


DAMAGES = ["page number", "page type", "free space bounds", "node offset", "child link",
           "overflow page header", "leaf record size"]


def damage(path: Path, kind: str) -> None:
    """Write over one field LMDB trusts, in a page in use, as a bad sector might."""
    root, depth = _tree_root(path, b"tokens")
    assert depth >= 2  # (the root is a branch page, its first node a child link)
    data = (path / "data.mdb").read_bytes()
    at, value = {
        "page number": (root * 4096, struct.pack("<Q", 0x5A5A5A5A5A5A)),
        "page type": (root * 4096 + 10, struct.pack("<H", 0x02)),  # a branch marked a leaf
        "free space bounds": (root * 4096 + 12, struct.pack("<HH", 4000, 100)),
        "node offset": (root * 4096 + 16, struct.pack("<H", 4095)),
        "child link": (_first_node(data, root), struct.pack("<HHH", 0xFFFF, 0xFFFF, 0x0FFF)),
        "overflow page header": (_overflow_page(data, _first_leaf(data, *_tree_root(path, b"meta")))
                                 * 4096, struct.pack("<Q", 3)),
        "leaf record size": (_first_node(data, _first_leaf(data, *_tree_root(path, b"seen"))),
                             struct.pack("<HH", 0xFFF0, 0x7FFF)),
    }[kind]
    with open(path / "data.mdb", "r+b") as file:
        file.seek(at)
        file.write(value)
