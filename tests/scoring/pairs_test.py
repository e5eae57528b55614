"""Pair sampling, the stacked-pair format and the b-vector / concat&mul / rb-vector features."""

import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from keras_spk.metrics import eer
from keras_spk.scoring.pairs import BVector
from keras_spk.scoring.pairs import ConcatMul
from keras_spk.scoring.pairs import RBVector
from keras_spk.scoring.pairs import b_vector
from keras_spk.scoring.pairs import sample_pairs
from keras_spk.scoring.pairs import split_pairs
from keras_spk.scoring.pairs import stack_pairs


def gaussian_speakers(n_speakers, n_utterances, dim, noise, seed):
    """Embeddings = speaker mean (N(0, I)) + N(0, noise^2 I); labels 0..n_speakers-1."""
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(n_speakers, dim))
    labels = np.repeat(np.arange(n_speakers), n_utterances)
    return means[labels] + noise * rng.normal(size=(labels.size, dim)), labels


def trial_set(n_speakers, n_pairs, seed, dim=16):
    embeddings, labels = gaussian_speakers(n_speakers, 10, dim, 0.8, seed)
    a, b, same = sample_pairs(labels, n_pairs, seed=seed + 1)
    return stack_pairs(embeddings[a], embeddings[b]), same


# === sample_pairs ===


def test_sample_pairs_balance_labels_and_no_self_pairs():
    labels = np.repeat(np.array(["a", "b", "c", "d", "e"]), [1, 2, 3, 4, 10])
    for fraction, n_target in [(0.5, 500), (0.3, 300), (1.0, 1000), (0.0, 0)]:
        a, b, same = sample_pairs(labels, 1000, target_fraction=fraction, seed=3)
        assert a.shape == b.shape == same.shape == (1000,)
        assert int(same.sum()) == n_target
        assert (a != b).all()
        np.testing.assert_array_equal(same, (labels[a] == labels[b]).astype(int))
        assert a.min() >= 0 and max(a.max(), b.max()) < labels.size
        # The single utterance of speaker "a" has no partner for a target pair.
        assert not ((a[same == 1] == 0) | (b[same == 1] == 0)).any()


def test_sample_pairs_is_deterministic_and_depends_on_seed():
    labels = np.repeat(np.arange(7), 5)
    first = sample_pairs(labels, 300, seed=11)
    again = sample_pairs(labels, 300, seed=11)
    other = sample_pairs(labels, 300, seed=12)
    for x, y in zip(first, again):
        np.testing.assert_array_equal(x, y)
    assert not all(np.array_equal(x, y) for x, y in zip(first, other))


def test_sample_pairs_draws_each_pair_with_the_stated_probability():
    # Speakers 0 (utterances 0, 1, 2) and 1 (3, 4). A target pair: anchor
    # uniform over the 5 utterances, partner uniform over its speaker's other
    # utterances, so each unordered pair of speaker 0 has probability
    # 2 * (1/5) * (1/2) = 1/5 and {3, 4} has 2 * (1/5) * 1 = 2/5.
    labels = np.array([0, 0, 0, 1, 1])
    a, b, _ = sample_pairs(labels, 40000, target_fraction=1.0, seed=0)
    pairs = np.sort(np.stack([a, b], axis=1), axis=1)
    for pair, probability in [((0, 1), 0.2), ((0, 2), 0.2), ((1, 2), 0.2), ((3, 4), 0.4)]:
        frequency = np.mean((pairs == pair).all(axis=1))
        assert abs(frequency - probability) < 0.01, (pair, frequency)
    # Both orders occur (sides swapped at random).
    assert 0.45 < np.mean(a < b) < 0.55


def test_sample_pairs_nontargets_cover_every_other_speaker():
    labels = np.array([0, 0, 1, 2, 2, 2])
    a, b, _ = sample_pairs(labels, 6000, target_fraction=0.0, seed=5)
    assert (labels[a] != labels[b]).all()
    seen = set(zip(a.tolist(), b.tolist()))
    expected = {(i, j) for i in range(6) for j in range(6) if labels[i] != labels[j]}
    assert seen == expected


