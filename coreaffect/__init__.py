"""coreaffect: valence and arousal from facial video.

The data path is ``VideoSource`` (frames) -> ``FaceCropper`` (face crops) -> ``ClipDataset``
(labelled clips), with ``read_annotations`` for the labels; ``create_model`` builds the hidden
route, a ``HiddenRouteNet`` returning an ``AffectEstimate`` (mean, variance, embedding);
``AffectManifold`` and ``HiddenRoutePrior`` turn that estimate into a Gaussian prior over a latent
valence-arousal manifold, which ``CoreAffectDynamics`` (an Ornstein-Uhlenbeck state-space model)
filters and smooths over time; ``CoreAffect`` (or ``load_run``) chains them all, from a video to an
``AffectTrajectory`` with credible bands; ``GradCAM3D`` shows what the hidden route looks at.
Importing coreaffect has no side effects: no downloads, no seeds, no logging configuration.
"""

from coreaffect.annotations import Annotations, read_annotations
from coreaffect.clips import Clip, ClipDataset
from coreaffect.config import DataConfig
from coreaffect.corpus import Recording, discover
from coreaffect.dynamics import CoreAffectDynamics
from coreaffect.errors import CoreAffectError
from coreaffect.faces import FaceCropper, FaceCrops
from coreaffect.hidden_route import AffectEstimate, HiddenRouteNet, create_model
from coreaffect.manifold import AffectManifold
from coreaffect.pipeline import CoreAffect, load_run
from coreaffect.prior import HiddenRoutePrior
from coreaffect.saliency import GradCAM3D
from coreaffect.trajectory import AffectTrajectory
from coreaffect.video import VideoSource

__version__ = "0.1.0"

__all__ = [
    "AffectEstimate",
    "AffectManifold",
    "AffectTrajectory",
    "Annotations",
    "Clip",
    "ClipDataset",
    "CoreAffect",
    "CoreAffectDynamics",
    "CoreAffectError",
    "DataConfig",
    "FaceCropper",
    "FaceCrops",
    "GradCAM3D",
    "HiddenRouteNet",
    "HiddenRoutePrior",
    "Recording",
    "VideoSource",
    "create_model",
    "discover",
    "load_run",
    "read_annotations",
]
