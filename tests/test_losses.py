"""ConvexityLoss and StarShapeLoss: values on convex / non-convex shapes, gradient
direction, batching, devices, input kinds and errors."""

import numpy as np
import pytest
import torch

from sam_convex import ConvexityLoss, ConvexProjector, StarShapeLoss
from sam_convex.losses import star_neighbours
from sam_convex.synthetic import disk, polygon

SIZE = 64


def as_tensor(*masks) -> torch.Tensor:
    return torch.from_numpy(np.stack(masks).astype(np.float32))


def convex_masks() -> torch.Tensor:
    return as_tensor(
        disk(30, 34, 14, SIZE, SIZE),
        polygon([(10, 12), (50, 8), (56, 40), (20, 52)], SIZE, SIZE),
    )


def nonconvex_masks() -> torch.Tensor:
    ring = disk(32, 32, 20, SIZE, SIZE) & ~disk(32, 32, 10, SIZE, SIZE)
    l_shape = np.zeros((SIZE, SIZE), bool)
    l_shape[8:56, 8:24] = True
    l_shape[40:56, 8:56] = True
    bite_island = (disk(26, 30, 16, SIZE, SIZE) & ~disk(40, 30, 7, SIZE, SIZE)) | disk(54, 54, 5, SIZE, SIZE)
    return as_tensor(ring, l_shape, bite_island)


