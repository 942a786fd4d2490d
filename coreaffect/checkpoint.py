"""Run directories: weights as safetensors, everything else as JSON; nothing is ever unpickled.

A *run directory* holds what ``coreaffect train`` fits, one component per pair of files::

    RUN/
      hidden_route.safetensors   the network's weights
      hidden_route.json          its ModelConfig, the DataConfig of its inputs (crop size, margin,
                                 clip length, fps handling), the frame rate of its training
                                 videos, the package version, and the SHA-256 of the weights
                                 file
      manifold.{safetensors,json}, prior.{safetensors,json}, dynamics.{safetensors,json}
                                 the later stages, in the same form
      bands.json                 the band factors of the dynamics' stages and the lag
                                 (:mod:`coreaffect.calibration`)
      split.json, stages.json    which videos trained, validated and tested, and what each later
                                 stage was fitted on (:mod:`coreaffect.experiment`)
      training/                  the training log, and the state after the last epoch that
                                 ``--resume`` continues from (:mod:`coreaffect.training`; the
                                 optimizer's state is read back with ``weights_only=True``)
      crops/                     the face-crop cache, unless another folder was given
      .lock                      held by the training writing the run (:func:`exclusive`)

Each component is saved by :func:`save_state` and read by :func:`load_state`. Writes are atomic
(a temporary file in the same folder, flushed to disk, then renamed over the target), and a save
that is interrupted leaves a component that loads, old or new: the new weights are written in
full beside the old ones (``.NAME.safetensors.pending``), the JSON with their hash replaces the
old JSON (the moment the new state counts), and the weights are then renamed into place; a load
that finds the JSON newer than the weights finishes that rename. A weights file whose hash does
not match its JSON otherwise (truncated, tampered, or from another save) is an error, never
loaded. The weights file also keeps the config it was saved with (in its safetensors metadata),
so a JSON whose config was edited by hand (a layer setting that rebuilds other layers with the
same tensor shapes, say) is an error naming the first setting that differs, never loaded with
weights that were not trained for it. Files and folders are created with the permissions the
user's umask gives any other. The JSON's ``format`` number changes when the layout does; a run
directory written by an incompatible version is refused with a message saying so.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import secrets
import shutil
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PureWindowsPath
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes

from coreaffect.config import DataConfig, _is_real
from coreaffect.devices import check_device, seeded
from coreaffect.errors import CoreAffectError

__all__ = [
    "FORMAT",
    "atomic_write",
    "exclusive",
    "load_data_config",
    "load_frame_rate",
    "load_model",
    "load_state",
    "locate_detector",
    "remove_path",
    "save_model",
    "save_state",
    "saved_digest",
    "temporary_folder",
]

FORMAT = 1  # layout version of run directories; bump when a reader could misread an older one


def _fresh(parent: Path, prefix: str, suffix: str = "") -> Path:
    """A random name in ``parent`` for a temporary file or folder (not created here)."""
    return parent / f"{prefix}{secrets.token_hex(8)}{suffix}"


def remove_path(path: Path) -> None:
    """Delete a file, a link (not what it points to) or a folder with all it holds; nothing
    when ``path`` is not there."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def temporary_folder(parent: str | Path, prefix: str, suffix: str = "") -> Path:
    """Create a new, empty folder in ``parent`` with a random name, as the umask allows any
    folder (``tempfile.mkdtemp`` makes it private, which a folder renamed into place as a
    result would keep)."""
    parent = Path(parent)
    while True:
        path = _fresh(parent, prefix, suffix)
        try:
            os.mkdir(path, 0o777)
        except FileExistsError:  # pragma: no cover - a clash of 64 random bits
            continue
        return path


@contextmanager
def exclusive(folder: str | Path, what: str) -> Iterator[None]:
    """Hold ``folder/.lock`` for the block, so that a second process writing the folder is
    refused at once instead of mixing its files with the first's.

    The lock is the operating system's (``flock``; ``msvcrt.locking`` on Windows) on that file:
    a process that is killed lets go of it. The file is removed when the block ends, and the
    folder too if it was made here and the block left nothing in it.

    Args:
        folder: The folder.
        what: What holds it, for the error message ("training").

    Raises:
        CoreAffectError: Another process holds the folder.
    """
    folder = Path(folder)
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / ".lock"
    try:
        while True:
            handle = open(lock, "a+b")  # noqa: SIM115 - held until the block ends
            try:
                _lock(handle.fileno())
            except OSError:
                handle.close()
                raise CoreAffectError(f"{folder}: another {what} is writing this folder; wait "
                                      "for it to end, or choose another folder") from None
            if lock.exists() and os.path.samestat(os.fstat(handle.fileno()), lock.stat()):
                break
            handle.close()  # the holder removed this file as we opened it: take the new one
        try:
            yield
        finally:
            _unlock(handle, lock)
    finally:
        if created and not any(folder.iterdir()):
            folder.rmdir()


