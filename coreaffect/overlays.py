"""Overlays: heat maps blended on video frames, written as images and animations.

:func:`overlay_heatmaps` colours maps in [0, 1] with one of OpenCV's colour maps and blends them
on RGB frames; :func:`write_animation` writes frames as an animated GIF (Pillow) or a video
(OpenCV). :func:`coreaffect.saliency.explain_video` uses both to show what the hidden route looks
at. Only OpenCV and Pillow are used, never matplotlib
(:func:`coreaffect.plots.plot_saliency_grid` draws the figure).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from torch import Tensor

from coreaffect.errors import CoreAffectError

__all__ = ["ANIMATIONS", "overlay_heatmaps", "write_animation"]

ANIMATIONS = ("gif", "mp4", "avi")
"""File formats of :func:`write_animation`, by suffix."""

_COLORMAPS = {"jet": cv2.COLORMAP_JET, "turbo": cv2.COLORMAP_TURBO,
              "inferno": cv2.COLORMAP_INFERNO, "viridis": cv2.COLORMAP_VIRIDIS}


def overlay_heatmaps(frames: np.ndarray, maps: np.ndarray | Tensor, *, alpha: float = 0.5,
                     colormap: str = "jet") -> np.ndarray:
    """Blend heat maps on frames.

    Args:
        frames: (T, H, W, 3) uint8 RGB frames (or one (H, W, 3) frame).
        maps: (T, h, w) maps in [0, 1] (or one (h, w) map); resized to (H, W) when they differ.
        alpha: Weight of the heat map, ``out = (1 - alpha) frame + alpha colour(map)``.
        colormap: ``"jet"`` (the usual Grad-CAM look), ``"turbo"``, ``"inferno"`` or
            ``"viridis"``.

    Returns:
        Blended frames, uint8 RGB, the shape of ``frames``.
    """
    if colormap not in _COLORMAPS:
        raise CoreAffectError(f"unknown colormap {colormap!r}; choose from {sorted(_COLORMAPS)}")
    if not 0 <= alpha <= 1:
        raise CoreAffectError(f"alpha must be in [0, 1], got {alpha}")
    frames = np.asarray(frames)
    if frames.dtype != np.uint8:  # floats in [0, 1] would be cast to black
        raise CoreAffectError(f"frames must be uint8 RGB (0 to 255), got {frames.dtype}")
    single = frames.ndim == 3
    frames = frames[None] if single else frames  # (T, H, W, 3)
    maps = (maps.detach().float().cpu().numpy() if isinstance(maps, Tensor)
            else np.asarray(maps, dtype=np.float64))
    maps = maps[None] if maps.ndim == 2 else maps  # (T, h, w)
    if frames.ndim != 4 or frames.shape[-1] != 3 or len(maps) != len(frames):
        raise CoreAffectError(f"frames (T, H, W, 3) {frames.shape} and maps (T, h, w) "
                              f"{maps.shape} do not match")
    height, width = frames.shape[1:3]
    out = np.empty(frames.shape, dtype=np.uint8)
    for t, (frame, heat) in enumerate(zip(frames, maps, strict=True)):
        if heat.shape != (height, width):
            heat = cv2.resize(heat.astype(np.float32), (width, height),
                              interpolation=cv2.INTER_LINEAR)
        grey = np.clip(np.rint(heat * 255), 0, 255).astype(np.uint8)
        colour = cv2.cvtColor(cv2.applyColorMap(grey, _COLORMAPS[colormap]), cv2.COLOR_BGR2RGB)
        out[t] = cv2.addWeighted(np.ascontiguousarray(frame, dtype=np.uint8), 1 - alpha, colour,
                                 alpha, 0.0)
    return out[0] if single else out


def _label(image: np.ndarray, lines: Sequence[str]) -> np.ndarray:
    """Write lines of text at the top left of an RGB image, white on a dark outline, in place."""
    scale = max(0.3, image.shape[0] / 400)  # by height: a row of tiles reads like one tile
    thickness = max(1, round(scale * 1.5))
    step = int(22 * scale) + 2
    for i, text in enumerate(lines):
        origin = (3, step * (i + 1))
        cv2.putText(image, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0),
                    thickness + 2, cv2.LINE_AA)
        cv2.putText(image, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255),
                    thickness, cv2.LINE_AA)
    return image


def write_animation(frames: np.ndarray, path: str | Path, fps: float = 25.0) -> Path:
    """Write frames as an animated GIF (with Pillow) or a video (``.mp4``/``.avi``, OpenCV).

    A GIF holds 256 colours per frame and compresses poorly: measured ~26 kB per 384 x 128 frame
    of overlays, so a minute at 25 fps is ~40 MB; MP4 is far smaller.

    Args:
        frames: (T, H, W, 3) uint8 RGB.
        path: Output file; its suffix picks the format.
        fps: Frames per second (GIF timing is in hundredths of a second, so it is rounded).

    Returns:
        ``path``.

    Raises:
        CoreAffectError: An unsupported suffix, Pillow missing for a GIF, or a codec OpenCV
            cannot write.
    """
    path = Path(path)
    frames = np.asarray(frames, dtype=np.uint8)
    if frames.ndim != 4 or frames.shape[-1] != 3 or not len(frames):
        raise CoreAffectError(f"frames must be (T, H, W, 3) with T >= 1, got {frames.shape}")
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix == ".gif":
        try:
            from PIL import Image
        except ImportError:  # pragma: no cover - Pillow comes with matplotlib
            raise CoreAffectError("writing a GIF needs Pillow (pip install pillow); or write "
                                  "an .mp4") from None
        # one adaptive palette per frame by fast octree quantisation (Pillow's default, median
        # cut, is ~100x slower), no dithering: heat maps are smooth
        images = [Image.fromarray(f).quantize(256, method=Image.Quantize.FASTOCTREE,
                                              dither=Image.Dither.NONE) for f in frames]
        duration = max(20, int(round(1000 / fps / 10)) * 10)  # ms, in GIF's 10 ms steps
        images[0].save(path, save_all=True, append_images=images[1:], duration=duration,
                       loop=0, optimize=False)
        return path
    codecs = {".mp4": "mp4v", ".avi": "MJPG"}
    if suffix not in codecs:
        raise CoreAffectError(f"{path}: animations are .gif, .mp4 or .avi")
    height, width = frames.shape[1:3]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codecs[suffix]), fps,
                             (width, height))
    if not writer.isOpened():
        raise CoreAffectError(f"{path}: OpenCV cannot write {codecs[suffix]} video here")
    try:
        for frame in frames:
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
    return path


def _display(frames: np.ndarray, side: int) -> np.ndarray:
    """(T, H, W, 3) uint8 frames resized to (T, side, side, 3) for display."""
    if frames.shape[1:3] == (side, side):
        return frames.copy()
    grow = side > frames.shape[1]
    method = cv2.INTER_CUBIC if grow else cv2.INTER_AREA
    return np.stack([cv2.resize(f, (side, side), interpolation=method) for f in frames])
