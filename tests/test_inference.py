"""The scoring engine: batched greedy scoring is reproducible, parse failures are reported and
never scored, the expected score is read at the digit after <answer>, and the three backends
share one API."""

from __future__ import annotations

import json
import math
import sys
import types

import httpx
import numpy as np
import pytest
import torch
from answer_tags import tagged
from PIL import Image

from qponder.answer_format import answer_token_index
from qponder.errors import BadImageError, MissingDependencyError, QponderError
from qponder.inference import (
    Generation,
    HFBackend,
    OpenAIBackend,
    Scorer,
    VLLMBackend,
    result_from_generations,
)
from qponder.models.readout import score_token_ids
from qponder.parsing import expected_from_logprobs

GOOD = tagged("<think>sharp, clean</think><answer>3.5</answer>")


@pytest.fixture(scope="module")
def loaded(tiny_model):
    from qponder.models import load_model

    return load_model(tiny_model)


def images(sizes=((64, 48), (96, 64), (40, 40))):
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)) for w, h in sizes]


class FakeBackend:
    """Answers with a score derived from the image width; records the batch sizes."""

    def __init__(self, fail_every: int = 0):
        self.calls: list[tuple[int, int]] = []
        self.fail_every = fail_every
        self.count = 0

    def generate(self, imgs, n=1, temperature=1.0):
        self.calls.append((len(imgs), n))
        out = []
        for im in imgs:
            self.count += 1
            if self.fail_every and self.count % self.fail_every == 0:
                out.append([Generation("I cannot tell")] * n)
                continue
            base = 1 + (im.width % 40) / 10
            out.append(
                [
                    Generation(
                        tagged(f"<think>w={im.width}</think><answer>{base + 0.1 * k:.2f}</answer>"),
                        base,
                    )
                    for k in range(n)
                ]
            )
        return out


# --------------------------------------------------------------------------- answer position


@pytest.mark.parametrize(
    ("completion", "expected_piece"),
    [
        (tagged("<think>ok</think><answer>3.47</answer>"), "3"),
        (tagged("<think>ok</think>\n<answer>\n4</answer>"), "4"),  # tag and new-line share a token
        (tagged("<answer> 2.5</answer>"), "2"),  # white space between tag and digit is skipped
        (tagged("Score: <answer>5.00</answer>"), "5"),  # tag split over three tokens
        (
            tagged('<answer>{"rating": 3}</answer>'),
            "{",
        ),  # not a digit: the backend gives no read-out
        (tagged("<answer>1</answer> and again <answer>2</answer>"), "2"),  # the LAST answer counts
    ],
)
def test_answer_position_is_the_first_token_after_the_last_answer_tag(
    loaded, completion, expected_piece
):
    tok = loaded[1].tokenizer
    ids = tok.encode(completion, add_special_tokens=False)
    j = answer_token_index(ids, lambda t: tok.decode(t, skip_special_tokens=True))
    assert tok.decode([ids[j]]) == expected_piece


def test_no_answer_tag_or_nothing_after_it_gives_no_position(loaded):
    tok = loaded[1].tokenizer
    dec = lambda t: tok.decode(t, skip_special_tokens=True)  # noqa: E731
    assert answer_token_index(tok.encode(tagged("<think>blurry</think>")), dec) is None
    assert answer_token_index(tok.encode(tagged("<think>blurry</think><answer>")), dec) is None


def test_expected_from_logprobs_is_the_restricted_softmax_mean():
    lps = {"2": math.log(0.1), "3": math.log(0.3), "4": math.log(0.4), "five": -0.1}
    assert expected_from_logprobs(lps) == pytest.approx((2 * 0.1 + 3 * 0.3 + 4 * 0.4) / 0.8)
    # a digit with white space around it is the same level (backends and judges agree)
    lps = {"4": math.log(0.25), " 4": math.log(0.25), "5": math.log(0.5)}
    assert expected_from_logprobs(lps) == pytest.approx(4.5)
    assert expected_from_logprobs({"x": -1.0}) is None


