"""The local transformers teacher batches concurrent requests into ``generate`` calls and
hands each image its own answers."""

from __future__ import annotations

import asyncio
import json

import pytest
import torch
from distill_fakes import make_samples
from PIL import Image

from qponder.distill import TeacherError, TeacherRequest
from qponder.distill.hf_teacher import HFTeacher

EOS = 2


class FakeTokenizer:
    eos_token_id = EOS
    bos_token = None
    padding_side = "right"

    def batch_decode(self, rows, skip_special_tokens=True):
        return [" ".join(str(int(t)) for t in row if int(t) != EOS) for row in rows]


class FakeInputs(dict):
    def to(self, device):
        return self


class FakeProcessor:
    """Encodes prompt i as the single token 100 + i (the image index, read from its red)."""

    def __init__(self):
        self.tokenizer = FakeTokenizer()
        self.calls = []
        self.padding_sides = []

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=True):
        assert messages[1]["content"][0] == {"type": "image"} and add_generation_prompt
        return messages[1]["content"][1]["text"]

    def __call__(
        self, text, images, padding, return_tensors, add_special_tokens=True, padding_side=None
    ):
        assert all(len(per_prompt) == 1 for per_prompt in images)  # one image per prompt
        self.padding_sides.append(padding_side)
        images = [per_prompt[0] for per_prompt in images]
        self.calls.append([img.size for img in images])
        ids = [[100 + img.getpixel((0, 0))[0]] for img in images]
        return FakeInputs(input_ids=torch.tensor(ids))


class FakeModel:
    """Answers ``k`` for the k-th return sequence of each prompt; odd images never stop."""

    device = "cpu"
    generation_config = type("G", (), {"eos_token_id": EOS})()

    def __init__(self, fail=False, fail_on=None):
        self.kwargs = []
        self.fail = fail
        self.fail_on = fail_on  # an image index whose presence fails the call

    def generate(self, input_ids, **kwargs):
        self.kwargs.append(kwargs)
        if self.fail or any(p[0] == 100 + (self.fail_on or -999) for p in input_ids.tolist()):
            raise RuntimeError("CUDA out of memory")
        n = kwargs.get("num_return_sequences", 1)
        rows = []
        for prompt in input_ids.tolist():
            for k in range(n):
                stop = EOS if prompt[0] % 2 == 0 else 7
                rows.append(prompt + [prompt[0], k, stop])
        return torch.tensor(rows)


def requests(n_images: int, n: int = 1) -> list[TeacherRequest]:
    return [
        TeacherRequest(
            type("S", (), {"id": i})(),
            Image.new("RGB", (60, 30), (i, 0, 0)),
            "system",
            f"prompt {i}",
            n,
        )
        for i in range(n_images)
    ]


async def ask_all(teacher: HFTeacher, reqs: list[TeacherRequest]):
    await teacher.start()
    try:
        return await asyncio.gather(*(teacher.generate(r) for r in reqs), return_exceptions=True)
    finally:
        await teacher.aclose()


def test_concurrent_requests_are_batched_and_answers_reach_their_image():
    model, processor = FakeModel(), FakeProcessor()
    teacher = HFTeacher(model, processor, batch_size=4, max_side=20, temperature=0.7, max_tokens=3)
    replies = asyncio.run(ask_all(teacher, requests(6, n=2)))
    assert teacher.batch_sizes == [4, 2]
    # generation pads on the left, per call: the shared tokenizer is left as it was
    assert processor.padding_sides == ["left", "left"]
    assert processor.tokenizer.padding_side == "right"
    assert processor.calls[0] == [(20, 10)] * 4  # downscaled to max_side before the processor
    for i, answers in enumerate(replies):
        tail = "" if i % 2 == 0 else " 7"  # odd images ran into the token limit
        assert [a.text for a in answers] == [f"{100 + i} 0{tail}", f"{100 + i} 1{tail}"]
        assert {a.finish_reason for a in answers} == {"stop" if i % 2 == 0 else "length"}
    assert model.kwargs[0] == {
        "max_new_tokens": 3,
        "do_sample": True,
        "temperature": 0.7,
        "num_return_sequences": 2,
    }


def test_greedy_single_answers_pass_no_sampling_options():
    model = FakeModel()
    teacher = HFTeacher(model, FakeProcessor(), batch_size=8, temperature=0.0, max_tokens=5)
    asyncio.run(ask_all(teacher, requests(3)))
    assert model.kwargs == [{"max_new_tokens": 5, "do_sample": False}]


def test_a_failing_batch_fails_its_images_only():
    teacher = HFTeacher(FakeModel(fail=True), FakeProcessor(), batch_size=2)
    replies = asyncio.run(ask_all(teacher, requests(3)))
    assert all(isinstance(r, TeacherError) and "out of memory" in str(r) for r in replies)
    assert teacher.stats.failures["generation"] == 3


def test_an_image_that_fails_its_batch_fails_alone():
    model = FakeModel(fail_on=2)
    teacher = HFTeacher(model, FakeProcessor(), batch_size=4)
    replies = asyncio.run(ask_all(teacher, requests(4)))
    assert isinstance(replies[2], TeacherError) and "out of memory" in str(replies[2])
    assert [r[0].text.split()[0] for i, r in enumerate(replies) if i != 2] == ["100", "101", "103"]
    assert teacher.stats.failures["generation"] == 1


@pytest.mark.slow
def test_an_image_the_teachers_processor_refuses_is_rejected_with_its_reason(tmp_path, tiny_model):
    from qponder.config import DistillConfig, Recipe
    from qponder.distill import run_distillation

    samples = make_samples(tmp_path / "img", [3.0, 4.0])
    banner = tmp_path / "img" / "banner.png"
    Image.new("RGB", (4000, 10), (9, 9, 9)).save(banner)
    samples.append(type(samples[0])("banner", str(banner), 3.0, 3.0, "generic", "train"))
    recipe = Recipe(
        distill=DistillConfig(teacher="hf", model=str(tiny_model), batch_size=3, max_tokens=4)
    )
    report = run_distillation(recipe, samples, out=tmp_path / "c.jsonl", progress=False)
    assert report["kept"] + report["rejected"] == 3
    rejected = [json.loads(x) for x in (tmp_path / "c.rejected.jsonl").read_text().splitlines()]
    (row,) = [r for r in rejected if r["id"] == "banner"]
    assert row["reason"] == "bad_image" and row["detail"].startswith("aspect_ratio")
    assert {r["reason"] for r in rejected if r["id"] != "banner"} <= {"format"}  # answered


@pytest.mark.slow
def test_distillation_with_the_tiny_model_accounts_for_every_image(tmp_path, tiny_model):
    from qponder.config import DistillConfig, Recipe
    from qponder.distill import run_distillation

    path = tiny_model
    samples = make_samples(tmp_path / "img", [2.0, 3.0, 4.0, 2.5, 3.5])
    recipe = Recipe(
        distill=DistillConfig(teacher="hf", model=str(path), batch_size=4, max_tokens=12, samples=2)
    )
    report = run_distillation(recipe, samples, out=tmp_path / "c.jsonl", progress=False)
    assert report["kept"] + report["rejected"] == 5  # a random model: mostly format rejects
    assert report["settings"]["teacher"] == f"hf:{path}"
    rejected = [json.loads(x) for x in (tmp_path / "c.rejected.jsonl").read_text().splitlines()]
    assert all(r["reason"] in {"format", "score_mismatch"} for r in rejected)
