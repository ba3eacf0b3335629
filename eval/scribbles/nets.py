"""Per-image predictors N_theta trained on scribbles, alone or jointly with convexity.

* CNN: four 3x3 convolutions (width 16, zero 'same' padding, ReLU between).
* FCN: a pixel-wise MLP, five 1x1 convolutions (width 16, ReLU between).

Both map a (1, C, H, W) feature stack to (1, 1, H, W) foreground logits and are
trained with class-balanced binary cross-entropy on the scribbled pixels only: the mean
BCE over foreground scribbles plus the mean over background scribbles, halved, so a
long background stroke does not drown a short foreground one.

`train_pair` trains one predictor twice from the same start: *sequential* (BCE only)
and *joint* (BCE + lambda * dist(p, S) with a `ConvexityRegularizer` trained along).
Both runs take the same total number of steps. The joint run's first `warmup` steps
are BCE only, so they are identical in both runs and computed once. The regulariser
then starts from the predicted region connected to the foreground scribbles (its
moment ellipse, refined by `reg_prefit` ICNN-only steps; see `initial_shape`) and is
trained together with the predictor for the remaining steps.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import nn

from sam_convex.regularizer import ConvexityRegularizer

WIDTH = 16


def make_predictor(kind: str, in_channels: int) -> nn.Module:
    """'cnn': 4 layers of 3x3 convs; 'fcn': 5 layers of 1x1 convs; width 16, ReLU."""
    if kind == "cnn":
        kernel, layers = 3, 4
    elif kind == "fcn":
        kernel, layers = 1, 5
    else:
        raise ValueError(f"unknown predictor {kind!r}; choose 'cnn' or 'fcn'")
    chans = [in_channels] + [WIDTH] * (layers - 1) + [1]
    mods: list[nn.Module] = []
    for i in range(layers):
        mods.append(nn.Conv2d(chans[i], chans[i + 1], kernel, padding=kernel // 2))
        if i < layers - 1:
            mods.append(nn.ReLU())
    return nn.Sequential(*mods)


def scribble_bce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Class-balanced BCE on labelled pixels.

    Args:
        logits: (H, W) float foreground logits.
        labels: (H, W) uint8/long, 0 unlabelled, 1 background, 2 foreground.
    Returns:
        scalar float tensor (mean over the classes that have scribbles).
    """
    terms = []
    for value, target in ((2, 1.0), (1, 0.0)):
        sel = labels == value
        if sel.any():
            x = logits[sel]
            terms.append(F.binary_cross_entropy_with_logits(x, torch.full_like(x, target)))
    if not terms:
        raise ValueError("no scribbled pixels: labels must contain 1 (bg) or 2 (fg)")
    return torch.stack(terms).mean()


@dataclass
class TrainConfig:
    """Optimisation settings shared by both modes (see module docstring)."""

    steps: int = 200
    lr: float = 0.01
    lam: float = 1.0  # weight of dist(p, S) in the joint loss (chosen on the dev split, see tune)
    warmup: int = 100  # BCE-only steps before the regulariser joins (joint mode; chosen on the dev split)
    reg_lr: float = 0.02  # Adam lr of the regulariser's ICNN
    reg_grid: int | None = 64  # regulariser lattice (see ConvexityRegularizer)
    reg_width: int = 32
    reg_depth: int = 2
    reg_init: str = "component"  # see `initial_shape`
    reg_prefit: int = 100  # ICNN-only steps on the start shape before coupling


@dataclass
class PairResult:
    """Outputs of `train_pair` at training resolution.

    Attributes:
        seq_logits, joint_logits: (H, W) float32 numpy predictor logits.
        joint_reg: the trained `ConvexityRegularizer` (its mask is the joint convex output).
        seq_s, joint_s: seconds of training per mode, each including the shared warm-up.
    """

    seq_logits: np.ndarray
    joint_logits: np.ndarray
    joint_reg: ConvexityRegularizer
    seq_s: float
    joint_s: float


def _run(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    x: torch.Tensor,
    labels: torch.Tensor,
    steps: int,
    reg: ConvexityRegularizer | None = None,
    reg_opt: torch.optim.Optimizer | None = None,
    lam: float = 0.0,
) -> None:
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        logits = model(x)[0, 0]
        loss = scribble_bce(logits, labels)
        if reg is not None:
            reg_opt.zero_grad(set_to_none=True)
            loss = loss + lam * reg(torch.sigmoid(logits))
        loss.backward()
        opt.step()
        if reg is not None:
            reg_opt.step()
            reg.clamp_()  # keep the ICNN constraint after every step


