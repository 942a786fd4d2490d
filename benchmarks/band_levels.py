"""The dynamics' bands of a run, calibrated again at other levels, to compare their coverage.

``coreaffect train`` calibrates the smoothed, filtered and lagged bands on the validation videos
at ``FitSettings.calibration_levels`` (50% and 90%): one factor per dimension on the half-widths,
the one whose largest coverage error is smallest. This script writes a copy of a run whose band
factors are calibrated again, on the same validation videos and the same network, prior and
dynamics, at the levels given (``--levels 0.9`` is how runs were calibrated before), so that
``coreaffect evaluate`` can score both on the same videos::

    python benchmarks/band_levels.py demo_output/run run_90 --levels 0.9
    coreaffect evaluate demo_output/run demo_output/corpus
    coreaffect evaluate run_90 demo_output/corpus

It prints the factors at the run's own levels (those its ``bands.json`` names; a warning says
if they differ from the ones saved there, as they may after the calibration's code changed) and
at the levels given. The bands are calibrated on the videos the run's were
(``stages.json``: the validation videos, or the training ones for a run without any). The copy
links to the run's crop cache and holds nothing else of its own.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
from pathlib import Path

import numpy as np

from coreaffect.calibration import BANDS_FILE, check_level, read_bands, write_bands
from coreaffect.errors import InputError
from coreaffect.evaluation import predict_video
from coreaffect.experiment import split_videos
from coreaffect.pipeline import CoreAffect
from coreaffect.stages import calibrate_bands, run_fit_settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a run written by coreaffect train")
    parser.add_argument("out", type=Path, help="the copy to write (must not exist)")
    parser.add_argument("--levels", type=float, nargs="+", required=True,
                        help="levels to calibrate the bands at, in (0, 1)")
    parser.add_argument("--data", type=Path, default=None,
                        help="the run's dataset (default: the one its split.json names)")
    args = parser.parse_args()
    if args.out.exists():
        parser.error(f"{args.out}: exists; the copy is written to a new folder")
    try:
        wanted = tuple(check_level(p) for p in args.levels)
    except InputError as err:
        parser.error(f"--levels: {err}")

    affect = CoreAffect.load(args.run)
    saved = read_bands(args.run)
    if affect.dynamics is None or saved is None:
        parser.error(f"{args.run}: has no dynamics, so no bands to calibrate")
    info = json.loads((args.run / BANDS_FILE).read_text())
    own = tuple(info.get("calibration_levels") or [info.get("level", 0.9)])  # older: one level
    settings = run_fit_settings(args.run)
    used = json.loads((args.run / "stages.json").read_text())["videos"]["calibration"]
    videos = [v for v in split_videos(args.run, args.data, ("train", "val")) if v.id in used]
    estimates = {video.id: predict_video(affect.model, video) for video in videos}
    factors = {}
    for levels in dict.fromkeys((own, wanted)):
        changed = dataclasses.replace(settings, calibration_levels=levels)
        factors[levels] = calibrate_bands(affect.model, affect.prior, affect.dynamics, videos,
                                           estimates, changed)
        print(f"calibrated at {', '.join(f'{p:g}' for p in levels)}:")
        for stage, (k_v, k_a) in factors[levels].items():
            print(f"  {stage:<9} valence {k_v:.4f}  arousal {k_a:.4f}")
    moved = [stage for stage, pair in saved[0].items()
             if not np.allclose(pair, factors[own].get(stage, (np.nan, np.nan)), rtol=1e-9)]
    if moved:
        print(f"warning: {', '.join(moved)} differ from {args.run / BANDS_FILE} at its own "
              "levels: the calibration's code has changed since the run was fitted",
              file=sys.stderr)

    shutil.copytree(args.run, args.out, ignore=shutil.ignore_patterns("crops", BANDS_FILE))
    if (args.run / "crops").is_dir():  # the run's crop cache, shared
        (args.out / "crops").symlink_to((args.run / "crops").resolve(), target_is_directory=True)
    write_bands(args.out, factors[wanted], wanted, saved[1])  # the run's lag
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
