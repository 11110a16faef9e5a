"""Every supported VLM family through every qponder stage: the compatibility matrix.

Run: ``.venv/bin/python benchmarks/families.py [--families qwen3_vl,gemma3] [--work DIR]
[--sft-steps 250] [--json matrix.json]``.

For each family, a tiny random model of that family (``qponder model tiny --family``)
goes through the real CLI, one subprocess per stage, on synthetic distortion data:

``build`` -> ``distill`` (synthetic teacher: the cold-start data) -> ``distill-hf`` (the
family's own model as an HF teacher on a few images: the teacher path runs, whatever a
random model answers) -> ``sft`` (CoT, full) -> ``sft-nocot`` -> ``sft-lora`` ->
``grpo`` (format, score and consistency rewards; the judge is a frozen copy of the policy,
the SFT model) -> ``grpo-lora`` -> ``eval``, ``score`` and ``serve`` (``qponder serve``
answering ``/v1/score`` over HTTP) of the GRPO model.

Each stage is checked on what it wrote, not only on its exit code: the checkpoint loads,
training logged a finite loss and every reward, eval and score wrote one row per image,
and, once SFT has taught the format, at least one answer parses and the expected score
was read at a digit token. The table printed at the end is the one in docs/models.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

STAGES = (
    "build",
    "distill",
    "distill-hf",
    "sft",
    "sft-nocot",
    "sft-lora",
    "grpo",
    "grpo-lora",
    "eval",
    "score",
    "serve",
)


@dataclass
class StageResult:
    """One stage of one family: ``ok``, the seconds it took and what was seen."""

    stage: str
    ok: bool
    seconds: float
    detail: str = ""


@dataclass
class ChainResult:
    """All stages of one family."""

    family: str
    stages: list[StageResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(s.ok for s in self.stages) and len(self.stages) == len(STAGES)

    def by_stage(self) -> dict[str, StageResult]:
        return {s.stage: s for s in self.stages}


class StageFailed(Exception):
    """A stage ran but its output is wrong, or its command failed."""


def qponder(*args: str, log: Path, timeout: float = 900) -> None:
    """Run ``python -m qponder.cli ARGS``; raise :class:`StageFailed` with the output's
    last lines when it exits non-zero."""
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, "-m", "qponder.cli", *args]
    with open(log, "wb") as out:
        proc = subprocess.run(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=env, timeout=timeout, check=False
        )
    if proc.returncode != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-3:]
        raise StageFailed(f"exit {proc.returncode}: {' | '.join(tail)}")


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _metrics(run: Path) -> list[dict]:
    return _rows(run / "metrics.jsonl")


def _check_checkpoint(path: Path) -> str:
    from qponder.models import load_model

    if not path.is_dir():
        raise StageFailed(f"{path} was not written")
    model, processor = load_model(path)
    return f"{type(model).__name__} + {type(processor).__name__}"


def _check_training(run: Path, rewards: tuple[str, ...] = ()) -> str:
    """A finite loss logged, every reward logged, a well-formed completion rewarded (the
    rewards read what the policy generated, with whatever its template opened), and a
    ``final`` checkpoint that loads."""
    logged = _metrics(run)
    losses = [m["loss"] for m in logged if isinstance(m.get("loss"), (int, float))]
    if not losses or not all(math.isfinite(x) for x in losses):
        raise StageFailed(f"{run}: no finite loss logged ({losses[:3]})")
    seen = {k for m in logged for k in m}
    missing = [r for r in rewards if not any(f"rewards/{r}" in k for k in seen)]
    if missing:
        raise StageFailed(f"{run}: rewards not logged: {missing}")
    detail = f"loss {losses[0]:.2f} -> {losses[-1]:.2f}"
    if "format" in rewards:
        well_formed = max(m.get("rewards/format/mean", 0.0) for m in logged)
        if well_formed <= 0:
            raise StageFailed(f"{run}: no rollout earned the format reward")
        detail += f", format reward up to {well_formed:.2f}"
    _check_checkpoint(run / "final")
    return detail


@dataclass
class Chain:
    """The stages of one family, sharing a work folder and the synthetic data."""

    family: str
    work: Path
    synth: Path
    sft_steps: int = 250
    variant_steps: int = 10  # --no-cot and LoRA SFT: the path runs and trains
    grpo_steps: int = 3
    n_eval: int = 8

    def path(self, name: str) -> Path:
        return self.work / name

    def log(self, stage: str) -> Path:
        return self.work / f"{stage}.log"

    @property
    def final(self) -> Path:
        """The model eval, score and serve use: GRPO's result."""
        return self.path("grpo") / "final"

    @property
    def data(self) -> str:
        return f"synthetic:{self.synth}"

    def build(self) -> str:
        qponder("model", "tiny", "--family", self.family, "--out", str(self.path("model")),
                log=self.log("build"))  # fmt: skip
        return _check_checkpoint(self.path("model"))

    def distill(self) -> str:
        out = self.path("cold.jsonl")
        qponder("distill", "--config", "tiny-demo", "--dataset", self.data, "--out", str(out),
                "--no-progress", log=self.log("distill"))  # fmt: skip
        kept = [r for r in _rows(out) if r.get("completion")]
        if not kept:
            raise StageFailed("no cold-start rows kept")
        return f"{len(kept)} cold-start rows"

    def distill_hf(self) -> str:
        out = self.path("cold-hf.jsonl")
        qponder("distill", "--config", "tiny-demo", "--dataset", self.data, "--teacher", "hf",
                "--model", str(self.path("model")), "--out", str(out), "--limit", "4",
                "--set", "distill.max_tokens=24", "--no-progress",
                log=self.log("distill-hf"))  # fmt: skip
        rows = _rows(out) + _rows(self.path("cold-hf.rejected.jsonl"))
        if len(rows) != 4:
            raise StageFailed(f"{len(rows)} kept or rejected rows for 4 images")
        errors = [r["detail"] for r in rows if r.get("reason") not in (None, "format", "score")]
        if errors:
            raise StageFailed(f"teacher errors: {errors[:2]}")
        return f"4 images answered by the {self.family} teacher (random weights)"

    def _sft(self, stage: str, steps: int, *extra: str) -> str:
        run = self.path(stage)
        qponder("sft", "--config", "tiny-demo", "--data", str(self.path("cold.jsonl")),
                "--model", str(self.path("model")), "--out", str(run),
                "--max-steps", str(steps), *extra, log=self.log(stage))  # fmt: skip
        return _check_training(run)

    def sft(self) -> str:
        """Long enough for the tiny model to learn the output format (eval checks it)."""
        return self._sft("sft", self.sft_steps)

    def sft_nocot(self) -> str:
        return self._sft("sft-nocot", self.variant_steps, "--no-cot")

    def sft_lora(self) -> str:
        return self._sft("sft-lora", self.variant_steps, "--set", "model.lora.enabled=true",
                         "--set", "model.lora.r=8", "--set", "model.lora.alpha=16",
                         "--set", "model.lora.merge_on_save=true")  # fmt: skip

    def _grpo(self, stage: str, *extra: str) -> str:
        run = self.path(stage)
        qponder("grpo", "--config", "tiny-demo", "--dataset", self.data,
                "--model", str(self.path("sft") / "final"), "--out", str(run),
                "--max-steps", str(self.grpo_steps),
                "--set", "grpo.trl.per_device_train_batch_size=4",
                "--set", "grpo.trl.num_generations=2",
                "--set", "grpo.trl.max_completion_length=160",
                "--set", "grpo.trl.temperature=0.7",
                "--set", "grpo.trl.logging_steps=1", *extra,
                log=self.log(stage))  # fmt: skip
        return _check_training(run, ("format", "score", "consistency"))

    def grpo(self) -> str:
        return self._grpo("grpo")

    def grpo_lora(self) -> str:
        return self._grpo("grpo-lora", "--set", "model.lora.enabled=true",
                          "--set", "model.lora.r=8", "--set", "model.lora.alpha=16")  # fmt: skip

    def eval(self) -> str:
        out = self.path("eval")
        qponder("eval", "--config", "tiny-demo", "--model", str(self.final),
                "--dataset", self.data, "--split", "test", "--limit", str(self.n_eval),
                "--out", str(out), "--set", "eval.max_new_tokens=160",
                log=self.log("eval"))  # fmt: skip
        rows = [r for f in out.glob("predictions*.jsonl") for r in _rows(f)]
        if len(rows) != self.n_eval:
            raise StageFailed(f"{len(rows)} prediction rows for {self.n_eval} images")
        parsed = [r for r in rows if r.get("score") is not None]
        read = [r for r in rows if r.get("expected_score") is not None]
        if 2 * len(parsed) < len(rows):
            raise StageFailed(f"{len(parsed)}/{len(rows)} answers parsed (format not learnt)")
        if not read:
            reasons = sorted({str(r.get("expected_score_reason")) for r in rows})
            raise StageFailed(f"no expected score read at a digit token ({reasons})")
        return f"{len(parsed)}/{len(rows)} parsed, {len(read)} read-outs"

    def score(self) -> str:
        out = self.path("scores.jsonl")
        images = self.synth / "images"
        qponder("score", str(images), "--config", "tiny-demo",
                "--model", str(self.final), "--out", str(out),
                "--set", "eval.max_new_tokens=160", log=self.log("score"))  # fmt: skip
        rows = _rows(out)
        n_images = sum(1 for _ in images.iterdir())
        if len(rows) != n_images:
            raise StageFailed(f"{len(rows)} rows for {n_images} images")
        return f"{len(rows)} images scored"

    def serve(self) -> str:
        from PIL import Image

        from qponder.client import ScoreClient

        port = _free_port()
        cmd = [sys.executable, "-m", "qponder.cli", "serve", "--model",
               str(self.final), "--port", str(port),
               "--set", "eval.max_new_tokens=160"]  # fmt: skip
        env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
        with open(self.log("serve"), "wb") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            with ScoreClient(f"http://127.0.0.1:{port}") as client:
                client.wait_until_ready(timeout=300)
                image = next((self.synth / "images").iterdir())
                results = client.score([Image.open(image).convert("RGB")] * 2)
            from qponder.parsing import PARSE_FAILURES

            if len(results) != 2 or any(r.error and r.error not in PARSE_FAILURES for r in results):
                raise StageFailed(f"bad answers: {results}")
            first = results[0]
            return f"/v1/score answered: score {first.score}, expected {first.expected_score}"
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()

    def steps(self) -> dict[str, Callable[[], str]]:
        return {
            "build": self.build,
            "distill": self.distill,
            "distill-hf": self.distill_hf,
            "sft": self.sft,
            "sft-nocot": self.sft_nocot,
            "sft-lora": self.sft_lora,
            "grpo": self.grpo,
            "grpo-lora": self.grpo_lora,
            "eval": self.eval,
            "score": self.score,
            "serve": self.serve,
        }


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# stages whose failure makes later ones meaningless
_NEEDED_BY = {"build": STAGES[1:], "distill": STAGES[3:], "sft": STAGES[6:],
              "grpo": STAGES[8:]}  # fmt: skip


