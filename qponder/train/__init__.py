"""Training stages on TRL's trainers: :mod:`~qponder.train.sft` (cold-start SFT, Q-Ponder-CI),
:mod:`~qponder.train.grpo` (GRPO with the qponder rewards, Q-Ponder), and the callbacks of
:mod:`~qponder.train.callbacks` (``metrics.jsonl``, validation SRCC/PLCC, best checkpoint).
See docs/training.md."""
