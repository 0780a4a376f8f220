"""SpamAssassin's ImageInfo evals: how many GIF, PNG and JPEG parts a message has, how
many pixels they cover, their sizes and names, and how much text there is per pixel.
The sizes come from the parser (spamkit.message.images).

A kind is "gif", "png", "jpeg" or "all"; any other kind counts nothing, as there.
Bounds are inclusive, as the plugin's result_check: `image_count('gif', 1, 1)` is one
GIF, and a missing upper bound is none. The text ratio alone excludes its upper bound.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from spamkit.rules.perl_regex import compile_bare, compiles_bare

if TYPE_CHECKING:
    from spamkit.rules.context import MessageContext

_NUMBER = re.compile(r"^\s*[-+]?(?:\d+\.?\d*|\.\d+)\s*$")
_KINDS = frozenset({"gif", "png", "jpeg", "all"})  # (the plugin keeps no count of any other)


@dataclass
class _Images:
    """A message's image parts, totalled by kind and over all ("all")."""

    counts: Counter[str] = field(default_factory=Counter)
    pixels: Counter[str] = field(default_factory=Counter)
    sizes: dict[str, set[tuple[int, int]]] = field(default_factory=dict)  # (height, width)
    names: set[str] = field(default_factory=set)  # of the images whose size was read


def _images(context: MessageContext) -> _Images:
    found = context.cache.get("imageinfo")
    if isinstance(found, _Images):
        return found
    images = _Images()
    for part in context.message.parts:
        image = part.image
        if image is None:
            continue
        for kind in (image.kind, "all"):
            images.counts[kind] += 1
            if image.area:
                images.pixels[kind] += image.area
                images.sizes.setdefault(kind, set()).add((image.height, image.width))
        if image.area and image.name:
            images.names.add(image.name)
    context.cache["imageinfo"] = images
    return images


def _within(value: float, low: str, high: str | None, high_excluded: bool = False) -> bool:
    if value < float(low):
        return False
    if high is None:
        return True
    return value < float(high) if high_excluded else value <= float(high)


def image_count(context: MessageContext, kind: str, low: str, high: str | None = None) -> bool:
    """Image parts of a kind, their sizes read or not, within [low, high]."""
    return kind in _KINDS and _within(_images(context).counts[kind], low, high)


def pixel_coverage(context: MessageContext, kind: str, low: str, high: str | None = None) -> bool:
    """Pixels the images of a kind cover together, within [low, high]."""
    return kind in _KINDS and _within(_images(context).pixels[kind], low, high)


def image_to_text_ratio(context: MessageContext, text_kind: str, kind: str, low: str, high: str) -> bool:
    """Characters of the rule's own text (body or rawbody, as bytes) per pixel of the
    images of a kind, within [low, high); no text or no pixels: no hit."""
    pixels = _images(context).pixels[kind]
    length = sum(len(text) for text in context.texts(f"{text_kind}:bytes"))
    return bool(pixels and length) and _within(length / pixels, low, high, high_excluded=True)


def image_size_exact(context: MessageContext, kind: str, height: str, width: str) -> bool:
    """An image of a kind exactly `height` by `width` pixels."""
    return (int(height), int(width)) in _images(context).sizes.get(kind, set())


def image_size_range(context: MessageContext, kind: str, min_height: str, min_width: str,
                     max_height: str | None = None, max_width: str | None = None) -> bool:
    """An image of a kind at least min_height by min_width, and at most the maxima given."""
    for height, width in _images(context).sizes.get(kind, ()):
        if height < float(min_height) or width < float(min_width):
            continue
        if (max_height is not None and height > float(max_height)) or \
                (max_width is not None and width > float(max_width)):
            continue
        return True
    return False


def image_named(context: MessageContext, name: str) -> bool:
    """An image (whose size was read) with this file name."""
    return name in _images(context).names


def image_name_regex(context: MessageContext, pattern: str) -> bool:
    """An image (whose size was read) with a file name the Perl regex matches."""
    compiled = compile_bare(pattern)
    return any(compiled.search(name) is not None for name in _images(context).names)


def _numbers(*args: str) -> bool:
    return all(_NUMBER.match(arg) is not None for arg in args)


image_count.accepts = pixel_coverage.accepts = lambda args: (  # type: ignore[attr-defined]
    len(args) in (2, 3) and _numbers(*args[1:]))
image_to_text_ratio.accepts = lambda args: len(args) == 3 and _numbers(*args[1:])  # type: ignore[attr-defined]
# the rule's kind comes first: the eval measures the text its rule reads (body or rawbody)
image_to_text_ratio.reads_rule_kind = True  # type: ignore[attr-defined]
image_size_exact.accepts = lambda args: (  # type: ignore[attr-defined]
    len(args) == 3 and all(arg.strip().isdigit() for arg in args[1:]))
image_size_range.accepts = lambda args: 3 <= len(args) <= 5 and _numbers(*args[1:])  # type: ignore[attr-defined]
image_named.accepts = lambda args: len(args) == 1  # type: ignore[attr-defined]
image_name_regex.accepts = lambda args: len(args) == 1 and compiles_bare(args[0])  # type: ignore[attr-defined]

EVALS: dict[str, Callable[..., bool]] = {
    "image_count": image_count,
    "pixel_coverage": pixel_coverage,
    "image_to_text_ratio": image_to_text_ratio,
    "image_size_exact": image_size_exact,
    "image_size_range": image_size_range,
    "image_named": image_named,
    "image_name_regex": image_name_regex,
}
