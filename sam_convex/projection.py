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
  Adam loop on the sum of their losses; the nets do not interact, so a batched fit
  equals N single fits up to floating-point rounding.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage
from torchvision.ops import roi_align

from sam_convex.icnn import ICNN

# Logit assigned outside a mask's fit window, where the projection is background.
OUTSIDE_LOGIT = -30.0
WARMUP = 5  # Adam's first steps are full-size sign steps: ramp the rate up


def as_probabilities(targets, logits: bool = False) -> torch.Tensor:
    """Validate targets and return foreground probabilities as a float32 tensor.

    Args:
        targets: (H, W) or (N, H, W) numpy array or torch tensor; bool masks, or
            numbers: probabilities in [0, 1], or logits when `logits=True`.
    Returns:
        (H, W) or (N, H, W) float32 tensor with values in [0, 1], on the input's device.
    Raises:
        ValueError: wrong ndim, non-numeric dtype, empty, NaN/inf, or out of [0, 1].
    """
    if isinstance(targets, torch.Tensor):
        t = targets.detach()
        if t.is_complex():
            raise ValueError(f"targets must be real numbers or bool, got dtype {t.dtype}")
    else:
        arr = np.asarray(targets)
        if arr.dtype.kind not in "biuf":
            raise ValueError(
                f"targets must be a numeric or bool array, got dtype {arr.dtype}"
            )
        t = torch.from_numpy(np.ascontiguousarray(arr))
    if t.dim() not in (2, 3):
        raise ValueError(
            f"targets must have shape (H, W) or (N, H, W), got {tuple(t.shape)}"
        )
    if t.numel() == 0:
        raise ValueError(f"targets must not be empty, got shape {tuple(t.shape)}")
    if t.dtype == torch.bool:
        return t.float()
    t = t.float()
    if not torch.isfinite(t).all():
        raise ValueError("targets contain NaN or infinite values")
    if logits:
        return torch.sigmoid(t)
    lo, hi = float(t.min()), float(t.max())
    if lo < 0 or hi > 1:
        raise ValueError(
            f"probabilities must lie in [0, 1], got values in [{lo:g}, {hi:g}]; "
            "pass logits=True for logits, or a bool mask"
        )
    return t


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
        boxes[i] = torch.tensor(
            [max(0.0, x0 - mx), max(0.0, y0 - my), min(float(w), x1 + mx), min(float(h), y1 + my)]
        )
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


def window_pixel_coords(box: torch.Tensor, scale_y: float, scale_x: float, height: int,
                        width: int, device=None):
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