def test_hf_read_out_uses_the_digit_logits_at_the_answer_position(loaded):
    model, processor = loaded
    backend = HFBackend(model, processor, max_new_tokens=4)
    tok = processor.tokenizer
    ids = tok.encode(GOOD, add_special_tokens=False)
    j = ids.index(tok.convert_tokens_to_ids("3"))
    digit_logits = torch.full((len(ids), 5), -30.0)
    digit_logits[j] = torch.log(torch.tensor([0.0, 0.0, 0.5, 0.25, 0.25]) + 1e-12)
    gen = backend._generation(ids, digit_logits)
    assert gen.text == GOOD
    assert gen.expected_score == pytest.approx(3 * 0.5 + 4 * 0.25 + 5 * 0.25, abs=1e-5)
    # an answer that does not start with a digit 1..5 has no read-out
    bad = tok.encode(tagged("<think>x</think><answer>7</answer>"), add_special_tokens=False)
    assert backend._generation(bad, torch.zeros(len(bad), 5)).expected_score is None


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_non_finite_digit_logit_gives_no_expected_score_and_says_why(loaded, bad):
    model, processor = loaded
    backend = HFBackend(model, processor, max_new_tokens=4)
    tok = processor.tokenizer
    ids = tok.encode(GOOD, add_special_tokens=False)
    j = ids.index(tok.convert_tokens_to_ids("3"))
    digit_logits = torch.zeros(len(ids), 5)
    digit_logits[j, 0] = bad  # the other four digits are finite: no score made of them
    gen = backend._generation(ids, digit_logits)
    assert gen.expected_score is None and gen.expected_score_reason == "non_finite"
    r = result_from_generations([gen], sampled=False)
    assert r.score == 3.5 and r.expected_score is None and r.expected_score_reason == "non_finite"


# --------------------------------------------------------------------------- results


def test_a_parse_failure_has_no_score_and_says_why():
    r = result_from_generations(
        [Generation(tagged("<think>hmm</think><answer>great</answer>"))], sampled=False
    )
    assert (r.score, r.error, r.reasoning) == (None, "no_number", "hmm")
    r = result_from_generations(
        [Generation(tagged("<think>x</think><answer>9</answer>"), 4.1)], sampled=False
    )
    assert (r.score, r.error, r.expected_score) == (None, "out_of_range", 4.1)


def test_sampled_answers_report_mean_std_and_every_sample():
    gens = [
        Generation(tagged(f"<think>t</think><answer>{s}</answer>"), e)
        for s, e in ((3, 3.2), (4, 3.8), (5, 4.4))
    ]
    gens.append(Generation(tagged("<think>t</think>")))  # one failed sample: counted, not scored
    r = result_from_generations(gens, sampled=True)
    assert r.score == r.score_mean == pytest.approx(4.0)
    assert r.score_std == pytest.approx(np.std([3, 4, 5]))
    assert r.expected_score == pytest.approx(3.8)
    assert [s["error"] for s in r.samples] == [None, None, None, "no_answer"]
    assert r.error is None and set(r.to_dict()) == {
        "score", "expected_score", "reasoning", "text", "error", "samples", "score_mean",
        "score_std", "expected_score_reason",
    }  # fmt: skip
    assert r.expected_score_reason is None
    assert [s["expected_score_reason"] for s in r.samples] == [None, None, None, "no_logprobs"]


def test_when_no_sample_parses_the_most_common_reason_is_reported():
    gens = [Generation("a"), Generation(tagged("<answer>x</answer>")), Generation("b")]
    r = result_from_generations(gens, sampled=True)
    assert r.score is None and r.score_std is None and r.error == "no_answer"


# --------------------------------------------------------------------------- Scorer


def test_scorer_batches_and_keeps_order():
    fake = FakeBackend()
    scorer = Scorer("unused", backend_impl=fake, batch_size=2)
    res = scorer.score(images(((40, 4), (45, 4), (50, 4), (55, 4), (60, 4))))
    assert fake.calls == [(2, 1), (2, 1), (1, 1)]
    assert [r.score for r in res] == [1.0, 1.5, 2.0, 2.5, 3.0]


def test_scorer_with_samples_asks_for_k_answers_per_image():
    fake = FakeBackend()
    res = Scorer("unused", backend_impl=fake, batch_size=4, samples=3, temperature=0.7).score(
        images()
    )
    assert fake.calls == [(3, 3)]
    assert all(len(r.samples) == 3 and r.score_std is not None for r in res)


def test_a_batch_may_ask_for_other_samples_than_the_scorers():
    fake = FakeBackend()
    scorer = Scorer("unused", backend_impl=fake, batch_size=4, temperature=0.7)
    sampled = scorer.score_batch(images(), samples=3)  # what a server request may ask
    assert fake.calls == [(3, 3)] and all(len(r.samples) == 3 for r in sampled)
    assert [len(r.samples) for r in scorer.score_batch(images())] == [0, 0, 0]  # its own: 1
    assert fake.calls[-1] == (3, 1)
    greedy = Scorer("unused", backend_impl=fake, samples=2, temperature=0.7)
    assert greedy.score_batch(images(), samples=1)[0].score_std is None
    with pytest.raises(QponderError, match="temperature"):
        Scorer("unused", backend_impl=fake, temperature=0.0).score_batch(images(), samples=2)
    with pytest.raises(QponderError, match="samples >= 1"):
        scorer.score_batch(images(), samples=0)


