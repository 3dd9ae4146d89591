"""Dump real attention activations of the reference model on a CPU, in the shared dump format.

The model's own definition (`refmodel.py` in the model folder) runs unchanged; what this tool adds
is what a CPU machine with Debian's PyTorch lacks:
  - a reader for the model's safetensors file (no `safetensors` package on Debian 12), and
  - `torch.nn.functional.scaled_dot_product_attention(..., is_causal=True, enable_gqa=True)` where
    PyTorch is older than 2.5 (Debian 12 ships 1.13): exact causal grouped-query attention, computed
    in blocks of queries so a 64K-token context fits in memory.
The forward pass runs in fp32 from the bf16 weights (the shared dumps came from a bf16 run on a GPU),
so activations agree with a GPU dump of the same text to bf16 precision, not bit for bit.

Output (fp16 .npy, as `../shared/data/qkv/README.md` describes): L{l}_k, L{l}_v, L{l}_q_decode,
L{l}_q_prefill per layer, and meta.json. Beyond the shared dump's fields, meta.json records the
byte offset into the package stream, whether the package was in the training set, and whether the
context is longer than the model's training context (16,384): such a dump shows what retrieval does
on a context the model was never trained on, and is labelled so.

  /usr/bin/python3 bench/retrieval/dumps/qkv_dump_cpu.py --model ../shared/models/attic-ref-54m \
      --package sympy --n 16384 --out /var/tmp/attic-dumps/sympy-16k
"""
import argparse
import hashlib
import json
import math
import os
import sys
import time
import types

import numpy as np
import torch
import torch.nn.functional as F


def read_safetensors(path):
    """Returns {name: torch.Tensor} for a safetensors file (F32, F16 and BF16 tensors)."""
    with open(path, 'rb') as f:
        blob = f.read()
    (header_len,) = np.frombuffer(blob[:8], dtype='<u8')
    header = json.loads(blob[8:8 + int(header_len)])
    base = 8 + int(header_len)
    out = {}
    for name, info in header.items():
        if name == '__metadata__':
            continue
        begin, end = info['data_offsets']
        raw = np.frombuffer(blob, dtype=np.uint8, count=end - begin, offset=base + begin)
        shape = info['shape']
        if info['dtype'] == 'BF16':
            bits = raw.view('<u2').astype(np.uint32) << 16
            t = torch.from_numpy(bits.view(np.float32).reshape(shape).copy())
        elif info['dtype'] == 'F16':
            t = torch.from_numpy(raw.view('<f2').astype(np.float32).reshape(shape))
        elif info['dtype'] == 'F32':
            t = torch.from_numpy(raw.view('<f4').reshape(shape).copy())
        else:
            raise SystemExit(f'{path}: tensor {name} has dtype {info["dtype"]}, not F32/F16/BF16')
        out[name] = t
    return out


def causal_gqa_attention(q, k, v, is_causal=False, enable_gqa=False, block=1024, **unused):
    """Exact softmax(q k^T / sqrt(D)) v, causal, query head h reading KV head h // (Hq / Hkv)."""
    if not is_causal:
        raise NotImplementedError('only causal attention is needed by the reference model')
    b, hq, t, d = q.shape
    hkv = k.shape[1]
    group = hq // hkv
    scale = 1.0 / math.sqrt(d)
    out = torch.empty_like(q)
    for kh in range(hkv):
        kk = k[:, kh].float()                                   # [B, T, D]
        vv = v[:, kh].float()
        for begin in range(0, t, block):
            end = min(t, begin + block)
            qq = q[:, kh * group:(kh + 1) * group, begin:end].float()  # [B, G, n, D]
            s = torch.einsum('bgnd,btd->bgnt', qq, kk[:, :end]) * scale
            pos = torch.arange(begin, end).view(-1, 1)
            s.masked_fill_(torch.arange(end).view(1, -1) > pos, float('-inf'))
            p = torch.softmax(s, dim=-1)
            out[:, kh * group:(kh + 1) * group, begin:end] = torch.einsum('bgnt,btd->bgnd', p, vv[:, :end]).to(q.dtype)
    return out


