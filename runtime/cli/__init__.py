"""The command line: classify (the command), its record readers, output, bulk scoring and worker pools.

Nothing in the library imports this package; only the ``python -m`` entry points do.
"""
