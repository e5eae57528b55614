"""Choosing components by name, for YAML configs."""


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
        raise ValueError(f"Unknown {kind} {name!r}. Valid {kind}s: {', '.join(sorted(registry))}.")
    return registry[key]
