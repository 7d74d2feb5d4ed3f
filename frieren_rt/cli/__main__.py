"""``python -m frieren_rt.cli``: the same as the ``frieren-rt`` console script."""

import sys

from frieren_rt.cli import main

sys.exit(main())
