"""Consistency judges read reasoning alone, with the recipe's instruction, and give the
expected score after an open answer tag."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from qponder.answer_format import judge_continuation
from qponder.models.families import qwen2_5_vl_chat_template, train_tokenizer
from qponder.models.judge import HFJudge, OpenAIJudge, build_judge
from qponder.models.readout import score_token_ids
from qponder.models.tiny import generic_iqa_sentences


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
        assert text.endswith(judge_continuation(reasoning))  # the reasoning in its block
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
    assert messages[1]["content"] == judge_continuation("Sharp and clean.")


def test_build_judge_passes_the_instruction_to_an_openai_judge(monkeypatch):
    cfg = SimpleNamespace(judge="openai", base_url="http://127.0.0.1:1/v1", model="m")
    judge = build_judge(cfg, "unused", instruction="Recipe instruction.")
    assert isinstance(judge, OpenAIJudge) and judge.instruction == "Recipe instruction."


# --------------------------------------------------------------------------- unsupported endpoints


def _status_error(status: int, body: dict):
    """The error the openai SDK raises for a JSON answer ``body`` with ``status``: only an
    OpenAI-style ``{"error": {"message": ...}}`` makes it into the text."""
    import httpx
    import openai

    request = httpx.Request("POST", "http://127.0.0.1:1/v1/chat/completions")
    response = httpx.Response(status, request=request, json=body)
    cls = {400: openai.BadRequestError, 422: openai.UnprocessableEntityError}[status]
    data = body.get("error", body)
    message = data.get("message") if isinstance(data, dict) else None
    text = f"Error code: {status}" + (f" - {message}" if message else "")
    return cls(text, response=response, body=data)


class _ScriptedCompletions:
    """Answers each request with the next item of ``script``: an exception is raised, a
    completion is returned."""

    def __init__(self, script):
        self.script = list(script)
        self.requests: list[dict] = []

    def create(self, **kwargs):
        self.requests.append(kwargs)
        item = self.script.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item


def _client(*script):
    return SimpleNamespace(chat=SimpleNamespace(completions=_ScriptedCompletions(script)))


def _with_logprobs():
    top = [SimpleNamespace(token="3", logprob=0.0)]
    return SimpleNamespace(
        choices=[
            SimpleNamespace(logprobs=SimpleNamespace(content=[SimpleNamespace(top_logprobs=top)]))
        ]
    )


def _without_logprobs():
    message = SimpleNamespace(content="4", reasoning_content=None)
    return SimpleNamespace(choices=[SimpleNamespace(message=message, logprobs=None)])


def test_openai_judge_refused_continue_final_message_is_one_clear_error():
    from qponder.errors import QponderError
    from qponder.models.judge import JudgeEndpointError

    # the answer of transformers serve 5.x to the judge's request
    detail = "Unexpected fields in the request: {'continue_final_message', 'add_generation_prompt'}"
    client = _client(_status_error(422, {"detail": detail}))
    judge = OpenAIJudge("http://127.0.0.1:8123/v1", "tiny", client=client)
    with pytest.raises(JudgeEndpointError) as info:
        judge.implied_scores(["Sharp and clean."])
    msg = str(info.value)
    assert isinstance(info.value, QponderError) and "\n" not in msg
    assert "http://127.0.0.1:8123/v1" in msg and "'tiny'" in msg
    assert "refused continue_final_message (HTTP 422" in msg and "vLLM" in msg


def test_openai_judge_other_refusals_on_the_first_call_name_the_status():
    from qponder.models.judge import JudgeEndpointError

    client = _client(_status_error(400, {"error": {"message": "unknown model 'tiny'"}}))
    judge = OpenAIJudge("http://127.0.0.1:8123/v1", "tiny", client=client)
    with pytest.raises(
        JudgeEndpointError, match=r"refused the judge request \(HTTP 400: .*unknown model"
    ):
        judge.implied_scores(["Sharp."])


def test_openai_judge_without_logprobs_fails_instead_of_scoring_none():
    from qponder.models.judge import JudgeEndpointError

    judge = OpenAIJudge("http://127.0.0.1:8123/v1", "tiny", client=_client(_without_logprobs()))
    with pytest.raises(JudgeEndpointError, match="returns no log-probabilities.*vLLM"):
        judge.implied_scores(["Sharp."])
    assert judge.stats.calls == 0  # nothing was counted as judged


def test_openai_judge_keeps_going_once_the_endpoint_has_proved_itself(caplog):
    import openai

    later_refusal = _status_error(400, {"error": {"message": "prompt too long"}})
    client = _client(_with_logprobs(), _without_logprobs(), later_refusal)
    judge = OpenAIJudge("http://127.0.0.1:8123/v1", "tiny", client=client)
    assert judge.implied_scores(["Sharp.", "Soft."]) == [pytest.approx(3.0), None]
    assert "without log-probabilities" in caplog.text
    with pytest.raises(openai.BadRequestError):  # a real error of one request, not a setup one
        judge.implied_scores(["x" * 100])


def test_check_fails_before_training_on_an_unusable_endpoint():
    from qponder.models.judge import JudgeEndpointError

    judge = OpenAIJudge("http://127.0.0.1:1/v1", "m", client=_client(_without_logprobs()))
    with pytest.raises(JudgeEndpointError, match="returns no log-probabilities"):
        judge.check()