def soft(masks: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Soft probabilities around 0/1 masks (a segmenter's kind of output)."""
    gen = torch.Generator().manual_seed(seed)
    return (0.15 + 0.7 * masks + 0.1 * torch.rand(masks.shape, generator=gen)).clamp(0, 1)


# ---------------------------------------------------------------------------- ConvexityLoss


def test_convexity_loss_near_zero_on_convex_masks_and_positive_on_nonconvex():
    loss = ConvexityLoss(logits=False, reduction="none")
    convex = loss(convex_masks())
    nonconvex = loss(nonconvex_masks())
    # A digital disk is fitted by a polygon: a few boundary pixels may differ.
    assert (convex < 2e-3).all(), convex
    assert (nonconvex > 0.02).all(), nonconvex


def test_gradient_step_moves_each_prediction_towards_its_projection():
    probs = soft(nonconvex_masks()).requires_grad_(True)
    loss_fn = ConvexityLoss(logits=False, reduction="none")
    before = loss_fn(probs)
    target = loss_fn.last_fit.masks.float()
    before.sum().backward()
    grad = probs.grad
    # The negative gradient points from the prediction to the projection, pixel by pixel.
    moving = (probs - target).abs() > 1e-6
    assert (torch.sign(-grad[moving]) == torch.sign(target - probs.detach())[moving]).all()
    stepped = (probs.detach() - 2000.0 * grad).clamp(0, 1)
    # Closer to the old projection, and so (proj_S being a minimiser) to S itself.
    assert (((stepped - target) ** 2).flatten(1).mean(1) < before.detach()).all()
    assert (loss_fn(stepped) < before.detach()).all()


def test_one_batched_fit_call_and_batched_equals_single():
    calls = []

    class Recording(ConvexProjector):
        def fit(self, targets, logits=False):
            calls.append(np.shape(targets))
            return super().fit(targets, logits=logits)

    logits = torch.logit(soft(torch.cat([nonconvex_masks(), convex_masks()])), eps=1e-4)
    loss_fn = ConvexityLoss(Recording(), reduction="none")
    batched = loss_fn(logits)
    assert calls == [tuple(logits.shape)]
    singles = torch.cat([loss_fn(logits[i : i + 1]) for i in range(len(logits))])
    assert torch.equal(batched, singles)
    assert torch.equal(ConvexityLoss()(logits), batched.mean())
    assert torch.equal(ConvexityLoss(reduction="sum")(logits), batched.sum())


def test_logits_and_probabilities_agree_and_channel_axis_is_accepted():
    probs = soft(nonconvex_masks(), seed=1)
    logits = torch.logit(probs)
    from_logits = ConvexityLoss()(logits)
    from_probs = ConvexityLoss(logits=False)(probs)
    assert torch.allclose(from_logits, from_probs, atol=1e-6)
    assert torch.equal(ConvexityLoss()(logits[:, None]), from_logits)


def test_other_projector_setting_is_used():
    from sam_convex import GradientProjector

    loss_fn = ConvexityLoss(GradientProjector(grid=32, steps=30, fine_steps=None), logits=False, reduction="none")
    assert (loss_fn(convex_masks()) < loss_fn(nonconvex_masks()).min()).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cpu_equals_cuda():
    logits = torch.logit(soft(nonconvex_masks()), eps=1e-4)
    cpu = logits.clone().requires_grad_(True)
    gpu = logits.cuda().requires_grad_(True)
    loss_cpu, loss_gpu = ConvexityLoss()(cpu), ConvexityLoss()(gpu)
    assert loss_gpu.device.type == "cuda"
    loss_cpu.backward()
    loss_gpu.backward()
    assert torch.allclose(loss_cpu, loss_gpu.cpu(), atol=1e-6)
    assert torch.allclose(cpu.grad, gpu.grad.cpu(), atol=1e-8)


@pytest.mark.parametrize(
    "pred, message",
    [
        (torch.zeros(8, 8), r"\(N, H, W\)"),
        (torch.zeros(2, 3, 8, 8), r"\(N, H, W\)"),
        (torch.zeros(2, 8, 8, dtype=torch.int64), "floating-point"),
        (np.zeros((2, 8, 8), np.float32), "torch tensor"),
        (torch.zeros(0, 8, 8), "empty"),
        (torch.full((1, 8, 8), float("nan")), "NaN"),
    ],
)
def test_convexity_loss_rejects_bad_input(pred, message):
    with pytest.raises(ValueError, match=message):
        ConvexityLoss()(pred)


def test_convexity_loss_rejects_bad_settings():
    with pytest.raises(ValueError, match="logits=True"):
        ConvexityLoss(logits=False)(torch.full((1, 8, 8), 3.0))
    with pytest.raises(ValueError, match="reduction"):
        ConvexityLoss(reduction="avg")
    with pytest.raises(ValueError, match="projector"):
        ConvexityLoss(projector="polygon")


# ---------------------------------------------------------------------------- StarShapeLoss


def test_star_neighbours_step_towards_the_centre():
    centres = torch.tensor([[20.0, 33.0], [0.0, 63.0]])
    q = star_neighbours(centres, SIZE, SIZE)
    ys, xs = np.mgrid[:SIZE, :SIZE]
    for n, (cx, cy) in enumerate(centres.tolist()):
        qy, qx = np.divmod(q[n].numpy(), SIZE)
        step = np.maximum(np.abs(qx - xs.ravel()), np.abs(qy - ys.ravel()))
        before = np.hypot(xs.ravel() - cx, ys.ravel() - cy)
        after = np.hypot(qx - cx, qy - cy)
        centre = before == 0
        assert (step[~centre] == 1).all() and (step[centre] == 0).all()
        assert (after[~centre] < before[~centre]).all()


def test_star_loss_zero_on_truth_and_on_star_shaped_supersets():
    gt = as_tensor(disk(30, 34, 14, SIZE, SIZE), polygon([(10, 12), (50, 8), (56, 40), (20, 52)], SIZE, SIZE))
    yy, xx = np.mgrid[:SIZE, :SIZE]
    angle, radius = np.arctan2(yy - 34, xx - 30), np.hypot(yy - 34, xx - 30)  # a 5-pointed star around the disk
    star = radius <= 17 + 10 * np.abs(np.cos(2.5 * angle))
    loss = StarShapeLoss(logits=False, reduction="none")
    assert torch.equal(loss(gt, gt), torch.zeros(2))
    bigger = as_tensor(star, disk(33, 30, 40, SIZE, SIZE))
    assert torch.equal(loss(bigger, gt), torch.zeros(2))


def test_star_loss_positive_on_blobs_holes_and_bites():
    gt = as_tensor(*[disk(32, 32, 16, SIZE, SIZE)] * 3)
    blob = disk(32, 32, 16, SIZE, SIZE) | disk(56, 8, 5, SIZE, SIZE)
    hole = disk(32, 32, 16, SIZE, SIZE) & ~disk(40, 30, 4, SIZE, SIZE)  # off the centre
    bite = disk(32, 32, 16, SIZE, SIZE) & ~disk(44, 32, 6, SIZE, SIZE)
    per_map = StarShapeLoss(logits=False, reduction="none")(as_tensor(blob, hole, bite), gt)
    assert (per_map > 0).all(), per_map
    single = [StarShapeLoss(logits=False)(as_tensor(m), gt[:1]) for m in (blob, hole, bite)]
    assert torch.equal(per_map, torch.stack(single))


def test_star_loss_gradient_is_finite_and_reduces_the_blob():
    gt = as_tensor(disk(32, 32, 16, SIZE, SIZE), np.zeros((SIZE, SIZE), bool))
    blob = as_tensor(disk(32, 32, 16, SIZE, SIZE) | disk(56, 8, 5, SIZE, SIZE), disk(20, 20, 6, SIZE, SIZE))
    logits = (20 * (blob - 0.5)).requires_grad_(True)  # saturated, the hard case
    loss = StarShapeLoss()(logits, gt)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
    # On the blob's inner edge (predicted object where the truth is background) the
    # gradient lowers the prediction.
    island = torch.from_numpy(disk(56, 8, 5, SIZE, SIZE))
    assert (logits.grad[0][island] >= 0).all() and (logits.grad[0][island] > 0).any()


def test_star_loss_rejects_bad_input():
    with pytest.raises(ValueError, match="gt must have"):
        StarShapeLoss()(torch.zeros(2, 8, 8), torch.zeros(2, 8, 9))
    with pytest.raises(ValueError, match="centres"):
        StarShapeLoss()(torch.zeros(2, 8, 8), torch.zeros(2, 8, 8), centres=torch.zeros(2, 3))
    with pytest.raises(ValueError, match="torch tensor"):
        StarShapeLoss()(torch.zeros(2, 8, 8), np.zeros((2, 8, 8)))