def make_synthetic(folder: Path, n: int = 160) -> Path:
    """Synthetic distortion data for the chains (``qponder data synth``)."""
    if not (folder / "images").is_dir():
        qponder("data", "synth", "--out", str(folder), "--n", str(n), "--size", "96",
                log=folder.parent / "synth.log")  # fmt: skip
    return folder


def run_chain(family: str, work: Path, synth: Path, **kwargs: int) -> ChainResult:
    """Run every stage for ``family``; a stage that fails is recorded with its reason, and
    the stages that need its output are recorded as not run."""
    work.mkdir(parents=True, exist_ok=True)
    chain = Chain(family, work, synth, **kwargs)
    result = ChainResult(family)
    skipped: dict[str, str] = {}
    for stage, step in chain.steps().items():
        if stage in skipped:
            result.stages.append(StageResult(stage, False, 0.0, skipped[stage]))
            continue
        start = time.perf_counter()
        try:
            detail, ok = step(), True
        except (StageFailed, subprocess.TimeoutExpired, OSError, RuntimeError) as exc:
            detail, ok = f"{type(exc).__name__}: {exc}"[:400], False
        seconds = time.perf_counter() - start
        result.stages.append(StageResult(stage, ok, round(seconds, 1), detail))
        print(f"[{family}] {stage}: {'ok' if ok else 'FAILED'} ({seconds:.0f} s) {detail}",
              flush=True)  # fmt: skip
        if not ok:
            for later in _NEEDED_BY.get(stage, ()):
                skipped.setdefault(later, f"not run: {stage} failed")
    return result


