"""``python -m pistond`` runs the daemon, as the ``pistond`` console script does."""

from __future__ import annotations

import sys

from pistond.cli.pistond import main

sys.exit(main())
