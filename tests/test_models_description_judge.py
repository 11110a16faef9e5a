"""The description judge: a VLM endpoint grades the distortions a reasoning asserts against
the image; refusals, HTTP errors and malformed grades are errors with their reason, never
grades. Driven over real HTTP against a local OpenAI-compatible server."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from answer_tags import tagged
from PIL import Image

from qponder.models.description_judge import DescriptionJudge, parse_grades


class _Grader(BaseHTTPRequestHandler):
    """Answers by the first word of the image-less prompt's claim list: a script per test."""

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        content = body["messages"][0]["content"]
        assert content[0]["image_url"]["url"].startswith("data:image/png;base64,")
        prompt = content[1]["text"]
        claims = [line[2:] for line in prompt.splitlines() if line.startswith("- ")]
        self.server.prompts.append(prompt)
        action = self.server.script.pop(0)
        if action == "500":
            self._send(500, {"error": {"message": "overloaded"}})
            return
        text = {
            "ok": json.dumps({"grades": [{"kind": k, "visible": k != "noise"} for k in claims]}),
            "fenced": "```json\n"
            + json.dumps({"grades": [{"kind": k, "visible": True} for k in claims]})
            + "\n```",  # fmt: skip
            "refuse": "I'm sorry, I can't help with that.",
            "partial": json.dumps({"grades": [{"kind": claims[0], "visible": "maybe"}]}),
            "empty": "",
        }[action]
        message = {"role": "assistant", "content": text}
        self._send(200, {"id": "x", "object": "chat.completion", "created": 0, "model": "vlm",
                         "choices": [{"index": 0, "finish_reason": "stop", "message": message}]})  # fmt: skip

    def _send(self, status, payload):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Grader)
    srv.script, srv.prompts = [], []
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _image():
    return Image.fromarray(np.random.default_rng(0).integers(0, 255, (16, 16, 3), dtype=np.uint8))


REASONING = "Strong blur softens the edges. Heavy noise covers the sky. Colours look natural."


def test_each_asserted_kind_is_graded_and_errors_keep_their_reason(server):
    server.script = ["ok", "fenced", "refuse", "partial", "empty", "500"]
    judge = DescriptionJudge(f"http://127.0.0.1:{server.server_port}/v1", "vlm", concurrency=1)
    judge.client.max_retries = 0
    grades = [judge.grade(_image(), REASONING) for _ in range(6)]
    assert grades[0].grades == {"blur": True, "noise": False} and grades[0].error is None
    assert grades[1].grades == {"blur": True, "noise": True}  # JSON inside a code fence
    assert grades[2].error.startswith("malformed: no grades") and not grades[2].grades
    assert grades[3].error.startswith("malformed: no usable grade for ['blur', 'noise']")
    assert grades[4].error == "refused: an empty answer"
    assert grades[5].error.startswith("request_failed:") and "overloaded" in grades[5].error
    assert "- blur\n- noise" in server.prompts[0]  # only the asserted kinds are asked about


def test_a_reasoning_that_asserts_nothing_needs_no_request(server):
    judge = DescriptionJudge(f"http://127.0.0.1:{server.server_port}/v1", "vlm")
    grade = judge.grade(_image(), "Edges are crisp. No noise. Colours look natural.")
    assert grade.grades == {} and grade.error is None and server.prompts == []


def test_parse_grades_refuses_other_kinds_than_asked():
    text = json.dumps(
        {"grades": [{"kind": "blur", "visible": True}, {"kind": "noise", "visible": False}]}
    )
    assert parse_grades(text, ["blur"]).grades == {"blur": True}  # an extra grade is ignored
    assert parse_grades(text, ["blur", "exposure"]).error.startswith("malformed")


def test_eval_records_and_summarises_the_grades(server, tmp_path):
    from qponder.config import EvalConfig
    from qponder.data.synthetic import make_synthetic_dataset
    from qponder.evaluation.runner import run_eval
    from qponder.inference import Generation, Scorer

    class Reasoner:
        def generate(self, images, n=1, temperature=1.0):
            return [
                [Generation(tagged(f"<think>{REASONING}</think><answer>2.5</answer>"))]
                for _ in images
            ]

    make_synthetic_dataset(tmp_path / "synth", n=20, seed=0, size=32)
    cfg = EvalConfig(datasets=[f"synthetic:{tmp_path / 'synth'}"], split="train", limit=4,
                     bootstrap=0)  # fmt: skip
    server.script = ["ok", "ok", "ok", "refuse"]
    judge = DescriptionJudge(f"http://127.0.0.1:{server.server_port}/v1", "vlm", concurrency=1)
    summary = run_eval("m", cfg, tmp_path / "run", scorer=Scorer("m", backend_impl=Reasoner()),
                       describe_judge=judge)  # fmt: skip
    j = summary["datasets"]["synthetic"]["description_judge"]
    assert j["reasonings"] == 3 and j["claims"] == 6 and j["visible"] == 3
    assert j["per_kind"]["noise"]["accuracy"] == 0.0 and j["errors"] == {"malformed": 1}
    assert (
        "description judge: 3 of 6 asserted distortions"
        in (tmp_path / "run" / "report.md").read_text()
    )
