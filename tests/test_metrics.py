"""eval.metrics (IoU, bootstrap CI, wins/ties/losses, paired ΔIoU) and eval.prompts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from eval.corruptions.prompts import farthest_points, has_positive, make_prompt
from eval.datasets import Sample
from eval.metrics import bootstrap_ci, iou, mean_table, paired_delta, wins_ties_losses


def masks(*boxes, shape=(10, 10)):
    out = np.zeros(shape, bool)
    for r0, r1, c0, c1 in boxes:
        out[r0:r1, c0:c1] = True
    return out


def test_iou_hand_cases():
    a = masks((0, 4, 0, 4))
    assert iou(a, a) == 1.0
    assert iou(a, masks((6, 8, 6, 8))) == 0.0
    assert iou(masks((0, 4, 0, 4)), masks((0, 4, 2, 6))) == pytest.approx(8 / 24)
    assert iou(masks(), masks()) == 1.0  # both empty: defined as 1
    assert iou(masks(), a) == 0.0 and iou(a, masks()) == 0.0
    with pytest.raises(ValueError, match="shape"):
        iou(a, np.zeros((10, 11), bool))


def test_bootstrap_ci_contains_mean_and_is_seeded():
    values = np.random.default_rng(1).normal(0.02, 0.05, 40)
    lo, hi = bootstrap_ci(values, seed=0)
    assert lo < values.mean() < hi
    assert hi - lo < 0.1
    assert bootstrap_ci(values, seed=0) == (lo, hi)
    assert bootstrap_ci([0.3, 0.3, 0.3]) == (0.3, 0.3)  # degenerate, not NaN
    assert bootstrap_ci([0.5]) == (0.5, 0.5)


def test_wins_ties_losses():
    assert wins_ties_losses([0.5, 1e-3, 9e-4, 0.0, -9e-4, -1e-3, -0.2]) == (2, 3, 2)


def long_table():
    rows = []
    raw = {"a": 0.5, "b": 0.6, "c": 0.7}
    proj = {"a": 0.6, "b": 0.6, "c": 0.65}
    for img in raw:
        for cond, shift in (("clean", 0.0), ("spatter", -0.2)):
            rows.append({"image": img, "condition": cond, "method": "raw", "iou": raw[img] + shift})
            rows.append({"image": img, "condition": cond, "method": "proj_S", "iou": proj[img] + shift})
    return pd.DataFrame(rows)


def test_paired_delta_and_mean_table():
    df = long_table()
    table = mean_table(df, ["raw", "proj_S"], ["clean", "spatter"])
    assert table.loc["raw", "clean"] == pytest.approx(0.6)
    assert table.loc["proj_S", "spatter"] == pytest.approx(0.4166667)
    d = paired_delta(df, "proj_S", "raw", ["clean", "spatter"])
    assert d.loc["clean", "delta"] == pytest.approx((0.1 + 0.0 - 0.05) / 3)
    assert (d.loc["clean", "wins"], d.loc["clean", "ties"], d.loc["clean", "losses"]) == (1, 1, 1)
    assert d.loc["clean", "lo"] <= d.loc["clean", "delta"] <= d.loc["clean", "hi"]
    assert d.loc["spatter", "n"] == 3


def sample(gt, scribbles=None):
    return Sample("s", np.zeros((*gt.shape, 3), np.uint8), gt, scribbles)


def test_point_prompts_on_scribbles_and_deterministic():
    gt = masks((2, 8, 2, 8))
    scrib = np.zeros((10, 10), np.uint8)
    scrib[5, 3:7] = 2
    scrib[0, :] = 1
    scrib[9, :] = 1
    p = make_prompt(sample(gt, scrib), "points", 3)
    xy, labels = p["point_coords"], p["point_labels"]
    assert labels.tolist() == [1, 1, 1, 0, 0, 0] and p["box"] is None
    for (x, y), label in zip(xy.astype(int), labels):
        assert scrib[y, x] == (2 if label == 1 else 1)
    neg_rows = {int(y) for x, y in xy[labels == 0]}
    assert neg_rows == {0, 9}  # farthest-point sampling reaches both strokes
    q = make_prompt(sample(gt, scrib), "points", 3)
    np.testing.assert_array_equal(q["point_coords"], xy)


def test_box_and_fallback_prompts():
    gt = masks((2, 8, 3, 6))
    p = make_prompt(sample(gt), "points+box", 2)
    assert p["box"].tolist() == [3, 2, 6, 8]
    labels, xy = p["point_labels"], p["point_coords"].astype(int)
    assert gt[xy[labels == 1, 1], xy[labels == 1, 0]].all()  # from the GT without scribbles
    assert not gt[xy[labels == 0, 1], xy[labels == 0, 0]].any()
    empty = make_prompt(sample(np.zeros((10, 10), bool)), "points+box", 2)
    assert empty["box"] is None and not has_positive(empty)
    with pytest.raises(ValueError, match="points, box, points\\+box"):
        make_prompt(sample(gt), "scribble")


def test_farthest_points_small_region():
    region = np.zeros((5, 5), bool)
    region[2, 2] = True
    assert farthest_points(region, 3).tolist() == [[2.0, 2.0]]
    assert farthest_points(np.zeros((5, 5), bool), 3).shape == (0, 2)
