"""Deterministic SAM-style prompts from a sample's scribbles and ground truth.

The prompts depend only on the clean sample, so every corruption of an image gets the
same prompt, and no randomness is involved:

* points: K positive points on the foreground scribble and K negative points on the
  background scribble, by farthest-point sampling that starts at the scribble pixel
  nearest the scribble's centroid (so points spread over all strokes). Without scribbles
  (or with an empty class) the regions fall back to the deep interior of the ground
  truth (distance >= half the maximum) and to the pixels at least 5% of the image side
  away from it.
* box: the ground truth's bounding box (x0, y0, x1, y1) = (min col, min row, max col + 1,
  max row + 1), i.e. the pixel extent of the object.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from eval.datasets import Sample

PROMPTS = ("points", "box", "points+box")


def make_prompt(sample: Sample, kind: str = "points", num_points: int = 3) -> dict:
    """Prompt keyword arguments for `predictor.predict`.

    Args:
        sample: the clean sample (image (H, W, 3) uint8, gt (H, W) bool, scribbles).
        kind: "points", "box" or "points+box".
        num_points: K, points per class for the point prompts.
    Returns:
        dict with point_coords ((n, 2) float32 x, y, or None), point_labels ((n,) int64,
        1 object / 0 background, or None) and box ((4,) float32 or None). Both None when
        the image offers nothing (no positive point and no box); see `has_positive`.
    """
    if kind not in PROMPTS:
        raise ValueError(f"unknown prompt {kind!r}; valid: {', '.join(PROMPTS)}")
    if num_points < 1:
        raise ValueError(f"num_points must be >= 1, got {num_points}")
    prompt = {"point_coords": None, "point_labels": None, "box": None}
    if "points" in kind:
        fg, bg = prompt_regions(sample)
        pos, neg = farthest_points(fg, num_points), farthest_points(bg, num_points)
        coords = np.concatenate([pos, neg]).astype(np.float32)
        labels = np.concatenate([np.ones(len(pos)), np.zeros(len(neg))]).astype(np.int64)
        if len(coords):
            prompt["point_coords"], prompt["point_labels"] = coords, labels
    if "box" in kind and sample.gt.any():
        rows, cols = np.nonzero(sample.gt)
        prompt["box"] = np.array([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1], np.float32)
    return prompt


def has_positive(prompt: dict) -> bool:
    """True when the prompt has a box or at least one positive point."""
    labels = prompt["point_labels"]
    return prompt["box"] is not None or (labels is not None and bool((labels == 1).any()))


def prompt_regions(sample: Sample) -> tuple[np.ndarray, np.ndarray]:
    """(H, W) bool regions to draw positive and negative points from (see module doc)."""
    gt = sample.gt
    fg = bg = None
    if sample.scribbles is not None:
        fg, bg = sample.scribbles == 2, sample.scribbles == 1
    if fg is None or not fg.any():
        inside = ndimage.distance_transform_edt(gt)
        fg = inside >= max(1.0, 0.5 * inside.max()) if gt.any() else np.zeros_like(gt)
    if bg is None or not bg.any():
        bg = ndimage.distance_transform_edt(~gt) >= 0.05 * min(gt.shape) if gt.any() else ~gt
    return fg, bg


def farthest_points(region: np.ndarray, k: int) -> np.ndarray:
    """Up to k pixels of a (H, W) bool region as (n, 2) (x, y), n = min(k, region size):
    the pixel nearest the centroid first, then each next pixel farthest from those chosen
    (ties go to the first in row-major order)."""
    yx = np.argwhere(region).astype(np.float64)
    if len(yx) == 0:
        return np.zeros((0, 2))
    first = int(np.argmin(((yx - yx.mean(axis=0)) ** 2).sum(axis=1)))
    chosen = [first]
    dist = ((yx - yx[first]) ** 2).sum(axis=1)
    for _ in range(min(k, len(yx)) - 1):
        nxt = int(np.argmax(dist))
        chosen.append(nxt)
        dist = np.minimum(dist, ((yx - yx[nxt]) ** 2).sum(axis=1))
    return yx[chosen][:, ::-1]
