"""``python -m flame``: the ``flame`` command line, where its script is not on PATH."""

import sys

from ._cli import main

sys.exit(main())