def test_a_bad_image_gives_an_error_result_and_the_others_are_scored(tmp_path):
    good = tmp_path / "good.png"
    images(((48, 32),))[0].save(good)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    scorer = Scorer("unused", backend_impl=FakeBackend(), batch_size=3)
    batches = list(
        scorer.score_items([str(bad), str(good), str(tmp_path / "gone.png")], lambda p: p)
    )
    assert len(batches) == 1
    (_, r_bad), (_, r_good), (_, r_gone) = batches[0]
    assert r_bad.score is None and r_bad.error.startswith("bad_image:")
    assert r_gone.error == "bad_image:missing"
    assert r_good.score == pytest.approx(1.8) and r_good.error is None


def test_an_image_the_processor_refuses_gets_its_row_before_it_joins_a_batch(loaded):
    model, processor = loaded
    strip = Image.fromarray(np.full((10, 4000, 3), 128, dtype=np.uint8))  # a scanned strip
    imgs = images()
    scorer = Scorer(model, processor=processor, batch_size=4, max_new_tokens=6)
    mixed = scorer.score_batch([imgs[0], strip, imgs[1], imgs[2]])
    assert mixed[1].error == "bad_image:aspect_ratio" and mixed[1].score is None
    alone = scorer.score(imgs)  # the others: as if the strip had never been there
    assert [r.text for i, r in enumerate(mixed) if i != 1] == [r.text for r in alone]


class PickyBackend(FakeBackend):
    """Fails every call that holds an image narrower than ``min_width`` (as a tokenizer
    length or a processor limit would), or every call at all."""

    def __init__(self, min_width: int = 0, always: bool = False):
        super().__init__()
        self.min_width, self.always = min_width, always

    def generate(self, imgs, n=1, temperature=1.0):
        if self.always or any(im.width < self.min_width for im in imgs):
            raise ValueError("input too long for the model")
        return super().generate(imgs, n, temperature)


def test_a_batch_that_fails_is_scored_image_by_image_and_only_the_culprit_fails():
    backend = PickyBackend(min_width=45)
    res = Scorer("m", backend_impl=backend, batch_size=3).score(images())  # widths 64, 96, 40
    assert [r.error for r in res] == [None, None, "bad_image:generation_failed"]
    assert res[0].score == pytest.approx(1 + 64 % 40 / 10)
    assert backend.calls == [(1, 1), (1, 1)]  # after the batch failed: the good ones, alone
    # a failure that is every image's is not an image's: it is raised
    with pytest.raises(ValueError, match="too long"):
        Scorer("m", backend_impl=PickyBackend(always=True), batch_size=3).score(images())


def test_invalid_scorer_settings_are_refused():
    with pytest.raises(QponderError, match="unknown backend"):
        Scorer("m", backend="onnx")
    with pytest.raises(QponderError, match="temperature"):
        Scorer("m", backend_impl=FakeBackend(), samples=4, temperature=0.0)
    with pytest.raises(QponderError, match="processor"):
        Scorer(torch.nn.Linear(1, 1))


def test_random_tiny_model_never_parses_and_is_reported_not_scored(tiny_model):
    scorer = Scorer(tiny_model, batch_size=3, max_new_tokens=8)
    res = scorer.score(images())
    assert all(r.score is None and r.error == "no_answer" and r.text for r in res)


def test_batched_greedy_scoring_matches_one_image_at_a_time(loaded):
    model, processor = loaded
    imgs = images()  # three sizes: different prompt lengths, so left padding is exercised
    batched = Scorer(model, processor=processor, batch_size=3, max_new_tokens=10).score(imgs)
    single = Scorer(model, processor=processor, batch_size=1, max_new_tokens=10).score(imgs)
    assert [r.text for r in batched] == [r.text for r in single]
    again = Scorer(model, processor=processor, batch_size=3, max_new_tokens=10).score(imgs)
    assert [r.text for r in again] == [r.text for r in batched]  # greedy: reproducible


def test_sampling_is_seeded_and_leaves_the_callers_rng_alone(loaded):
    model, processor = loaded

    def sample(seed):
        sc = Scorer(
            model, processor=processor, samples=2, temperature=1.0, seed=seed, max_new_tokens=6
        )
        return [s["text"] for r in sc.score(images()[:2]) for s in r.samples]

    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    first = sample(seed=7)
    assert torch.equal(torch.rand(3), expected_next)  # e.g. a training run's RNG is untouched
    assert sample(seed=7) == first and sample(seed=8) != first


