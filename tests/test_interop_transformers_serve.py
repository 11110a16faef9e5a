"""qponder against a real third-party OpenAI-compatible server: the stock ``transformers
serve`` of the installed transformers, serving the tiny Qwen2.5-VL.

The server is stock except for one substitution, made by ``tests/stock_servers.py`` and
needed only because this CPU environment has no torchvision: the processor is loaded with
``qponder.models.load_processor`` (the same Qwen2.5-VL processor class without its video
processor) instead of ``AutoProcessor.from_pretrained``. Routes, request validation,
generation and the reasoning parser are the server's own.

The tiny model is random; to make it write the answer format, its copy here gets a
``generation_config.json`` (a standard checkpoint file, which the server uses as the base
of every request's generation config) with ``do_sample: true`` and a ``sequence_bias`` that
scripts ``<think>\\n{REASONING}\\n</think>\\n<answer>D.DD</answer>``: the reasoning is fixed,
the score's three digits are drawn by the model (first digit 1-5 or 9, so some answers are
out of range: parse failures, which qponder must count, not drop). The server's own
reasoning parser then moves the ``<think>`` block into ``reasoning_content``.

What the server does, observed (transformers 5.23): it ignores ``n``, ``logprobs`` and
``top_logprobs`` (one choice, ``logprobs: null``, one warning), answers 422 to
``continue_final_message``/``add_generation_prompt``, splits the reasoning into
``reasoning_content``, and decodes greedily whatever the temperature unless the model's
generation config samples. ``docs/interop.md`` ("transformers serve") has the commands.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from answer_tags import tagged
from stock_servers import start_transformers_serve

from qponder.parsing import PARSE_FAILURES

pytestmark = pytest.mark.slow

REASONING = "The image is sharp with little noise and good exposure."
BIAS = 100.0  # on logits of a random tiny model (|logit| < 1): the scripted token wins
FIRST_DIGITS = "123459"  # 9.xx and 5.xx (above 5) are out of range: parse failures
POST = '"POST /v1/chat/completions HTTP/1.1"'
ROOT = Path(__file__).resolve().parent.parent


def script_answers(model_dir: Path) -> None:
    """Make the tiny model at ``model_dir`` write ``<think>\\n{REASONING}\\n</think>\\n
    <answer>D.DD</answer>`` and stop, with sampled digits (see the module docstring).

    Each ``sequence_bias`` entry biases its last token when the tokens before it end the
    text so far: the fixed part is keyed by the whole prefix from ``<think>`` (itself biased
    everywhere, but less), the digits by every prefix they may follow.
    """
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)

    def ids(text: str) -> list[int]:
        return tok.encode(text, add_special_tokens=False)

    fixed = ids(tagged(f"<think>\n{REASONING}\n</think>\n<answer>"))
    digit = {str(d): ids(str(d))[0] for d in range(10)}
    dot, close, eos = ids(".")[0], ids(tagged("</answer>"))[0], tok.eos_token_id
    bias: list[list] = [[fixed[:1], BIAS / 2]]
    bias += [[fixed[: i + 1], BIAS] for i in range(1, len(fixed))]
    for d1 in FIRST_DIGITS:
        head = [*fixed, digit[d1]]
        bias += [[head, BIAS], [[*head, dot], BIAS]]
        for d2 in digit.values():
            bias.append([[*head, dot, d2], BIAS])
            for d3 in digit.values():
                tail = [*head, dot, d2, d3]
                bias += [[tail, BIAS], [[*tail, close], BIAS], [[*tail, close, eos], BIAS]]
    path = model_dir / "generation_config.json"
    config = json.loads(path.read_text())
    config.update(do_sample=True, sequence_bias=bias)
    path.write_text(json.dumps(config))


@pytest.fixture(scope="module")
def served(tmp_path_factory, tiny_model):
    """The tiny model (scripted), 20 synthetic images, and the stock server on loopback."""
    from tiny_models import copy_of

    root = tmp_path_factory.mktemp("interop")
    model = copy_of(tiny_model, root / "tiny")  # scripted: changed
    script_answers(model)
    data = root / "synth"
    cli("data", "synth", "--out", data, "--n", 20, "--size", 64, "--seed", 0, env=_env(root))
    with start_transformers_serve(model, root / "server.log", env={"HF_HOME": root / "hf"}) as srv:
        yield srv, data


def _env(root: Path) -> dict[str, str]:
    return {
        **os.environ,
        "XDG_CACHE_HOME": str(root / "cache"),
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }


def cli(*args, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``python -m qponder.cli ARGS``; fails the test with its output when it fails."""
    cmd = [sys.executable, "-m", "qponder.cli", *map(str, args)]
    proc = subprocess.run(
        cmd, cwd=ROOT, env=env or dict(os.environ), capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr}"
    return proc


