"""proj_S: project masks onto the set of shapes an ICNN can represent.

For a target probability map p, the projection fits an ICNN G by minimising
sum_x (p(x) - sigmoid(-G(x)))^2 (the paper's dist(p, S)) and returns {G <= 0},
which is convex because G is.

How the fit is made cheap without changing what it computes:

* **Fit window.** Every pixel outside the bounding box of {p > 0.5} costs at least as
  much inside the mask as outside it, and intersecting a convex set with a box keeps it
  convex, so the projection lies inside that box. Each mask is fitted on its own window
  (the box plus a margin) mapped affinely to [-1, 1]^2, and the result is {G <= 0}
  restricted to the window, still a convex set. Small objects thus get full resolution.
* **Coarse grid.** The target is area-sampled on a grid x grid lattice over the window
  (`torchvision.ops.roi_align`, all masks in one call); the net is evaluated at full
  resolution only at the end.
* **Coarse-to-fine.** Most Adam steps run on a lattice of half the size.
* **Moment initialisation.** Each net starts as a cone whose zero level set is the
  moment ellipse of the target's largest component (see `ICNN.init_from_moments`), so
  the optimiser only refines; the iterate with the lowest hard distance on the lattice
  (the start included) is the one returned.
* **Batching.** N masks are N independent nets stacked in one `ICNN`, trained with one
  Adam loop on the sum of their losses. The nets do not interact, so a batched fit
  returns the masks of N single fits up to float rounding: batched and single matrix
  products may round differently (CPU-dependent), which can move a few boundary pixels
  (the tests require IoU >= 0.99 between the two).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torchvision.ops import roi_align

from sam_convex import validation
from sam_convex.baselines import largest_component
from sam_convex.icnn import ICNN

# Logit assigned outside a mask's fit window, where the projection is background.
OUTSIDE_LOGIT = -30.0
WARMUP = 5  # Adam's first steps are full-size sign steps: ramp the rate up


def squared_distance(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """The paper's distance per map: mean over points of weight * (pred - target)^2.

    Args:
        pred, target: (N, P) float; weight: (N, P) float or None (all ones).
    Returns:
        (N,) float.
    """
    err = (pred - target) ** 2
    return (err if weight is None else weight * err).mean(dim=1)


def fit_windows(probs: torch.Tensor, margin: float = 0.1, min_margin: int = 2) -> torch.Tensor:
    """Per-mask fit window: bounding box of {p > 0.5}, grown by a margin, clipped.

    Args:
        probs: (N, H, W) float probabilities.
    Returns:
        (N, 4) float32 boxes (x0, y0, x1, y1) in continuous pixel coordinates (pixel
        (i, j) covers [j, j+1) x [i, i+1)). A mask with no pixel above 0.5 gets the
        whole image.
    """
    n, h, w = probs.shape
    fg = probs > 0.5
    boxes = torch.tensor([[0.0, 0.0, w, h]]).repeat(n, 1)
    rows, cols = fg.any(dim=2), fg.any(dim=1)
    for i in range(n):
        if not rows[i].any():
            continue
        r = torch.nonzero(rows[i]).flatten()
        c = torch.nonzero(cols[i]).flatten()
        y0, y1 = float(r[0]), float(r[-1]) + 1
        x0, x1 = float(c[0]), float(c[-1]) + 1
        my = max(min_margin, margin * (y1 - y0))
        mx = max(min_margin, margin * (x1 - x0))
        boxes[i] = torch.tensor([max(0.0, x0 - mx), max(0.0, y0 - my), min(float(w), x1 + mx), min(float(h), y1 + my)])
    return boxes


def grid_coords(rows: int, cols: int, device=None) -> torch.Tensor:
    """Cell-centre coordinates of a rows x cols lattice over [-1, 1]^2.

    Returns:
        (rows * cols, 2) float32, (x, y) per point, row-major.
    """
    ys = (torch.arange(rows, device=device, dtype=torch.float32) + 0.5) * (2.0 / rows) - 1
    xs = (torch.arange(cols, device=device, dtype=torch.float32) + 0.5) * (2.0 / cols) - 1
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([xx.flatten(), yy.flatten()], dim=1)


def window_pixel_coords(box: torch.Tensor, scale_y: float, scale_x: float, height: int, width: int, device=None):
    """Pixels of a (height, width) image whose centres fall inside a window.

    Args:
        box: (4,) window (x0, y0, x1, y1) in the fit image's pixel coordinates.
        scale_y, scale_x: render size / fit size along each axis.
    Returns:
        (row slice, col slice, (P, 2) float32 window coordinates in [-1, 1]).
    """
    x0, y0, x1, y1 = (float(v) for v in box)
    x0, x1, y0, y1 = x0 * scale_x, x1 * scale_x, y0 * scale_y, y1 * scale_y
    # Pixel j has centre j + 0.5; keep the pixels whose centres lie in [x0, x1).
    c0, c1 = max(0, int(np.ceil(x0 - 0.5))), min(width, int(np.ceil(x1 - 0.5)))
    r0, r1 = max(0, int(np.ceil(y0 - 0.5))), min(height, int(np.ceil(y1 - 0.5)))
    xs = (torch.arange(c0, c1, device=device, dtype=torch.float32) + 0.5 - x0) * (2 / (x1 - x0)) - 1
    ys = (torch.arange(r0, r1, device=device, dtype=torch.float32) + 0.5 - y0) * (2 / (y1 - y0)) - 1
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return slice(r0, r1), slice(c0, c1), torch.stack([xx.flatten(), yy.flatten()], dim=1)


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


@torch.no_grad()
def render_logits(
    net: ICNN, windows: torch.Tensor, image_size: tuple[int, int], height: int, width: int
) -> torch.Tensor:
    """-G_n per pixel of a (height, width) rendering; OUTSIDE_LOGIT outside windows.

    Args:
        net: N fitted nets in window coordinates; windows: (N, 4) their windows in the
            pixels of an image of `image_size` (H, W).
    Returns:
        (N, height, width) float32.
    """
    height = validation.integer("height", height, minimum=1)
    width = validation.integer("width", width, minimum=1)
    device = net.w_x.device
    out = torch.full((net.num_nets, height, width), OUTSIDE_LOGIT, device=device)
    sy, sx = height / image_size[0], width / image_size[1]
    for i in range(net.num_nets):
        rs, cs, coords = window_pixel_coords(windows[i], sy, sx, height, width, device)
        if coords.shape[0] == 0:
            continue
        g = net(coords, nets=torch.tensor([i], device=device))[0]
        out[i, rs, cs] = (-g).reshape(rs.stop - rs.start, cs.stop - cs.start)
    return out


@dataclass
class ConvexFit:
    """Result of a batched projection.

    Attributes:
        masks: (N, H, W) bool tensor, {G_n <= 0} inside each fit window.
        probs: (N, H, W) float32 tensor, sigmoid(-G_n) (~0 outside the window).
        logits: (N, H, W) float32 tensor, -G_n (`OUTSIDE_LOGIT` outside the window);
            `masks == (logits >= 0)` (G == 0 counts as foreground).
        losses: (N,) float32 numpy array, fit loss per mask of the returned net (mean
            squared error between sigmoid(-G) and the target on the grid lattice).
        windows: (N, 4) float32 tensor, fit windows (x0, y0, x1, y1) in pixels.
        net: the fitted `ICNN` batch (constraint satisfied), in window coordinates.
        image_size: (H, W) of the fitted targets.
        steps: optimiser steps actually taken.
    """

    masks: torch.Tensor
    probs: torch.Tensor
    logits: torch.Tensor
    losses: np.ndarray
    windows: torch.Tensor
    net: ICNN
    image_size: tuple[int, int]
    steps: int

    def render(self, height: int, width: int) -> torch.Tensor:
        """-G_n at the pixel centres of a (height, width) image covering the same extent
        as the fitted one.

        Returns:
            (N, height, width) float32 logits; foreground is `logits >= 0`.
        """
        return render_logits(self.net, self.windows, self.image_size, height, width)


@dataclass
class Lattice:
    """Targets area-sampled on a lattice over each mask's window.

    Attributes:
        target: (N, P) float probabilities.
        coords: (P, 2) float lattice coordinates in [-1, 1] (`grid_coords`).
        weight: (N, P) float per-point weights of the distance, or None (all ones).
        size: the lattice is size x size points.
    """

    target: torch.Tensor
    coords: torch.Tensor
    weight: torch.Tensor | None
    size: int

    def soft_distance(self, g: torch.Tensor) -> torch.Tensor:
        """(N,) the fit's smooth loss: distance of the target to sigmoid(-G)."""
        return squared_distance(torch.sigmoid(-g), self.target, self.weight)

    def hard_distance(self, g: torch.Tensor) -> torch.Tensor:
        """(N,) distance of the target to the mask {G <= 0} (what proj_S minimises)."""
        return squared_distance((g <= 0).float(), self.target, self.weight)


