"""Thread policies of a qponder process on a shared machine: which default does not
collapse when other jobs share the cores.

A user's ``qponder score`` (or a training run) rarely has the machine to itself. PyTorch
starts one intra-op thread per core and OpenMP's threads spin while they wait for work; with
other threaded jobs on the same cores, the spinning threads and the neighbours take turns
and the run slows down by several times. This benchmark measures it:

- the workload: ``qponder score`` of ``--images`` synthetic images with the tiny model (the
  whole process: start-up, load, generate, write), or ``--workload sft`` (a few SFT steps);
- the policies, each applied before torch is imported (a worker process): ``default``
  (what a user gets without settings), ``threads1`` (one intra-op thread), ``passive``
  (OpenMP threads sleep instead of spinning while they wait: ``OMP_WAIT_POLICY=PASSIVE``),
  ``interop1`` (one inter-op thread) and ``threads1+passive``;
- the neighbours, bounded (they end themselves): none, ``busy`` (pure-Python busy loops),
  and ``torch1``..``torch3`` (other torch jobs with their default threads, the case that
  hurts: a second ``score``, a training run);
- pairing: within each neighbour setting the policies run in turn, round after round, and
  each policy's time is set against ``default``'s in the same round (ratios are robust to
  the machine's drift; quote medians).

Run: ``.venv/bin/python benchmarks/bench_threads.py [--rounds 5] [--json FILE]``. It prints a
table of median seconds per policy and neighbour setting, and the median of the paired
ratios against ``default``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

POLICIES: dict[str, dict[str, str]] = {
    "default": {},
    "threads1": {"OMP_NUM_THREADS": "1"},
    "passive": {"OMP_WAIT_POLICY": "PASSIVE"},
    "interop1": {"QPONDER_BENCH_INTEROP": "1"},
    "threads1+passive": {"OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"},
}
# the thread settings a user's environment may carry; cleared so that "default" is default
_THREAD_VARS = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "MKL_NUM_THREADS", "GOMP_SPINCOUNT")

_BUSY = "import time\nend = time.time() + {s}\nwhile time.time() < end:\n    pass\n"
_TORCH = (
    "import time, torch\nend = time.time() + {s}\na = torch.randn(384, 384)\n"
    "while time.time() < end:\n    a = torch.tanh(a @ a)\n"
)


def _setup(work: Path, n_images: int) -> tuple[Path, Path, Path]:
    """The tiny model, the images and a cold-start file (built once)."""
    from qponder.data.synthetic import make_synthetic_dataset
    from qponder.models.tiny import build_tiny_model

    model = work / "tiny"
    if not (model / "config.json").is_file():
        build_tiny_model(model, seed=0)
    images = work / "images"
    if not images.is_dir():
        make_synthetic_dataset(images, n=n_images, seed=0)
    cold = work / "cold.jsonl"
    if not cold.is_file():
        from qponder.cli import main

        main(["distill", "--dataset", f"synthetic:{images}", "--split", "train",
              "--out", str(cold), "--no-progress"])  # fmt: skip
    return model, images, cold


def _workload(kind: str, model: Path, images: Path, cold: Path, out: Path) -> list[str]:
    """qponder's arguments for one run of the workload, writing under ``out``."""
    if kind == "score":
        return ["score", str(images), "--model", str(model), "--out", str(out / "s.jsonl"),
                "--config", "tiny-demo", "--batch-size", "8"]  # fmt: skip
    return ["sft", "--data", str(cold), "--model", str(model), "--out", str(out / "sft"),
            "--config", "tiny-demo", "--max-steps", "20",
            "--set", "sft.validation.dataset=null"]  # fmt: skip


def _worker(argv: list[str]) -> None:
    """Apply the policy the environment names, then run qponder in this process."""
    if os.environ.get("QPONDER_BENCH_INTEROP"):
        import torch

        torch.set_num_interop_threads(int(os.environ["QPONDER_BENCH_INTEROP"]))
    from qponder.cli import main

    code = main(argv)
    if code:
        raise SystemExit(code)


