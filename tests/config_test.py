"""Tests for keras_spk.config: YAML configs, `_base_`, dotted overrides, saving."""

import os

import pytest
import yaml

from keras_spk import config as config_lib
from keras_spk.config import ConfigError
from keras_spk.config import Constraint
from keras_spk.config import apply_overrides
from keras_spk.config import check_config
from keras_spk.config import choice
from keras_spk.config import dump_config
from keras_spk.config import float_range
from keras_spk.config import int_range
from keras_spk.config import list_of
from keras_spk.config import load_config
from keras_spk.config import non_empty_string
from keras_spk.config import parse_overrides
from keras_spk.config import read_yaml
from keras_spk.config import save_config

DEFAULTS = {
    "data": {"sample_rate": 16000, "crop_seconds": 2.0, "augment": True, "lists": ["a.txt"]},
    "model": {"name": "rawnet", "encoder": {"channels": 64, "dropout": 0.1}, "pooling": None},
    "optimizer": {"name": "adam", "learning_rate": 0.001, "weight_decay": 0.0},
    "extra": {},
}


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def write_defaults(tmp_path, name="defaults.yaml"):
    path = tmp_path / name
    path.write_text(dump_config(DEFAULTS), encoding="utf-8")
    return path


# ---------------------------------------------------------------- reading YAML


def test_read_yaml_plain_mapping(tmp_path):
    path = write(tmp_path / "c.yaml", "a:\n  b: 1\n  c: [1, 2]\n")
    assert read_yaml(path) == {"a": {"b": 1, "c": [1, 2]}}


def test_empty_file_is_empty_config(tmp_path):
    assert read_yaml(write(tmp_path / "c.yaml", "")) == {}


