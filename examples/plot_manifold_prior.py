"""
Fitting the affect manifold and the hidden route's prior
========================================================

Valence-arousal labels lie on a curved region: arousal rises with the magnitude of valence.
:class:`~coreaffect.manifold.AffectManifold` learns that region as the image g(z) of a 2-D latent
space (the paper's Fig. 3); :class:`~coreaffect.prior.HiddenRoutePrior` turns an estimate of the
hidden route (mean, variance, embedding) into a Gaussian over z, calibrated on held-out pairs so
that its bands cover at their level. Here labels and estimates are simulated: the prior stays at
the estimate (the default ``location="regression"``), narrow for a confident estimate and wide for
an unsure one; with ``location="measurement"`` an unsure estimate's prior would approach the
manifold's marginal p(z) instead. The manifold's decoder is a neural network by default;
``--manifold gplvm`` makes it a Gaussian process (a GP-LVM, as Vitale et al. used).

Run it::

    python examples/plot_manifold_prior.py --out manifold/
    python examples/plot_manifold_prior.py --out manifold/ --quick   # fewer SVI steps
    python examples/plot_manifold_prior.py --out manifold_gp/ --manifold gplvm
"""

# %%
import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import torch  # noqa: E402

from coreaffect import AffectEstimate, AffectManifold, HiddenRoutePrior  # noqa: E402
from coreaffect.plots import plot_manifold_prior  # noqa: E402

parser = argparse.ArgumentParser(description=(__doc__ or "").strip().split("\n")[0])
parser.add_argument("--out", type=Path, default=Path("manifold_output"))
parser.add_argument("--quick", action="store_true", help="fewer SVI steps")
parser.add_argument("--manifold", choices=("vae", "gplvm"), default="vae",
                    help="the manifold's decoder: a neural network or a Gaussian process")
args = parser.parse_args(sys.argv[1:] if __name__ == "__main__" else [])
quick = args.quick or "sphinx_gallery" in sys.modules
steps = 200 if quick else 2000
args.out.mkdir(parents=True, exist_ok=True)

# %%
# Boomerang-shaped labels, and estimates of them whose noise the variance head knows.
rng = np.random.default_rng(0)


def simulate(n: int) -> tuple[AffectEstimate, np.ndarray]:
    valence = rng.uniform(-0.9, 0.9, n)
    arousal = np.clip(1.2 * np.abs(valence) - 0.5 + 0.1 * rng.normal(size=n), -1, 1)
    labels = np.stack([valence, arousal], 1).astype(np.float32)  # (N, 2)
    sd = rng.uniform(0.05, 0.4, (n, 1)).repeat(2, 1)  # (N, 2) how unsure each estimate is
    mean = np.clip(labels + sd * rng.normal(size=(n, 2)), -0.99, 0.99)
    embedding = np.concatenate([mean, sd], 1)  # (N, D = 4) stands in for the network's features
    return AffectEstimate(*(torch.as_tensor(x, dtype=torch.float32)
                            for x in (mean, sd**2, embedding))), labels


train, train_labels = simulate(3000)
val, val_labels = simulate(1000)

# %%
# The manifold from labels, the prior from (estimate, label) pairs, the calibration on others.
manifold = AffectManifold(backend=args.manifold, num_steps=steps, batch_size=512).fit(train_labels)
print(f"manifold ({args.manifold}): label noise {manifold.noise_scale_.numpy().round(3)}")
prior = HiddenRoutePrior(manifold, num_steps=steps, batch_size=512).fit(train, train_labels)
prior.calibrate(val, val_labels, level=0.9)
print("calibration: variance factors {:.3g} (valence), {:.3g} (arousal)".format(
    *prior.calibration_scale_))

# %%
# A confident and an unsure estimate: the prior over z, and decoded to valence-arousal.
for name, index in (("confident", int(np.argmin(val.var[:, 0]))),
                    ("unsure", int(np.argmax(val.var[:, 0])))):
    one = AffectEstimate(*(x[index:index + 1] for x in val))
    latent = prior(one)
    band = prior.predict(one).cov[0].diagonal().sqrt()  # decoded standard deviations
    print(f"{name}: prior sd {band[0]:.3f} (valence), {band[1]:.3f} (arousal); the hidden "
          f"route's {float(one.var[0, 0]) ** 0.5:.3f}")
    axes = plot_manifold_prior(manifold, latent.loc[0].numpy(),
                               latent.covariance_matrix[0].numpy(), truth=val_labels[index],
                               n_samples=1000 if quick else 3000,
                               title=f"the {name} estimate")
    axes[0].figure.savefig(args.out / f"prior_{name}.png", dpi=90, bbox_inches="tight")