@pytest.mark.parametrize(
    "labels, kwargs, match",
    [
        ([0, 1, 2], {"n_pairs": 4}, "at least two utterances"),
        ([0, 0, 0], {"n_pairs": 4}, "at least two speakers"),
        ([[0, 1], [1, 0]], {"n_pairs": 4}, "1-D"),
        ([], {"n_pairs": 4}, "non-empty"),
        ([0, 0, 1, 1], {"n_pairs": 0}, "n_pairs"),
        ([0, 0, 1, 1], {"n_pairs": 4, "target_fraction": 1.5}, "target_fraction"),
        ([0, 0, 1, 1], {"n_pairs": 4, "seed": 0.5}, "seed"),
    ],
)
def test_sample_pairs_bad_arguments(labels, kwargs, match):
    with pytest.raises(ValueError, match=match):
        sample_pairs(labels, **kwargs)


def test_sample_pairs_one_kind_only_needs_only_its_speakers():
    a, b, same = sample_pairs([0, 1, 2], 10, target_fraction=0.0)
    assert same.sum() == 0 and (a != b).all()
    a, b, same = sample_pairs([0, 0, 0], 10, target_fraction=1.0)
    assert same.sum() == 10 and (a != b).all()


# === stacked pairs ===


def test_stack_and_split_pairs_round_trip():
    enroll = np.arange(6.0).reshape(3, 2)
    test = -np.arange(6.0).reshape(3, 2)
    X = stack_pairs(enroll, test)
    np.testing.assert_array_equal(X, [[0, 1, -0, -1], [2, 3, -2, -3], [4, 5, -4, -5]])
    back = split_pairs(X)
    np.testing.assert_array_equal(back[0], enroll)
    np.testing.assert_array_equal(back[1], test)


@pytest.mark.parametrize(
    "enroll, test, match",
    [
        (np.ones((3, 2)), np.ones((4, 2)), "same shape"),
        (np.ones((3, 2)), np.ones((3, 3)), "same shape"),
        (np.ones(3), np.ones(3), "2-D"),
        (np.array([[1.0, np.nan]]), np.ones((1, 2)), "NaN"),
        (np.ones((1, 2)), np.array([[np.inf, 1.0]]), "NaN or infinite"),
        (np.array([["a", "b"]]), np.ones((1, 2)), "real numbers"),
    ],
)
def test_stack_pairs_bad_inputs(enroll, test, match):
    with pytest.raises(ValueError, match=match):
        stack_pairs(enroll, test)


def test_split_pairs_rejects_odd_width():
    with pytest.raises(ValueError, match="even"):
        split_pairs(np.ones((2, 5)))


# === b-vector and concat&mul ===


def test_b_vector_and_concat_mul_hand_example():
    # e = [1, 2], t = [3, 5]:
    #   b-vector   [e + t, e - t, e * t] = [4, 7, -2, -3, 3, 10]
    #   concat&mul [e, t, e * t]         = [1, 2, 3, 5, 3, 10]
    X = [[1.0, 2.0, 3.0, 5.0], [0.5, -1.0, 2.0, 4.0]]
    np.testing.assert_array_equal(
        BVector().fit_transform(X), [[4, 7, -2, -3, 3, 10], [2.5, 3, -1.5, -5, 1, -4]]
    )
    np.testing.assert_array_equal(
        ConcatMul().fit_transform(X), [[1, 2, 3, 5, 3, 10], [0.5, -1, 2, 4, 1, -4]]
    )


def test_b_vector_difference_is_signed_enroll_minus_test():
    swapped = BVector().fit_transform([[3.0, 5.0, 1.0, 2.0]])
    np.testing.assert_array_equal(swapped, [[4, 7, 2, 3, 3, 10]])


PAIR_TRANSFORMERS = [
    BVector(),
    ConcatMul(),
    RBVector(n_representatives=3, n_components=2, seed=0),
]


def _name(estimator):
    return type(estimator).__name__


