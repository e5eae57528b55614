"""YAML run configuration with dotted command-line overrides.

A recipe ships a defaults file (every key it understands, one section per
concern: `data`, `model`, `loss`, `optimizer`, ...). A user config or a
`--section.key=value` override may change values but never invent keys: an
unknown key is an error that lists the valid ones, so a typo cannot silently
fall back to a default. Files are read with a `yaml.SafeLoader` (no arbitrary
Python objects). A config may start from another with `_base_: other.yaml`
(relative to its own folder). The resolved config is written next to a
run's outputs so every result can be reproduced.

Types follow the defaults; what a value may be beyond its type (a batch
size >= 1, a back-end name from the scoring registry, a dropout in
`[0, 1)`) is declared once per dotted key as a `Constraint`
(`int_range`, `float_range`, `choice`, `list_of`, ...), and
`load_config(..., constraints=...)` checks them after the overrides, so a
bad value is reported at start-up, naming where it came from and the fix:

    override --data.batch_size: config key 'data.batch_size' must be an int
    >= 1, got 0. Give another value, e.g. --data.batch_size=102 (the default).

Example:
>>> cfg = load_config("papers/rawnet/configs/rawnet.yaml",
...                   overrides=["--optimizer.learning_rate=0.01"],
...                   constraints={"optimizer.learning_rate": float_range(min=0, include_min=False)})
"""

import copy
import math
import os
import re
import shlex

import yaml

from keras_spk.utils._checks import is_int
from keras_spk.utils._checks import is_real
from keras_spk.utils.files import atomic_write_text
from keras_spk.utils.registry import did_you_mean

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


def _leaf_sources(content, source, origins, where=""):
    """Records `source` as the origin of every leaf of `content` (dotted keys)."""
    for key, value in content.items():
        if isinstance(value, dict) and value:
            _leaf_sources(value, source, origins, f"{where}{key}.")
        else:
            origins[f"{where}{key}"] = source


def _read_yaml(path, seen, origins=None):
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
        if origins is not None:
            _leaf_sources(content, path, origins)
        return content
    base_path = base if os.path.isabs(base) else os.path.join(os.path.dirname(path), base)
    merged = _read_yaml(base_path, seen + (os.path.abspath(path),), origins)
    _merge(merged, content, schema=None, where="", source=path, origins=origins)
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


def _merge(target, update, schema, where, source, origins=None):
    """Merges `update` into `target` in place, checking keys against `schema`.

    `origins`, when given, maps each dotted key set here to `source`.
    """
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
            _merge(target[key], value, None if free else sub_schema, f"{dotted}.", source, origins)
        else:
            if schema is not None:
                value = _coerce(dotted, schema[key], value, source)
            target[key] = copy.deepcopy(value)
            if origins is not None:
                origins[dotted] = source


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


def apply_overrides(config, overrides, schema=None, origins=None):
    """Returns a copy of `config` with dotted `(key, value)` overrides applied.

    `origins`, when given, maps each overridden dotted key to
    `"override --<key>"`.
    """
    config = copy.deepcopy(config)
    schema = config if schema is None else schema
    for key, value in overrides:
        parts = key.split(".")
        update = value
        for part in reversed(parts):
            update = {part: update}
        _merge(config, update, schema, "", f"override --{key}", origins)
    return config


def load_config(path, overrides=(), defaults=None, constraints=None):
    """Reads a config, checks it against `defaults` and applies overrides.

    Args:
        path: YAML file.
        overrides: `["--section.key=value", ...]` strings or `(key, value)` pairs.
        defaults: optional mapping (or YAML path) that defines every valid
            key and its default; the file's values are merged onto it. When
            omitted the file itself is the schema for the overrides.
        constraints: optional mapping of dotted key -> `Constraint`, checked
            on the resolved config (`check_config`); a violation names the
            file or override the value came from.

    Returns:
        The resolved config as nested dicts.

    Raises:
        ConfigError: unknown keys (listing the valid ones), wrong value
            types, unreadable YAML, values that break a constraint.
    """
    origins = {}
    content = _read_yaml(os.fspath(path), seen=(), origins=origins)
    if defaults is not None:
        if isinstance(defaults, (str, os.PathLike)):
            schema = _read_yaml(os.fspath(defaults), seen=(), origins={})
            default_source = os.fspath(defaults)
        else:
            schema, default_source = defaults, "the defaults"
        config = copy.deepcopy(schema)
        _merge(config, content, schema, "", os.fspath(path))
    else:
        schema, config = content, content
        default_source = os.fspath(path)
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
    resolved = apply_overrides(config, pairs, schema=schema, origins=origins)
    if constraints:
        examples = [(config, "the config file's value"), (schema, "the default")]
        check_config(resolved, constraints, origins=origins, defaults=examples, source=default_source)
    return resolved


