"""``qponder distill``: ask a teacher about every training image, keep the answers that agree
with the human MOS, and write them as cold-start data for ``qponder sft``.

Files, for ``--out FILE.jsonl``:

- ``FILE.jsonl``: kept records ``{id, image, mos, prompt, completion, teacher_score,
  teacher_scores, teacher, prompt_version}``; ``prompt`` is the student's instruction and
  ``completion`` the teacher's reasoning and score in the output contract.
- ``FILE.rejected.jsonl``: every other image, with a ``reason`` (``score_mismatch``,
  ``format``, ``mos_leak``, ``teacher_error``, ``bad_image``) and a ``detail``.
- ``FILE.report.json``: counts by reason, the teacher's own SRCC/PLCC against the MOS,
  retries, and the settings; rewritten at the start and at the end of every run.

Every image ends in exactly one of the two JSONL files, one durable line each, so a run can
be stopped at any moment (Ctrl-C, ``kill -9``, a crash) and run again with the same command:
it skips the images already in either file and goes on. ``teacher_error`` rejects are the
exception worth retrying: ``retry_errors=True`` (``--retry-errors``) processes them again.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qponder.config import ConfigError, ModelConfig, Recipe
from qponder.distill.base import (
    Teacher,
    TeacherError,
    TeacherFatalError,
    TeacherRequest,
    TeacherStoppedError,
)
from qponder.distill.filtering import BAD_IMAGE, TEACHER_ERROR, judge_replies
from qponder.errors import BadImageError, QponderError
from qponder.progress import DEFAULT_INTERVAL, Progress
from qponder.prompts import PromptSet, load_prompts, teacher_prompt
from qponder.runfiles import Journal, RunFileError, check_resume, read_json, write_json_atomic

logger = logging.getLogger(__name__)

# Stop when this many images in a row fail with teacher errors: the endpoint is down, and
# going on would only mark the rest of the dataset as failed.
MAX_CONSECUTIVE_TEACHER_ERRORS = 20
# Settings that must match to resume into existing files.
_RESUME_KEYS = (
    "teacher",
    "mode",
    "tolerance",
    "samples",
    "prompt_version",
    "dataset",
    "dataset_root",
    "split",
)


@dataclass(frozen=True)
class OutputPaths:
    """The files of one distillation."""

    kept: Path
    rejected: Path
    report: Path

    @classmethod
    def for_out(cls, out: str | os.PathLike) -> OutputPaths:
        kept = Path(out)
        stem = kept.name[: -len(".jsonl")] if kept.name.endswith(".jsonl") else kept.name
        return cls(
            kept=kept,
            rejected=kept.with_name(f"{stem}.rejected.jsonl"),
            report=kept.with_name(f"{stem}.report.json"),
        )


def build_teacher(recipe: Recipe) -> Teacher:
    """Build the teacher named by ``recipe.distill.teacher``.

    Raises:
        ConfigError: A setting the teacher needs is missing.
    """
    cfg = recipe.distill
    if cfg.teacher == "synthetic":
        from qponder.distill.synthetic import SyntheticTeacher

        return SyntheticTeacher(error_rate=cfg.error_rate, seed=cfg.seed)
    if cfg.teacher == "openai":
        from qponder.distill.openai_teacher import OpenAITeacher

        return OpenAITeacher(
            cfg.model,
            cfg.base_url,
            api_key_env=cfg.api_key_env,
            concurrency=cfg.concurrency,
            timeout=cfg.timeout,
            max_retries=cfg.max_retries,
            retry_backoff=cfg.retry_backoff,
            max_side=cfg.max_side,
            temperature=cfg.temperature,
            max_tokens=cfg.max_tokens,
        )
    if cfg.teacher == "hf":
        from qponder.distill.hf_teacher import HFTeacher

        if not cfg.model:
            raise ConfigError("distill.teacher=hf needs distill.model (--model PATH)")
        # the student's loading options (dtype, device map, attention, pixels), not its LoRA
        model_config = ModelConfig(
            path=cfg.model,
            dtype=recipe.model.dtype,
            device_map=recipe.model.device_map,
            attn_implementation=recipe.model.attn_implementation,
            trust_remote_code=recipe.model.trust_remote_code,
            min_pixels=recipe.model.min_pixels,
            max_pixels=recipe.model.max_pixels,
        )
        return HFTeacher.load(
            cfg.model,
            model_config,
            batch_size=cfg.batch_size,
            max_side=cfg.max_side,
            temperature=cfg.temperature,
            max_tokens=cfg.max_tokens,
        )
    raise ConfigError(f"distill.teacher: unknown teacher {cfg.teacher!r}")


def _correlations(pred: Sequence[float], mos: Sequence[float]) -> dict[str, Any]:
    """SRCC and PLCC (after the 4-parameter logistic fit) of the teacher's scores against the
    MOS; ``None`` where undefined (fewer than 3 images, constant scores)."""
    from qponder.evaluation.metrics import plcc, srcc

    out: dict[str, Any] = {"n": len(pred), "srcc": None, "plcc": None, "plcc_fit": "logistic4"}
    if len(pred) < 3 or len(set(pred)) < 2 or len(set(mos)) < 2:
        return out
    for key, value in (("srcc", srcc(pred, mos)), ("plcc", plcc(pred, mos, fit="logistic4"))):
        out[key] = round(float(value), 4) if math.isfinite(value) else None
    return out


class Tally:
    """What the journals hold, updated as records are appended."""

    def __init__(self) -> None:
        self.kept = 0
        self.rejected: Counter = Counter()
        self.scored: dict[str, tuple[float, float]] = {}  # id -> (mean teacher score, mos)
        self.kept_errors: list[float] = []

    def add(self, record: dict[str, Any], kept: bool) -> None:
        if kept:
            self.kept += 1
            self.kept_errors.append(abs(record["teacher_score"] - record["mos"]))
        else:
            self.rejected[record.get("reason", "unknown")] += 1
        scores = record.get("teacher_scores") or []
        if scores:
            self.scored[str(record["id"])] = (sum(scores) / len(scores), float(record["mos"]))

    def summary(self) -> dict[str, Any]:
        n_rejected = sum(self.rejected.values())
        done = self.kept + n_rejected
        pred = [p for p, _ in self.scored.values()]
        mos = [m for _, m in self.scored.values()]
        return {
            "kept": self.kept,
            "rejected": n_rejected,
            "rejected_by_reason": dict(self.rejected.most_common()),
            "keep_rate": round(self.kept / done, 4) if done else None,
            "kept_mean_abs_error": (
                round(sum(self.kept_errors) / len(self.kept_errors), 4)
                if self.kept_errors
                else None
            ),
            # the teacher's own accuracy: mean of its parsed answers, before any filtering
            "teacher_vs_mos": _correlations(pred, mos),
        }


def distill_record(sample: Any, teacher: str, prompts: PromptSet, **fields: Any) -> dict[str, Any]:
    """One journal line for ``sample``: its id, image and MOS, ``fields``, the teacher's
    name and the prompt version."""
    return {
        "id": sample.id,
        "image": str(sample.image_path),
        "mos": float(sample.mos),
        **fields,
        "teacher": teacher,
        "prompt_version": prompts.version,
    }


def reject_record(
    sample: Any,
    teacher: str,
    prompts: PromptSet,
    reason: str,
    detail: str,
    score: float | None = None,
    scores: list[float] | None = None,
) -> dict[str, Any]:
    """The rejected-journal line of ``sample``, with its reason and detail."""
    return distill_record(sample, teacher, prompts, reason=reason, detail=detail,
                          teacher_score=score, teacher_scores=scores or [])  # fmt: skip


def verdict_record(
    sample: Any, teacher: str, prompts: PromptSet, verdict: Any
) -> tuple[dict[str, Any], bool]:
    """The journal line a filter verdict gives ``sample``, and whether it is kept."""
    if not verdict.kept:
        record = reject_record(sample, teacher, prompts, verdict.reason, verdict.detail,
                               verdict.teacher_score, verdict.teacher_scores)  # fmt: skip
        return record, False
    record = distill_record(
        sample,
        teacher,
        prompts,
        prompt=prompts.student_instruction,
        completion=verdict.completion,
        teacher_score=verdict.teacher_score,
        teacher_scores=verdict.teacher_scores,
    )
    return record, True


class _Run:
    """One distillation: state shared by the workers (all on one event loop)."""

    def __init__(
        self, recipe: Recipe, prompts: PromptSet, kept: Journal, rejected: Journal, tally: Tally
    ) -> None:
        self.recipe = recipe
        self.cfg = recipe.distill
        self.prompts = prompts
        self.kept, self.rejected = kept, rejected
        self.tally = tally
        self.teacher: Teacher | None = None
        self.progress: Progress | None = None
        self.processed = 0
        self.consecutive_errors = 0
        self.started = time.monotonic()

    async def main(
        self,
        pending: Sequence[Any],
        total: int,
        paths: OutputPaths,
        report: dict[str, Any],
        dataset: str,
        split: Any,
        *,
        root: str | None,
        resuming: bool,
        progress: float | None,
    ) -> None:
        """Start the teacher, check the settings against the files, process ``pending``;
        ``progress`` is the interval of the progress lines (None: no progress)."""
        self.teacher = build_teacher(self.recipe)
        try:
            await self.teacher.start()
            settings = run_settings(
                self.recipe, self.teacher.name, self.prompts, dataset, split, root
            )
            if resuming:
                check_settings(paths, settings)
            report["settings"] = settings
            write_json_atomic(paths.report, report)
            self.started = time.monotonic()
            self.progress = Progress(total, "distill", initial=total - len(pending),
                                     enabled=progress is not None, interval=progress or 0)  # fmt: skip
            try:
                if pending:
                    await self.drive(pending)
            finally:
                self.progress.close()
        finally:
            await self.teacher.aclose()

    def summary(self) -> dict[str, Any]:
        """This run's own numbers (the files may hold earlier runs too)."""
        elapsed = time.monotonic() - self.started
        return {
            "processed": self.processed,
            "elapsed_s": round(elapsed, 2),
            "images_per_s": round(self.processed / elapsed, 3) if elapsed > 0 else None,
            "teacher": self.teacher.stats.to_dict() if self.teacher else None,
        }

    def _reject(self, sample: Any, reason: str, detail: str) -> tuple[dict[str, Any], bool]:
        return reject_record(sample, self.teacher.name, self.prompts, reason, detail), False

    async def process(self, sample: Any) -> tuple[dict[str, Any], bool]:
        """Return the record for one image and whether it is kept."""
        from qponder.data import load_image

        try:
            image = await asyncio.to_thread(
                load_image, sample.image_path, max_side=self.cfg.max_side
            )
        except BadImageError as exc:
            return self._reject(sample, BAD_IMAGE, str(exc))
        problem = self.teacher.image_problem(image)
        if problem is not None:
            detail = (
                f"{problem}: the teacher's image processor refuses {image.size[0]}x{image.size[1]}"
            )
            return self._reject(sample, BAD_IMAGE, detail)
        mos = float(sample.mos)
        guided = self.cfg.mode == "guided"
        prompt = teacher_prompt(self.prompts, self.cfg.mode, mos if guided else None)
        system = self.prompts.teacher_system
        try:
            replies = await self.teacher.generate(
                TeacherRequest(sample, image, system, prompt, self.cfg.samples)
            )
        except TeacherError as exc:
            return self._reject(sample, TEACHER_ERROR, str(exc))
        verdict = judge_replies(replies, mos, self.cfg.tolerance, self.cfg.mode)
        return verdict_record(sample, self.teacher.name, self.prompts, verdict)

    def commit(self, record: dict[str, Any], kept: bool) -> None:
        """Write one record durably, count it, and stop the run if the teacher is down."""
        (self.kept if kept else self.rejected).append(record)
        self.tally.add(record, kept)
        self.processed += 1
        # the counts first: a line that the update writes shows them
        self.progress.set_postfix(kept=self.tally.kept, rejected=sum(self.tally.rejected.values()))
        self.progress.update(1)
        if record.get("reason") == TEACHER_ERROR:
            self.consecutive_errors += 1
            if self.consecutive_errors >= MAX_CONSECUTIVE_TEACHER_ERRORS:
                raise TeacherStoppedError(
                    f"the teacher failed on {self.consecutive_errors} images in a row (last: "
                    f"{record['detail']}); stopped. Once it works again, re-run the same "
                    "command with --retry-errors to retry the failed images"
                )
        else:
            self.consecutive_errors = 0

    async def drive(self, pending: Sequence[Any]) -> None:
        """Process ``pending`` with up to ``teacher.max_in_flight`` images at once."""
        queue = iter(pending)

        async def worker() -> None:
            for sample in queue:  # one shared iterator: each sample goes to one worker
                record, kept = await self.process(sample)
                self.commit(record, kept)

        n_workers = max(1, min(self.teacher.max_in_flight, len(pending)))
        tasks = [asyncio.ensure_future(worker()) for _ in range(n_workers)]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()  # re-raise the first failure
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


