"""Tests for the sampler registry: config, constraints, resumable streams through model.fit."""

import keras
import numpy as np
import pytest
from keras import ops

from keras_spk.config import ConfigError
from keras_spk.config import check_config
from keras_spk.config import load_config
from keras_spk.data import SAMPLERS
from keras_spk.data import PKSampler
from keras_spk.data import sampler_dataset
from keras_spk.data import sampler_from_config
from keras_spk.data import write_wav
from keras_spk.data.samplers import CONSTRAINTS

CROP = 200
# 16 files of 4 speakers (4 each), lengths 150 .. 900 samples, different levels.
LENGTHS = [150 + 50 * i for i in range(16)]
SPEAKERS = [i % 4 for i in range(16)]

# Per sampler: settings, batch size given, and the batch (rows) and steps per epoch expected.
CASES = {
    "random": ({}, 5, 5, 3),  # 16 // 5
    "pk": ({"num_speakers": 2, "num_utterances": 3}, 99, 6, 2),  # 16 // (2*3); batch_size unused
    "mixture": ({"num_speakers": 3, "sir_db": (-6.0, 6.0), "mixtures_per_epoch": 13,
                 "return_sources": True}, 4, 4, 3),  # 13 // 4
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("samplers")
    rng = np.random.default_rng(0)
    paths = []
    for i, n in enumerate(LENGTHS):
        path = root / f"s{SPEAKERS[i]}" / f"u{i:02d}.wav"
        path.parent.mkdir(exist_ok=True)
        write_wav(path, 0.05 * (1 + i % 5) * rng.standard_normal(n).clip(-3, 3), 16000)
        paths.append(str(path))
    return paths


def build(corpus, name, start_epoch, seed=4):
    settings, batch_size, _, _ = CASES[name]
    return sampler_dataset(name, corpus, SPEAKERS, crop_samples=CROP, batch_size=batch_size,
                           seed=seed, start_epoch=start_epoch, **settings)


def as_numpy(batches):
    return [tuple(np.asarray(t) for t in inputs) for (inputs,) in batches]


@pytest.mark.parametrize("name", sorted(CASES))
def test_elements_and_steps(corpus, name):
    _, _, rows, steps = CASES[name]
    dataset, got_steps = build(corpus, name, start_epoch=0)
    assert got_steps == steps
    (inputs,) = next(iter(dataset))  # one positional input: a tuple for the trainer
    inputs = [np.asarray(t) for t in inputs]
    if name == "mixture":
        mixture, labels, sources = inputs
        assert mixture.shape == (rows, CROP) and labels.shape == (rows, 3)
        assert sources.shape == (rows, 3, CROP)
        np.testing.assert_array_equal(mixture, sources[:, 0] + sources[:, 1] + sources[:, 2])
        assert all(len(set(row)) == 3 for row in labels.tolist())
    else:
        waveforms, labels = inputs
        assert waveforms.shape == (rows, CROP) and waveforms.dtype == np.float32
        assert labels.shape == (rows,) and labels.dtype == np.int64
    if name == "pk":
        # P x K: 2 distinct speakers, 3 rows each, grouped; their 4 utterances give 3 distinct.
        groups = labels.reshape(2, 3)
        assert np.all(groups == groups[:, :1]) and groups[0, 0] != groups[1, 0]
        first = PKSampler(SPEAKERS, 2, 3, seed=4).epoch(0)[0]
        np.testing.assert_array_equal(labels, np.asarray(SPEAKERS)[first])
        assert len({tuple(w) for w in waveforms[:3]}) == 3


def test_mixture_enrolments_come_last(corpus):
    dataset, steps = sampler_dataset("mixture", corpus, SPEAKERS, crop_samples=CROP, batch_size=4,
                                     seed=4, start_epoch=0, return_sources=True,
                                     return_enrolments=True)
    assert steps == 4  # 16 // 4
    (inputs,) = next(iter(dataset))
    mixture, labels, sources, enrolments = [np.asarray(t) for t in inputs]
    assert mixture.shape == (4, CROP) and labels.shape == (4, 2)
    assert sources.shape == enrolments.shape == (4, 2, CROP)
    np.testing.assert_array_equal(mixture, sources[:, 0] + sources[:, 1])
    (inputs,) = next(iter(sampler_dataset("mixture", corpus, SPEAKERS, crop_samples=CROP,
                                          batch_size=4, return_enrolments=True)[0]))
    assert [tuple(t.shape) for t in inputs] == [(4, CROP), (4, 2), (4, 2, CROP)]


@pytest.mark.parametrize("name", sorted(CASES))
def test_stream_from_start_epoch_is_the_tail_of_the_stream_from_zero(corpus, name):
    steps = CASES[name][3]
    dataset, _ = build(corpus, name, start_epoch=0)
    from_zero = as_numpy(dataset.take(4 * steps))
    resumed = as_numpy(build(corpus, name, start_epoch=2)[0].take(2 * steps))
    for got, want in zip(resumed, from_zero[2 * steps :]):
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)
    epochs = [np.concatenate([b[0] for b in from_zero[e * steps : (e + 1) * steps]]) for e in range(4)]
    assert all(not np.array_equal(epochs[e], epochs[e + 1]) for e in range(3))


