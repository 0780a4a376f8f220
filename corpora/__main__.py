"""`python -m corpora split DEST`: write the standard split of the shared corpus as files."""

from __future__ import annotations

import sys
from pathlib import Path

from corpora.spamassassin import SpamAssassinCorpus


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "split":
        print("usage: python -m corpora split DEST", file=sys.stderr)
        return 2
    counts = SpamAssassinCorpus().write_split(Path(argv[1]))
    for part, count in sorted(counts.items()):
        print(f"{argv[1]}/{part}: {count} messages")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