def matrix(results: list[ChainResult]) -> str:
    """The family x stage table (Markdown): ``ok`` with seconds, or ``FAILED``."""
    head = "| family | " + " | ".join(STAGES) + " |"
    rule = "|---" * (len(STAGES) + 1) + "|"
    lines = [head, rule]
    for r in results:
        cells = r.by_stage()
        row = [
            (f"ok ({cells[s].seconds:.0f} s)" if cells[s].ok else "**FAILED**")
            if s in cells
            else "-"
            for s in STAGES
        ]
        lines.append(f"| {r.family} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from qponder.models.families import FAMILY_NAMES

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--families", default=",".join(FAMILY_NAMES), help="comma-separated")
    p.add_argument("--work", default=None, help="work folder (default: a temporary one)")
    p.add_argument("--sft-steps", type=int, default=250)
    p.add_argument("--grpo-steps", type=int, default=3)
    p.add_argument("--json", default=None, help="also write the results as JSON here")
    args = p.parse_args(argv)
    families = [f for f in args.families.split(",") if f]
    unknown = [f for f in families if f not in FAMILY_NAMES]
    if unknown:
        print(f"--families: unknown {unknown}; known: {', '.join(FAMILY_NAMES)}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        synth = make_synthetic(work / "synth")
        results = [
            run_chain(f, work / f, synth, sft_steps=args.sft_steps, grpo_steps=args.grpo_steps)
            for f in families
        ]
    print()
    print(matrix(results))
    for r in results:
        for s in r.stages:
            if not s.ok:
                print(f"- {r.family} {s.stage}: {s.detail}")
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in results], indent=2))
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