def _lock(descriptor: int) -> None:
    """Take an exclusive lock on an open file at once, or raise OSError; closing it lets go."""
    if os.name == "nt":  # pragma: no cover - Windows
        import msvcrt

        msvcrt.locking(descriptor, msvcrt.LK_NBLCK, 1)
    else:
        import fcntl

        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)


def _unlock(handle: Any, path: Path) -> None:
    """Remove a held lock file and let go of it."""
    if os.name == "nt":  # pragma: no cover - Windows removes no open file: let go first
        handle.close()
        with contextlib.suppress(OSError):  # another process has it open: it stays
            path.unlink()
        return
    path.unlink()  # while held: whoever opens the path next makes a new file
    handle.close()


def atomic_write(path: str | Path, data: bytes | str) -> None:
    """Write a file so that readers see the old content or the new, never a part of it.

    A symbolic link is written through (its target gets the new content, atomically, and the
    link stays); a path that exists and is not a regular file (a named pipe, ``/dev/stdout``) is
    written to directly, as there is nothing to replace. A file replaced keeps its permissions.
    """
    path = Path(path)
    raw = data.encode() if isinstance(data, str) else data
    if path.exists() and not path.is_file():  # (through any link) a pipe, a device, a folder
        with path.open("wb") as out:
            out.write(raw)
        return
    if path.is_symlink():
        path = path.resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_abandoned(path.parent, re.escape(f".{path.name}.") + r"[0-9a-f]{16}")
    tmp = _fresh(path.parent, f".{path.name}.")
    try:
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "wb") as out:
            out.write(raw)
            out.flush()
            os.fsync(out.fileno())
        if path.is_file():  # replaced: as its owner had it (a read-only file stays read-only)
            os.chmod(tmp, stat.S_IMODE(path.stat().st_mode))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _sync_folder(path.parent)


# a temporary file or folder untouched for longer than this was left by a writer that was
# killed: a file is written in milliseconds, and a writer at work on a folder adds to it often
STALE_SECONDS = 3600.0


def remove_abandoned(folder: Path, pattern: str) -> list[Path]:
    """Remove the temporaries that writers killed mid-write left in ``folder``: the files and
    folders whose names match ``pattern`` (a regular expression of the whole name) in which
    nothing was written for :data:`STALE_SECONDS`.

    Each is as large as what was being written (gigabytes for a video's face crops), and
    nothing else would ever remove it. A folder's age is that of the newest of itself and its
    entries. Links are left alone, as are entries removed or not ours to remove meanwhile, and
    a folder that cannot be listed.

    Returns:
        The paths removed.
    """
    name = re.compile(pattern)
    now = time.time()
    try:
        entries = [e for e in os.scandir(folder) if name.fullmatch(e.name)]
    except OSError:
        return []
    removed = []
    for entry in entries:
        with contextlib.suppress(OSError):  # gone meanwhile, or not ours to remove
            if entry.is_file(follow_symlinks=False):
                if now - entry.stat(follow_symlinks=False).st_mtime > STALE_SECONDS:
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
            elif entry.is_dir(follow_symlinks=False):
                with os.scandir(entry.path) as inside:
                    newest = max([entry.stat(follow_symlinks=False).st_mtime,
                                  *(e.stat(follow_symlinks=False).st_mtime for e in inside)])
                if now - newest > STALE_SECONDS:
                    shutil.rmtree(entry.path)
                    removed.append(Path(entry.path))
    return removed


