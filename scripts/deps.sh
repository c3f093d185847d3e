#!/usr/bin/env bash
# Installs the Debian packages vramzip needs to build and test, if missing.
set -euo pipefail
pkgs=(build-essential pkg-config libcjson-dev libzstd-dev libxxhash-dev libpcre2-dev libutf8proc-dev libcmocka-dev sentencepiece
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
# Test oracle only (tests/test_tokenizer_json.c compares the tokenizer.json
# encoder with it live; it skips without it): Hugging Face tokenizers, from PyPI.
if command -v python3 >/dev/null 2>&1 && ! python3 -c 'import tokenizers' >/dev/null 2>&1; then
    python3 -m pip install --quiet --disable-pip-version-check tokenizers >/dev/null 2>&1 ||
        echo "note: pip could not install tokenizers; its live tokenizer test will skip"
fi
# Test oracle only (tests/test_chat.c compares the mistral-v3 / v7 chat ids with
# it; it skips without it): mistral-common, Mistral's reference encoder, from PyPI.
if command -v python3 >/dev/null 2>&1 && ! python3 -c 'import mistral_common, sentencepiece' >/dev/null 2>&1; then
    python3 -m pip install --quiet --disable-pip-version-check 'mistral_common[sentencepiece]' >/dev/null 2>&1 ||
        echo "note: pip could not install mistral_common; its chat test will skip"
fi
