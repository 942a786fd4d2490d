"""Pyro modules that keep their parameters to themselves.

A :class:`~pyro.nn.PyroModule` reads and writes its parameters through Pyro's global parameter
store unless ``pyro.settings`` has ``module_local_params`` switched on. coreaffect's estimators
switch it on only for the duration of their own calls (:func:`local_params`), and their modules
derive from :class:`LocalPyroModule`, whose calls do the same, so that calling a fitted
estimator's module directly (``manifold.decoder_(z)``) leaves the store as it was, and fitting
one estimator can never change another. (Reading a parameter outside a call touches no store.)
The promise is for calls of the :class:`LocalPyroModule` itself: a plain ``PyroModule`` inside
it (a ``PyroModule[nn.Linear]`` layer) called on its own, outside its parent's call, uses the
global store as any ``PyroModule`` does.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pyro
from pyro.nn import PyroModule
from pyro.poutine.runtime import am_i_wrapped

__all__ = ["LocalPyroModule", "local_params"]


@contextmanager
def local_params() -> Iterator[None]:
    """Run PyroModules with module-local parameters: Pyro's global param store is not used."""
    with pyro.settings.context(module_local_params=True):
        yield


class _LocalMeta(type(PyroModule)):  # type: ignore[misc]
    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        # a PyroModule built outside the setting has no module-local parameter state
        with local_params():
            return super().__call__(*args, **kwargs)


class LocalPyroModule(PyroModule, metaclass=_LocalMeta):
    """A PyroModule built and called with module-local parameters: it never uses Pyro's global
    parameter store, wherever it is built or called from, unless it is called inside a Pyro
    program of the caller's (a model or guide run by ``pyro.infer.SVI``, say), which then
    decides: there its parameters take part in the program, as any PyroModule's do."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if am_i_wrapped():
            return super().__call__(*args, **kwargs)
        with local_params():
            return super().__call__(*args, **kwargs)
