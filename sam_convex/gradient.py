"""proj_S by gradient descent on the paper's smooth objective: `GradientProjector`.

For a target p, one ICNN G per mask minimises sum_x (p(x) - sigmoid(-G(x)))^2 with Adam,
all masks batched (N independent nets stacked in one `ICNN`, one loop, any torch device),
and {G <= 0} is returned. Unlike `ConvexProjector`'s polygon fit, -G is a smooth logit
map (sigmoid(-G) is a probability map), which is what a training signal or a warm start
wants; the hard distance it reaches is a little worse and the fit costs more (see
README's benchmarks).

How the fit is made cheap without changing what it computes:

* **Fit window.** Every pixel outside the bounding box of {p > 0.5} costs at least as
  much inside the mask as outside it, and intersecting a convex set with a box keeps it
  convex, so the projection lies inside that box. Each mask is fitted on its own window
  (the box plus a margin) mapped affinely to [-1, 1]^2.
* **Coarse grid.** The target is area-sampled on a grid x grid lattice over the window
  (`torchvision.ops.roi_align`, all masks in one call).
* **Coarse-to-fine.** Most Adam steps run on a lattice of half the size.
* **Moment initialisation.** Each net starts as a cone whose zero level set is the
  moment ellipse of the target's largest component (see `ICNN.init_from_moments`); the
  iterate with the lowest hard distance on the lattice (the start included) is returned.
* **Batching.** The nets do not interact, so a batched fit returns the masks of N single
  fits up to float rounding: batched and single matrix products may round differently
  (CPU-dependent), which can move a few boundary pixels (the tests require IoU >= 0.99).
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
from sam_convex.projection import (
    ConvexFit,
    grid_coords,
    hard_distances,
    limit_threads,
    masks_like,
    moments,
    squared_distance,
)
from sam_convex.rendering import render_masks

WARMUP = 5  # Adam's first steps are full-size sign steps: ramp the rate up


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
class GradientProjector:
    """proj_S by gradient descent on the paper's smooth objective (one ICNN per mask,
    all masks batched in one Adam loop, on any torch device); returns convex masks and a
    smooth -G. Every setting is a field, as in `ConvexProjector`.

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
        threads: torch CPU threads during the fit (restored afterwards); None leaves
            torch's setting alone. The fit is many small operations, so on a CPU one
            thread is usually fastest, and far faster when other work shares the cores.
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
    threads: int | None = None

    def __post_init__(self) -> None:
        # Upper bounds keep memory and float32 arithmetic sane, far beyond useful values.
        maxima = {"grid": 1024, "width": 1024, "depth": 32, "steps": 10**6, "patience": 10**6}
        for name, maximum in maxima.items():
            setattr(self, name, validation.integer(name, getattr(self, name), minimum=1, maximum=maximum))
        self.fine_steps = validation.integer("fine_steps", self.fine_steps, minimum=1, allow_none=True)
        for name in ("lr", "sharpness", "pos_weight"):
            setattr(self, name, validation.number(name, getattr(self, name), above=0, maximum=1e6))
        self.tol = validation.number("tol", self.tol, minimum=0)
        self.seed = validation.integer("seed", self.seed)
        self.threads = validation.integer("threads", self.threads, minimum=1, allow_none=True)
        validation.device("device", self.device)

    def __call__(self, targets, logits: bool = False):
        """Project masks; bool masks of the input's shape and kind (as `ConvexProjector`)."""
        return masks_like(targets, self.fit(targets, logits=logits).masks)

    def fit(self, targets, logits: bool = False) -> ConvexFit:
        """Fit one ICNN per mask and return the `ConvexFit` (tensors always (N, H, W))."""
        with limit_threads(self.threads):
            return self._fit(validation.probabilities(targets, logits=logits))

    def _fit(self, probs: torch.Tensor) -> ConvexFit:
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
        assert net.satisfies_constraint()
        net = net.cpu()
        windows = windows.cpu()
        _n, h, w = probs.shape
        masks = torch.from_numpy(render_masks(net, windows, (h, w), h, w))
        return ConvexFit(
            masks=masks.to(probs.device),
            losses=hard_distances(probs, masks),
            windows=windows,
            _net=net,
            image_size=(h, w),
            details={"steps": steps},
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
