"""Distillation through a batch API: the exported requests are what a live run sends, and the
results (missing, duplicated and failed lines included) go through the same filter and
journals, so a batch and a live run can finish each other's work."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from distill_fakes import MODEL, FakeTeacherServer, make_samples, write_labels

from qponder.cli import main
from qponder.runfiles import read_jsonl


def run_batch(requests_path, results_path, base_url):
    """What `vllm run-batch` or a hosted batch API does: POST each request, write one
    result line per request in the OpenAI Batch output format."""
    lines = []
    with httpx.Client(base_url=base_url.removesuffix("/v1")) as client:
        for i, req in enumerate(read_jsonl(requests_path)):
            assert req["method"] == "POST" and req["url"] == "/v1/chat/completions"
            resp = client.post(req["url"], json=req["body"], timeout=30)
            lines.append({"id": f"batch_req_{i}", "custom_id": req["custom_id"],
                          "response": {"status_code": resp.status_code, "request_id": f"r{i}",
                                       "body": resp.json()}, "error": None})  # fmt: skip
    results_path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return lines


@pytest.fixture
def dataset(tmp_path):
    samples = make_samples(tmp_path / "img", [3.0] * 8)
    spec = f"generic:{write_labels(samples, tmp_path / 'img' / 'labels.csv')}"
    return [Path(s.image_path).name for s in samples], spec  # the ids of a generic dataset


def _distill(spec, out, *extra):
    return main(["distill", "--dataset", spec, "--split", "train", "--out", str(out),
                 "--model", MODEL, "--set", "distill.max_side=32", *extra])  # fmt: skip


def test_exported_requests_are_what_a_live_run_sends(dataset, tmp_path, capsys):
    samples, spec = dataset
    requests = tmp_path / "requests.jsonl"
    assert _distill(spec, tmp_path / "batch.jsonl", "--export-batch", str(requests)) == 0
    lines = read_jsonl(requests)
    assert sorted(x["custom_id"] for x in lines) == sorted(samples)
    with FakeTeacherServer([3.0] * 8) as srv:
        code = _distill(spec, tmp_path / "live.jsonl", "--teacher", "openai",
                        "--base-url", srv.base_url, "--limit", "1")  # fmt: skip
        assert code == 0
        live = srv.requests[0][0]
        run_batch(requests, tmp_path / "results.jsonl", srv.base_url)
        batch = srv.requests[0][1]
    for key in ("prompt", "system", "model", "n", "size", "format"):
        assert live[key] == batch[key], key  # same prompt, image (lossless PNG), model, n


def test_a_batch_with_missing_duplicated_and_failed_lines(dataset, tmp_path, capsys):
    samples, spec = dataset
    out, requests, results = tmp_path / "cold.jsonl", tmp_path / "req.jsonl", tmp_path / "res.jsonl"
    assert _distill(spec, out, "--export-batch", str(requests)) == 0
    with FakeTeacherServer([3.0] * 8) as srv:
        lines = run_batch(requests, results, srv.base_url)
    ids = [x["custom_id"] for x in lines]
    lines[1]["error"] = {"code": "rate_limited", "message": "try later"}  # a failed line
    lines[2]["response"]["status_code"] = 500  # a server error inside the batch
    lines[3]["response"]["body"] = {"id": "x", "choices": []}  # no usable choice
    edited = [*lines[:6], lines[0], {"custom_id": "nobody", "response": {}}]  # 6, 7 missing
    results.write_text("".join(json.dumps(x) + "\n" for x in edited) + '{"custom_id": "torn')
    capsys.readouterr()
    assert _distill(spec, out, "--import-batch", str(results)) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["batch"] == {"lines": 8, "kept": 3, "rejected": 0, "failed": 3,
                               "duplicates": 1, "unknown": 1, "pending": 2}  # fmt: skip
    kept, rejected = read_jsonl(out), read_jsonl(tmp_path / "cold.rejected.jsonl")
    assert sorted(r["id"] for r in kept) == sorted([ids[0], ids[4], ids[5]])
    assert {r["id"]: r["reason"] for r in rejected} == dict.fromkeys(ids[1:4], "teacher_error")
    assert all(r["teacher"] == f"openai:{MODEL}" for r in kept + rejected)
    assert report["status"] == "pending" and report["kept"] == 3
    # a second export asks only for what is missing; --retry-errors also for the failed
    assert _distill(spec, out, "--export-batch", str(requests)) == 0
    assert sorted(x["custom_id"] for x in read_jsonl(requests)) == sorted(ids[6:])
    assert _distill(spec, out, "--export-batch", str(requests), "--retry-errors") == 0
    assert sorted(x["custom_id"] for x in read_jsonl(requests)) == sorted(ids[1:4] + ids[6:])
    # and a live run against the same model finishes the rest: one file, each image once
    with FakeTeacherServer([3.0] * 8) as srv:
        assert _distill(spec, out, "--teacher", "openai", "--base-url", srv.base_url,
                        "--retry-errors") == 0  # fmt: skip
        assert sum(len(r) for r in srv.requests.values()) == 5
    everything = read_jsonl(out) + read_jsonl(tmp_path / "cold.rejected.jsonl")
    assert sorted(r["id"] for r in everything) == sorted(samples)


def test_a_batch_body_is_read_by_the_fields_qponder_uses(dataset, tmp_path, capsys):
    samples, spec = dataset
    out, requests, results = tmp_path / "cold.jsonl", tmp_path / "req.jsonl", tmp_path / "res.jsonl"
    assert _distill(spec, out, "--export-batch", str(requests)) == 0
    with FakeTeacherServer([3.0] * 8) as srv:
        lines = run_batch(requests, results, srv.base_url)
    for line in lines[:4]:  # bodies without the fields qponder never reads
        for key in ("created", "id", "object", "model", "usage"):
            line["response"]["body"].pop(key, None)
    lines[4]["response"]["body"]["system_fingerprint"] = {"unexpected": ["shape"]}
    lines[5]["response"]["body"]["choices"][0]["message"] = {"role": "assistant"}  # no text
    lines[6]["response"]["body"] = "not an object"
    del lines[7]["response"]["body"]["choices"]
    results.write_text("".join(json.dumps(x) + "\n" for x in lines))
    capsys.readouterr()
    assert _distill(spec, out, "--import-batch", str(results)) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["batch"]["kept"] == 5 and report["batch"]["failed"] == 3
    rejected = {r["id"]: r for r in read_jsonl(tmp_path / "cold.rejected.jsonl")}
    assert sorted(rejected) == sorted(x["custom_id"] for x in lines[5:])
    details = " ".join(str(r.get("detail", r)) for r in rejected.values())
    assert "not a usable chat completion" in details and "not a chat completion" in details


def test_a_batch_needs_the_served_model_name(dataset, tmp_path, capsys):
    _, spec = dataset
    code = main(["distill", "--dataset", spec, "--out", str(tmp_path / "c.jsonl"),
                 "--export-batch", str(tmp_path / "r.jsonl")])  # fmt: skip
    assert code == 2 and "distill.model: a batch names the served model" in capsys.readouterr().err
    assert not (tmp_path / "r.jsonl").exists()


def test_importing_with_other_settings_is_refused(dataset, tmp_path, capsys):
    _, spec = dataset
    out, requests = tmp_path / "cold.jsonl", tmp_path / "req.jsonl"
    assert _distill(spec, out, "--export-batch", str(requests)) == 0
    capsys.readouterr()
    code = _distill(spec, out, "--import-batch", str(requests), "--tolerance", "0.2")
    assert code == 2 and "tolerance: 0.5 -> 0.2" in capsys.readouterr().err
