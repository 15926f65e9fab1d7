"""``python -m runtime.parity``: the release check that every artifact of a bundle agrees.

It lives in ``runtime.checks.parity``; this module keeps the documented command name. Stop
requests are taken before the command's imports (see ``runtime.classify``).
"""

import sys

from runtime import exitcodes


def main(argv: list[str] | None = None) -> int:
    """``runtime.checks.parity.main``, imported when called."""
    from runtime.checks.parity import main as command

    exitcodes.check_stop()  # a stop the imports swallowed ends the run here, before any work
    return command(argv)


if __name__ == "__main__":
    sys.exit(exitcodes.StopRequests().run(main, "no report was written"))
