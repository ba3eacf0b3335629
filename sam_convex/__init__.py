"""sam_convex: provably convex segmentation by projecting masks onto ICNN sublevel sets."""

from sam_convex.grabcut import GrabCutPredictor
from sam_convex.icnn import ICNN
from sam_convex.loading import find_checkpoint, load_sam
from sam_convex.predictor import SamConvexPredictor
from sam_convex.projection import ConvexFit, ConvexProjector
from sam_convex.regularizer import ConvexityRegularizer

__all__ = [
    "ICNN",
    "ConvexFit",
    "ConvexProjector",
    "ConvexityRegularizer",
    "GrabCutPredictor",
    "SamConvexPredictor",
    "find_checkpoint",
    "load_sam",
]
__version__ = "0.1.0"
