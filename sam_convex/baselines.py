"""Post-processing a user would try instead of proj_S. Same conventions as the
projector: bool (H, W) or (N, H, W) masks in (probabilities are thresholded at 0.5),
bool masks of the same shape out."""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage
from segment_anything.utils.amg import remove_small_regions
from skimage.morphology import convex_hull_image

from sam_convex import validation


def _per_mask(func):
    """Apply a (H, W) bool -> (H, W) bool function to (H, W) or (N, H, W) input."""

    def wrapper(masks, *args, **kwargs) -> np.ndarray:
        binary = validation.probabilities(masks).cpu().numpy() > 0.5
        if binary.ndim == 2:
            return func(binary, *args, **kwargs)
        return np.stack([func(m, *args, **kwargs) for m in binary])

    wrapper.__name__, wrapper.__doc__ = func.__name__, func.__doc__
    return wrapper


@_per_mask
def convex_hull(mask: np.ndarray) -> np.ndarray:
    """Convex hull of all foreground pixels (skimage); empty stays empty."""
    if not mask.any():
        return mask.copy()
    return convex_hull_image(mask)


def opencv_hull(mask: np.ndarray) -> np.ndarray:
    """(H, W) bool -> (H, W) bool: the convex hull of the outer contours' points, filled
    on the pixel grid (OpenCV findContours + convexHull + fillConvexPoly: the fast hull at
    photo size). No input conversion, for callers in a loop (`amg.solidity`)."""
    out = np.zeros(mask.shape, np.uint8)
    contours, _ = cv2.findContours(np.ascontiguousarray(mask, np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if contours:
        cv2.fillConvexPoly(out, cv2.convexHull(np.concatenate(contours)), 1)
    return out.astype(bool)


@_per_mask
def remove_small(mask: np.ndarray, area_fraction: float = 0.01, min_area: int = 25) -> np.ndarray:
    """segment-anything's `remove_small_regions` for holes, then islands, with the area
    threshold max(min_area, area_fraction * H * W) pixels."""
    area_fraction = validation.number("area_fraction", area_fraction, minimum=0.0, maximum=1.0)
    thresh = max(validation.number("min_area", min_area, minimum=0.0), area_fraction * mask.size)
    mask, _ = remove_small_regions(mask, thresh, mode="holes")
    mask, _ = remove_small_regions(mask, thresh, mode="islands")
    return np.asarray(mask, dtype=bool)


@_per_mask
def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 8-connected foreground component (scipy.ndimage)."""
    labels, count = ndimage.label(mask, structure=np.ones((3, 3)))
    if count == 0:
        return mask.copy()
    sizes = np.bincount(labels.ravel())[1:]
    return labels == (int(np.argmax(sizes)) + 1)


@_per_mask
def largest_component_hull(mask: np.ndarray) -> np.ndarray:
    """Convex hull of the largest 8-connected component."""
    return convex_hull(largest_component(mask))
