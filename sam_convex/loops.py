"""The polygon fit's inner loops, compiled by numba (`sam_convex.polygon` calls them).

Each loop does in one pass what numpy did in many small calls: the fit is a few thousand
boundary pixels times a few dozen edges, where numpy's per-call cost, not arithmetic, set
the time. The loops reproduce the array code they replaced to the last bit (checked,
ICNN weights included, on the benchmark's, photo-size and noise masks when they landed;
the array code is kept as the oracle of tests/test_loops.py):

* histograms, running sums and offsets add in the order numpy's `bincount`, `cumsum`
  and elementwise code did, and `numpy_sum` in numpy's pairwise order where numpy
  summed an array (block sums, the reported distance);
* numpy's float64 cos, sin, hypot, mod and round equal what these loops call, on the
  machines measured (arctan2 does not: it stays in numpy);
* where the array code used a BLAS matrix product, the loops use the fused
  multiply-add that the product used (`fma`).

Four sums differ in rounding only: the exact polygon cost (`span_cost`), the polish's
total F and F(fg) (`window_pass`, by columns) are plain running sums where numpy summed
pairwise, and the polish's pairs are chosen in float64 where numpy used float32; a
near-tie within ~1e-12 of F could go the other way.

Shapes: P band pixels, K edges, R rotations, B offset bins; all float64 unless stated.
The first call after install compiles them (about 15 s here, once: numba caches them on
disk; set NUMBA_CACHE_DIR where the install is read-only).
"""

from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.extending import intrinsic


@intrinsic
def fma(typingctx, a, b, c):
    """a * b + c rounded once (LLVM's fma), in a's float type. numba has no fused
    multiply-add of its own; the BLAS matrix products the array code used compute
    n . x as fma(y, n_y, x * n_x), so the loops that replace them use this."""

    def codegen(context, builder, signature, args):
        return builder.fma(*args)

    return a(a, b, c), codegen


@intrinsic
def trailing_zeros(typingctx, word):
    """The index of the lowest set bit of a uint64 (LLVM's cttz; 64 for 0)."""

    def codegen(context, builder, signature, args):
        return builder.cttz(args[0], context.get_constant(types.boolean, False))

    return word(word), codegen


@njit(cache=True, nogil=True)
def near_state(xp, yp, c, s, h, reach):
    """The (pixel, edge) pairs with n_j . x_i - h_j > -reach (an edge farther inside a
    pixel than `reach` cannot change its membership in one move), pixel by pixel, and
    their `edge_state`: (pixel (M,) int64, edge (M,) int64, a, top, others)."""
    n_px, n_edges = xp.size, c.size
    if n_edges > 64:
        pixel, edge = _near_pairs_counted(xp, yp, c, s, h, reach)
        a, top, others = edge_state(pixel, edge, xp, yp, c, s, h)
        return pixel, edge, a, top, others
    # One pass over the offsets: each pixel's near edges as the bits of one word.
    bits = np.zeros(n_px, np.uint64)
    n_pairs = 0
    for j in range(n_edges):  # edge by edge: the pixel loop vectorises
        cj, sj, hj, bit = c[j], s[j], h[j], np.uint64(1) << np.uint64(j)
        for i in range(n_px):
            near = cj * xp[i] + sj * yp[i] - hj > -reach
            bits[i] |= bit if near else np.uint64(0)
            n_pairs += near
    pixel = np.empty(n_pairs, np.int64)
    edge = np.empty(n_pairs, np.int64)
    a = np.empty(n_pairs)
    top = np.full(n_px, -np.inf)
    others = np.empty(n_pairs)
    m = 0
    for i in range(n_px):
        word = bits[i]
        start = m
        first, second, ties = -np.inf, -np.inf, 0
        while word:  # one step per set bit, lowest first
            j = trailing_zeros(word)
            pixel[m], edge[m] = i, j
            a[m] = c[j] * xp[i] + s[j] * yp[i] - h[j]  # as edge_state computes it
            first, second, ties = _top_two(a[m], first, second, ties)
            m += 1
            word &= word - np.uint64(1)
        _mark_others(a, others, start, m, first, second, ties)
        top[i] = first
    return pixel, edge, a, top, others


@njit(cache=True, nogil=True)
def _near_pairs_counted(xp, yp, c, s, h, reach):
    """The pairs of `near_state` for more than 64 edges: counted first, then filled (a
    degenerate polygon's band is the whole window)."""
    n_px, n_edges = xp.size, c.size
    n_pairs = 0
    for i in range(n_px):
        for j in range(n_edges):
            if c[j] * xp[i] + s[j] * yp[i] - h[j] > -reach:
                n_pairs += 1
    pixel = np.empty(n_pairs, np.int64)
    edge = np.empty(n_pairs, np.int64)
    m = 0
    for i in range(n_px):
        for j in range(n_edges):
            if c[j] * xp[i] + s[j] * yp[i] - h[j] > -reach:
                pixel[m], edge[m] = i, j
                m += 1
    return pixel, edge


