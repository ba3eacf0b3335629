"""Joint unification: the distance to the convex shape set S as a training loss.

For a predicted foreground probability map p, the regulariser holds its own ICNN
G_nu over the image coordinates and returns

    dist(p, S) = mean_x (p(x) - sigmoid(-G_nu(x)))^2,

differentiable in p (pulling the prediction towards a convex shape) and in nu (pulling
the shape towards the prediction). Minimising it over nu alone is the projection of
`sam_convex.projection`; adding it to a predictor's loss and optimising both learns the
prediction and its convex approximation together (the paper's joint unification).
`masks` is {G_nu <= 0}, a convex set whenever the weight constraint holds.

Coordinates are those of `grid_coords`: pixel centres of the whole map mapped affinely
to [-1, 1]^2, so the shape can be rendered at any resolution of the same image.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sam_convex import validation
from sam_convex.icnn import ICNN
from sam_convex.projection import grid_coords, moments, squared_distance


class ConvexityRegularizer(nn.Module):
    """dist(p, S) for N probability maps of one size, one ICNN per map.

    Args:
        image_size: (H, W) of the maps passed to `forward`.
        num_maps: N, maps per call (one independent ICNN each).
        width, depth: ICNN hidden width and number of hidden layers (as in
            `ConvexProjector`).
        grid: the distance is measured on a lattice of at most grid x grid cells: a
            larger map is area-averaged onto it (differentiably) first. A step costs
            time linear in the lattice size while the convex shape is a coarse object,
            so 64 keeps a step cheap at any map size; the shape is still rendered at
            any resolution. None: every pixel.
        sharpness: slope of G at the boundary after `init_from`. The default (6) is
            softer than the projector's (15): in joint training the ICNN must keep
            receiving gradient while the prediction it follows still moves, and a
            sharp start saturates sigmoid(-G) away from the boundary.
        seed: seeds the ICNN's random start and `init_from`'s small perturbation.

    After every optimiser step that updates this module's parameters call
    `reg.clamp_()`: it restores the ICNN weight constraint (projected gradient
    descent). `forward` and `render` refuse to run on a net that violates it, because
    its sublevel sets would not be guaranteed convex.
    """

    def __init__(
        self,
        image_size: tuple[int, int],
        *,
        num_maps: int = 1,
        width: int = 32,
        depth: int = 2,
        grid: int | None = 64,
        sharpness: float = 6.0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if not isinstance(image_size, (tuple, list)) or len(image_size) != 2:
            raise ValueError(f"image_size must be (H, W) of the maps, got {image_size!r}; the ICNN's width is width=")
        self.height = validation.integer("image height", image_size[0], minimum=1)
        self.width = validation.integer("image width", image_size[1], minimum=1)
        self.num_maps = validation.integer("num_maps", num_maps, minimum=1)
        grid = validation.integer("grid", grid, minimum=1, allow_none=True)
        self.sharpness = validation.number("sharpness", sharpness, above=0)
        self.seed = validation.integer("seed", seed)
        self.lattice = (min(self.height, grid), min(self.width, grid)) if grid else (self.height, self.width)
        self.icnn = ICNN(self.num_maps, width, depth)
        self.icnn.reset_random(torch.Generator().manual_seed(self.seed))
        self.register_buffer("coords", grid_coords(*self.lattice), persistent=False)

    @property
    def image_size(self) -> tuple[int, int]:
        return self.height, self.width

    def _as_batch(self, p: Any, logits: bool = False) -> torch.Tensor:
        """(H, W) or (N, H, W) masks -> (N, H, W) float probabilities (graph kept)."""
        p = validation.probabilities(p, logits=logits, keep_grad=True).to(self.coords.device)
        if p.dim() == 2:
            p = p.unsqueeze(0)
        expected = (self.num_maps, self.height, self.width)
        if tuple(p.shape) != expected:
            raise ValueError(
                f"p must have shape {expected} (or {expected[1:]} when num_maps == 1), "
                f"got {tuple(p.shape)}; build the regulariser with the map's size"
            )
        return p

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

    def forward(self, p: Any, logits: bool = False) -> torch.Tensor:
        """dist(p, S): mean squared difference between p and sigmoid(-G) on the lattice.

        Args:
            p: (N, H, W) or (H, W) probabilities in [0, 1] (logits with `logits=True`,
                or bool masks), torch tensor (the graph is kept) or numpy array.
        Returns:
            scalar float tensor, differentiable in p and in the ICNN parameters.
        """
        p = self._as_batch(p, logits)
        self._check_constraint()
        shape = torch.sigmoid(-self.icnn(self.coords))  # (N, rows * cols)
        return squared_distance(shape, self._on_lattice(p)).mean()

    @torch.no_grad()
    def init_from(self, p: Any, logits: bool = False) -> None:
        """Start each ICNN as a cone whose zero level set is p's moment ellipse.

        Args:
            p: (N, H, W) or (H, W) masks, as `forward` takes them; not modified.
        """
        target = self._on_lattice(self._as_batch(p, logits).detach()).clamp(0, 1)
        mean, cov = moments(target, self.coords, *self.lattice)
        gen = torch.Generator().manual_seed(self.seed)
        self.icnn.init_from_moments(mean, cov, self.sharpness, generator=gen)

    def clamp_(self) -> None:
        """Restore the weight constraint; call after each optimiser step."""
        self.icnn.clamp_()

    @torch.no_grad()
    def render(self, height: int | None = None, width: int | None = None) -> torch.Tensor:
        """-G at the pixel centres of a (height, width) rendering of the whole map.

        Returns:
            (N, height, width) float32 logits, foreground `>= 0`; default size: the maps'.
        """
        self._check_constraint()
        h = validation.integer("height", height, minimum=1, allow_none=True) or self.height
        w = validation.integer("width", width, minimum=1, allow_none=True) or self.width
        coords = grid_coords(h, w, device=self.coords.device)
        return (-self.icnn(coords)).reshape(self.num_maps, h, w)

    @property
    def masks(self) -> torch.Tensor:
        """(N, H, W) bool, the convex shapes {G <= 0} at the maps' size."""
        return self.render() >= 0