def run_settings(
    recipe: Recipe, teacher: str, prompts: PromptSet, dataset: str, split: Any, root: Any
) -> dict:
    """The settings a distillation output is made with (recorded in its report)."""
    cfg = recipe.distill
    return {
        "teacher": teacher,
        "mode": cfg.mode,
        "tolerance": cfg.tolerance,
        "samples": cfg.samples,
        "prompt_version": prompts.version,
        "dataset": dataset,
        "dataset_root": root,
        "split": split,
        "temperature": cfg.temperature,
        "max_tokens": cfg.max_tokens,
        "max_side": cfg.max_side,
    }


def check_settings(paths: OutputPaths, settings: dict[str, Any]) -> None:
    """Refuse to mix records made with different settings (or images) in one file."""
    if not paths.report.exists():
        return
    try:
        previous = read_json(paths.report).get("settings") or {}
    except RunFileError:
        return  # a report is rewritten at every start; the journals are the truth
    keys = [k for k in _RESUME_KEYS if k in previous]
    check_resume(paths.kept, {k: previous[k] for k in keys}, {k: settings.get(k) for k in keys})


def dataset_root(dataset: Any) -> str | None:
    """The resolved folder or file behind a ``NAME:PATH`` spec (None for loaded datasets)."""
    if not isinstance(dataset, (str, os.PathLike)):
        return None
    _, _, path = str(dataset).partition(":")
    return os.path.realpath(path) if path else None


