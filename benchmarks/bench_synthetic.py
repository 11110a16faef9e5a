"""Images per second of ``qponder data synth`` (the offline synthetic distortion dataset).

Run: ``.venv/bin/python benchmarks/bench_synthetic.py [--n 1000] [--repeat 3]``.

This timing used to be an assertion in the test suite ("1,000 images in under a minute");
a machine-dependent threshold does not belong in ``make test``, so it is measured here and
the figures go to docs/benchmarks.md. Prints min / median / max seconds and images/s.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

from qponder.data.synthetic import make_synthetic_dataset


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1000, help="images per run (default 1000)")
    p.add_argument("--repeat", type=int, default=3, help="timed runs (default 3)")
    args = p.parse_args()
    seconds = []
    for i in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            make_synthetic_dataset(tmp, n=args.n, seed=i)
            seconds.append(time.perf_counter() - start)
    med = statistics.median(seconds)
    print(f"synthetic dataset, {args.n} images, {args.repeat} runs")
    print(f"seconds  min {min(seconds):.2f}  median {med:.2f}  max {max(seconds):.2f}")
    print(f"images/s median {args.n / med:.1f}")


if __name__ == "__main__":
    main()
