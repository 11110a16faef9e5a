"""``qponder demo``: the whole Q-Ponder pipeline offline on one CPU, each stage run end to end.

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
- :mod:`~qponder.demo.targets`: the project's targets for a full run and their check
  (``benchmarks/demo_targets.py``; the demo itself grades nothing);
- :mod:`~qponder.demo.findings`: what a run shows, from its own figures and CIs (the
  ablation's verdicts), and what a reader may and may not conclude from it;
- :mod:`~qponder.demo.pretext`: the vision tower's pretext task (``qponder model
  pretrain-vision``);
- :mod:`~qponder.demo.worker`: a training stage's subprocess, following a CPU thread count;
- :mod:`~qponder.demo.supervisor`: the training stages as supervised subprocesses;
- :mod:`~qponder.demo.report`: ``report.md`` and its figures;
- :mod:`~qponder.demo.pipeline`: the stages in order, the summary (:func:`run_demo`).

The names below are imported when first used, not with the package: the training worker
(``python -m qponder.demo.worker``) imports this package first, and needs none of the
pipeline's (matplotlib, the eval runner) in each of its processes.
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> the module that defines it
_EXPORTS = {
    "PeakMemory": "memory",
    "STAGE_TITLES": "paths",
    "STAGES": "paths",
    "TRAINED_STAGES": "paths",
    "DemoPaths": "paths",
    "ablation": "findings",
    "consistency_gaps": "pipeline",
    "expected_score_srcc": "pipeline",
    "run_demo": "pipeline",
    "demo_recipe": "recipe",
    "planned_steps": "supervisor",
    "stage_command": "supervisor",
    "thread_shares": "supervisor",
    "check_targets": "targets",
}


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'qponder.demo' has no attribute {name!r}")
    return getattr(importlib.import_module(f"qponder.demo.{_EXPORTS[name]}"), name)


__all__ = sorted(_EXPORTS)
