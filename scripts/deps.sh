#!/usr/bin/env bash
# Installs the Debian packages vramzip needs to build and test, if missing.
set -euo pipefail
pkgs=(build-essential pkg-config libcjson-dev libzstd-dev libxxhash-dev libcmocka-dev sentencepiece
      clang libclang-rt-14-dev)
missing=()
for p in "${pkgs[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi
