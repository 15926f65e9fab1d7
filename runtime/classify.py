"""``python -m runtime.classify``: the command line that classifies reviews.

It lives in ``runtime.cli.classify``; this module keeps the documented command name.
"""

import sys

from runtime.cli.classify import main

if __name__ == "__main__":
    sys.exit(main())
