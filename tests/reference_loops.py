"""The fit's inner loops as numpy array code: the implementation `sam_convex.loops`
replaced (sam_convex/polygon.py at 18761f2; `row_sums`, `block_lattice`, `support_polygon`
and `_vertices_dual` at 27ac1a8), kept as the oracle its tests compare against bit for bit."""

import math

import cv2
import numpy as np


def spans(th: np.ndarray, h: np.ndarray, hh: int, ww: int, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Per row of an (hh, ww) crop, the columns k_lo..k_hi (int64, (hh,) each; empty
    where k_lo > k_hi) whose pixel centres lie inside every edge moved in by `shift` px:
    a convex polygon covers one span of every row."""
    c, s = np.cos(th), np.sin(th)
    y = np.arange(hh) + 0.5 - hh / 2
    bound = (h - shift)[None] - s[None] * y[:, None]  # c x <= bound for every edge

    def limit(sel, reduce, empty):  # the columns' bound on x of the edges in `sel`
        return reduce(bound[:, sel] / c[sel], axis=1) if sel.any() else np.full(hh, empty)

    lo = limit(c < 0, np.max, -np.inf)
    hi = limit(c > 0, np.min, np.inf)
    k_lo = np.clip(np.ceil(lo - 0.5 + ww / 2), 0, ww).astype(np.int64)
    k_hi = np.clip(np.floor(hi - 0.5 + ww / 2), -1, ww - 1).astype(np.int64)
    if (c == 0).any():  # an edge along the rows: rows outside it are empty
        k_hi[(bound[:, c == 0] < 0).any(1)] = -1
    return k_lo, k_hi


def polygon_cost(cum: np.ndarray, th: np.ndarray, h: np.ndarray) -> float:
    """F = the sum of w over the pixel centres inside the polygon, exactly, in
    O(rows x edges): per row, the polygon's span read off the row sums `cum`
    (`row_sums` of the (hh, ww) crop). Block sums would misprice a thin shape: a block
    that straddles a 2-px line counts its background as if it were inside."""
    hh, ww = cum.shape[0], cum.shape[1] - 1
    k_lo, k_hi = spans(th, h, hh, ww)
    rows = np.flatnonzero(k_hi >= k_lo)
    return float((cum[rows, k_hi[rows] + 1] - cum[rows, k_lo[rows]]).sum())


def greedy_cuts(x, y, w, th, h, angles: int, max_cuts: int, bin_width: float, min_gain: float, cum: np.ndarray):
    """Add the best half-plane cut (found on the lattice points x, y with summed weights
    w) while it lowers F, measured exactly on the pixels (`polygon_cost` on `cum`), by
    more than `min_gain`. The lattice only proposes: on a thin shape its blocks mix the
    object with background, and a cut that looks good there can cut the object in two.
    Returns the new (th, h)."""
    keep = (np.cos(th)[:, None] * x[None] + np.sin(th)[:, None] * y[None] - h[:, None]).max(0) <= 0
    xi, yi, wi = x[keep], y[keep], w[keep]
    if xi.size == 0 or max_cuts <= 0:
        return th, h
    ang = 2 * np.pi * (np.arange(angles) + 0.5) / angles
    # float32 is enough here: the cut offsets live on bins of >= 1 px.
    normals = np.stack([np.cos(ang), np.sin(ang)], 1).astype(np.float32)
    proj = normals @ np.stack([xi, yi]).astype(np.float32)  # (M, P)
    top = proj.max(1)
    idx = ((top[:, None] - proj) * np.float32(1.0 / bin_width)).astype(np.intp)  # 0 = outermost bin
    top = top.astype(np.float64)
    nb = int(idx.max()) + 1
    flat = (idx + nb * np.arange(angles)[:, None]).ravel()
    # Histogram of w over (direction, offset bin) of the points still inside; a cut only
    # removes points, so later rounds subtract the removed points' contributions.
    hist = np.bincount(flat, np.tile(wi, angles), nb * angles).reshape(angles, nb)
    alive = np.ones(xi.size, bool)
    cost = polygon_cost(cum, th, h)
    for _ in range(max_cuts):
        gain = np.cumsum(hist, 1)  # F decrease when removing bins 0..k
        k = gain.argmax(1)
        best = gain[np.arange(angles), k]
        m = int(best.argmax())
        if best[m] <= min_gain:
            break
        hc = top[m] - (k[m] + 1) * bin_width  # the boundary between bins k and k + 1
        th2, h2 = np.append(th, ang[m]), np.append(h, hc)
        cost2 = polygon_cost(cum, th2, h2)
        if cost2 > cost - min_gain:
            break
        th, h, cost = th2, h2, cost2
        gone = np.flatnonzero(alive & (proj[m] > hc))
        alive[gone] = False
        removed = (idx[:, gone] + nb * np.arange(angles)[:, None]).ravel()
        hist -= np.bincount(removed, np.tile(wi[gone], angles), nb * angles).reshape(angles, nb)
    return th, h


def _pairs(xp, yp, th, h, reach):
    """(point, edge) pairs with n_j . x - h_j > -reach, sorted by edge: edges farther
    inside than `reach` cannot change a point's membership within one sweep."""
    normals = np.stack([np.cos(th), np.sin(th)], 1).astype(np.float32)  # selection only
    a = normals @ np.stack([xp, yp]).astype(np.float32) - h.astype(np.float32)[:, None]
    flat = np.flatnonzero(a > -reach)
    return flat % xp.size, flat // xp.size


def _pair_state(xq, yq, th, h, pi, ej, p):
    """Per pair: its offset a; per point: the top offset (member iff top <= 0); per pair:
    the max over the point's other pairs (-inf if none)."""
    a = np.cos(th)[ej] * xq + np.sin(th)[ej] * yq - h[ej]
    top1 = np.full(p, -np.inf)
    np.maximum.at(top1, pi, a)
    is_top = a == top1[pi]
    top2 = np.full(p, -np.inf)
    np.maximum.at(top2, pi, np.where(is_top, -np.inf, a))
    top2 = np.where(np.bincount(pi, is_top, p) >= 2, top1, top2)
    others = np.where(is_top, top2[pi], top1[pi])
    return a, top1, others


def _best_moves(sel, xq, yq, ej, wv_all, a, th, h, rot, lim, bin_width, nb):
    """The best (rotation, offset) of every edge given the others.

    sel: the (point, edge) pairs that can change membership through their edge alone
    (the point is inside every other edge and within `lim` + 0.5 px of this one).
    Returns (new_th, new_h, gain), gain (K,) >= 0 the exact decrease of F per edge.
    """
    k_edges, nr = th.size, rot.size
    e = ej[sel]
    x, y, wv = xq[sel], yq[sel], wv_all[sel]
    c, s = np.cos(th), np.sin(th)
    count = np.bincount(e, None, k_edges)
    tb = np.bincount(e, y * c[e] - x * s[e], k_edges) / np.maximum(count, 1)
    px, py = h * c - tb * s, h * s + tb * c  # rotation centre on each edge line
    base = np.bincount(e, wv * (a[sel] <= 0), k_edges)
    # All rotations at once: (R, pairs) offsets -> one histogram over (rotation, edge,
    # offset bin) -> per (rotation, edge) the best cut by a cumulative sum.
    t2 = th[None] + rot[:, None]  # (R, K)
    c2, s2 = np.cos(t2), np.sin(t2)
    hb = px[None] * c2 + py[None] * s2
    dd = x[None] * c2[:, e] + y[None] * s2[:, e] - hb[:, e]  # (R, pairs)
    idx = np.minimum(((dd + lim) * (1.0 / bin_width)).astype(np.int64) + 1, nb - 1)
    idx[dd < -lim] = 0
    key = (np.arange(nr)[:, None] * k_edges + e[None]) * nb + idx
    hist = np.bincount(key.ravel(), np.tile(wv, nr), nr * k_edges * nb).reshape(nr * k_edges, nb)
    cum = np.cumsum(hist, 1)[:, :-1]
    k = cum.argmin(1)
    gain = base[None] - cum[np.arange(nr * k_edges), k].reshape(nr, k_edges)  # (R, K)
    gain[:, count == 0] = 0.0
    r_best = gain.argmax(0)  # the first best rotation per edge
    edges = np.arange(k_edges)
    best = np.maximum(gain[r_best, edges], 0.0)
    update = best > 1e-9
    new_th = np.where(update, t2[r_best, edges], th)
    new_h = np.where(update, hb[r_best, edges] - lim + k.reshape(nr, k_edges)[r_best, edges] * bin_width, h)
    return new_th, new_h, best


def polish(xp, yp, wp, th, h, radius: float, rotations: np.ndarray, bin_width: float):
    """One sweep of exact block-coordinate descent on F over band pixels (xp, yp) with
    weights wp: every edge moves to the best of the rotations about its centre times
    every offset within `radius`, given the others; all edges at once, or in 3 colour
    classes of angular non-neighbours when that makes F worse. Returns (th, h)."""
    k_edges, p = th.size, xp.size
    lim = radius - 0.5
    nb = math.ceil(2 * lim / bin_width) + 2
    order = np.argsort(np.mod(th, 2 * np.pi), kind="stable")
    colour = np.empty(k_edges, np.int64)
    colour[order] = np.arange(k_edges) % 3
    pi, ej = _pairs(xp, yp, th, h, radius + 0.5)
    wv_all, xq, yq = wp[pi], xp[pi], yp[pi]
    a, top1, others = _pair_state(xq, yq, th, h, pi, ej, p)
    cost = float(wp[top1 <= 0].sum())
    movable = (others <= 0) & (np.abs(a) < radius)
    plan = [None]  # None: all edges at once
    while plan:
        group = plan.pop(0)
        sel = np.flatnonzero(movable if group is None else movable & (colour[ej] == group))
        if sel.size == 0:
            continue
        new_th, new_h, best = _best_moves(sel, xq, yq, ej, wv_all, a, th, h, rotations, lim, bin_width, nb)
        if not (best > 0).any():
            continue
        a2, top2, others2 = _pair_state(xq, yq, new_th, new_h, pi, ej, p)
        new_cost = float(wp[top2 <= 0].sum())
        if new_cost < cost - 1e-9:
            th, h, cost = new_th, new_h, new_cost
            a, others = a2, others2
            movable = (others <= 0) & (np.abs(a) < radius)
        elif group is None:
            plan = [0, 1, 2]  # neighbours moved into each other: one class at a time
    return th, h


def centre_edges(xp, yp, th, h, radius: float) -> tuple[np.ndarray, float]:
    """Move each edge to the middle of the gap between the nearest kept and the nearest
    cut band pixel (membership unchanged). Returns (h, smallest margin in px)."""
    p, k_edges = xp.size, th.size
    pi, ej = _pairs(xp, yp, th, h, radius)
    xq, yq = xp[pi], yp[pi]
    a, top1, others = _pair_state(xq, yq, th, h, pi, ej, p)
    members = top1 <= 0
    sel = others <= 0
    d, e = a[sel], ej[sel]
    d_in, d_out = np.full(k_edges, -0.5), np.full(k_edges, 0.5)  # no pixel found: shift <= 0.25 px
    d_in2, d_out2 = np.full(k_edges, -np.inf), np.full(k_edges, np.inf)
    np.maximum.at(d_in2, e[d <= 0], d[d <= 0])
    np.minimum.at(d_out2, e[d > 0], d[d > 0])
    d_in = np.where(np.isfinite(d_in2), d_in2, np.minimum(d_in, d_out2 - 1.0))
    d_out = np.where(np.isfinite(d_out2), d_out2, np.maximum(d_out, d_in2 + 1.0))
    h2 = h + (d_in + d_out) / 2
    a2, top2, _ = _pair_state(xq, yq, th, h2, pi, ej, p)
    if ((top2 <= 0) != members).any():
        h2, a2 = h, a  # a pixel cut by two edges at once changed side: keep the edges
    margin = float(np.abs(a2).min()) if a2.size else radius
    return h2, margin


def row_sums(w: np.ndarray) -> np.ndarray:
    """(hh, ww + 1) float64 cumulative sums of an (hh, ww) weight crop along its rows,
    with a leading 0 column: the sum over columns a..b of row r is c[r, b + 1] - c[r, a]."""
    out = np.zeros((w.shape[0], w.shape[1] + 1))
    np.cumsum(w, axis=1, out=out[:, 1:])
    return out


def block_lattice(w: np.ndarray, grid: int):
    """Block sums of an (h, w) weight crop on a lattice of at most grid blocks per side.

    Returns (x, y, sums, f): block centres (mean pixel centre, crop-local px), the sum of
    w over each block (float64) and the block size f in px.
    """
    hh, ww = w.shape
    f = max(1, -(-max(hh, ww) // grid))
    if f == 1:
        yy, xx = np.mgrid[:hh, :ww]
        return xx.ravel() + 0.5 - ww / 2, yy.ravel() + 0.5 - hh / 2, w.ravel().astype(np.float64), 1
    hb, wb = -(-hh // f), -(-ww // f)
    pad = np.zeros((hb * f, wb * f))
    pad[:hh, :ww] = w
    sums = pad.reshape(hb, f, wb * f).sum(1).reshape(hb, wb, f).sum(2)
    rows_per_block = np.minimum(np.arange(hb) * f + f, hh) - np.arange(hb) * f
    cols_per_block = np.minimum(np.arange(wb) * f + f, ww) - np.arange(wb) * f
    cy = np.arange(hb) * f + rows_per_block / 2 - hh / 2
    cx = np.arange(wb) * f + cols_per_block / 2 - ww / 2
    yy, xx = np.meshgrid(cy, cx, indexing="ij")
    return xx.ravel(), yy.ravel(), sums.ravel(), f


HULL_GROW = 1e-3


def support_polygon(pts: np.ndarray, edges: int, grow: float) -> tuple[np.ndarray, np.ndarray]:
    """`edges` half-planes that circumscribe (P, 2) points: the outward normals of the
    points' convex hull's own sides, longest first (all of them when the hull has at
    most `edges` sides: the start is then the hull itself, so a convex input, a thin
    line or bar included, starts exactly as itself), the rest at uniformly spaced
    angles in the largest gaps between those.

    Along the hull's own sides the half-planes are grown by a hair (HULL_GROW px); the
    uniform ones by `grow` px (so that lines and single pixels have area).

    Returns:
        (th (edges,), h (edges,)) float64, sorted by angle.
    """
    hull = cv2.convexHull(pts.astype(np.float32)).reshape(-1, 2).astype(np.float64)
    sides = np.roll(hull, -1, axis=0) - hull
    lengths = np.hypot(sides[:, 0], sides[:, 1])
    normal = np.arctan2(sides[:, 0], -sides[:, 1])  # one of the two normals of each side
    mids = hull + sides / 2 - hull.mean(0)
    facing = np.cos(normal) * mids[:, 0] + np.sin(normal) * mids[:, 1]
    # The outward normal points away from the hull's centroid; a degenerate hull (a line
    # segment: the centroid lies on every side) takes both normals of each side.
    flat = np.abs(facing) <= 1e-9 * (1 + lengths)
    outward = np.where(facing < 0, normal + np.pi, normal)
    candidates = np.concatenate([outward[lengths > 0], (normal + np.pi)[flat & (lengths > 0)]])
    weight = np.concatenate([lengths[lengths > 0], lengths[flat & (lengths > 0)]])
    candidates = np.mod(candidates, 2 * np.pi)
    # Trimmed: a hull with more sides than `edges` (a rounded shape, a large digital
    # polygon) keeps its longest sides and leaves a quarter of the edges to uniform
    # angles, which bound the gaps between them.
    room = edges if candidates.size <= edges else edges - edges // 4
    own = candidates[np.argsort(-weight, kind="stable")[:room]]
    own = np.unique(np.round(own, 12))
    uniform = 2 * np.pi * np.arange(edges) / edges
    gap = np.abs(np.angle(np.exp(1j * (uniform[:, None] - own[None]))))
    spare = uniform[np.argsort(-gap.min(axis=1, initial=np.pi), kind="stable")[: edges - own.size]]
    angles = np.concatenate([own, spare])
    normals = np.stack([np.cos(angles), np.sin(angles)], 1)
    # Along the hull's own sides a hair is enough (a digital line at slope 1/3 has
    # background pixel centres 0.32 px off it); elsewhere `grow` gives lines and single
    # pixels their area.
    margin = np.where(
        np.arange(angles.size) < own.size, HULL_GROW, grow * (np.abs(normals[:, 0]) + np.abs(normals[:, 1]))
    )
    order = np.argsort(angles, kind="stable")
    return angles[order], ((pts @ normals.T).max(0) + margin)[order]


def _vertices_dual(th: np.ndarray, h: np.ndarray, centre: np.ndarray):
    c, s = np.cos(th), np.sin(th)
    hc = h - (c * centre[0] + s * centre[1])
    if not (hc > 1e-9).all():
        return None
    dx, dy = (c / hc).tolist(), (s / hc).tolist()
    order = sorted(range(th.size), key=lambda k: (dx[k], dy[k]))

    def chain(seq):  # monotone chain of the dual points
        out = []
        for k in seq:
            while len(out) >= 2:
                a, b = out[-2], out[-1]
                if (dx[b] - dx[a]) * (dy[k] - dy[a]) - (dy[b] - dy[a]) * (dx[k] - dx[a]) <= 0:
                    out.pop()
                else:
                    break
            out.append(k)
        return out

    lower, upper = chain(order), chain(order[::-1])
    ids = np.array(lower[:-1] + upper[:-1], np.int64)  # counter-clockwise
    if ids.size < 3:
        return None
    t, hh = th[ids], hc[ids]
    nxt = np.arange(1, ids.size + 1) % ids.size
    tn, hn = t[nxt], hh[nxt]
    det = np.sin(tn - t)
    if (det <= 1e-12).any():
        return None
    v = np.stack([(hh * np.sin(tn) - hn * np.sin(t)) / det, (hn * np.cos(t) - hh * np.cos(tn)) / det], 1)
    return v + centre, ids
