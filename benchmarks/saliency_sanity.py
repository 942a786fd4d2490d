"""Sanity checks of the hidden route's Grad-CAM maps on the synthetic corpus.

Two measures on test clips of a trained run (Adebayo et al., 2018, "Sanity checks for saliency
maps"):

* the share of saliency mass inside the face, for the trained network and for the same
  architecture with freshly initialised weights (several seeds), against the face's share of the
  crop's area (what a uniform map would score);
* the Spearman rank correlation between the maps of the trained network and of each randomised
  one (low: the maps depend on what was learned), and between two randomised networks (what
  "unrelated" looks like for this architecture and input).

The face region. The crops are face crops: a square of ``1 + 2 margin`` detector box sides
(1.5 at the default margin 0.25, 1.8 at the margin 0.4 of the measurement below) centred on
the tracked face. The generator draws the face as an
ellipse one face height tall and 0.70-0.80 of that wide, centred between hair and chin (hair,
ears, neck and background lie outside it). Replaying the generator's per-frame plan for the five
test videos of a 12-video corpus (seed 0) and mapping the face ellipse through the crop boxes gave,
in crop sides: centre x 0.49-0.50, y 0.46-0.48, face height 0.57-0.62 (standard deviation within a
video at most 0.017, under a pixel at 48 px), width / height 0.72-0.79 (per identity). The crop
follows the face that closely, so the region used here is one fixed ellipse in crop coordinates:
centre (0.50, 0.47), semi-axes 0.225 (x) and 0.30 (y) crop sides, 21% of the crop's area, at
margin 0.4; at another margin it scales about the crop's centre by the ratio of crop widths
(at 0.25: axes 0.27 x 0.36, 31% of the area). Only
clips where every frame has the face found by the tracker, fully visible and not occluded (the
corpus' truth files) are used, so that the ellipse is on the face in all 16 frames.

Usage::

    python -m coreaffect synth /tmp/corpus --videos 12 --seconds 20
    python -m coreaffect train /tmp/corpus --out /tmp/run --max-minutes 4
    python benchmarks/saliency_sanity.py /tmp/run /tmp/corpus [--clips 4] [--seeds 3]
        [--json out.json] [--figure grid.png]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from coreaffect.checkpoint import load_data_config, load_model
from coreaffect.corpus import discover
from coreaffect.crop_cache import CropCache
from coreaffect.experiment import load_videos
from coreaffect.saliency import (
    GradCAM3D,
    randomized_copy,
    saliency_mass_fraction,
    saliency_rank_correlation,
)
from coreaffect.synthetic import read_truth

FACE_CENTRE = (0.50, 0.47)  # (x, y) in crop sides, measured as in the module docstring
FACE_AXES = (0.225, 0.30)  # semi-axes (x, y) in crop sides
MEASURED_MARGIN = 0.4  # the crop margin those were measured at


def face_mask(side: int, margin: float = MEASURED_MARGIN) -> np.ndarray:
    """(side, side) bool ellipse of the rendered face inside a face crop of the given margin.

    A crop is ``1 + 2 margin`` detector box sides wide around the same centre, so the ellipse
    measured at ``MEASURED_MARGIN`` scales about the crop's centre by the ratio of crop widths.
    """
    scale = (1 + 2 * MEASURED_MARGIN) / (1 + 2 * margin)
    cx, cy = (0.5 + (c - 0.5) * scale for c in FACE_CENTRE)
    ax, ay = (a * scale for a in FACE_AXES)
    centres = (np.arange(side) + 0.5) / side
    x, y = np.meshgrid(centres, centres)  # (H, W) pixel centres in crop sides
    return ((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2 <= 1


def face_clips(run: Path, data: Path, per_video: int) -> tuple[torch.Tensor, list[str]]:
    """(N, 3, T, S, S) clips with the face in every frame, evenly spread over each test video."""
    model_config = load_model(run).config
    clip, size = model_config.clip_length, model_config.input_size
    config = load_data_config(run)
    held_out = set(json.loads((run / "split.json").read_text())["test"])
    recordings = [r for r in discover(data) if r.id in held_out]
    cache = CropCache(run / "crops", config.faces, config.video.chunk_size)
    clips, names = [], []
    for video in load_videos(recordings, config, cache):
        truth = read_truth(data, video.id)
        good = video.crops.face_found & truth.face_visible & ~truth.occluded  # (T,)
        starts = [s for s in range(0, len(good) - clip + 1, clip) if good[s:s + clip].all()]
        if not starts:
            continue
        chosen = [starts[i] for i in np.unique(np.linspace(0, len(starts) - 1, per_video)
                                               .round().astype(int))]
        for s in chosen:
            crops = torch.from_numpy(np.array(video.crops.crops[s:s + clip]))  # (T, H, W, 3)
            clips.append(crops.permute(3, 0, 1, 2).float() / 255)  # (3, T, H, W)
            names.append(f"{video.id}@{s}")
    video = torch.stack(clips)  # (N, 3, T, H, W)
    if video.shape[-1] != size:
        n, _, t, h, w = video.shape
        video = F.interpolate(video.reshape(n, 3 * t, h, w), size=(size, size), mode="bilinear",
                              antialias=True).clamp(0, 1).reshape(n, 3, t, size, size)
    return video, names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="run directory (coreaffect train)")
    parser.add_argument("data", type=Path, help="the synthetic corpus it was trained on")
    parser.add_argument("--clips", type=int, default=4, help="clips per test video")
    parser.add_argument("--seeds", type=int, default=3, help="randomised networks")
    parser.add_argument("--targets", nargs="+", default=["valence", "arousal"])
    parser.add_argument("--json", type=Path, default=None, help="write the numbers as JSON")
    parser.add_argument("--figure", type=Path, default=None, help="write a saliency grid PNG")
    args = parser.parse_args()

    started = time.perf_counter()
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    model = load_model(args.run)
    video, names = face_clips(args.run, args.data, args.clips)
    side = video.shape[-1]
    mask = face_mask(side, load_data_config(args.run).faces.margin)
    print(f"{len(names)} clips of {video.shape[2]} frames at {side} px from "
          f"{len({n.split('@')[0] for n in names})} test videos; face ellipse "
          f"{mask.mean():.3f} of the crop area")
    networks = {"trained": model}
    networks.update({f"random{s}": randomized_copy(model, seed=1000 + s)
                     for s in range(args.seeds)})
    maps = {}
    for name, net in networks.items():
        with GradCAM3D(net) as cam:
            maps[name] = cam.explain(video, args.targets).maps.cpu()  # (N, K, T, H, W)
    results: dict = {"clips": names, "face_area_share": float(mask.mean()), "targets": {}}
    print(f"\n{'target':<12}{'network':<10}{'face mass':>12}{'(sd)':>8}{'zero maps':>11}"
          f"{'rank corr vs trained':>22}")
    for k, target in enumerate(args.targets):
        entry: dict = {}
        for name in networks:
            fraction = saliency_mass_fraction(maps[name][:, k], mask)
            row = {"face_mass_mean": float(np.nanmean(fraction)),
                   "face_mass_sd": float(np.nanstd(fraction)),
                   "zero_maps": int(np.isnan(fraction).sum())}
            corr = ""
            if name != "trained":
                rho = saliency_rank_correlation(maps["trained"][:, k], maps[name][:, k])
                row["rank_corr_vs_trained_mean"] = float(np.nanmean(rho))
                row["rank_corr_vs_trained_sd"] = float(np.nanstd(rho))
                corr = f"{np.nanmean(rho):.3f} +- {np.nanstd(rho):.3f}"
            entry[name] = row
            print(f"{target:<12}{name:<10}{row['face_mass_mean']:>12.3f}"
                  f"{row['face_mass_sd']:>8.3f}{row['zero_maps']:>11}{corr:>22}")
        if args.seeds >= 2:
            rho = saliency_rank_correlation(maps["random0"][:, k], maps["random1"][:, k])
            entry["rank_corr_random0_vs_random1_mean"] = float(np.nanmean(rho))
            print(f"{target:<12}random0 vs random1 rank corr {np.nanmean(rho):.3f} "
                  f"+- {np.nanstd(rho):.3f}")
        results["targets"][target] = entry
    print(f"\n{time.perf_counter() - started:.1f} s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    if args.figure:
        import matplotlib

        matplotlib.use("Agg")
        from coreaffect.plots import plot_saliency_grid

        middle = video.shape[2] // 2
        count = min(8, len(names))
        frames = (video[:count, :, middle].permute(0, 2, 3, 1) * 255).round().byte().numpy()
        rows = np.stack([maps[n][:count, 0, middle].numpy() for n in ("trained", "random0")])
        ax = plot_saliency_grid(frames, rows, row_labels=[f"trained ({args.targets[0]})",
                                                          "random"],
                                column_labels=[n.replace("@", "\n@") for n in names[:count]])
        ax.figure.savefig(args.figure, dpi=150, bbox_inches="tight")
        print(f"figure written to {args.figure}")


if __name__ == "__main__":
    main()
