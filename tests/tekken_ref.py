#!/usr/bin/env python3
"""Mistral's Tekken tokenizers (Mistral-Nemo, Pixtral, Mistral-Small 3) for
tests/test_tokenizer_json.c, from the tekken JSON files that mistral-common
(Mistral's reference encoder, from PyPI: mistral_common) ships.

usage: tekken_ref.py --have                  exits 0 when mistral-common ships both tekken files
       tekken_ref.py --json VERSION OUT.json   writes the vocabulary as a Hugging Face tokenizer.json,
                                               converted as transformers does it (below)
       tekken_ref.py VERSION TEXT.txt          prints mistral-common's ids of the file's text
                                               (BOS first, no EOS), space-separated
       tekken_ref.py VERSION TEXTS.json        the same for each string of a JSON array, as a JSON
                                               array of id arrays
VERSION: 240718 (Mistral-Nemo-2407) or 240911 (Pixtral-12B-2409, Mistral-Small-3).

The conversion follows transformers' convert_tekken_tokenizer and
TikTokenConverter: ids 0 .. n_special - 1 are the special tokens, rank r is
id n_special + r (the first default_vocab_size - n_special ranks); a token
of two or more bytes gets a merge for each split into two tokens, in the
order of its rank, then of the parts' ranks; the pre-tokenizer is the
file's pattern (Split, isolated) then ByteLevel without its regex. So
mistral-common's ids are what a tokenizer.json of that vocabulary must
give, and the Hugging Face Mistral-Nemo repository ships such a file.
"""
import base64
import json
import os
import sys

import mistral_common
from mistral_common.tokens.tokenizers.tekken import Tekkenizer


def path(version):
    return os.path.join(os.path.dirname(mistral_common.__file__), "data", "tekken_%s.json" % version)


def bytes_to_unicode():
    """GPT-2's byte to printable character map (the ByteLevel alphabet)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1))
    bs += list(range(ord("\xae"), ord("\xff") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def to_json(version, out):
    with open(path(version), encoding="utf-8") as f:
        cfg = json.load(f)
    tk = Tekkenizer.from_file(path(version))
    n_special = tk.num_special_tokens
    n_ranks = cfg["config"]["default_vocab_size"] - n_special
    ranks = {base64.b64decode(t["token_bytes"]): t["rank"] for t in cfg["vocab"][:n_ranks]}
    enc = bytes_to_unicode()
    s = lambda b: "".join(enc[c] for c in b)
    vocab = {s(b): n_special + r for b, r in ranks.items()}
    merges = []
    for b, r in ranks.items():
        local = [(b[:i], b[i:], r) for i in range(1, len(b)) if b[:i] in ranks and b[i:] in ranks]
        merges.extend(sorted(local, key=lambda m: (ranks[m[0]], ranks[m[1]])))
    merges.sort(key=lambda m: m[2])
    specials = [tk.id_to_piece(i) for i in range(n_special)]
    doc = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False,
             "special": True}
            for i, t in enumerate(specials)
        ],
        "normalizer": None,
        "pre_tokenizer": {
            "type": "Sequence",
            "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": cfg["config"]["pattern"]}, "behavior": "Isolated",
                 "invert": False},
                {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False},
            ],
        },
        "post_processor": {  # LlamaTokenizerFast's: BOS before a single sequence
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": specials[1], "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": specials[1], "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": specials[1], "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {specials[1]: {"id": specials[1], "ids": [1], "tokens": [specials[1]]}},
        },
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": True,
            "vocab": vocab,
            "merges": [[s(a), s(b)] for a, b, _ in merges],
        },
    }
    with open(out, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False)


def main(argv):
    if argv[1:] == ["--have"]:
        return 0 if all(os.path.exists(path(v)) for v in ("240718", "240911")) else 1
    if len(argv) == 4 and argv[1] == "--json":
        to_json(argv[2], argv[3])
        return 0
    if len(argv) != 3:
        sys.stderr.write(__doc__)
        return 2
    tk = Tekkenizer.from_file(path(argv[1]))
    if argv[2].endswith(".json"):
        with open(argv[2], encoding="utf-8") as f:
            print(json.dumps([tk.encode(t, bos=True, eos=False) for t in json.load(f)]))
        return 0
    with open(argv[2], "rb") as f:
        text = f.read().decode("utf-8")
    print(" ".join(map(str, tk.encode(text, bos=True, eos=False))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
