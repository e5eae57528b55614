"""The optimizer and schedule registry the stages are compiled with."""

import keras
import numpy as np
import pytest

from keras_spk.recipe.optimizers import build_optimizer


def rate_at(optimizer, step):
    rate = optimizer.learning_rate
    schedule = optimizer._learning_rate
    if isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
        return float(keras.ops.convert_to_numpy(schedule(step)))
    return float(keras.ops.convert_to_numpy(rate))


def test_amsgrad_with_keras2_inverse_time_decay():
    # RawNet, section 4.2: AMSGrad, lr 1e-3, Keras 2 decay 1e-4: lr / (1 + 1e-4 * step).
    optimizer = build_optimizer(
        {"name": "adam", "learning_rate": 1e-3, "amsgrad": True},
        {"name": "inverse_time", "decay": 1e-4},
        steps_per_epoch=10,
        epochs=5,
    )
    assert isinstance(optimizer, keras.optimizers.Adam) and optimizer.amsgrad
    for step in (0, 1, 1000, 25000):
        assert rate_at(optimizer, step) == pytest.approx(1e-3 / (1 + 1e-4 * step), rel=1e-6)


def test_sgd_step_schedule_with_warm_up():
    # 10 epochs of 4 steps; drops at 50% and 75% of the epochs (steps 20 and 32, rounding
    # 7.5 to 8), a tenth of the rate during the first epoch. Keras's optimizer step counter
    # starts at 0 and a boundary belongs to the rate before it (step <= boundary).
    optimizer = build_optimizer(
        {"name": "sgd", "learning_rate": 0.1, "momentum": 0.9},
        {"name": "step", "drop_at": [0.5, 0.75], "drop_factor": 0.1, "warmup_epochs": 1},
        steps_per_epoch=4,
        epochs=10,
    )
    assert isinstance(optimizer, keras.optimizers.SGD) and optimizer.momentum == 0.9
    expected = {0: 0.01, 4: 0.01, 5: 0.1, 20: 0.1, 21: 0.01, 32: 0.01, 33: 0.001, 39: 0.001}
    for step, rate in expected.items():
        assert rate_at(optimizer, step) == pytest.approx(rate, rel=1e-6), step


def test_constant_and_no_schedule_are_the_same_rate():
    a = build_optimizer({"name": "adam", "learning_rate": 3e-4}, {"name": "constant"})
    b = build_optimizer({"name": "adam", "learning_rate": 3e-4})
    assert rate_at(a, 100) == rate_at(b, 100) == pytest.approx(3e-4)


def test_cosine_schedule_ends_at_its_final_fraction():
    optimizer = build_optimizer(
        {"name": "adam", "learning_rate": 1e-3},
        {"name": "cosine", "final_fraction": 0.1},
        steps_per_epoch=5,
        epochs=4,
    )
    assert rate_at(optimizer, 0) == pytest.approx(1e-3)
    assert rate_at(optimizer, 10) == pytest.approx(1e-3 * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi / 2))))
    assert rate_at(optimizer, 20) == pytest.approx(1e-4)


@pytest.mark.parametrize(
    "optimizer, schedule, message",
    [
        ({"name": "adm", "learning_rate": 1e-3}, None, r"unknown optimizer 'adm'\. Did you mean 'adam'"),
        ({"name": "sgd", "learning_rate": 1e-3, "amsgrad": True}, None, r"'sgd' has no setting\(s\) amsgrad"),
        ({"name": "adam"}, None, "needs a learning_rate"),
        ({"learning_rate": 1e-3}, None, "mapping with a `name`"),
        ({"name": "adam", "learning_rate": 1e-3}, {"name": "step", "drop": [0.5]}, r"'step' has no setting\(s\) drop"),
        ({"name": "adam", "learning_rate": 1e-3}, {"name": "linear"}, "unknown schedule 'linear'"),
    ],
)
def test_bad_sections_name_the_key_and_the_valid_ones(optimizer, schedule, message):
    with pytest.raises(ValueError, match=message):
        build_optimizer(optimizer, schedule)