def dump_config(config):
    """The config as YAML text (keys in file order)."""
    return yaml.safe_dump(config, sort_keys=False, default_flow_style=False)


def save_config(config, path):
    """Writes the resolved config as YAML, atomically."""
    atomic_write_text(path, dump_config(config))


# === Constraints on values ===


class Constraint:
    """A rule one config value must follow, and the words for it.

    A recipe declares its rules once, keyed by dotted config key, e.g.
    `{"data.batch_size": int_range(min=1), "evaluation.backends":
    list_of(choice(backend_names), min_length=1, unique=True)}`, and
    `load_config(..., constraints=...)` (or `check_config`) applies them.
    The factories below cover the usual cases; build one directly for
    anything else.

    Args:
        test: callable `(value, config) -> result`, `config` being the whole
            resolved config (for rules that depend on other keys). `None`
            or `True`: the value is valid; `False`: it is not; a string: it
            is not, and the string says why (added to the message).
        description: what a valid value is, completing "must be ...": a
            string, or a callable `config -> str`.
        fix: optional advice added to the message. Defaults to an example
            (the default value when it is valid).
    """

    def __init__(self, test, description, fix=None):
        self.test = test
        self.description = description
        self.fix = fix

    def describe(self, config):
        """What a valid value is (for `config`)."""
        return self.description(config) if callable(self.description) else self.description

    def problem(self, value, config):
        """`None` when `value` is valid, else a string (possibly empty) saying what is wrong."""
        result = self.test(value, config)
        if result is None or result is True:
            return None
        return "" if result is False else str(result)

    def __repr__(self):
        description = self.description if isinstance(self.description, str) else "..."
        return f"Constraint({description!r})"


def _bound(bound, config):
    return bound(config) if callable(bound) else bound


def _none_or(allow_none, description):
    return f"null or {description}" if allow_none else description


def _range_words(kind, low, high, include_low=True, include_high=True):
    if low is not None and high is not None:
        if include_low and include_high and kind == "an int":
            return f"{kind} from {low} to {high}"
        return f"{kind} in {'[' if include_low else '('}{low}, {high}{']' if include_high else ')'}"
    if low is not None:
        return f"{kind} {'>=' if include_low else '>'} {low}"
    if high is not None:
        return f"{kind} {'<=' if include_high else '<'} {high}"
    return kind


def int_range(min=None, max=None, allow_none=False, fix=None):  # noqa: A002 - keras-style names
    """An int (not a bool) in `[min, max]`; either bound may be `None` or a callable `config -> int`.

    Example: `int_range(min=1)` for a batch size, `int_range(min=0)` for
    epochs where 0 skips a stage.
    """

    def test(value, config):
        if value is None:
            return allow_none
        low, high = _bound(min, config), _bound(max, config)
        return is_int(value) and (low is None or value >= low) and (high is None or value <= high)

    return Constraint(
        test,
        lambda config: _none_or(allow_none, _range_words("an int", _bound(min, config), _bound(max, config))),
        fix,
    )


def float_range(
    min=None,  # noqa: A002
    max=None,  # noqa: A002
    include_min=True,
    include_max=True,
    allow_none=False,
    fix=None,
):
    """A finite number (int or float, not a bool) between `min` and `max`.

    Example: `float_range(0, 1, include_max=False)` for a dropout rate,
    `float_range(min=0, include_min=False)` for a learning rate.
    """

    def test(value, config):
        if value is None:
            return allow_none
        if not is_real(value) or not math.isfinite(value):
            return False
        low, high = _bound(min, config), _bound(max, config)
        if low is not None and (value < low or (value == low and not include_min)):
            return False
        return high is None or value < high or (value == high and include_max)

    def describe(config):
        words = _range_words("a number", _bound(min, config), _bound(max, config), include_min, include_max)
        return _none_or(allow_none, words)

    return Constraint(test, describe, fix)


def choice(names, allow_none=False, fix=None):
    """One of `names`: a collection, or a callable returning one (e.g. a registry's keys).

    A callable is read when the config is checked, so a registry that
    grows (a new back-end, pooling or loss) is accepted without changing
    the declaration. A near miss gets "Did you mean ...?".
    """

    def valid(config):
        return list(names() if callable(names) else names)

    def test(value, config):
        if value is None and allow_none:
            return True
        options = valid(config)
        # Strict: True is not the option 1, nor 1.0 the option 1.
        if any(type(value) is type(option) and value == option for option in options):
            return True
        return did_you_mean(value, [o for o in options if isinstance(o, str)]).strip() or False

    def describe(config):
        return _none_or(allow_none, "one of " + ", ".join(str(o) for o in valid(config)))

    return Constraint(test, describe, fix)


