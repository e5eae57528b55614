"""Names imported on first use (keras_spk.utils.lazy)."""

import subprocess
import sys
import types

import pytest

from keras_spk.utils.lazy import lazy_module_exports


@pytest.fixture
def package(monkeypatch):
    """A package `fakepkg` with a submodule `fakepkg.one` (registered in sys.modules)."""
    pkg = types.ModuleType("fakepkg")
    pkg.__path__ = []
    one = types.ModuleType("fakepkg.one")
    one.alpha, one.beta = 1, 2
    monkeypatch.setitem(sys.modules, "fakepkg", pkg)
    monkeypatch.setitem(sys.modules, "fakepkg.one", one)
    return pkg, one


def test_names_resolve_to_their_module_at_each_access(package):
    pkg, one = package
    getattr_, dir_, all_ = lazy_module_exports("fakepkg", {"one": ("beta", "alpha")}, submodules=("one",))
    pkg.__getattr__, pkg.__dir__ = getattr_, dir_
    assert all_ == ["alpha", "beta", "one"]
    assert (pkg.alpha, pkg.beta, pkg.one) == (1, 2, one)
    one.alpha = 10  # not cached: the package gives what the module holds now
    assert pkg.alpha == 10
    assert {"alpha", "beta", "one", "__getattr__"} <= set(dir(pkg))
    with pytest.raises(AttributeError, match="module 'fakepkg' has no attribute 'gamma'"):
        pkg.gamma


def test_sibling_modules_of_a_plain_module(package):
    _, one = package
    getattr_, _, all_ = lazy_module_exports("fakepkg.two", {"one": ("alpha",)}, package="fakepkg")
    assert all_ == ["alpha"] and getattr_("alpha") == 1
    with pytest.raises(AttributeError, match="module 'fakepkg.two' has no attribute 'beta'"):
        getattr_("beta")


def test_bad_export_tables_are_refused():
    with pytest.raises(ValueError, match="'x' is exported by both 'a' and 'b'"):
        lazy_module_exports("p", {"a": ("x",), "b": ("y", "x")})
    with pytest.raises(ValueError, match="tuple of names, not one string"):
        lazy_module_exports("p", {"a": "x"})
    with pytest.raises(ValueError, match="listed as a submodule and as a name"):
        lazy_module_exports("p", {"a": ("b",)}, submodules=("b",))
    with pytest.raises(ValueError, match="identifiers"):
        lazy_module_exports("p", {"a": ("not a name",)})


def test_packages_import_nothing_heavy_until_a_name_is_read():
    code = (
        "import sys, keras_spk, keras_spk.data, keras_spk.metrics, keras_spk.scoring\n"
        "heavy = ('keras', 'tensorflow', 'torch', 'sklearn')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
        "from keras_spk.scoring import format_table, BACKENDS\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
        "keras_spk.scoring.PLDA\n"
        "print('sklearn' in sys.modules, keras_spk.data.Trials.__module__, keras_spk.scoring.pairs.__name__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["[]", "[]", "True keras_spk.data.trials keras_spk.scoring.pairs"]


def test_package_exports_match_their_modules():
    import importlib
    import importlib.util

    import keras_spk

    for name in keras_spk.__all__[1:]:  # subpackages, found without importing them
        assert importlib.util.find_spec(f"keras_spk.{name}") is not None, name
    for name in ("keras_spk.data", "keras_spk.metrics", "keras_spk.scoring", "keras_spk.scoring.backends"):
        module = importlib.import_module(name)
        for attribute in module.__all__:
            assert getattr(module, attribute) is not None, (name, attribute)
