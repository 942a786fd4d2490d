"""Devices: the one a user names, checked against what this machine has.

The hidden route, the manifold, the prior and the pipeline take ``device`` as a parameter
("cpu", "cuda", "cuda:1", "mps"); the dynamics compute on the CPU. A device this
machine lacks is refused up front with a :class:`~coreaffect.errors.CoreAffectError` that says
why, rather than by torch deep inside the first computation. Fits seed only the random
generators of the device they compute on (:func:`seeded`), and give the caller's back.

The networks (hidden route, manifold, prior) are built and compute in float32
(``NETWORK_DTYPE``) whatever torch's default dtype is, so that a seed gives the same fit under
either default; the dynamics compute in float64.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

from coreaffect.errors import CoreAffectError

__all__ = ["check_device", "resolve_device", "seeded", "torch_seed"]

NETWORK_DTYPE = torch.float32  # the networks' dtype, whatever torch.get_default_dtype() is


def torch_seed(seed: int) -> int:
    """``seed`` as torch's generators take it: the CPU's keeps only the low 32 bits of a seed,
    so that 0 and 2**32 would draw alike; a seed of 2**32 or more is hashed into 32 bits
    (numpy's ``SeedSequence``), a smaller one kept as it is."""
    seed = int(seed)
    return seed if seed < 2**32 else int(np.random.SeedSequence(seed).generate_state(1)[0])


def check_device(device: torch.device | str) -> torch.device:
    """The device named, if this machine has it; otherwise a CoreAffectError saying why.

    ``"cuda"`` and ``"cuda:N"`` need a CUDA device (N below their number), ``"mps"`` Apple's
    Metal backend; a name torch does not know is refused too. ``"cpu:N"`` is the CPU
    (``"cpu"``): torch has one CPU device, and files load onto it by that name only.
    """
    try:
        target = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise CoreAffectError(f"{device!r} is not a device torch knows ({err})") from None
    if target.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise CoreAffectError(f"device {device!r}: this machine has no CUDA device")
        if target.index is not None and target.index >= count:
            raise CoreAffectError(f"device {device!r}: this machine has {count} CUDA "
                                  f"device(s), numbered from 0")
    elif target.type == "cpu":
        target = torch.device("cpu")
    elif target.type == "mps" and not torch.backends.mps.is_available():
        raise CoreAffectError(f"device {device!r}: Metal (mps) is not available here")
    elif target.type == "meta":  # tensors without data: nothing could be computed or loaded
        raise CoreAffectError(f"device {device!r} holds no data; use cpu, cuda or mps")
    return target


def resolve_device(device: torch.device | str | None, home: torch.device) -> torch.device:
    """The device to compute on: ``home`` (where the model is) for ``None``, and ``"cuda"``
    without an index as the current CUDA device, so that it compares equal to a model there."""
    target = home if device is None else check_device(device)
    if target.type == "cuda" and target.index is None:
        target = torch.device("cuda", torch.cuda.current_device())
    return target


@contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Seed the global generators a block draws from, the CPU's and, on CUDA, that of the device
    it runs on, then restore the caller's state; no other generator is touched."""
    cuda = device.type == "cuda"
    index = (torch.cuda.current_device() if device.index is None else device.index) if cuda else 0
    with torch.random.fork_rng(devices=[index] if cuda else []):
        seed = torch_seed(seed)
        torch.default_generator.manual_seed(seed)  # torch.manual_seed would seed every GPU too
        if cuda:
            with torch.cuda.device(index):
                torch.cuda.manual_seed(seed)
        yield
