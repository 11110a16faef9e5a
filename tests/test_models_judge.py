"""Consistency judges read reasoning alone, with the recipe's instruction, and give the
expected score after an open answer tag."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from qponder.models.judge import HFJudge, OpenAIJudge, build_judge
from qponder.models.readout import score_token_ids
from qponder.models.tiny import generic_iqa_sentences, qwen2_5_vl_chat_template, train_tokenizer


class _ReadingModel:
    """A stand-in causal LM whose next-token distribution after the prompt depends on the
    words in it: "dark" puts the mass on "2", anything else on "4" and "5" equally."""

    def __init__(self, tokenizer, ids):
        import torch

        self.torch, self.tokenizer, self.ids = torch, tokenizer, ids
        self.param = torch.nn.Parameter(torch.zeros(1))
        self.prompts: list[str] = []

    def eval(self):
        return self

    def parameters(self):
        return iter([self.param])

    def __call__(self, input_ids, attention_mask=None, **kwargs):
        from types import SimpleNamespace

        torch = self.torch
        logits = torch.full((*input_ids.shape, len(self.tokenizer)), -1e4)
        for row, ids in enumerate(input_ids.tolist()):
            text = self.tokenizer.decode(ids)
            self.prompts.append(text)
            if ids[-1] == self.tokenizer.pad_token_id:
                continue  # read at a padding position: uniform over the digits, 3.0
            levels = [1] if "dark" in text else [3, 4]  # indices into "1".."5"
            logits[row, -1, [self.ids[k] for k in levels]] = 0.0
        return SimpleNamespace(logits=logits)


def test_hf_judge_reads_the_expected_score_after_an_open_answer_tag_without_image():
    tok = train_tokenizer(generic_iqa_sentences(100), vocab_size=400)
    tok.chat_template = qwen2_5_vl_chat_template()
    model = _ReadingModel(tok, score_token_ids(tok))
    judge = HFJudge(model, tok, batch_size=2)
    reasonings = ["The image is very dark and dim.", "Crisp.", "It is sharp with no noise at all."]
    # batches of 2 with left padding: the read-out position is each row's last token
    assert judge.implied_scores(reasonings) == pytest.approx([2.0, 4.5, 4.5])
    assert tok.padding_side == "right"  # restored
    for text, reasoning in zip(model.prompts, reasonings, strict=True):
        assert text.endswith(f"{reasoning}\n<answer>")
        assert "<|image_pad|>" not in text and "<|vision_start|>" not in text
    assert judge.stats.texts == 3 and judge.stats.calls == 1


def test_hf_judge_reads_with_the_given_instruction():
    tok = train_tokenizer(generic_iqa_sentences(100), vocab_size=400)
    tok.chat_template = qwen2_5_vl_chat_template()
    model = _ReadingModel(tok, score_token_ids(tok))
    judge = HFJudge(model, tok, instruction="Judge this photo, please.")
    judge.implied_scores(["Crisp."])
    assert "Judge this photo, please." in model.prompts[0]


class _FakeCompletions:
    """Records the request; answers with top log-probabilities of " 4" and "5"."""

    def __init__(self):
        self.requests: list[dict] = []

    def create(self, **kwargs):
        self.requests.append(kwargs)
        top = [
            SimpleNamespace(token=" 4", logprob=-0.6931),  # leading space, as some servers send
            SimpleNamespace(token="5", logprob=-0.6931),
            SimpleNamespace(token="x", logprob=-0.1),
        ]
        logprobs = SimpleNamespace(content=[SimpleNamespace(top_logprobs=top)])
        return SimpleNamespace(choices=[SimpleNamespace(logprobs=logprobs)])


def test_openai_judge_uses_the_shared_read_out_and_the_recipe_instruction():
    completions = _FakeCompletions()
    client = SimpleNamespace(chat=SimpleNamespace(completions=completions))
    judge = OpenAIJudge("http://127.0.0.1:1/v1", "m", instruction="Custom words.", client=client)
    assert judge.implied_scores(["Sharp and clean."]) == [pytest.approx(4.5)]
    messages = completions.requests[0]["messages"]
    assert messages[0] == {"role": "user", "content": "Custom words."}
    assert messages[1]["content"].endswith("Sharp and clean.\n<answer>")


def test_build_judge_passes_the_instruction_to_an_openai_judge(monkeypatch):
    cfg = SimpleNamespace(judge="openai", base_url="http://127.0.0.1:1/v1", model="m")
    judge = build_judge(cfg, "unused", instruction="Recipe instruction.")
    assert isinstance(judge, OpenAIJudge) and judge.instruction == "Recipe instruction."
