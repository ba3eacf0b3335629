"""The fit's compiled inner loops against their definitions, written out with numpy."""

import numpy as np
import pytest
import reference_loops
from numba import njit
from reference_loops import block_lattice, row_sums

from sam_convex import loops, polygon
from sam_convex.polygon import inside


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


@pytest.mark.parametrize("k", [12, 70])  # 70: more edges than a word has bits
def test_pairs_and_state_match_the_dense_offsets(k):
    rng = np.random.default_rng(1)
    th, h = random_polygon(rng, k=k)
    x, y = pixel_centres(40, 44)
    c, s = np.cos(th), np.sin(th)
    dense = c[None] * x[:, None] + s[None] * y[:, None] - h[None]  # (P, K)
    pixel, edge, a, top, others = loops.near_state(x, y, c, s, h, 3.5)
    assert np.array_equal(np.stack([pixel, edge]), np.stack(np.nonzero(dense > -3.5)))
    # the state found with the pairs is edge_state's, bit for bit
    for got, want in zip((a, top, others), loops.edge_state(pixel, edge, x, y, c, s, h)):
        assert np.array_equal(got, want)
    assert np.allclose(a, dense[pixel, edge])
    near = np.where(dense > -3.5, dense, -np.inf)
    assert np.allclose(top, near.max(1))
    for m in rng.choice(pixel.size, 200, replace=False):
        rest = np.delete(near[pixel[m]], edge[m])
        assert others[m] == pytest.approx(rest.max()) or (others[m] == -np.inf and np.isneginf(rest).all())


def offset_moves(x, y, w, th, h, radius=3.0):
    """`loops.best_moves` without rotations, every movable pair: (new h (K,), gain (K,))."""
    c, s = np.cos(th), np.sin(th)
    pixel, edge, a, _, others = loops.near_state(x, y, c, s, h, radius + 0.5)
    movable = (others <= 0) & (np.abs(a) < radius)
    n_bins = int(np.ceil(2 * (radius - 0.5) / 0.05)) + 2
    _, new_h, gain = loops.best_moves(
        pixel, edge, movable, a, x, y, w, c, s, h, c[None], s[None], radius - 0.5, 0.05, n_bins
    )
    return new_h, gain


def test_best_moves_gain_is_the_exact_decrease_of_F_for_one_edge():
    """Moving one edge as proposed, the others fixed, lowers F on the pixels by exactly
    the gain (no rotation here, so the move is a pure offset)."""
    rng = np.random.default_rng(3)
    th, h = random_polygon(rng, k=8, radius=15.0)
    x, y = pixel_centres(48, 48)
    w = rng.normal(size=x.size)
    new_h, gain = offset_moves(x, y, w, th, h)
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
    _, edge, a, _, others = loops.near_state(x, y, c, s, h, 3.0)
    kept, cut = loops.gaps(edge, a, others, th.size)
    for j in range(th.size):
        own = (edge == j) & (others <= 0)
        assert kept[j] == a[own & (a <= 0)].max(initial=-np.inf)
        assert cut[j] == a[own & (a > 0)].min(initial=np.inf)
    assert np.isfinite(kept).all() and np.isfinite(cut).sum() >= 3