@njit(inline="always")
def _top_two(offset, first, second, ties):
    """One offset of a pixel's pairs into (its largest offset, how often it occurs, the
    largest below it)."""
    if offset > first:
        return offset, first, 1
    if offset == first:
        return first, second, ties + 1
    if offset > second:
        return first, offset, ties
    return first, second, ties


@njit(inline="always")
def _mark_others(a, others, start, stop, first, second, ties):
    """others[m] for the pairs start:stop of one pixel (offsets a; their `_top_two`):
    the largest offset of the pixel's other pairs (a tie at the top counts as another;
    -inf if none)."""
    if ties >= 2:
        second = first
    for m in range(start, stop):
        others[m] = second if a[m] == first else first


@njit(cache=True, nogil=True)
def edge_state(pixel, edge, xp, yp, c, s, h):
    """Offsets and membership of pairs (`near_state`) for the edges c, s, h.

    Returns:
        a (M,): n_j . x_i - h_j per pair; top (P,): per pixel its largest offset
        (-inf if it has no pair; the pixel is inside iff top <= 0); others (M,): per
        pair the largest offset of the pixel's other pairs (-inf if none; a tie at
        the top counts as another).
    """
    n_pairs = pixel.size
    a = np.empty(n_pairs)
    top = np.full(xp.size, -np.inf)
    others = np.empty(n_pairs)
    start = 0
    while start < n_pairs:  # the pairs of one pixel are contiguous
        i = pixel[start]
        stop = start
        first, second, ties = -np.inf, -np.inf, 0
        while stop < n_pairs and pixel[stop] == i:
            j = edge[stop]
            a[stop] = c[j] * xp[i] + s[j] * yp[i] - h[j]
            first, second, ties = _top_two(a[stop], first, second, ties)
            stop += 1
        _mark_others(a, others, start, stop, first, second, ties)
        top[i] = first
        start = stop
    return a, top, others


@njit(cache=True, nogil=True)
def best_moves(pixel, edge, movable, a, xp, yp, wp, c, s, h, c2, s2, lim, bin_width, n_bins):
    """The best rotation and offset of every edge given the others (the polish's move).

    Args:
        pixel, edge, a: the pairs (`near_state`) and their offsets; movable: (M,) bool,
            the pairs whose pixel changes side through this edge alone within
            `lim` + 0.5 px.
        xp, yp, wp: (P,) band pixels and their weights w.
        c, s, h: (K,) the edges; c2, s2: (R, K) cos and sin of each edge's angle plus
            each rotation.
        lim, bin_width, n_bins: offsets within +-lim px in bins of bin_width; bin 0
            collects those below -lim, bin n_bins - 1 those above.
    Returns:
        (rotation (K,) int64: the index into R of the first best rotation; h (K,):
        the new offsets; gain (K,) >= 0: the exact decrease of F per edge). Rotation
        and offset mean a move only where the gain is > 0: elsewhere they are the best
        of the non-improving ones, and the caller keeps the edge.
    """
    n_edges, n_rot = c.size, c2.shape[0]
    count = np.zeros(n_edges, np.int64)
    along = np.zeros(n_edges)
    base = np.zeros(n_edges)
    for m in range(pixel.size):
        if movable[m]:
            i, j = pixel[m], edge[m]
            count[j] += 1
            along[j] += yp[i] * c[j] - xp[i] * s[j]
            base[j] += wp[i] * (1.0 if a[m] <= 0 else 0.0)
    # Rotation centre on each edge line: the mean foot point of its movable pixels.
    px = np.empty(n_edges)
    py = np.empty(n_edges)
    for j in range(n_edges):
        tb = along[j] / max(count[j], 1)
        px[j] = h[j] * c[j] - tb * s[j]
        py[j] = h[j] * s[j] + tb * c[j]
    hb = np.empty((n_rot, n_edges))
    for r in range(n_rot):
        for j in range(n_edges):
            hb[r, j] = px[j] * c2[r, j] + py[j] * s2[r, j]
    hist = np.zeros((n_edges, n_rot, n_bins))  # an edge's rotations side by side
    scale = 1.0 / bin_width
    # Per edge, its rotations' (cos, sin, offset) side by side.
    rotated = np.empty((n_edges, n_rot, 3))
    for j in range(n_edges):
        for r in range(n_rot):
            rotated[j, r, 0], rotated[j, r, 1], rotated[j, r, 2] = c2[r, j], s2[r, j], hb[r, j]
    for m in range(pixel.size):
        if movable[m]:
            i, j = pixel[m], edge[m]
            x, y, weight = xp[i], yp[i], wp[i]  # locals: the stores below cannot change them
            for r in range(n_rot):
                d = x * rotated[j, r, 0] + y * rotated[j, r, 1] - rotated[j, r, 2]
                k = 0 if d < -lim else min(int((d + lim) * scale) + 1, n_bins - 1)
                hist[j, r, k] += weight
    rotation = np.zeros(n_edges, np.int64)
    new_h = h.copy()
    gain = np.zeros(n_edges)
    for j in range(n_edges):
        if count[j] == 0:
            continue
        best, best_r, best_k = -np.inf, 0, 0
        for r in range(n_rot):
            # The cut after bin k: F changes by the running sum of bins 0..k (the last bin
            # never moves inside); the first smallest one, as argmin takes it.
            run, low, low_k = 0.0, np.inf, 0
            for k in range(n_bins - 1):
                run += hist[j, r, k]
                if run < low:
                    low, low_k = run, k
            g = base[j] - low
            if g > best:
                best, best_r, best_k = g, r, low_k
        gain[j] = max(best, 0.0)
        rotation[j] = best_r
        new_h[j] = hb[best_r, j] - lim + best_k * bin_width
    return rotation, new_h, gain


