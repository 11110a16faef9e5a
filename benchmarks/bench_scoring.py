"""Scoring throughput: batched generation against a per-image loop, and (on a GPU) decode
speed of a 7B-sized Qwen2.5-VL against the memory-bandwidth roofline.

CPU section (always): the tiny offline Qwen2.5-VL (random weights) scores the same
synthetic images through :class:`qponder.inference.Scorer` (image loading, chat template,
generation, parsing, read-out) once with ``batch_size=1`` and once batched; it prints
images/s, the speed-up, and whether both produced the same greedy texts.

GPU section (skipped without CUDA): a Qwen2.5-VL with Qwen2.5-VL-7B-Instruct's published
configuration and random bf16 weights, built with ``from_config`` (no download), decodes
``--new-tokens`` tokens greedily after a text prompt at several batch sizes. Decode
tokens/s (prefill subtracted) is set against the roofline ``bandwidth / bytes read per
step`` (language-model weights except the embedding table, plus the KV cache), with the
bandwidth both nominal (by GPU name) and measured (a device-to-device copy).

Run: ``.venv/bin/python benchmarks/bench_scoring.py`` (add ``--json FILE`` to keep figures).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

# Qwen/Qwen2.5-VL-7B-Instruct config.json (the parts that set sizes).
QWEN25_VL_7B = {
    "text": {
        "vocab_size": 152064,
        "hidden_size": 3584,
        "intermediate_size": 18944,
        "num_hidden_layers": 28,
        "num_attention_heads": 28,
        "num_key_value_heads": 4,
        "max_position_embeddings": 128000,
        "rms_norm_eps": 1e-6,
        "tie_word_embeddings": False,
        "rope_parameters": {
            "rope_type": "default",
            "rope_theta": 1000000.0,
            "mrope_section": [16, 24, 24],
        },
        "bos_token_id": 151643,
        "eos_token_id": 151645,
    },
    "vision": {
        "depth": 32,
        "hidden_size": 1280,
        "intermediate_size": 3420,
        "num_heads": 16,
        "out_hidden_size": 3584,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "window_size": 112,
        "fullatt_block_indexes": [7, 15, 23, 31],
        "tokens_per_second": 2,
    },
    "tokens": {
        "image_token_id": 151655,
        "video_token_id": 151656,
        "vision_start_token_id": 151652,
        "vision_end_token_id": 151653,
    },
}

# Nominal HBM bandwidth in bytes/s, by a substring of torch.cuda.get_device_name().
NOMINAL_BANDWIDTH = {
    "H200": 4.8e12,
    "H100 NVL": 3.9e12,
    "H100 PCIe": 2.0e12,
    "H100": 3.35e12,  # SXM
    "A100-SXM4-80GB": 2.039e12,
    "A100": 1.555e12,
    "L40S": 0.864e12,
}


# --------------------------------------------------------------------------- CPU


def _time_scoring(scorer, paths: list[str]) -> tuple[float, list]:
    t0 = time.perf_counter()
    results = [r for batch in scorer.score_items(paths, image_path=lambda p: p) for _, r in batch]
    return time.perf_counter() - t0, results


def cpu_section(args: argparse.Namespace) -> dict:
    from qponder.data.synthetic import make_synthetic_dataset
    from qponder.inference import Scorer
    from qponder.models import load_model
    from qponder.models.tiny import build_tiny_model

    tmp = Path(tempfile.mkdtemp(prefix="qponder-bench-"))
    model_path = args.model or build_tiny_model(tmp / "tiny", seed=0)
    make_synthetic_dataset(tmp / "data", n=args.images, seed=0, size=args.size)
    paths = sorted(str(p) for p in (tmp / "data" / "images").glob("*.png"))
    from qponder.config import ModelConfig

    model, processor = load_model(
        model_path, ModelConfig(attn_implementation=args.attn_implementation)
    )

    def scorer(bs: int) -> Scorer:
        return Scorer(model, processor=processor, batch_size=bs, max_new_tokens=args.new_tokens)

    _time_scoring(scorer(args.batch_size), paths[: args.batch_size])  # warm-up
    figures = {}
    texts = {}
    for label, bs in (("per-image loop", 1), ("batched", args.batch_size)):
        runs = []
        for _ in range(args.repeats):
            seconds, results = _time_scoring(scorer(bs), paths)
            runs.append(seconds)
        texts[label] = [r.text for r in results]
        sec = statistics.median(runs)
        figures[label] = {
            "batch_size": bs,
            "seconds": round(sec, 3),
            "images_per_s": round(len(paths) / sec, 2),
        }
    speedup = figures["batched"]["images_per_s"] / figures["per-image loop"]["images_per_s"]
    out = {
        "device": "cpu",
        "attn_implementation": model.config._attn_implementation,
        "torch_threads": torch.get_num_threads(),
        "images": len(paths),
        "image_size": args.size,
        "max_new_tokens": args.new_tokens,
        "repeats": args.repeats,
        **figures,
        "speedup": round(speedup, 2),
        "same_outputs": texts["batched"] == texts["per-image loop"],
    }
    print(f"\n== CPU: tiny Qwen2.5-VL, {len(paths)} images of {args.size}px, {args.new_tokens} new tokens max, "
          f"{torch.get_num_threads()} threads, {out['attn_implementation']} attention, median of {args.repeats}")  # fmt: skip
    print(f"{'mode':<16} {'batch':>5} {'seconds':>8} {'images/s':>9}")
    for label, f in figures.items():
        print(f"{label:<16} {f['batch_size']:>5} {f['seconds']:>8.2f} {f['images_per_s']:>9.2f}")
    print(f"speed-up {speedup:.1f}x; identical greedy outputs in both modes: {out['same_outputs']}")
    return out


# --------------------------------------------------------------------------- GPU


def build_7b_config():
    from transformers import Qwen2_5_VLConfig

    return Qwen2_5_VLConfig(
        text_config=QWEN25_VL_7B["text"],
        vision_config=QWEN25_VL_7B["vision"],
        **QWEN25_VL_7B["tokens"],
    )


def decode_bytes_per_step(model, batch: int, context: int, dtype_bytes: int = 2) -> tuple[int, int]:
    """Bytes read per decode step: LM weights (embedding table excluded: one row is read)
    plus lm_head, and the KV cache of ``batch`` sequences of ``context`` tokens."""
    lm = model.model.language_model
    weights = sum(p.numel() for n, p in lm.named_parameters() if "embed_tokens" not in n)
    weights += model.lm_head.weight.numel()
    cfg = model.config.text_config
    head_dim = cfg.hidden_size // cfg.num_attention_heads
    kv = 2 * cfg.num_hidden_layers * cfg.num_key_value_heads * head_dim * context * batch
    return weights * dtype_bytes, kv * dtype_bytes


def measured_bandwidth(device: str, gib: float = 4.0) -> float:
    """Device-memory bandwidth in bytes/s from a large copy (read + write)."""
    n = int(gib * 2**30) // 2
    src = torch.empty(n, dtype=torch.bfloat16, device=device)
    dst = torch.empty_like(src)
    for _ in range(2):
        dst.copy_(src)
    torch.cuda.synchronize()
    reps = 10
    t0 = time.perf_counter()
    for _ in range(reps):
        dst.copy_(src)
    torch.cuda.synchronize()
    bw = 2 * src.numel() * 2 * reps / (time.perf_counter() - t0)
    del src, dst
    torch.cuda.empty_cache()
    return bw


def _generate_seconds(model, input_ids, new_tokens: int) -> float:
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    with torch.inference_mode():
        model.generate(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            do_sample=False,
            pad_token_id=0,
        )
    torch.cuda.synchronize()
    return time.perf_counter() - t0


def gpu_section(args: argparse.Namespace, config=None, device: str = "cuda") -> dict:
    from transformers import AutoModelForImageTextToText

    config = config or build_7b_config()
    t0 = time.perf_counter()
    with torch.device(device):
        model = AutoModelForImageTextToText.from_config(config, dtype=torch.bfloat16)
    model.eval()
    build_s = time.perf_counter() - t0
    n_params = sum(p.numel() for p in model.parameters())
    name = torch.cuda.get_device_name(0)
    nominal = next((bw for key, bw in NOMINAL_BANDWIDTH.items() if key in name), None)
    measured = measured_bandwidth(device)
    print(f"\n== GPU: {name}; Qwen2.5-VL-7B config, random bf16 weights, {n_params / 1e9:.2f} B parameters "
          f"(built in {build_s:.1f} s); bandwidth measured {measured / 1e12:.2f} TB/s"
          + (f", nominal {nominal / 1e12:.2f} TB/s" if nominal else ""))  # fmt: skip
    print(
        f"prompt {args.prompt_tokens} tokens, {args.new_tokens} new tokens, greedy, transformers generate"
    )
    print(
        f"{'batch':>5} {'decode tok/s':>13} {'ms/step':>8} {'roofline tok/s':>15} {'of roofline':>12}"
    )
    vocab = config.text_config.vocab_size
    rows = []
    for batch in args.gpu_batch_sizes:
        ids = torch.randint(0, vocab - 1000, (batch, args.prompt_tokens), device=device)
        _generate_seconds(model, ids, 4)  # warm-up
        prefill = _generate_seconds(model, ids, 1)
        total = _generate_seconds(model, ids, args.new_tokens)
        steps = args.new_tokens - 1
        step_s = (total - prefill) / steps
        context = args.prompt_tokens + args.new_tokens // 2
        w_bytes, kv_bytes = decode_bytes_per_step(model, batch, context)
        bw = nominal or measured
        roof = batch * bw / (w_bytes + kv_bytes)
        tps = batch / step_s
        rows.append({
            "batch": batch, "decode_tokens_per_s": round(tps, 1), "ms_per_step": round(step_s * 1e3, 2),
            "roofline_tokens_per_s": round(roof, 1), "fraction_of_roofline": round(tps / roof, 3),
            "weight_bytes": w_bytes, "kv_bytes_per_step": kv_bytes,
        })  # fmt: skip
        print(f"{batch:>5} {tps:>13.1f} {step_s * 1e3:>8.2f} {roof:>15.1f} {tps / roof:>11.1%}")
    return {
        "device": name,
        "parameters": n_params,
        "bandwidth_measured": measured,
        "bandwidth_nominal": nominal,
        "prompt_tokens": args.prompt_tokens,
        "new_tokens": args.new_tokens,
        "rows": rows,
    }


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="checkpoint for the CPU section (default: build the tiny model)")
    p.add_argument("--images", type=int, default=32, help="images scored per mode (default 32)")
    p.add_argument("--size", type=int, default=112, help="image side in pixels (default 112)")
    p.add_argument(
        "--batch-size", type=int, default=16, help="batch size of the batched mode (default 16)"
    )
    p.add_argument("--new-tokens", type=int, default=64, help="max new tokens (default 64)")
    p.add_argument("--attn-implementation", help="CPU: sdpa (transformers' default) or eager")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per mode; the median is kept")
    p.add_argument(
        "--prompt-tokens", type=int, default=256, help="GPU: prompt length (default 256)"
    )
    p.add_argument(
        "--gpu-batch-sizes", type=lambda s: [int(x) for x in s.split(",")], default=[1, 8, 32]
    )
    p.add_argument("--skip-cpu", action="store_true", help="run the GPU section only")
    p.add_argument("--json", help="also write the figures to this JSON file")
    args = p.parse_args(argv)
    results: dict = {}
    if not args.skip_cpu:
        results["cpu"] = cpu_section(args)
    if torch.cuda.is_available():
        results["gpu"] = gpu_section(args)
    else:
        print("\n== GPU: skipped (CUDA not available)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
