"""``python tests/stuck_model.py COMMAND ...`` runs ``qponder COMMAND ...`` with a model that
answers its first ``QPONDER_TEST_ANSWERS`` batches (default 1), then none: a long run that
is surely in the middle when a test stops it with a real signal."""

from __future__ import annotations

import os
import sys
import time

from answer_tags import tagged  # this folder is the script's sys.path[0]

from qponder.cli import main
from qponder.inference import Generation, Scorer


class StuckBackend:
    """Answers 3 to every image of the first batches, then waits for a signal."""

    def __init__(self, answers: int) -> None:
        self.answers = answers

    def generate(self, images, n=1, temperature=1.0):
        if self.answers <= 0:
            time.sleep(3600)  # a model that takes long; a signal ends it
        self.answers -= 1
        return [[Generation(tagged("<think>fine</think><answer>3</answer>"))] for _ in images]


def _from_config(cls, model, cfg, *args, **kwargs) -> Scorer:
    answers = int(os.environ.get("QPONDER_TEST_ANSWERS", "1"))
    return cls("unused", backend_impl=StuckBackend(answers), batch_size=cfg.batch_size)


Scorer.from_config = classmethod(_from_config)

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
