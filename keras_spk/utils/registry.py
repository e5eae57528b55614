"""Choosing components by name, for YAML configs."""

import difflib


def did_you_mean(name, names):
    """`" Did you mean 'x'?"` for the valid name closest to a misspelt `name`, or `""`.

    Args:
        name: the requested (unknown) name.
        names: the valid names.
    """
    if not isinstance(name, str):
        return ""
    matches = difflib.get_close_matches(name.lower(), [str(n).lower() for n in names], n=1, cutoff=0.6)
    return f" Did you mean {matches[0]!r}?" if matches else ""


def lookup(registry, name, kind):
    """`registry[name]`, or a ValueError naming the valid choices.

    Args:
        registry: dict of lower-case name -> component.
        name: the requested name (a component object is returned as is).
        kind: what the registry holds, for the message (e.g. "layer").
    """
    if not isinstance(name, str):
        return name
    key = name.lower()
    if key not in registry:
        raise ValueError(
            f"Unknown {kind} {name!r}.{did_you_mean(name, registry)} "
            f"Valid {kind}s: {', '.join(sorted(registry))}."
        )
    return registry[key]
