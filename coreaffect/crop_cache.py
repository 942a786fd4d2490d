"""The face-crop cache: each recording's face crops, on disk.

:class:`CropCache` stores the face crops of each recording on disk, so that training epochs do not
decode and detect faces again. An entry is keyed by the SHA-256 of the video's bytes (every frame
file for a folder) and of the face-crop settings; it holds the crops as a raw ``uint8`` file that
is memory-mapped when read (memory stays bounded for long videos), and small arrays in a ``.npz``
read without unpickling. An entry is written to a temporary folder and renamed into place last, so
an interrupted write leaves no entry; an entry whose files are missing, truncated or inconsistent
is deleted and rebuilt, never trusted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from coreaffect.checkpoint import remove_abandoned, temporary_folder
from coreaffect.config import FaceConfig
from coreaffect.errors import CoreAffectError
from coreaffect.faces import FaceCropper, FaceCrops, spool_crops
from coreaffect.video import is_frame_image

if TYPE_CHECKING:
    from coreaffect.corpus import Recording

__all__ = ["CropCache"]

logger = logging.getLogger(__name__)

_CACHE_VERSION = 3  # 2: frames missing from a folder have rows; 3: and from a file (dropped,
# undecodable)


def _hash_files(paths: Iterable[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode())
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _video_hash(video: Path) -> str:
    if video.is_dir():
        return _hash_files(sorted(p for p in video.iterdir()
                                  if p.is_file() and is_frame_image(p)))
    return _hash_files([video])


class CropCache:
    """Face crops of recordings on disk, keyed by video content and crop settings.

    Args:
        directory: Where entries live; created if missing.
        faces: The crop settings the entries are made with.
        chunk_size: Frames decoded per chunk when an entry is built.
    """

    def __init__(self, directory: str | Path, faces: FaceConfig = FaceConfig(),
                 chunk_size: int = 64) -> None:
        self.directory = Path(directory)
        self.faces = faces
        self.chunk_size = chunk_size

    def key(self, recording: Recording) -> str:
        """SHA-256 of the video's content, its frame numbering and the crop settings (with the
        content of a YuNet model file instead of its path: another model at the same path is
        another key, the same model moved with its run the same key)."""
        faces = recording.faces(self.faces)
        hashed = faces.detector == "yunet" and Path(faces.yunet_model).is_file()
        described = asdict(faces)
        if hashed:  # the model by its content (below), not where it lies
            described["yunet_model"] = None
        settings = json.dumps({"faces": described, "fps": recording.fps,
                               "first_index": recording.first_index,
                               "version": _CACHE_VERSION}, sort_keys=True)
        digest = hashlib.sha256(settings.encode())
        digest.update(_video_hash(recording.video).encode())
        if hashed:
            digest.update(_hash_files([Path(faces.yunet_model)]).encode())
        return digest.hexdigest()

    def _entry(self, recording: Recording, key: str) -> Path:
        return self.directory / f"{recording.id}-{key[:16]}"

    def get(self, recording: Recording) -> FaceCrops:
        """The recording's crops: read from a valid entry, else built and stored."""
        if self.directory.exists() and not self.directory.is_dir():
            raise CoreAffectError(f"{self.directory}: a file, but a crop cache is a folder")
        key = self.key(recording)
        entry = self._entry(recording, key)
        if entry.exists():
            crops = self._read(entry, key)
            if crops is not None:
                return crops
            logger.warning("cache entry %s is stale or corrupt; rebuilding it", entry)
            shutil.rmtree(entry, ignore_errors=True)
        self._write(recording, entry, key)
        crops = self._read(entry, key)
        if crops is None:  # pragma: no cover - only on a disk that loses what was just written
            raise CoreAffectError(f"{entry}: cache entry unreadable right after writing it")
        return crops

    def _write(self, recording: Recording, entry: Path, key: str) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            for path in remove_abandoned(  # a killed writer's `.<entry>-<hex>` folders
                    self.directory, re.escape(f".{recording.id}-") + r"[0-9a-f]{16}-[0-9a-f]{16}"):
                logger.info("removed %s, left by a writer of the crop cache that was killed",
                            path)
            tmp = temporary_folder(self.directory, f".{entry.name}-")
        except OSError as err:
            raise self._unwritable(recording, err) from None
        try:
            cropper = FaceCropper(recording.faces(self.faces))
            meta = spool_crops(cropper.crop_video(recording.open_video(self.chunk_size)),
                               tmp / "crops.u8")
            frames = len(meta.times)
            if frames == 0:
                raise CoreAffectError(f"{recording.video}: no frame could be decoded")
            np.savez(tmp / "meta.npz", boxes=meta.boxes, face_found=meta.face_found,
                     times=meta.times, indices=meta.indices)
            size = self.faces.crop_size
            (tmp / "entry.json").write_text(json.dumps(
                {"key": key, "frames": frames, "crop_size": size, "video": str(recording.video),
                 "version": _CACHE_VERSION}))
            try:
                os.replace(tmp, entry)
            except OSError as err:  # another process may have put the entry in place first
                if self._read(entry, key) is None:
                    raise CoreAffectError(f"{entry}: cannot put the new cache entry in place "
                                          f"({err.strerror or err})") from None
                logger.info("%s: built by another process meanwhile; using that one", entry)
        except CoreAffectError:  # the video's own (a VideoError is an OSError too)
            raise
        except OSError as err:  # a full disk, a file too large, no permission...
            raise self._unwritable(recording, err) from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        logger.info("cached %d face crops of %s in %s", frames, recording.id, entry)
        self._drop_outdated(recording, entry)

    def _unwritable(self, recording: Recording, err: OSError) -> CoreAffectError:
        return CoreAffectError(f"{self.directory}: cannot write the face crops of "
                               f"{recording.id} into this crop cache ({err.strerror or err}); "
                               "free some space there, or give the cache another folder "
                               "(--cache)")

    def _drop_outdated(self, recording: Recording, kept: Path) -> None:
        """Remove the recording's entries made by an earlier cache version: none of them can
        be read again. Entries of the current version with other crop settings stay."""
        name = re.compile(re.escape(recording.id) + r"-[0-9a-f]{16}")
        try:
            entries = list(self.directory.iterdir())
        except OSError:  # a folder that may be written but not listed: nothing to see
            return
        for entry in entries:
            if entry == kept or not name.fullmatch(entry.name) or not entry.is_dir():
                continue
            try:
                version = json.loads((entry / "entry.json").read_text()).get("version", 1)
            except (OSError, ValueError, AttributeError):
                continue  # being written by another process, or not ours: leave it
            if version < _CACHE_VERSION:
                shutil.rmtree(entry, ignore_errors=True)
                logger.info("removed %s, made by an earlier version of the crop cache", entry)

    @staticmethod
    def _read(entry: Path, key: str) -> FaceCrops | None:
        """The entry's crops, or ``None`` when anything about it is off."""
        try:
            info = json.loads((entry / "entry.json").read_text())
            frames, size = int(info["frames"]), int(info["crop_size"])
            raw = entry / "crops.u8"
            if info["key"] != key or raw.stat().st_size != frames * size * size * 3:
                return None
            with np.load(entry / "meta.npz", allow_pickle=False) as meta:
                arrays = {name: meta[name] for name in ("boxes", "face_found", "times", "indices")}
            if any(len(a) != frames for a in arrays.values()):
                return None
            crops = np.memmap(raw, dtype=np.uint8, mode="r", shape=(frames, size, size, 3))
        except Exception:  # a cache is rebuilt whatever is wrong with an entry: a garbled
            return None  # meta.npz alone raises EOFError, BadZipFile, NotImplementedError...
        return FaceCrops(crops=crops, **arrays)
