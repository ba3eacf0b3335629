import dataclasses

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from eval.metrics import iou
from sam_convex import ConvexProjector

from shapes import disk, ellipse, hull_gap, polygon, rotated_rectangle

PROJECTOR = ConvexProjector(seed=0)

CONVEX = {
    "disk": disk(120, 130, 60),
    "ellipse": ellipse(110, 140, 85, 35, 0.5),
    "triangle": polygon([(40, 200), (210, 190), (110, 40)][::-1]),
    "rotated_rectangle": rotated_rectangle(128, 128, 90, 40, 0.6),
    "thin_ellipse": ellipse(128, 128, 100, 7, 1.0),
}


def _c_shape():
    return (
        disk(128, 128, 80)
        & ~disk(128, 128, 45)
        & ~((np.mgrid[:256, :256][1] > 128) & (np.abs(np.mgrid[:256, :256][0] - 128) < 30))
    )


def _noisy_sam_like(seed=0):
    """A disk with a bite, two holes, islands and ragged edges, as soft probabilities."""
    rng = np.random.default_rng(seed)
    base = disk(128, 120, 70) & ~disk(185, 110, 28) & ~disk(110, 100, 8) & ~disk(140, 150, 6)
    islands = disk(30, 30, 6) | disk(230, 220, 9)
    soft = gaussian_filter((base | islands).astype(float), 2) + rng.normal(0, 0.15, base.shape)
    return np.clip(soft, 0, 1).astype(np.float32)


NONCONVEX = {
    "bitten_disk": disk(128, 128, 70) & ~disk(190, 128, 40),
    "two_blobs": disk(70, 70, 30) | disk(180, 180, 40),
    "ring": disk(128, 128, 80) & ~disk(128, 128, 40),
    "c_shape": _c_shape(),
    "noisy_sam_like": _noisy_sam_like(),
}


@pytest.fixture(scope="module")
def convex_fit():
    return PROJECTOR.fit(np.stack(list(CONVEX.values())))


@pytest.fixture(scope="module")
def nonconvex_fit():
    return PROJECTOR.fit(np.stack([np.asarray(t, np.float32) for t in NONCONVEX.values()]))


@pytest.mark.parametrize("index,name", list(enumerate(CONVEX)))
def test_convex_targets_are_recovered(convex_fit, index, name):
    mask = convex_fit.masks[index].numpy()
    assert iou(mask, CONVEX[name]) >= 0.97, name
    assert hull_gap(mask) == 0


@pytest.mark.parametrize("index,name", list(enumerate(NONCONVEX)))
def test_nonconvex_targets_come_back_convex(nonconvex_fit, index, name):
    mask = nonconvex_fit.masks[index].numpy()
    assert mask.sum() > 500, name
    assert hull_gap(mask) == 0, name
    assert hull_gap(NONCONVEX[name] > 0.5) > 0  # the target itself was not convex


def test_projection_picks_the_cheaper_convex_set(nonconvex_fit):
    names = list(NONCONVEX)
    # Two blobs: covering both costs more than dropping the smaller one.
    assert iou(nonconvex_fit.masks[names.index("two_blobs")].numpy(), disk(180, 180, 40)) >= 0.9
    # Ring: filling the hole costs less than any convex set avoiding it.
    assert iou(nonconvex_fit.masks[names.index("ring")].numpy(), disk(128, 128, 80)) >= 0.93
    # Noisy SAM-like: the projection is close to the underlying disk, islands dropped.
    noisy = nonconvex_fit.masks[names.index("noisy_sam_like")].numpy()
    assert iou(noisy, disk(128, 120, 70)) >= 0.85
    assert not noisy[30, 30] and not noisy[230, 220]


def test_fit_reports_losses_soft_output_and_constraint(convex_fit):
    n = len(CONVEX)
    assert convex_fit.masks.shape == (n, 256, 256) and convex_fit.masks.dtype == torch.bool
    assert convex_fit.probs.dtype == torch.float32
    assert torch.isfinite(convex_fit.logits).all()
    assert torch.equal(convex_fit.masks, convex_fit.logits >= 0)
    assert convex_fit.losses.shape == (n,) and np.all(convex_fit.losses < 0.02)
    assert convex_fit.net.satisfies_constraint()


