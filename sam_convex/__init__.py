"""sam_convex: provably convex segmentation by projecting masks onto ICNN sublevel sets."""
from sam_convex.icnn import ICNN
from sam_convex.projection import ConvexFit, ConvexProjector

__all__ = ["ICNN", "ConvexFit", "ConvexProjector"]
__version__ = "0.1.0"
