"""``python -m ipy_responses_ws demo|lab|serve``: the same as ``python -m ipy_responses_ws.cli``."""

import sys

from .cli import main

sys.exit(main())
