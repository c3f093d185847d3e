#!/usr/bin/env python3
"""A Hugging Face checkpoint (config.json, model.safetensors, tokenizer.json)
as a GGUF v3 file the way llama.cpp's convert_hf_to_gguf.py writes one, for
tests/test_tokenizer_json.c: llama or qwen2 metadata, 2-D tensors kept in
their dtype (llama's q/k rows permuted for adjacent-pair RoPE, qwen2's not),
norms and biases as F32, and the byte-level vocabulary as tokenizer.ggml.*
(model "gpt2", tokens by id, token_type 1 normal / 3 control / 4 user
defined, merges as "a b", the given pre-tokenizer name, add_bos_token), and a
llama3 rope_scaling as llama.cpp's per-pair divisors, rope_freqs.weight.

usage: hf_to_gguf.py HF_DIR OUT.gguf PRE [--bad-rope-freqs] [--quant q8_0|q4_0] [--value-length N]
(--bad-rope-freqs: a zero divisor, for the reader's check; --value-length: N
as attention.value_length where config.json names a head_dim; --quant: every
2-D tensor of a width divisible by 32 quantized by llama.cpp's reference
quantizer, and OUT.gguf.up0.f32 gets layer 0's ffn_up as llama.cpp
dequantizes it)
"""
import json
import math
import os
import struct
import sys
from array import array

U32, I32, F32, BOOL, STR, ARR = 4, 5, 6, 7, 8, 9
GGML = {"F32": 0, "F16": 1, "BF16": 30}


def gstr(s):
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def kv(key, typ, val):
    out = gstr(key) + struct.pack("<I", typ)
    if typ == STR:
        return out + gstr(val)
    if typ == ARR:
        t, items = val
        out += struct.pack("<IQ", t, len(items))
        for it in items:
            out += gstr(it) if t == STR else struct.pack("<i" if t == I32 else "<I", it)
        return out
    return out + struct.pack({U32: "<I", I32: "<i", F32: "<f", BOOL: "<?"}[typ], val)


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def quantize(vals, kind):
    """llama.cpp's quantize_row_q8_0_ref / quantize_row_q4_0_ref, blocks of 32
    (f32 arithmetic emulated); returns (bytes, dequantized values)."""
    out, deq = bytearray(), []
    for b in range(0, len(vals), 32):
        x = vals[b:b + 32]
        if kind == "q8_0":
            amax = max(abs(v) for v in x)
            d = f32(amax / 127)
            idv = f32(1 / d) if d else 0.0
            dh = struct.unpack("<e", struct.pack("<e", d))[0]
            q = []
            for v in x:
                t = f32(v * idv)
                q.append(int(math.floor(abs(t) + 0.5)) * (1 if t >= 0 else -1))  # roundf: half away from zero
            out += struct.pack("<e", d) + struct.pack("<32b", *q)
            deq += [f32(qq * dh) for qq in q]
        else:
            mx = max(x, key=abs)
            d = f32(mx / -8)
            idv = f32(1 / d) if d else 0.0
            dh = struct.unpack("<e", struct.pack("<e", d))[0]
            codes = [min(15, int(f32(f32(v * idv) + 8.5))) for v in x]  # (int8_t) truncates; the sum is >= 0
            out += struct.pack("<e", d) + bytes(codes[j] | codes[j + 16] << 4 for j in range(16))
            deq += [f32((c - 8) * dh) for c in codes]
    return bytes(out), deq


