"""The polygon fit behind `ConvexProjector`: the hard limit of the paper's objective,
minimised exactly on the target's pixels over convex polygons, each written as an ICNN.

Objective. For a target p (H, W) and a set C, the paper's distance in its hard limit is

    D(C) = sum_x (p(x) - [x in C])^2 = sum_x p(x)^2 + F(C),   F(C) = sum_{x in C} w(x),

w = 1 - 2p, over the pixel centres x. The fit minimises F over convex polygons.

Representation. A convex K-gon {n_j . x <= h_j} with K <= 2 * width - 1 is exactly
{G <= 0} of a depth-2 ICNN of eq. (1):

    layer 1:  z1_j = relu(n_j . x - h_j)            j < width        (edges 0 .. width-1)
    layer 2:  z2_0 = relu(sum_j z1_j)               (W^z column 0 = 1 >= 0)
              z2_k = relu(n_k . x - h_k)            k >= 1 (W^z column k = 0; edges width ..)
    output :  G = (s / eps) * sum_k z2_k - s        (w^z_out = s / eps >= 0)

so {G <= 0} is the polygon grown by at most ~eps px. Every edge is centred in the gap
between the pixel centres it keeps and those it cuts, and eps is a quarter of the
smallest such margin, so on the pixel centres {G <= 0} is the fitted polygon; -G is s
inside and falls by s per eps px outside: a hard mask, not a smooth probability map.

The fit, per mask (float64; numpy, OpenCV and the numba loops of `sam_convex.loops`; no
randomness, so a batched call is N single calls):
  1. Window: the bounding box of {p > 0.5} (exact: every pixel outside it has w >= 0, so
     intersecting a convex set with the box never makes F worse). Below, coordinates
     are window-local pixels with the origin at the window's centre.
  2. Start (F measured exactly, per row span, from here on): the convex hull of the
     largest component of {p > 0.5} (its outer contour
     enclosing the most area), joined by the next largest components while their joint
     hull lowers F (an object split by an occluder is covered whole, a far island is
     not), circumscribed by `edges` half-planes along the hull's own sides (longest
     first; the whole hull when it has at most `edges` sides, so a convex input starts
     as itself) and at uniformly spaced angles in the gaps, those grown by `grow` px so
     that lines and single pixels have area.
     When that start, after the cuts below, captures less than 90% of what any set could
     (F(fg)), starts from {p > 0.5} opened by disks are tried too and the best is kept:
     the opening cuts thin bridges glued to the object (an occluder, a streak).
  3. Cuts (global moves, which remove bites): on a lattice of block sums of w, the best
     single half-plane cut of the polygon over `cut_angles` directions and all offsets
     (one histogram per direction) is proposed, and added while it lowers the exact F
     by more than `min_cut_gain` x |F(start)|, at most `max_cuts` times.
  4. Polish: exact block-coordinate descent on F at full resolution, on the pixels near
     the boundary: every edge takes the best of a few rotations about its centre times
     every offset within `radius` px, given the other edges (one histogram of projected
     w per rotation and edge). All edges move at once; if that makes F worse, they move
     in 3 colour classes of angular non-neighbours instead. `sweeps` sweeps.
  5. Margins: edges are centred in their pixel gaps (membership unchanged), see above.
  6. Pocket (`pocket`, the end of `fit_window`): the result is compared, exactly on the
     target's own pixels, with the start, the convex hull of {p > 0.5}, the hull of its
     largest component and the empty set, and the best is returned (`CANDIDATES`): the
     fit is never worse than any of them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from sam_convex import loops
from sam_convex.icnn import ICNN
from sam_convex.rendering import decide, evaluate, layer_weights


def pixel_weights(p: np.ndarray) -> np.ndarray:
    """The objective's per-pixel weight w = 1 - 2p (float64, p's shape): F(C) is the sum
    of w over the pixel centres in C (module docstring), so a pixel lowers F by joining
    C exactly when p > 0.5. Every move of the fit, the window's exactness (w >= 0 outside
    {p > 0.5}) and the pocket rest on this one definition."""
    return 1.0 - 2.0 * np.asarray(p, dtype=np.float64)


ROTATIONS = (-0.03, -0.01, 0.0, 0.01, 0.03)  # polish: rotations tried (rad) ...
ROTATION_SCALES = (2.0, 1.0, 0.5)  # ... times this factor in sweep k (the last repeats)
BIN_WIDTH = 0.05  # polish: offset resolution (px)
GROW = 0.25  # start: pixel centres grown by this many px ...
HULL_GROW = 1e-3  # ... and by this much along the hull's own sides
CUT_ANGLES = 64  # directions tried by the cut search
CUT_GRID = 64  # lattice (blocks per side) of the cut search
CANDIDATES = ("fit", "start", "empty", "hull", "largest_hull")  # the pocket's choices, by index
MIN_CUT_GAIN = 1e-3  # relative to |F(start)|
MAX_PARTS = 16  # start: the largest components considered for a joint hull
OPEN_BELOW = 0.9  # start: try opened masks when the first start captures less of F(fg)
OPEN_RADII = (0.04, 0.08)  # start: opening disk radii, times sqrt(foreground area)
OPEN_EXACT_RADIUS = 32  # larger openings by distance transforms (at most 28 px on the 300x400 scenes)


@dataclass
class Polygon:
    """Edges {n_j . x <= h_j}, n_j = (cos th_j, sin th_j), in window-local px, and the
    zero-level tolerance eps (px) of its ICNN."""

    th: np.ndarray
    h: np.ndarray
    eps: float


@dataclass
class PolygonFit:
    """One target's result: kind "empty" (nothing above 0.5), "full" (everything above
    0.5) or "polygon"; the window as pixel rows r0:r1, cols c0:c1; for kind "polygon"
    the returned polygon (None: the empty set), the start's (th, h, centre), the
    pocket's candidates {name: (th, h)}, in window-local px, and which of `CANDIDATES`
    the pocket returned."""

    kind: str
    window: tuple[int, int, int, int]
    polygon: Polygon | None = None
    start: tuple | None = None
    candidates: dict | None = None
    choice: int = 0


# --------------------------------------------------------------------------- geometry


def edge_offsets(x: np.ndarray, y: np.ndarray, th: np.ndarray, h: np.ndarray) -> np.ndarray:
    """(K, P) float64 signed offsets n_j . x - h_j of P points to K edges (edge-major)."""
    return np.cos(th)[:, None] * x[None] + np.sin(th)[:, None] * y[None] - h[:, None]


def inside(x: np.ndarray, y: np.ndarray, th: np.ndarray, h: np.ndarray) -> np.ndarray:
    """(P,) bool: points inside the polygon."""
    return edge_offsets(x, y, th, h).max(0) <= 0


def support_polygon(pts: np.ndarray, edges: int, grow: float) -> tuple[np.ndarray, np.ndarray]:
    """`edges` half-planes that circumscribe (P, 2) points: the outward normals of the
    points' convex hull's own sides, longest first (all of them when the hull has at
    most `edges` sides: the start is then the hull itself, so a convex input, a thin
    line or bar included, starts exactly as itself), the rest at uniformly spaced
    angles in the largest gaps between those (`loops.hull_directions`).

    Along the hull's own sides the half-planes are grown by a hair (HULL_GROW px: a
    digital line at slope 1/3 has background pixel centres 0.32 px off it); the uniform
    ones by `grow` px, so that lines and single pixels have area (`loops.support_edges`).

    Returns:
        (th (edges,), h (edges,)) float64, sorted by angle.
    """
    hull = cv2.convexHull(np.asarray(pts, np.float32)).reshape(-1, 2).astype(np.float64)
    sides = np.concatenate([hull[1:], hull[:1]]) - hull  # each vertex to the next
    # numpy's arctan2, not numba's: they differ in the last bit on ~2% of angles.
    normal = np.arctan2(sides[:, 0], -sides[:, 1])  # one of the two normals of each side
    own = loops.hull_directions(hull, sides, normal, edges)  # sorted, in [0, 2 pi)
    # Each uniform angle's gap to the nearest own direction (numpy's angle, as numpy's arctan2 above).
    gap = np.abs(np.angle(np.exp(1j * loops.around_own(own, edges)))).min(0) if own.size else np.full(edges, np.pi)
    # The points' support in any direction is their hull's.
    return loops.support_edges(hull, own, gap, grow, HULL_GROW)


def component_hulls(fg: np.ndarray) -> list[np.ndarray]:
    """The convex hulls of an (hh, ww) bool crop's components (of their outer contours'
    pixel centres), largest first (by the area the contour encloses: a ring counts its
    hole; a 1-px-wide contour has area 0, then the point count decides; ties keep
    OpenCV's order, so the choice is deterministic), as (V, 2) float64 vertices in
    window-local px: all the fit needs of a component, since the support of a point
    set in any direction is its hull's."""
    hh, ww = fg.shape
    # A uint8 view, not a copy: OpenCV's findContours leaves its input alone.
    image = np.ascontiguousarray(fg, bool).view(np.uint8)
    contours, _ = cv2.findContours(image, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    sizes = [(cv2.contourArea(c), len(c)) for c in contours]
    order = sorted(range(len(contours)), key=lambda k: sizes[k], reverse=True)  # stable: ties keep the first
    shift = 0.5 - np.array([ww / 2, hh / 2])
    return [cv2.convexHull(contours[k]).reshape(-1, 2).astype(np.float64) + shift for k in order]


def hull_candidates(parts: list[np.ndarray], hull_edges: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The pocket's hull candidates from the `component_hulls` of {p > 0.5}: {"hull":
    the convex hull of {p > 0.5}, "largest_hull": the hull of its largest component
    (only when there are several)}, each as the half-planes (th, h) of `support_polygon`
    with `hull_edges` edges: exactly the hull of the pixel centres when it has at most
    `hull_edges` sides, else a circumscribed polygon along its longest sides."""
    found = {"hull": support_polygon(np.concatenate(parts), hull_edges, GROW)}
    if len(parts) > 1:
        found["largest_hull"] = support_polygon(parts[0], hull_edges, GROW)
    return found


def start_polygon(parts: list[np.ndarray], edges: int, grow: float, cum: np.ndarray, max_parts: int = MAX_PARTS):
    """The start: the hull of the components of a bool crop that are worth covering
    together (`parts`: its `component_hulls`), circumscribed by `edges` half-planes.

    From the largest component, the next largest components are added one by one
    while the hull of the union lowers F: an object split by an
    occluder is covered whole, a far island or a second object of its own is not. With
    more than `max_parts` components, the hull of all of them is tried last.

    Args:
        cum: the crop's row sums of w (`WindowSums.cum`), on which F is measured exactly.
    Returns:
        (th (K,), h (K,), centre (2,)) float64, centre a point inside (the mean hull
        vertex of the chosen components).
    """
    pts = parts[0]
    th, h = support_polygon(pts, edges, grow)
    cost = polygon_cost(cum, th, h)
    for part in parts[1:max_parts]:
        union = np.concatenate([pts, part])
        th2, h2 = support_polygon(union, edges, grow)
        cost2 = polygon_cost(cum, th2, h2)
        if cost2 < cost:
            pts, th, h, cost = union, th2, h2, cost2
    if len(parts) > max_parts:  # many small pieces (a dotted or speckled object): all of them at once
        union = np.concatenate(parts)
        th2, h2 = support_polygon(union, edges, grow)
        cost2 = polygon_cost(cum, th2, h2)
        if cost2 < cost:
            pts, th, h = union, th2, h2
    return th, h, pts.mean(0)


def vertices(th: np.ndarray, h: np.ndarray, centre=None) -> tuple[np.ndarray | None, np.ndarray]:
    """Vertices (V, 2) of the bounded polygon in counter-clockwise order (None if it is
    empty or degenerate) and the indices of its active edges.

    With a point `centre` strictly inside, the active edges are the vertices of the
    convex hull of the polar dual points n_j / (h_j - n_j . centre); otherwise
    redundant edges are removed one by one.
    """
    if centre is not None:
        found = _vertices_dual(th, h, np.asarray(centre, np.float64))
        if found is not None:
            return found
    return _vertices_iterative(th, h)


def _vertices_dual(th: np.ndarray, h: np.ndarray, centre: np.ndarray):
    found, v, ids = loops.dual_vertices(
        np.ascontiguousarray(th, np.float64), np.ascontiguousarray(h, np.float64), float(centre[0]), float(centre[1])
    )
    return (v, ids) if found else None


def _vertices_iterative(th: np.ndarray, h: np.ndarray):
    order = np.argsort(np.mod(th, 2 * np.pi), kind="stable")
    t, hh, ids = np.mod(th[order], 2 * np.pi), h[order], order
    for _ in range(4 * th.size):
        if t.size < 3:
            return None, ids
        k = t.size
        prv, nxt = np.arange(-1, k - 1), np.arange(1, k + 1) % k
        tp, hp, tn, hn = t[prv], hh[prv], t[nxt], hh[nxt]
        det = np.sin(tn - tp)
        ok = det > 1e-12
        vx = (hp * np.sin(tn) - hn * np.sin(tp)) / np.where(ok, det, 1)
        vy = (hn * np.cos(tp) - hp * np.cos(tn)) / np.where(ok, det, 1)
        redundant = ok & (np.cos(t) * vx + np.sin(t) * vy - hh <= 0)
        if not redundant.any():
            break
        redundant &= ~redundant[prv] | (np.arange(k) == 0)  # never two neighbours at once
        if redundant.all():
            redundant[1:] = False
        t, hh, ids = t[~redundant], hh[~redundant], ids[~redundant]
    nxt = np.arange(1, t.size + 1) % t.size
    tn, hn = t[nxt], hh[nxt]
    det = np.sin(tn - t)
    if (det <= 1e-12).any():
        return None, ids
    v = np.stack([(hh * np.sin(tn) - hn * np.sin(t)) / det, (hn * np.cos(t) - hh * np.cos(tn)) / det], 1)
    if (edge_offsets(v[:, 0], v[:, 1], th, h) > 1e-6).any():
        return None, ids  # empty: inconsistent corners
    return v, ids


def band(hh: int, ww: int, th: np.ndarray, h: np.ndarray, dist: float, centre=None):
    """The pixels of an (hh, ww) crop whose centres lie inside every edge moved out by
    `dist` px but not inside every edge moved in by `dist` (per row, the outer span less
    the inner one: O(rows x edges), not the crop's area), or the whole crop for a
    degenerate polygon: (flat indices (M,) int64, pixel centres x, y (M,) float64 in
    crop-local px, row-major), and the mean vertex (a point inside) or None.

    Every pixel that one edge alone can take in or out by a move of less than `dist` px
    (|n_j . x - h_j| < dist, the other edges keeping it in) is in the band, next to sharp
    corners too."""
    v, _ = vertices(th, h, centre)
    if v is None:
        idx = np.arange(hh * ww)
        return idx, idx % ww + 0.5 - ww / 2, idx // ww + 0.5 - hh / 2, None
    reach = float(dist) + 1e-9  # beyond the spans' rounding
    return *loops.ring_pixels(np.cos(th), np.sin(th), np.asarray(h, np.float64), hh, ww, reach), v.mean(0)


@dataclass
class WindowSums:
    """What the fit reads from a window crop (`window_sums`): fg (hh, ww) bool, p > 0.5;
    cum (hh, ww + 1) float64, the row sums of w with a leading 0 column (the sum over
    columns a..b of row r is cum[r, b + 1] - cum[r, a]); lattice (x, y, sums, block),
    the block centres (mean pixel centre, crop-local px), the sum of w over each block
    and the block size in px; f_fg, the sum of w over fg (the lowest F of any set)."""

    fg: np.ndarray
    cum: np.ndarray
    lattice: tuple
    f_fg: float


def window_sums(crop: np.ndarray, grid: int) -> WindowSums:
    """`WindowSums` of an (hh, ww) float crop (read in its own dtype), its lattice at
    most `grid` blocks per side, in one compiled pass (`loops.window_pass`; w as
    `pixel_weights` defines it)."""
    hh, ww = crop.shape
    f = max(1, -(-max(hh, ww) // grid))
    fg, cum, sums, f_fg = loops.window_pass(np.ascontiguousarray(crop), f)
    hb, wb = -(-hh // f), -(-ww // f)
    rows_per_block = np.minimum(np.arange(hb) * f + f, hh) - np.arange(hb) * f
    cols_per_block = np.minimum(np.arange(wb) * f + f, ww) - np.arange(wb) * f
    cy = np.arange(hb) * f + rows_per_block / 2 - hh / 2
    cx = np.arange(wb) * f + cols_per_block / 2 - ww / 2
    # The block centres row-major (np.meshgrid's Python took 5x as long as the two copies).
    return WindowSums(fg.view(bool), cum, (np.tile(cx, hb), np.repeat(cy, wb), sums, f), float(f_fg))


def spans(th: np.ndarray, h: np.ndarray, hh: int, ww: int, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Per row of an (hh, ww) crop, the columns k_lo..k_hi (int64, (hh,) each; empty
    where k_lo > k_hi) whose pixel centres lie inside every edge moved in by `shift` px:
    a convex polygon covers one span of every row (`loops.spans`)."""
    return loops.spans(np.cos(th), np.sin(th), np.asarray(h, np.float64), hh, ww, float(shift))


def polygon_cost(cum: np.ndarray, th: np.ndarray, h: np.ndarray) -> float:
    """F = the sum of w over the pixel centres inside the polygon, exactly, in
    O(rows x edges): per row, the polygon's span read off the row sums `cum`
    (`WindowSums.cum` of the (hh, ww) crop). Block sums would misprice a thin shape: a block
    that straddles a 2-px line counts its background as if it were inside."""
    return float(loops.span_cost(cum, np.cos(th), np.sin(th), np.asarray(h, np.float64)))


# --------------------------------------------------------------------------- moves


def greedy_cuts(x, y, w, th, h, angles: int, max_cuts: int, bin_width: float, min_gain: float, cum: np.ndarray):
    """Add the best half-plane cut (found on the lattice points x, y with summed weights
    w) while it lowers F, measured exactly on the pixels (`polygon_cost` on `cum`), by
    more than `min_gain`. The lattice only proposes: on a thin shape its blocks mix the
    object with background, and a cut that looks good there can cut the object in two.
    Returns the new (th, h)."""
    if max_cuts <= 0:
        return th, h
    ang = 2 * np.pi * (np.arange(angles) + 0.5) / angles
    # float32 is enough here: the cut offsets live on bins of >= 1 px.
    nx, ny = np.cos(ang).astype(np.float32), np.sin(ang).astype(np.float32)
    c, s = np.cos(th), np.sin(th)
    proj, wi = loops.cut_projections(x, y, w, c, s, h, nx, ny)
    if wi.size == 0:
        return th, h
    chosen, offsets = loops.greedy_cuts(
        proj, proj.max(1), wi, c, s, h, np.cos(ang), np.sin(ang), cum, max_cuts, bin_width, min_gain
    )
    return np.append(th, ang[chosen]), np.append(h, offsets)


def polish(xp, yp, wp, th, h, radius: float, rotations: np.ndarray, bin_width: float):
    """One sweep of exact block-coordinate descent on F over band pixels (xp, yp) with
    weights wp: every edge moves to the best of the rotations about its centre times
    every offset within `radius`, given the others; all edges at once, or in 3 colour
    classes of angular non-neighbours when that makes F worse (`loops.polish_sweep`).
    Returns (th, h)."""
    order = np.argsort(np.mod(th, 2 * np.pi), kind="stable")
    colour = np.empty(th.size, np.int64)
    colour[order] = np.arange(th.size) % 3
    n_bins = math.ceil(2 * (radius - 0.5) / bin_width) + 2
    return loops.polish_sweep(
        xp,
        yp,
        wp,
        np.ascontiguousarray(th, np.float64),
        np.ascontiguousarray(h, np.float64),
        colour,
        float(radius),
        np.ascontiguousarray(rotations, np.float64),
        bin_width,
        n_bins,
    )


def centre_edges(xp, yp, th, h, radius: float) -> tuple[np.ndarray, float]:
    """Move each edge to the middle of the gap between the nearest kept and the nearest
    cut band pixel (membership unchanged; `loops.centre_offsets`). Returns (h, smallest
    margin in px)."""
    h2, margin = loops.centre_offsets(
        xp, yp, np.ascontiguousarray(th, np.float64), np.ascontiguousarray(h, np.float64), float(radius)
    )
    return h2, float(margin)


def centred(xp, yp, th, h, radius: float) -> Polygon:
    """The polygon with its edges centred in their pixel gaps (`centre_edges`, on band
    pixels xp, yp that hold every pixel next to an edge) and eps a quarter of the
    smallest margin: {G <= 0} of its ICNN keeps the same pixel centres, and a rendering
    at another resolution puts the boundary half-way between kept and cut pixels."""
    h, margin = centre_edges(xp, yp, th, h, radius)
    return Polygon(th, h, float(np.clip(margin / 4, 1e-6, 1e-2)))


def centred_candidate(th: np.ndarray, h: np.ndarray, hh: int, ww: int, radius: float) -> Polygon:
    """`centred` for a polygon of an (hh, ww) crop that has no band yet (a pocket
    candidate)."""
    _, xp, yp, _ = band(hh, ww, th, h, radius + 0.5)
    return centred(xp, yp, th, h, radius)


# --------------------------------------------------------------------------- the fit


def cut_start(parts: list[np.ndarray], lattice: tuple, cum: np.ndarray, edges: int, max_cuts: int):
    """Start polygon of a crop's `component_hulls` (`start_polygon`), then the greedy
    cuts; returns (exact F of the cut polygon, th, h, the start (th, h, centre))."""
    lx, ly, lw, block = lattice
    th, h, centre = start_polygon(parts, edges, GROW, cum)
    f_start = polygon_cost(cum, th, h)
    cut_th, cut_h = greedy_cuts(lx, ly, lw, th, h, CUT_ANGLES, max_cuts, float(block), MIN_CUT_GAIN * abs(f_start), cum)
    return polygon_cost(cum, cut_th, cut_h), cut_th, cut_h, (th, h, centre)


def open_disk(fg: np.ndarray, radius: int) -> np.ndarray:
    """{p > 0.5} (an (hh, ww) bool crop) opened by a disk of `radius` px (outside the crop
    counts as foreground, as OpenCV's erosion does).

    Up to OPEN_EXACT_RADIUS: OpenCV's morphology with its elliptic kernel. Beyond (photo
    size: a 1920x1080 mask of noise took 6.7 s per opening, the kernel's area per pixel),
    two exact Euclidean distance transforms, linear in the crop's area: erode = pixels
    farther than `radius` from the background, dilate = pixels within `radius` of those
    (a digital disk that may differ from OpenCV's elliptic kernel at a few boundary pixels).
    """
    if radius <= OPEN_EXACT_RADIUS:
        disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
        return cv2.morphologyEx(fg.astype(np.uint8), cv2.MORPH_OPEN, disk) > 0
    eroded = cv2.distanceTransform(fg.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE) > radius
    if not eroded.any():
        return eroded
    return cv2.distanceTransform((~eroded).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE) <= radius


def best_start(sums: WindowSums, edges: int, max_cuts: int, parts: list[np.ndarray] | None = None):
    """The cut start polygon (`cut_start`) with the lowest exact F, from {p > 0.5}
    itself and, when that one captures less than OPEN_BELOW of the mass F(fg) that any
    set could, from {p > 0.5} opened by disks of OPEN_RADII x sqrt(area): the opening
    cuts thin bridges (an occluder or a background streak the segmenter glued to the
    object), whose hull would otherwise cover mostly background, beyond what greedy cuts
    can carve away. `sums`: the crop's `window_sums`; `parts`: `component_hulls(sums.fg)`
    (computed if None). Returns (th, h, start)."""
    fg, cum = sums.fg, sums.cum
    parts = component_hulls(fg) if parts is None else parts
    best = cut_start(parts, sums.lattice, cum, edges, max_cuts)
    if best[0] <= OPEN_BELOW * sums.f_fg:
        return best[1:]
    disk_sizes = sorted({max(1, round(r * np.sqrt(np.count_nonzero(fg)))) for r in OPEN_RADII})
    for size in disk_sizes:
        opened = open_disk(fg, size)
        if opened.any():
            found = cut_start(component_hulls(opened), sums.lattice, cum, edges, max_cuts)
            best = min(best, found, key=lambda found: found[0])
    return best[1:]


def target_window(p: np.ndarray) -> tuple[str, tuple[int, int, int, int], int]:
    """Kind and window of one (H, W) float32 target (step 1): "empty" (nothing above
    0.5), "full" (everything above 0.5) or "polygon", and the bounding box of {p > 0.5}
    as pixel rows r0:r1, cols c0:c1 (the whole image when empty); and how many values
    lie outside [0, 1] (NaN included), for the caller's check of the values. One pass
    over the target (`loops.foreground_box`), so the rest of the fit costs what the
    window costs."""
    height, width = p.shape
    r0, r1, c0, c1, count, outside = loops.foreground_box(np.ascontiguousarray(p))
    if count == 0:
        return "empty", (0, height, 0, width), outside
    if count == height * width:
        return "full", (r0, r1, c0, c1), outside
    return "polygon", (r0, r1, c0, c1), outside


def pocket(fitted: Polygon, candidates: dict, cum: np.ndarray, radius: float) -> tuple[Polygon | None, int]:
    """Step 6: the best of the fitted polygon, the `candidates` {name: (th, h)} and the
    empty set, by their exact F on the crop's pixels (`polygon_cost` on its row sums
    `cum`; the fit is centred in its pixel gaps, so it covers the pixels its ICNN
    renders). A candidate that wins is centred in its own pixel gaps.

    Returns:
        (the polygon, None for the empty set; its index in `CANDIDATES`).
    """
    best, choice = polygon_cost(cum, fitted.th, fitted.h), CANDIDATES.index("fit")
    if best > 0.0:
        best, choice = 0.0, CANDIDATES.index("empty")
    for name, (th, h) in candidates.items():
        cost = polygon_cost(cum, th, h)
        if cost < best:
            best, choice = cost, CANDIDATES.index(name)
    name = CANDIDATES[choice]
    if name in ("fit", "empty"):
        return (fitted if name == "fit" else None), choice
    return centred_candidate(*candidates[name], cum.shape[0], cum.shape[1] - 1, radius), choice


def fit_window(
    crop: np.ndarray, edges: int, max_cuts: int, radius: float, sweeps: int, hull_edges: int = 47
) -> tuple[Polygon | None, tuple, dict, int]:
    """Fit the polygon on one window crop (H', W') float32 of a target whose {p > 0.5}
    touches all four sides of the crop (steps 2-6 of the module docstring); the pocket's
    hull candidates get `hull_edges` edges (the most the ICNN holds).

    Returns:
        (the polygon the pocket returned (None: the empty set), the start (th, h,
        centre), the pocket's candidates {name: (th, h)}, in crop-local px, and the
        pocket's choice: an index in `CANDIDATES`): `PolygonFit`'s fields.
    """
    crop = np.ascontiguousarray(crop)
    hh, ww = crop.shape
    sums = window_sums(crop, CUT_GRID)
    parts = component_hulls(sums.fg)
    th, h, start = best_start(sums, edges, max_cuts, parts)
    centre = start[2]
    flat = crop.ravel()
    for k in range(max(1, sweeps)):
        # Half a pixel beyond the offsets a move searches: a rotation shifts pixels far along an
        # edge by more, and with radius alone 2 of the 3,600 corruption items got a worse fit.
        idx, xp, yp, centre = band(hh, ww, th, h, radius + 0.5, centre)
        rotations = np.asarray(ROTATIONS) * ROTATION_SCALES[min(k, len(ROTATION_SCALES) - 1)]
        th2, h2 = polish(xp, yp, pixel_weights(flat[idx]), th, h, radius, rotations, BIN_WIDTH)
        moved = not (np.array_equal(th2, th) and np.array_equal(h2, h))
        th, h = th2, h2
        if not moved:
            break
    # The last sweep's band holds every pixel next to an edge.
    candidates = {"start": start[:2], **hull_candidates(parts, hull_edges)}
    polygon, choice = pocket(centred(xp, yp, th, h, radius), candidates, sums.cum, radius)
    return polygon, start, candidates, choice


def polygon_layers(poly: Polygon | str | None, window, width: int, sharpness: float) -> tuple:
    """One net of `polygons_to_icnn`, float64, in `ICNN.from_weights`' shapes without the
    batch axis: (w_x (2, 2, width), b (2, 1, width), w_z (1, width, width), w_out_z
    (width, 1), w_out_x (2, 1), b_out (1, 1)). `poly`: a `Polygon` (edges in
    window-local px), None (the empty set) or "full"; window (x0, y0, x1, y1) px.

    Raises:
        ValueError: a polygon with more than 2 * width - 1 edges.
    """
    w_x, b = np.zeros((2, 2, width)), np.zeros((2, 1, width))
    w_z, w_out_z, w_out_x, b_out = np.zeros((1, width, width)), np.zeros((width, 1)), np.zeros((2, 1)), np.zeros((1, 1))
    if not isinstance(poly, Polygon):
        b_out[0, 0] = sharpness if poly is None else -sharpness
        return w_x, b, w_z, w_out_z, w_out_x, b_out
    k = poly.th.size
    if k > 2 * width - 1:
        raise ValueError(f"a polygon of {k} edges needs width >= {(k + 2) // 2}, got {width}")
    x0, y0, x1, y1 = (float(v) for v in window)
    nx, ny = np.cos(poly.th) * (x1 - x0) / 2, np.sin(poly.th) * (y1 - y0) / 2  # px per window unit
    k1, rest = min(k, width), k - min(k, width)
    w_x[0, 0, :k1], w_x[0, 1, :k1], b[0, 0, :k1] = nx[:k1], ny[:k1], -poly.h[:k1]
    b[0, 0, k1:] = -1.0  # unused first-layer units: relu(-1) = 0
    w_z[0, :k1, 0] = 1.0
    w_x[1, 0, 1 : 1 + rest], w_x[1, 1, 1 : 1 + rest] = nx[k1:], ny[k1:]
    b[1, 0, 1 : 1 + rest] = -poly.h[k1:]
    w_out_z[: 1 + rest, 0] = sharpness / poly.eps
    b_out[0, 0] = -sharpness
    return w_x, b, w_z, w_out_z, w_out_x, b_out


def polygons_to_icnn(polygons: list[Polygon | str | None], windows: torch.Tensor, width: int, sharpness: float) -> ICNN:
    """A batch of depth-2 ICNNs, net i = {G <= 0} of polygons[i] in window i's [-1, 1]
    coordinates (`polygon_layers`).

    Raises:
        ValueError: a polygon with more than 2 * width - 1 edges.
    """
    layers = [polygon_layers(poly, windows[i], width, sharpness) for i, poly in enumerate(polygons)]
    batched = (np.stack(arrays, axis) for arrays, axis in zip(zip(*layers), (1, 1, 1, 0, 0, 0)))
    net = ICNN.from_weights(*batched)
    assert net.satisfies_constraint()
    return net


def render_polygon_masks(
    polygons: list, windows: torch.Tensor, image_size: tuple[int, int], width: int, sharpness: float
) -> np.ndarray:
    """(N, H, W) bool masks {G_n <= 0} of the `polygons_to_icnn` nets (width, sharpness)
    at the fitted resolution, in O(rows x edges) per mask, without building the nets:
    per pixel row, the polygon's span from the float64 edges; pixels within a rounding
    margin of the span's ends are decided by evaluating G itself on the float32
    weights, as `sam_convex.rendering` does."""
    height, image_width = image_size
    masks = np.zeros((len(polygons), height, image_width), bool)
    boxes = windows.numpy()
    for i, poly in enumerate(polygons):
        x0, y0, x1, y1 = (round(float(v)) for v in boxes[i])
        if poly is None:
            continue
        if not isinstance(poly, Polygon):
            masks[i, y0:y1, x0:x1] = True
            continue
        hh, ww = y1 - y0, x1 - x0
        err = 4e-7 * (ww + hh + float(np.abs(poly.h).max()))  # float32 weights: |a' - a| < err
        inner = spans(poly.th, poly.h, hh, ww, 2 * err + 1e-7)
        outer = spans(poly.th, poly.h, hh, ww, -(2 * poly.eps + 2 * err + 1e-7))
        crop = masks[i, y0:y1, x0:x1]
        loops.fill_spans(crop, *inner)
        rr, cc = loops.span_difference(*outer, *inner)
        if rr.size:
            u = np.stack([(cc + 0.5) * (2 / ww) - 1, (rr + 0.5) * (2 / hh) - 1], 1)
            weights = layer_weights(*polygon_layers(poly, boxes[i], width, sharpness))
            crop[rr, cc] = decide(evaluate(weights, u))
    return masks