class Recorder(keras.Model):
    """Keeps a checksum of the last batch it saw in a non-trainable variable.

    Each input is multiplied by a fixed random tensor of its shape and
    summed, so a batch's checksum changes with any of its values or rows.
    """

    def __init__(self, shapes, **kwargs):
        super().__init__(**kwargs)
        rng = np.random.default_rng(11)
        self.probes = [rng.uniform(0.5, 1.5, shape).astype("float32") for shape in shapes]
        self.scale = self.add_weight(shape=(), initializer="ones", name="scale")
        self.checksum = self.add_weight(shape=(), initializer="zeros", trainable=False,
                                        name="checksum")

    def call(self, inputs):
        total = 0.0
        for x, probe in zip(inputs, self.probes):
            total = total + ops.sum(ops.cast(x, "float32") * ops.convert_to_tensor(probe))
        self.checksum.assign(total)
        self.add_loss(ops.square(self.scale * ops.mean(ops.cast(inputs[0], "float32"))))
        return total


def checksum(inputs, probes):
    return sum(np.sum(x.astype(np.float64) * p) for x, p in zip(inputs, probes))


class Record(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.seen = []

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        self.seen.append((self.epoch, float(np.asarray(self.model.checksum))))


def fit_checksums(corpus, name, initial_epoch, epochs):
    dataset, steps = build(corpus, name, start_epoch=initial_epoch)
    (inputs,) = next(iter(dataset))
    model = Recorder([tuple(t.shape) for t in inputs])
    model.compile(optimizer=keras.optimizers.SGD(0.01))
    record = Record()
    model.fit(dataset, initial_epoch=initial_epoch, epochs=epochs, steps_per_epoch=steps,
              callbacks=[record], shuffle=False, verbose=0)
    return record.seen, model.probes


@pytest.mark.parametrize("name", sorted(CASES))
def test_fit_resumed_at_an_epoch_sees_the_batches_of_an_uninterrupted_run(corpus, name):
    steps = CASES[name][3]
    whole, probes = fit_checksums(corpus, name, initial_epoch=0, epochs=3)
    resumed, _ = fit_checksums(corpus, name, initial_epoch=2, epochs=3)
    assert [e for e, _ in whole] == [e for e in range(3) for _ in range(steps)]
    assert resumed == whole[2 * steps :]  # the same epoch numbers and bit-identical checksums
    # And those are the checksums of the stream's batches of epochs 0 .. 2.
    stream = as_numpy(build(corpus, name, start_epoch=0)[0].take(3 * steps))
    want = [checksum(batch, probes) for batch in stream]
    np.testing.assert_allclose([c for _, c in whole], want, rtol=1e-5)
    assert len({round(c, 3) for c in want}) == len(want)  # every batch differs


def test_unknown_sampler_and_settings(corpus):
    assert sorted(SAMPLERS) == ["mixture", "pk", "random", "wsj0_2mix"]
    with pytest.raises(ValueError, match="Unknown sampler 'pks'. Did you mean 'pk'.*"
                                         "Valid samplers: mixture, pk, random, wsj0_2mix"):
        sampler_dataset("pks", corpus, SPEAKERS, crop_samples=CROP, batch_size=4)
    with pytest.raises(ValueError, match="Unknown setting 'num_speakers' for sampler 'random'.*"
                                         "Valid settings of 'random': none"):
        sampler_dataset("random", corpus, SPEAKERS, crop_samples=CROP, batch_size=4,
                        num_speakers=2)
    with pytest.raises(ValueError, match="Unknown setting 'sir' for sampler 'mixture'.*"
                                         "mixtures_per_epoch, num_speakers, return_enrolments, "
                                         "return_sources, sir_db"):
        sampler_dataset("mixture", corpus, SPEAKERS, crop_samples=CROP, batch_size=4, sir=3)
    with pytest.raises(ValueError, match="'pk' needs the setting.*num_utterances.*data.pk"):
        sampler_dataset("pk", corpus, SPEAKERS, crop_samples=CROP, batch_size=4, num_speakers=2)
    with pytest.raises(ValueError, match="Received: sir_db=\\(3, 1\\)"):
        sampler_dataset("mixture", corpus, SPEAKERS, crop_samples=CROP, batch_size=4,
                        sir_db=(3, 1))
    with pytest.raises(ValueError, match="Unknown setting 'num_speakers' for sampler "
                                         "'wsj0_2mix'.*mixtures_per_epoch, return_enrolments, "
                                         "root, subset"):
        sampler_dataset("wsj0_2mix", corpus, SPEAKERS, crop_samples=CROP, batch_size=4,
                        num_speakers=2)


def test_sampler_from_config():
    assert sampler_from_config({"batch_size": 8}) == ("random", {})
    data = {
        "sampler": "pk",
        "pk": {"num_speakers": 8, "num_utterances": 2, "steps_per_epoch": None},
        "mixture": {"num_speakers": 2, "sir_db": [0, 5], "mixtures_per_epoch": None,
                    "return_sources": False, "return_enrolments": True},
        "wsj0_2mix": {"root": "/corpora/wsj0-mix/2speakers/wav16k/min", "subset": "cv",
                      "mixtures_per_epoch": 500, "return_enrolments": False},
    }
    assert sampler_from_config(data) == (
        "pk", {"num_speakers": 8, "num_utterances": 2, "steps_per_epoch": None}
    )
    data["sampler"] = "mixture"
    name, settings = sampler_from_config(data)
    assert name == "mixture" and settings["sir_db"] == [0, 5] and settings["num_speakers"] == 2
    assert settings["return_enrolments"] is True
    data["sampler"] = "wsj0_2mix"
    assert sampler_from_config(data) == ("wsj0_2mix", data["wsj0_2mix"])
    with pytest.raises(ValueError, match="Unknown config key 'data.wsj0_2mix.folder'.*"
                                         "mixtures_per_epoch, return_enrolments, root, subset"):
        sampler_from_config({"sampler": "wsj0_2mix", "wsj0_2mix": {"folder": "x"}})
    assert sampler_from_config({"sampler": "mixture"}) == ("mixture", {})  # defaults
    with pytest.raises(ValueError, match="Unknown sampler 'mix'.*Valid samplers"):
        sampler_from_config({"sampler": "mix"})
    with pytest.raises(ValueError, match="Unknown config key 'data.pk.P'.*num_speakers, "
                                         "num_utterances, steps_per_epoch"):
        sampler_from_config({"sampler": "pk", "pk": {"P": 8}})


DEFAULTS = {
    "data": {
        "sampler": "random",
        "pk": {"num_speakers": 8, "num_utterances": 2, "steps_per_epoch": None},
        "mixture": {"num_speakers": 2, "sir_db": [0.0, 0.0], "mixtures_per_epoch": None,
                    "return_sources": False, "return_enrolments": False},
        "wsj0_2mix": {"root": None, "subset": "tr", "mixtures_per_epoch": None,
                      "return_enrolments": False},
    }
}


def test_constraints_accept_the_defaults_and_report_bad_values(tmp_path):
    import copy

    check_config(DEFAULTS, CONSTRAINTS)
    good = copy.deepcopy(DEFAULTS)
    good["data"].update(sampler="mixture")
    good["data"]["pk"]["steps_per_epoch"] = 100
    good["data"]["mixture"].update(sir_db=[-5, 5], mixtures_per_epoch=1000, num_speakers=3,
                                   return_enrolments=True)
    good["data"]["wsj0_2mix"].update(root="wsj0-mix/2speakers/wav8k/min", subset="tt",
                                     mixtures_per_epoch=20000, return_enrolments=True)
    check_config(good, CONSTRAINTS)
    bad = copy.deepcopy(DEFAULTS)
    bad["data"].update(sampler="pks")
    bad["data"]["pk"].update(num_speakers=0, num_utterances=1.5, steps_per_epoch=0)
    bad["data"]["mixture"].update(num_speakers=1, sir_db=[5, -5], mixtures_per_epoch=-1,
                                  return_sources="no", return_enrolments=None)
    bad["data"]["wsj0_2mix"].update(root=" ", subset="test", mixtures_per_epoch=0,
                                    return_enrolments="yes")
    with pytest.raises(ConfigError) as info:
        check_config(bad, CONSTRAINTS)
    lines = str(info.value).splitlines()
    assert len(lines) == 13  # one per key
    message = str(info.value)
    assert "'data.sampler' must be one of mixture, pk, random, wsj0_2mix, got 'pks'. Did you " \
           "mean 'pk'?" in message
    assert "'data.pk.steps_per_epoch' must be null or an int from 1 to 100000, got 0" in message
    assert "'data.mixture.num_speakers' must be an int >= 2, got 1" in message
    assert "'data.mixture.sir_db' must be a list of two numbers [lo, hi] in dB with lo <= hi, " \
           "got [5, -5]. Its low end 5 is above its high end -5." in message
    assert "'data.mixture.return_sources' must be true or false, got 'no'" in message
    assert "'data.mixture.return_enrolments' must be true or false, got None" in message
    assert "'data.wsj0_2mix.root' must be null or a non-empty string, got ' '" in message
    assert "'data.wsj0_2mix.subset' must be one of " in message
    assert "'data.wsj0_2mix.mixtures_per_epoch' must be null or an int from 1 to" in message
    assert "'data.wsj0_2mix.return_enrolments' must be true or false, got 'yes'" in message
    for value in ([1], [0, float("inf")], "0", [True, 2]):
        bad = copy.deepcopy(DEFAULTS)
        bad["data"]["mixture"]["sir_db"] = value
        with pytest.raises(ConfigError, match="data.mixture.sir_db"):
            check_config(bad, CONSTRAINTS)
    # Through load_config: an override names where the bad value came from.
    path = tmp_path / "run.yaml"
    path.write_text("data:\n  sampler: pk\n")
    config = load_config(path, ["--data.pk.num_utterances=4"], defaults=DEFAULTS,
                         constraints=CONSTRAINTS)
    assert sampler_from_config(config["data"]) == (
        "pk", {"num_speakers": 8, "num_utterances": 4, "steps_per_epoch": None}
    )
    with pytest.raises(ConfigError, match="override --data.mixture.sir_db: .*got \\[3, 1\\]"):
        load_config(path, ["--data.mixture.sir_db=[3, 1]"], defaults=DEFAULTS,
                    constraints=CONSTRAINTS)


def test_epoch_sizes_are_bounded_since_an_epoch_is_drawn_at_once():
    from keras_spk.data import PKSampler
    from keras_spk.data import mixture_dataset
    from keras_spk.data.sampler import MAX_MIXTURES_PER_EPOCH
    from keras_spk.data.sampler import MAX_STEPS_PER_EPOCH

    labels = [0, 0, 1, 1, 2, 2]
    assert len(PKSampler(labels, 2, 2, steps_per_epoch=MAX_STEPS_PER_EPOCH)) == MAX_STEPS_PER_EPOCH
    with pytest.raises(ValueError, match=r"steps_per_epoch must be None .* int from 1 to 100,000"):
        PKSampler(labels, 2, 2, steps_per_epoch=MAX_STEPS_PER_EPOCH + 1)
    with pytest.raises(ValueError, match=r"mixtures_per_epoch must be None .* int from 1 to 10,000,000"):
        mixture_dataset(["a.wav"] * 6, labels, 100, 2, mixtures_per_epoch=MAX_MIXTURES_PER_EPOCH + 1)