@pytest.mark.parametrize("transformer", PAIR_TRANSFORMERS, ids=_name)
def test_pair_transformers_bad_inputs(transformer):
    X, _ = trial_set(6, 60, seed=0, dim=4)
    with pytest.raises(NotFittedError):
        clone(transformer).transform(X)
    with pytest.raises(ValueError, match="even"):
        clone(transformer).fit(X[:, :7])
    bad = X.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        clone(transformer).fit(bad)
    fitted = clone(transformer).fit(X)
    with pytest.raises(ValueError, match="NaN"):
        fitted.transform(bad)
    with pytest.raises(ValueError, match="features"):
        fitted.transform(X[:, :6])


@pytest.mark.parametrize("transformer", PAIR_TRANSFORMERS, ids=_name)
def test_pair_transformers_on_stacked_pairs(transformer):
    # The conformance checks scikit-learn cannot run on odd-width data
    # (see estimator_checks_pairs_test.py), here on valid stacked pairs.
    X, _ = trial_set(6, 60, seed=0, dim=4)
    fitted = clone(transformer).fit(X)
    full = fitted.transform(X)
    expected_width = 12 + (2 * 3 * 2 if isinstance(transformer, RBVector) else 0)
    assert full.shape == (60, expected_width)
    # Row by row, in another order, as a list, and in float32.
    np.testing.assert_allclose(
        np.concatenate([fitted.transform(X[i : i + 1]) for i in range(60)]), full
    )
    order = np.random.default_rng(0).permutation(60)
    np.testing.assert_allclose(fitted.transform(X[order]), full[order])
    np.testing.assert_allclose(fitted.transform(X.tolist()), full)
    out32 = clone(transformer).fit(X.astype(np.float32)).transform(X.astype(np.float32))
    assert out32.dtype == np.float32
    np.testing.assert_allclose(out32, full, rtol=1e-4, atol=1e-4)
    # Pickle round trip and refit give the same features.
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(fitted)).transform(X), full)
    np.testing.assert_array_equal(clone(transformer).fit(X).transform(X), full)


# === rb-vector ===


def test_rb_vector_matches_explicit_b_vectors_and_pca():
    X, _ = trial_set(8, 80, seed=1, dim=5)
    rb = RBVector(n_representatives=4, n_components=3, seed=0).fit(X)
    enroll, test = split_pairs(X)
    train = np.unique(np.concatenate([enroll, test]), axis=0)
    assert rb.representatives_.shape == (4, 5)
    assert rb.pca_components_.shape == (4, 3, 15)
    out = rb.transform(X)
    assert out.shape == (80, 15 + 2 * 4 * 3)
    np.testing.assert_allclose(out[:, :15], b_vector(enroll, test))

    def explicit_r_vector(x):
        parts = []
        for k, r in enumerate(rb.representatives_):
            # PCA by SVD of the centred b-vectors of every training embedding against r.
            B = np.array([np.concatenate([e + r, e - r, e * r]) for e in train])
            mean = B.mean(axis=0)
            _, s, vt = np.linalg.svd(B - mean, full_matrices=False)
            axes = vt[:3]
            signs = np.sign(axes[np.arange(3), np.argmax(np.abs(axes), axis=1)])
            axes = axes * signs[:, None]
            np.testing.assert_allclose(rb.pca_components_[k], axes, atol=1e-8)
            np.testing.assert_allclose(rb.pca_means_[k], mean, atol=1e-12)
            np.testing.assert_allclose(
                rb.explained_variance_[k], s[:3] ** 2 / len(train), rtol=1e-8
            )
            bx = np.concatenate([x + r, x - r, x * r], axis=1)
            parts.append((bx - mean) @ axes.T)
        return np.concatenate(parts, axis=1)

    np.testing.assert_allclose(out[:, 15:27], explicit_r_vector(enroll), atol=1e-9)
    np.testing.assert_allclose(out[:, 27:], explicit_r_vector(test), atol=1e-9)
    np.testing.assert_allclose(rb.r_vector(test), out[:, 27:], atol=1e-12)


