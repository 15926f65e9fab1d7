"""``python -m runtime.parity``: the release check that every artifact of a bundle agrees.

It lives in ``runtime.checks.parity``; this module keeps the documented command name.
"""

import sys

from runtime.checks.parity import main

if __name__ == "__main__":
    sys.exit(main())
