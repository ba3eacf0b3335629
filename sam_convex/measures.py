"""Measures of masks: overlap with a truth and distance from convexity.

    iou(pred, gt)     intersection over union of two (H, W) bool masks
    hull_gap(mask)    pixels in the mask's convex hull but not in the mask (0: convex)

The benchmarks (`eval`) and the tests score masks with these; the library's own
convexity gate for automatic masks is `sam_convex.amg.solidity`.
"""

from __future__ import annotations

import numpy as np
from skimage.morphology import convex_hull_image


def iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """IoU of two (H, W) bool masks; 1.0 when both are empty."""
    pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in shape")
    union = np.logical_or(pred, gt).sum()
    if union == 0:
        return 1.0
    return float(np.logical_and(pred, gt).sum() / union)


def hull_gap(mask: np.ndarray) -> int:
    """Pixels inside the convex hull of an (H, W) bool mask's pixel centres but not in
    the mask: 0 for a digitally convex set (and for an empty mask)."""
    if not mask.any():
        return 0
    rows, cols = np.nonzero(mask)
    if np.ptp(rows) == 0 or np.ptp(cols) == 0:  # a straight run: qhull needs 2-D input
        return int(max(np.ptp(rows), np.ptp(cols)) + 1 - mask.sum())
    return int((convex_hull_image(mask, offset_coordinates=False) & ~mask).sum())