@njit(cache=True, nogil=True)
def gaps(edge, a, others, n_edges):
    """Per edge, the offsets of the nearest kept and the nearest cut pixel among the
    pairs that change side through that edge alone (`others` <= 0): (inside (K,) <= 0,
    -inf if none; outside (K,) > 0, +inf if none)."""
    inside = np.full(n_edges, -np.inf)
    outside = np.full(n_edges, np.inf)
    for m in range(edge.size):
        if others[m] <= 0:
            j, d = edge[m], a[m]
            if d <= 0:
                inside[j] = max(inside[j], d)
            else:
                outside[j] = min(outside[j], d)
    return inside, outside


@njit(cache=True, nogil=True)
def _inside_sum(wp, top):
    """The sum of wp over the pixels inside (top <= 0)."""
    total = 0.0
    for i in range(wp.size):
        if top[i] <= 0:
            total += wp[i]
    return total


@njit(cache=True, nogil=True)
def inside_cost(pixel, edge, xp, yp, wp, c, s, h):
    """`_inside_sum` of the `edge_state` of the edges c, s, h (the same sum, bit for
    bit), without the per-pair state: the test of a proposed move."""
    top = np.full(xp.size, -np.inf)
    for m in range(pixel.size):
        i, j = pixel[m], edge[m]
        top[i] = max(top[i], c[j] * xp[i] + s[j] * yp[i] - h[j])
    return _inside_sum(wp, top)


@njit(cache=True, nogil=True)
def polish_sweep(xp, yp, wp, th, h, colour, radius, rotations, bin_width, n_bins):
    """One sweep of the polish (`sam_convex.polygon.polish`): every edge takes its best
    move (`best_moves`) given the others, all edges at once; if F gets worse, one
    colour class (0, 1, 2: angular non-neighbours) at a time.

    Args:
        xp, yp, wp: (P,) band pixels and their weights; th, h: (K,) the polygon;
            colour: (K,) int64 classes; rotations: (R,) rad; offsets within
            +-(radius - 0.5) px in n_bins bins of bin_width.
    Returns:
        (th (K,), h (K,)).
    """
    lim = radius - 0.5
    n_edges = th.size
    c, s = np.cos(th), np.sin(th)
    pixel, edge, a, top, others = near_state(xp, yp, c, s, h, radius + 0.5)
    cost = _inside_sum(wp, top)
    movable = (others <= 0) & (np.abs(a) < radius)
    groups = np.array([-1, 0, 1, 2])  # -1: all edges at once
    g, end = 0, 1
    while g < end:
        group = groups[g]
        g += 1
        sel = movable.copy()
        if group >= 0:
            for m in range(edge.size):
                sel[m] = sel[m] and colour[edge[m]] == group
        t2 = th.reshape(1, -1) + rotations.reshape(-1, 1)  # (R, K)
        c2, s2 = np.cos(t2), np.sin(t2)
        rot, h_moved, best = best_moves(pixel, edge, sel, a, xp, yp, wp, c, s, h, c2, s2, lim, bin_width, n_bins)
        if not (best > 0).any():
            continue
        new_th, new_h = th.copy(), h.copy()
        for j in range(n_edges):
            if best[j] > 1e-9:
                new_th[j], new_h[j] = t2[rot[j], j], h_moved[j]
        new_c, new_s = np.cos(new_th), np.sin(new_th)
        new_cost = inside_cost(pixel, edge, xp, yp, wp, new_c, new_s, new_h)
        if new_cost < cost - 1e-9:
            th, h, c, s, cost = new_th, new_h, new_c, new_s, new_cost
            if g < end:  # the next class moves from here
                a, _, others = edge_state(pixel, edge, xp, yp, c, s, h)
                movable = (others <= 0) & (np.abs(a) < radius)
        elif group < 0:
            end = 4  # neighbours moved into each other: one class at a time
    return th, h


@njit(cache=True, nogil=True)
def centre_offsets(xp, yp, th, h, radius):
    """Each edge moved to the middle of the gap between the nearest kept and the
    nearest cut band pixel (`gaps`; membership unchanged; no pixel on a side: the
    edge shifts by at most 0.25 px; if a pixel would change side, h is returned
    unchanged). Returns (h (K,), the smallest |offset| over the (pixel, edge) pairs of
    `near_state(..., radius)`, or `radius` if there are none)."""
    c, s = np.cos(th), np.sin(th)
    pixel, edge, a, top, others = near_state(xp, yp, c, s, h, radius)
    kept, cut = gaps(edge, a, others, th.size)
    h2 = h.copy()
    for j in range(th.size):
        d_in = kept[j] if np.isfinite(kept[j]) else min(-0.5, cut[j] - 1.0)
        d_out = cut[j] if np.isfinite(cut[j]) else max(0.5, kept[j] + 1.0)
        h2[j] = h[j] + (d_in + d_out) / 2
    a2, top2, _ = edge_state(pixel, edge, xp, yp, c, s, h2)
    for i in range(xp.size):
        if (top2[i] <= 0) != (top[i] <= 0):
            h2, a2 = h, a  # a pixel cut by two edges at once changed side: keep the edges
            break
    return h2, np.abs(a2).min() if a2.size else radius


