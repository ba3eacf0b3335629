"""Joint unification: the distance to the convex shape set S as a training loss.

For a predicted foreground probability map p, the regulariser holds its own ICNN
G_nu over the image coordinates and returns

    dist(p, S) = mean_x (p(x) - sigmoid(-G_nu(x)))^2,

differentiable in p (pulling the prediction towards a convex shape) and in nu (pulling
the shape towards the prediction). Minimising it over nu alone is the projection of
`sam_convex.projection`; adding it to a predictor's loss and optimising both learns the
prediction and its convex approximation together (the paper's joint unification).
`mask()` returns {G_nu <= 0}, a convex set whenever the weight constraint holds.

Coordinates are those of `grid_coords`: pixel centres of the whole map mapped affinely
to [-1, 1]^2, so the mask can be rendered at any resolution of the same image.
"""
from __future__ import annotations

import numbers

import torch
import torch.nn.functional as F
from torch import nn

from sam_convex.icnn import ICNN
from sam_convex.projection import grid_coords, moments


class ConvexityRegularizer(nn.Module):
    """dist(p, S) for N probability maps of size (height, width), one ICNN per map.

    Args:
        height, width: size of the probability maps passed to `forward`.
        num_maps: N, maps per call (one independent ICNN each).
        width_hidden, depth: ICNN hidden width and number of hidden layers.
        grid: the distance is measured on a lattice of at most grid x grid cells: a
            larger map is area-averaged onto it (differentiably) first. A step costs
            time linear in the lattice size, while the convex shape is a coarse object:
            64 keeps a step a few milliseconds on a CPU at any map size, and in the
            scribble experiment (96 x 128 maps) the full grid was slower and no more
            accurate. The mask is still rendered at any resolution. None: every pixel.
        sharpness: slope of G at the boundary after `init_from`.
        seed: seeds the ICNN's random start and `init_from`'s small perturbation.

    After every optimiser step that updates this module's parameters call
    `reg.clamp_()`: it restores the ICNN weight constraint (projected gradient
    descent). `forward` and `mask` refuse to run on a net that violates it, because
    its sublevel sets would not be guaranteed convex.
    """

    def __init__(self, height: int, width: int, num_maps: int = 1, width_hidden: int = 32,
                 depth: int = 2, grid: int | None = 64, sharpness: float = 6.0,
                 seed: int = 0) -> None:
        super().__init__()
        for name, value in (("height", height), ("width", width), ("num_maps", num_maps)):
            if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if grid is not None and (not isinstance(grid, numbers.Integral) or grid < 1):
            raise ValueError(f"grid must be an integer >= 1 or None, got {grid!r}")
        self.height, self.width, self.num_maps = int(height), int(width), int(num_maps)
        self.sharpness, self.seed = float(sharpness), int(seed)
        self.lattice = ((min(self.height, int(grid)), min(self.width, int(grid))) if grid
                        else (self.height, self.width))
        self.icnn = ICNN(self.num_maps, width_hidden, depth)
        self.icnn.reset_random(torch.Generator().manual_seed(seed))
        self.register_buffer("coords", grid_coords(*self.lattice), persistent=False)

    def _as_batch(self, p: torch.Tensor) -> torch.Tensor:
        """(H, W) or (N, H, W) -> (N, H, W) float, validated against the module's shape."""
        if not isinstance(p, torch.Tensor):
            raise ValueError(f"p must be a torch tensor, got {type(p).__name__}")
        if p.dim() == 2:
            p = p.unsqueeze(0)
        expected = (self.num_maps, self.height, self.width)
        if tuple(p.shape) != expected:
            raise ValueError(
                f"p must have shape {expected} (or {expected[1:]} when num_maps == 1), "
                f"got {tuple(p.shape)}; build the regulariser with the map's size"
            )
        return p.float()

    def _check_constraint(self) -> None:
        if not self.icnn.satisfies_constraint():
            raise RuntimeError(
                "ICNN weight constraint violated: call reg.clamp_() after every "
                "optimiser step that updates the regulariser's parameters"
            )

    def _on_lattice(self, p: torch.Tensor) -> torch.Tensor:
        """(N, H, W) -> (N, rows * cols) area average on the lattice."""
        if self.lattice != (self.height, self.width):
            p = F.adaptive_avg_pool2d(p.unsqueeze(1), self.lattice).squeeze(1)
        return p.flatten(1)

    def forward(self, p: torch.Tensor) -> torch.Tensor:
        """dist(p, S): mean squared difference between p and sigmoid(-G) on the lattice.

        Args:
            p: (N, H, W) or (H, W) float probabilities in [0, 1] (not logits).
        Returns:
            scalar float tensor, differentiable in p and in the ICNN parameters.
        """
        p = self._as_batch(p)
        self._check_constraint()
        shape = torch.sigmoid(-self.icnn(self.coords))  # (N, rows * cols)
        return ((self._on_lattice(p) - shape) ** 2).mean()

    @torch.no_grad()
    def init_from(self, p: torch.Tensor) -> None:
        """Start each ICNN as a cone whose zero level set is p's moment ellipse.

        Args:
            p: (N, H, W) or (H, W) float probabilities; not modified, no gradient.
        """
        target = self._on_lattice(self._as_batch(p).detach()).clamp(0, 1)
        mean, cov = moments(target, self.coords, *self.lattice)
        gen = torch.Generator().manual_seed(self.seed)
        self.icnn.init_from_moments(mean, cov, self.sharpness, generator=gen)

    def clamp_(self) -> None:
        """Restore the weight constraint; call after each optimiser step."""
        self.icnn.clamp_()

    @torch.no_grad()
    def logits(self, height: int | None = None, width: int | None = None) -> torch.Tensor:
        """-G at the pixel centres of a (height, width) rendering of the whole map.

        Returns:
            (N, height, width) float32; default size is the module's (height, width).
        """
        self._check_constraint()
        h, w = height or self.height, width or self.width
        coords = grid_coords(h, w, device=self.coords.device)
        return (-self.icnn(coords)).reshape(self.num_maps, h, w)

    def mask(self, height: int | None = None, width: int | None = None) -> torch.Tensor:
        """The convex shapes currently represented: {G <= 0}.

        Returns:
            (N, height, width) bool tensor; default size is the module's (height, width).
        """
        return self.logits(height, width) >= 0
