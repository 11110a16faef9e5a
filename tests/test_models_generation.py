"""The one generation engine (qponder.models.generation) pads per call and never changes the
tokenizer it shares with training, validation and the caller; it stops where a completion
ends, records the logits of whatever tokens it is asked to, and reads next-token logits of
left-padded texts as if each text were alone."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import torch
from answer_tags import tagged
from PIL import Image

from qponder.distill import TeacherRequest
from qponder.distill.hf_teacher import HFTeacher
from qponder.inference import Scorer
from qponder.models import HFEngine, generation_prompt, load_model, prompt_inputs
from qponder.models.generation import LENGTH, STOP, cut_at_stop, stop_token_ids
from qponder.models.judge import HFJudge
from qponder.models.readout import read_out_logits, score_token_ids


@pytest.fixture(scope="module")
def loaded(tiny_model):
    return load_model(tiny_model)


def images(sizes=((64, 48), (96, 64), (40, 40))):
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)) for w, h in sizes]


def test_scorer_teacher_and_judge_leave_the_shared_tokenizers_padding_side_alone(loaded):
    """Training pads on the right; a validation Scorer, the hf teacher and the hf judge run
    on the same processor and must not turn it to the left (the validation callback used
    to put it back by hand)."""
    model, processor = loaded
    tokenizer = processor.tokenizer
    tokenizer.padding_side = "right"

    Scorer(model, processor=processor, batch_size=3, max_new_tokens=4).score(images())
    assert tokenizer.padding_side == "right"

    async def ask(teacher):
        reqs = [TeacherRequest(type("S", (), {"id": i})(), im, "system", "Rate.", 1)
                for i, im in enumerate(images())]  # fmt: skip
        await teacher.start()
        try:
            return await asyncio.gather(*(teacher.generate(r) for r in reqs))
        finally:
            await teacher.aclose()

    replies = asyncio.run(ask(HFTeacher(model, processor, batch_size=3, max_tokens=4)))
    assert len(replies) == 3 and tokenizer.padding_side == "right"

    judge = HFJudge(model, processor, batch_size=2)
    assert len(judge.implied_scores(["Sharp.", "Dark and very noisy, with blur."])) == 2
    assert tokenizer.padding_side == "right"


def test_prompt_inputs_pad_on_the_left_whatever_the_tokenizer_says(loaded):
    _, processor = loaded
    processor.tokenizer.padding_side = "right"
    prompt = generation_prompt(processor, "Rate.")
    longer = generation_prompt(processor, "Rate the quality of this image, in many words.")
    inputs = prompt_inputs(processor, [prompt, longer], images()[:1] * 2)
    mask = inputs["attention_mask"]
    assert mask[0, 0] == 0 and mask[0, -1] == 1 and mask[1].all()  # the shorter row: left pad
    assert processor.tokenizer.padding_side == "right"


def test_a_completion_ends_at_its_first_stop_id():
    assert cut_at_stop([5, 6, 2, 9, 0], frozenset({0, 2})) == ([5, 6], STOP)
    assert cut_at_stop([5, 6, 7], frozenset({0, 2})) == ([5, 6, 7], LENGTH)
    assert cut_at_stop([2], frozenset({2})) == ([], STOP)


def test_stop_ids_are_the_generation_configs_end_ids_and_the_pad_id():
    class Tok:
        eos_token_id, pad_token_id = 1, 0

    class Model:
        generation_config = type("G", (), {"eos_token_id": [7, 8]})()

    assert stop_token_ids(Model(), Tok()) == {7, 8, 0}
    assert stop_token_ids(object(), Tok()) == {1, 0}  # no generation config: the tokenizer's


def test_the_engine_records_the_logits_of_any_tokens_it_is_asked_to(loaded):
    """The read-out tokens are an argument, not the digits: two other tokens (as a
    preference read-out would ask for) come back in the order asked, equal to the digits'
    columns of the same greedy generation."""
    model, processor = loaded
    engine = HFEngine(model, processor)
    digits = score_token_ids(processor.tokenizer)
    prompt = generation_prompt(processor, "Rate.")
    greedy = {"do_sample": False, "temperature": 1.0, "top_p": 1.0, "top_k": 50}

    def run(read_ids):
        return engine.generate([prompt] * 2, images()[:2], max_new_tokens=5, options=greedy,
                               seed=0, read_ids=read_ids)  # fmt: skip

    five, two = run(digits), run([digits[4], digits[1]])
    for a, b in zip(five, two, strict=True):
        assert a[0].ids == b[0].ids and a[0].text == b[0].text
        assert a[0].logits.shape[1] == 5 and b[0].logits.shape[1] == 2
        assert torch.equal(b[0].logits, a[0].logits[:, [4, 1]])
    assert run(None)[0][0].logits is None


def test_sampled_completions_come_n_per_prompt_and_a_seed_repeats_them(loaded):
    model, processor = loaded
    engine = HFEngine(model, processor)
    prompt = generation_prompt(processor, "Rate.")
    sampling = {"do_sample": True, "temperature": 1.0, "top_p": 1.0, "top_k": 0}

    def run(seed):
        out = engine.generate([prompt] * 2, images()[:2], max_new_tokens=6, options=sampling,
                              n=3, seed=seed)  # fmt: skip
        return [[c.text for c in per] for per in out]

    first = run(3)
    assert [len(per) for per in first] == [3, 3]
    assert run(3) == first and run(4) != first


def test_next_token_logits_of_left_padded_texts_match_each_text_alone(loaded):
    model, processor = loaded
    engine = HFEngine(model, processor)
    texts = [
        tagged("<think>sharp</think>\n<answer>"),
        tagged("<think>very dark, noisy and blurry</think>\n<answer>"),
    ]
    batched = engine.next_token_logits(texts)
    assert batched.shape[0] == 2
    for row, text in zip(batched, texts, strict=True):
        alone = engine.next_token_logits([text])[0]
        assert torch.allclose(row, alone, atol=1e-4)


def test_the_read_out_over_recorded_logits_reads_the_answer_digit(loaded):
    _, processor = loaded
    tok = processor.tokenizer
    digits = score_token_ids(tok)
    ids = tok.encode(tagged("<think>ok</think><answer>4.0</answer>"), add_special_tokens=False)
    logits = torch.full((len(ids), 5), -30.0)
    logits[ids.index(digits[3]), 3:] = 0.0  # "4" and "5" alike at the answer position

    def decode(t):
        return tok.decode(t, skip_special_tokens=True)

    assert read_out_logits(ids, decode, digits, logits) == (pytest.approx(4.5), None)
    assert read_out_logits(ids, decode, None, None) == (None, "digits_split")
    assert read_out_logits(ids[:3], decode, digits, logits) == (None, "no_answer_position")
