#!/usr/bin/env bash
# Builds vramzip with CUDA into a build dir and copies the shared libraries
# its binaries need (other than the C library and the CUDA driver) into
# <dir>/lib, so the dir can be carried to a GPU machine that lacks them.
# Usage: scripts/gpu_pack.sh [build-dir]    (default build-gpu)
# On the GPU machine: LD_LIBRARY_PATH=<dir>/lib <dir>/tests/test_cuda
# libcublas is never copied (100+ MB): gemm.cu dlopens the device machine's own.
set -euo pipefail
B=${1:-build-gpu}
make -j2 BUILD="$B" CUDA=1 all
mkdir -p "$B/lib"
for f in "$B"/vramzip "$B"/tests/test_* "$B"/bench/* ; do
    [ -x "$f" ] && [ -f "$f" ] && ldd "$f" 2>/dev/null || true
done | awk '/=>/ {print $3}' | sort -u |
    grep -vE '/(libc|libm|libpthread|libdl|librt|ld-linux[^/]*|libcuda|libstdc\+\+|libgcc_s|libcublas[A-Za-z]*)\.so' |
    while read -r so; do cp -L "$so" "$B/lib/"; done
# the shared test models travel in an ignored folder (never committed)
if [ -d ../shared/models/stories260K ]; then
    mkdir -p .carry/models
    cp -r ../shared/models/stories260K ../shared/models/llama2-tokenizer .carry/models/ 2>/dev/null || true
fi
du -sh "$B/vramzip" "$B/tests" "$B/lib" 2>/dev/null
