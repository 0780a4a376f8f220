"""`python -m corpora split DEST`: write the standard split of the shared corpus as files."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from corpora.spamassassin import SpamAssassinCorpus


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m corpora",
        description="Write the standard split of the SpamAssassin corpus (train = folds 1-4, "
                    "test = fold 0) as message files under DEST/{train,test}/{spam,ham}.")
    commands = parser.add_subparsers(dest="command", required=True)
    split = commands.add_parser("split", help="write the standard split as files")
    split.add_argument("dest", type=Path, metavar="DEST")
    args = parser.parse_args(argv)
    counts = SpamAssassinCorpus().write_split(args.dest)
    for part, count in sorted(counts.items()):
        print(f"{args.dest}/{part}: {count} messages")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
