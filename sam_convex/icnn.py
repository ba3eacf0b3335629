"""Input-convex neural networks over 2-D coordinates (eq. (1) of the paper).

    z_1     = relu(W^x_0 x + b_0)
    z_{i+1} = relu(W^z_i z_i + W^x_i x + b_i),   W^z_i >= 0
    G(x)    = w^z z_L + w^x x + b                 (linear output, w^z >= 0)

G is convex in x, so every sublevel set {x : G(x) <= 0} is convex. Foreground is
{G <= 0} and the foreground probability is sigmoid(-G(x)).

One `ICNN` holds a *batch* of N independent networks (weights with a leading N
dimension) so that N masks are fitted in one optimisation loop with batched matmuls.

The constraint W^z >= 0 is kept by clamping (projected gradient descent, as in Amos
et al. 2017) rather than by a positive reparameterisation: clamping keeps the
parameterisation linear, so the moment initialisation below is exact, zero weights
stay reachable, and `clamp_()` after every optimiser step makes the constraint hold
exactly whenever the net is returned or evaluated.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from sam_convex import validation


class ICNN(nn.Module):
    """A batch of N input-convex networks G_n : R^2 -> R.

    Every parameter holds the net index at dimension -3, which is what `copy_nets_`
    and `set_constant_` rely on.

    Args:
        num_nets: N, the number of independent networks.
        width: hidden units per layer.
        depth: number of hidden layers (>= 1).
    """

    def __init__(self, num_nets: int = 1, width: int = 32, depth: int = 2) -> None:
        super().__init__()
        num_nets = validation.integer("num_nets", num_nets, minimum=1)
        width = validation.integer("width", width, minimum=1)
        depth = validation.integer("depth", depth, minimum=1)
        self.num_nets, self.width, self.depth = num_nets, width, depth
        n, h = num_nets, width
        # Input weights (free): one (2 -> h) map per hidden layer plus one for the output.
        self.w_x = nn.Parameter(torch.zeros(depth, n, 2, h))
        self.b = nn.Parameter(torch.zeros(depth, n, 1, h))
        # Hidden-to-hidden weights (>= 0): depth - 1 maps of (h -> h).
        self.w_z = nn.Parameter(torch.zeros(depth - 1, n, h, h))
        # Output layer: w_out_z >= 0 on the last hidden state, free linear term and bias.
        self.w_out_z = nn.Parameter(torch.zeros(n, h, 1))
        self.w_out_x = nn.Parameter(torch.zeros(n, 2, 1))
        self.b_out = nn.Parameter(torch.zeros(n, 1, 1))
        self.reset_random()

    @classmethod
    def from_weights(
        cls,
        w_x: np.ndarray | torch.Tensor,
        b: np.ndarray | torch.Tensor,
        w_z: np.ndarray | torch.Tensor,
        w_out_z: np.ndarray | torch.Tensor,
        w_out_x: np.ndarray | torch.Tensor,
        b_out: np.ndarray | torch.Tensor,
    ) -> ICNN:
        """A batch holding the given weights (float32), shapes as in `__init__`:
        w_x (depth, N, 2, h), b (depth, N, 1, h), w_z (depth - 1, N, h, h),
        w_out_z (N, h, 1), w_out_x (N, 2, 1), b_out (N, 1, 1). No random start is drawn."""
        net = cls.__new__(cls)
        nn.Module.__init__(net)
        net.depth, net.num_nets, _, net.width = (int(d) for d in w_x.shape)
        for name, value in zip(
            ("w_x", "b", "w_z", "w_out_z", "w_out_x", "b_out"), (w_x, b, w_z, w_out_z, w_out_x, b_out)
        ):
            setattr(net, name, nn.Parameter(torch.as_tensor(np.ascontiguousarray(value, np.float32))))
        return net

    @torch.no_grad()
    def reset_random(self, generator: torch.Generator | None = None) -> None:
        """Random initialisation that already satisfies the constraint."""
        h = self.width
        self.w_x.copy_(torch.randn(self.w_x.shape, generator=generator) / math.sqrt(2))
        self.b.copy_(torch.randn(self.b.shape, generator=generator) * 0.5)
        self.w_z.copy_(torch.rand(self.w_z.shape, generator=generator) * (2.0 / h))
        self.w_out_z.copy_(torch.rand(self.w_out_z.shape, generator=generator) * (2.0 / h))
        self.w_out_x.copy_(torch.randn(self.w_out_x.shape, generator=generator) * 0.1)
        self.b_out.fill_(-1.0)

    @torch.no_grad()
    def init_from_moments(
        self,
        mean: torch.Tensor,
        cov: torch.Tensor,
        sharpness: float,
        generator: torch.Generator | None = None,
    ) -> None:
        """Start each net as a polygonal cone whose zero level set is the moment ellipse.

        For a uniform elliptical region with mean mu and covariance C, the ellipse is
        {x : |v| <= 1} with v = L^-1 (x - mu) / 2 and C = L L^T. With unit directions
        n_j spread over the circle, (pi / h) * sum_j relu(n_j . v) ~= |v|, so
        G = sharpness * ((pi / h) sum_j relu(n_j . v) - 1) ~= sharpness * (|v| - 1):
        convex, negative inside the ellipse, every hidden unit alive on half the plane.
        Deeper layers start as the identity (plus a small positive perturbation).

        Args:
            mean: (N, 2) float, centres in the nets' input coordinates.
            cov: (N, 2, 2) float, symmetric positive definite covariances.
            sharpness: slope of G at the ellipse boundary (in units of v).
        """
        n, h, device = self.num_nets, self.width, self.w_x.device
        angles = 2 * math.pi * (torch.arange(h, device=device) + 0.5) / h
        directions = torch.stack([torch.cos(angles), torch.sin(angles)])  # (2, h)
        chol = torch.linalg.cholesky(cov.to(device))  # (N, 2, 2)
        # Rows of W = n_j^T L^-1 / 2  ->  W^T = L^-T n_j / 2, solved for all j at once.
        w_first = (
            torch.linalg.solve_triangular(chol.transpose(1, 2), directions.expand(n, 2, h), upper=True) / 2
        )  # (N, 2, h)
        b_first = -(mean.to(device).unsqueeze(1) @ w_first)  # (N, 1, h)
        self.w_x.zero_()
        self.b.zero_()
        self.w_x[0] = w_first
        self.b[0] = b_first
        eye = torch.eye(h, device=device).expand(self.depth - 1, n, h, h)
        # The same perturbation for every net: a batched fit starts where N single fits do.
        noise = torch.rand((self.depth - 1, 1, h, h), generator=generator).to(device)
        self.w_z.copy_(eye + noise * (0.01 / h))
        self.w_out_z.fill_(sharpness * math.pi / h)
        self.w_out_x.zero_()
        self.b_out.fill_(-sharpness)

    @torch.no_grad()
    def clamp_(self) -> None:
        """Project onto the constraint set: every weight acting on z is >= 0."""
        self.w_z.clamp_(min=0)
        self.w_out_z.clamp_(min=0)

    def satisfies_constraint(self) -> bool:
        return bool((self.w_z >= 0).all() and (self.w_out_z >= 0).all())

    def forward(self, coords: torch.Tensor, nets: torch.Tensor | None = None) -> torch.Tensor:
        """Evaluate the nets.

        Args:
            coords: (M, P, 2) float, one point set per evaluated net, or (P, 2) shared.
            nets: (M,) long indices of the nets to evaluate; None: all N (M = N).
        Returns:
            (M, P) float, G_n evaluated at the points.
        """
        w_x, b, w_z = self.w_x, self.b, self.w_z
        w_out_z, w_out_x, b_out = self.w_out_z, self.w_out_x, self.b_out
        if nets is not None:
            w_x, b, w_z = w_x[:, nets], b[:, nets], w_z[:, nets]
            w_out_z, w_out_x, b_out = w_out_z[nets], w_out_x[nets], b_out[nets]
        if coords.dim() == 2:
            coords = coords.unsqueeze(0).expand(w_out_z.shape[0], -1, -1)
        z = torch.relu(torch.baddbmm(b[0], coords, w_x[0]))
        for i in range(1, self.depth):
            pre = torch.baddbmm(b[i], coords, w_x[i])
            z = torch.relu(torch.baddbmm(pre, z, w_z[i - 1]))
        # Output as multiply-and-sum rather than bmm: a (P, h) x (h, 1) product is
        # dispatched to gemv for N == 1 and to gemm otherwise, which round differently
        # and would make a batched fit drift further from N single fits.
        linear = (coords * w_out_x.transpose(1, 2)).sum(-1)
        return (z * w_out_z.transpose(1, 2)).sum(-1) + linear + b_out.squeeze(-1)

    @torch.no_grad()
    def copy_nets_(self, source: ICNN, which: torch.Tensor) -> None:
        """Overwrite the nets selected by the (N,) bool `which` with `source`'s nets."""
        for dst, src in zip(self.parameters(), source.parameters()):
            dst[..., which, :, :] = src[..., which, :, :]

    @torch.no_grad()
    def set_constant_(self, which: torch.Tensor, value: float) -> None:
        """Make the nets selected by the (N,) bool `which` the constant G = value."""
        if not which.any():
            return
        for p in self.parameters():
            p[..., which, :, :] = 0
        self.b_out[which] = value
