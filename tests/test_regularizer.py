"""ConvexityRegularizer: gradients, convex mask, and convexifying a free prediction."""

import numpy as np
import pytest
import torch
from scipy import ndimage
from skimage.morphology import convex_hull_image

from sam_convex import ConvexityRegularizer
from sam_convex.measures import hull_gap


def c_shape(size: int = 40) -> np.ndarray:
    """(size, size) bool ring with a gap on the right: far from convex."""
    yy, xx = np.mgrid[:size, :size]
    c = size / 2
    r = np.hypot(yy - c, xx - c)
    return (r < 0.4 * size) & (r > 0.2 * size) & ~((xx > c) & (np.abs(yy - c) < 0.13 * size))


def test_gradient_reaches_p_and_icnn():
    torch.manual_seed(0)
    reg = ConvexityRegularizer((16, 20), num_maps=2, grid=None)
    p = torch.rand(2, 16, 20, requires_grad=True)
    loss = reg(p)
    assert loss.dim() == 0
    loss.backward()
    assert p.grad is not None and p.grad.abs().sum() > 0
    for name, param in reg.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_distance_is_mean_squared_difference_on_full_grid():
    reg = ConvexityRegularizer((8, 12), grid=None)
    p = torch.rand(8, 12)
    expected = ((p - torch.sigmoid(reg.render())[0]) ** 2).mean()
    assert torch.allclose(reg(p), expected, atol=1e-6)


def test_coarse_lattice_area_averages_p():
    reg = ConvexityRegularizer((64, 64), grid=16)
    assert reg.lattice == (16, 16)
    p = torch.zeros(64, 64, requires_grad=True)
    reg(p).backward()
    # Each lattice cell spreads its gradient evenly over its 4x4 pixels.
    assert torch.allclose(p.grad[:4, :4], p.grad[0, 0].expand(4, 4))


def fit(reg, target: torch.Tensor, steps: int, free_p: bool, lr_p: float = 0.05):
    """Minimise reg alone, optionally with p as a free parameter (logits)."""
    logit = torch.nn.Parameter(torch.where(target > 0.5, 3.0, -3.0))
    groups = [{"params": reg.parameters(), "lr": 0.02}]
    if free_p:
        groups.append({"params": [logit], "lr": lr_p})
    opt = torch.optim.Adam(groups)
    for _ in range(steps):
        opt.zero_grad()
        reg(torch.sigmoid(logit)).backward()
        opt.step()
        reg.clamp_()
    return torch.sigmoid(logit).detach()


def test_mask_is_convex_at_any_resolution():
    target = torch.from_numpy(c_shape(40)).float()
    reg = ConvexityRegularizer((40, 40), grid=None, seed=1)
    reg.init_from(target)
    fit(reg, target, steps=150, free_p=False)
    assert reg.icnn.satisfies_constraint()
    for size in (40, 97):
        mask = (reg.render(size, size)[0] >= 0).numpy()
        assert mask.shape == (size, size) and mask.sum() > 0.2 * size * size
        hull = convex_hull_image(mask)
        # Sampling a convex set at pixel centres: the hull (drawn through pixel corners)
        # may exceed the mask only in its one-pixel boundary band.
        band = hull & ~ndimage.binary_erosion(hull)
        assert not (hull & ~mask & ~band).any()


def test_unclamped_net_is_refused():
    reg = ConvexityRegularizer((8, 8))
    with torch.no_grad():
        reg.icnn.w_z.fill_(-1.0)
    with pytest.raises(RuntimeError, match="clamp_"):
        reg(torch.rand(8, 8))
    with pytest.raises(RuntimeError, match="clamp_"):
        reg.render()
    reg.clamp_()
    assert reg.masks.shape == (1, 8, 8)


def test_minimising_alone_convexifies_p():
    c = c_shape(40)
    before = hull_gap(c)
    target = torch.from_numpy(c).float()
    reg = ConvexityRegularizer((40, 40), grid=None, seed=0)
    reg.init_from(target)
    p = fit(reg, target, steps=200, free_p=True)
    after_mask = (p > 0.5).numpy()
    assert after_mask.sum() > 0.3 * c.sum()  # not the trivial (empty) convex set
    assert before > 0.3
    assert hull_gap(after_mask) < 0.5 * before


def test_init_from_places_ellipse_on_target():
    yy, xx = np.mgrid[:48, :64]
    disk = ((yy - 30) / 10.0) ** 2 + ((xx - 20) / 14.0) ** 2 <= 1
    reg = ConvexityRegularizer((48, 64))
    reg.init_from(disk)  # a bool numpy mask, as the projector takes it
    mask = reg.masks[0].numpy()
    assert (mask & disk).sum() / (mask | disk).sum() > 0.8


def test_accepts_what_the_projector_accepts():
    """numpy or torch, probabilities, logits or bool masks: the same distance."""
    reg = ConvexityRegularizer((8, 8), seed=2)
    p = torch.rand(8, 8)
    reference = reg(p)
    assert torch.allclose(reg(p.numpy()), reference)
    assert torch.allclose(reg(torch.logit(p), logits=True), reference, atol=1e-6)
    assert torch.allclose(reg(p > 0.5), reg((p > 0.5).float()))


@pytest.mark.parametrize(
    "bad,match",
    [
        (torch.rand(8, 8), "shape"),  # two maps expected
        (torch.full((2, 8, 8), float("nan")), "NaN"),
        (torch.full((2, 8, 8), 5.0), r"\[0, 1\]"),
        (np.zeros((2, 8, 8), dtype="U1"), "dtype"),
    ],
)
def test_bad_input_raises(bad, match):
    reg = ConvexityRegularizer((8, 8), num_maps=2)
    with pytest.raises(ValueError, match=match):
        reg(bad)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"image_size": (0, 8)}, "height"),
        ({"image_size": 8.5}, "image_size"),
        ({"image_size": (8, 8), "grid": True}, "grid"),
        ({"image_size": (8, 8), "sharpness": float("nan")}, "sharpness"),
        ({"image_size": (8, 8), "num_maps": 0}, "num_maps"),
        ({"image_size": 64}, r"\(H, W\)"),
    ],
)
def test_bad_settings_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ConvexityRegularizer(**kwargs)


def test_render_size_is_checked():
    reg = ConvexityRegularizer((8, 8))
    with pytest.raises(ValueError, match="height"):
        reg.render(0, 0)
    assert reg.render(3, 5).shape == (1, 3, 5)


def test_the_unpublished_0_1_signature_is_refused():
    """0.1 took (height, width=image width, ..., width_hidden); it was never published,
    so it is refused rather than reinterpreted."""
    with pytest.raises(TypeError):
        ConvexityRegularizer(16, 20, 2, 8)
    with pytest.raises(TypeError, match="width_hidden"):
        ConvexityRegularizer((16, 20), width_hidden=8)