@njit(cache=True, nogil=True)
def spans(c, s, h, hh, ww, shift):
    """Per row of an (hh, ww) crop (window-local px, origin at its centre), the columns
    lo..hi (int64, (hh,) each; empty where lo > hi) whose pixel centres lie inside every
    edge moved in by `shift` px: a convex polygon covers one span of every row."""
    left = np.full(hh, -np.inf)
    right = np.full(hh, np.inf)
    empty = np.zeros(hh, np.bool_)
    for j in range(c.size):  # edge by edge: the row loop vectorises
        hj, sj, cj = h[j] - shift, s[j], c[j]
        for row in range(hh):
            bound = hj - sj * (row + 0.5 - hh / 2)  # c x <= bound
            if cj < 0:
                left[row] = max(left[row], bound / cj)
            elif cj > 0:
                right[row] = min(right[row], bound / cj)
            elif bound < 0:
                empty[row] = True
    lo = np.empty(hh, np.int64)
    hi = np.empty(hh, np.int64)
    for row in range(hh):
        lo[row] = int(min(max(np.ceil(left[row] - 0.5 + ww / 2), 0.0), ww))
        hi[row] = -1 if empty[row] else int(min(max(np.floor(right[row] - 0.5 + ww / 2), -1.0), ww - 1))
    return lo, hi


@njit(cache=True, nogil=True)
def span_cost(cum, c, s, h):
    """F of the polygon: the sum of w over the pixel centres inside it, read off the
    (hh, ww + 1) row sums `cum` one span per row."""
    hh, ww = cum.shape[0], cum.shape[1] - 1
    lo, hi = spans(c, s, h, hh, ww, 0.0)
    total = 0.0
    for row in range(hh):
        if hi[row] >= lo[row]:
            total += cum[row, hi[row] + 1] - cum[row, lo[row]]
    return total


@njit(cache=True, nogil=True)
def fill_spans(out, lo, hi):
    """Set out[row, lo[row]:hi[row] + 1] for every row of an (hh, ww) bool array."""
    for row in range(lo.size):
        for col in range(lo[row], hi[row] + 1):
            out[row, col] = True


@njit(cache=True, nogil=True)
def _outside_inner(outer_lo, outer_hi, inner_lo, inner_hi, row):
    """Row `row`'s columns of the outer span left and right of the inner one: (a, b, c,
    d), columns a..b and c..d (each empty when its end is before its start)."""
    lo, hi = outer_lo[row], outer_hi[row]
    if inner_lo[row] > inner_hi[row]:  # no inner span: the whole outer one
        return lo, hi, hi + 1, hi
    return lo, min(hi, inner_lo[row] - 1), max(lo, inner_hi[row] + 1), hi


@njit(cache=True, nogil=True)
def span_difference(outer_lo, outer_hi, inner_lo, inner_hi):
    """The pixels in the outer spans but not in the inner ones, row by row as
    `np.nonzero` lists them: (rows (M,) int64, cols (M,) int64). Costs the pixels
    listed, not the spans."""
    n = 0
    for row in range(outer_lo.size):
        a, b, c, d = _outside_inner(outer_lo, outer_hi, inner_lo, inner_hi, row)
        n += max(b - a + 1, 0) + max(d - c + 1, 0)
    rows = np.empty(n, np.int64)
    cols = np.empty(n, np.int64)
    m = 0
    for row in range(outer_lo.size):
        a, b, c, d = _outside_inner(outer_lo, outer_hi, inner_lo, inner_hi, row)
        for col in range(a, b + 1):
            rows[m], cols[m] = row, col
            m += 1
        for col in range(c, d + 1):
            rows[m], cols[m] = row, col
            m += 1
    return rows, cols


@njit(cache=True, nogil=True)
def ring_pixels(c, s, h, hh, ww, reach):
    """The pixels of an (hh, ww) crop inside every edge moved out by `reach` px but not
    inside every edge moved in by `reach` (`spans` of both; the band of
    `sam_convex.polygon.band`), row by row: flat indices (M,) int64 and pixel centres
    x, y (M,) in window-local px (origin at the window's centre)."""
    rows, cols = span_difference(*spans(c, s, h, hh, ww, -reach), *spans(c, s, h, hh, ww, reach))
    idx = np.empty(rows.size, np.int64)
    x = np.empty(rows.size)
    y = np.empty(rows.size)
    for m in range(rows.size):
        idx[m] = rows[m] * ww + cols[m]
        x[m] = cols[m] + 0.5 - ww / 2
        y[m] = rows[m] + 0.5 - hh / 2
    return idx, x, y


