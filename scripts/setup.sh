# Sourced by main.sh and test.sh: the corpus default and a virtual environment in .venv
# with the given extra installed (editable, so the checkout is what runs).
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ -z "${IMDB_DATA:-}" ] && [ -f ../shared/data/aclImdb_v1.tar.gz ]; then
  export IMDB_DATA=../shared/data/aclImdb_v1.tar.gz
fi
export TF_CPP_MIN_LOG_LEVEL=2
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[$1]"
