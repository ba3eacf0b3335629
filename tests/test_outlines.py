"""fit.polygons round-trips to fit.masks bit for bit by the pixel-centre rule."""

import warnings

import cv2
import numpy as np
import pytest
import torch

from sam_convex import ConvexProjector, GradientProjector
from sam_convex.outlines import PolygonWarning, lattice_polygon, polygon_of_mask, rasterize
from sam_convex.synthetic import ellipse, polygon, rotated_rectangle


def signed_area(poly):
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * float((x * np.roll(y, -1) - np.roll(x, -1) * y).sum())


def random_shapes(rng, n, h, w):
    """Convex shapes of every kind: ellipses, polygons, thin lines at many angles, single
    pixels, 2-pixel masks, full and empty masks, and damaged (noisy) convex shapes."""
    out = []
    for k in range(n):
        kind = k % 8
        cx, cy = rng.uniform(0.2 * w, 0.8 * w), rng.uniform(0.2 * h, 0.8 * h)
        t = rng.uniform(0, np.pi)
        if kind == 0:
            m = ellipse(cx, cy, rng.uniform(2, w / 3), rng.uniform(0.4, h / 4), t, h, w)
        elif kind == 1:  # a thin line: half-width 0.3-1 px
            m = rotated_rectangle(cx, cy, rng.uniform(3, w / 3), rng.uniform(0.3, 1.0), t, h, w)
        elif kind == 2:
            m = np.zeros((h, w), bool)
            m[rng.integers(h), rng.integers(w)] = True
        elif kind == 3:  # two pixels, neighbours or apart
            m = np.zeros((h, w), bool)
            r, c = rng.integers(1, h - 1), rng.integers(1, w - 1)
            m[r, c] = True
            m[r + rng.integers(-1, 2), c + rng.integers(-1, 2) * rng.integers(1, 4)] = True
        elif kind == 4:
            ang = np.sort(rng.uniform(0, 2 * np.pi, rng.integers(3, 9)))
            rad = rng.uniform(3, min(h, w) / 3)
            m = polygon(np.stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)], 1), h, w)
        elif kind == 5:  # damaged: noise and a bite
            m = ellipse(cx, cy, w / 4, h / 5, t, h, w) & (rng.random((h, w)) > 0.15)
            m &= ~ellipse(cx + w / 5, cy, w / 10, h / 10, 0, h, w)
        elif kind == 6:
            m = np.ones((h, w), bool) if k % 16 == 6 else np.zeros((h, w), bool)
        else:  # a soft probability map
            m = np.clip(ellipse(cx, cy, w / 5, h / 6, t, h, w) + rng.normal(0, 0.3, (h, w)), 0, 1).astype(np.float32)
        out.append(m.astype(np.float32))
    return np.stack(out)


@pytest.mark.parametrize(("h", "w"), [(64, 64), (48, 97), (101, 40)])
def test_polygon_fit_round_trips_bit_for_bit(h, w):
    targets = random_shapes(np.random.default_rng(h * w), 48, h, w)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PolygonWarning)  # no mask falls back to a hull
        fit = ConvexProjector().fit(targets)
        polygons = fit.polygons
    masks = fit.masks.numpy()
    assert np.array_equal(rasterize(polygons, h, w), masks)
    for poly, mask in zip(polygons, masks):
        assert poly.dtype == np.float64 and poly.ndim == 2 and poly.shape[1] == 2
        if not mask.any():
            assert poly.shape == (0, 2)
            continue
        assert len(poly) >= 3 and signed_area(poly) > 0  # counter-clockwise in (x, y)
        assert not np.array_equal(poly[0], poly[-1])  # no closing vertex
        assert (poly >= 0).all() and (poly[:, 0] <= w).all() and (poly[:, 1] <= h).all()
    # Large fits keep the fit's own polygon (at most 2 * width - 1 edges, plus the fit
    # window's 4 sides), not a lattice hull.
    big = [len(p) for p, m in zip(polygons, masks) if m.sum() > 400]
    assert big and max(big) <= 2 * 24 - 1 + 4


def test_gradient_fit_round_trips():
    targets = random_shapes(np.random.default_rng(1), 8, 40, 56)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PolygonWarning)
        fit = GradientProjector(steps=20, fine_steps=5).fit(targets)
        assert np.array_equal(rasterize(fit.polygons, 40, 56), fit.masks.numpy())


