"""A teacher loaded locally with transformers, generating for several images at once.

The runner asks for one image at a time, concurrently; this teacher queues the requests
and runs them through ``model.generate`` in batches of up to ``batch_size`` images (with
``num_return_sequences = n``), in a worker thread so that image loading goes on meanwhile.
Prompts are built with the processor's chat template, as the model was trained.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from qponder.answer_format import opened_by_template
from qponder.distill.base import Teacher, TeacherError, TeacherReply, TeacherRequest, downscale
from qponder.models.generation import HFEngine, template_messages
from qponder.models.processors import image_problem

_FILL_WAIT = 0.05  # seconds a batch waits for more requests before it runs


class HFTeacher(Teacher):
    """A local chat VLM as the teacher.

    Args:
        model: A loaded ``transformers`` model with ``generate``.
        processor: Its processor (chat template, tokenizer, image processor).
        name: Recorded in every row, e.g. ``"hf:/models/Qwen2.5-VL-72B-Instruct"``.
        batch_size: Images per ``generate`` call.
        max_side: Longest image side, in pixels, before the processor's own resizing.
        temperature: Sampling temperature; 0 means greedy decoding.
        max_tokens: ``max_new_tokens`` of each answer.
    """

    def __init__(
        self,
        model: Any,
        processor: Any,
        *,
        name: str = "hf",
        batch_size: int = 4,
        max_side: int = 1024,
        temperature: float = 0.7,
        max_tokens: int = 1024,
    ) -> None:
        super().__init__()
        self.model = model
        self.processor = processor
        self.name = name
        self.batch_size = batch_size
        self.max_in_flight = 2 * batch_size  # keeps the next batch loaded while one runs
        self.max_side = max_side
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.batch_sizes: list[int] = []  # images per generate call, for the report and tests
        self.engine = HFEngine(model, processor)
        self._queue: asyncio.Queue | None = None
        self._worker: asyncio.Task | None = None

    @classmethod
    def load(cls, path: str, model_config: Any, **kwargs: Any) -> HFTeacher:
        """Load the model at ``path`` with ``qponder.models.load_model``."""
        from qponder.models import load_model

        model, processor = load_model(path, model_config)
        model.eval()
        return cls(model, processor, name=f"hf:{path}", **kwargs)

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._worker = asyncio.ensure_future(self._serve())

    async def generate(self, request: TeacherRequest) -> list[TeacherReply]:
        if self._queue is None:
            await self.start()
        future = asyncio.get_running_loop().create_future()
        await self._queue.put((request, future))
        return await future

    async def _serve(self) -> None:
        assert self._queue is not None
        while True:
            batch = [await self._queue.get()]
            if self._queue.qsize() < self.batch_size - 1:
                await asyncio.sleep(_FILL_WAIT)  # let requests whose images are loading join
            while len(batch) < self.batch_size and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            batch = [(r, f) for r, f in batch if not f.done()]
            for n in sorted({r.n for r, _ in batch}):
                await self._answer([(r, f) for r, f in batch if r.n == n])

    async def _answer(self, group: list[tuple[TeacherRequest, asyncio.Future]]) -> None:
        """Generate for ``group`` in one call; when that fails, for each request alone, so
        that an image the model cannot take fails alone (its reject names why)."""
        try:
            replies = await asyncio.to_thread(self._generate_batch, [r for r, _ in group])
        except Exception as exc:  # noqa: BLE001 - e.g. a processor limit, out of memory
            if len(group) > 1:
                for one in group:
                    await self._answer([one])
                return
            self.stats.failures["generation"] += 1
            if not group[0][1].done():
                group[0][1].set_exception(
                    TeacherError("generation", f"{type(exc).__name__}: {exc}")
                )
            return
        for (_, f), r in zip(group, replies, strict=True):
            if not f.done():
                f.set_result(r)

    def image_problem(self, image: Any) -> str | None:
        """Why the model's processor refuses ``image`` as the teacher is shown it, or None."""
        return image_problem(self.processor, downscale(image, self.max_side).size)

    def _decoding(self) -> dict[str, Any]:
        """The teacher's sampling settings (``distill.temperature``; 0 = greedy), and nothing
        more: the rest is the checkpoint's own generation config."""
        sampling = self.temperature > 0
        options: dict[str, Any] = {"do_sample": sampling}
        if sampling:
            options["temperature"] = self.temperature
        return options

    def _generate_batch(self, requests: list[TeacherRequest]) -> list[list[TeacherReply]]:
        n = requests[0].n
        texts = [self.engine.render(template_messages(r.prompt, system=r.system)) for r in requests]
        images = [downscale(r.image, self.max_side) for r in requests]
        opened = opened_by_template(texts[0])  # a thinking template opens <think> itself
        self.stats.requests += len(requests)
        self.batch_sizes.append(len(requests))
        # sampled from the caller's RNG (seed=None), as distillation always has
        out = self.engine.generate(
            texts, images, max_new_tokens=self.max_tokens, options=self._decoding(), n=n
        )
        return [[TeacherReply(opened + c.text, c.finish_reason) for c in per] for per in out]

    async def aclose(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._worker
            self._worker = None
