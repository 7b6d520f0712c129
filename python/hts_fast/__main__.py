"""``python -m hts_fast``: the ``hts-fast`` command (hts_fast.cli); without arguments it
analyzes the bundled demo weights."""

from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
