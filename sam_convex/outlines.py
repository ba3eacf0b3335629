"""Convex masks as polygons: extraction for a `ConvexFit`'s masks and the one rasteriser.

Coordinates. A polygon is a (K, 2) float64 array of vertices (x, y) in continuous image
pixel coordinates: pixel (col, row) is the unit square [col, col + 1) x [row, row + 1),
so its centre is (col + 0.5, row + 0.5) and the image spans [0, W] x [0, H] (the
convention of the fit windows and of COCO, whose pycocotools fills [0, 4] x [0, 4] with
4 x 4 pixels). Vertices run counter-clockwise in (x, y), i.e. with a positive shoelace
area (on screen, where y points down, that looks clockwise), without a repeated closing
vertex; an empty mask's polygon is a (0, 2) array.

The pixel-centre rule (`rasterize`, the only rasteriser): pixel (col, row) is in the
mask iff its centre lies in the closed polygon, tested in float64 as
cross(v[k+1] - v[k], centre - v[k]) >= 0 for every edge k. `fit_polygons` returns, for
every mask of a fit, a polygon that this rule turns back into the mask bit for bit:

* `ConvexProjector` fits are polygons: their own edges, clipped to the fit window (or
  the mask's lattice polygon below, where that has fewer vertices: small masks);
* other fits (`GradientProjector`: an ICNN sublevel set, no polygon) and the empty and
  full sets get the mask's *lattice polygon* (`lattice_polygon`): the convex hull of
  its pixel centres with every edge moved out by half a lattice step, so that no other
  pixel centre comes in. A lattice-convex mask (one that holds every pixel centre of
  its hull, as any convex set sampled at the centres does) is exactly the set of pixel
  centres in that polygon; a single pixel's polygon is the pixel's square.

Every returned polygon is checked by rasterising it; a mask that is not lattice-convex
(float rounding at a sublevel set's boundary can do that) gets its hull's polygon with a
`PolygonWarning` that says how many pixels it adds.

`contours` outlines masks that need not be convex (SAM's own masks in the automatic
generators' "coco_polygon" output): approximate, holes left out, not for `rasterize`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import cv2
import numpy as np
from skimage.measure import approximate_polygon, find_contours

from sam_convex import validation
from sam_convex.polygon import Polygon, vertices

EMPTY = np.zeros((0, 2), np.float64)


class PolygonWarning(UserWarning):
    """A mask is not exactly the pixel centres of a convex polygon (its hull's was used)."""


def check_polygon(name: str, polygon) -> np.ndarray:
    """`polygon` as a (K, 2) float64 array (K = 0 or K >= 3, finite, convex and
    counter-clockwise); ValueError saying what is wrong otherwise."""
    poly = np.asarray(polygon, dtype=np.float64)
    if poly.ndim != 2 or poly.shape[1] != 2:
        raise ValueError(f"{name} must be a (K, 2) array of (x, y) vertices, got shape {poly.shape}")
    if poly.shape[0] == 0:
        return poly
    if poly.shape[0] < 3 or not np.isfinite(poly).all():
        raise ValueError(f"{name} must have no vertices or at least 3 finite ones, got {poly.shape[0]}")
    edges = np.roll(poly, -1, axis=0) - poly
    turns = edges[:, 0] * np.roll(edges, -1, axis=0)[:, 1] - edges[:, 1] * np.roll(edges, -1, axis=0)[:, 0]
    scale = float((edges**2).sum(1).max())
    if turns.sum() <= 0 or (turns < -1e-9 * scale).any():
        raise ValueError(f"{name} must be convex with counter-clockwise (x, y) vertices (positive area)")
    return poly


def rasterize(
    polygons: Sequence[np.ndarray], height: int, width: int, scale: float | tuple[float, float] = 1.0
) -> np.ndarray:
    """Pixel masks of convex polygons by the pixel-centre rule (module docstring).

    Args:
        polygons: N arrays (K, 2) of (x, y) vertices, counter-clockwise, in pixel
            coordinates of the image they were made on; (0, 2) for an empty polygon.
        height, width: size of the output masks.
        scale: the vertices are multiplied by this (one number, or (sx, sy)) first:
            (width / W, height / H) renders polygons of a W x H image at another size.
    Returns:
        (N, height, width) bool numpy.
    """
    height = validation.integer("height", height, minimum=1)
    width = validation.integer("width", width, minimum=1)
    sx, sy = (scale, scale) if np.ndim(scale) == 0 else scale
    sx = validation.number("scale", sx, above=0)
    sy = validation.number("scale", sy, above=0)
    out = np.zeros((len(polygons), height, width), bool)
    for i, polygon in enumerate(polygons):
        poly = check_polygon(f"polygons[{i}]", polygon) * [sx, sy]
        if poly.shape[0]:
            _fill(out[i], poly)
    return out


def _inside(poly: np.ndarray, px: np.ndarray, py: np.ndarray) -> np.ndarray:
    """(P,) bool: the rule itself, cross(v[k+1] - v[k], p - v[k]) >= 0 for every k."""
    v0, e = poly, np.roll(poly, -1, axis=0) - poly
    cross = e[:, 0:1] * (py[None] - v0[:, 1:2]) - e[:, 1:2] * (px[None] - v0[:, 0:1])
    return (cross >= 0).all(0)


def _fill(mask: np.ndarray, poly: np.ndarray) -> None:
    """Set the pixels of an (H, W) mask whose centres `_inside` accepts. Per row, the
    span between the edges' crossings (float64 divisions) fills the pixels well inside;
    the pixels within a rounding margin of either end are decided by `_inside`."""
    height, width = mask.shape
    r0 = max(0, math.floor(poly[:, 1].min() - 0.5))
    r1 = min(height, math.ceil(poly[:, 1].max() + 0.5))
    if r1 <= r0:
        return
    y = np.arange(r0, r1) + 0.5
    v0, e = poly, np.roll(poly, -1, axis=0) - poly
    # Edge k keeps x with ey * (x - vx) <= ex * (y - vy): an upper bound of x for ey > 0,
    # a lower one for ey < 0, all or nothing for ey == 0.
    rhs = e[None, :, 0] * (y[:, None] - v0[None, :, 1])
    with np.errstate(divide="ignore", invalid="ignore"):
        bound = v0[None, :, 0] + rhs / e[None, :, 1]
    ey = e[None, :, 1]
    lo = np.where(ey < 0, bound, -np.inf).max(1)
    hi = np.where(ey > 0, bound, np.inf).min(1)
    blocked = ((ey == 0) & (rhs < 0)).any(1)
    tol = 1e-9 * (1.0 + float(np.abs(poly).max()))
    # Columns whose centres c + 0.5 lie in [lo + tol, hi - tol] are inside for sure; the
    # at most one column within tol of each end is tested with the rule.
    sure_lo = np.ceil(lo + tol - 0.5)
    sure_hi = np.floor(hi - tol - 0.5)
    cols = np.arange(width)
    mask[r0:r1] = (cols[None] >= sure_lo[:, None]) & (cols[None] <= sure_hi[:, None]) & ~blocked[:, None]
    rows = np.arange(r0, r1)
    unsure_lo, unsure_hi = np.ceil(lo - tol - 0.5), np.floor(hi + tol - 0.5)
    cand_r, cand_c = np.concatenate([rows, rows]), np.concatenate([unsure_lo, unsure_hi])
    keep = np.concatenate([unsure_lo < sure_lo, unsure_hi > sure_hi])
    keep &= np.tile(~blocked & (unsure_lo <= unsure_hi), 2) & (cand_c >= 0) & (cand_c < width)
    if keep.any():
        rr, cc = cand_r[keep], cand_c[keep].astype(np.int64)
        mask[rr, cc] = _inside(poly, cc + 0.5, rr + 0.5)


def _halfplanes_polygon(normals: np.ndarray, offsets: np.ndarray, centre: np.ndarray) -> np.ndarray | None:
    """Vertices (counter-clockwise) of {x : normals_k . x <= offsets_k} around a point
    strictly inside, or None if that fails (degenerate)."""
    length = np.hypot(normals[:, 0], normals[:, 1])
    th, h = np.mod(np.arctan2(normals[:, 1], normals[:, 0]), 2 * np.pi), offsets / length
    # Parallel half-planes (a fitted edge along a window side): keep the tighter one.
    order = np.lexsort((h, th))
    th, h = th[order], h[order]
    first = np.concatenate([[True], np.diff(th) > 1e-12])
    found, _ = vertices(th[first], h[first], centre)
    if found is None:
        return None
    # Nearly parallel neighbours can meet twice at one point: drop repeats.
    keep = np.hypot(*(found - np.roll(found, 1, axis=0)).T) > 1e-9 * (1.0 + np.abs(found).max())
    if keep.sum() < 3:
        return None
    # Intersections carry float noise (63.99999999999999): snap it to whole and half
    # pixels, where window sides and lattice vertices lie (callers check the result).
    found = found[keep]
    snapped = np.round(found * 2) / 2
    return np.where(np.abs(found - snapped) < 1e-9, snapped, found)


def lattice_polygon(mask: np.ndarray) -> np.ndarray:
    """The lattice polygon of an (H, W) bool mask: the convex hull of its pixel centres,
    every edge moved out by half a lattice step (edge normal m, a primitive integer
    vector: m . x <= max + 1/2, while the next lattice line is at max + 1), so that the
    polygon holds exactly the pixel centres of the hull; the sides of the pixels'
    bounding box cut sharp corners (the polygon stays inside it). A single pixel gives its square;
    a straight run of pixels a thin parallelogram around it.

    Returns:
        (K, 2) float64 (x, y), counter-clockwise; (0, 2) for an empty mask.
    """
    if not mask.any():
        return EMPTY.copy()
    # The hull of the outer contours' pixels is the hull of all pixels, at the cost of
    # the boundary.
    found, _ = cv2.findContours(np.ascontiguousarray(mask, np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    pts = np.concatenate(found).reshape(-1, 2).astype(np.int64)
    hull = cv2.convexHull(pts.astype(np.int32)).reshape(-1, 2).astype(np.int64)
    # cv2.convexHull can keep collinear points: recompute the unique vertices' edges.
    hull = hull[np.any(hull != np.roll(hull, 1, axis=0), axis=1)] if hull.shape[0] > 1 else hull
    if _area2(hull) < 0:  # OpenCV's hull may run either way
        hull = hull[::-1]
    if hull.shape[0] == 1 or _area2(hull) == 0:
        lo, hi = pts[np.lexsort((pts[:, 1], pts[:, 0]))[[0, -1]]]
        direction = _primitive(hi - lo) if (hi != lo).any() else np.array([1, 0])
        across = np.array([-direction[1], direction[0]])
        normals = np.stack([direction, across, -direction, -across])
        offsets = np.array([direction @ hi, across @ hi, -(direction @ lo), -(across @ lo)], np.float64) + 0.5
        centre = (lo + hi) / 2.0
    else:
        sides = np.roll(hull, -1, axis=0) - hull
        normals = np.stack([_primitive(np.array([dy, -dx])) for dx, dy in sides])  # outward for CCW
        # The bounding box's sides too: a sharp corner's moved edges would meet beyond it.
        normals = np.concatenate([normals, [[1, 0], [0, 1], [-1, 0], [0, -1]]])
        offsets = (normals[:, None] * hull[None]).sum(2).max(1).astype(np.float64) + 0.5
        centre = hull.mean(0)
    poly = _halfplanes_polygon(normals.astype(np.float64), offsets, centre.astype(np.float64))
    return poly + 0.5  # pixel indices -> continuous coordinates (centre of pixel c: c + 0.5)


def _area2(poly: np.ndarray):
    """Twice the signed (shoelace) area of a polygon, > 0 counter-clockwise in (x, y);
    exact for integer vertices."""
    x, y = poly[:, 0], poly[:, 1]
    return (x * np.roll(y, -1) - np.roll(x, -1) * y).sum()


def _primitive(v: np.ndarray) -> np.ndarray:
    g = math.gcd(int(v[0]), int(v[1]))
    return v // max(g, 1)


def polygon_of_mask(mask: np.ndarray, name: str = "mask") -> np.ndarray:
    """The lattice polygon of an (H, W) bool mask, checked with `rasterize`; for a mask
    that is not lattice-convex its hull's polygon, with a `PolygonWarning`."""
    poly = lattice_polygon(mask)
    extra = int((rasterize([poly], *mask.shape)[0] != mask).sum())
    if extra:
        warnings.warn(
            f"{name} is not convex on the pixel grid: its polygon is its convex hull's, which adds {extra} pixel(s)",
            PolygonWarning,
            stacklevel=2,
        )
    return poly


def fit_polygons(masks: np.ndarray, shapes: Sequence | None = None, windows: np.ndarray | None = None) -> list:
    """Polygons of a fit's (N, H, W) bool masks (see the module docstring).

    Args:
        masks: (N, H, W) bool numpy, the fit's masks.
        shapes: per mask the polygon fit's result (a `sam_convex.polygon.Polygon` in
            window-local px, None for the empty set, "full"), or None for fits without
            polygons (then every mask gets its lattice polygon).
        windows: (N, 4) (x0, y0, x1, y1) fit windows in pixels, with `shapes`.
    Returns:
        N arrays (K, 2) float64 (x, y), counter-clockwise.
    """
    out = []
    for i, mask in enumerate(masks):
        if not mask.any():
            out.append(EMPTY.copy())
            continue
        poly = None
        if shapes is not None and isinstance(shapes[i], Polygon):
            poly = _window_polygon(shapes[i], windows[i], mask)
            if poly is not None and not np.array_equal(rasterize([poly], *mask.shape)[0], mask):
                poly = None  # a centre within float rounding of an edge: the lattice polygon is exact
        lattice = lattice_polygon(mask)
        lattice_exact = np.array_equal(rasterize([lattice], *mask.shape)[0], mask)
        # Both exact: a small mask's lattice polygon has fewer vertices (a pixel: 4, where
        # the fit's start polygon has `edges`).
        if poly is None or (lattice_exact and len(lattice) < len(poly)):
            poly = lattice if lattice_exact else polygon_of_mask(mask, f"mask {i}")
        out.append(poly)
    return out


def _window_polygon(shape: Polygon, window, mask: np.ndarray) -> np.ndarray | None:
    """The fitted polygon's edges plus the window's four sides (the mask is empty
    outside the window), in image coordinates; None if degenerate."""
    x0, y0, x1, y1 = (float(v) for v in window)
    hw, hh = (x1 - x0) / 2, (y1 - y0) / 2
    normals = np.concatenate([np.stack([np.cos(shape.th), np.sin(shape.th)], 1), [[1, 0], [0, 1], [-1, 0], [0, -1]]])
    offsets = np.concatenate([shape.h, [hw, hh, hw, hh]])
    rows, cols = np.nonzero(mask)
    centre = np.array([cols.mean() + 0.5 - x0 - hw, rows.mean() + 0.5 - y0 - hh])
    poly = _halfplanes_polygon(normals, offsets, centre)
    return None if poly is None else poly + [x0 + hw, y0 + hh]


def contours(mask: np.ndarray) -> list[np.ndarray]:
    """Outlines of an (H, W) bool mask that need not be convex (SAM's own masks): the
    outer boundaries of its 8-connected pieces by marching squares (skimage, level 0.5:
    through the midpoints between inside and outside pixel centres, so the pixel-centre
    rule fills them back to the mask, but for holes), collinear points merged, in
    continuous pixel coordinates, counter-clockwise. Holes are left out (a COCO polygon
    cannot hold one).

    Returns:
        list of (K, 2) float64 (x, y), K >= 3.
    """
    padded = np.pad(np.asarray(mask, np.float64), 1)  # closes contours at the image border
    out = []
    for found in find_contours(padded, 0.5, fully_connected="high"):
        pts = approximate_polygon(found, tolerance=1e-6)[:-1, ::-1] - 0.5  # (row, col) -> (x, y), unpad
        if len(pts) >= 3 and _area2(pts) > 0:  # marching squares runs holes the other way
            out.append(pts)
    return out
