"""The OpenAI-compatible teacher against a real HTTP server on loopback that injects faults:
every image ends kept or rejected with the right reason, and retries follow the policy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from answer_tags import tagged
from distill_fakes import MODEL, FakeTeacherServer, make_samples

from qponder.config import DistillConfig, Recipe
from qponder.distill import TeacherFatalError, run_distillation
from qponder.distill.base import TeacherStoppedError
from qponder.distill.openai_teacher import encode_image, retry_after_seconds
from qponder.parsing import is_well_formed
from qponder.prompts import DEFAULT_PROMPTS, PROMPT_VERSION


def recipe(base_url: str, **kw) -> Recipe:
    settings = {
        "teacher": "openai",
        "base_url": base_url,
        "model": MODEL,
        "concurrency": 4,
        "timeout": 0.5,
        "max_retries": 2,
        "retry_backoff": 0.01,
        "max_side": 32,
        "api_key_env": "QPONDER_TEST_KEY",
    }
    settings.update(kw)
    return Recipe(distill=DistillConfig(**settings))


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_faults_end_with_every_image_accounted_for(tmp_path):
    mos = [3.0, 2.5, 4.0, 3.5, 1.5, 3.0, 2.0, 3.0, 4.2, 2.2, 3.0, 3.3]
    samples = make_samples(tmp_path / "img", mos)
    Path(samples[10].image_path).write_bytes(b"\x89PNG\r\n\x1a\n broken")  # undecodable file
    plan = {
        1: ["500", "ok"],  # one server error, then an answer
        2: ["429", "ok"],  # rate limited with Retry-After: 1
        3: ["stall", "ok"],  # no answer within the timeout
        4: ["broken", "ok"],  # a 200 with broken JSON
        5: ["noanswer"],  # reasoning without an <answer> block
        6: ["far"],  # a score far from the MOS
        7: ["500"],  # fails on every attempt
        8: ["nochoices", "ok"],  # a completion without choices
        9: ["html", "ok"],  # an HTML page instead of JSON
        11: ["400"],  # the request is refused: not retried
    }
    out = tmp_path / "cold.jsonl"
    with FakeTeacherServer(mos, plan, stall_s=1.0) as srv:
        report = run_distillation(recipe(srv.base_url), samples, out=out, progress=False)
    kept, rejected = read(out), read(tmp_path / "cold.rejected.jsonl")
    assert sorted(r["id"] for r in kept) == [f"img{i:03d}" for i in (0, 1, 2, 3, 4, 8, 9)]
    reasons = {r["id"]: r["reason"] for r in rejected}
    assert reasons == {
        "img005": "format",
        "img006": "score_mismatch",
        "img007": "teacher_error",
        "img010": "bad_image",
        "img011": "teacher_error",
    }
    assert len(kept) + len(rejected) == len(samples)  # nothing lost, nothing twice
    reject_keys = {
        "id",
        "image",
        "mos",
        "reason",
        "detail",
        "teacher_score",
        "teacher_scores",
        "teacher",
        "prompt_version",
    }
    assert all(set(r) == reject_keys for r in rejected)
    # retries: exactly as scripted; 7 used its whole budget, 11 was not retried
    assert len(srv.requests[7]) == 3 and len(srv.requests[11]) == 1
    assert 10 not in srv.requests  # a bad image never reaches the teacher
    gap = srv.requests[2][1]["t"] - srv.requests[2][0]["t"]
    assert gap >= 0.9  # Retry-After: 1 was honoured
    stats = report["this_run"]["teacher"]
    assert stats["retries"] == {"malformed": 3, "rate_limit": 1, "server_error": 3, "timeout": 1}
    assert report["status"] == "complete"
    assert report["kept"] == 7 and report["rejected"] == 5
    assert report["rejected_by_reason"] == {
        "teacher_error": 2,
        "format": 1,
        "score_mismatch": 1,
        "bad_image": 1,
    }
    for r in kept:
        assert is_well_formed(r["completion"])
        assert r["prompt"] == DEFAULT_PROMPTS.student_instruction
        assert r["prompt_version"] == PROMPT_VERSION and r["teacher"] == f"openai:{MODEL}"
        assert abs(r["teacher_score"] - r["mos"]) <= 0.5
    assert json.loads((tmp_path / "cold.report.json").read_text()) == json.loads(json.dumps(report))


def test_images_are_downscaled_png_with_the_key_from_the_environment(tmp_path, monkeypatch):
    samples = make_samples(tmp_path / "img", [3.0, 3.5], size=(80, 40))
    with FakeTeacherServer([3.0, 3.5]) as srv:
        monkeypatch.setenv("QPONDER_TEST_KEY", "sk-test-123")
        run_distillation(
            recipe(srv.base_url), samples[:1], out=tmp_path / "a.jsonl", progress=False
        )
        monkeypatch.delenv("QPONDER_TEST_KEY")
        run_distillation(
            recipe(srv.base_url), samples[1:], out=tmp_path / "b.jsonl", progress=False
        )
    first, second = srv.requests[0][0], srv.requests[1][0]
    assert first["size"] == (32, 16) and first["format"] == "PNG"  # longest side = max_side
    assert first["auth"] == "Bearer sk-test-123"
    assert second["auth"] == "Bearer EMPTY"  # a local server needs no key
    assert first["system"] == DEFAULT_PROMPTS.teacher_system
    assert first["prompt"] == DEFAULT_PROMPTS.teacher_blind


def test_without_a_base_url_a_missing_key_is_an_error(monkeypatch):
    monkeypatch.delenv("QPONDER_TEST_KEY", raising=False)
    from qponder.distill.openai_teacher import OpenAITeacher
    from qponder.errors import QponderError

    with pytest.raises(QponderError, match=r"\$QPONDER_TEST_KEY"):
        OpenAITeacher("gpt", None, api_key_env="QPONDER_TEST_KEY")


def test_authentication_failure_stops_the_run_without_marking_images(tmp_path):
    samples = make_samples(tmp_path / "img", [3.0] * 6)
    out = tmp_path / "cold.jsonl"
    with (
        FakeTeacherServer([3.0] * 6, default=["401"]) as srv,
        pytest.raises(TeacherFatalError, match="401"),
    ):
        run_distillation(recipe(srv.base_url), samples, out=out, progress=False)
    assert read(out) == [] and read(tmp_path / "cold.rejected.jsonl") == []
    report = json.loads((tmp_path / "cold.report.json").read_text())
    assert report["status"] == "aborted" and "401" in report["error"]


def test_a_dead_endpoint_stops_the_run_and_retry_errors_redoes_those_images(tmp_path):
    n = 25
    samples = make_samples(tmp_path / "img", [3.0] * n)
    out = tmp_path / "cold.jsonl"
    dead = recipe("", concurrency=1, max_retries=0)
    with (
        FakeTeacherServer([3.0] * n, default=["500"]) as srv,
        pytest.raises(TeacherStoppedError, match="in a row"),  # a failed run: exit 1
    ):
        dead.distill.base_url = srv.base_url
        run_distillation(dead, samples, out=out, progress=False)
    rejected = read(tmp_path / "cold.rejected.jsonl")
    assert len(rejected) == 20 and {r["reason"] for r in rejected} == {"teacher_error"}
    with FakeTeacherServer([3.0] * n) as srv:
        # a plain re-run skips them; --retry-errors processes them again
        report = run_distillation(recipe(srv.base_url), samples, out=out, progress=False)
        assert report["kept"] == 5 and report["rejected"] == 20
        report = run_distillation(
            recipe(srv.base_url), samples, out=out, progress=False, retry_errors=True
        )
    assert report["kept"] == n and report["rejected"] == 0
    assert read(tmp_path / "cold.rejected.jsonl") == []


def test_best_of_k_keeps_the_closest_parsable_answer(tmp_path):
    samples = make_samples(tmp_path / "img", [3.0, 3.0])
    with FakeTeacherServer([3.0, 3.0], {0: ["mixed"], 1: ["one"]}) as srv:
        run_distillation(
            recipe(srv.base_url, samples=3), samples, out=tmp_path / "c.jsonl", progress=False
        )
    kept = {r["id"]: r for r in read(tmp_path / "c.jsonl")}
    assert kept["img000"]["teacher_score"] == 3.2
    assert kept["img000"]["teacher_scores"] == [4.5, 3.2]  # the unparsable one is not scored
    assert srv.requests[0][0]["n"] == 3
    # a server that ignores n is asked again until it has given 3 answers
    assert [r["n"] for r in srv.requests[1]] == [3, 2, 1]
    assert len(kept["img001"]["teacher_scores"]) == 3


def test_guided_mode_gives_the_mos_and_rejects_reasoning_that_quotes_it(tmp_path):
    samples = make_samples(tmp_path / "img", [3.25, 2.5])
    with FakeTeacherServer([3.25, 2.5], {1: ["leak"]}) as srv:
        run_distillation(
            recipe(srv.base_url, mode="guided"), samples, out=tmp_path / "g.jsonl", progress=False
        )
    assert "3.25" in srv.requests[0][0]["prompt"]
    assert [r["id"] for r in read(tmp_path / "g.jsonl")] == ["img000"]
    assert read(tmp_path / "g.rejected.jsonl")[0]["reason"] == "mos_leak"


def test_model_name_is_asked_from_the_server_and_split_reasoning_is_rejoined(tmp_path):
    samples = make_samples(tmp_path / "img", [3.0])
    with FakeTeacherServer([3.0], {0: ["split_reasoning"]}) as srv:
        report = run_distillation(
            recipe(srv.base_url, model=None), samples, out=tmp_path / "m.jsonl", progress=False
        )
    assert report["settings"]["teacher"] == f"openai:{MODEL}"
    assert srv.requests[0][0]["model"] == MODEL
    (row,) = read(tmp_path / "m.jsonl")
    assert row["completion"].startswith(tagged("<think>\nEdges are soft")) and is_well_formed(
        row["completion"]
    )


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"retry-after": "3"}, 3.0),  # seconds
        ({"retry-after": "1.5"}, 1.5),  # fractional seconds (non-standard, common)
        ({"retry-after-ms": "200", "retry-after": "9"}, 0.2),  # milliseconds win
        ({"retry-after": "100000"}, 300.0),  # capped
        ({"retry-after": "soon"}, None),  # unreadable: back off instead
        ({}, None),  # none given
    ],
)
def test_retry_after_header(headers, seconds):
    assert retry_after_seconds(headers) == seconds


def test_encode_image_never_upscales():
    import base64
    import io

    from PIL import Image

    url = encode_image(Image.new("RGB", (20, 10)), 1024)
    img = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert img.size == (20, 10)
