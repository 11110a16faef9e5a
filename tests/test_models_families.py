"""Every VLM family's tiny model: its real classes and template, reloaded as saved, and the
places where families differ (digits, reasoning tags the template opens, BOS, processor
settings) handled so that the expected-score read-out never reads the wrong token.

The whole chain per family (distill -> SFT -> GRPO -> eval -> score -> serve) is in
tests/test_families_chain.py and benchmarks/families.py.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from answer_tags import tagged
from PIL import Image

from qponder.answer_format import answer_token_index, opened_by_template
from qponder.errors import QponderError
from qponder.models import generation_prompt, load_model, prompt_inputs
from qponder.models.families import FAMILY_NAMES, family_of
from qponder.models.readout import score_token_ids
from qponder.models.tiny import build_tiny_model
from qponder.parsing import is_well_formed, parse_completion, parse_score
from qponder.prompts import student_messages

COMPLETION = tagged(
    "<think>\nThe image is sharp, with slight noise.\n</think>\n<answer>3.50</answer>"
)

# the class names the released checkpoints of each family load as
EXPECTED = {
    "qwen2_5_vl": ("Qwen2_5_VLForConditionalGeneration", "Qwen2_5_VLProcessor"),
    "qwen3_vl": ("Qwen3VLForConditionalGeneration", "Qwen3VLProcessor"),
    "qwen3_5": ("Qwen3_5ForConditionalGeneration", "Qwen3VLProcessor"),
    "gemma3": ("Gemma3ForConditionalGeneration", "Gemma3Processor"),
    "smolvlm": ("SmolVLMForConditionalGeneration", "SmolVLMProcessor"),
    "llava_onevision": ("LlavaOnevisionForConditionalGeneration", "LlavaOnevisionProcessor"),
    "internvl": ("InternVLForConditionalGeneration", "InternVLProcessor"),
}


# the processor setting that says how many tokens an image (or tile) becomes, and its value
TOKENS_PER_IMAGE = {
    "gemma3": ("image_seq_length", 9),
    "smolvlm": ("image_seq_len", 4),
    "llava_onevision": ("num_image_tokens", 16),
    "internvl": ("image_seq_length", 4),
}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    cache: dict[str, object] = {}

    def get(family: str):
        if family not in cache:
            folder = build_tiny_model(tmp_path_factory.mktemp(family), family=family)
            cache[family] = (folder, *load_model(folder))
        return cache[family]

    return get


def _image(h: int = 70, w: int = 100, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray((rng.random((h, w, 3)) * 255).astype("uint8"))


def _prompt(processor) -> str:
    return processor.apply_chat_template(
        student_messages(), tokenize=False, add_generation_prompt=True
    )


def _trl_split(processor) -> tuple[str, str]:
    """The prompt and completion texts TRL's SFT trains on for a cold-start row."""
    from trl.data_utils import apply_chat_template, prepare_multimodal_messages

    example = {
        "prompt": prepare_multimodal_messages(student_messages(), images=[_image()]),
        "completion": prepare_multimodal_messages([{"role": "assistant", "content": COMPLETION}]),
    }
    out = apply_chat_template(example, processor)
    return out["prompt"], out["completion"]