def initial_shape(p: torch.Tensor, labels: torch.Tensor, how: str) -> torch.Tensor:
    """Where the joint regulariser starts: the target of its moment-ellipse init.

    'component': the predicted regions (p > 0.5) that touch a foreground scribble.
    'scribbles': the foreground scribbles themselves.
    Not the raw prediction: early predictions can carry large false positives away from
    the object; an ellipse started on those is pulled to the empty set, where
    sigmoid(-G) saturates and the ICNN receives no more gradient. The scribbles alone
    start it too small, and the coupled optimum stays near the start (under-segmented).
    Both seen on the scenes benchmark; 'component' (with the ICNN-only pre-fit of
    `train_pair`) fixed most of those cases, so it is the default.

    Args:
        p: (H, W) float probabilities; labels: (H, W) long scribbles (0/1/2).
    Returns:
        (H, W) float32 mask; the prediction itself when there is no foreground scribble.
    """
    fg = (labels == 2).numpy()
    if not fg.any():
        return p
    if how == "scribbles":
        return torch.from_numpy(fg).float()
    if how != "component":
        raise ValueError(f"unknown reg_init {how!r}; choose 'component' or 'scribbles'")
    comps, _ = ndimage.label((p > 0.5).numpy())
    keep = np.isin(comps, np.unique(comps[fg & (comps > 0)])) & (comps > 0)
    return torch.from_numpy(keep | fg).float()


def train_pair(kind: str, features: np.ndarray, labels: np.ndarray, cfg: TrainConfig, seed: int) -> PairResult:
    """Train one predictor sequentially (BCE) and jointly (BCE + lam * dist) from one start.

    Args:
        kind: 'cnn' or 'fcn'.
        features: (C, H, W) float32 input channels (already normalised).
        labels: (H, W) uint8 scribbles, 0 unlabelled, 1 background, 2 foreground.
        cfg: step counts and weights.
        seed: seeds the predictor's and the regulariser's initialisation.
    Returns:
        `PairResult`.
    """
    if not 0 <= cfg.warmup < cfg.steps:
        raise ValueError(f"warmup must be in [0, steps), got {cfg.warmup} and {cfg.steps}")
    x = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))[None]
    lab = torch.from_numpy(np.ascontiguousarray(labels)).long()
    with torch.random.fork_rng():  # seed the net's initialisation, leave the caller's RNG alone
        torch.manual_seed(seed)
        model = make_predictor(kind, x.shape[1])
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)

    t0 = time.perf_counter()
    _run(model, opt, x, lab, cfg.warmup)
    warm_s = time.perf_counter() - t0
    # Branch the joint run off here: its own copy of the weights and the Adam moments.
    joint_model = copy.deepcopy(model)
    joint_opt = torch.optim.Adam(joint_model.parameters(), lr=cfg.lr)
    joint_opt.load_state_dict(copy.deepcopy(opt.state_dict()))

    t0 = time.perf_counter()
    _run(model, opt, x, lab, cfg.steps - cfg.warmup)
    seq_s = warm_s + time.perf_counter() - t0

    t0 = time.perf_counter()
    h, w = labels.shape
    reg = ConvexityRegularizer((h, w), width=cfg.reg_width, depth=cfg.reg_depth, grid=cfg.reg_grid, seed=seed)
    with torch.no_grad():
        start = initial_shape(torch.sigmoid(joint_model(x)[0, 0]), lab, cfg.reg_init)
    reg.init_from(start)
    # Fit the ICNN alone to the start shape first (a short projection). Coupled from
    # the raw moment ellipse, the prediction is pulled towards the ellipse's errors
    # while the ICNN is still far off, and both settle on a shrunken shape.
    reg_opt = torch.optim.Adam(reg.parameters(), lr=cfg.reg_lr)
    for _ in range(cfg.reg_prefit):
        reg_opt.zero_grad(set_to_none=True)
        reg(start).backward()
        reg_opt.step()
        reg.clamp_()
    reg_opt = torch.optim.Adam(reg.parameters(), lr=cfg.reg_lr)
    _run(joint_model, joint_opt, x, lab, cfg.steps - cfg.warmup, reg, reg_opt, cfg.lam)
    joint_s = warm_s + time.perf_counter() - t0

    with torch.no_grad():
        seq_logits = model(x)[0, 0].numpy()
        joint_logits = joint_model(x)[0, 0].numpy()
    return PairResult(seq_logits, joint_logits, reg, seq_s, joint_s)