def install_shims():
    if not hasattr(F, 'scaled_dot_product_attention'):
        F.scaled_dot_product_attention = causal_gqa_attention
    else:
        try:  # PyTorch 2.x before 2.5 has SDPA but not enable_gqa.
            F.scaled_dot_product_attention(torch.zeros(1, 2, 1, 4), torch.zeros(1, 1, 1, 4),
                                           torch.zeros(1, 1, 1, 4), is_causal=True, enable_gqa=True)
        except TypeError:
            F.scaled_dot_product_attention = causal_gqa_attention
    if 'safetensors.torch' not in sys.modules:
        try:
            import safetensors.torch  # noqa: F401
        except ImportError:
            pkg = types.ModuleType('safetensors')
            mod = types.ModuleType('safetensors.torch')
            mod.load_file = read_safetensors
            pkg.torch = mod
            sys.modules['safetensors'] = pkg
            sys.modules['safetensors.torch'] = mod


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--model', required=True, help='folder with refmodel.py, corpus.py, config.json, model.safetensors')
    ap.add_argument('--package', required=True, help='package whose Python sources are the text')
    ap.add_argument('--root', default='/usr/lib/python3/dist-packages', help='where the package is installed')
    ap.add_argument('--offset', type=int, default=0, help='bytes of the package stream to skip')
    ap.add_argument('--n', type=int, default=16384, help='tokens (bytes) of context')
    ap.add_argument('--layers', default='0,1,2,3,4,5')
    ap.add_argument('--decode', type=int, default=256)
    ap.add_argument('--prefill-stride', type=int, default=16)
    ap.add_argument('--threads', type=int, default=0, help='PyTorch threads (default: all cores)')
    ap.add_argument('--out', required=True)
    a = ap.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    for need in ('refmodel.py', 'corpus.py', 'config.json', 'model.safetensors'):
        if not os.path.isfile(os.path.join(a.model, need)):
            raise SystemExit(f'--model {a.model}: no {need} there (the model folder holds '
                             'refmodel.py, corpus.py, config.json, model.safetensors)')
    sys.path.insert(0, os.path.abspath(a.model))
    install_shims()
    from refmodel import load          # the model's own definition
    from corpus import EVAL_PACKAGES, package_stream

    started = time.time()
    text = package_stream(a.package, limit=a.offset + a.n, root=a.root)[a.offset:]
    if len(text) != a.n:
        raise SystemExit(f'{a.package} under {a.root} has {len(text) + a.offset} bytes; '
                         f'--offset {a.offset} --n {a.n} needs {a.offset + a.n}')
    model = load(a.model, device='cpu', dtype=torch.float32)
    c = model.c
    layers = [int(s) for s in a.layers.split(',')]
    for l in layers:
        if not 0 <= l < c['n_layers']:
            raise SystemExit(f'--layers: layer {l} is not in 0..{c["n_layers"] - 1}')
    caps = {l: {} for l in layers}
    for l in layers:
        model.blocks[l].attn.capture = caps[l]
    x = torch.from_numpy(np.frombuffer(text, dtype=np.uint8).copy())[None]
    with torch.no_grad():
        logits = model(x)
        nll = F.cross_entropy(logits[0, :-1].float(), x[0, 1:].long()).item()
        tail = F.cross_entropy(logits[0, a.n - a.decode - 1:-1].float(), x[0, a.n - a.decode:].long()).item()
    os.makedirs(a.out, exist_ok=True)
    for l in layers:
        q, k, v = (caps[l][n][0].transpose(0, 1).contiguous().to(torch.float16).numpy() for n in 'qkv')
        np.save(os.path.join(a.out, f'L{l}_k.npy'), k)
        np.save(os.path.join(a.out, f'L{l}_v.npy'), v)
        np.save(os.path.join(a.out, f'L{l}_q_decode.npy'), q[a.n - a.decode:])
        np.save(os.path.join(a.out, f'L{l}_q_prefill.npy'), q[::a.prefill_stride])
    meta = dict(model=os.path.basename(os.path.normpath(a.model)), package=a.package, offset=a.offset,
                n=a.n, layers=layers, decode_positions=[a.n - a.decode, a.n - 1],
                prefill_stride=a.prefill_stride, q_heads=c['n_heads'], kv_heads=c['n_kv_heads'],
                head_dim=c['head_dim'], softmax_scale=c['head_dim'] ** -0.5, rope_base=c['rope_base'],
                training_context=c['ctx'], beyond_training_context=a.n > c['ctx'],
                in_training_set=a.package not in EVAL_PACKAGES,
                text_sha256=hashlib.sha256(text).hexdigest(), model_nll_nats_per_byte=nll,
                decode_nll_nats_per_byte=tail,
                producer=dict(tool='bench/retrieval/dumps/qkv_dump_cpu.py', device='cpu', compute_dtype='float32',
                              torch=torch.__version__, seconds=round(time.time() - started, 1)),
                layout=dict(k='[N, Hkv, D]', v='[N, Hkv, D]', q_decode='[T, Hq, D] positions N-T..N-1',
                            q_prefill='[ceil(N/S), Hq, D] positions 0,S,2S,...'),
                note='keys and queries are post-rotary; a query at position p attends to keys 0..p (causal)')
    with open(os.path.join(a.out, 'meta.json'), 'w') as f:
        json.dump(meta, f, indent=2)
    print(json.dumps({k: meta[k] for k in ('package', 'offset', 'n', 'model_nll_nats_per_byte',
                                           'decode_nll_nats_per_byte', 'beyond_training_context',
                                           'in_training_set', 'producer')}))


if __name__ == '__main__':
    main()