def load_samples(dataset: Any, split: str | None, limit: int | None) -> tuple[str, list[Any]]:
    """The dataset's name and samples (``limit`` applied); ids must be unique."""
    if isinstance(dataset, (str, os.PathLike)):
        from qponder.data import load_dataset

        loaded = load_dataset(str(dataset), split=split)
        name, samples = getattr(loaded, "name", str(dataset)), list(loaded.samples)
    elif hasattr(dataset, "samples"):
        name, samples = getattr(dataset, "name", "dataset"), list(dataset.samples)
    else:
        name, samples = "samples", list(dataset)
    ids = [str(s.id) for s in samples]
    if len(set(ids)) != len(ids):
        dup = next(i for i, c in Counter(ids).items() if c > 1)
        raise QponderError(f"dataset {name}: duplicate sample id {dup!r}; ids must be unique")
    return name, samples[:limit] if limit is not None else samples


def run_distillation(
    recipe: Recipe,
    dataset: Any,
    split: str | None = "train",
    out: str | os.PathLike = "cold_start.jsonl",
    limit: int | None = None,
    *,
    retry_errors: bool = False,
    progress: bool = True,
    progress_interval: float = DEFAULT_INTERVAL,
) -> dict[str, Any]:
    """Distil cold-start data from the teacher of ``recipe.distill``; resumable.

    Args:
        recipe: The run's recipe (``distill`` section, ``prompts`` overrides, ``model``
            loading options for a local teacher).
        dataset: A ``NAME:PATH`` spec for ``qponder.data.load_dataset``, a loaded dataset
            (with ``.samples``), or a list of samples.
        split: Split to distil (ignored when ``dataset`` is already loaded).
        out: The kept records' JSONL; rejects and the report are written beside it.
        limit: Process at most the first ``limit`` samples.
        retry_errors: Process the images rejected with ``teacher_error`` again.
        progress: Show the progress on stderr: tqdm's bar on a terminal, elsewhere (a
            scheduler's log) a line every ``progress_interval`` seconds.
        progress_interval: Seconds between two progress lines (see
            :class:`qponder.progress.Progress`).

    Returns:
        The report, also written to ``FILE.report.json``.

    Raises:
        TeacherFatalError: The teacher cannot work (bad key, unknown model) or failed on
            too many images in a row. Everything written so far is kept.
        ConfigError: The existing files were made with other settings.
    """
    prompts = load_prompts(recipe.prompts)
    name, samples = load_samples(dataset, split, limit)
    with open_outputs(out, retry_errors) as outputs:
        paths, tally, done = outputs.paths, outputs.tally, outputs.done
        pending = [s for s in samples if str(s.id) not in done]
        report: dict[str, Any] = {
            "status": "running",
            "out": str(paths.kept),
            "rejected_file": str(paths.rejected),
            "total": len(samples),
            "already_done": len(samples) - len(pending),
        }
        run = _Run(recipe, prompts, outputs.kept, outputs.rejected, tally)
        status = "interrupted"
        try:
            asyncio.run(
                run.main(
                    pending,
                    len(samples),
                    paths,
                    report,
                    name,
                    split,
                    root=dataset_root(dataset),
                    resuming=bool(done),
                    progress=progress_interval if progress else None,
                )
            )
            status = "complete"
        except TeacherFatalError as exc:
            status, report["error"] = "aborted", str(exc)
            raise
        finally:
            if "settings" in report:  # not when the run was refused before it started
                this_run = run.summary()
                report.update(status=status, **tally.summary())
                report["this_run"] = this_run
                write_json_atomic(paths.report, report)
        return report


