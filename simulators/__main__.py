"""``python -m simulators``: the same as ``megara-dark simulate``."""

import sys

from simulators.launcher import main

sys.exit(main())
