#!/usr/bin/env python3
"""Reference forward pass of a Hugging Face Llama-family checkpoint, in pure
Python doubles (no numpy): the oracle of tests/test_hf_archs.c for what the
shared llama2.c logits cannot check (Qwen 2's q/k/v biases, rope_scaling,
tied heads). Written from transformers' modeling_llama.py / modeling_qwen2.py:
RMSNorm, rotate-half RoPE (inv_freq scaled by _compute_llama3_parameters or
linear scaling), grouped-query causal attention, SwiGLU, final norm, head.

usage: ref_forward.py MODEL_DIR ID [ID ...]   prints the logits of every
position as JSON: [[...vocab floats...], ...]
"""
import json
import math
import os
import struct
import sys
from array import array


def load_tensors(d):
    with open(os.path.join(d, "model.safetensors"), "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b0, b1 = e["data_offsets"]
        raw = data[b0:b1]
        if e["dtype"] == "BF16":
            h = array("H", raw)
            vals = array("f", array("I", [x << 16 for x in h]).tobytes()).tolist()
        elif e["dtype"] == "F16":
            vals = list(struct.unpack("<%de" % (len(raw) // 2), raw))
        else:
            vals = array("f", raw).tolist()
        shape = e["shape"]
        if len(shape) == 2:
            r, c = shape
            out[name] = [vals[i * c:(i + 1) * c] for i in range(r)]
        else:
            out[name] = vals
    return out


def inv_freqs(cfg, hd):
    theta = cfg.get("rope_theta", 10000.0)
    inv = [1.0 / theta ** (2.0 * i / hd) for i in range(hd // 2)]
    rs = cfg.get("rope_scaling")
    if not rs:
        return inv
    kind = rs.get("rope_type", rs.get("type"))
    if kind == "linear":
        return [f / rs["factor"] for f in inv]
    assert kind == "llama3", kind
    factor, low, high = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"]
    old = rs["original_max_position_embeddings"]
    out = []
    for f in inv:
        wl = 2 * math.pi / f
        if wl < old / high:
            out.append(f)
        elif wl > old / low:
            out.append(f / factor)
        else:
            s = (old / wl - low) / (high - low)
            out.append((1 - s) * f / factor + s * f)
    return out


def matvec(w, x):
    return [sum(a * b for a, b in zip(row, x)) for row in w]


def rmsnorm(x, w, eps):
    r = 1.0 / math.sqrt(sum(v * v for v in x) / len(x) + eps)
    return [v * r * g for v, g in zip(x, w)]


def rope(v, pos, inv, hd):
    half = hd // 2
    out = list(v)
    for h in range(len(v) // hd):
        for i in range(half):
            c, s = math.cos(pos * inv[i]), math.sin(pos * inv[i])
            a, b = v[h * hd + i], v[h * hd + i + half]
            out[h * hd + i] = a * c - b * s
            out[h * hd + i + half] = b * c + a * s
    return out


def forward(d, ids):
    cfg = json.load(open(os.path.join(d, "config.json")))
    t = load_tensors(d)
    dim, nh, nkv = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd, eps, nl = cfg.get("head_dim") or dim // nh, cfg["rms_norm_eps"], cfg["num_hidden_layers"]
    inv = inv_freqs(cfg, hd)
    head = t["model.embed_tokens.weight"] if cfg.get("tie_word_embeddings") else t["lm_head.weight"]
    keys = [[] for _ in range(nl)]
    vals = [[] for _ in range(nl)]
    logits = []
    for pos, tok in enumerate(ids):
        x = list(t["model.embed_tokens.weight"][tok])
        for layer in range(nl):
            p = "model.layers.%d." % layer
            xb = rmsnorm(x, t[p + "input_layernorm.weight"], eps)
            q, k, v = (matvec(t[p + "self_attn.%s_proj.weight" % n], xb) for n in "qkv")
            if p + "self_attn.q_proj.bias" in t:
                q = [a + b for a, b in zip(q, t[p + "self_attn.q_proj.bias"])]
                k = [a + b for a, b in zip(k, t[p + "self_attn.k_proj.bias"])]
                v = [a + b for a, b in zip(v, t[p + "self_attn.v_proj.bias"])]
            q, k = rope(q, pos, inv, hd), rope(k, pos, inv, hd)
            keys[layer].append(k)
            vals[layer].append(v)
            att = []
            for h in range(nh):
                g = h // (nh // nkv)
                qh = q[h * hd:(h + 1) * hd]
                sc = [sum(a * b for a, b in zip(qh, kk[g * hd:(g + 1) * hd])) / math.sqrt(hd) for kk in keys[layer]]
                m = max(sc)
                e = [math.exp(s - m) for s in sc]
                z = sum(e)
                for i in range(hd):
                    att.append(sum(w * vv[g * hd + i] for w, vv in zip(e, vals[layer])) / z)
            x = [a + b for a, b in zip(x, matvec(t[p + "self_attn.o_proj.weight"], att))]
            xb = rmsnorm(x, t[p + "post_attention_layernorm.weight"], eps)
            gate, up = matvec(t[p + "mlp.gate_proj.weight"], xb), matvec(t[p + "mlp.up_proj.weight"], xb)
            hb = [gg / (1 + math.exp(-gg)) * u for gg, u in zip(gate, up)]
            x = [a + b for a, b in zip(x, matvec(t[p + "mlp.down_proj.weight"], hb))]
        logits.append(matvec(head, rmsnorm(x, t["model.norm.weight"], eps)))
    return logits


if __name__ == "__main__":
    print(json.dumps(forward(sys.argv[1], [int(a) for a in sys.argv[2:]])))
