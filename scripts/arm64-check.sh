#!/usr/bin/env bash
# Run a bundle (default: the shipped one) on emulated arm64 Debian 12 and 13 (Raspberry Pi OS
# Bookworm and Trixie, Pi 4 and Pi 5 CPUs) with every engine version that has aarch64 wheels,
# compare every answer bit for bit with this machine's, and record the rows in its manifest.
# x86_64 Linux, as root (debootstrap); downloads about 600 MB once into ~/.cache/imdb-edge/arm64.
# Exit status: 0 all bit-identical; 3 some result differs (printed); 1 the environment failed.
set -euo pipefail
source "$(dirname "$0")/setup.sh" train
if ! command -v debootstrap >/dev/null; then
  apt-get install -y -q debootstrap >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q debootstrap >/dev/null; }
fi
.venv/bin/python -m export.compat "${1:-runtime/default_bundle}" --arm64
