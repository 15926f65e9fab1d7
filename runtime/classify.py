"""``python -m runtime.classify``: the command line that classifies reviews.

It lives in ``runtime.cli.classify``; this module keeps the documented command name and is
the ``imdb-classify`` entry point. Stop requests are taken before the command's imports: a
Ctrl-C that lands inside an import (where Python may swallow it) still stops the run, and
nothing is published after it (see ``runtime.exitcodes.StopRequests``).
"""

import sys

from runtime import exitcodes


def main(argv: list[str] | None = None) -> int:
    """``runtime.cli.classify.main``, imported when called."""
    from runtime.cli.classify import main as command

    exitcodes.check_stop()  # a stop the imports swallowed ends the run here, before any work
    return command(argv)


def entry() -> int:
    """The command's exit status (its stop handling included)."""
    return exitcodes.StopRequests().run(main, "nothing was written", "its output may be incomplete")


if __name__ == "__main__":
    sys.exit(entry())
