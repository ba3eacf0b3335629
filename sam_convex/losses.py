"""Shape losses for training a segmenter over a whole dataset.

* `ConvexityLoss`: the squared distance of every prediction in a batch to its own
  projection proj_S onto the convex shapes an ICNN represents (the projection held
  fixed), so the gradient pulls each prediction towards its nearest convex shape. No
  ground truth is involved: it is a prior on the prediction's shape, added to any
  supervised loss.
* `StarShapeLoss`: the star-shape prior of Mirikharaji & Hamarneh (MICCAI 2018),
  reimplemented from the paper's eqs. 4-5, the published peer to compare against.

Both take (N, H, W) or (N, 1, H, W) torch tensors (logits by default), on any device,
and return a differentiable scalar (or (N,) with ``reduction="none"``).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from sam_convex import validation
from sam_convex.projection import ConvexProjector

__all__ = ["REDUCTIONS", "ConvexityLoss", "StarShapeLoss", "star_neighbours"]

REDUCTIONS = ("mean", "sum", "none")


def _maps(pred, name: str = "pred") -> torch.Tensor:
    """(N, H, W) view of a float tensor given as (N, H, W) or (N, 1, H, W); ValueError
    naming the argument otherwise (a loss needs a batch: (H, W) is refused, because a
    silently added batch axis hides a caller's shape bug)."""
    if not isinstance(pred, torch.Tensor):
        raise ValueError(f"{name} must be a torch tensor (N, H, W) or (N, 1, H, W), got {type(pred).__name__}")
    if not pred.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor (logits or probabilities), got dtype {pred.dtype}")
    if pred.dim() == 4 and pred.shape[1] == 1:
        pred = pred[:, 0]
    if pred.dim() != 3:
        raise ValueError(f"{name} must have shape (N, H, W) or (N, 1, H, W), got {tuple(pred.shape)}")
    if pred.numel() == 0:
        raise ValueError(f"{name} must not be empty, got shape {tuple(pred.shape)}")
    return pred


def _reduce(per_map: torch.Tensor, reduction: str) -> torch.Tensor:
    """(N,) per-map losses -> scalar (mean or sum over the batch) or (N,) for "none"."""
    if reduction == "mean":
        return per_map.mean()
    if reduction == "sum":
        return per_map.sum()
    return per_map


class ConvexityLoss(nn.Module):
    """Mean squared distance of each prediction to its projection onto convex shapes.

    For a batch of predictions x of shape (N, H, W) (or (N, 1, H, W)), p = sigmoid(x)
    (``logits=True``) or p = x (probabilities), the loss is

        L = mean_n mean_x (p_n(x) - t_n(x))^2,   t_n = proj_S(p_n) held fixed,

    where t_n is the 0/1 mask of the projector's fit of p_n (one batched
    ``projector.fit`` call on ``p.detach().cpu().numpy()``, the mask returned to p's
    device as float). Because t_n is the convex shape nearest to p_n and does not move
    with p, dL/dp_n = 2 (p_n - t_n) / (N H W) points from the prediction straight to
    its nearest convex shape, and L = 0 exactly when each p_n already is a convex mask
    S can represent. It is the sequential projection's own distance, used as a
    training signal (the poster's joint unification at dataset scale: one fit per
    prediction per step, no per-image network to train).

    Args:
        projector: anything with ``fit(probs) -> ConvexFit`` (default
            ``ConvexProjector()``, the exact polygon fit; ``GradientProjector(...)``
            also works). The fit runs on the CPU without gradient.
        logits: inputs are logits (default) or probabilities in [0, 1].
        reduction: "mean" (over the batch; each map is a mean over its pixels),
            "sum" (over the batch) or "none" ((N,) per map).

    Shapes: forward(pred) with pred (N, H, W) or (N, 1, H, W) float, any device;
    returns a 0-d tensor (or (N,)) on pred's device. After a call, ``last_fit`` holds
    the projector's `ConvexFit` (masks, polygons' ICNN, per-map hard distances).

    Example (a training loop; ``model`` returns (N, 1, H, W) logits)::

        from sam_convex import ConvexityLoss
        convexity = ConvexityLoss()                     # projector=ConvexProjector()
        bce = torch.nn.BCEWithLogitsLoss()
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        for images, masks in loader:                    # masks: (N, 1, H, W) float 0/1
            logits = model(images)
            loss = bce(logits, masks) + 0.5 * convexity(logits)
            opt.zero_grad()
            loss.backward()                             # the projection is a constant
            opt.step()
    """

    def __init__(self, projector=None, logits: bool = True, reduction: str = "mean") -> None:
        super().__init__()
        self.projector = validation.projector(projector) if projector is not None else ConvexProjector()
        self.logits = validation.flag("logits", logits)
        self.reduction = validation.choice("reduction", reduction, REDUCTIONS)
        self.last_fit = None

    def forward(self, pred: torch.Tensor) -> torch.Tensor:
        pred = _maps(pred)
        probs = validation.probabilities(pred, logits=self.logits, keep_grad=True)
        self.last_fit = self.projector.fit(probs.detach().cpu().numpy())
        target = self.last_fit.masks.to(device=probs.device, dtype=probs.dtype)
        per_map = ((probs - target) ** 2).flatten(1).mean(dim=1)
        return _reduce(per_map, self.reduction)

    def extra_repr(self) -> str:
        return f"projector={self.projector!r}, logits={self.logits}, reduction={self.reduction!r}"


def star_neighbours(centres: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """For every pixel p, the flat index of its 8-neighbour q one step towards the
    centre c along the segment p -> c (the direction c - p rounded to the nearest of
    the 8 neighbour directions, i.e. the paper's 8 angular sectors of the domain);
    q = p at the centre itself.

    Args:
        centres: (N, 2) float (x, y) pixel coordinates of each map's centre, inside
            the image.
    Returns:
        (N, H * W) int64 flat indices (row-major) into the same map.
    """
    device = centres.device
    ys, xs = torch.meshgrid(
        torch.arange(height, device=device), torch.arange(width, device=device), indexing="ij"
    )  # (H, W) each
    dx = centres[:, 0, None, None] - xs  # (N, H, W)
    dy = centres[:, 1, None, None] - ys
    sector = torch.round(torch.atan2(dy, dx) / (math.pi / 4))  # nearest of 8 directions
    step_x = torch.round(torch.cos(sector * (math.pi / 4))).long()
    step_y = torch.round(torch.sin(sector * (math.pi / 4))).long()
    at_centre = (dx.abs() < 0.5) & (dy.abs() < 0.5)
    step_x = step_x.masked_fill(at_centre, 0)
    step_y = step_y.masked_fill(at_centre, 0)
    # Moving towards a centre inside the image never leaves it; the clamp only guards
    # a centre given on the border's half-pixel.
    qx = (xs + step_x).clamp(0, width - 1)
    qy = (ys + step_y).clamp(0, height - 1)
    return (qy * width + qx).flatten(1)


class StarShapeLoss(nn.Module):
    """The star-shape prior of Mirikharaji & Hamarneh, "Star Shape Prior in Fully
    Convolutional Networks for Skin Lesion Segmentation" (MICCAI 2018), eqs. 4-5.

    With y the ground truth, y_hat the predicted foreground probability and c the
    object's centre (the centroid of the ground truth, rounded down), for every pixel
    p and its neighbour q on the segment l_pc one step closer to c:

        L = mean_p  beta_pq * |y_p - y_hat_p| * |y_hat_p - y_hat_q|,
        beta_pq = 1 if y_p == y_q else 0                                  (eq. 5)

    (eq. 4; the paper sums over p, the authors' code averages, as here). A change of
    the prediction between p and q is penalised where the ground truth does not change
    there and the prediction at p is wrong: along every ray from c the prediction may
    switch from object to background only where the ground truth does. So it is zero
    for the ground truth itself and for any prediction star-shaped about c that
    contains it, and positive for islands, holes and bites (each has a wrong pixel
    next to a label change the ground truth does not have). The paper's total loss is
    cross-entropy + weight * L (weight 40 in the authors' release).

    Reimplemented from the paper's equations (not from the authors' code): the
    neighbour q of every pixel is found once per call by rounding the direction c - p
    to the nearest 8-neighbour (`star_neighbours`), then L is one gather over the
    flattened maps, on any device.

    Args:
        logits: predictions are logits (default) or probabilities.
        reduction: "mean" (over the batch), "sum" or "none" ((N,)).

    Shapes: forward(pred, gt, centres=None) with pred (N, H, W) or (N, 1, H, W) float,
    gt of the same shape (bool or 0/1 float), centres (N, 2) (x, y) or None (each
    ground truth's centroid; the image centre for an empty one). Returns a 0-d tensor
    (or (N,)) on pred's device.
    """

    def __init__(self, logits: bool = True, reduction: str = "mean") -> None:
        super().__init__()
        self.logits = validation.flag("logits", logits)
        self.reduction = validation.choice("reduction", reduction, REDUCTIONS)

    def forward(self, pred: torch.Tensor, gt: torch.Tensor, centres: torch.Tensor | None = None) -> torch.Tensor:
        pred = _maps(pred)
        if not isinstance(gt, torch.Tensor):
            raise ValueError(f"gt must be a torch tensor like pred, got {type(gt).__name__}")
        gt = gt[:, 0] if gt.dim() == 4 and gt.shape[1] == 1 else gt
        if gt.shape != pred.shape:
            raise ValueError(f"gt must have pred's shape {tuple(pred.shape)}, got {tuple(gt.shape)}")
        probs = validation.probabilities(pred, logits=self.logits, keep_grad=True)
        y = (gt > 0.5).to(device=probs.device, dtype=probs.dtype)
        n, height, width = probs.shape
        if centres is None:
            centres = self.centres(y)
        elif not isinstance(centres, torch.Tensor) or centres.shape != (n, 2):
            raise ValueError(f"centres must be a ({n}, 2) tensor of (x, y), got {getattr(centres, 'shape', centres)}")
        q = star_neighbours(centres.to(device=probs.device, dtype=torch.float32), height, width)
        y_p, y_hat_p = y.flatten(1), probs.flatten(1)
        y_q, y_hat_q = y_p.gather(1, q), y_hat_p.gather(1, q)
        beta = (y_p == y_q).to(probs.dtype)
        per_map = (beta * (y_p - y_hat_p).abs() * (y_hat_p - y_hat_q).abs()).mean(dim=1)
        return _reduce(per_map, self.reduction)

    @staticmethod
    def centres(gt: torch.Tensor) -> torch.Tensor:
        """(N, 2) float (x, y): the floor of each (N, H, W) 0/1 ground truth's
        centroid, as the authors place c; the image centre for an empty one."""
        _, height, width = gt.shape
        ys = torch.arange(height, device=gt.device, dtype=gt.dtype)
        xs = torch.arange(width, device=gt.device, dtype=gt.dtype)
        mass = gt.sum(dim=(1, 2))
        cx = (gt.sum(dim=1) * xs).sum(dim=1) / mass.clamp_min(1)
        cy = (gt.sum(dim=2) * ys).sum(dim=1) / mass.clamp_min(1)
        empty = mass == 0
        cx = torch.where(empty, torch.full_like(cx, (width - 1) / 2), cx)
        cy = torch.where(empty, torch.full_like(cy, (height - 1) / 2), cy)
        return torch.stack([cx, cy], dim=1).floor()