def requests_served(srv, at_least: int = 0, wait: float = 5.0) -> int:
    """Chat-completion requests the server has answered so far (its access log)."""
    deadline = time.monotonic() + wait
    while True:
        n = srv.log_text().count(POST)
        if n >= at_least or time.monotonic() > deadline:
            return n
        time.sleep(0.1)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def check_answer(row: dict) -> None:
    """A completion that went through the server: the reasoning that came back in
    ``reasoning_content`` is in the text and the parsed reasoning; the score parsed, or the
    row says which parse failure it is."""
    assert row["text"].startswith(tagged(f"<think>\n{REASONING}\n</think>\n<answer>")), row["text"]
    assert re.fullmatch(tagged(r".*<answer>\d\.\d\d</answer>"), row["text"], flags=re.S), row[
        "text"
    ]
    assert row["reasoning"] == REASONING
    if row["score"] is None:
        assert row["error"] == "out_of_range" and row["error"] in PARSE_FAILURES
    else:
        assert row["error"] is None and 1 <= row["score"] <= 5


# --------------------------------------------------------------------------- the server itself


def test_the_server_ignores_n_and_logprobs_and_splits_off_the_reasoning(served):
    """What the other tests rely on, asked directly: if a later transformers honours ``n``
    or ``logprobs``, the re-ask and ``no_logprobs`` paths are no longer exercised here."""
    from PIL import Image

    from qponder.endpoints import message_text, openai_client
    from qponder.inference.backends import encode_png

    srv, data = served
    client = openai_client(srv.base_url, max_retries=0)
    image = Image.open(data / "images" / "00000.png").convert("RGB")
    resp = client.chat.completions.create(
        model=srv.model,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": encode_png(image)}},
                    {"type": "text", "text": "Rate the quality."},
                ],
            }
        ],
        n=3,
        logprobs=True,
        top_logprobs=5,
        temperature=1.0,
        max_tokens=64,
    )
    assert len(resp.choices) == 1, "transformers serve now honours n: update docs/interop.md"
    choice = resp.choices[0]
    assert choice.logprobs is None, "transformers serve now returns logprobs: update the docs"
    message = choice.message
    assert message.reasoning_content == REASONING  # the server's reasoning parser
    assert tagged("<think>") not in message.content and message.content.startswith(
        tagged("<answer>")
    )
    assert message_text(message) == tagged(f"<think>\n{REASONING}\n</think>\n{message.content}")
    assert "Ignoring unsupported fields in the request" in srv.log_text()
    # the image reached the model (the processor substitution): it adds prompt tokens
    text_only = client.chat.completions.create(
        model=srv.model,
        messages=[{"role": "user", "content": [{"type": "text", "text": "Rate the quality."}]}],
        max_tokens=64,
    )
    assert resp.usage.prompt_tokens > text_only.usage.prompt_tokens


def test_a_refused_request_says_why(served):
    """The server refuses with FastAPI's ``{"detail": ...}``, which the openai SDK leaves out
    of the exception text; qponder's error keeps it."""
    from PIL import Image

    from qponder.inference.backends import OpenAIBackend

    srv, _ = served
    backend = OpenAIBackend("not-the-served-model", base_url=srv.base_url, max_retries=0)
    (gen,) = backend.generate([Image.new("RGB", (32, 32))])[0]
    assert gen.error.startswith("request_failed: BadRequestError: Error code: 400")
    assert "Server is pinned to" in gen.error and "not-the-served-model" in gen.error


# --------------------------------------------------------------------------- qponder commands