def test_python_object_tag_is_rejected(tmp_path):
    path = write(tmp_path / "evil.yaml", "a: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="evil.yaml"):
        read_yaml(path)
    path = write(tmp_path / "evil2.yaml", "a: !!python/object:collections.OrderedDict {}\n")
    with pytest.raises(ConfigError):
        load_config(path)


def test_invalid_yaml_names_the_file(tmp_path):
    path = write(tmp_path / "broken.yaml", "a: [1, 2\nb: }\n")
    with pytest.raises(ConfigError, match=r"broken\.yaml.*invalid YAML"):
        load_config(path)


def test_non_mapping_top_level_is_rejected(tmp_path):
    path = write(tmp_path / "list.yaml", "- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(path)


def test_missing_file_raises(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


# ---------------------------------------------------------------- overrides


@pytest.mark.parametrize(
    "args",
    [
        ["--optimizer.learning_rate=0.01"],
        ["--optimizer.learning_rate", "0.01"],
    ],
)
def test_override_both_forms(tmp_path, args):
    cfg = load_config(write_defaults(tmp_path), overrides=args)
    assert cfg["optimizer"]["learning_rate"] == 0.01
    assert isinstance(cfg["optimizer"]["learning_rate"], float)
    # Everything else untouched.
    assert cfg["optimizer"]["name"] == "adam"
    assert cfg["data"] == DEFAULTS["data"]


def test_parse_overrides_yaml_types():
    pairs = parse_overrides(
        [
            "--a.f=0.5",
            "--a.i",
            "3",
            "--a.b=true",
            "--a.l=[1, 2]",
            "--a.n=null",
            "--a.s=hello",
            "--a.e=",
            "--a.neg",
            "-1.5e-3",
        ]
    )
    assert pairs == [
        ("a.f", 0.5),
        ("a.i", 3),
        ("a.b", True),
        ("a.l", [1, 2]),
        ("a.n", None),
        ("a.s", "hello"),
        ("a.e", ""),
        ("a.neg", -1.5e-3),
    ]
    assert isinstance(pairs[1][1], int) and isinstance(pairs[2][1], bool)


def test_overrides_typed_values_applied(tmp_path):
    cfg = load_config(
        write_defaults(tmp_path),
        overrides=[
            "--data.sample_rate=8000",
            "--data.augment=false",
            "--data.lists=[x.txt, y.txt]",
            "--model.pooling=asp",  # default None: any type accepted
            "--model.name",
            "ecapa",
        ],
    )
    assert cfg["data"]["sample_rate"] == 8000 and isinstance(cfg["data"]["sample_rate"], int)
    assert cfg["data"]["augment"] is False
    assert cfg["data"]["lists"] == ["x.txt", "y.txt"]
    assert cfg["model"]["pooling"] == "asp"
    assert cfg["model"]["name"] == "ecapa"


def test_exponent_without_dot_is_a_float(tmp_path):
    # YAML 1.1 (plain PyYAML) would read `1e-3` as the string "1e-3".
    assert parse_overrides(["--a.b=1e-3", "--a.c", "-2E4"]) == [("a.b", 1e-3), ("a.c", -2e4)]
    user = write(tmp_path / "user.yaml", "optimizer:\n  learning_rate: 5e-4\n")
    cfg = load_config(user, overrides=["--optimizer.weight_decay=1e-5"], defaults=DEFAULTS)
    assert cfg["optimizer"]["learning_rate"] == 5e-4
    assert cfg["optimizer"]["weight_decay"] == 1e-5
    # Only the package's loader is changed, not PyYAML's SafeLoader.
    assert yaml.safe_load("1e-3") == "1e-3"
    # Plain ints, strings and dates keep their usual YAML types.
    assert parse_overrides(["--a=12", "--b=abc", "--c=1.5"]) == [("a", 12), ("b", "abc"), ("c", 1.5)]


def test_mixed_string_and_pair_overrides(tmp_path):
    cfg = load_config(
        write_defaults(tmp_path),
        overrides=["--data.sample_rate", "8000", ("optimizer.name", "sgd"), "--model.name", "x"],
    )
    assert cfg["data"]["sample_rate"] == 8000
    assert cfg["optimizer"]["name"] == "sgd"
    assert cfg["model"]["name"] == "x"


def test_override_to_null(tmp_path):
    cfg = load_config(write_defaults(tmp_path), overrides=["--model.name=null"])
    assert cfg["model"]["name"] is None


def test_int_accepted_for_float_key_and_converted(tmp_path):
    cfg = load_config(write_defaults(tmp_path), overrides=["--optimizer.learning_rate=1"])
    assert cfg["optimizer"]["learning_rate"] == 1.0
    assert type(cfg["optimizer"]["learning_rate"]) is float


def test_bool_not_accepted_for_int_or_float(tmp_path):
    path = write_defaults(tmp_path)
    with pytest.raises(ConfigError, match="data.sample_rate"):
        load_config(path, overrides=["--data.sample_rate=true"])
    with pytest.raises(ConfigError, match="optimizer.learning_rate"):
        load_config(path, overrides=["--optimizer.learning_rate=true"])


def test_float_not_accepted_for_int_key(tmp_path):
    with pytest.raises(ConfigError, match="data.sample_rate"):
        load_config(write_defaults(tmp_path), overrides=["--data.sample_rate=8000.5"])


def test_wrong_type_names_the_key(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(write_defaults(tmp_path), overrides=["--optimizer.learning_rate=fast"])
    message = str(info.value)
    assert "optimizer.learning_rate" in message
    assert "float" in message
    assert "fast" in message


def test_unknown_override_key_lists_valid_keys(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(write_defaults(tmp_path), overrides=["--optimizer.learning_rat=0.01"])
    message = str(info.value)
    assert "optimizer.learning_rat" in message
    for key in ("learning_rate", "name", "weight_decay"):
        assert key in message


def test_unknown_override_section_lists_sections(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(write_defaults(tmp_path), overrides=["--optimiser.learning_rate=0.01"])
    message = str(info.value)
    assert "optimiser" in message
    for section in ("data", "model", "optimizer", "extra"):
        assert section in message


def test_nested_section_override(tmp_path):
    path = write_defaults(tmp_path)
    cfg = load_config(path, overrides=["--model.encoder.channels=128"])
    assert cfg["model"]["encoder"] == {"channels": 128, "dropout": 0.1}
    with pytest.raises(ConfigError) as info:
        load_config(path, overrides=["--model.encoder.chanels=128"])
    message = str(info.value)
    assert "model.encoder.chanels" in message
    assert "channels" in message and "dropout" in message


def test_override_replacing_section_with_scalar_is_rejected(tmp_path):
    with pytest.raises(ConfigError, match="model.encoder"):
        load_config(write_defaults(tmp_path), overrides=["--model.encoder=3"])


def test_override_without_value_raises():
    with pytest.raises(ConfigError, match="no value"):
        parse_overrides(["--optimizer.learning_rate"])


def test_malformed_override_raises():
    with pytest.raises(ConfigError):
        parse_overrides(["optimizer.learning_rate=0.01"])
    with pytest.raises(ConfigError):
        parse_overrides(["--"])


def test_override_pairs_accepted(tmp_path):
    cfg = load_config(write_defaults(tmp_path), overrides=[("optimizer.learning_rate", 0.5)])
    assert cfg["optimizer"]["learning_rate"] == 0.5


def test_apply_overrides_returns_copy():
    cfg = apply_overrides(DEFAULTS, [("optimizer.learning_rate", 0.5)])
    assert cfg["optimizer"]["learning_rate"] == 0.5
    assert DEFAULTS["optimizer"]["learning_rate"] == 0.001


# ---------------------------------------------------------------- defaults


def test_partial_user_file_merged_onto_defaults(tmp_path):
    user = write(
        tmp_path / "user.yaml",
        "optimizer:\n  learning_rate: 0.1\nmodel:\n  encoder:\n    channels: 32\n",
    )
    for defaults in (DEFAULTS, write_defaults(tmp_path), str(write_defaults(tmp_path))):
        cfg = load_config(user, defaults=defaults)
        assert cfg["optimizer"] == {"name": "adam", "learning_rate": 0.1, "weight_decay": 0.0}
        assert cfg["model"]["encoder"] == {"channels": 32, "dropout": 0.1}
        assert cfg["data"] == DEFAULTS["data"]
    # The defaults mapping is not modified.
    assert DEFAULTS["optimizer"]["learning_rate"] == 0.001
    assert DEFAULTS["model"]["encoder"]["channels"] == 64


def test_user_file_unknown_key_rejected(tmp_path):
    user = write(tmp_path / "user.yaml", "optimizer:\n  lr: 0.1\n")
    with pytest.raises(ConfigError) as info:
        load_config(user, defaults=DEFAULTS)
    message = str(info.value)
    assert "user.yaml" in message
    assert "optimizer.lr" in message
    for key in ("learning_rate", "name", "weight_decay"):
        assert key in message


def test_user_file_unknown_section_rejected(tmp_path):
    user = write(tmp_path / "user.yaml", "trainer:\n  epochs: 3\n")
    with pytest.raises(ConfigError, match="trainer"):
        load_config(user, defaults=DEFAULTS)


def test_user_file_wrong_type_rejected(tmp_path):
    user = write(tmp_path / "user.yaml", "data:\n  crop_seconds: two\n")
    with pytest.raises(ConfigError, match="data.crop_seconds"):
        load_config(user, defaults=DEFAULTS)


def test_user_file_int_for_float_converted(tmp_path):
    user = write(tmp_path / "user.yaml", "data:\n  crop_seconds: 3\n")
    cfg = load_config(user, defaults=DEFAULTS)
    assert type(cfg["data"]["crop_seconds"]) is float and cfg["data"]["crop_seconds"] == 3.0


def test_overrides_checked_against_defaults(tmp_path):
    user = write(tmp_path / "user.yaml", "optimizer:\n  learning_rate: 0.1\n")
    # A key present in the defaults but not in the user file can be overridden.
    cfg = load_config(user, overrides=["--data.sample_rate=8000"], defaults=DEFAULTS)
    assert cfg["data"]["sample_rate"] == 8000
    assert cfg["optimizer"]["learning_rate"] == 0.1
    with pytest.raises(ConfigError, match="data.rate"):
        load_config(user, overrides=["--data.rate=8000"], defaults=DEFAULTS)


def test_free_form_section_accepts_any_keys(tmp_path):
    user = write(tmp_path / "user.yaml", "extra:\n  anything: 1\n  nested: {a: [1, 2]}\n")
    cfg = load_config(user, overrides=["--extra.more=x", "--extra.nested.b=2"], defaults=DEFAULTS)
    assert cfg["extra"] == {"anything": 1, "nested": {"a": [1, 2], "b": 2}, "more": "x"}
    # Still empty in the defaults.
    assert DEFAULTS["extra"] == {}


def test_free_form_section_from_defaults_file(tmp_path):
    cfg = load_config(write_defaults(tmp_path), overrides=["--extra.seed=3"])
    assert cfg["extra"] == {"seed": 3}


# ---------------------------------------------------------------- _base_


def test_base_inheritance_relative_path(tmp_path):
    (tmp_path / "bases").mkdir()
    (tmp_path / "recipes").mkdir()
    write(
        tmp_path / "bases" / "base.yaml",
        "optimizer:\n  name: adam\n  learning_rate: 0.001\nmodel:\n  name: rawnet\n  channels: 64\n",
    )
    child = write(
        tmp_path / "recipes" / "child.yaml",
        "_base_: ../bases/base.yaml\noptimizer:\n  learning_rate: 0.01\nmodel:\n  channels: 128\n",
    )
    # Load from a different working directory: the base is relative to the child.
    cwd = os.getcwd()
    try:
        os.chdir(tmp_path / "bases")
        cfg = load_config(child)
    finally:
        os.chdir(cwd)
    assert cfg == {
        "optimizer": {"name": "adam", "learning_rate": 0.01},
        "model": {"name": "rawnet", "channels": 128},
    }
    assert "_base_" not in cfg


def test_base_chain_and_overrides(tmp_path):
    write(tmp_path / "a.yaml", "x:\n  p: 1\n  q: 2\n  r: 3\n")
    write(tmp_path / "b.yaml", "_base_: a.yaml\nx:\n  q: 20\n")
    c = write(tmp_path / "c.yaml", "_base_: b.yaml\nx:\n  r: 30\n")
    cfg = load_config(c, overrides=["--x.p=100"])
    assert cfg == {"x": {"p": 100, "q": 20, "r": 30}}
    with pytest.raises(ConfigError, match="x.s"):
        load_config(c, overrides=["--x.s=1"])


def test_base_absolute_path(tmp_path):
    base = write(tmp_path / "base.yaml", "x:\n  p: 1\n")
    (tmp_path / "sub").mkdir()
    child = write(tmp_path / "sub" / "child.yaml", f"_base_: {base}\nx:\n  p: 2\n")
    assert load_config(child) == {"x": {"p": 2}}


def test_base_with_defaults(tmp_path):
    write(tmp_path / "base.yaml", "optimizer:\n  learning_rate: 0.5\n")
    child = write(tmp_path / "child.yaml", "_base_: base.yaml\ndata:\n  sample_rate: 8000\n")
    cfg = load_config(child, defaults=DEFAULTS)
    assert cfg["optimizer"]["learning_rate"] == 0.5
    assert cfg["data"]["sample_rate"] == 8000


def test_base_cycle_raises(tmp_path):
    write(tmp_path / "a.yaml", "_base_: b.yaml\nx: 1\n")
    write(tmp_path / "b.yaml", "_base_: a.yaml\ny: 2\n")
    with pytest.raises(ConfigError, match="includes itself"):
        load_config(tmp_path / "a.yaml")
    write(tmp_path / "self.yaml", "_base_: self.yaml\n")
    with pytest.raises(ConfigError, match="includes itself"):
        load_config(tmp_path / "self.yaml")


def test_missing_base_raises(tmp_path):
    child = write(tmp_path / "child.yaml", "_base_: missing.yaml\n")
    with pytest.raises(ConfigError, match="missing.yaml"):
        load_config(child)


# ---------------------------------------------------------------- saving


def test_save_config_round_trip(tmp_path):
    cfg = load_config(write_defaults(tmp_path), overrides=["--optimizer.learning_rate=0.01"])
    out = tmp_path / "run" / "config.yaml"
    save_config(cfg, out)
    assert load_config(out) == cfg
    # Keys keep file order.
    assert list(yaml.safe_load(out.read_text())) == list(DEFAULTS)
    # The saved file is valid input for the same defaults.
    assert load_config(out, defaults=DEFAULTS) == cfg


def test_dump_config_is_safe_yaml():
    text = dump_config(DEFAULTS)
    assert "!!python" not in text
    assert yaml.safe_load(text) == DEFAULTS


def _assert_untouched(tmp_path, out, before):
    assert out.read_bytes() == before
    assert load_config(out) == {"a": {"b": 1}}
    assert sorted(os.listdir(tmp_path)) == ["config.yaml"]  # no temporary file left


def test_save_config_atomic_when_dump_fails(tmp_path, monkeypatch):
    out = tmp_path / "config.yaml"
    save_config({"a": {"b": 1}}, out)
    before = out.read_bytes()

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(yaml, "safe_dump", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        save_config({"a": {"b": 2}}, out)
    monkeypatch.undo()
    _assert_untouched(tmp_path, out, before)


def test_save_config_atomic_on_unserialisable_value(tmp_path):
    out = tmp_path / "config.yaml"
    save_config({"a": {"b": 1}}, out)
    before = out.read_bytes()
    with pytest.raises(yaml.YAMLError):
        save_config({"a": {"b": object()}}, out)
    _assert_untouched(tmp_path, out, before)


def test_save_config_atomic_when_write_fails_midway(tmp_path, monkeypatch):
    import keras_spk.utils.files as files_lib

    out = tmp_path / "config.yaml"
    save_config({"a": {"b": 1}}, out)
    before = out.read_bytes()
    real_fdopen = os.fdopen

    class HalfWriter:
        """Writes half of the text to the temporary file, then fails."""

        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()
            return False

        def write(self, data):
            self.f.write(data[: len(data) // 2])
            self.f.flush()
            raise OSError("disk full")

    monkeypatch.setattr(
        files_lib.os, "fdopen", lambda fd, mode, **kw: HalfWriter(real_fdopen(fd, mode, **kw))
    )
    with pytest.raises(OSError, match="disk full"):
        save_config({"a": {"b": 2}, "c": list(range(100))}, out)
    monkeypatch.undo()
    _assert_untouched(tmp_path, out, before)


# ---------------------------------------------------------------- constraints

@pytest.mark.parametrize(
    "constraint, valid, invalid",
    [
        (int_range(min=1), [1, 7, 10**9], [0, -3, 1.5, True, None, "2"]),
        (int_range(min=0), [0, 3], [-1, False]),
        (int_range(min=8000, max=192000), [8000, 16000, 192000], [7999, 192001, 0]),
        (int_range(min=1, allow_none=True), [None, 1], [0]),
        (float_range(0, 1, include_max=False), [0, 0.0, 0.3, 0.999], [1, 1.0, -0.1, float("nan"), True]),
        (float_range(min=0, include_min=False), [1e-9, 3], [0, 0.0, -1.0, float("inf")]),
        (choice(["mean", "sum"]), ["mean", "sum"], ["Mean", "max", None, 1]),
        (choice([0, 1, 2]), [0, 1, 2], [3, True, 1.0]),
        (choice(lambda: ["a", "b"], allow_none=True), ["a", None], ["c"]),
        (list_of(int_range(min=1), min_length=1), [[1], [4, 4]], [[], [0], 3, None, "1"]),
        (list_of(choice(["a", "b"]), unique=True, allow_none=True), [[], ["a", "b"], None], [["a", "a"], ["c"]]),
        (non_empty_string(allow_none=True), ["x", None], ["", "  ", 3]),
    ],
)
def test_constraint_accepts_and_refuses(constraint, valid, invalid):
    for value in valid:
        assert constraint.problem(value, {}) is None, value
    for value in invalid:
        assert constraint.problem(value, {}) is not None, value


def test_constraint_descriptions():
    assert int_range(min=1).describe({}) == "an int >= 1"
    assert int_range(min=8000, max=192000).describe({}) == "an int from 8000 to 192000"
    assert int_range(min=1, allow_none=True).describe({}) == "null or an int >= 1"
    assert float_range(0, 1, include_max=False).describe({}) == "a number in [0, 1)"
    assert float_range(min=0, include_min=False).describe({}) == "a number > 0"
    assert choice(["mean", "sum"]).describe({}) == "one of mean, sum"
    assert list_of(int_range(min=1), min_length=1, noun="sizes").describe({}) == (
        "a non-empty list of sizes, each an int >= 1"
    )


def test_check_config_message_names_source_key_value_and_fix():
    config = {"data": {"batch_size": 0}}
    with pytest.raises(ConfigError) as error:
        check_config(
            config,
            {"data.batch_size": int_range(min=1)},
            origins={"data.batch_size": "override --data.batch_size"},
            defaults={"data": {"batch_size": 32}},
        )
    assert str(error.value) == (
        "override --data.batch_size: config key 'data.batch_size' must be an int >= 1, got 0. "
        "Give another value, e.g. --data.batch_size=32 (the default)."
    )


def test_load_config_checks_constraints_and_names_where_a_value_came_from(tmp_path):
    defaults = write_defaults(tmp_path)
    rules = {
        "data.sample_rate": int_range(min=8000, max=192000),
        "model.encoder.dropout": float_range(0, 1, include_max=False),
    }
    assert load_config(defaults, constraints=rules)["data"]["sample_rate"] == 16000
    with pytest.raises(ConfigError, match=r"^override --data.sample_rate: config key 'data.sample_rate' "
                                          r"must be an int from 8000 to 192000, got 0\. "):
        load_config(defaults, ["--data.sample_rate=0"], constraints=rules)
    # A value from a user file names that file, one from its _base_ the base.
    write(tmp_path / "base.yaml", "model:\n  encoder:\n    dropout: 1.0\n")
    user = write(tmp_path / "user.yaml", "_base_: base.yaml\ndata:\n  sample_rate: 4000\n")
    with pytest.raises(ConfigError) as error:
        load_config(user, defaults=defaults, constraints=rules)
    lines = str(error.value).split("\n")
    assert len(lines) == 2  # every bad value, one line each
    assert lines[0].startswith(f"{user}: config key 'data.sample_rate' must be an int from 8000")
    assert "Change it there or override it, e.g. --data.sample_rate=16000 (the default)." in lines[0]
    assert lines[1].startswith(
        f"{tmp_path / 'base.yaml'}: config key 'model.encoder.dropout' must be a number in [0, 1), got 1.0."
    )
    # An override that breaks a good value: the example is the config file's own value.
    good = write(tmp_path / "good.yaml", "data:\n  sample_rate: 8000\n")
    with pytest.raises(ConfigError, match=r"e\.g\. --data\.sample_rate=8000 \(the config file's value\)\.$"):
        load_config(good, ["--data.sample_rate=1"], defaults=defaults, constraints=rules)
    # The override that fixes it is accepted.
    fixed = load_config(user, ["--data.sample_rate=8000", "--model.encoder.dropout=0.5"], defaults=defaults,
                        constraints=rules)
    assert fixed["data"]["sample_rate"] == 8000


def test_choice_from_a_registry_reads_it_when_checked_and_suggests():
    registry = {"cosine": 1, "plda": 2}
    rule = {"evaluation.backends": list_of(choice(lambda: sorted(registry)), min_length=1, unique=True,
                                           noun="back-end names")}
    config = {"evaluation": {"backends": ["cosine", "plad"]}}
    with pytest.raises(ConfigError, match=r"each one of cosine, plda, got \['cosine', 'plad'\]\. "
                                          r"Entry 2 \('plad'\) is not valid\. Did you mean 'plda'\?"):
        check_config(config, rule)
    registry["plad"] = 3  # a registry that grows: the same declaration accepts the new name
    assert check_config(config, rule) is config


def test_unique_and_non_empty_lists():
    rule = {"a": list_of(choice(["x", "y"]), min_length=1, unique=True)}
    with pytest.raises(ConfigError, match="'x' appear"):
        check_config({"a": ["x", "x"]}, rule)
    with pytest.raises(ConfigError, match="non-empty list"):
        check_config({"a": []}, rule)


def test_rule_depending_on_a_bad_key_waits_for_that_keys_error():
    rules = {
        "rate": int_range(min=8000),
        # One sample at the rate: reads the other key (and divides by it).
        "seconds": Constraint(
            lambda value, config: value >= 1 / config["rate"], lambda config: f"at least {1 / config['rate']} s"
        ),
    }
    with pytest.raises(ConfigError, match="config key 'rate'") as error:
        check_config({"rate": 0, "seconds": 1.0}, rules)
    assert "seconds" not in str(error.value)
    # With the rate fixed, the dependent rule runs.
    with pytest.raises(ConfigError, match=r"config key 'seconds' must be at least 0.000125 s"):
        check_config({"rate": 8000, "seconds": 0.0}, rules)


def test_constraint_on_a_key_the_config_lacks_is_a_bug():
    with pytest.raises(KeyError, match="data.batch_sise"):
        check_config({"data": {"batch_size": 1}}, {"data.batch_sise": int_range(min=1)})
