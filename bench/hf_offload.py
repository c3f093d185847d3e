#!/usr/bin/env python3
"""hf_offload.py - the baseline of issue #5: Hugging Face transformers +
Accelerate with device_map="auto" under a GPU memory cap (layers that do not
fit are offloaded to the CPU and moved to the GPU at each forward), greedy
generation of N tokens after a short prompt, batch 1. Prints one JSON line.

Usage (on the GPU machine, python3 with torch/transformers/accelerate):
  python3 bench/hf_offload.py MODEL_DIR [--gpu-mem 600MiB] [-n 32] [--prompt-len 8]
MODEL_DIR is a Hugging Face directory (e.g. `vramzip synth --shape
tinyllama-1.1b -o DIR`). decode_tok_s = (N - 1) / (time of N new tokens -
time of 1 new token): the prompt's forward pass is subtracted.
"""
import argparse
import json
import sys
import time

import torch
from transformers import AutoModelForCausalLM


def timed_generate(model, ids, n):
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = model.generate(ids, max_new_tokens=n, min_new_tokens=n, do_sample=False, use_cache=True,
                         pad_token_id=0)
    torch.cuda.synchronize()
    return time.perf_counter() - t0, out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--gpu-mem", default="600MiB")
    ap.add_argument("-n", type=int, default=32)
    ap.add_argument("--prompt-len", type=int, default=8)
    a = ap.parse_args()
    t0 = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.bfloat16, device_map="auto",
                                                 max_memory={0: a.gpu_mem, "cpu": "64GiB"})
    model.eval()
    load_s = time.perf_counter() - t0
    dm = getattr(model, "hf_device_map", {})
    on_gpu = sum(1 for v in dm.values() if v == 0 or v == "cuda:0")
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, model.config.vocab_size, (1, a.prompt_len), generator=g).to("cuda:0")
    torch.cuda.reset_peak_memory_stats()
    with torch.inference_mode():
        timed_generate(model, ids, 2)  # warm-up
        t1, _ = timed_generate(model, ids, 1)
        tn, out = timed_generate(model, ids, a.n)
    res = {
        "engine": "transformers+accelerate device_map=auto",
        "torch": torch.__version__,
        "transformers": __import__("transformers").__version__,
        "accelerate": __import__("accelerate").__version__,
        "device": torch.cuda.get_device_name(0),
        "max_memory_gpu": a.gpu_mem,
        "modules_on_gpu": on_gpu,
        "modules_mapped": len(dm),
        "load_s": round(load_s, 2),
        "n_new": a.n,
        "total_s": round(tn, 3),
        "tok_s_incl_prompt": round(a.n / tn, 3),
        "decode_tok_s": round((a.n - 1) / (tn - t1), 3) if tn > t1 else None,
        "peak_allocated_mib": round(torch.cuda.max_memory_allocated() / 2**20, 1),
        "new_ids": out[0, a.prompt_len:a.prompt_len + 8].tolist(),
    }
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
