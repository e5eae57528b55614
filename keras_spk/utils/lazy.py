"""Names of a package imported from its modules on first use (PEP 562).

A package `__init__` lists where each public name lives; the module holding
it is imported only when the name is first read, so importing the package
stays cheap (e.g. `keras_spk.data` without TensorFlow, `keras_spk.scoring`
without scikit-learn, `keras_spk.metrics` without Keras).

Example, in `mypackage/__init__.py`:

```python
from keras_spk.utils.lazy import lazy_module_exports

__getattr__, __dir__, __all__ = lazy_module_exports(
    __name__,
    {"audio": ("read_audio", "AudioError"), "sampler": ("PKSampler",)},
)
```
"""

import importlib
import sys

__all__ = ["lazy_module_exports"]


def _check_name(kind, name):
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"{kind} names must be Python identifiers. Received: {name!r}")


def lazy_module_exports(module_name, exports, submodules=(), package=None):
    """The `__getattr__`, `__dir__` and `__all__` of a package with lazily imported names.

    Each name is looked up in its module at every access (not cached in the
    package), so the package always gives what the module holds now; the
    import itself happens once, as for any module.

    Args:
        module_name: the `__name__` of the module (usually a package) that
            exports the names, e.g. `"keras_spk.data"`.
        exports: dict submodule name (relative to `package`, e.g. `"audio"`,
            or dotted, e.g. `"io.wav"`) -> iterable of the names it exports
            through `module_name`.
        submodules: names of submodules that are themselves attributes of the
            package (`package.<name>` imports `package.<name>` on first use).
        package: the package the submodule names are relative to; by default
            `module_name` itself. A plain module gives its own package, to
            export names of its sibling modules.

    Returns:
        `(__getattr__, __dir__, __all__)`: the module-level functions of
        PEP 562 and the sorted list of the exported names and submodules.

    Raises:
        ValueError: a name exported by two submodules, or a submodule listed
            both as a module and as an exported name.
    """
    where = {}
    for submodule, names in exports.items():
        if isinstance(names, str):
            raise ValueError(
                f"The names exported by {module_name}.{submodule} must be a tuple of names, "
                f"not one string. Received: {names!r}"
            )
        for name in names:
            _check_name("Exported", name)
            if name in where:
                raise ValueError(
                    f"{module_name}: {name!r} is exported by both {where[name]!r} and "
                    f"{submodule!r}; export each name from one module."
                )
            where[name] = submodule
    package = module_name if package is None else package
    submodules = tuple(submodules)
    for name in submodules:
        _check_name("Submodule", name)
        if name in where:
            raise ValueError(
                f"{module_name}: {name!r} is listed as a submodule and as a name exported by "
                f"{where[name]!r}; use one."
            )

    def __getattr__(name):
        if name in where:
            return getattr(importlib.import_module(f"{package}.{where[name]}"), name)
        if name in submodules:
            return importlib.import_module(f"{package}.{name}")
        raise AttributeError(f"module {module_name!r} has no attribute {name!r}")

    def __dir__():
        return sorted(set(vars(sys.modules[module_name])) | set(where) | set(submodules))

    return __getattr__, __dir__, sorted([*where, *submodules])