@njit(cache=True, nogil=True)
def support(points, normals):
    """The support values max_i n_j . x_i of (P, 2) points in K directions (K, 2):
    (K,), each product rounded as the BLAS product the array code used rounded it, so
    the maxima are the same to the last bit: fma(y, n_y, x * n_x), or for a single
    point (BLAS's matrix-vector kernel) fma(x, n_x, y * n_y)."""
    out = np.full(normals.shape[0], -np.inf)
    if points.shape[0] == 1:
        for j in range(normals.shape[0]):
            out[j] = fma(points[0, 0], normals[j, 0], points[0, 1] * normals[j, 1])
        return out
    for i in range(points.shape[0]):
        x, y = points[i, 0], points[i, 1]
        for j in range(normals.shape[0]):
            out[j] = max(out[j], fma(y, normals[j, 1], x * normals[j, 0]))
    return out


@njit(cache=True, nogil=True)
def cut_projections(x, y, w, c, s, h, cut_nx, cut_ny):
    """The cut search's points: the lattice points x, y (L,) inside the polygon c, s, h
    (K,), projected on M float32 directions cut_nx, cut_ny as fma(y, n_y, x * n_x) (the
    float32 BLAS product the array code used). Returns (proj (M, P) float32, their
    weights w (P,))."""
    keep = np.ones(x.size, np.bool_)
    for j in range(c.size):  # edge by edge: the point loop vectorises
        for i in range(x.size):
            keep[i] &= c[j] * x[i] + s[j] * y[i] - h[j] <= 0
    xi, yi = x[keep].astype(np.float32), y[keep].astype(np.float32)
    proj = np.empty((cut_nx.size, xi.size), np.float32)
    for m in range(cut_nx.size):
        nx, ny = cut_nx[m], cut_ny[m]
        for i in range(xi.size):
            proj[m, i] = fma(yi[i], ny, xi[i] * nx)
    return proj, w[keep]


@njit(cache=True, nogil=True)
def greedy_cuts(proj, top, wi, c, s, h, cut_c, cut_s, cum, max_cuts, bin_width, min_gain):
    """The cut search: on lattice points inside the polygon, the best half-plane cut
    over M directions is proposed from a histogram of w over (direction, offset bin)
    and kept while it lowers the exact F (`span_cost` on `cum`) by more than min_gain.

    Args:
        proj: (M, P) float32 offsets of the P points along each cut direction
            (`cut_projections`); top: (M,) float32, their largest; wi: (P,) the
            points' weights.
        c, s, h: (K,) the polygon; cut_c, cut_s: (M,) the cut directions.
    Returns:
        (directions (C,) int64, offsets (C,)): the cuts added, in order.
    """
    n_dir, n_pts = proj.shape
    scale = np.float32(1.0 / bin_width)
    idx = np.empty((n_dir, n_pts), np.int64)
    n_bins = 0
    for m in range(n_dir):
        for i in range(n_pts):
            idx[m, i] = int((top[m] - proj[m, i]) * scale)  # 0 = outermost bin
            n_bins = max(n_bins, idx[m, i] + 1)
    hist = np.zeros((n_dir, n_bins))
    for m in range(n_dir):
        for i in range(n_pts):
            hist[m, idx[m, i]] += wi[i]
    alive = np.ones(n_pts, np.bool_)
    cc, ss, hh = c.copy(), s.copy(), h.astype(np.float64)
    cost = span_cost(cum, cc, ss, hh)
    chosen = np.empty(max_cuts, np.int64)
    offsets = np.empty(max_cuts)
    n_cuts = 0
    for _ in range(max_cuts):
        # Per direction the first best cut (removing bins 0..k lowers F by their sum),
        # then the first best direction.
        best, best_m, best_k = -np.inf, 0, 0
        for m in range(n_dir):
            run, top_gain, top_k = 0.0, -np.inf, 0
            for k in range(n_bins):
                run += hist[m, k]
                if run > top_gain:
                    top_gain, top_k = run, k
            if top_gain > best:
                best, best_m, best_k = top_gain, m, top_k
        if best <= min_gain:
            break
        hc = np.float64(top[best_m]) - (best_k + 1) * bin_width  # between bins k and k + 1
        cc2, ss2, hh2 = np.append(cc, cut_c[best_m]), np.append(ss, cut_s[best_m]), np.append(hh, hc)
        cost2 = span_cost(cum, cc2, ss2, hh2)
        if cost2 > cost - min_gain:
            break
        cc, ss, hh, cost = cc2, ss2, hh2, cost2
        chosen[n_cuts], offsets[n_cuts] = best_m, hc
        n_cuts += 1
        # A cut only removes points: subtract their histogram.
        removed = np.zeros((n_dir, n_bins))
        for i in range(n_pts):
            if alive[i] and np.float64(proj[best_m, i]) > hc:
                alive[i] = False
                for m in range(n_dir):
                    removed[m, idx[m, i]] += wi[i]
        hist -= removed
    return chosen[:n_cuts].copy(), offsets[:n_cuts].copy()


