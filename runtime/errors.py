"""The base of every error the runtime raises on its own account.

``except runtime.Error`` catches a bad bundle, a missing or failing engine, an unusable
input file, a failed worker, and the like, without catching a programming error. Each such
class also keeps its historical base (``RuntimeError``, ``ValueError``) where it had one, so
existing ``except`` clauses still catch it. A wrong argument to an API call is not one of
these: it stays a plain ``TypeError`` or ``ValueError``.
"""


class Error(Exception):
    """An error of the runtime itself (bundle, engine, input, worker...), not of the caller's arguments."""