def soft_disk(rng, hh=44, ww=52):
    """A soft disk with a bite and noise: (p (hh, ww), w = 1 - 2p)."""
    yy, xx = np.mgrid[:hh, :ww]
    p = 1 / (1 + np.exp(np.hypot(xx - ww / 2 - 1.3, yy - hh / 2 + 0.7) - 14.0))
    p[: hh // 3, ww // 2 : ww // 2 + 5] *= 0.2
    p = np.clip(p + rng.normal(0, 0.15, p.shape), 0, 1)
    return p, 1 - 2 * p


@pytest.mark.parametrize("seed", range(6))
def test_the_polish_sweep_and_centring_are_the_numpy_codes_bit_for_bit(seed):
    rng = np.random.default_rng(seed)
    p, w = soft_disk(rng)
    x, y = pixel_centres(*p.shape)
    th, h = random_polygon(rng, k=10 + seed, radius=12.0)
    for scale in (2.0, 1.0, 0.5):
        rotations = np.asarray(polygon.ROTATIONS) * scale
        ours = polygon.polish(x, y, w.ravel(), th, h, 3.0, rotations, polygon.BIN_WIDTH)
        numpy_code = reference_loops.polish(x, y, w.ravel(), th, h, 3.0, rotations, polygon.BIN_WIDTH)
        assert np.array_equal(ours[0], numpy_code[0]) and np.array_equal(ours[1], numpy_code[1])
        moved = not np.array_equal(ours[1], h)
        th, h = ours
    assert moved or seed  # the sweeps moved the random start
    ours, numpy_code = polygon.centre_edges(x, y, th, h, 3.0), reference_loops.centre_edges(x, y, th, h, 3.0)
    assert np.array_equal(ours[0], numpy_code[0]) and ours[1] == numpy_code[1]


@pytest.mark.parametrize("seed", range(6))
def test_the_cut_search_is_the_numpy_code_bit_for_bit(seed):
    rng = np.random.default_rng(seed)
    _, w = soft_disk(rng, 70, 64)
    lx, ly, lw, block = block_lattice(w, 16)
    th, h = random_polygon(rng, k=12, radius=30.0)
    cum = row_sums(w)
    args = (lx, ly, lw, th, h, 64, 8, float(block), 1e-3, cum)
    ours, numpy_code = polygon.greedy_cuts(*args), reference_loops.greedy_cuts(*args)
    assert ours[0].size > th.size  # cuts were added
    assert np.array_equal(ours[0], numpy_code[0]) and np.array_equal(ours[1], numpy_code[1])
    assert polygon.polygon_cost(cum, *ours) == pytest.approx(reference_loops.polygon_cost(cum, *numpy_code))


@pytest.mark.parametrize("seed", range(4))
def test_a_polish_sweep_lowers_F_and_centring_puts_edges_midway(seed):
    rng = np.random.default_rng(seed)
    th, h = random_polygon(rng, k=10, radius=14.0)
    x, y = pixel_centres(40, 40)
    w = np.where(np.hypot(x - 2, y + 1) < 12, -1.0, 1.0) + rng.normal(0, 0.3, x.size)
    colour = np.argsort(np.argsort(th)) % 3
    th2, h2 = loops.polish_sweep(x, y, w, th, h, colour, 3.0, np.array([-0.03, 0.0, 0.03]), 0.05, 102)
    before, after = w[inside(x, y, th, h)].sum(), w[inside(x, y, th2, h2)].sum()
    assert after < before - 1.0  # a random start is far from the disk: the sweep moves
    h3, margin = loops.centre_offsets(x, y, th2, h2, 3.0)
    assert not np.array_equal(h3, h2)
    assert np.array_equal(inside(x, y, th2, h3), inside(x, y, th2, h2))
    before = np.cos(th2)[:, None] * x + np.sin(th2)[:, None] * y - h2[:, None]  # (K, P)
    members = inside(x, y, th2, h2)
    checked = 0
    for j in range(th2.size):
        # The pixels only edge j decides: it moves to the middle of their gap.
        alone = np.delete(before, j, axis=0).max(0) <= 0
        kept, cut = before[j][alone & members], before[j][alone & ~members]
        if kept.size and cut.size and kept.max() > -3:
            assert h3[j] - h2[j] == pytest.approx((kept.max() + cut.min()) / 2, abs=1e-12)
            checked += 1
    assert checked >= 3
    offsets = before - (h3 - h2)[:, None]
    assert margin == pytest.approx(np.abs(offsets).min()) and margin > 0  # the nearest pixel to any edge


def test_when_all_edges_at_once_make_F_worse_the_colour_classes_move():
    """A square whose four outer strips each pay to take in, but whose corners cost far
    more: each edge alone gains, all four at once take in the corners too."""
    x, y = pixel_centres(20, 20)
    w = np.ones(x.size)
    w[(np.abs(x) < 5) & (np.abs(y) < 5)] = -1.0
    strip = ((np.abs(x) == 5.5) & (np.abs(y) < 5)) | ((np.abs(y) == 5.5) & (np.abs(x) < 5))
    w[strip] = -1.0
    w[(np.abs(x) == 5.5) & (np.abs(y) == 5.5)] = 100.0
    th, h = np.array([0.0, np.pi / 2, np.pi, 3 * np.pi / 2]), np.full(4, 5.2)
    alone, gain = offset_moves(x, y, w, th, h)
    before = w[inside(x, y, th, h)].sum()
    assert (gain > 0).all()
    assert w[inside(x, y, th, alone)].sum() > before  # all four at once: worse
    args = (x, y, w, th, h, 3.0, np.array([0.0]), 0.05)
    ours, numpy_code = polygon.polish(*args), reference_loops.polish(*args)
    assert np.array_equal(ours[0], numpy_code[0]) and np.array_equal(ours[1], numpy_code[1])
    assert w[inside(x, y, *ours)].sum() < before - 9  # one class at a time: at least a strip
    assert 0 < (ours[1] > h).sum() < 4


@pytest.mark.parametrize("shape", [(1, 1), (3, 70), (64, 64), (65, 129), (200, 7), (301, 280)])
def test_the_window_pass_is_the_numpy_code_bit_for_bit(shape):
    rng = np.random.default_rng(shape[0])
    crop = np.clip(rng.normal(0.5, 0.4, shape), 0, 1).astype(np.float32)
    sums = polygon.window_sums(crop, 64)
    w = polygon.pixel_weights(crop)
    lx, ly, lw, block = block_lattice(w, 64)
    assert np.array_equal(sums.fg, crop > 0.5)
    assert np.array_equal(sums.cum, row_sums(w))
    assert sums.lattice[3] == block
    for ours, numpy_code in zip(sums.lattice[:3], (lx, ly, lw)):
        assert np.array_equal(ours, numpy_code)
    assert sums.f_fg == pytest.approx(w[crop > 0.5].sum(), rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 127, 128, 129, 255, 1000, 4097, 100_003, 1_234_567])