def test_rb_vector_representatives_are_kmeans_centroids_of_the_training_embeddings():
    # Training embeddings in three tight clusters around known centres; the
    # pairs given to fit come from other data, so the representatives must
    # come from `embeddings`.
    rng = np.random.default_rng(0)
    centres = np.array([[10.0, 0, 0, 0], [0, 10.0, 0, 0], [0, 0, -10.0, 0]])
    train = np.repeat(centres, 20, axis=0) + 0.1 * rng.normal(size=(60, 4))
    X, _ = trial_set(5, 40, seed=2, dim=4)
    rb = RBVector(n_representatives=3, n_components=2, seed=0).fit(X, embeddings=train)
    for block in range(3):
        cluster_mean = train[20 * block : 20 * (block + 1)].mean(axis=0)
        distances = np.linalg.norm(rb.representatives_ - cluster_mean, axis=1)
        assert np.sort(distances)[0] < 1e-9 and np.sort(distances)[1] > 10
    # Each representative is the mean of the training embeddings nearest to it.
    nearest = np.argmin(((train[:, None] - rb.representatives_[None]) ** 2).sum(-1), axis=1)
    for k in range(3):
        np.testing.assert_allclose(rb.representatives_[k], train[nearest == k].mean(0), atol=1e-12)


def test_rb_vector_default_training_embeddings_are_the_distinct_pair_rows():
    embeddings, labels = gaussian_speakers(6, 5, 4, 0.5, seed=3)
    a, b, _ = sample_pairs(labels, 200, seed=0)
    X = stack_pairs(embeddings[a], embeddings[b])
    used = np.unique(np.concatenate([a, b]))
    by_default = RBVector(n_representatives=3, n_components=2, seed=4).fit(X)
    explicit = RBVector(n_representatives=3, n_components=2, seed=4).fit(
        X, embeddings=np.unique(embeddings[used], axis=0)
    )
    np.testing.assert_array_equal(by_default.representatives_, explicit.representatives_)
    np.testing.assert_array_equal(by_default.transform(X), explicit.transform(X))


def test_rb_vector_is_deterministic_under_seed():
    X, _ = trial_set(8, 80, seed=1, dim=5)
    first = RBVector(n_representatives=4, n_components=2, seed=7).fit(X)
    again = RBVector(n_representatives=4, n_components=2, seed=7).fit(X)
    for name in ("representatives_", "pca_means_", "pca_components_", "explained_variance_"):
        np.testing.assert_array_equal(getattr(first, name), getattr(again, name))
    np.testing.assert_array_equal(first.transform(X), again.transform(X))


@pytest.mark.parametrize(
    "params, embeddings, match",
    [
        ({"n_components": 6}, None, "n_components"),
        ({"n_representatives": 500}, None, "n_representatives"),
        ({"n_representatives": 0}, None, "n_representatives"),
        ({"seed": "x"}, None, "seed"),
        ({}, np.ones((10, 3)), "dim=5"),
        ({}, np.full((10, 5), np.nan), "NaN"),
    ],
)
def test_rb_vector_bad_arguments(params, embeddings, match):
    X, _ = trial_set(8, 80, seed=1, dim=5)
    with pytest.raises(ValueError, match=match):
        RBVector(**{"n_representatives": 2, "n_components": 2, **params}).fit(
            X, embeddings=embeddings
        )


# === back-ends in a pipeline ===


@pytest.mark.parametrize(
    "features",
    [BVector(), ConcatMul(), RBVector(n_representatives=4, n_components=4)],
    ids=_name,
)
def test_pipeline_with_logistic_regression_beats_chance(features):
    # Different speakers in training and evaluation; chance EER is 0.5.
    X_train, y_train = trial_set(40, 3000, seed=10)
    X_eval, y_eval = trial_set(20, 2000, seed=20)
    backend = make_pipeline(features, LogisticRegression(max_iter=2000))
    if isinstance(features, RBVector):
        backend.fit(X_train, y_train, rbvector__embeddings=np.concatenate(split_pairs(X_train)))
    else:
        backend.fit(X_train, y_train)
    value = eer(backend.decision_function(X_eval), y_eval)
    assert value < 0.2, value
