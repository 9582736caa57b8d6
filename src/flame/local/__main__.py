"""``python -m flame.local``: the same as ``flame local``."""

from __future__ import annotations

import argparse
import sys

from . import _command


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="flame local", description="run an embedded Flame cluster on this machine"
    )
    _command.configure(parser)
    return _command.run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
