"""Timing of the verification metrics on 1,000,000 random trials.

Run: python bench/metrics.py [--trials N] [--repeats R]

Prints the best-of-R wall time of `eer`, `min_dcf(p_target=0.01)`,
`min_dcf(p_target=0.05)` and of EER + minDCF(0.01) together.
"""

import argparse
import time

import numpy as np

from keras_spk.metrics import eer
from keras_spk.metrics import min_dcf


def best_of(fn, repeats):
    best = np.inf
    result = None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    labels = rng.random(args.trials) < 0.5
    # Targets ~ N(2, 1), non-targets ~ N(0, 1): EER should be ~Phi(-1) = 0.1587.
    scores = rng.standard_normal(args.trials) + 2.0 * labels

    cases = [
        ("eer", lambda: eer(scores, labels)),
        ("min_dcf(p_target=0.01)", lambda: min_dcf(scores, labels, p_target=0.01)),
        ("min_dcf(p_target=0.05)", lambda: min_dcf(scores, labels, p_target=0.05)),
        (
            "eer + min_dcf(0.01)",
            lambda: (eer(scores, labels), min_dcf(scores, labels, p_target=0.01)),
        ),
    ]
    print(f"{args.trials:,} trials, best of {args.repeats} runs")
    for name, fn in cases:
        seconds, value = best_of(fn, args.repeats)
        if isinstance(value, tuple):
            value = ", ".join(f"{v:.5f}" for v in value)
        else:
            value = f"{value:.5f}"
        print(f"  {name:<24s} {seconds * 1000:8.1f} ms   value={value}")


if __name__ == "__main__":
    main()