def _sync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (its entry survives a power cut); where a folder
    cannot be opened or synced (Windows, some file systems), the rename stands as it is."""
    with contextlib.suppress(OSError, AttributeError):
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def saved_digest(directory: str | Path, name: str) -> str | None:
    """The SHA-256 of the weights that ``name.json`` records (written before the weights
    themselves), which tells one saved component from another; ``None`` without one."""
    try:
        return json.loads((Path(directory) / f"{name}.json").read_text())["weights_sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def save_state(directory: str | Path, name: str, tensors: dict[str, torch.Tensor],
               config: dict[str, Any]) -> None:
    """Save one component: ``name.safetensors`` (tensors) and ``name.json`` (config and hash).

    Args:
        directory: The run directory (created if missing).
        name: Component name, e.g. ``"hidden_route"``.
        tensors: Named tensors (moved to the CPU and made contiguous).
        config: JSON-serialisable settings needed to rebuild the component.
    """
    from coreaffect import __version__

    config = _plain(config)  # an estimator's numpy-typed settings (np.int64(5)) too
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    weights, pending = directory / f"{name}.safetensors", _pending(directory, name)
    cpu = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    raw = safetensors_bytes(cpu, metadata={"format": str(FORMAT),  # written as any file is
                                           "config": _canonical(config)})
    digest = hashlib.sha256(raw).hexdigest()
    atomic_write(pending, raw)
    meta = {"format": FORMAT, "coreaffect": __version__, "component": name,
            "weights_sha256": digest, "config": config}
    atomic_write(directory / f"{name}.json", json.dumps(meta, indent=2, sort_keys=True) + "\n")
    os.replace(pending, weights)  # interrupted before this, load_state finishes it


def _plain(value: Any) -> Any:
    """``value`` with numpy's and torch's numbers as Python's, through nested dicts, lists and
    tuples: what JSON takes."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, np.generic) or (isinstance(value, torch.Tensor) and value.ndim == 0):
        return value.item()
    return value


def _canonical(config: Any) -> str:
    """``config`` as one JSON text, the same for equal configs."""
    return json.dumps(config, sort_keys=True, separators=(",", ":"))


def _first_difference(saved: Any, given: Any, where: str = "config") -> str:
    """Where ``given`` first differs from ``saved`` (both parsed JSON), and how."""
    if isinstance(saved, dict) and isinstance(given, dict):
        for key in sorted(saved.keys() | given.keys()):
            if key not in given:
                return f"{where}.{key} was removed (saved: {saved[key]!r})"
            if key not in saved:
                return f"{where}.{key} was added ({given[key]!r})"
            if _canonical(saved[key]) != _canonical(given[key]):
                return _first_difference(saved[key], given[key], f"{where}.{key}")
    return f"{where} is {given!r}, saved as {saved!r}"


def _check_config(weights: Path, meta_path: Path, config: dict[str, Any]) -> None:
    """Refuse a JSON whose config is not the one ``weights`` was saved with (files saved
    before the weights kept their config are not checked)."""
    try:
        with safe_open(weights, framework="pt") as handle:
            saved = (handle.metadata() or {}).get("config")
    except (SafetensorError, OSError) as err:
        raise CoreAffectError(f"{weights}: not a readable safetensors file ({err})") from None
    if saved is not None and saved != _canonical(config):
        difference = _first_difference(json.loads(saved), config)
        raise CoreAffectError(f"{meta_path}: its config was edited after the weights were "
                              f"saved ({difference}); the weights were not trained for it. "
                              "Undo the edit, or train again with the new setting")


def _pending(directory: Path, name: str) -> Path:
    """Where :func:`save_state` puts new weights until their JSON is in place."""
    return directory / f".{name}.safetensors.pending"