@njit(cache=True, nogil=True)
def _numpy_block_sum(values, start, n):
    """numpy's sum of at most 128 contiguous float64 values: 8 running sums, then the rest."""
    if n < 8:
        total = 0.0
        for i in range(n):
            total += values[start + i]
        return total
    r0, r1, r2, r3 = values[start], values[start + 1], values[start + 2], values[start + 3]
    r4, r5, r6, r7 = values[start + 4], values[start + 5], values[start + 6], values[start + 7]
    i = 8
    while i < n - n % 8:
        r0 += values[start + i]
        r1 += values[start + i + 1]
        r2 += values[start + i + 2]
        r3 += values[start + i + 3]
        r4 += values[start + i + 4]
        r5 += values[start + i + 5]
        r6 += values[start + i + 6]
        r7 += values[start + i + 7]
        i += 8
    total = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        total += values[start + i]
        i += 1
    return total


@njit(cache=True, nogil=True)
def numpy_sum(values, start, n):
    """The sum of values[start:start + n] in numpy's order (`np.sum` of a contiguous
    float64 array: pairwise, halves split at a multiple of 8 down to blocks of at most
    128, `_numpy_block_sum` within a block), so that a compiled pass gives numpy's sum
    bit for bit. The halving runs on an explicit stack: numba's on-disk cache crashed
    (a segfault on the second run) on a caller of a recursive function."""
    if n <= 128:
        return _numpy_block_sum(values, start, n)
    starts, sizes = np.empty(64, np.int64), np.empty(64, np.int64)
    waiting_for_left, left = np.empty(64, np.bool_), np.empty(64)
    depth, starts[0], sizes[0] = 0, start, n
    while True:
        first, size = starts[depth], sizes[depth]
        if size > 128:  # descend into the left half
            half = size // 2 - (size // 2) % 8
            waiting_for_left[depth] = True
            depth += 1
            starts[depth], sizes[depth] = first, half
            continue
        total = _numpy_block_sum(values, first, size)
        while True:  # hand the finished sum up
            depth -= 1
            if depth < 0:
                return total
            if waiting_for_left[depth]:  # left half done: start the right half
                left[depth], waiting_for_left[depth] = total, False
                half = sizes[depth] // 2 - (sizes[depth] // 2) % 8
                first, size = starts[depth] + half, sizes[depth] - half
                depth += 1
                starts[depth], sizes[depth] = first, size
                break
            total = left[depth] + total


