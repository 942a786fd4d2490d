"""Heat-map overlays and animations: blend values, resizing, formats, and errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from coreaffect import overlays, saliency
from coreaffect.errors import CoreAffectError
from coreaffect.overlays import overlay_heatmaps, write_animation


def test_overlay_blends_and_resizes():
    frames = np.full((3, 20, 20, 3), 100, dtype=np.uint8)
    maps = np.zeros((3, 5, 5), dtype=np.float32)
    assert np.array_equal(overlay_heatmaps(frames, maps, alpha=0.0), frames)
    hot = overlay_heatmaps(frames[0], np.ones((5, 5)), alpha=1.0)  # one frame
    assert hot.shape == (20, 20, 3) and hot[..., 0].mean() > hot[..., 2].mean()  # jet's red
    with pytest.raises(CoreAffectError, match="colormap"):
        overlay_heatmaps(frames, maps, colormap="rainbow")


def test_write_animation_formats(tmp_path):
    frames = np.random.default_rng(0).integers(0, 255, (5, 16, 16, 3), dtype=np.uint8)
    gif = write_animation(frames, tmp_path / "a.gif", fps=10)
    with Image.open(gif) as image:
        assert image.n_frames == 5
    assert write_animation(frames, tmp_path / "a.avi").stat().st_size > 0
    with pytest.raises(CoreAffectError, match="gif"):
        write_animation(frames, tmp_path / "a.webp")


def test_overlay_blend_values():
    # jet colours 0 as dark blue, RGB (0, 0, 128), and 1 as dark red, RGB (128, 0, 0)
    frames = np.full((2, 4, 4, 3), 100, dtype=np.uint8)
    maps = torch.stack([torch.zeros(4, 4), torch.ones(4, 4)])  # a tensor is accepted
    out = overlay_heatmaps(frames, maps, alpha=0.25).astype(int)
    assert np.abs(out[0] - np.array([75, 75, 107])).max() <= 1
    assert np.abs(out[1] - np.array([107, 75, 75])).max() <= 1
    with pytest.raises(CoreAffectError, match="alpha"):
        overlay_heatmaps(frames, maps, alpha=1.5)
    with pytest.raises(CoreAffectError, match="do not match"):
        overlay_heatmaps(frames, maps[:1])


def test_saliency_reexports_the_overlays():
    assert saliency.overlay_heatmaps is overlays.overlay_heatmaps
    assert saliency.write_animation is overlays.write_animation


def test_overlay_refuses_frames_that_are_not_uint8():
    frames = np.full((2, 8, 8, 3), 0.5)  # floats in [0, 1]: cast, they would come out black
    with pytest.raises(CoreAffectError, match="frames must be uint8 RGB .*got float64"):
        overlay_heatmaps(frames, np.zeros((2, 8, 8)))
