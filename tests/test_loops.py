"""The fit's compiled inner loops against their definitions, written out with numpy."""

import numpy as np
import pytest

from sam_convex import loops
from sam_convex.polygon import inside, row_sums


def random_polygon(rng, k=9, radius=20.0):
    th = np.sort(rng.uniform(0, 2 * np.pi, k))
    h = radius + rng.uniform(-3, 3, k)
    return th, h


def pixel_centres(hh, ww):
    yy, xx = np.mgrid[:hh, :ww]
    return (xx + 0.5 - ww / 2).ravel().astype(np.float64), (yy + 0.5 - hh / 2).ravel().astype(np.float64)


@pytest.mark.parametrize("seed", range(5))
def test_spans_and_span_cost_are_the_pixels_inside(seed):
    rng = np.random.default_rng(seed)
    hh, ww = 50 + seed, 61
    th, h = random_polygon(rng)
    x, y = pixel_centres(hh, ww)
    truth = inside(x, y, th, h).reshape(hh, ww)
    lo, hi = loops.spans(np.cos(th), np.sin(th), h, hh, ww, 0.0)
    cols = np.arange(ww)
    assert np.array_equal((lo[:, None] <= cols) & (cols <= hi[:, None]), truth)
    w = rng.normal(size=(hh, ww))
    cost = loops.span_cost(row_sums(w), np.cos(th), np.sin(th), h)
    assert cost == pytest.approx(w[truth].sum(), abs=1e-9)
    filled = np.zeros((hh, ww), bool)
    loops.fill_spans(filled, lo, hi)
    assert np.array_equal(filled, truth)


def test_span_difference_lists_the_ring_in_nonzero_order():
    rng = np.random.default_rng(7)
    th, h = random_polygon(rng)
    c, s = np.cos(th), np.sin(th)
    outer, inner = loops.spans(c, s, h, 48, 48, -1.5), loops.spans(c, s, h, 48, 48, 1.5)
    cols = np.arange(48)
    ring = ((outer[0][:, None] <= cols) & (cols <= outer[1][:, None])) & ~(
        (inner[0][:, None] <= cols) & (cols <= inner[1][:, None])
    )
    rows, found = loops.span_difference(*outer, *inner)
    assert ring.any()
    assert np.array_equal(np.stack([rows, found]), np.stack(np.nonzero(ring)))


def test_pairs_and_state_match_the_dense_offsets():
    rng = np.random.default_rng(1)
    th, h = random_polygon(rng, k=12)
    x, y = pixel_centres(40, 44)
    c, s = np.cos(th), np.sin(th)
    dense = c[None] * x[:, None] + s[None] * y[:, None] - h[None]  # (P, K)
    pixel, edge = loops.near_pairs(x, y, c, s, h, 3.5)
    assert np.array_equal(np.stack([pixel, edge]), np.stack(np.nonzero(dense > -3.5)))
    a, top, others = loops.edge_state(pixel, edge, x, y, c, s, h)
    assert np.allclose(a, dense[pixel, edge])
    near = np.where(dense > -3.5, dense, -np.inf)
    assert np.allclose(top, near.max(1))
    for m in rng.choice(pixel.size, 200, replace=False):
        rest = np.delete(near[pixel[m]], edge[m])
        assert others[m] == pytest.approx(rest.max()) or (others[m] == -np.inf and np.isneginf(rest).all())


def test_best_moves_gain_is_the_exact_decrease_of_F_for_one_edge():
    """Moving one edge as proposed, the others fixed, lowers F on the pixels by exactly
    the gain (no rotation here, so the move is a pure offset)."""
    rng = np.random.default_rng(3)
    th, h = random_polygon(rng, k=8, radius=15.0)
    x, y = pixel_centres(48, 48)
    w = rng.normal(size=x.size)
    c, s = np.cos(th), np.sin(th)
    pixel, edge = loops.near_pairs(x, y, c, s, h, 3.5)
    a, _, others = loops.edge_state(pixel, edge, x, y, c, s, h)
    movable = (others <= 0) & (np.abs(a) < 3.0)
    _, new_h, gain = loops.best_moves(pixel, edge, movable, a, x, y, w, c, s, h, c[None], s[None], 2.5, 0.05, 102)
    before = w[inside(x, y, th, h)].sum()
    moved = [j for j in range(th.size) if gain[j] > 1e-9]
    assert moved
    for j in moved:
        h2 = h.copy()
        h2[j] = new_h[j]
        after = w[inside(x, y, th, h2)].sum()
        assert before - after == pytest.approx(gain[j], abs=1e-9)


def test_gaps_are_the_nearest_kept_and_cut_pixels_per_edge():
    rng = np.random.default_rng(4)
    th, h = random_polygon(rng, k=7)
    x, y = pixel_centres(50, 50)
    c, s = np.cos(th), np.sin(th)
    pixel, edge = loops.near_pairs(x, y, c, s, h, 3.0)
    a, _, others = loops.edge_state(pixel, edge, x, y, c, s, h)
    kept, cut = loops.gaps(edge, a, others, th.size)
    for j in range(th.size):
        own = (edge == j) & (others <= 0)
        assert kept[j] == a[own & (a <= 0)].max(initial=-np.inf)
        assert cut[j] == a[own & (a > 0)].min(initial=np.inf)
    assert np.isfinite(kept).all() and np.isfinite(cut).sum() >= 3


@pytest.mark.parametrize("seed", range(4))
def test_a_polish_sweep_never_raises_F_and_centring_keeps_the_pixels(seed):
    rng = np.random.default_rng(seed)
    th, h = random_polygon(rng, k=10, radius=14.0)
    x, y = pixel_centres(40, 40)
    w = np.where(np.hypot(x - 2, y + 1) < 12, -1.0, 1.0) + rng.normal(0, 0.3, x.size)
    colour = np.argsort(np.argsort(th)) % 3
    th2, h2 = loops.polish_sweep(x, y, w, th, h, colour, 3.0, np.array([-0.03, 0.0, 0.03]), 0.05, 102)
    before, after = w[inside(x, y, th, h)].sum(), w[inside(x, y, th2, h2)].sum()
    assert after <= before
    assert after < before - 1.0  # a random start is far from the disk: the sweep moves
    h3, margin = loops.centre_offsets(x, y, th2, h2, 3.0)
    assert np.array_equal(inside(x, y, th2, h3), inside(x, y, th2, h2))
    offsets = np.cos(th2)[:, None] * x + np.sin(th2)[:, None] * y - h3[:, None]
    assert margin == pytest.approx(np.abs(offsets).min()) and margin > 0  # the nearest pixel to any edge
