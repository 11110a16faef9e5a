"""``python -m qponder.cli``: the ``qponder`` command (as ``accelerate launch -m qponder.cli``
runs it)."""

import sys

from qponder.cli import main

sys.exit(main())