@dataclass
class Outputs:
    """The open journals of one distillation output, and what they already hold."""

    paths: OutputPaths
    kept: Journal
    rejected: Journal
    tally: Tally
    done: set[str]

    def commit(self, record: dict[str, Any], kept: bool) -> None:
        """Append one record durably to its journal and count it."""
        (self.kept if kept else self.rejected).append(record)
        self.tally.add(record, kept)
        self.done.add(str(record["id"]))


@contextmanager
def open_outputs(out: str | os.PathLike, retry_errors: bool = False) -> Iterator[Outputs]:
    """Lock and recover the journals of ``out`` for one run (live or batch): a torn last
    line is cut, ``teacher_error`` rejects are dropped with ``retry_errors``, and a second
    run on the same output fails at once."""
    paths = OutputPaths.for_out(out)
    kept, rejected = Journal(paths.kept), Journal(paths.rejected)
    kept.open(lock=True)  # before reading, so that two runs cannot both start
    try:
        kept_records, rejected_records = kept.recover(), rejected.recover()
        if retry_errors:
            rejected_records = [r for r in rejected_records if r.get("reason") != TEACHER_ERROR]
            rejected.rewrite(rejected_records)
        rejected.open()
        tally = Tally()
        for r in kept_records:
            tally.add(r, True)
        for r in rejected_records:
            tally.add(r, False)
        done = {str(r["id"]) for r in kept_records + rejected_records}
        yield Outputs(paths, kept, rejected, tally, done)
    finally:
        kept.close()
        rejected.close()


__all__ = ["OutputPaths", "build_teacher", "run_distillation"]  # and the helpers batch.py shares
