#!/usr/bin/env bash
# The main job on a fresh machine: set up a virtual environment, train the shipped model
# (ngram; RECIPE=seed-mlp or RECIPE=seed-lstm trains a textbook reference instead), export
# and validate every artifact, record which engine versions load them, benchmark them (quick
# mode, with the scikit-learn, fastText and NB-LR peers trained on the same split) and classify the
# sample reviews. Outputs go to $OUT (default: out/).
#
# The corpus comes from $IMDB_DATA (an aclImdb .tar.gz or extracted folder); if it is not
# set, ../shared/data/aclImdb_v1.tar.gz is used when present, else the official archive is
# downloaded once into ~/.cache/imdb-edge.
set -euo pipefail
source "$(dirname "$0")/setup.sh" train,ray
OUT=${OUT:-out}
RECIPE=${RECIPE:-ngram}
.venv/bin/python -m train --recipe "$RECIPE" --out "$OUT/model"
.venv/bin/python -m export "$OUT/model" --out "$OUT/bundle"
.venv/bin/python -m export.compat "$OUT/bundle"
.venv/bin/python -m benchmarks --bundle "$OUT/bundle" --model-dir "$OUT/model" --out "$OUT/benchmark" --quick --peers
.venv/bin/python -m runtime.classify --model "$OUT/bundle" samples/*.txt
.venv/bin/python -m runtime.classify --model "$OUT/bundle" --explain 5 samples/mixed.txt
