"""sam_convex: provably convex segmentation by projecting masks onto ICNN sublevel sets."""

from sam_convex.amg import Sam2ConvexAutomaticMaskGenerator, SamConvexAutomaticMaskGenerator
from sam_convex.grabcut import GrabCutPredictor
from sam_convex.gradient import GradientProjector
from sam_convex.icnn import ICNN
from sam_convex.loading import find_checkpoint, load_sam, load_sam2
from sam_convex.losses import ConvexityLoss, StarShapeLoss
from sam_convex.predictor import SamConvexPredictor
from sam_convex.projection import ConvexFit, ConvexProjector
from sam_convex.regularizer import ConvexityRegularizer
from sam_convex.sam2_predictor import Sam2ConvexPredictor

__all__ = [
    "ICNN",
    "ConvexFit",
    "ConvexProjector",
    "ConvexityLoss",
    "ConvexityRegularizer",
    "GrabCutPredictor",
    "GradientProjector",
    "Sam2ConvexAutomaticMaskGenerator",
    "Sam2ConvexPredictor",
    "SamConvexAutomaticMaskGenerator",
    "SamConvexPredictor",
    "StarShapeLoss",
    "find_checkpoint",
    "load_sam",
    "load_sam2",
]
__version__ = "0.2.0"
