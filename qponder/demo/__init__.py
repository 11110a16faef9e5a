"""``qponder demo``: the whole Q-Ponder pipeline offline on one CPU, and proof that each stage helps.

The demo builds the tiny offline Qwen2.5-VL (:mod:`qponder.models.tiny`), pretrains its
vision tower on a self-supervised pretext (:mod:`qponder.demo.pretext`), renders the
synthetic distortion dataset (:mod:`qponder.data.synthetic`), distils cold-start reasoning
from the synthetic teacher, fine-tunes on it (Q-Ponder-CI) and, for the paper's ablation,
on the answers alone, trains Q-Ponder-CI with GRPO (Q-Ponder), and evaluates the four models
on the held-out test split, whose contents no training image shares. It is a client of the
library: every stage is a library function or a ``qponder`` command a user would run.

Modules, each importing only those above it:

- :mod:`~qponder.demo.config`: the recipe's ``demo`` section (an extension section of
  :mod:`qponder.config`), which only the demo checks;
- :mod:`~qponder.demo.paths`: the demo directory's layout and the stage names;
- :mod:`~qponder.demo.recipe`: the demo's recipe, bound to a directory and recorded there;
- :mod:`~qponder.demo.memory`: peak memory of the demo and its subprocesses;
- :mod:`~qponder.demo.targets`: the demo's targets and their check;
- :mod:`~qponder.demo.pretext`: the vision tower's pretext task (``qponder model
  pretrain-vision``);
- :mod:`~qponder.demo.supervisor`: the training stages as supervised subprocesses;
- :mod:`~qponder.demo.report`: ``report.md`` and its figures;
- :mod:`~qponder.demo.pipeline`: the stages in order, the summary (:func:`run_demo`).
"""

from __future__ import annotations

from qponder.demo.memory import PeakMemory
from qponder.demo.paths import STAGE_TITLES, STAGES, TRAINED_STAGES, DemoPaths
from qponder.demo.pipeline import consistency_gaps, expected_score_srcc, run_demo
from qponder.demo.recipe import demo_recipe
from qponder.demo.supervisor import planned_steps, stage_command, thread_shares
from qponder.demo.targets import check_targets

__all__ = [
    "STAGES",
    "STAGE_TITLES",
    "TRAINED_STAGES",
    "DemoPaths",
    "PeakMemory",
    "check_targets",
    "consistency_gaps",
    "demo_recipe",
    "expected_score_srcc",
    "planned_steps",
    "run_demo",
    "stage_command",
    "thread_shares",
]
