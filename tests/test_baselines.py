import numpy as np
import pytest
import torch

from sam_convex import baselines
from sam_convex.measures import hull_gap, iou
from sam_convex.synthetic import disk


def _messy():
    """Disk with a hole and a bite, plus a small island far away."""
    return (disk(100, 100, 50) & ~disk(100, 100, 5) & ~disk(150, 100, 15)) | disk(220, 220, 4)


def test_convex_hull_is_convex_and_covers_the_mask():
    mask = _messy()
    hull = baselines.convex_hull(mask)
    assert hull_gap(hull) <= 5 and np.all(hull[mask])
    assert hull[160, 160]  # the island drags the hull across the image


def test_remove_small_fills_holes_and_drops_islands():
    out = baselines.remove_small(_messy())
    assert out[100, 100] and not out[220, 220]
    assert not out[100, 150]  # a bite is not a hole: left alone


def test_largest_component_and_its_hull():
    mask = _messy()
    largest = baselines.largest_component(mask)
    assert not largest[220, 220] and largest[60, 100]
    hull = baselines.largest_component_hull(mask)
    assert hull[100, 100] and hull[100, 140] and not hull[220, 220]
    assert iou(hull, disk(100, 100, 50)) > 0.95


@pytest.mark.parametrize(
    "func",
    [baselines.convex_hull, baselines.remove_small, baselines.largest_component, baselines.largest_component_hull],
)
def test_batches_empty_masks_and_probabilities(func):
    stack = np.stack([_messy(), np.zeros((256, 256), bool)])
    out = func(stack)
    assert out.shape == stack.shape and out.dtype == bool
    assert not out[1].any()
    probs = torch.from_numpy(stack[0].astype(np.float32) * 0.9)
    assert np.array_equal(func(probs), out[0])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        func(stack * 2.0)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"area_fraction": float("nan")}, "area_fraction"),
        ({"area_fraction": -1}, "area_fraction"),
        ({"min_area": "x"}, "min_area"),
    ],
)
def test_remove_small_refuses_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        baselines.remove_small(disk(20, 20, 8, 40, 40), **kwargs)
