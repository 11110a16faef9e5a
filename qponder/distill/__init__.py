"""Stage 1 of Q-Ponder: distil multi-aspect quality reasoning from a teacher MLLM into
cold-start data (``qponder distill``).

Teachers: an OpenAI-compatible endpoint (:mod:`~qponder.distill.openai_teacher`), a local
transformers model (:mod:`~qponder.distill.hf_teacher`) and a simulated teacher for the
synthetic dataset (:mod:`~qponder.distill.synthetic`). The runner
(:mod:`~qponder.distill.runner`) filters their answers against the MOS and writes
resumable JSONL files; see ``docs/distillation.md``.
"""

from qponder.distill.base import (
    Teacher,
    TeacherError,
    TeacherFatalError,
    TeacherReply,
    TeacherRequest,
)
from qponder.distill.filtering import Verdict, judge_replies
from qponder.distill.runner import OutputPaths, build_teacher, run_distillation

__all__ = [
    "OutputPaths",
    "Teacher",
    "TeacherError",
    "TeacherFatalError",
    "TeacherReply",
    "TeacherRequest",
    "Verdict",
    "build_teacher",
    "judge_replies",
    "run_distillation",
]
