"""SpamAssassin's ImageInfo evals (image_count, pixel_coverage, image_to_text_ratio, the
size and name tests), held against Debian's Mail::SpamAssassin on made-up messages whose
images are built here: sizes in every header layout the plugin reads, and the quirks it
has (a PNG whose first chunk is not IHDR, a JPEG cut short, parts it does not look at)."""

from __future__ import annotations

import base64
import struct
import zlib
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from spamkit.message import parse_message
from spamkit.message.images import IMAGE_KINDS, Image, image_part
from tests.scoring.test_sa_evals import _hits_agree, _message
from tests.scoring.test_spamassassin_rules import require_debian_rules

IMAGE_RULES = r"""
body     GIF_ONE        eval:image_count('gif','1','1')
body     GIF_TWO_UP     eval:image_count('gif','2')
body     PNG_ONE        eval:image_count('png',1,1)
body     JPEG_ANY       eval:image_count('jpeg','1')
body     ALL_THREE_UP   eval:image_count('all','3')
body     GIF_AREA_180K  eval:pixel_coverage('gif','180000','475000')
body     ALL_AREA_SMALL eval:pixel_coverage('all','1','10000')
body     LITTLE_TEXT    eval:image_to_text_ratio('all', '0.000', '0.008')
rawbody  LITTLE_RAW     eval:image_to_text_ratio('all', '0.000', '0.015')
body     SIZE_600_400   eval:image_size_exact('gif', '400', '600')
body     SIZE_JPEG      eval:image_size_exact('jpeg', '30', '50')
body     SIZE_RANGE     eval:image_size_range('all', 20, 20, 100, 100)
body     SIZE_WIDE      eval:image_size_range('png', 10, 300)
body     NAMED          eval:image_named('logo.png')
body     NAME_REGEX     eval:image_name_regex('^scan\d+\.jpe?g$')
meta     GIF_UNO_LARGO  GIF_ONE && GIF_AREA_180K
body     NO_GIF         eval:image_count('gif','0','0')
body     NO_BMP         eval:image_count('bmp','0')
body     NO_BMP_PIXELS  eval:pixel_coverage('bmp','0')
"""


def gif(width: int, height: int, version: bytes = b"89a") -> bytes:
    return b"GIF" + version + struct.pack("<HHBBB", width, height, 0xF7, 0, 0) + b"\x00" * 20 + b";"


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(width: int, height: int, before: bytes = b"") -> bytes:
    header = _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + before + header + _png_chunk(b"IDAT", b"x" * 30) + _png_chunk(b"IEND", b"")


def jpeg(width: int, height: int, frame: int = 0xC0) -> bytes:
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    table = b"\xff\xc4" + struct.pack(">H", 5) + b"\x00\x01\x02"  # DHT (C4): not a frame
    sof = bytes([0xFF, frame]) + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
    return b"\xff\xd8" + app0 + table + sof + b"\xff\xda\x00\x02" + b"\x00" * 10 + b"\xff\xd9"


def with_images(*parts: tuple[str, bytes, str], text: bytes = b"see the pictures\n",
                encoding: str = "base64") -> bytes:
    body = b"--M\nContent-Type: text/plain\n\n" + text
    for content_type, data, name in parts:
        encoded = base64.encodebytes(data) if encoding == "base64" else data.hex().encode() + b"\n"
        body += (f"--M\nContent-Type: {content_type}; name=\"{name}\"\nContent-Transfer-Encoding: {encoding}\n"
                 f"Content-Disposition: attachment; filename=\"{name}\"\n\n").encode() + encoded
    return _message(b"From: a@ok.example\nTo: b@ok.example\nMIME-Version: 1.0\n"
                    b"Content-Type: multipart/mixed; boundary=M\n", body + b"--M--\n")