def test_every_family_is_registered():
    assert set(FAMILY_NAMES) == set(EXPECTED)
    with pytest.raises(QponderError, match="unknown family 'llama'.*qwen3_vl"):
        family_of("llama")


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_tiny_model_is_the_family_and_reloads_as_saved(family, built):
    folder, model, processor = built(family)
    model_cls, processor_cls = EXPECTED[family]
    assert type(model).__name__ == model_cls
    assert type(processor).__name__ == processor_cls
    assert json.loads((folder / "config.json").read_text())["model_type"] == family
    # the processor's own settings survive the save: image tokens per image or tile, as the
    # tiny models set them (the class defaults, 256 / 169 / None, would not fit the model)
    if family in TOKENS_PER_IMAGE:
        key, value = TOKENS_PER_IMAGE[family]
        saved = json.loads((folder / "processor_config.json").read_text())
        assert saved[key] == getattr(processor, key) == value


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_generates_for_images_of_any_size_in_one_batch(family, built):
    from qponder.inference.backends import HFBackend

    _, model, processor = built(family)
    backend = HFBackend(model, processor, max_new_tokens=4)
    out = backend.generate([_image(), _image(40, 130, 1), _image(128, 128, 2)])
    assert len(out) == 3 and all(len(g) == 1 for g in out)


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_expected_score_is_read_at_the_answer_digit(family, built):
    """Tokenized exactly as TRL trains and the model generates, the read-out position of a
    completion is its first answer digit, and that token is one of "1".."5"."""
    _, _, processor = built(family)
    tok = processor.tokenizer
    digits = score_token_ids(tok)
    assert len(set(digits)) == 5
    _, completion = _trl_split(processor)
    ids = tok(completion, add_special_tokens=False)["input_ids"]

    def decode(t):
        return tok.decode(t, skip_special_tokens=True)

    j = answer_token_index(ids, decode)
    assert j is not None
    assert ids[j] == digits[2], (family, tok.convert_ids_to_tokens(ids[j - 1 : j + 2]))


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_training_completion_is_what_inference_reads(family, built):
    """The text TRL's SFT puts the loss on, read back the way inference reads generated
    text (with what the template opened in front), is the cold-start completion."""
    _, _, processor = built(family)
    prompt, completion = _trl_split(processor)
    ours = _prompt(processor)
    opened = opened_by_template(ours)
    assert opened == (tagged("<think>\n") if family == "qwen3_5" else "")
    if family == "llava_onevision":
        # the released template renders an assistant turn as "assistant \n..." but its
        # generation prompt as "assistant\n": TRL trains from the common prefix
        assert ours == prompt + "\n" and completion.startswith(tagged(" \n<think>"))
    else:
        assert prompt == ours
    parsed = parse_completion(opened + completion.strip())
    assert parsed.score == 3.5
    assert "sharp, with slight noise" in parsed.reasoning


def test_qwen3_5_template_opens_the_reasoning(built):
    _, _, processor = built("qwen3_5")
    prompt = _prompt(processor)
    assert prompt.endswith("<|im_start|>assistant\n<think>\n")  # the template's own tag
    # what the model generates starts inside <think>; read with the opened tag it parses
    generated = tagged("The image is sharp.\n</think>\n\n<answer>4.20</answer>")
    assert not is_well_formed(generated)  # read alone: no format reward, a stray </think>
    whole = parse_completion(opened_by_template(prompt) + generated)
    assert is_well_formed(opened_by_template(prompt) + generated)
    assert whole.score == 4.2 and whole.reasoning == "The image is sharp."


def test_gemma3_prompts_carry_one_bos(built):
    _, _, processor = built("gemma3")
    tok = processor.tokenizer
    inputs = prompt_inputs(processor, [_prompt(processor)], [_image()])
    ids = inputs["input_ids"][0].tolist()
    assert ids[0] == tok.bos_token_id
    assert ids.count(tok.bos_token_id) == 1


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_every_processor_pads_on_the_left_per_call_and_keeps_its_tokenizer(family, built):
    """The padding side travels as a call argument through each family's processor (and
    its image-only fallback class) to the tokenizer, whose own setting never changes."""
    _, _, processor = built(family)
    tok = processor.tokenizer
    side = tok.padding_side
    short = generation_prompt(processor, "Rate.")
    long = generation_prompt(processor, "Rate the quality of this image, with many words.")
    mask = prompt_inputs(processor, [short, long], [_image(), _image()])["attention_mask"]
    assert mask[0, 0] == 0 and mask[0, -1] == 1 and mask[1].all()
    mask = tok(["a", "a b c d"], padding=True, padding_side="left", return_tensors="pt")[
        "attention_mask"
    ]
    assert mask[0, 0] == 0 and mask[0, -1] == 1
    assert tok.padding_side == side