def test_numpy_sum_adds_in_numpy_order(n):
    rng = np.random.default_rng(n)
    values = rng.standard_normal(n + 3) * 10.0 ** rng.uniform(-6, 6, n + 3)  # rounding shows the order
    assert loops.numpy_sum(values, 3, n) == np.sum(values[3:])


@pytest.mark.parametrize("seed", range(4))
def test_foreground_box_is_the_bounding_box_of_p_above_half(seed):
    rng = np.random.default_rng(seed)
    p = np.zeros((37, 53), np.float32)
    r0, c0 = rng.integers(0, 20, 2)
    p[r0 : r0 + 9, c0 : c0 + 17] = rng.uniform(0.3, 1.0, (9, 17))
    p[5, 50] = 0.5  # not above a half
    p[[0, 36, 20], [0, 52, 1]] = [np.nan, 1.0 + 1e-6, -1e-7]  # values outside [0, 1]
    rows, cols = np.nonzero(p > 0.5)
    found = loops.foreground_box(p)
    assert found == (rows.min(), rows.max() + 1, cols.min(), cols.max() + 1, rows.size, 3)
    assert loops.foreground_box(np.ones((4, 5), np.float32)) == (0, 4, 0, 5, 20, 0)
    assert loops.foreground_box(np.full((4, 5), np.inf, np.float32)) == (0, 4, 0, 5, 20, 20)
    assert loops.foreground_box(np.zeros((4, 5), np.float32)) == (0, 0, 0, 0, 0, 0)