def test_tiny_masks_get_their_pixels():
    m = np.zeros((5, 7), bool)
    m[2, 3] = True
    assert np.array_equal(lattice_polygon(m), [[3, 2], [4, 2], [4, 3], [3, 3]])  # the pixel's square
    fit = ConvexProjector().fit(m)
    assert np.array_equal(rasterize(fit.polygons, 5, 7)[0], fit.masks[0].numpy())
    assert len(fit.polygons[0]) == 4  # the lattice square has fewer vertices than the fitted 24-gon


@pytest.mark.parametrize("angle", np.linspace(0, np.pi, 37))
def test_digital_lines_at_many_angles(angle):
    # A one-pixel digital segment (Bresenham-like rounding) is lattice-convex.
    m = np.zeros((70, 90), bool)
    t = np.linspace(-30, 30, 241)
    m[np.round(35 + t * np.sin(angle)).astype(int), np.round(45 + t * np.cos(angle)).astype(int)] = True
    poly = lattice_polygon(m)
    extra = rasterize([poly], 70, 90)[0] & ~m
    missing = m & ~rasterize([poly], 70, 90)[0]
    assert not missing.any()
    if not extra.any():  # lattice-convex: exact
        fit = ConvexProjector().fit(m)
        assert np.array_equal(rasterize(fit.polygons, 70, 90), fit.masks.numpy())


def test_non_convex_mask_warns_and_gives_its_hull():
    m = np.zeros((20, 20), bool)
    m[2:18, 2:5] = m[15:18, 2:18] = True  # an L
    with pytest.warns(PolygonWarning, match="not convex"):
        poly = polygon_of_mask(m)
    assert (rasterize([poly], 20, 20)[0] >= m).all()


def test_render_polygons_at_other_sizes():
    targets = random_shapes(np.random.default_rng(2), 16, 60, 80)
    fit = ConvexProjector().fit(torch.from_numpy(targets))
    big = fit.render_polygons(180, 160).numpy()
    assert big.shape == (16, 180, 160)
    assert np.array_equal(fit.render_polygons(60, 80).numpy(), fit.masks.numpy())
    # Equal to the ICNN's rendering but for pixel centres within a hair of an edge
    # (fit polygons) or half a lattice step (lattice polygons of small masks).
    assert (big != fit.render_masks(180, 160).numpy()).mean() < 0.002
    scaled = fit.polygons_at(180, 160)
    assert np.array_equal(rasterize(scaled, 180, 160), big)


def test_rasterize_rejects_bad_polygons():
    with pytest.raises(ValueError, match="counter-clockwise"):
        rasterize([np.array([[0, 0], [0, 4], [4, 4], [4, 0]], float)], 8, 8)  # clockwise
    with pytest.raises(ValueError, match="at least 3"):
        rasterize([np.array([[0, 0], [1, 1]], float)], 8, 8)
    with pytest.raises(ValueError, match=r"\(K, 2\)"):
        rasterize([np.zeros((4, 3))], 8, 8)


def test_rasterize_is_the_pixel_centre_rule():
    """Against the rule evaluated at every pixel centre (closed polygon: centres on an
    edge are in), for random convex polygons, scales and image sizes."""
    rng = np.random.default_rng(5)
    square = np.array([[0.5, 0.5], [3.5, 0.5], [3.5, 3.5], [0.5, 3.5]])  # every edge through centres
    assert np.array_equal(np.argwhere(rasterize([square], 6, 6)[0]), np.argwhere(np.pad(np.ones((4, 4)), (0, 2))))
    for _ in range(30):
        h, w = rng.integers(5, 60, 2)
        ang = np.sort(rng.uniform(0, 2 * np.pi, rng.integers(3, 12)))
        poly = np.stack([w / 2 + rng.uniform(1, w) * np.cos(ang), h / 2 + rng.uniform(1, h) * np.sin(ang)], 1)
        poly = np.round(poly * 2) / 2  # half-pixel vertices put many centres exactly on edges
        hull = poly[np.unique(cv2.convexHull(poly.astype(np.float32), returnPoints=False).ravel())]
        hull = hull[np.argsort(np.arctan2(hull[:, 1] - hull[:, 1].mean(), hull[:, 0] - hull[:, 0].mean()))]
        if len(hull) < 3 or signed_area(hull) <= 0:
            continue
        scale = rng.uniform(0.5, 2)
        yy, xx = np.mgrid[:h, :w] + 0.5
        edges = np.roll(hull * scale, -1, axis=0) - hull * scale
        cross = edges[:, 0, None, None] * (yy - hull[:, 1, None, None] * scale) - edges[:, 1, None, None] * (
            xx - hull[:, 0, None, None] * scale
        )
        assert np.array_equal(rasterize([hull], h, w, scale=scale)[0], (cross >= 0).all(0))