IMAGE_MESSAGES = {
    "one large gif": with_images(("image/gif", gif(600, 400), "big.gif"), text=b"hi\n"),
    "two gifs": with_images(("image/gif", gif(600, 400), "a.gif"), ("image/gif", gif(10, 10, b"87a"), "b.gif")),
    "gif of another version": with_images(("image/gif", b"GIF90a" + gif(600, 400)[6:], "odd.gif")),
    "png, jpeg, jpg": with_images(("image/png", png(40, 30), "logo.png"), ("image/jpeg", jpeg(50, 30), "scan1.jpg"),
                                  ("image/jpg", jpeg(60, 60, frame=0xC2), "scan2.jpeg")),
    # the plugin steps eight bytes at a time past a chunk that is not IHDR: it finds the
    # IHDR after a chunk of 4 data bytes (16 in all), and misses it after one of 7
    "png with a chunk first": with_images(("image/png", png(320, 20, before=_png_chunk(b"tEXt", b"made up")),
                                           "wide.png")),
    "png with a 4-byte chunk first": with_images(("image/png", png(320, 20, before=_png_chunk(b"tEXt", b"made")),
                                                  "wide.png")),
    "jpeg cut short": with_images(("image/jpeg", jpeg(50, 30)[:30], "scan3.jpg")),
    "not base64": with_images(("image/gif", gif(600, 400), "hex.gif"), encoding="x-hex"),
    "bmp": with_images(("image/bmp", b"BM" + b"\x00" * 60, "x.bmp")),
    "lots of text": with_images(("image/gif", gif(20, 20), "small.gif"), text=b"words and words\n" * 40),
}


def test_image_rules_hit_as_in_spamassassin(tmp_path: Path) -> None:
    require_debian_rules()
    theirs = _hits_agree(tmp_path, IMAGE_RULES, IMAGE_MESSAGES)
    # the cases turn on what they say
    assert {"GIF_ONE", "GIF_AREA_180K", "GIF_UNO_LARGO", "SIZE_600_400", "LITTLE_TEXT"} <= theirs["one large gif"]
    assert "GIF_TWO_UP" in theirs["two gifs"] and "GIF_ONE" not in theirs["two gifs"]
    assert theirs["gif of another version"] & {"GIF_ONE", "GIF_AREA_180K"} == {"GIF_ONE"}  # counted, no size
    assert {"PNG_ONE", "JPEG_ANY", "ALL_THREE_UP", "SIZE_JPEG", "SIZE_RANGE", "NAMED", "NAME_REGEX",
            "ALL_AREA_SMALL"} <= theirs["png, jpeg, jpg"]
    assert "PNG_ONE" in theirs["png with a chunk first"] and "SIZE_WIDE" not in theirs["png with a chunk first"]
    assert {"PNG_ONE", "SIZE_WIDE"} <= theirs["png with a 4-byte chunk first"]
    assert theirs["jpeg cut short"] & {"JPEG_ANY", "NAME_REGEX"} == {"JPEG_ANY"}  # no size: no name either
    # a kind the plugin keeps no count of is no count of 0
    assert theirs["not base64"] == theirs["bmp"] == {"NO_GIF"}
    assert "LITTLE_TEXT" not in theirs["lots of text"]


def test_image_sizes_are_read_as_the_plugin_reads_them() -> None:
    raw = IMAGE_MESSAGES["png, jpeg, jpg"]
    images = [part.image for part in parse_message(raw).parts if part.image is not None]
    assert images == [Image("png", 30, 40, "logo.png"), Image("jpeg", 30, 50, "scan1.jpg"),
                      Image("jpeg", 60, 60, "scan2.jpeg")]
    assert [p.image for p in parse_message(IMAGE_MESSAGES["jpeg cut short"]).parts if p.image] == [
        Image("jpeg", 0, 0, "scan3.jpg")]


@given(st.sampled_from(sorted(IMAGE_KINDS)), st.binary(max_size=300),
       st.sampled_from([b"", b"GIF89a", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xc0"]))
def test_any_bytes_in_an_image_part_read_without_error(content_type: str, data: bytes, start: bytes) -> None:
    part = image_part(content_type, "base64", base64.encodebytes(start + data), "x")
    assert part is not None
    image = part.image
    assert image.height >= 0 and image.width >= 0
    assert (image.height == 0) == (image.width == 0)