def list_of(item, min_length=0, unique=False, allow_none=False, noun="values", fix=None):
    """A list whose every entry satisfies the constraint `item`.

    Args:
        item: the `Constraint` of each entry.
        min_length: the fewest entries (1: non-empty).
        unique: whether an entry may appear only once.
        allow_none: whether `null` is valid too.
        noun: what the entries are, for the message (e.g. "back-end names").
        fix: optional advice.
    """

    def test(value, config):
        if value is None and allow_none:
            return True
        if not isinstance(value, list):
            return False
        if len(value) < min_length:
            return f"It has {len(value)} entries."
        for index, entry in enumerate(value):
            problem = item.problem(entry, config)
            if problem is not None:
                return f"Entry {index + 1} ({entry!r}) is not valid.{' ' + problem if problem else ''}"
        if unique:
            repeated = sorted({repr(e) for e in value if value.count(e) > 1})
            if repeated:
                return f"{', '.join(repeated)} appear(s) more than once."
        return True

    def describe(config):
        size = "a non-empty list" if min_length == 1 else (
            f"a list of at least {min_length}" if min_length > 1 else "a list"
        )
        words = f"{size} of {'distinct ' if unique else ''}{noun}, each {item.describe(config)}"
        return _none_or(allow_none, words)

    return Constraint(test, describe, fix)


def non_empty_string(allow_none=False, fix=None):
    """A string that is not empty (e.g. a folder name)."""
    return Constraint(
        lambda value, config: (value is None and allow_none) or (isinstance(value, str) and value.strip() != ""),
        _none_or(allow_none, "a non-empty string"),
        fix,
    )


def get_key(config, key):
    """The value of dotted `key` in nested `config`; KeyError when it has none."""
    value = config
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            raise KeyError(key)
        value = value[part]
    return value


def has_key(config, key):
    """Whether nested `config` has the dotted `key`."""
    try:
        get_key(config, key)
    except KeyError:
        return False
    return True


def _flow(value):
    """`value` as a one-line YAML value for a command line (`[a, b]`, `null`, `1.0e-3`)."""
    if isinstance(value, list):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _source_of(key, origins, source):
    parts = key.split(".")
    for end in range(len(parts), 0, -1):
        found = (origins or {}).get(".".join(parts[:end]))
        if found is not None:
            return found
    return source


def _default_fix(key, where, constraint, config, defaults):
    change = "Give another value" if where.startswith("override ") else "Change it there or override it"
    if isinstance(defaults, dict):
        defaults = [(defaults, "the default")]
    for mapping, label in defaults or ():
        if has_key(mapping, key):
            example = get_key(mapping, key)
            if constraint.problem(example, config) is None:
                return f"{change}, e.g. {shlex.quote(f'--{key}={_flow(example)}')} ({label})."
    return f"{change} with {shlex.quote(f'--{key}=VALUE')}."


def check_config(config, constraints, origins=None, defaults=None, source="config"):
    """Checks a resolved config against per-key constraints.

    Every violated constraint is reported, one line each:
    `"<source>: config key '<key>' must be <description>, got <value>. <why> <fix>"`.

    Args:
        config: the resolved config (nested dicts).
        constraints: mapping dotted key -> `Constraint`. Each key must exist
            in `config` (a misspelt key in a declaration is a bug).
        origins: optional mapping dotted key -> where its value came from
            (a file, `"override --key"`), as `load_config` records it.
        defaults: optional schema with the default values, for the fix's
            example; or a list of `(mapping, label)` pairs tried in turn
            (e.g. the config file's own value before the overrides, then
            the default).
        source: where values not in `origins` came from.

    Returns:
        `config`.

    Raises:
        ConfigError: one or more values break their constraint.
        KeyError: a constraint names a key the config does not have.
    """
    errors, failed = [], None
    for key, constraint in constraints.items():
        try:
            value = get_key(config, key)
        except KeyError:
            raise KeyError(
                f"A constraint is declared for config key {key!r}, which the config does not have."
            ) from None
        try:
            problem = constraint.problem(value, config)
            if problem is None:
                continue
            description = constraint.describe(config)
            where = _source_of(key, origins, source)
            fix = constraint.fix or _default_fix(key, where, constraint, config, defaults)
        except Exception as error:  # noqa: BLE001 - a rule on another key's (bad) value
            # A rule that reads other keys can fail on their bad values (a sample rate
            # of 0); those are reported by their own rules, this one waits for the fix.
            failed = failed or error
            continue
        errors.append(
            f"{where}: config key '{key}' must be {description}, got {value!r}."
            f"{' ' + problem if problem else ''} {fix}"
        )
    if errors:
        raise ConfigError("\n".join(errors))
    if failed is not None:
        raise failed
    return config
