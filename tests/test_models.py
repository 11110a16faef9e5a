"""The tiny offline Qwen2.5-VL is a standard checkpoint that loads and generates like a 7B one."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from answer_tags import tagged
from PIL import Image
from tiny_models import SMALL_CORPUS

from qponder.config import LoraSettings, ModelConfig
from qponder.errors import QponderError
from qponder.models import freeze_vision_tower, load_model, load_processor, resolve_dtype
from qponder.models.families import mrope_section
from qponder.models.readout import score_token_ids
from qponder.models.tiny import build_tiny_model, default_corpus
from qponder.prompts import DEFAULT_PROMPTS, student_messages


@pytest.fixture(scope="module")
def tiny(small_tiny):
    return small_tiny


def _image(h=80, w=112, seed=0):
    rng = np.random.default_rng(seed)
    return Image.fromarray((rng.random((h, w, 3)) * 255).astype("uint8"))


def _generate(model, processor, images, max_new_tokens=6):
    text = processor.apply_chat_template(
        student_messages(), add_generation_prompt=True, tokenize=False
    )
    processor.tokenizer.padding_side = "left"
    inputs = processor(text=[text] * len(images), images=images, return_tensors="pt", padding=True)
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    return inputs, out[:, inputs["input_ids"].shape[1] :]


def test_tiny_checkpoint_loads_with_plain_transformers(tiny):
    from transformers import AutoModelForImageTextToText, AutoTokenizer

    model = AutoModelForImageTextToText.from_pretrained(tiny)
    tok = AutoTokenizer.from_pretrained(tiny)
    assert model.config.model_type == "qwen2_5_vl"
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
    assert "<|im_start|>assistant" in tok.apply_chat_template(
        [{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=False
    )
    cfg = json.loads((tiny / "processor_config.json").read_text())
    assert cfg["processor_class"] == "Qwen2_5_VLProcessor"  # the standard class, not ours


def test_key_value_heads_default_to_half_the_heads(tmp_path):
    path = build_tiny_model(tmp_path / "t", corpus=SMALL_CORPUS, hidden_size=64, num_heads=8)
    cfg = json.loads((path / "config.json").read_text())
    text = cfg.get("text_config", cfg)
    assert text["num_attention_heads"] == 8 and text["num_key_value_heads"] == 4


def test_digits_are_single_tokens_so_the_expected_score_readout_works(tiny):
    processor = load_processor(tiny)
    ids = score_token_ids(processor.tokenizer)
    assert len(set(ids)) == 5
    assert processor.tokenizer.tokenize("3.47") == ["3", ".", "4", "7"]


def test_format_tags_are_whole_tokens_and_survive_decoding(tiny):
    tok = load_processor(tiny).tokenizer
    text = tagged("<think>\nok\n</think>\n<answer>3.47</answer>")
    pieces = tok.tokenize(text)
    for tag in (tagged("<think>"), tagged("</think>"), tagged("<answer>"), tagged("</answer>")):
        assert tag in pieces
    assert pieces[pieces.index(tagged("<answer>")) + 1] == "3"  # the score follows the tag directly
    assert tok.decode(tok(text).input_ids, skip_special_tokens=True) == text


def test_load_model_returns_a_processor_with_images_even_without_torchvision(tiny):
    model, processor = load_model(tiny)
    assert processor.image_processor is not None
    assert processor.chat_template is not None
    assert not model.training
    assert model.dtype == torch.float32  # dtype auto on CPU


def test_batched_generation_uses_pixel_values_and_the_chat_template(tiny):
    model, processor = load_model(tiny)
    inputs, new = _generate(model, processor, [_image(), _image(200, 150, seed=1)])
    assert "pixel_values" in inputs and inputs["image_grid_thw"].shape == (2, 3)
    image_id = model.config.image_token_id
    assert (inputs["input_ids"] == image_id).sum() > 0
    assert new.shape == (2, 6)
    assert all(isinstance(t, str) for t in processor.batch_decode(new))


def test_generation_depends_on_the_image(tiny):
    model, processor = load_model(tiny)
    text = processor.apply_chat_template(
        student_messages(), add_generation_prompt=True, tokenize=False
    )
    logits = []
    for seed in (0, 1):
        inputs = processor(text=[text], images=[_image(seed=seed)], return_tensors="pt")
        with torch.no_grad():
            logits.append(model(**inputs).logits[0, -1])
    assert not torch.allclose(logits[0], logits[1])


def test_pixel_limits_from_the_config_change_the_number_of_image_tokens(tiny):
    big = load_processor(tiny, ModelConfig(max_pixels=112 * 112))
    small = load_processor(tiny, ModelConfig(max_pixels=56 * 56))
    img = _image(224, 224)
    n_big = int(big.image_processor(images=[img], return_tensors="pt")["image_grid_thw"].prod())
    n_small = int(small.image_processor(images=[img], return_tensors="pt")["image_grid_thw"].prod())
    assert n_small < n_big


def test_sizes_are_arguments(tmp_path):
    path = build_tiny_model(
        tmp_path / "m",
        corpus=SMALL_CORPUS,
        hidden_size=96,
        num_layers=3,
        num_heads=4,
        vision_depth=3,
        vision_hidden_size=48,
        max_pixels=56 * 56,
    )
    cfg = json.loads((path / "config.json").read_text())
    text = cfg.get("text_config", cfg)
    assert text["hidden_size"] == 96 and text["num_hidden_layers"] == 3
    assert sum(text["rope_parameters"]["mrope_section"]) == 96 // 4 // 2
    assert cfg["vision_config"]["depth"] == 3 and cfg["vision_config"]["out_hidden_size"] == 96
    model, processor = load_model(path)
    _generate(model, processor, [_image()], max_new_tokens=2)


def test_mrope_section_matches_qwen_7b():
    assert mrope_section(128) == [16, 24, 24]


def test_lora_adapter_folder_loads_base_plus_adapter(tiny, tmp_path):
    from peft import LoraConfig, PeftModel, get_peft_model

    base, processor = load_model(tiny, for_training=True)
    peft_model = get_peft_model(
        base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    )
    peft_model.save_pretrained(tmp_path / "adapter")
    assert json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())[
        "base_model_name_or_path"
    ]
    text = processor.apply_chat_template(
        student_messages(), add_generation_prompt=True, tokenize=False
    )
    inputs = processor(text=[text], images=[_image()], return_tensors="pt")
    peft_model.eval()
    with torch.no_grad():
        want = peft_model(**inputs).logits
    merged, proc2 = load_model(tmp_path / "adapter")  # no processor files: the base's
    assert proc2.image_processor is not None
    assert not isinstance(merged, PeftModel)
    with torch.no_grad():
        got = merged(**inputs).logits
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    trainable, _ = load_model(tmp_path / "adapter", for_training=True)
    assert isinstance(trainable, PeftModel)
    assert any(p.requires_grad for n, p in trainable.named_parameters() if "lora_" in n)


def test_freeze_vision_tower_keeps_the_projector_trainable(tiny):
    model, _ = load_model(tiny, for_training=True)
    n = freeze_vision_tower(model)
    assert n > 0
    frozen = {name for name, p in model.named_parameters() if not p.requires_grad}
    assert any("visual.blocks" in name for name in frozen)
    assert not any("merger" in name or "language_model" in name for name in frozen)


def test_a_missing_model_is_a_one_line_error(tmp_path):
    with pytest.raises(QponderError):
        load_model(tmp_path / "nope")


def test_resolve_dtype():
    assert resolve_dtype("bfloat16") == torch.bfloat16
    if not torch.cuda.is_available():
        assert resolve_dtype("auto") == torch.float32


def test_lora_settings_default_is_off():
    assert LoraSettings().enabled is False


def test_cli_builds_the_tiny_model(tmp_path):
    from qponder.cli import main

    assert (
        main(["model", "tiny", "--out", str(tmp_path / "t"), "--hidden-size", "32", "--heads", "2"])
        == 0
    )
    model, processor = load_model(tmp_path / "t")
    assert model.config.text_config.hidden_size == 32
    score_token_ids(processor.tokenizer)


def test_default_corpus_includes_the_prompts_and_synthetic_reasoning():
    corpus = default_corpus(n_completions=20)
    assert DEFAULT_PROMPTS.student_instruction in corpus
    assert sum(tagged("<answer>") in t for t in corpus) >= 20


def test_folders_that_are_not_checkpoints_are_one_error_naming_the_path(tmp_path, tiny):
    import shutil

    from qponder.errors import QponderError
    from qponder.models import load_model

    (tmp_path / "empty").mkdir()
    with pytest.raises(QponderError, match=r"empty: not a model checkpoint \(no config.json\)"):
        load_model(tmp_path / "empty")
    with pytest.raises(QponderError, match=r"nowhere: no such model folder"):
        load_model(tmp_path / "nowhere")
    torn = tmp_path / "torn"
    shutil.copytree(tiny, torn)
    weights = torn / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # a killed save
    with pytest.raises(QponderError, match=r"torn: a weight file is damaged or cut short"):
        load_model(torn)


# issue 25: a mistyped folder was tried on the hub (25 s of retries, then a connection error)
@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("runs/nope", "runs/ is a local folder, so this is read as a path"),
        ("runs/sft/final", "it is written as a path"),
        ("./final", "it is written as a path"),
        ("~/final", "it is written as a path"),
        ("/no/such/final", "it is written as a path"),
    ],
)
def test_a_path_that_exists_nowhere_fails_at_once_online_too(value, why, tmp_path, monkeypatch):
    from qponder.models.checkpoint import check_model_path

    (tmp_path / "runs").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HF_HUB_OFFLINE")  # the hub could be asked: the value is not for it
    with pytest.raises(QponderError) as info:
        check_model_path(value)
    assert str(info.value) == (
        f"{value}: no such model folder ({why}; a hub id such as org/name needs the network "
        "and no local folder of that name)"
    )


def test_what_may_be_a_hub_id_is_left_to_the_hub_unless_offline_and_not_cached(
    tmp_path, monkeypatch
):
    import huggingface_hub.constants

    from qponder.models.checkpoint import check_model_path

    monkeypatch.chdir(tmp_path)
    cache = tmp_path / "hub"
    snapshot = cache / "models--org--cached" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (cache / "models--org--cached" / "refs").mkdir()
    (cache / "models--org--cached" / "refs" / "main").write_text("abc123")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.delenv("HF_HUB_OFFLINE")
    for value in ("org/name", "gpt2", "org/cached"):
        check_model_path(value)  # the hub may have it
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    check_model_path("org/cached")  # offline, from the cache, as transformers loads it
    for value in ("org/name", "gpt2"):
        with pytest.raises(QponderError, match=rf"^{value}: no such model folder \(HF_HUB_OFFLINE"):
            check_model_path(value)


def test_an_adapter_whose_base_exists_nowhere_names_the_base(tmp_path, monkeypatch):
    from qponder.models.checkpoint import check_model_path

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    missing = tmp_path / "gone" / "base"
    (adapter / "adapter_config.json").write_text(
        json.dumps({"base_model_name_or_path": str(missing)})
    )
    monkeypatch.delenv("HF_HUB_OFFLINE")
    with pytest.raises(QponderError, match=rf"^{missing}: no such model folder"):
        check_model_path(adapter)
    with pytest.raises(QponderError, match=rf"^{missing}: no such model folder"):
        load_model(adapter)


def test_the_tiny_checkpoint_carries_what_stock_loaders_need(tiny):
    from checkpoint_checks import assert_stock_loadable

    assert_stock_loadable(tiny)