def test_render_at_another_resolution_matches(convex_fit):
    big = convex_fit.render(512, 512) >= 0
    down = big.reshape(len(CONVEX), 256, 2, 256, 2).float().mean(dim=(2, 4)) > 0.5
    for i in range(len(CONVEX)):
        assert iou(down[i].numpy(), convex_fit.masks[i].numpy()) >= 0.98
        assert hull_gap(big[i].numpy()) == 0


def test_same_seed_same_output_and_batched_equals_single():
    targets = np.stack([CONVEX["ellipse"], NONCONVEX["bitten_disk"], NONCONVEX["c_shape"]])
    batched = ConvexProjector(seed=3)(targets)
    again = ConvexProjector(seed=3)(targets)
    assert np.array_equal(batched, again)
    assert not np.array_equal(ConvexProjector(seed=4)(targets), batched)  # the seed matters
    for i, target in enumerate(targets):
        single = ConvexProjector(seed=3)(target)
        assert single.shape == target.shape and single.dtype == bool
        # Batched matrix products round differently from single ones on some CPUs, so a
        # few boundary pixels may differ (see ConvexProjector's docstring).
        assert iou(single, batched[i]) >= 0.99


def test_repr_shows_every_setting():
    text = repr(ConvexProjector())
    for field in dataclasses.fields(ConvexProjector):
        assert f"{field.name}=" in text


def test_torch_in_torch_out_and_logits_input():
    logits = torch.from_numpy(np.where(CONVEX["disk"], 8.0, -8.0).astype(np.float32))
    out = PROJECTOR(logits, logits=True)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.bool and out.shape == (256, 256)
    assert iou(out.numpy(), CONVEX["disk"]) >= 0.97


def test_degenerate_targets():
    empty = np.zeros((40, 50), np.float32)
    full = np.ones((40, 50), np.float32)
    single = np.zeros((40, 50), bool)
    single[20, 30] = True
    line = np.zeros((40, 50), bool)
    line[10, 5:45] = True
    out = ConvexProjector(seed=0).fit(np.stack([empty, full, single, line]))
    masks = out.masks.numpy()
    assert not masks[0].any()
    assert masks[1].all()
    assert masks[2][20, 30] and masks[2].sum() <= 9
    assert iou(masks[3], line) >= 0.6 and hull_gap(masks[3]) == 0
    assert np.isfinite(out.losses).all() and torch.isfinite(out.probs).all()


@pytest.mark.parametrize(
    "bad,match",
    [
        (np.zeros((4, 4, 4, 4)), "shape"),
        (np.zeros(5), "shape"),
        (np.array([["a", "b"], ["c", "d"]]), "dtype"),
        (np.zeros((0, 5)), "empty"),
        (np.full((4, 4), np.nan), "NaN"),
        (np.full((4, 4), np.inf), "NaN or infinite"),
        (np.full((4, 4), 1.5), r"\[0, 1\]"),
        (np.full((4, 4), -0.1), r"\[0, 1\]"),
        (np.full((4, 4), 255, np.uint8), r"\[0, 1\]"),
    ],
)
def test_bad_targets_raise_clear_errors(bad, match):
    with pytest.raises(ValueError, match=match):
        PROJECTOR(bad)


@pytest.mark.parametrize(
    "kwargs", [{"grid": 0}, {"steps": 0}, {"width": 0}, {"depth": 0}, {"lr": 0.0}, {"lr": float("nan")}, {"grid": 2.5}]
)
def test_bad_settings_raise(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        ConvexProjector(**kwargs)


def test_fit_works_under_no_grad():
    with torch.no_grad():
        out = ConvexProjector(seed=0, steps=60)(CONVEX["disk"])
    assert iou(out, CONVEX["disk"]) >= 0.9


def test_a_diverging_fit_falls_back_to_its_moment_ellipse_start():
    target = CONVEX["ellipse"]
    out = ConvexProjector(seed=0, lr=50.0, steps=30).fit(target)  # absurd step size
    assert out.net.satisfies_constraint()
    assert iou(out.masks[0].numpy(), target) >= 0.9
    assert hull_gap(out.masks[0].numpy()) == 0