def load_state(directory: str | Path, name: str, device: str | torch.device = "cpu"
               ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Load one component saved by :func:`save_state`.

    Returns:
        ``(tensors, config)``.

    Raises:
        CoreAffectError: The files are missing, unreadable, inconsistent with each other, or from
            an incompatible format.
    """
    device = check_device(device)
    directory = Path(directory)
    meta_path, weights = directory / f"{name}.json", directory / f"{name}.safetensors"
    if not directory.is_dir():
        raise CoreAffectError(f"{directory}: " + ("a file, not a run directory" if
                                                  directory.exists() else "no such run directory"))
    if not meta_path.is_file():
        raise CoreAffectError(f"{meta_path}: missing; is {directory} a run directory?")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CoreAffectError(f"{meta_path}: unreadable ({err})") from None
    if not isinstance(meta, dict) or "format" not in meta:
        raise CoreAffectError(f"{meta_path}: not a coreaffect component description")
    if isinstance(meta["format"], bool) or not isinstance(meta["format"], int):
        raise CoreAffectError(f"{meta_path}: 'format' must be an integer, got "
                              f"{meta['format']!r}")
    if meta["format"] != FORMAT:
        raise CoreAffectError(
            f"{meta_path}: written in run-directory format {meta['format']} by coreaffect "
            f"{meta.get('coreaffect', '?')}; this version reads format {FORMAT}. Retrain, or use "
            "the coreaffect version that wrote it.")
    if not isinstance(meta.get("config"), dict):
        raise CoreAffectError(f"{meta_path}: not a coreaffect component description (no "
                              "'config')")
    pending = _pending(directory, name)
    if pending.is_file() and _sha256(pending) == meta.get("weights_sha256"):
        try:  # a save interrupted after writing its JSON: finish it
            os.replace(pending, weights)
        except OSError:  # a read-only run (read the new weights where they are), or another
            if pending.is_file():  # loader finished it first (they are in place)
                weights = pending
    if not weights.is_file():
        raise CoreAffectError(f"{weights}: missing (its description {meta_path} exists)")
    if _sha256(weights) != meta.get("weights_sha256"):
        raise CoreAffectError(f"{weights}: content does not match {meta_path.name} "
                              "(truncated, modified, or from another save)")
    _check_config(weights, meta_path, meta["config"])
    try:
        tensors = load_file(weights, device=str(device))
    except (SafetensorError, OSError) as err:
        raise CoreAffectError(f"{weights}: not a readable safetensors file ({err})") from None
    return tensors, meta["config"]


def save_model(model: torch.nn.Module, directory: str | Path,
               data_config: DataConfig | None = None, name: str = "hidden_route", *,
               frame_rate: float | None = None) -> None:
    """Save a :class:`~coreaffect.hidden_route.HiddenRouteNet` with its preprocessing and, when
    known, the frame rate (Hz) of the videos it was trained on (:func:`load_frame_rate`)."""
    if frame_rate is not None and not _positive_number(frame_rate):
        raise CoreAffectError(f"frame_rate must be a number of frames per second > 0, or None, "
                              f"got {frame_rate!r}")
    config = {"model": model.config.to_dict(),
              "data": (data_config or DataConfig()).to_dict(),
              **({} if frame_rate is None else {"frame_rate": float(frame_rate)})}
    save_state(directory, name, model.state_dict(), config)


def load_model(directory: str | Path, device: str | torch.device = "cpu",
               name: str = "hidden_route") -> torch.nn.Module:
    """Rebuild the saved network in eval mode on ``device``; never unpickles."""
    from coreaffect.hidden_route import HiddenRouteNet, ModelConfig

    tensors, config = load_state(directory, name, device)
    try:
        with seeded(0, torch.device("cpu")):  # the layers' initial draws are overwritten
            model = HiddenRouteNet(ModelConfig.from_dict(config["model"]))
        model.load_state_dict(tensors)
    except (KeyError, TypeError, ValueError, RuntimeError, CoreAffectError) as err:
        raise CoreAffectError(f"{Path(directory) / name}.json: does not describe the saved "
                              f"weights ({err})") from None
    return model.to(device).eval()


def _positive_number(value: Any) -> bool:
    """A finite real number > 0, not a bool."""
    return _is_real(value) and value > 0


def load_frame_rate(directory: str | Path, name: str = "hidden_route") -> float | None:
    """The frame rate (Hz) of the videos the saved network was trained on; ``None`` for a
    network saved without one (by :func:`save_model` not given it, or before runs kept it)."""
    meta_path = Path(directory) / f"{name}.json"
    try:
        rate = json.loads(meta_path.read_text())["config"].get("frame_rate")
    except (OSError, KeyError, TypeError, AttributeError, UnicodeDecodeError,
            json.JSONDecodeError) as err:
        raise CoreAffectError(f"{meta_path}: no readable configuration ({err})") from None
    if rate is None:
        return None
    if not _positive_number(rate):
        raise CoreAffectError(f"{meta_path}: frame_rate must be a number of frames per second "
                              f"> 0, got {rate!r}")
    return float(rate)


def locate_detector(config: DataConfig, directory: str | Path) -> DataConfig:
    """``config`` with its YuNet model file found in the run directory ``directory``, by its
    file name, when it is not at the path the run keeps (a run copied from another machine,
    with the model file copied into it); otherwise ``config`` as it is."""
    faces = config.faces
    if faces.detector != "yunet" or Path(faces.yunet_model).expanduser().is_file():
        return config
    copy = Path(directory).resolve() / PureWindowsPath(faces.yunet_model).name  # / or \\
    if not copy.is_file():
        return config  # the detector names the path the run keeps when it is built
    return dataclasses.replace(config, faces=dataclasses.replace(faces, yunet_model=str(copy)))


def load_data_config(directory: str | Path, name: str = "hidden_route") -> DataConfig:
    """The DataConfig the saved network was trained with (crop size, margin, clip length...)."""
    meta_path = Path(directory) / f"{name}.json"
    try:
        meta = json.loads(meta_path.read_text())
        return DataConfig.from_dict(meta["config"]["data"], source=str(meta_path))
    except (OSError, KeyError, TypeError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CoreAffectError(f"{meta_path}: no readable data configuration ({err})") from None
