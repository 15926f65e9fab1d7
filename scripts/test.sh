#!/usr/bin/env bash
# Set up a virtual environment with the training stack and pytest, then run the whole suite.
# Data-dependent tests read $IMDB_DATA (default: ../shared/data/aclImdb_v1.tar.gz if present).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${IMDB_DATA:-}" ] && [ -f ../shared/data/aclImdb_v1.tar.gz ]; then
  export IMDB_DATA=../shared/data/aclImdb_v1.tar.gz
fi
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[dev]"
export TF_CPP_MIN_LOG_LEVEL=2
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
