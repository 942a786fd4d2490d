"""
What the hidden route looks at: 3D Grad-CAM
===========================================

:func:`coreaffect.saliency.explain_video` weights the last convolutional feature maps of the
hidden route by their back-propagated gradients (3D Grad-CAM, the paper's Fig. 2) for every
16-frame window of a video of face crops, and writes a frame grid and an animation.
The run is the tiny one of :func:`coreaffect.demo.tiny_run`, trained in seconds, so its maps are
not meaningful; ``coreaffect saliency RUN VIDEO --out DIR`` does the same for a real run.

Run it::

    python examples/plot_saliency.py --out saliency/
"""

# %%
import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import coreaffect  # noqa: E402
from coreaffect.demo import tiny_run  # noqa: E402
from coreaffect.saliency import explain_video  # noqa: E402

parser = argparse.ArgumentParser(description=(__doc__ or "").strip().split("\n")[0])
parser.add_argument("--out", type=Path, default=Path("saliency_output"))
parser.add_argument("--quick", action="store_true", help="no animation")
args = parser.parse_args(sys.argv[1:] if __name__ == "__main__" else [])
quick = args.quick or "sphinx_gallery" in sys.modules
tiny = tiny_run(args.out / "tiny")
affect = coreaffect.load_run(tiny.run)

# %%
# Crop the faces as the run was trained on them, then explain every window.
crops = affect.crop(tiny.video())
result = explain_video(affect.model, np.array(crops.crops), args.out / "maps",
                       times=crops.times, face_found=crops.face_found,
                       animation="" if quick else "gif")
print("wrote " + ", ".join(str(path) for path in result.files))

# %%
# The grid: the face crops above, each row below blends one output's map over them.
fig, ax = plt.subplots(figsize=(10, 3.5))
ax.imshow(plt.imread(result.files[0]))
ax.set_axis_off()