def test_masked_weight_sum_is_numpys_sum_of_the_weights():
    rng = np.random.default_rng(3)
    p = rng.random((300, 400)).astype(np.float32)
    mask = rng.random((300, 400)) < 0.7
    view = (p[10:290, 7:390], mask[10:290, 7:390])  # windows of the image, not contiguous
    assert loops.masked_weight_sum(*view) == polygon.pixel_weights(view[0][view[1]]).sum()


def point_sets():
    """Contour-like point sets: blobs, many-sided hulls, a segment, a point, collinear
    and repeated points (pixel centres, as contours hold them)."""
    rng = np.random.default_rng(11)
    found = []
    for k in range(12):
        r = rng.uniform(3, 200)
        t = np.sort(rng.uniform(0, 2 * np.pi, rng.integers(3, 400)))
        rr = r * (1 + 0.3 * np.sin(3 * t + k))
        found.append(np.round(np.stack([rr * np.cos(t), rr * np.sin(t)], 1)) + 0.5)
    found.append(np.stack([np.arange(40) + 0.5, np.full(40, 3.5)], 1))  # a horizontal segment
    found.append(np.stack([np.arange(30) * 3 + 0.5, np.arange(30) + 0.5], 1))  # a slope-1/3 line
    found.append(np.array([[2.5, -1.5]]))  # one pixel
    found.append(np.array([[0.5, 0.5], [0.5, 0.5], [4.5, 0.5], [4.5, 6.5], [0.5, 6.5], [2.5, 0.5]]))
    return found


@pytest.mark.parametrize("edges", [4, 24, 47])
def test_support_polygon_is_the_numpy_code_bit_for_bit(edges):
    for pts in point_sets():
        ours, numpy_code = polygon.support_polygon(pts, edges, 0.25), reference_loops.support_polygon(pts, edges, 0.25)
        assert np.array_equal(ours[0], numpy_code[0]) and np.array_equal(ours[1], numpy_code[1])


def test_dual_vertices_are_the_numpy_code_bit_for_bit():
    rng = np.random.default_rng(12)
    checked = 0
    for pts in point_sets():
        th, h = polygon.support_polygon(pts, 24, 0.25)
        for centre in (pts.mean(0), pts.mean(0) + rng.normal(0, 2, 2), np.array([1e4, 0.0])):
            ours, numpy_code = polygon._vertices_dual(th, h, centre), reference_loops._vertices_dual(th, h, centre)
            assert (ours is None) == (numpy_code is None)
            if ours is not None:
                assert np.array_equal(ours[0], numpy_code[0]) and np.array_equal(ours[1], numpy_code[1])
                checked += 1
    assert checked >= 20


@njit
def fused(a, b, c):
    return loops.fma(a, b, c)


@njit
def lowest_bit(word):
    return loops.trailing_zeros(word)


def test_fma_rounds_once_and_trailing_zeros_counts():
    assert fused(0.1, 10.0, -1.0) == 5.551115123125783e-17  # 0.1 * 10 is not exactly 1 ...
    assert 0.1 * 10.0 - 1.0 == 0.0  # ... but rounds to it
    words = np.array([1, 2, 12, 1 << 63], np.uint64)
    assert [lowest_bit(w) for w in words] == [0, 1, 2, 63]


def test_a_float64_target_is_read_in_float64():
    """p = 0.50000001 is above a half in float64 but 0.5 in float32: the window and the
    weights must come from the target as given, as the numpy code read it."""
    p = np.zeros((20, 30))
    p[5:9, 4:20] = 0.50000001
    assert polygon.target_window(p) == ("polygon", (5, 9, 4, 20), 0)
    sums = polygon.window_sums(p[5:9, 4:20], 64)
    assert sums.fg.all() and np.array_equal(sums.cum, row_sums(polygon.pixel_weights(p[5:9, 4:20])))