def test_pixel_limits_from_the_model_config_reach_the_processor(loaded):
    from qponder.config import ModelConfig

    model, processor = loaded
    before = dict(processor.image_processor.size)
    try:
        Scorer(
            model, processor=processor, model_config=ModelConfig(min_pixels=3136, max_pixels=6272)
        )
        assert processor.image_processor.size["longest_edge"] == 6272
    finally:
        processor.image_processor.size = before


# --------------------------------------------------------------------------- happy path on a trained model


@pytest.fixture(scope="module")
def answering_model(tiny_model):
    """The tiny model over-fitted to always answer GOOD (a few seconds of training)."""
    from qponder.models import load_model
    from qponder.prompts import student_messages

    model, processor = load_model(tiny_model)
    prompt = processor.apply_chat_template(
        student_messages(), tokenize=False, add_generation_prompt=True
    )
    imgs = images(((48, 48), (64, 48)))
    processor.tokenizer.padding_side = "right"
    batch = processor(
        text=[prompt + GOOD + "<|im_end|>"] * 2, images=imgs, return_tensors="pt", padding=True
    )
    n_prompt = processor(text=[prompt], images=imgs[:1], return_tensors="pt")["input_ids"].shape[1]
    labels = batch["input_ids"].clone()
    labels[:, :n_prompt] = -100
    labels[batch["attention_mask"] == 0] = -100
    torch.manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: one thread is faster, and steady on shared cores
    try:
        for _ in range(70):
            loss = model(**batch, labels=labels).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    model.eval()
    return model, processor


@pytest.mark.slow
def test_a_model_that_answers_gets_its_score_and_the_expected_score_of_its_logits(answering_model):
    model, processor = answering_model
    img = images(((48, 48),))
    r = Scorer(model, processor=processor, max_new_tokens=24).score(img)[0]
    assert (r.score, r.error, r.reasoning) == (3.5, None, "sharp, clean")
    # the read-out equals the digit softmax of a separate forward pass up to the "3"
    from qponder.prompts import student_messages

    prompt = processor.apply_chat_template(
        student_messages(), tokenize=False, add_generation_prompt=True
    )
    prefix = prompt + tagged("<think>sharp, clean</think><answer>")
    inputs = processor(text=[prefix], images=img, return_tensors="pt")
    with torch.inference_mode():
        logits = model(**inputs).logits[0, -1]
    probs = torch.softmax(logits[score_token_ids(processor.tokenizer)], -1)
    assert r.expected_score == pytest.approx(float((probs * torch.arange(1, 6)).sum()), abs=1e-4)


# --------------------------------------------------------------------------- remote backends


def openai_reply(request: httpx.Request) -> httpx.Response:
    body = json.loads(request.content)
    content = body["messages"][0]["content"]
    assert content[0]["image_url"]["url"].startswith("data:image/png;base64,")
    assert body["logprobs"] is True and body["top_logprobs"] == 20
    pieces = [
        tagged("<think>"),
        "fine",
        tagged("</think>"),
        tagged("<answer>")[:-1],  # a tokenizer's pieces: the tag, then its ">" apart
        ">",
        "4",
        ".",
        "2",
        tagged("</answer>"),
    ]
    lp = [{"token": p, "logprob": -0.1, "bytes": None, "top_logprobs": []} for p in pieces]
    lp[5]["top_logprobs"] = [
        {"token": "4", "logprob": math.log(0.5), "bytes": None},
        {"token": "3", "logprob": math.log(0.5), "bytes": None},
    ]
    choice = {
        "index": 0,
        "finish_reason": "stop",
        "message": {"role": "assistant", "content": "".join(pieces)},
        "logprobs": {"content": lp},
    }
    return httpx.Response(
        200,
        json={
            "id": "x",
            "object": "chat.completion",
            "created": 0,
            "model": body["model"],
            "choices": [choice] * body["n"],
        },
    )


def openai_client(handler):
    from openai import OpenAI

    return OpenAI(
        base_url="http://test/v1",
        api_key="k",
        max_retries=0,
        http_client=httpx.Client(transport=httpx.MockTransport(handler)),
    )


def test_openai_backend_parses_answers_and_reads_top_logprobs():
    backend = OpenAIBackend("served", client=openai_client(openai_reply))
    r = Scorer("served", backend="openai", backend_impl=backend, batch_size=2).score(images())
    assert [x.score for x in r] == [4.2, 4.2, 4.2]
    assert r[0].expected_score == pytest.approx(3.5) and r[0].reasoning == "fine"


