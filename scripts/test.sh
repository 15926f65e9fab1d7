#!/usr/bin/env bash
# Set up a virtual environment with the training stack and pytest, then run the whole suite.
# Data-dependent tests read $IMDB_DATA (default: ../shared/data/aclImdb_v1.tar.gz if present).
set -euo pipefail
source "$(dirname "$0")/setup.sh" dev
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
