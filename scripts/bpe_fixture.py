#!/usr/bin/env python3
"""Writes the byte-level BPE test fixtures of tests/golden/bpe/ with the
Hugging Face `tokenizers` library (pip install tokenizers), the oracle the C
tokenizer (src/tokenizer/bpe_bytes.c) is tested against:

  <name>/tokenizer.json   a small BPE trained on the shared evaluation texts,
                          with the pre-tokenizer, normalizer, special tokens and
                          post-processor of a real model family
  <name>/expected.json    {"cases": [{"text": ..., "ids": [...]}, ...],
                           "files": [{"file": ..., "bytes": N, "ids": [...]}]}
                          ids as tokenizers encodes them (add_special_tokens
                          as the family's post-processor does); "files" are the
                          first N bytes of ../shared/models/eval/<file>

usage: scripts/bpe_fixture.py SHARED_MODELS_DIR OUT_DIR
"""
import json
import os
import sys

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

LLAMA3_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
             r"|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
            r"|\s*[\r\n]+|\s+(?!\S)|\s+")

CASES = [
    "", " ", "  ", "\t", "\n", "\n\n\n", " \n ", "Hello world", "Hello, world!", " leading space",
    "trailing space ", "double  space", "tabs\tand\tnewlines\nhere\r\n", "It's, we're, they'll, I'd, you've",
    "IT'S WE'RE THEY'LL", "numbers 1 12 123 1234 12345 3.14159", "emoji \U0001F600\U0001F680 done",
    "CJK \u4f60\u597d\u4e16\u754c \u3053\u3093\u306b\u3061\u306f", "caf\u00e9 cafe\u0301 na\u00efve",
    "\u0391\u03b8\u03ae\u03bd\u03b1 \u041c\u043e\u0441\u043a\u0432\u0430", "a\u00a0b\u2003c\u3000d",
    "<|begin_of_text|>inside<|end_of_text|> text", "<|im_start|>user\nhi<|im_end|>",
    "Once upon a time, there was a little girl named Lily.",
    "x" * 300, "!!!???...,,,", "mixed123abc456", "\u0600\u0661\u0662 \u05d0\u05d1",
    "zero\u200bwidth", "line\u2028sep", "nel\u0085char", "\x01\x02\x7f ctrl",
]

FILES = [("tinystories_valid_head.txt", 20000), ("tinyshakespeare.txt", 20000)]


def corpus(shared):
    for f, _ in FILES:
        with open(os.path.join(shared, "eval", f), encoding="utf-8") as fh:
            yield fh.read()


def build(shared, family):
    if family == "llama3":
        specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>", "<|eot_id|>"]
        tok = Tokenizer(models.BPE(ignore_merges=True))
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(LLAMA3_RE), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False)])
    else:
        specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
        tok = Tokenizer(models.BPE())
        tok.normalizer = normalizers.NFC()
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(QWEN2_RE), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=2000, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus(shared), trainer=trainer)
    tok.add_special_tokens(specials)
    if family == "llama3":
        bos = specials[0]
        tok.post_processor = processors.Sequence([
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(single=bos + " $A", pair=bos + " $A " + bos + " $B",
                                          special_tokens=[(bos, tok.token_to_id(bos))])])
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return tok


def main():
    shared, out = sys.argv[1], sys.argv[2]
    for family in ("llama3", "qwen2"):
        tok = build(shared, family)
        d = os.path.join(out, family)
        os.makedirs(d, exist_ok=True)
        tok.save(os.path.join(d, "tokenizer.json"))
        tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))  # what the C reader sees
        exp = {"cases": [{"text": t, "ids": tok.encode(t).ids} for t in CASES], "files": []}
        for f, n in FILES:
            with open(os.path.join(shared, "eval", f), "rb") as fh:
                text = fh.read(n).decode("utf-8", errors="strict")
            exp["files"].append({"file": f, "bytes": n, "ids": tok.encode(text).ids})
        with open(os.path.join(d, "expected.json"), "w", encoding="utf-8") as fh:
            json.dump(exp, fh, ensure_ascii=True, separators=(",", ":"))
            fh.write("\n")


if __name__ == "__main__":
    main()