@dataclass
class ConvexFit:
    """Result of a batched projection.

    Attributes:
        masks: (N, H, W) bool tensor, {G_n <= 0} inside each fit window.
        probs: (N, H, W) float32 tensor, sigmoid(-G_n) (~0 outside the window).
        logits: (N, H, W) float32 tensor, -G_n (OUTSIDE_LOGIT outside the window);
            `masks == (logits >= 0)` (G == 0 counts as foreground).
        losses: (N,) float32 numpy array, fit loss per mask of the returned net (mean
            squared error between sigmoid(-G) and the target on the grid lattice).
        image_size: (H, W) of the fitted targets.
        windows: (N, 4) float32 tensor, fit windows (x0, y0, x1, y1) in pixels.
        net: the fitted `ICNN` batch (constraint satisfied), in window coordinates.
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
        """Evaluate -G_n at the pixel centres of a (height, width) image covering the
        same extent as the fitted one.

        Returns:
            (N, height, width) float32 logits; foreground is `logits >= 0`.
        """
        return render_logits(self.net, self.windows, self.image_size, height, width)


@torch.no_grad()
def render_logits(net: ICNN, windows: torch.Tensor, image_size: tuple[int, int],
                  height: int, width: int) -> torch.Tensor:
    """-G_n per pixel of a (height, width) rendering; OUTSIDE_LOGIT outside windows."""
    if height < 1 or width < 1:
        raise ValueError(f"render size must be >= 1, got {height}x{width}")
    device = net.w_x.device
    out = torch.full((net.num_nets, height, width), OUTSIDE_LOGIT, device=device)
    sy, sx = height / image_size[0], width / image_size[1]
    for i in range(net.num_nets):
        rs, cs, coords = window_pixel_coords(windows[i], sy, sx, height, width, device)
        if coords.shape[0] == 0:
            continue
        g = _forward_one(net, i, coords)
        out[i, rs, cs] = (-g).reshape(rs.stop - rs.start, cs.stop - cs.start)
    return out


def _forward_one(net: ICNN, i: int, coords: torch.Tensor) -> torch.Tensor:
    """G_i at (P, 2) coords, without evaluating the other nets of the batch."""
    z = torch.relu(torch.addmm(net.b[0, i], coords, net.w_x[0, i]))
    for k in range(1, net.depth):
        pre = torch.addmm(net.b[k, i], coords, net.w_x[k, i])
        z = torch.relu(torch.addmm(pre, z, net.w_z[k - 1, i]))
    return (torch.addmm(net.b_out[i], coords, net.w_out_x[i]) + z @ net.w_out_z[i]).squeeze(-1)


class ConvexProjector:
    """proj_S: fits one ICNN per mask (all masks batched) and returns convex masks.

    Args:
        grid: the fit lattice is grid x grid points over each mask's window.
        width, depth: ICNN hidden width and number of hidden layers.
        steps: Adam steps (fewer if the loss plateaus, see `tol`).
        lr: Adam learning rate.
        seed: seeds the initialisation noise; same seed, same output.
        device: torch device for the fit ("cpu", "cuda", ...); default: the targets'.
        pos_weight: weight of foreground pixels in the loss relative to background
            (1.0 is the paper's unweighted distance).
        sharpness: initial slope of G at the ellipse boundary.
        tol: stop a stage early when the summed loss improves by less than this fraction
            over `patience` steps (0 disables early stopping).
        fine_steps: the last `fine_steps` steps run on the grid x grid lattice, the ones
            before on a lattice of half the size (cheaper); None: all on the full grid.
    """

    def __init__(self, grid: int = 64, width: int = 24, depth: int = 2, steps: int = 120,
                 lr: float = 0.04, seed: int = 0, device: str | torch.device | None = None,
                 pos_weight: float = 1.0, sharpness: float = 15.0, tol: float = 0.0,
                 patience: int = 20, fine_steps: int | None = 30) -> None:
        for name, value in (("grid", grid), ("width", width), ("depth", depth), ("steps", steps)):
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        for name, value in (("lr", lr), ("pos_weight", pos_weight), ("sharpness", sharpness)):
            if not np.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        if tol < 0 or patience < 1:
            raise ValueError(f"tol must be >= 0 and patience >= 1, got {tol}, {patience}")
        self.grid, self.width, self.depth, self.steps = int(grid), int(width), int(depth), int(steps)
        self.lr, self.seed, self.device = float(lr), int(seed), device
        self.pos_weight, self.sharpness = float(pos_weight), float(sharpness)
        self.tol, self.patience = float(tol), int(patience)
        self.fine_steps = self.steps if fine_steps is None else int(fine_steps)
        if self.fine_steps < 1:
            raise ValueError(f"fine_steps must be >= 1, got {fine_steps!r}")

    def __repr__(self) -> str:
        return (f"ConvexProjector(grid={self.grid}, width={self.width}, depth={self.depth}, "
                f"steps={self.steps}, fine_steps={self.fine_steps}, lr={self.lr}, "
                f"sharpness={self.sharpness}, seed={self.seed}, tol={self.tol})")

    def __call__(self, targets, logits: bool = False):
        """Project masks; returns bool masks of the input's shape and kind.

        Args:
            targets: (H, W) or (N, H, W) probabilities in [0, 1] (or logits with
                `logits=True`, or bool masks), numpy array or torch tensor.
        Returns:
            bool numpy array or torch tensor (same device), same shape as targets.
        """
        fit = self.fit(targets, logits=logits)
        masks = fit.masks if targets_dim(targets) == 3 else fit.masks[0]
        if isinstance(targets, torch.Tensor):
            return masks.to(targets.device)
        return masks.cpu().numpy()

    def fit(self, targets, logits: bool = False) -> ConvexFit:
        """Fit one ICNN per mask and return the `ConvexFit` (tensors always (N, H, W))."""
        probs = as_probabilities(targets, logits=logits)
        if probs.dim() == 2:
            probs = probs.unsqueeze(0)
        device = torch.device(self.device) if self.device is not None else probs.device
        probs = probs.to(device)
        n, h, w = probs.shape
        windows = fit_windows(probs.cpu()).to(device)
        fg_any = (probs > 0.5).flatten(1).any(dim=1)
        fg_all = (probs > 0.5).flatten(1).all(dim=1)

        # Area-sample each window onto the grid (one batched call for all masks).
        rois = torch.cat([torch.arange(n, device=device, dtype=torch.float32)[:, None], windows], 1)
        fine = self._lattice(probs, rois, self.grid)
        gen = torch.Generator().manual_seed(self.seed)
        net = ICNN(n, self.width, self.depth).to(device)
        start_weights = _largest_component(fine[0], self.grid)
        net.init_from_moments(*moments(start_weights, fine[1], self.grid, self.grid),
                              self.sharpness, generator=gen)

        # Coarse-to-fine: the first steps - fine_steps steps on a lattice of half the size
        # (a quarter of the points), where the shape is found; the rest refine its edge.
        coarse_steps = max(0, self.steps - self.fine_steps)
        stages = [(fine, self.steps - coarse_steps)]
        if coarse_steps and self.grid >= 4:
            stages.insert(0, (self._lattice(probs, rois, self.grid // 2), coarse_steps))
        # Pocket: the iterate with the lowest hard distance sum (p - [G <= 0])^2 on the fine
        # lattice (the moment-ellipse start included) is the one returned, so a step size
        # that suits most masks cannot make a rare one worse than where it started.
        fine_target, fine_coords, fine_weight = fine
        best = [p.detach().clone() for p in net.parameters()]
        with torch.no_grad():
            best_distance = _hard_distance(net(fine_coords), fine_target, fine_weight)
        opt = torch.optim.Adam(net.parameters(), lr=self.lr)
        warmup = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: min(1.0, (k + 1) / WARMUP))
        step = 0
        with torch.enable_grad():  # callers such as SamPredictor run under no_grad
            for (target, coords, weight), stage_steps in stages:
                history: list[float] = []
                for _ in range(stage_steps):
                    step += 1
                    opt.zero_grad(set_to_none=True)
                    g = net(coords)
                    if target is fine_target:
                        distance = _hard_distance(g.detach(), target, weight)
                        _keep_better(best, best_distance, net, distance)
                    total = _weighted_mse(torch.sigmoid(-g), target, weight).sum()
                    total.backward()
                    opt.step()
                    warmup.step()
                    net.clamp_()
                    if self.tol > 0:
                        history.append(float(total))
                        if (len(history) > self.patience
                                and history[-self.patience - 1] - history[-1]
                                < self.tol * history[-self.patience - 1]):
                            break
        with torch.no_grad():
            _keep_better(best, best_distance, net,
                         _hard_distance(net(fine_coords), fine_target, fine_weight))
            for p, b in zip(net.parameters(), best):
                p.copy_(b)
            _set_constant(net, ~fg_any, self.sharpness)  # nothing above 0.5: empty set
            _set_constant(net, fg_all, -self.sharpness)  # everything above 0.5: full set
            losses = _fit_loss(net, *fine)
        assert net.satisfies_constraint()
        logits_full = render_logits(net, windows, (h, w), h, w)
        return ConvexFit(
            masks=logits_full >= 0, probs=torch.sigmoid(logits_full), logits=logits_full,
            losses=losses.cpu().numpy().astype(np.float32), windows=windows, net=net,
            image_size=(h, w), steps=step,
        )

    def _lattice(self, probs: torch.Tensor, rois: torch.Tensor, g: int):
        """Area-sample each window onto a g x g lattice (one batched call for all masks).

        Returns:
            target (N, g*g) probabilities, coords (g*g, 2), weight (N, g*g) or None.
        """
        n = probs.shape[0]
        target = roi_align(probs[:, None], rois, (g, g), spatial_scale=1.0,
                           sampling_ratio=-1, aligned=True).reshape(n, g * g).clamp(0, 1)
        weight = None if self.pos_weight == 1.0 else 1.0 + (self.pos_weight - 1.0) * target
        return target, grid_coords(g, g, probs.device), weight


def _weighted_mse(pred: torch.Tensor, target: torch.Tensor,
                  weight: torch.Tensor | None) -> torch.Tensor:
    """(N,) mean (weighted) squared difference of (N, P) predictions and targets."""
    err = (pred - target) ** 2
    return (err if weight is None else weight * err).mean(dim=1)


def _hard_distance(g: torch.Tensor, target: torch.Tensor,
                   weight: torch.Tensor | None) -> torch.Tensor:
    """(N,) distance of the target to the mask {G <= 0} (the objective proj_S solves)."""
    return _weighted_mse((g <= 0).float(), target, weight)


def _fit_loss(net: ICNN, target: torch.Tensor, coords: torch.Tensor,
              weight: torch.Tensor | None) -> torch.Tensor:
    """(N,) the fit's smooth surrogate: distance of the target to sigmoid(-G)."""
    return _weighted_mse(torch.sigmoid(-net(coords)), target, weight)


def _copy_nets(dst: list[torch.Tensor], src: list[torch.Tensor], which: torch.Tensor) -> None:
    """Copy the selected nets' weights (dimension -3 indexes the net in every parameter)."""
    for d, s in zip(dst, src):
        d[..., which, :, :] = s[..., which, :, :]


@torch.no_grad()
def _keep_better(best: list[torch.Tensor], best_distance: torch.Tensor, net: ICNN,
                 distance: torch.Tensor) -> None:
    """Copy the nets whose distance is <= their best so far into `best` (in place)."""
    better = distance <= best_distance
    if better.any():
        best_distance[better] = distance[better]
        _copy_nets(best, [p.detach() for p in net.parameters()], better)


def targets_dim(targets) -> int:
    return targets.dim() if isinstance(targets, torch.Tensor) else np.ndim(targets)


def _largest_component(target: torch.Tensor, grid: int) -> torch.Tensor:
    """The target restricted to the largest 8-connected component of {p > 0.5} on the
    lattice (unchanged where there is none), so stray islands do not drag the starting
    ellipse away from the object.

    Args:
        target: (N, grid * grid) probabilities.
    Returns:
        (N, grid * grid) float, same device.
    """
    fg = (target > 0.5).reshape(-1, grid, grid).cpu().numpy()
    keep = np.ones_like(fg)
    for i, mask in enumerate(fg):
        labels, count = ndimage.label(mask, structure=np.ones((3, 3)))
        if count > 1:
            keep[i] = labels == np.argmax(np.bincount(labels.ravel())[1:]) + 1
    return target * torch.from_numpy(keep.reshape(target.shape)).to(target.device)


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


def _set_constant(net: ICNN, which: torch.Tensor, value: float) -> None:
    """Make the selected nets the constant function G = value (a valid ICNN)."""
    if not which.any():
        return
    for p in net.parameters():
        p[..., which, :, :] = 0
    net.b_out[which] = value
