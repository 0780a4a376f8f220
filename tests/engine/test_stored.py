"""spamkit.stored: a message file as Dovecot may store it. Compressed files are read whole
or not at all: a damaged or cut short one, or one that would grow past the limit, is
refused with its reason; a plain message is returned as it is, whatever its first bytes;
any bytes at all give bytes or UnreadableStored, nothing else. (Dovecot itself writes
the files of tests/trainer/test_compressed_maildir.py.)"""

from __future__ import annotations

import bz2
import gzip
import lzma
import struct
import sys
from pathlib import Path

import lz4.block
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spamkit.sources import iter_messages
from spamkit.stored import DOVECOT_LZ4, MAIL_CRYPT, UnreadableStored, stored_message

MESSAGE = b"From: a@example.com\nSubject: hello\n\n" + b"words of a message\n" * 200
LIMIT = 100_000


def _zstd(data: bytes) -> bytes:
    if sys.version_info >= (3, 14):
        from compression.zstd import compress
    else:
        from backports.zstd import compress
    return compress(data)


def _dovecot_lz4(data: bytes, chunk: int = 65536) -> bytes:
    """Dovecot's framing, as its lz4 ostream writes it."""
    out = [DOVECOT_LZ4, struct.pack(">I", chunk)]
    for start in range(0, len(data), chunk):
        block = lz4.block.compress(data[start:start + chunk], store_size=False)
        out += [struct.pack(">I", len(block)), block]
    return b"".join(out)


COMPRESSORS = {"gzip": gzip.compress, "bzip2": bz2.compress, "xz": lzma.compress,
               "zstd": _zstd, "Dovecot's LZ4": _dovecot_lz4}


@pytest.mark.parametrize("kind", COMPRESSORS)
def test_each_kind_gives_back_the_message(kind: str) -> None:
    assert stored_message(COMPRESSORS[kind](MESSAGE), LIMIT) == MESSAGE
    assert stored_message(COMPRESSORS[kind](b""), LIMIT) == b""


@pytest.mark.parametrize("kind", COMPRESSORS)
def test_cut_short_or_damaged_is_refused_with_why(kind: str) -> None:
    whole = COMPRESSORS[kind](MESSAGE)
    with pytest.raises(UnreadableStored, match=rf"^compressed \({kind}\) but (cut short|damaged)"):
        stored_message(whole[:len(whole) // 2], LIMIT)
    damaged = whole[:20] + bytes(b ^ 0x5A for b in whole[20:])
    with pytest.raises(UnreadableStored, match=rf"^compressed \({kind}\) but (cut short|damaged)"):
        stored_message(damaged, LIMIT)


@pytest.mark.parametrize("kind", COMPRESSORS)
def test_a_bomb_stops_at_the_limit(kind: str) -> None:
    bomb = COMPRESSORS[kind](b"\0" * 20_000_000)
    assert len(bomb) < 1_000_000
    with pytest.raises(UnreadableStored, match=rf"^larger than {LIMIT} bytes once uncompressed \({kind}\)$"):
        stored_message(bomb, LIMIT)
    assert stored_message(COMPRESSORS[kind](b"\0" * LIMIT), LIMIT) == b"\0" * LIMIT  # the limit itself passes


def test_an_encrypted_file_is_refused() -> None:
    with pytest.raises(UnreadableStored, match="mail_crypt plugin: it can be read only through Dovecot"):
        stored_message(MAIL_CRYPT + b"\x02\x00\x00\x00" + b"\xaa" * 100, LIMIT)


@pytest.mark.parametrize("data", [b"BZh9: a header that looks like bzip2\n\nbody\n", b"Dovecot-LZ4: no\n\n",
                                  b"CRYPTED: no\n\n", b"\x1f\x8b", b"", b"(\xb5/", MESSAGE])
def test_plain_messages_are_returned_as_they_are(data: bytes) -> None:
    assert stored_message(data, LIMIT) is data


@settings(max_examples=400, deadline=None)
@given(prefix=st.sampled_from([b"\x1f\x8b\x08", b"BZh91AY&SY", b"\xfd7zXZ\x00", b"\x28\xb5\x2f\xfd",
                               DOVECOT_LZ4, DOVECOT_LZ4 + b"\0\1\0\0", MAIL_CRYPT, b""]),
       rest=st.binary(max_size=2000))
def test_any_bytes_give_bytes_or_a_reason(prefix: bytes, rest: bytes) -> None:
    try:
        assert isinstance(stored_message(prefix + rest, LIMIT), bytes)
    except UnreadableStored as error:
        assert str(error)


def test_spamkit_reads_a_compressed_file_it_is_given(tmp_path: Path) -> None:
    """`spamkit learn` and `check` on a Maildir's files: the message, or the reason."""
    (tmp_path / "1.gz").write_bytes(gzip.compress(MESSAGE))
    (tmp_path / "2.cut").write_bytes(gzip.compress(MESSAGE)[:50])
    items = sorted(iter_messages([str(tmp_path)]), key=lambda item: item.name)
    assert [(item.data, item.error) for item in items] == [(MESSAGE, None),
                                                          (None, "compressed (gzip) but cut short")]