@pytest.mark.parametrize("seed", range(4))
def test_the_band_holds_every_pixel_one_edge_can_move(seed):
    """A pixel that one edge alone takes in or out by a move of less than dist px is in
    the band, next to sharp corners too; pixels farther than dist inside or outside
    every edge are not (the band costs the boundary, not the crop)."""
    rng = np.random.default_rng(seed)
    th = np.sort(rng.uniform(0, 2 * np.pi, 5 + seed))
    th[1] = th[0] + 0.25  # a sharp corner
    h = rng.uniform(10, 25, th.size)
    hh, ww, dist = 70, 90, 3.0
    idx, xp, yp, _ = polygon.band(hh, ww, th, h, dist, None)
    x, y = pixel_centres(hh, ww)
    dense = np.cos(th)[None] * x[:, None] + np.sin(th)[None] * y[:, None] - h[None]  # (P, K)
    top = dense.max(1)
    others = np.stack([np.delete(dense, j, 1).max(1) for j in range(th.size)], 1)
    movable = ((np.abs(dense) < dist) & (others <= 0)).any(1)
    assert movable.sum() > 100 and np.isin(np.flatnonzero(movable), idx).all()
    assert np.array_equal(np.sort(idx), idx) and np.array_equal(xp, x[idx]) and np.array_equal(yp, y[idx])
    assert (top[idx] <= dist + 1e-6).all() and (top[idx] > -dist - 1e-6).all()


def test_inside_cost_is_the_sum_over_the_state_bit_for_bit():
    rng = np.random.default_rng(9)
    th, h = random_polygon(rng, k=10)
    x, y = pixel_centres(50, 50)
    w = rng.normal(size=x.size)
    c, s = np.cos(th), np.sin(th)
    pixel, edge, *_ = loops.near_state(x, y, c, s, h, 3.5)
    h2 = h + rng.uniform(-1, 1, h.size)  # a proposed move
    _, top, _ = loops.edge_state(pixel, edge, x, y, c, s, h2)
    assert loops.inside_cost(pixel, edge, x, y, w, c, s, h2) == loops._inside_sum(w, top)


def test_span_difference_lists_the_outer_spans_less_the_inner_ones():
    """Against dense rows, with inner spans inside, across, beside and without the outer."""
    rng = np.random.default_rng(13)
    rows, ww = 400, 30
    spans = rng.integers(-2, ww + 2, (4, rows))
    outer_lo, outer_hi, inner_lo, inner_hi = spans
    found = loops.span_difference(outer_lo, outer_hi, inner_lo, inner_hi)
    cols = np.arange(-2, ww + 2)[None]
    dense = (cols >= outer_lo[:, None]) & (cols <= outer_hi[:, None])
    dense &= ~((cols >= inner_lo[:, None]) & (cols <= inner_hi[:, None]))
    r, k = np.nonzero(dense)
    assert np.array_equal(found[0], r) and np.array_equal(found[1], k - 2)


def test_a_degenerate_polygons_band_is_the_whole_crop():
    th, h = np.array([0.0, np.pi / 2, np.pi]), np.array([-1.0, 5.0, -1.0])  # x <= -1 and x >= 1: empty
    idx, xp, yp, centre = polygon.band(9, 14, th, h, 3.5, None)
    x, y = pixel_centres(9, 14)
    assert centre is None and np.array_equal(idx, np.arange(9 * 14))
    assert np.array_equal(xp, x) and np.array_equal(yp, y)


def test_count_outside_counts_nan_infinities_and_values_beyond_the_bounds():
    values = np.random.default_rng(0).uniform(-0.5, 1.5, 10_001).astype(np.float32)
    values[[3, 70, 9000]] = [np.nan, np.inf, -np.inf]
    finite = values[np.isfinite(values)]
    expected = 3 + np.count_nonzero((finite < 0) | (finite > 1))
    assert loops.count_outside(values, 0.0, 1.0) == expected
    big = float(np.finfo(np.float32).max)
    assert loops.count_outside(values, -big, big) == 3
    assert loops.count_outside(np.float32([0.0, 1.0, 0.5]), 0.0, 1.0) == 0  # the bounds are inside
    many = np.full(3 * (1 << 20) + 5, 2.0, np.float32)  # counted block by block
    assert loops.count_outside(many, 0.0, 1.0) == many.size