@njit(cache=True, nogil=True)
def window_pass(crop, block):
    """Everything the fit reads from an (hh, ww) float32 (or float64) window crop, with
    w = 1 - 2p in float64. The row sums and block sums add in the order numpy's array
    code did (`np.cumsum` along rows; block sums down each block's columns, then
    `np.sum` across them), so they equal it bit for bit; the sum over fg adds down each
    column, then across the columns (numpy summed it pairwise).

    Returns:
        fg: (hh, ww) uint8, p > 0.5; cum: (hh, ww + 1) row sums of w with a leading 0
        column; sums: (hb * wb,) the sum of w over each block x block block (row-major;
        blocks past the crop's edge count zeros); f_fg: the sum of w over fg.
    """
    hh, ww = crop.shape
    hb, wb = -(-hh // block), -(-ww // block)
    fg = np.empty((hh, ww), np.uint8)
    cum = np.empty((hh, ww + 1))
    columns = np.zeros((hb, wb * block))  # per block row, each column's sum over its rows
    f_fg = 0.0
    # Separate loops, each simple enough to run at full speed: the row sums are chains
    # of dependent adds, so four rows go side by side.
    row = 0
    while row + 4 <= hh:
        r0 = r1 = r2 = r3 = 0.0
        cum[row, 0] = cum[row + 1, 0] = cum[row + 2, 0] = cum[row + 3, 0] = 0.0
        for col in range(ww):
            r0 += 1.0 - 2.0 * np.float64(crop[row, col])
            cum[row, col + 1] = r0
            r1 += 1.0 - 2.0 * np.float64(crop[row + 1, col])
            cum[row + 1, col + 1] = r1
            r2 += 1.0 - 2.0 * np.float64(crop[row + 2, col])
            cum[row + 2, col + 1] = r2
            r3 += 1.0 - 2.0 * np.float64(crop[row + 3, col])
            cum[row + 3, col + 1] = r3
        row += 4
    for last in range(row, hh):
        run = 0.0
        cum[last, 0] = 0.0
        for col in range(ww):
            run += 1.0 - 2.0 * np.float64(crop[last, col])
            cum[last, col + 1] = run
    in_fg = np.zeros(ww)  # per column, the sum of w over fg
    for row in range(hh):
        band = columns[row // block]
        for col in range(ww):
            w = 1.0 - 2.0 * np.float64(crop[row, col])
            band[col] += w
            in_fg[col] += w if crop[row, col] > 0.5 else 0.0
    for row in range(hh):
        for col in range(ww):
            fg[row, col] = crop[row, col] > 0.5
    for col in range(ww):
        f_fg += in_fg[col]
    sums = np.empty(hb * wb)
    for b in range(hb):
        for k in range(wb):
            sums[b * wb + k] = 0.0 + numpy_sum(columns[b], k * block, block)
    return fg, cum, sums, f_fg


@njit(inline="always")
def _outside(v, lo, hi):
    """1 (int32) if v is not in [lo, hi] (NaN is in no interval), else 0: the comparisons
    as integers, so that the loops that count them vectorise."""
    return np.int32(not (v >= lo)) | np.int32(not (v <= hi))


@njit(cache=True, nogil=True)
def count_outside(values, lo, hi):
    """How many of (n,) float32 values are not in [lo, hi] (NaN is in no interval), in
    one pass: numpy's min and max read a photo-size target twice."""
    lo, hi = np.float32(lo), np.float32(hi)
    total = 0
    for start in range(0, values.size, 1 << 20):
        # A slice per block: indexing values[start:stop] in place did not vectorise (9x slower).
        block = values[start : start + (1 << 20)]
        count = np.int32(0)  # int32: the loop vectorises
        for k in range(block.size):
            count += _outside(block[k], lo, hi)
        total += count  # int64: a block's int32 count cannot overflow
    return total


@njit(cache=True, nogil=True)
def foreground_box(p):
    """The bounding box of {p > 0.5} of an (H, W) float target in one pass: (rows
    r0:r1, cols c0:c1, the number of pixels above 0.5, the number of values outside
    [0, 1], NaN included: the check of the values, in the same pass); (0, 0, 0, 0, 0,
    outside) when no pixel is above 0.5."""
    height, width = p.shape
    per_col = np.zeros(width, np.int32)  # int32: the loop vectorises twice as wide
    r0, r1, count, outside = height, 0, 0, 0
    for row in range(height):
        in_row = np.int32(0)
        out_row = np.int32(0)
        for col in range(width):
            v = p[row, col]
            above = np.int32(v > 0.5)
            per_col[col] += above
            in_row += above
            out_row += _outside(v, np.float32(0), np.float32(1))
        outside += out_row
        if in_row:
            r0, r1 = min(r0, row), row + 1
            count += in_row
    if count == 0:
        return 0, 0, 0, 0, 0, outside
    c0, c1 = 0, width
    while per_col[c0] == 0:
        c0 += 1
    while per_col[c1 - 1] == 0:
        c1 -= 1
    return r0, r1, c0, c1, count, outside


@njit(cache=True, nogil=True)
def masked_weight_sum(p, mask):
    """The sum of w = 1 - 2p over the pixels of an (h, w) bool mask, p (h, w) float32,
    in numpy's order (`np.sum` of the gathered float64 weights, row-major)."""
    n = 0
    for row in range(mask.shape[0]):
        for col in range(mask.shape[1]):
            n += mask[row, col]
    chosen = np.empty(n)
    m = 0
    for row in range(mask.shape[0]):
        for col in range(mask.shape[1]):
            if mask[row, col]:
                chosen[m] = 1.0 - 2.0 * np.float64(p[row, col])
                m += 1
    return 0.0 + numpy_sum(chosen, 0, n)


@njit(cache=True, nogil=True)
def stable_order(keys):
    """Indices that sort keys (n,) ascending, ties in index order (numpy's stable
    argsort), by insertion: the hulls' few dozen sides do not need more, and it
    compiles in a fraction of the time numpy's sorts take under numba."""
    order = np.arange(keys.size)
    for k in range(1, keys.size):
        item = order[k]
        m = k - 1
        while m >= 0 and keys[order[m]] > keys[item]:
            order[m + 1] = order[m]
            m -= 1
        order[m + 1] = item
    return order


@njit(cache=True, nogil=True)
def hull_directions(hull, sides, normal, edges):
    """The outward normal angles of a convex hull's own sides that `support_polygon`
    keeps: (hull (V, 2) vertices in order, sides (V, 2) from each vertex to the next,
    normal (V,) one of the two normal angles of each side) -> sorted unique angles in
    [0, 2 pi), rounded to 1e-12, longest sides first when more than `edges` sides exist
    (then only edges - edges // 4 of them)."""
    n = hull.shape[0]
    mean_x, mean_y = 0.0, 0.0
    for k in range(n):
        mean_x += hull[k, 0]
        mean_y += hull[k, 1]
    mean_x, mean_y = mean_x / n, mean_y / n
    length = np.empty(n)
    facing = np.empty(n)  # > 0: the normal points away from the centroid
    for k in range(n):
        length[k] = np.hypot(sides[k, 0], sides[k, 1])
        mx, my = hull[k, 0] + sides[k, 0] / 2 - mean_x, hull[k, 1] + sides[k, 1] / 2 - mean_y
        facing[k] = np.cos(normal[k]) * mx + np.sin(normal[k]) * my
    angles = np.empty(2 * n)
    weight = np.empty(2 * n)
    n_out = 0
    for k in range(n):  # the outward normal of each side
        if length[k] > 0:
            angles[n_out] = normal[k] + np.pi if facing[k] < 0 else normal[k]
            weight[n_out] = length[k]
            n_out += 1
    for k in range(n):  # a degenerate hull (a segment) takes both normals of each side
        if length[k] > 0 and np.abs(facing[k]) <= 1e-9 * (1 + length[k]):
            angles[n_out] = normal[k] + np.pi
            weight[n_out] = length[k]
            n_out += 1
    candidates = np.mod(angles[:n_out], 2 * np.pi)
    room = edges if n_out <= edges else edges - edges // 4
    kept = np.round(candidates[stable_order(-weight[:n_out])[:room]], 12)
    kept = kept[stable_order(kept)]
    n_unique = min(kept.size, 1)
    for k in range(1, kept.size):  # sorted: drop repeats
        if kept[k] != kept[n_unique - 1]:
            kept[n_unique] = kept[k]
            n_unique += 1
    return kept[:n_unique].copy()


@njit(cache=True, nogil=True)
def around_own(own, edges):
    """The differences of the uniform angles 2 pi k / edges (k < edges) to the own
    directions around each: (2, edges), row 0 to the nearest own direction below
    (cyclically: the last one for angles below the first), row 1 to the next one at or
    above (cyclically). own: (n,) sorted angles in [0, 2 pi), n >= 1."""
    n = own.size
    out = np.empty((2, edges))
    after = 0  # numpy's searchsorted (left) of the uniform angle in own
    for k in range(edges):
        u = 2 * np.pi * k / edges  # as numpy's 2 * np.pi * np.arange(edges) / edges
        while after < n and own[after] < u:
            after += 1
        out[0, k] = u - own[after - 1 if after > 0 else n - 1]
        out[1, k] = u - own[after % n]
    return out


@njit(cache=True, nogil=True)
def support_edges(points, own, gap, grow, hull_grow):
    """The half-planes of `support_polygon`: the `own` directions (along the hull's own
    sides, grown by hull_grow px) and, of the uniform angles 2 pi k / edges (edges =
    gap.size), the edges - own.size with the largest `gap` to an own direction (ties in
    k order), grown by grow x (|cos| + |sin|), at the support values of (P, 2) points
    (`support`). Returns (th, h) sorted by angle (stable)."""
    edges, n_own = gap.size, own.size
    angles = np.empty(edges)
    angles[:n_own] = own
    spare = stable_order(-gap)
    for q in range(edges - n_own):
        angles[n_own + q] = 2 * np.pi * spare[q] / edges
    normals = np.empty((edges, 2))
    for k in range(edges):
        normals[k, 0], normals[k, 1] = np.cos(angles[k]), np.sin(angles[k])
    h = support(points, normals)
    for k in range(edges):
        h[k] += hull_grow if k < n_own else grow * (np.abs(normals[k, 0]) + np.abs(normals[k, 1]))
    order = stable_order(angles)
    return angles[order], h[order]


@njit(cache=True, nogil=True)
def dual_vertices(th, h, cx, cy):
    """The vertices of the polygon {n_j . x <= h_j} around a point (cx, cy) strictly
    inside: its active edges are the convex hull of the polar dual points
    n_j / (h_j - n_j . centre) (a monotone chain over them sorted by (x, y), ties in
    edge order). Returns (found, vertices (V, 2) counter-clockwise, active edge
    indices (V,)); found is False when the point is not strictly inside or the polygon
    is degenerate."""
    n = th.size
    hc = np.empty(n)
    dx = np.empty(n)
    dy = np.empty(n)
    for k in range(n):
        c, s = np.cos(th[k]), np.sin(th[k])
        hc[k] = h[k] - (c * cx + s * cy)
        if not hc[k] > 1e-9:
            return False, np.empty((0, 2)), np.empty(0, np.int64)
        dx[k], dy[k] = c / hc[k], s / hc[k]
    by_y = stable_order(dy)
    order = by_y[stable_order(dx[by_y])]  # by (x, y), ties in edge order, as Python's sorted
    chain = np.empty(2 * n + 2, np.int64)
    size = 0
    for half in range(2):  # lower chain, then upper chain (the points in reverse)
        first = size
        for step in range(n):
            k = order[step] if half == 0 else order[n - 1 - step]
            while size - first >= 2:
                a, b = chain[size - 2], chain[size - 1]
                if (dx[b] - dx[a]) * (dy[k] - dy[a]) - (dy[b] - dy[a]) * (dx[k] - dx[a]) <= 0:
                    size -= 1
                else:
                    break
            chain[size] = k
            size += 1
        size -= 1  # each chain's last point starts the other
    ids = chain[:size].copy()
    if ids.size < 3:
        return False, np.empty((0, 2)), ids
    v = np.empty((ids.size, 2))
    for m in range(ids.size):
        j, k = ids[m], ids[(m + 1) % ids.size]
        det = np.sin(th[k] - th[j])
        if det <= 1e-12:
            return False, np.empty((0, 2)), ids
        v[m, 0] = (hc[j] * np.sin(th[k]) - hc[k] * np.sin(th[j])) / det + cx
        v[m, 1] = (hc[k] * np.cos(th[j]) - hc[j] * np.cos(th[k])) / det + cy
    return True, v, ids
