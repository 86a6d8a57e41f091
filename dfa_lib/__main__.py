"""Run the ``dfa`` command line as ``python -m dfa_lib``."""

import sys

from dfa_lib.cli import main

sys.exit(main())
