"""``python -m dryml.cli``: the same as the ``dryml`` console script."""

from __future__ import annotations

import sys

from dryml.cli import main

sys.exit(main())
