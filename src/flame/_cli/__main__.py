"""``python -m flame._cli``: the ``flame`` command."""

import sys

from . import main

sys.exit(main())
