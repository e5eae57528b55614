"""Timing of the PLDA back-end and the verification metrics on synthetic data.

Run: python bench/scoring.py [--speakers 5000] [--per-speaker 20] [--dim 256]
                             [--trials 1000000] [--repeats 3]

Draws training embeddings from a known two-covariance model
(x = mu + y + e, y ~ N(0, Sb), e ~ N(0, Sw), both covariances randomly
rotated with log-uniform spectra), then prints:

* `PLDA().fit` time on the training set (goal < 10 s for 100,000 x 256,
  5,000 speakers);
* `PLDA.score_pairs` time on a 1,000,000-trial list (10% targets) over
  10,000 held-out embeddings of 1,000 new speakers, given as tables plus
  `index=(enroll_index, test_index)` the way `Trials.indices()` gives it
  (goal < 2 s); and, for reference, row-aligned `score_pairs` on a slice;
* `keras_spk.metrics.verification_metrics` time (EER + minDCF at 0.01 and
  0.05) on those trials (goal < 2 s);
* the EER of the learned model next to the EER with the true parameters,
  and the relative Frobenius errors of the learned covariances (sanity).
"""

import argparse
import time

import numpy as np

from keras_spk.metrics import verification_metrics
from keras_spk.scoring.plda import PLDA


def random_covariance(rng, dim, low, high):
    rotation, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    spectrum = np.exp(rng.uniform(np.log(low), np.log(high), dim))
    return (rotation * spectrum) @ rotation.T


def draw(rng, mean, between, within, n_speakers, per_speaker):
    """float32 embeddings and int labels from the two-covariance model."""
    dim = mean.shape[0]
    speaker = np.repeat(np.arange(n_speakers), per_speaker)
    y = rng.standard_normal((n_speakers, dim)) @ np.linalg.cholesky(between).T
    e = rng.standard_normal((speaker.shape[0], dim)) @ np.linalg.cholesky(within).T
    return (mean + y[speaker] + e).astype(np.float32), speaker


def make_trials(rng, speaker, per_speaker, n_trials, target_fraction=0.1):
    n_utts = speaker.shape[0]
    n_target = int(n_trials * target_fraction)
    # Targets: two different utterances of one speaker (blocks of per_speaker).
    first = rng.integers(0, n_utts, n_target)
    shift = rng.integers(1, per_speaker, n_target)
    block = first - first % per_speaker
    second = block + (first % per_speaker + shift) % per_speaker
    # Non-targets: random pairs, re-drawn where they share a speaker.
    a = rng.integers(0, n_utts, n_trials - n_target)
    b = rng.integers(0, n_utts, n_trials - n_target)
    same = speaker[a] == speaker[b]
    while same.any():
        b[same] = rng.integers(0, n_utts, int(same.sum()))
        same = speaker[a] == speaker[b]
    enroll = np.concatenate([first, a])
    test = np.concatenate([second, b])
    labels = np.concatenate([np.ones(n_target, bool), np.zeros(n_trials - n_target, bool)])
    order = rng.permutation(n_trials)
    return enroll[order], test[order], labels[order]


def best_of(fn, repeats):
    best, result = np.inf, None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--speakers", type=int, default=5000)
    parser.add_argument("--per-speaker", type=int, default=20)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--trials", type=int, default=1_000_000)
    parser.add_argument("--test-speakers", type=int, default=1000)
    parser.add_argument("--test-per-speaker", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    mean = rng.standard_normal(args.dim)
    between = random_covariance(rng, args.dim, 0.002, 0.2)
    within = random_covariance(rng, args.dim, 0.05, 2.0)
    X, y = draw(rng, mean, between, within, args.speakers, args.per_speaker)
    X_test, y_test = draw(
        rng, mean, between, within, args.test_speakers, args.test_per_speaker
    )
    enroll_index, test_index, labels = make_trials(
        rng, y_test, args.test_per_speaker, args.trials
    )
    print(
        f"train: {X.shape[0]:,} x {X.shape[1]} embeddings (float32) of "
        f"{args.speakers:,} speakers; trials: {args.trials:,} over "
        f"{X_test.shape[0]:,} held-out embeddings; best of {args.repeats} runs"
    )

    fit_s, plda = best_of(lambda: PLDA().fit(X, y), args.repeats)
    print(f"  PLDA.fit                        {fit_s:7.2f} s   (goal < 10 s; {plda.n_iter_} EM iterations)")

    index = (enroll_index, test_index)
    score_s, scores = best_of(
        lambda: plda.score_pairs(X_test, X_test, index=index), args.repeats
    )
    print(f"  PLDA.score_pairs(index=...)     {score_s:7.2f} s   (goal < 2 s)")

    n_rows = min(100_000, args.trials)
    E, T = X_test[enroll_index[:n_rows]], X_test[test_index[:n_rows]]
    rows_s, _ = best_of(lambda: plda.score_pairs(E, T), args.repeats)
    print(
        f"  PLDA.score_pairs(row-aligned)   {rows_s:7.2f} s   "
        f"({n_rows:,} trials; projects every row, so cost ~ trials x dim^2)"
    )

    metrics_s, metrics = best_of(lambda: verification_metrics(scores, labels), args.repeats)
    print(f"  verification_metrics            {metrics_s:7.2f} s   (goal < 2 s)")

    true_scores = PLDA.from_parameters(mean, between, within).score_pairs(
        X_test, X_test, index=index
    )
    true_metrics = verification_metrics(true_scores, labels)
    err_b = np.linalg.norm(plda.between_covariance_ - between) / np.linalg.norm(between)
    err_w = np.linalg.norm(plda.within_covariance_ - within) / np.linalg.norm(within)
    print(
        f"  EER learned model {metrics['eer']:.4f}, true model {true_metrics['eer']:.4f}; "
        f"minDCF(0.01) {metrics['min_dcf_0.01']:.4f} vs {true_metrics['min_dcf_0.01']:.4f}"
    )
    print(
        f"  relative Frobenius error: between {err_b:.3f}, within {err_w:.3f} "
        f"(sampling error ~ sqrt(dim / n_speakers) = {np.sqrt(args.dim / args.speakers):.3f} "
        "for the between covariance)"
    )


if __name__ == "__main__":
    main()
