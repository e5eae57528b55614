"""Argument checks shared by the layers and losses.

Private module. Constructors and functional losses validate their Python
arguments with these, so every component reports a bad value the same way:
`ValueError("`name` must be ... Received: name=value")`. They run on the
Python side (in `__init__` or before any tensor work), never inside `call()`.
"""

import math
import numbers


def is_real(value):
    # bool is an int subclass; `True` as a sample rate or a margin is a bug, not a 1.
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_positive_int(name, value, allow_none=False):
    if value is None and allow_none:
        return None
    if not is_int(value) or value <= 0:
        raise ValueError(f"`{name}` must be a positive integer. Received: {name}={value!r}")
    return int(value)


def check_positive_real(name, value):
    """A finite number > 0, returned as given (an int stays an int)."""
    if not is_real(value) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"`{name}` must be a positive number. Received: {name}={value!r}")
    return value


def check_non_negative_real(name, value):
    if not is_real(value) or not math.isfinite(value) or value < 0:
        raise ValueError(f"`{name}` must be a non-negative number. Received: {name}={value!r}")
    return float(value)


def check_finite_real(name, value):
    if not is_real(value) or not math.isfinite(value):
        raise ValueError(f"`{name}` must be a finite number. Received: {name}={value!r}")
    return float(value)


def check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {choices}. Received: {name}={value!r}")
    return value
