"""qponder.evaluation: metrics, reports, plots, run comparison and the ``qponder eval`` runner.

- :mod:`~qponder.evaluation.metrics`: SRCC, KRCC, PLCC after the VQEG logistic fit, RMSE,
  bootstrap confidence intervals.
- :mod:`~qponder.evaluation.report`: per-dataset summaries and ``report.md`` from prediction rows.
- :mod:`~qponder.evaluation.plots`: prediction-vs-MOS scatter plots with the fitted curve.
- :mod:`~qponder.evaluation.compare`: per-dataset differences between two runs, paired on image ids.
- :mod:`~qponder.evaluation.description`: what reasonings describe against labelled distortions.
- :mod:`~qponder.evaluation.runner`: :func:`~qponder.evaluation.runner.run_eval`, the run directory
  (its files through :mod:`qponder.runfiles`).
"""
