#!/usr/bin/env bash
# The README's first command: installs missing Debian packages, builds, makes
# a small synthetic model (embedded default: no downloads), compresses it
# losslessly and generates from the compressed file.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
make -j"$(nproc)"
mkdir -p models
[ -d models/small ] || ./build/vramzip synth --shape small --dtype bf16 -o models/small
[ -f models/small-lossless.vz ] || ./build/vramzip convert models/small -o models/small-lossless.vz --codec lossless
./build/vramzip inspect models/small-lossless.vz | tail -n 3
./build/vramzip run -m models/small-lossless.vz -p "Once upon a time" -n 32 --temp 0
