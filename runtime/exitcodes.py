"""Exit statuses shared by every command of the project, and its argument parser.

======  =================================================================================
status  meaning
======  =================================================================================
0       success
1       internal error (a bug, or an outside tool such as pip failed: see the message)
2       some inputs could not be used; the others were processed (``runtime.classify``)
3       a check failed: parity found a mismatch, or the export gate refused an artifact
4       cannot start: the bundle, model directory, corpus or engine is missing, malformed
        or unusable; nothing was done
64      usage error: the command line is wrong
130     interrupted (Ctrl-C); nothing half-written is left behind
======  =================================================================================
"""

from __future__ import annotations

import argparse

OK, INTERNAL, INPUT, CHECK_FAILED, UNUSABLE, USAGE, INTERRUPTED = 0, 1, 2, 3, 4, 64, 130


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        self.print_usage()
        self.exit(USAGE, f"{self.prog}: error: {message}\n")


def parser(prog: str, doc: str) -> argparse.ArgumentParser:
    """An argument parser whose description is ``doc``'s first paragraph and whose epilog is
    the rest; a usage error exits with ``USAGE``."""
    head, _, rest = doc.strip().partition("\n\n")
    return _Parser(prog=prog, description=head, epilog=rest or None,
                   formatter_class=argparse.RawDescriptionHelpFormatter)
