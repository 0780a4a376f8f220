"""The size of a GIF, PNG or JPEG image part, read as SpamAssassin's ImageInfo plugin reads
it, for the image rules Debian's rule files hold (20_imageinfo.cf: DC_GIF_UNO_LARGO and
the other image-spam tests; __HTML_IMG_ONLY, which T_REMOTE_IMAGE and HDRS_LCASE_IMGONLY
read, is defined there too).

The plugin looks only at base64 parts of type image/gif, image/png, image/jpeg or
image/jpg, and reads only the header that names the size: a GIF's logical screen, a
PNG's IHDR chunk, a JPEG's start-of-frame segment. Its quirks are kept, since its rules'
scores were fitted with them: it walks a PNG whose first chunk is not IHDR eight bytes at
a time, and it gives up on a JPEG at the first byte that is not a marker.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from spamkit.message.decode import decode_base64

IMAGE_KINDS = {"image/gif": "gif", "image/png": "png", "image/jpeg": "jpeg", "image/jpg": "jpeg"}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers: every SOFn but DHT (C4), JPG (C8) and DAC (CC)
_JPEG_FRAMES = frozenset({*range(0xC0, 0xC4), *range(0xC5, 0xC8), *range(0xC9, 0xCC), *range(0xCD, 0xD0)})
_JPEG_END_OF_HEADERS = (0xDA, 0xD9)  # start of scan, end of image


@dataclass(frozen=True)
class Image:
    """One image part: its kind, and its size in pixels (0 when its header could not be
    read: the part still counts as an image of its kind, as in SpamAssassin)."""

    kind: str  # "gif", "png" or "jpeg"
    height: int
    width: int
    name: str = ""  # the part's file name

    @property
    def area(self) -> int:
        return self.height * self.width


@dataclass(frozen=True)
class ImagePart:
    """A part ImageInfo looks at, as sent. Its size is read the first time a rule asks
    (`image`): only SpamAssassin's image rules do, and decoding a 350 kB photo to find it
    more than doubled the parse of its message for Bayes and the built-in rules."""

    kind: str
    name: str
    encoded: bytes = field(repr=False)

    @cached_property
    def image(self) -> Image:
        data = decode_base64(self.encoded, set())
        kind = self.kind
        height, width = _gif_size(data) if kind == "gif" else _png_size(data) if kind == "png" else _jpeg_size(data)
        if not (height and width):
            height = width = 0
        return Image(kind, height, width, self.name)


def image_part(content_type: str, encoding: str, body: bytes, name: str) -> ImagePart | None:
    """The part ImageInfo would read (a base64 GIF, PNG or JPEG), or None."""
    kind = IMAGE_KINDS.get(content_type)
    if kind is None or encoding != "base64":
        return None
    return ImagePart(kind, name, body)


def _gif_size(data: bytes) -> tuple[int, int]:
    """(height, width) from a GIF87a/GIF89a logical screen descriptor (little-endian)."""
    if not data.startswith((b"GIF87a", b"GIF89a")) or len(data) < 10:
        return 0, 0
    return int.from_bytes(data[8:10], "little"), int.from_bytes(data[6:8], "little")


def _png_size(data: bytes) -> tuple[int, int]:
    """(height, width) from the IHDR chunk. The walk moves eight bytes (a chunk's length
    and type) at a time past any chunk that is not a 13-byte IHDR, as the plugin's does."""
    if not data.startswith(_PNG_SIGNATURE):
        return 0, 0
    position = 8
    while position < len(data):
        head = data[position:position + 8]
        position += 8
        if len(head) < 8:
            break  # (the plugin's unpack reads no type from a short head: the loop ends)
        length, kind = int.from_bytes(head[:4], "big"), head[4:]
        if kind == b"IEND":
            break
        if kind != b"IHDR" or length != 13:
            continue
        fields = data[position:position + 17][:-4]  # the chunk without its CRC
        if len(fields) < 8:
            return 0, 0
        return int.from_bytes(fields[4:8], "big"), int.from_bytes(fields[:4], "big")
    return 0, 0


def _jpeg_size(data: bytes) -> tuple[int, int]:
    """(height, width) from the first start-of-frame segment, reached by stepping over
    the segments before it; a byte that is not a marker, the start of the scan or a
    length under 2 ends the search."""
    if not data.startswith(b"\xff\xd8"):
        return 0, 0
    position = 2
    while True:
        head = data[position:position + 4]
        if len(head) < 4 or head[0] != 0xFF or head[1] in _JPEG_END_OF_HEADERS:
            return 0, 0
        length = int.from_bytes(head[2:4], "big")
        if length < 2:
            return 0, 0
        position += 4
        segment = data[position:position + length - 2]
        if head[1] in _JPEG_FRAMES:
            if len(segment) < 5:
                return 0, 0
            return int.from_bytes(segment[1:3], "big"), int.from_bytes(segment[3:5], "big")
        position += len(segment)