def test_judge_continues_inside_the_opened_reasoning(built):
    """The consistency judge on a Qwen3.5 policy writes the reasoning after the <think> its
    template opened, not a second <think>."""
    from qponder.models.judge import HFJudge

    _, model, processor = built("qwen3_5")
    judge = HFJudge(model, processor)
    assert judge.prefix.endswith("<think>\n")  # the template's own tag
    reasoning = tagged("<think>\nSharp and clean.\n</think>")
    (text,) = judge.prompt_texts([reasoning])
    assert text.endswith(
        tagged("<|im_start|>assistant\n<think>\nSharp and clean.\n</think>\n<answer>")
    )
    implied = judge.implied_scores([reasoning])
    assert implied[0] is not None and 1.0 <= implied[0] <= 5.0


def test_rewards_read_completions_with_the_opened_tag():
    from qponder.rewards import REWARDS, with_opened

    class Cfg:
        rewards = {"format": 1.0}

    fmt = REWARDS["format"](Cfg(), None)
    generated = [[{"role": "assistant", "content": tagged("Sharp.\n</think>\n<answer>4</answer>")}]]
    (wrapped,) = with_opened([fmt], tagged("<think>\n"))
    assert wrapped.__name__ == fmt.__name__
    assert fmt(completions=generated)[0] == 0.0
    assert wrapped(completions=generated)[0] == 1.0
    assert with_opened([fmt], "") == [fmt]


def test_video_processor_entry_names_the_family_video_processor(built):
    for family, video in (("internvl", "InternVLVideoProcessor"),
                          ("smolvlm", "SmolVLMVideoProcessor"),
                          ("qwen3_vl", "Qwen3VLVideoProcessor")):  # fmt: skip
        folder = built(family)[0]
        saved = json.loads((folder / "processor_config.json").read_text())
        assert saved["video_processor"]["video_processor_type"] == video


@pytest.mark.parametrize("family", ["qwen3_vl", "gemma3"])
def test_sft_batch_trains_on_the_completion_only(family, built):
    """TRL's SFT batch of two images of different sizes goes through the model's forward
    and backward, with the loss on the completion tokens alone."""
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    _, model, processor = built(family)
    collate = DataCollatorForVisionLanguageModeling(processor, completion_only_loss=True)
    row = {
        "prompt": student_messages(),
        "completion": [{"role": "assistant", "content": COMPLETION}],
        "image": _image(),
    }
    batch = collate([dict(row), dict(row, image=_image(50, 90, 3))])
    model.train()
    loss = model(**batch).loss
    loss.backward()
    model.zero_grad()
    model.eval()
    assert torch.isfinite(loss)
    tok = processor.tokenizer
    trained = [tok.decode(row[row != -100]) for row in batch["labels"]]
    assert all(
        t.strip().startswith(tagged("<think>")) and tagged("3.50</answer>") in t for t in trained
    ), trained


def test_a_digit_merged_into_its_neighbour_is_refused_not_misread(built):
    """A tokenizer whose BPE merged "3." (as a Gemma-style BPE does without digit
    splitting) has no digit token at the answer position: the HF backend says
    ``not_a_digit`` instead of reading the logits of the merged token."""
    from transformers import GemmaTokenizer

    from qponder.inference.backends import HFBackend
    from qponder.models.families import _train
    from qponder.models.tiny import default_corpus

    merged = _train(GemmaTokenizer(), default_corpus(200), 600, ["<pad>", "<eos>", "<bos>"])
    ids = merged(COMPLETION, add_special_tokens=False)["input_ids"]
    assert "3." in merged.convert_ids_to_tokens(ids)
    _, model, processor = built("gemma3")
    backend = HFBackend(model, processor, max_new_tokens=4)
    backend.tokenizer, backend.digit_ids = merged, score_token_ids(merged)
    generation = backend._generation(ids, torch.zeros(len(ids), 5))
    assert generation.expected_score is None
    assert generation.expected_score_reason == "not_a_digit"
    assert parse_score(generation.text) == 3.5  # the answer itself still parses