@dataclass
class ConvexProjector:
    """proj_S: fits one ICNN per mask (all masks batched) and returns convex masks.

    Every setting is a field, so `repr` shows them all and harnesses can key cached
    results on `dataclasses.asdict(projector)`.

    Args:
        grid: the fit lattice is grid x grid points over each mask's window.
        width, depth: ICNN hidden width and number of hidden layers.
        steps: Adam steps (fewer if the loss plateaus, see `tol`).
        fine_steps: the last `fine_steps` steps run on the grid x grid lattice, the ones
            before on a lattice of half the size (cheaper); None: all on the full grid.
        lr: Adam learning rate.
        sharpness: initial slope of G at the starting ellipse's boundary; 15 lets the
            default 120 steps reach the benchmark's fidelity (a softer start needs more).
        pos_weight: weight of foreground pixels in the loss relative to background
            (1.0 is the paper's unweighted distance).
        tol: stop a stage early when the summed loss improves by less than this fraction
            over `patience` steps (0 disables early stopping).
        patience: see `tol`.
        seed: seeds the initialisation noise; same seed, same output.
        device: torch device for the fit ("cpu", "cuda", ...); None: the targets'.
    """

    grid: int = 64
    width: int = 24
    depth: int = 2
    steps: int = 120
    fine_steps: int | None = 30
    lr: float = 0.04
    sharpness: float = 15.0
    pos_weight: float = 1.0
    tol: float = 0.0
    patience: int = 20
    seed: int = 0
    device: str | torch.device | None = None

    def __post_init__(self) -> None:
        for name in ("grid", "width", "depth", "steps", "patience"):
            setattr(self, name, validation.integer(name, getattr(self, name), minimum=1))
        self.fine_steps = validation.integer("fine_steps", self.fine_steps, minimum=1, allow_none=True)
        for name in ("lr", "sharpness", "pos_weight"):
            setattr(self, name, validation.number(name, getattr(self, name), above=0))
        self.tol = validation.number("tol", self.tol, minimum=0)
        self.seed = validation.integer("seed", self.seed)
        validation.device("device", self.device)

    def __call__(self, targets, logits: bool = False):
        """Project masks; returns bool masks of the input's shape and kind.

        Args:
            targets: (H, W) or (N, H, W) probabilities in [0, 1] (or logits with
                `logits=True`, or bool masks), numpy array or torch tensor.
        Returns:
            bool numpy array or torch tensor (same device), same shape as targets.
        """
        fit = self.fit(targets, logits=logits)
        two_d = (targets.dim() if isinstance(targets, torch.Tensor) else np.ndim(targets)) == 2
        masks = fit.masks[0] if two_d else fit.masks
        if isinstance(targets, torch.Tensor):
            return masks.to(targets.device)
        return masks.cpu().numpy()

    def fit(self, targets, logits: bool = False) -> ConvexFit:
        """Fit one ICNN per mask and return the `ConvexFit` (tensors always (N, H, W))."""
        probs = validation.probabilities(targets, logits=logits)
        if probs.dim() == 2:
            probs = probs.unsqueeze(0)
        probs = probs.to(torch.device(self.device) if self.device is not None else probs.device)
        windows = fit_windows(probs.cpu()).to(probs.device)
        fine = self._lattice(probs, windows, self.grid)
        net = self._start(fine)
        steps = self._optimise(net, probs, windows, fine)
        with torch.no_grad():
            fg = (probs > 0.5).flatten(1)
            net.set_constant_(~fg.any(dim=1), self.sharpness)  # nothing above 0.5: empty set
            net.set_constant_(fg.all(dim=1), -self.sharpness)  # everything above 0.5: full set
            losses = fine.soft_distance(net(fine.coords))
        assert net.satisfies_constraint()
        _n, h, w = probs.shape
        logits_full = render_logits(net, windows, (h, w), h, w)
        return ConvexFit(
            masks=logits_full >= 0,
            probs=torch.sigmoid(logits_full),
            logits=logits_full,
            losses=losses.cpu().numpy().astype(np.float32),
            windows=windows,
            net=net,
            image_size=(h, w),
            steps=steps,
        )

    def _lattice(self, probs: torch.Tensor, windows: torch.Tensor, size: int) -> Lattice:
        """Area-sample each window onto a size x size lattice (one batched call)."""
        n = probs.shape[0]
        rois = torch.cat([torch.arange(n, device=probs.device, dtype=torch.float32)[:, None], windows], 1)
        target = roi_align(probs[:, None], rois, (size, size), spatial_scale=1.0, sampling_ratio=-1, aligned=True)
        target = target.reshape(n, size * size).clamp(0, 1)
        weight = None if self.pos_weight == 1.0 else 1.0 + (self.pos_weight - 1.0) * target
        return Lattice(target, grid_coords(size, size, probs.device), weight, size)

    def _start(self, fine: Lattice) -> ICNN:
        """N nets, each a cone at the moment ellipse of its target (restricted to the
        largest component of {p > 0.5} on the lattice where there are several, so stray
        islands do not drag the start away from the object)."""
        n, size = fine.target.shape[0], fine.size
        fg = (fine.target > 0.5).reshape(n, size, size).cpu().numpy()
        largest = largest_component(fg)
        several = (fg & ~largest).any(axis=(1, 2), keepdims=True)
        keep = torch.from_numpy(np.where(several, largest, True)).reshape(n, -1)
        start_weights = fine.target * keep.to(fine.target.device)
        net = ICNN(n, self.width, self.depth).to(fine.target.device)
        generator = torch.Generator().manual_seed(self.seed)
        mean, cov = moments(start_weights, fine.coords, size, size)
        net.init_from_moments(mean, cov, self.sharpness, generator=generator)
        return net

    def _stages(self, probs: torch.Tensor, windows: torch.Tensor, fine: Lattice) -> list[tuple[Lattice, int]]:
        """(lattice, steps) per stage: the first steps - fine_steps steps on a lattice of
        half the size (a quarter of the points), where the shape is found; the rest on
        the full lattice, where its edge is refined."""
        fine_steps = self.steps if self.fine_steps is None else min(self.fine_steps, self.steps)
        coarse_steps = self.steps - fine_steps
        if coarse_steps and self.grid >= 4:
            return [(self._lattice(probs, windows, self.grid // 2), coarse_steps), (fine, fine_steps)]
        return [(fine, self.steps)]

    def _optimise(self, net: ICNN, probs: torch.Tensor, windows: torch.Tensor, fine: Lattice) -> int:
        """Adam on the soft distance, stage by stage; leaves in `net` the iterate with
        the lowest hard distance on the fine lattice (the start included), so a step
        size that suits most masks cannot make a rare one worse than where it started.
        Returns the number of steps taken."""
        best = copy.deepcopy(net)
        with torch.no_grad():
            best_distance = fine.hard_distance(net(fine.coords))

        def keep_better(distance: torch.Tensor) -> None:
            better = distance <= best_distance
            best_distance[better] = distance[better]
            best.copy_nets_(net, better)

        opt = torch.optim.Adam(net.parameters(), lr=self.lr)
        warmup = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: min(1.0, (k + 1) / WARMUP))
        step = 0
        with torch.enable_grad():  # callers such as SamPredictor run under no_grad
            for lattice, stage_steps in self._stages(probs, windows, fine):
                history: list[float] = []
                for _ in range(stage_steps):
                    step += 1
                    opt.zero_grad(set_to_none=True)
                    g = net(lattice.coords)
                    if lattice is fine:
                        keep_better(fine.hard_distance(g.detach()))
                    total = lattice.soft_distance(g).sum()
                    total.backward()
                    opt.step()
                    warmup.step()
                    net.clamp_()
                    if self.tol > 0:
                        history.append(float(total.detach()))
                        if self._plateaued(history):
                            break
        with torch.no_grad():
            keep_better(fine.hard_distance(net(fine.coords)))
        net.copy_nets_(best, torch.ones(net.num_nets, dtype=torch.bool))
        return step

    def _plateaued(self, history: list[float]) -> bool:
        """True when the loss improved by less than `tol` (relative) over `patience` steps."""
        if len(history) <= self.patience:
            return False
        before = history[-self.patience - 1]
        return before - history[-1] < self.tol * before