def _neighbours(kind: str, seconds: float) -> list[subprocess.Popen]:
    if kind == "none":
        return []
    n = 2 if kind == "busy" else int(kind.removeprefix("torch"))
    code = (_BUSY if kind == "busy" else _TORCH).format(s=seconds)
    env = {k: v for k, v in os.environ.items() if k not in _THREAD_VARS}
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env) for _ in range(n)]
    time.sleep(1.0 if kind == "busy" else 3.0)  # let torch neighbours import and spin up
    return procs


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.kill()
    for p in procs:
        p.wait()


def _run_once(policy: str, argv: list[str], timeout: float) -> float:
    env = {k: v for k, v in os.environ.items() if k not in _THREAD_VARS}
    env.update(POLICIES[policy], TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1")
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", "--", *argv],
        env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    if proc.returncode:
        raise RuntimeError(f"{policy}: exit {proc.returncode}: {proc.stderr[-2000:]}")
    return seconds


def measure(args: argparse.Namespace) -> dict[str, dict[str, list[float]]]:
    """Seconds per run: neighbours -> policy -> runs (policies in turn, round by round)."""
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-threads-"))
    model, images, cold = _setup(work, args.images)
    results: dict[str, dict[str, list[float]]] = {}
    for load in args.neighbours:
        results[load] = {p: [] for p in args.policies}
        budget = args.rounds * len(args.policies) * args.timeout + 30
        procs = _neighbours(load, budget)
        try:
            for r in range(args.rounds):
                for policy in args.policies:
                    out = work / "runs" / f"{load}-{policy}-{r}"
                    argv = _workload(args.workload, model, images, cold, out)
                    results[load][policy].append(_run_once(policy, argv, args.timeout))
                print(f"{load}: round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)
        finally:
            _stop(procs)
    return results


def summarise(results: dict[str, dict[str, list[float]]]) -> list[dict]:
    """Median seconds and the median paired ratio against ``default``, per cell."""
    rows = []
    for load, by_policy in results.items():
        base = by_policy.get("default")
        for policy, runs in by_policy.items():
            ratio = None
            if base:
                ratio = statistics.median(a / b for a, b in zip(runs, base, strict=True))
            rows.append({"neighbours": load, "policy": policy, "runs": len(runs),
                         "median_s": statistics.median(runs), "min_s": min(runs),
                         "max_s": max(runs), "ratio_to_default": ratio})  # fmt: skip
    return rows


def main() -> None:
    if "--worker" in sys.argv:
        _worker(sys.argv[sys.argv.index("--") + 1 :])
        return
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workload", choices=["score", "sft"], default="score")
    p.add_argument("--images", type=int, default=16, help="synthetic images (default 16)")
    p.add_argument("--rounds", type=int, default=5, help="runs of each policy (default 5)")
    p.add_argument("--policies", nargs="+", default=list(POLICIES), choices=list(POLICIES))
    p.add_argument("--neighbours", nargs="+", default=["none", "busy", "torch1", "torch2"],
                   choices=["none", "busy", "torch1", "torch2", "torch3"])  # fmt: skip
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per run at most")
    p.add_argument("--work", help="folder for the model, images and outputs (default: temp)")
    p.add_argument("--json", help="also write the raw runs and the table here")
    args = p.parse_args()
    print(f"machine: {os.cpu_count()} CPUs; workload {args.workload}; {args.rounds} rounds")
    rows = summarise(measure(args))
    print(
        f"{'neighbours':<10} {'policy':<17} {'median s':>9} {'min':>7} {'max':>7} {'/default':>9}"
    )
    for r in rows:
        ratio = "" if r["ratio_to_default"] is None else f"{r['ratio_to_default']:.2f}"
        print(f"{r['neighbours']:<10} {r['policy']:<17} {r['median_s']:>9.2f} "
              f"{r['min_s']:>7.2f} {r['max_s']:>7.2f} {ratio:>9}")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
