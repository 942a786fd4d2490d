"""The public surface: sorted exports, a docstring on every public name, a quiet import."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import subprocess
import sys

import coreaffect

MODULES = sorted(m.name for m in pkgutil.iter_modules(coreaffect.__path__)
                 if not m.name.startswith("_"))


def test_all_is_sorted_and_importable():
    assert coreaffect.__all__ == sorted(coreaffect.__all__)
    for name in coreaffect.__all__:
        assert getattr(coreaffect, name) is not None


def _public_members(module):
    names = getattr(module, "__all__", None)
    assert names is not None, f"{module.__name__} has no __all__"
    for name in names:
        obj = getattr(module, name)
        yield name, obj
        if inspect.isclass(obj):
            for attr, member in vars(obj).items():
                if attr.startswith("_") or not callable(member):
                    continue
                if inspect.isfunction(member) or isinstance(member, (classmethod, staticmethod)):
                    yield f"{name}.{attr}", member


def test_every_public_name_has_a_docstring():
    missing = []
    for module_name in MODULES:
        module = importlib.import_module(f"coreaffect.{module_name}")
        assert module.__doc__, f"coreaffect.{module_name} has no module docstring"
        for name, obj in _public_members(module):
            target = obj.__func__ if isinstance(obj, (classmethod, staticmethod)) else obj
            if not inspect.getdoc(target):
                missing.append(f"coreaffect.{module_name}.{name}")
    assert not missing, f"public names without a docstring: {missing}"


def test_import_has_no_side_effects():
    code = (
        "import logging, torch, numpy as np\n"
        "state = torch.random.get_rng_state().clone(); np_state = np.random.get_state()[1].copy()\n"
        "handlers = list(logging.getLogger().handlers)\n"
        "import coreaffect, coreaffect.cli\n"
        "assert torch.equal(state, torch.random.get_rng_state())\n"
        "assert (np_state == np.random.get_state()[1]).all()\n"
        "assert logging.getLogger().handlers == handlers\n"
        "import sys; assert 'matplotlib' not in sys.modules, 'matplotlib imported at import'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
