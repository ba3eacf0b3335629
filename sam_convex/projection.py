"""proj_S: project masks onto the set S of shapes an ICNN can represent.

For a target probability map p, proj_S(p) is the sublevel set {G <= 0} of an ICNN G
(eq. (1) of the paper; convex because G is) that minimises the paper's distance
sum_x (p(x) - sigmoid(-G(x)))^2. Two projectors return the same `ConvexFit`:

* `ConvexProjector` (the default): the distance's hard limit sum_x (p(x) - [x in C])^2,
  minimised exactly on the target's pixels over convex polygons, each written exactly
  as a depth-2 ICNN (`sam_convex.polygon`). About as fast as a convex hull on a CPU;
  -G is a hard mask (+s inside, steep outside).
* `GradientProjector` (`sam_convex.gradient`): Adam on the smooth distance, batched on
  any torch device; -G is a smooth logit map.

Masks are rendered at the cost of their boundary, logits only when asked for
(`sam_convex.rendering`), so memory follows the image, not the fit.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch
from threadpoolctl import ThreadpoolController

from sam_convex import loops, outlines, validation
from sam_convex.icnn import ICNN
from sam_convex.parallel import map_ordered
from sam_convex.polygon import (
    Polygon,
    PolygonFit,
    fit_window,
    polygons_to_icnn,
    render_polygon_masks,
    target_window,
)
from sam_convex.rendering import OUTSIDE_LOGIT, render_logits, render_masks

__all__ = ["OUTSIDE_LOGIT", "ConvexFit", "ConvexProjector"]


@functools.cache
def blas_controller() -> ThreadpoolController:
    """The process's BLAS thread pools, found once: `threadpool_limits` rescans every
    loaded library on each call (about 2 ms, as much as a small fit). The BLAS libraries
    come with numpy and torch, which are imported before this is first called."""
    return ThreadpoolController()


@contextlib.contextmanager
def limit_threads(n: int | None) -> Iterator[None]:
    """Run the block with n torch and BLAS threads (None: leave both alone). The fits
    are many small operations: extra threads only contend, the more so when other work
    shares the cores (numpy's BLAS does not follow torch.set_num_threads)."""
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        with blas_controller().limit(limits=n, user_api="blas"):
            yield
    finally:
        torch.set_num_threads(before)


def squared_distance(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """The paper's distance per map: mean over points of weight * (pred - target)^2.

    Args:
        pred, target: (N, P) float; weight: (N, P) float or None (all ones).
    Returns:
        (N,) float.
    """
    err = (pred - target) ** 2
    return (err if weight is None else weight * err).mean(dim=1)


def grid_coords(rows: int, cols: int, device=None) -> torch.Tensor:
    """Cell-centre coordinates of a rows x cols lattice over [-1, 1]^2.

    Returns:
        (rows * cols, 2) float32, (x, y) per point, row-major.
    """
    ys = (torch.arange(rows, device=device, dtype=torch.float32) + 0.5) * (2.0 / rows) - 1
    xs = (torch.arange(cols, device=device, dtype=torch.float32) + 0.5) * (2.0 / cols) - 1
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([xx.flatten(), yy.flatten()], dim=1)


def moments(weights: torch.Tensor, coords: torch.Tensor, rows: int, cols: int):
    """Weighted mean and covariance of points on a rows x cols lattice over [-1, 1]^2.

    One lattice cell of regularisation keeps lines and single pixels positive definite;
    an all-zero weight row gets uniform weights (the whole window's ellipse).

    Args:
        weights: (N, rows * cols) non-negative float (e.g. probabilities).
        coords: (rows * cols, 2) lattice coordinates (`grid_coords`).
    Returns:
        mean (N, 2) and covariance (N, 2, 2), as `ICNN.init_from_moments` takes them.
    """
    mass = weights.sum(dim=1, keepdim=True)
    wts = torch.where(mass > 0, weights, torch.ones_like(weights))
    wts = wts / wts.sum(dim=1, keepdim=True)
    mean = wts @ coords  # (N, 2)
    centred = coords[None] - mean[:, None]  # (N, P, 2)
    cov = torch.einsum("np,npi,npj->nij", wts, centred, centred)
    cov = cov + (2.0 / rows) * (2.0 / cols) * torch.eye(2, device=weights.device)
    return mean, cov


def hard_distances(probs: torch.Tensor, masks: torch.Tensor, windows: list | None = None) -> np.ndarray:
    """(N,) float32: mean over pixels of (p - mask)^2 for (N, H, W) targets and masks,
    the quantity proj_S minimises (accumulated in float64): sum p^2 + sum over the mask
    of (1 - 2p).

    Args:
        windows: per mask (r0, r1, c0, c1) rows and cols holding the whole mask, or None
            (the whole image). sum p^2 is one pass of OpenCV over the float32 target
            (double accumulation); the rest costs the window, not the image.
    """
    out = np.empty(probs.shape[0], np.float32)
    height, width = probs.shape[1:]
    for i in range(probs.shape[0]):
        p = np.ascontiguousarray(probs[i].detach().cpu().float().numpy())
        r0, r1, c0, c1 = windows[i] if windows is not None else (0, height, 0, width)
        m = masks[i, r0:r1, c0:c1].cpu().numpy()
        # sum (p - m)^2 = sum p^2 + sum over the mask of w (`pixel_weights`)
        out[i] = (cv2.norm(p, cv2.NORM_L2SQR) + loops.masked_weight_sum(p[r0:r1, c0:c1], m)) / p.size
    return out


def masks_like(targets, masks: torch.Tensor):
    """(N, H, W) bool masks in the targets' shape and kind: (H, W) or (N, H, W), numpy or
    torch (on the targets' device)."""
    two_d = (targets.dim() if isinstance(targets, torch.Tensor) else np.ndim(targets)) == 2
    masks = masks[0] if two_d else masks
    if isinstance(targets, torch.Tensor):
        return masks.to(targets.device)
    return masks.cpu().numpy()


@dataclass
class ConvexFit:
    """Result of a batched projection.

    Attributes:
        masks: (N, H, W) bool tensor, {G_n <= 0} inside each fit window (on the targets'
            device, or the projector's).
        losses: (N,) float32 numpy, the hard distance mean_x (p(x) - mask(x))^2 of each
            target to its returned mask, over the target's pixels.
        windows: (N, 4) float32 tensor, fit windows (x0, y0, x1, y1) in pixels.
        net: the fitted `ICNN` batch (constraint satisfied), in window coordinates, CPU;
            built on first access where the fit can build it (pass `_build_net`, a
            function of no arguments, instead of `net`).
        image_size: (H, W) of the fitted targets.
        details: what the projector reports per fit (e.g. polygon edges, Adam steps).
        logits, probs: (N, H, W) float32 tensors -G_n and sigmoid(-G_n) (`OUTSIDE_LOGIT`
            outside the window), computed on first access (4 bytes per pixel each);
            `masks == (logits >= 0)`.
        polygons: per mask a (K, 2) float64 numpy array of (x, y) vertices in image pixel
            coordinates (pixel (col, row) covers [col, col + 1) x [row, row + 1)),
            counter-clockwise, no repeated closing vertex, (0, 2) for an empty mask;
            computed on first access. `outlines.rasterize(polygons, H, W)` (a pixel is in
            iff its centre is in the closed polygon) gives `masks` back bit for bit; see
            `sam_convex.outlines`.
        shapes: what the polygon fit found per mask (`sam_convex.polygon.Polygon`, None
            for the empty set, "full"), or None for fits without polygons.
    """

    masks: torch.Tensor
    losses: np.ndarray
    windows: torch.Tensor
    _net: ICNN | None = field(repr=False)
    image_size: tuple[int, int]
    details: dict = field(default_factory=dict)
    shapes: list | None = field(default=None, repr=False)
    _build_net: Callable[[], ICNN] | None = field(default=None, repr=False)
    _logits: torch.Tensor | None = field(default=None, repr=False)
    _polygons: list[np.ndarray] | None = field(default=None, repr=False)

    @property
    def net(self) -> ICNN:
        if self._net is None:
            self._net = self._build_net()
        return self._net

    @property
    def logits(self) -> torch.Tensor:
        if self._logits is None:
            self._logits = self.render(*self.image_size)
        return self._logits

    @property
    def probs(self) -> torch.Tensor:
        return torch.sigmoid(self.logits)

    @property
    def polygons(self) -> list[np.ndarray]:
        if self._polygons is None:
            windows = self.windows.cpu().numpy()
            self._polygons = outlines.fit_polygons(self.masks.cpu().numpy(), self.shapes, windows)
        return self._polygons

    def polygons_at(self, height: int, width: int) -> list[np.ndarray]:
        """`polygons` scaled to a (height, width) image covering the same extent."""
        sx, sy = self._scale(height, width)
        return [p * [sx, sy] for p in self.polygons]

    def render_polygons(self, height: int, width: int) -> torch.Tensor:
        """`polygons` rasterised at the pixel centres of a (height, width) image covering
        the same extent: (N, height, width) bool. At the fitted size this is `masks`;
        at others it agrees with `render_masks` except for pixel centres within a
        polygon fit's tolerance (< 0.01 px) of an edge, or, for lattice polygons (fits
        without polygons), within half a pixel of the mask's outline."""
        masks = outlines.rasterize(self.polygons, height, width, scale=self._scale(height, width))
        return torch.from_numpy(masks).to(self.masks.device)

    def _scale(self, height: int, width: int) -> tuple[float, float]:
        height = validation.integer("height", height, minimum=1)
        width = validation.integer("width", width, minimum=1)
        return width / self.image_size[1], height / self.image_size[0]

    def render(self, height: int, width: int) -> torch.Tensor:
        """-G_n at the pixel centres of a (height, width) image covering the same extent
        as the fitted one: (N, height, width) float32 logits, foreground `>= 0`."""
        logits = render_logits(self.net, self.windows, self.image_size, height, width)
        return torch.from_numpy(logits).to(self.masks.device)

    def render_masks(self, height: int, width: int) -> torch.Tensor:
        """{G_n <= 0} at the pixel centres of a (height, width) image covering the same
        extent: (N, height, width) bool, at the cost of the boundary, not the area."""
        masks = render_masks(self.net, self.windows, self.image_size, height, width)
        return torch.from_numpy(masks).to(self.masks.device)


@dataclass
class ConvexProjector:
    """proj_S by the exact polygon fit (see `sam_convex.polygon`): one ICNN per mask.

    Every setting is a field, so `repr` shows them all and harnesses can key cached
    results on `dataclasses.asdict(projector)`.

    Args:
        width: ICNN hidden width (depth is 2); a polygon of up to 2 * width - 1 edges
            fits, so edges + max_cuts must stay below that.
        edges: edges of the start polygon (the circumscribed hull).
        max_cuts: at most this many half-plane cuts (the moves that remove bites).
        radius: the polish searches every edge's offsets within +-radius px.
        sweeps: polish sweeps over all edges (fewer: faster, slightly less exact).
        sharpness: -G inside the polygon (G falls to 0 within a fraction of a pixel
            outside it: the logits are a hard mask's).
        device: where the returned tensors live (None: the targets' device); the fit
            itself runs on the CPU.
        threads: torch and BLAS threads during the fit (restored afterwards); None
            leaves them alone. The fit is many small operations: on a CPU one thread
            is usually fastest, and far faster when other work shares the cores.
        workers: processes that fit the masks of one call in parallel (one thread
            each; the pool starts on first use and is kept); 1 fits them in this
            process. The masks and weights are those of workers=1, bit for bit.

    The fit uses no randomness: same input, same output, and a batched call returns
    exactly the masks and weights of N single calls.
    """

    width: int = 24
    edges: int = 24
    max_cuts: int = 8
    radius: float = 3.0
    sweeps: int = 3
    sharpness: float = 10.0
    device: str | torch.device | None = None
    threads: int | None = None
    workers: int = 1

    def __post_init__(self) -> None:
        # The upper bounds keep memory, time and float32 logits sane; they are far beyond
        # what a fit needs (a depth-2 net of width 512 holds 1023 edges).
        self.width = validation.integer("width", self.width, minimum=3, maximum=512)
        self.edges = validation.integer("edges", self.edges, minimum=4, maximum=1023)
        self.max_cuts = validation.integer("max_cuts", self.max_cuts, minimum=0, maximum=1023)
        self.sweeps = validation.integer("sweeps", self.sweeps, minimum=1, maximum=100)
        self.radius = validation.number("radius", self.radius, minimum=1.0, maximum=32.0)
        self.sharpness = validation.number("sharpness", self.sharpness, above=0, maximum=1e6)
        self.threads = validation.integer("threads", self.threads, minimum=1, allow_none=True)
        self.workers = validation.integer("workers", self.workers, minimum=1, maximum=1024)
        validation.device("device", self.device)
        if self.edges + self.max_cuts > 2 * self.width - 1:
            raise ValueError(
                f"edges + max_cuts must be <= 2 * width - 1 = {2 * self.width - 1} (a depth-2 ICNN of width "
                f"{self.width} holds that many edges), got {self.edges} + {self.max_cuts}"
            )

    def __call__(self, targets, logits: bool = False):
        """Project masks; returns bool masks of the input's shape and kind.

        Args:
            targets: (H, W) or (N, H, W) probabilities in [0, 1] (or logits with
                `logits=True`, or bool masks), numpy array or torch tensor.
        Returns:
            bool numpy array or torch tensor (same device), same shape as targets.

        The masks alone: the distance (`ConvexFit.losses`) is one more pass over every
        target, so it is computed only by `fit`.
        """
        with limit_threads(self.threads):
            probs, kinds = self._checked(targets, logits)
            return masks_like(targets, self._shapes(probs, kinds)[3])

    def fit(self, targets, logits: bool = False) -> ConvexFit:
        """Fit one ICNN per mask and return the `ConvexFit` (tensors always (N, H, W))."""
        with limit_threads(self.threads):
            probs, kinds = self._checked(targets, logits)
            if self.device is not None:
                device = torch.device(self.device)
            else:
                device = targets.device if isinstance(targets, torch.Tensor) else torch.device("cpu")
            return self._fit(probs, kinds, device)

    @staticmethod
    def _checked(targets, logits: bool) -> tuple[torch.Tensor, list]:
        """The validated targets as (N, H, W) float32 CPU probabilities and their
        `target_window`s (kind, window). The values of probabilities are checked in the
        windows' pass over each target: only when some lie outside [0, 1] does
        `validation.probabilities` read them again, to name the error or to clip
        rounding noise (which leaves {p > 0.5}, and so the windows, as they are)."""

        def as_batch(check_range: bool) -> torch.Tensor:
            probs = validation.probabilities(targets, logits=logits, check_range=check_range)
            return (probs.unsqueeze(0) if probs.dim() == 2 else probs).detach().cpu()

        probs = as_batch(check_range=False)
        scans = [target_window(p) for p in probs.numpy()]
        if any(outside for _, _, outside in scans):
            probs = as_batch(check_range=True)
        return probs, [(kind, window) for kind, window, _ in scans]

    @property
    def _fit_window(self) -> functools.partial:
        """`fit_window` with this projector's settings (a picklable job for the workers)."""
        return functools.partial(
            fit_window,
            edges=self.edges,
            max_cuts=self.max_cuts,
            radius=self.radius,
            sweeps=self.sweeps,
            hull_edges=2 * self.width - 1,
        )

    def _shapes(self, probs: torch.Tensor, kinds: list) -> tuple[list, list, torch.Tensor, torch.Tensor]:
        """The fit of (N, H, W) float32 CPU probabilities and their kinds and windows
        (`_checked`): per target its `PolygonFit` and its shape (a `Polygon`, None for
        the empty set, or "full"), the windows (N, 4) float32 and the masks (N, H, W)
        bool, on the CPU."""
        p_all = probs.numpy()
        height, width = p_all.shape[1:]
        # Only the window crops travel to the worker processes.
        todo = [i for i, (kind, _) in enumerate(kinds) if kind == "polygon"]
        crops = [p_all[i][slice(*kinds[i][1][:2]), slice(*kinds[i][1][2:])] for i in todo]
        fitted = dict(zip(todo, map_ordered(self._fit_window, crops, self.workers)))
        fits = [PolygonFit(kind, window, *fitted.get(i, ())) for i, (kind, window) in enumerate(kinds)]
        # Through numpy: torch.tensor of a nested list took 60-75 us.
        windows = torch.from_numpy(
            np.array([[c0, r0, c1, r1] for r0, r1, c0, c1 in (f.window for f in fits)], np.float32)
        )
        polygons = [{"empty": None, "full": "full"}.get(f.kind, f.polygon) for f in fits]
        masks = render_polygon_masks(polygons, windows, (height, width), self.width, self.sharpness)
        return fits, polygons, windows, torch.from_numpy(masks)

    def _fit(self, probs: torch.Tensor, kinds: list, device: torch.device) -> ConvexFit:
        fits, polygons, windows, masks = self._shapes(probs, kinds)
        choice = np.array([f.choice for f in fits], np.int64)
        edges = np.array([p.th.size if isinstance(p, Polygon) else 0 for p in polygons])
        return ConvexFit(
            masks=masks.to(device),
            losses=hard_distances(probs, masks, [f.window for f in fits]),
            windows=windows,
            _net=None,
            image_size=tuple(masks.shape[1:]),
            details={"edges": edges, "choice": choice},
            shapes=polygons,
            # Built on first access: most callers want the masks alone.
            _build_net=functools.partial(polygons_to_icnn, polygons, windows, self.width, self.sharpness),
        )


# GradientProjector's settings that the polygon fit does not have: refused by name,
# so that code written for a gradient fit does not run with settings that do nothing.
GRADIENT_SETTINGS = ("grid", "depth", "steps", "fine_steps", "lr", "pos_weight", "tol", "patience", "seed")
_dataclass_init = ConvexProjector.__init__


def _init_refusing_gradient_settings(self, *args, **kwargs) -> None:
    gradient = sorted(k for k in kwargs if k in GRADIENT_SETTINGS)
    if gradient:
        raise TypeError(
            f"ConvexProjector got {', '.join(gradient)}=...: these are GradientProjector's settings (the Adam fit); "
            "ConvexProjector is the exact polygon fit (deterministic, no steps or learning rate)"
        )
    _dataclass_init(self, *args, **kwargs)


ConvexProjector.__init__ = _init_refusing_gradient_settings
