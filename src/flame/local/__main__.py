"""``python -m flame.local``: the same as ``flame local``."""

from __future__ import annotations

import sys

from .._cli import main as flame


def main(argv: list[str] | None = None) -> int:
    return flame(["local", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