def test_distill_with_the_server_as_teacher(served, tmp_path):
    srv, data = served
    before = requests_served(srv)
    out = tmp_path / "cold.jsonl"
    cli(
        "distill",
        "--dataset",
        f"synthetic:{data}",
        "--teacher",
        "openai",
        "--base-url",
        srv.base_url,
        "--model",
        srv.model,
        "--samples",
        3,
        "--limit",
        6,
        "--out",
        out,
        "--no-progress",
    )
    kept, rejected = read_jsonl(out), read_jsonl(tmp_path / "cold.rejected.jsonl")
    ids = [r["id"] for r in kept + rejected]
    assert len(ids) == len(set(ids)) == 6  # every image accounted for, once
    for row in kept:
        # the reasoning came back in reasoning_content and is in the training text
        assert row["completion"].startswith(tagged(f"<think>\n{REASONING}\n</think>\n<answer>"))
        assert abs(row["teacher_score"] - row["mos"]) <= 0.5
    assert {r["reason"] for r in rejected} <= {"score_mismatch", "format"}
    report = json.loads((tmp_path / "cold.report.json").read_text())
    assert report["kept"] + report["rejected"] == 6
    # n=3 is ignored by the server: qponder asked 3 times per image, and no request failed
    assert report["this_run"]["teacher"]["requests"] == 18, report["this_run"]
    assert not report["this_run"]["teacher"]["failures"]
    assert requests_served(srv, at_least=before + 18) - before == 18


def test_score_with_three_samples_though_the_server_ignores_n(served, tmp_path):
    srv, data = served
    images = sorted((data / "images").glob("*.png"))[:6]
    before = requests_served(srv)
    out = tmp_path / "scores.jsonl"
    cli(
        "score",
        *images,
        "--backend",
        "openai",
        "--base-url",
        srv.base_url,
        "--model",
        srv.model,
        "--samples",
        3,
        "--out",
        out,
    )
    rows = read_jsonl(out)
    assert sorted(r["path"] for r in rows) == sorted(map(str, images))  # a row per image
    assert requests_served(srv, at_least=before + 18) - before == 18  # 3 requests per image
    failures = 0
    for row in rows:
        assert len(row["samples"]) == 3
        for sample in row["samples"]:
            check_answer(sample)
            assert sample["expected_score"] is None
            assert sample["expected_score_reason"] == "no_logprobs"
            failures += sample["score"] is None
        assert row["expected_score"] is None and row["expected_score_reason"] == "no_logprobs"
        parsed = [s["score"] for s in row["samples"] if s["score"] is not None]
        if parsed:
            assert row["score"] == pytest.approx(sum(parsed) / len(parsed))
            assert row["error"] is None
        else:
            assert row["score"] is None and row["error"] == "out_of_range"
    # sampled, each request with its own seed: the three answers of an image differ
    distinct = [len({s["text"] for s in row["samples"]}) for row in rows]
    assert sum(d > 1 for d in distinct) >= len(rows) - 1, distinct
    assert failures < 3 * len(rows)


def test_eval_against_the_server(served, tmp_path):
    srv, data = served
    run = tmp_path / "run"
    cli(
        "eval",
        "--backend",
        "openai",
        "--base-url",
        srv.base_url,
        "--model",
        srv.model,
        "--dataset",
        f"synthetic:{data}",
        "--limit",
        4,
        "--out",
        run,
    )
    rows = read_jsonl(run / "predictions.jsonl")
    assert len(rows) == len({r["id"] for r in rows}) == 4
    for row in rows:
        check_answer(row)
        assert row["expected_score"] is None and row["expected_score_reason"] == "no_logprobs"
    summary = json.loads((run / "summary.json").read_text())["datasets"]["synthetic"]
    assert summary["n"] == 4
    assert summary["parse_failures"] == sum(r["score"] is None for r in rows)
    assert summary["expected_score"] is None


# --------------------------------------------------------------------------- the judge


def test_the_openai_judge_refuses_this_server_loudly(served):
    from qponder.errors import QponderError
    from qponder.models.judge import JudgeEndpointError, OpenAIJudge

    srv, _ = served
    judge = OpenAIJudge(srv.base_url, srv.model)
    with pytest.raises(JudgeEndpointError) as info:
        judge.implied_scores([REASONING])
    msg = str(info.value)
    assert isinstance(info.value, QponderError) and "\n" not in msg
    assert srv.base_url in msg and "refused continue_final_message (HTTP 422" in msg
    assert "vLLM" in msg
