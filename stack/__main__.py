"""`python -m stack up | down | status`: the local stack (stack/local.py)."""

import sys

from stack.local import main

sys.exit(main(sys.argv[1:]))