@pytest.mark.parametrize("bad", ["NaN", "Infinity"])
def test_a_non_finite_top_logprob_gives_no_expected_score_and_says_why(bad):
    """A server's top log-probabilities with a NaN (or +inf) among the digits give no
    expected score, rather than one read from the other digits."""

    def reply(request):
        response = openai_reply(request)
        body = json.loads(response.content)
        for choice in body["choices"]:
            choice["logprobs"]["content"][5]["top_logprobs"][1]["logprob"] = float(bad.lower())
        return httpx.Response(
            200, content=json.dumps(body), headers={"content-type": "application/json"}
        )

    backend = OpenAIBackend("served", client=openai_client(reply))
    r = Scorer("served", backend_impl=backend).score(images(((40, 40),)))[0]
    assert r.score == 4.2
    assert r.expected_score is None and r.expected_score_reason == "non_finite"


def test_a_server_that_ignores_n_is_asked_again_and_no_logprobs_is_said():
    """Servers such as `transformers serve` ignore `n` and `logprobs`: every sample is still
    there (asked for again, with another seed), and the missing read-out has its reason."""
    seeds = []

    def one_choice(request):
        body = json.loads(request.content)
        seeds.append(body["seed"])
        message = {"role": "assistant", "content": tagged(f"<answer>{2 + len(seeds) % 3}</answer>"),
                   "reasoning_content": "soft edges"}  # fmt: skip
        choice = {"index": 0, "finish_reason": "stop", "message": message, "logprobs": None}
        return httpx.Response(200, json={"id": "x", "object": "chat.completion", "created": 0,
                                         "model": "m", "choices": [choice]})  # fmt: skip

    backend = OpenAIBackend("served", client=openai_client(one_choice))
    r = Scorer("served", backend_impl=backend, samples=3).score(images(((40, 40),)))[0]
    assert len(r.samples) == 3 and len(seeds) == 3 and len(set(seeds)) == 3
    assert r.score is not None and r.score_std is not None
    assert r.expected_score is None and r.expected_score_reason == "no_logprobs"
    assert r.reasoning == "soft edges"  # the server's reasoning_content, put back
    assert all(s["text"].startswith(tagged("<think>\nsoft edges\n</think>")) for s in r.samples)


def test_openai_request_failures_are_reported_per_image():
    def refuse(request):
        return httpx.Response(500, json={"error": {"message": "boom"}})

    backend = OpenAIBackend("served", client=openai_client(refuse))
    r = Scorer("served", backend_impl=backend).score(images(((40, 40),)))[0]
    assert r.score is None and r.error.startswith("request_failed: InternalServerError")


def test_openai_backend_needs_an_endpoint():
    with pytest.raises(QponderError, match="base-url"):
        Scorer("served", backend="openai")


def test_vllm_backend_without_vllm_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm -> ImportError
    with pytest.raises(MissingDependencyError, match=r"pip install 'qponder\[vllm\]'"):
        Scorer("ckpt", backend="vllm")


def test_vllm_backend_reads_logprobs_of_the_digit(monkeypatch, tiny_model, loaded):
    tok = loaded[1].tokenizer
    ids = tok.encode(GOOD, add_special_tokens=False)
    j = ids.index(tok.convert_tokens_to_ids("3"))
    digit = score_token_ids(tok)
    logprobs = [{} for _ in ids]
    logprobs[j] = {
        digit[2]: types.SimpleNamespace(logprob=math.log(0.75)),
        digit[3]: types.SimpleNamespace(logprob=math.log(0.25)),
    }
    completion = types.SimpleNamespace(text=GOOD, token_ids=ids, logprobs=logprobs)
    seen = {}

    class FakeLLM:
        def get_tokenizer(self):
            return tok

        def generate(self, prompts, params, use_tqdm=False):
            seen["prompts"], seen["params"] = prompts, params
            return [types.SimpleNamespace(outputs=[completion] * params.n) for _ in prompts]

    fake_vllm = types.SimpleNamespace(
        LLM=None, SamplingParams=lambda **kw: types.SimpleNamespace(**kw)
    )
    monkeypatch.setitem(sys.modules, "vllm", fake_vllm)
    backend = VLLMBackend(str(tiny_model), llm=FakeLLM(), max_new_tokens=32)
    r = Scorer(str(tiny_model), backend="vllm", backend_impl=backend).score(images(((40, 40),)))[0]
    assert r.score == 3.5 and r.expected_score == pytest.approx(3.25)
    assert seen["params"].temperature == 0.0 and seen["params"].n == 1
    assert "<|image_pad|>" in seen["prompts"][0]["prompt"]


def test_bad_image_error_type_is_the_shared_one():
    assert issubclass(BadImageError, QponderError)