def main():
    d, out, pre = sys.argv[1], sys.argv[2], sys.argv[3]
    cfg = json.load(open(os.path.join(d, "config.json")))
    tok = json.load(open(os.path.join(d, "tokenizer.json")))
    arch = "qwen2" if cfg["architectures"][0] == "Qwen2ForCausalLM" else "llama"
    with open(os.path.join(d, "model.safetensors"), "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    nh, nkv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    quant = sys.argv[sys.argv.index("--quant") + 1] if "--quant" in sys.argv else None
    tensors = []  # (name, shape (rows, cols) or (n,), ggml type, bytes)
    for name, e in header.items():
        if name == "__metadata__":
            continue
        raw = data[e["data_offsets"][0]:e["data_offsets"][1]]
        shape, dt = e["shape"], e["dtype"]
        if len(shape) == 1:  # norms and biases: F32
            if dt == "BF16":
                raw = array("I", [x << 16 for x in array("H", raw)]).tobytes()
            assert dt in ("BF16", "F32")
            dt = "F32"
        new = name.replace("model.embed_tokens.weight", "token_embd.weight").replace(
            "model.norm.weight", "output_norm.weight").replace("lm_head.weight", "output.weight")
        if name.startswith("model.layers."):
            layer, rest = name[len("model.layers."):].split(".", 1)
            rest = {"input_layernorm.weight": "attn_norm.weight", "post_attention_layernorm.weight": "ffn_norm.weight",
                    "mlp.gate_proj.weight": "ffn_gate.weight", "mlp.up_proj.weight": "ffn_up.weight",
                    "mlp.down_proj.weight": "ffn_down.weight", "self_attn.o_proj.weight": "attn_output.weight"}.get(
                        rest, rest.replace("self_attn.", "attn_").replace("_proj", ""))
            new = "blk.%s.%s" % (layer, rest)
            heads = nh if ".attn_q.weight" in new else nkv if ".attn_k.weight" in new else 0
            if arch == "llama" and heads:  # llama.cpp's permute(): rows (h, 2, hd/2) -> (h, hd/2, 2)
                rows, cols = shape
                es = len(raw) // (rows * cols)
                hd = rows // heads
                rb = [raw[r * cols * es:(r + 1) * cols * es] for r in range(rows)]
                raw = b"".join(rb[h * hd + j * (hd // 2) + i] for h in range(heads) for i in range(hd // 2)
                               for j in range(2))
        if quant and len(shape) == 2 and shape[1] % 32 == 0:  # llama.cpp falls back for other widths too
            if dt == "BF16":
                vals = array("f", array("I", [x << 16 for x in array("H", raw)]).tobytes()).tolist()
            else:
                assert dt == "F32"
                vals = array("f", raw).tolist()
            raw, deq = quantize(vals, quant)
            if new == "blk.0.ffn_up.weight":
                with open(out + ".up0.f32", "wb") as f:
                    f.write(array("f", deq).tobytes())
            tensors.append((new, shape, 8 if quant == "q8_0" else 2, raw))
            continue
        tensors.append((new, shape, GGML[dt], raw))
    rs = cfg.get("rope_scaling")
    if rs and rs.get("rope_type") == "llama3":  # llama.cpp's LlamaModel.generate_extra_tensors
        hd, base = cfg.get("head_dim") or cfg["hidden_size"] // nh, cfg.get("rope_theta", 10000.0)
        factor, low, high = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"]
        old = rs["original_max_position_embeddings"]
        fac = []
        for i in range(0, hd, 2):
            freq = struct.unpack("<f", struct.pack("<f", 1.0 / base ** (i / hd)))[0]
            wl = 2 * math.pi / freq
            if wl < old / high:
                fac.append(1.0)
            elif wl > old / low:
                fac.append(factor)
            else:
                s = (old / wl - low) / (high - low)
                fac.append(1 / ((1 - s) / factor + s))
        if "--bad-rope-freqs" in sys.argv[4:]:
            fac[-1] = 0.0
        tensors.append(("rope_freqs.weight", [hd // 2], 0, struct.pack("<%df" % len(fac), *fac)))
    vocab = dict(tok["model"]["vocab"])
    special = {}
    for a in tok.get("added_tokens") or []:
        vocab[a["content"]] = a["id"]
        special[a["id"]] = 3 if a.get("special") else 4
    tokens = [None] * (max(vocab.values()) + 1)
    for s, i in vocab.items():
        tokens[i] = s
    merges = [m if isinstance(m, str) else "%s %s" % tuple(m) for m in tok["model"]["merges"]]
    meta = [kv("general.architecture", STR, arch), kv("general.alignment", U32, 32),
            kv(arch + ".context_length", U32, cfg["max_position_embeddings"]),
            kv(arch + ".embedding_length", U32, cfg["hidden_size"]),
            kv(arch + ".block_count", U32, cfg["num_hidden_layers"]),
            kv(arch + ".feed_forward_length", U32, cfg["intermediate_size"]),
            kv(arch + ".attention.head_count", U32, nh), kv(arch + ".attention.head_count_kv", U32, nkv),
            kv(arch + ".attention.layer_norm_rms_epsilon", F32, cfg["rms_norm_eps"]),
            kv(arch + ".rope.freq_base", F32, cfg.get("rope_theta", 10000.0)),
            kv("tokenizer.ggml.model", STR, "gpt2"), kv("tokenizer.ggml.pre", STR, pre),
            kv("tokenizer.ggml.tokens", ARR, (STR, tokens)),
            kv("tokenizer.ggml.token_type", ARR, (I32, [special.get(i, 1) for i in range(len(tokens))])),
            kv("tokenizer.ggml.merges", ARR, (STR, merges)),
            kv("tokenizer.ggml.bos_token_id", U32, cfg["bos_token_id"]),
            kv("tokenizer.ggml.eos_token_id", U32, cfg["eos_token_id"]),
            kv("tokenizer.ggml.add_bos_token", BOOL, arch == "llama")]
    if cfg.get("head_dim"):  # llama.cpp's set_gguf_parameters: an explicit head_dim as key and value lengths
        vl = int(sys.argv[sys.argv.index("--value-length") + 1]) if "--value-length" in sys.argv else cfg["head_dim"]
        meta += [kv(arch + ".attention.key_length", U32, cfg["head_dim"]),
                 kv(arch + ".attention.value_length", U32, vl)]
    tc = os.path.join(d, "tokenizer_config.json")  # llama.cpp's converter copies the chat template
    if os.path.exists(tc) and isinstance(json.load(open(tc)).get("chat_template"), str):
        meta.append(kv("tokenizer.chat_template", STR, json.load(open(tc))["chat_template"]))
    infos, blob = b"", b""
    for name, shape, t, raw in tensors:
        blob += b"\0" * ((32 - len(blob) % 32) % 32)
        ne = list(reversed(shape))
        infos += gstr(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", x) for x in ne)
        infos += struct.pack("<IQ", t, len(blob))
        blob += raw
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(meta)) + b"".join(meta) + infos
    head += b"\0" * ((32 - len(head) % 32) % 32)
    with open(out, "wb") as f:
        f.write(head + blob)


if __name__ == "__main__":
    main()
