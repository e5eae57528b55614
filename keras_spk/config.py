"""YAML run configuration with dotted command-line overrides.

A recipe ships a defaults file (every key it understands, one section per
concern: `data`, `model`, `loss`, `optimizer`, ...). A user config or a
`--section.key=value` override may change values but never invent keys: an
unknown key is an error that lists the valid ones, so a typo cannot silently
fall back to a default. Files are read with a `yaml.SafeLoader` (no arbitrary
Python objects). A config may start from another with `_base_: other.yaml`
(relative to its own folder). The resolved config is written next to a
run's outputs so every result can be reproduced.

Example:
>>> cfg = load_config("papers/rawnet/configs/rawnet.yaml",
...                   overrides=["--optimizer.learning_rate=0.01"])
"""

import copy
import os
import re

import yaml

from keras_spk.utils.files import atomic_write_text

BASE_KEY = "_base_"


class _Loader(yaml.SafeLoader):
    """`yaml.SafeLoader` that also reads `1e-3` (no dot) as a float.

    PyYAML follows YAML 1.1, where `1e-3` is a string; a learning rate
    written that way would otherwise be rejected (or kept as text).
    """


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def _safe_load(stream):
    return yaml.load(stream, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


class ConfigError(ValueError):
    """A config file or override is invalid; the message names the key and the fix."""


def read_yaml(path):
    """Reads one YAML mapping with a `yaml.SafeLoader`, following `_base_` links."""
    return _read_yaml(os.fspath(path), seen=())


def _read_yaml(path, seen):
    if not os.path.isfile(path):
        raise ConfigError(f"Config file {path} does not exist.")
    if os.path.abspath(path) in seen:
        raise ConfigError(f"Config file {path} includes itself through {BASE_KEY}.")
    try:
        with open(path, encoding="utf-8") as f:
            content = _safe_load(f)
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: invalid YAML ({error}).") from None
    if content is None:
        content = {}
    if not isinstance(content, dict):
        raise ConfigError(f"{path}: a config must be a mapping of sections, got {type(content).__name__}.")
    base = content.pop(BASE_KEY, None)
    if base is None:
        return content
    base_path = base if os.path.isabs(base) else os.path.join(os.path.dirname(path), base)
    merged = _read_yaml(base_path, seen + (os.path.abspath(path),))
    _merge(merged, content, schema=None, where="", source=path)
    return merged


def _type_name(value):
    return type(value).__name__


def _coerce(key, default, value, source):
    """Checks `value` against the type of `default`; ints are accepted for floats."""
    if default is None or value is None:
        return value
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
    elif isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(default, str):
        if isinstance(value, str):
            return value
    elif isinstance(default, list):
        if isinstance(value, list):
            return value
    elif isinstance(default, dict):
        if isinstance(value, dict):
            return value
    else:
        return value
    raise ConfigError(
        f"{source}: config key '{key}' expects a {_type_name(default)} "
        f"(default {default!r}), got {value!r}."
    )


def _merge(target, update, schema, where, source):
    """Merges `update` into `target` in place, checking keys against `schema`."""
    for key, value in update.items():
        dotted = f"{where}{key}"
        if schema is not None and key not in schema:
            valid = ", ".join(sorted(schema)) or "(none)"
            raise ConfigError(
                f"{source}: unknown config key '{dotted}'. "
                f"Valid keys{' under ' + repr(where[:-1]) if where else ''}: {valid}."
            )
        sub_schema = None if schema is None else schema[key]
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            # A section whose default is an empty mapping is free-form.
            free = sub_schema is not None and isinstance(sub_schema, dict) and not sub_schema
            _merge(target[key], value, None if free else sub_schema, f"{dotted}.", source)
        else:
            if schema is not None:
                value = _coerce(dotted, schema[key], value, source)
            target[key] = copy.deepcopy(value)


def parse_overrides(args):
    """Turns `["--a.b=1", "--c.d", "x"]` into `[("a.b", 1), ("c.d", "x")]`.

    Values are parsed as YAML scalars, so `0.01`, `true`, `[1, 2]` and
    `null` have their natural types.
    """
    pairs, i = [], 0
    args = list(args)
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or len(arg) == 2:
            raise ConfigError(f"Expected a '--section.key=value' override, got {arg!r}.")
        key = arg[2:]
        if "=" in key:
            key, text = key.split("=", 1)
        elif i + 1 < len(args):
            i += 1
            text = args[i]
        else:
            raise ConfigError(f"Override '{arg}' has no value; write {arg}=VALUE.")
        try:
            value = _safe_load(text) if text != "" else ""
        except yaml.YAMLError:
            value = text
        pairs.append((key, value))
        i += 1
    return pairs


def apply_overrides(config, overrides, schema=None):
    """Returns a copy of `config` with dotted `(key, value)` overrides applied."""
    config = copy.deepcopy(config)
    schema = config if schema is None else schema
    for key, value in overrides:
        parts = key.split(".")
        update = value
        for part in reversed(parts):
            update = {part: update}
        _merge(config, update, schema, "", f"override --{key}")
    return config


def load_config(path, overrides=(), defaults=None):
    """Reads a config, checks it against `defaults` and applies overrides.

    Args:
        path: YAML file.
        overrides: `["--section.key=value", ...]` strings or `(key, value)` pairs.
        defaults: optional mapping (or YAML path) that defines every valid
            key and its default; the file's values are merged onto it. When
            omitted the file itself is the schema for the overrides.

    Returns:
        The resolved config as nested dicts.

    Raises:
        ConfigError: unknown keys (listing the valid ones), wrong value
            types, unreadable YAML.
    """
    content = read_yaml(path)
    if defaults is not None:
        schema = read_yaml(defaults) if isinstance(defaults, (str, os.PathLike)) else defaults
        config = copy.deepcopy(schema)
        _merge(config, content, schema, "", os.fspath(path))
    else:
        schema, config = content, content
    # Strings are parsed together so that "--key value" (two strings) works too.
    pairs, strings = [], []
    for override in overrides:
        if isinstance(override, str):
            strings.append(override)
        else:
            pairs.extend(parse_overrides(strings))
            strings = []
            pairs.append(override)
    pairs.extend(parse_overrides(strings))
    return apply_overrides(config, pairs, schema=schema)


def dump_config(config):
    """The config as YAML text (keys in file order)."""
    return yaml.safe_dump(config, sort_keys=False, default_flow_style=False)


def save_config(config, path):
    """Writes the resolved config as YAML, atomically."""
    atomic_write_text(path, dump_config(config))
