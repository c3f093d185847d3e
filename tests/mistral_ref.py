#!/usr/bin/env python3
"""The token ids mistral-common (Mistral's reference encoder, from PyPI:
mistral_common[sentencepiece]) gives a conversation, for tests/test_chat.c.

usage: mistral_ref.py --path VERSION      prints the tokenizer file mistral_common ships for VERSION (v1, v3, v7,
                                          nemo: its tekken file, which tests/tekken_ref.py converts)
       mistral_ref.py VERSION CONV.json   prints the ids of CONV.json ([{"role": ..., "content": ...}, ...])
                                          as a chat completion request, space-separated
"""
import json
import os
import sys

import mistral_common
from mistral_common.protocol.instruct.messages import AssistantMessage, SystemMessage, UserMessage
from mistral_common.protocol.instruct.request import ChatCompletionRequest
from mistral_common.tokens.tokenizers.mistral import MistralTokenizer

FILES = {
    "v1": "tokenizer.model.v1",
    "v3": "mistral_instruct_tokenizer_240323.model.v3",
    "v7": "mistral_instruct_tokenizer_241114.model.v7",
    "nemo": "tekken_240718.json",  # Mistral-Nemo-2407's Tekken (a V3 instruct tokenizer)
}


def path(version):
    return os.path.join(os.path.dirname(mistral_common.__file__), "data", FILES[version])


def main(argv):
    if len(argv) == 3 and argv[1] == "--path":
        print(path(argv[2]))
        return 0
    if len(argv) != 3:
        sys.stderr.write(__doc__)
        return 2
    kinds = {"system": SystemMessage, "user": UserMessage, "assistant": AssistantMessage}
    with open(argv[2], encoding="utf-8") as f:
        msgs = [kinds[m["role"]](content=m["content"]) for m in json.load(f)]
    tok = MistralTokenizer.from_file(path(argv[1]))
    ids = tok.encode_chat_completion(ChatCompletionRequest(messages=msgs)).tokens
    print(" ".join(map(str, ids)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
