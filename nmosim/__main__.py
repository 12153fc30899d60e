"""``python -m nmosim``: the same as the ``nmosim`` command."""

import sys

from nmosim.cli import main

sys.exit(main())
