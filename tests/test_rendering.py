"""Rendering fitted ICNNs: hierarchical masks and chunked logits against a dense
float32 evaluation by the network's own forward pass."""

import numpy as np
import pytest
import torch

from sam_convex import ICNN
from sam_convex.rendering import OUTSIDE_LOGIT, render_logits, render_masks, window_pixels

IMAGE = (48, 64)
WINDOWS = torch.tensor(
    [[0, 0, 64, 48], [10, 5, 50, 40], [0, 0, 1, 1], [3, 3, 60, 9], [20.5, 7.25, 63.5, 47.75], [0, 0, 64, 48]],
    dtype=torch.float32,
)


def general_nets(kind: str) -> ICNN:
    """Six constrained ICNNs that are not polygons: random, or moment cones perturbed."""
    gen = torch.Generator().manual_seed(0)
    net = ICNN(6, 24, 2)
    if kind == "random":
        net.reset_random(gen)
        return net
    mean = torch.rand(6, 2, generator=gen) - 0.5
    a = torch.rand(6, 2, 2, generator=gen)
    net.init_from_moments(mean, a @ a.transpose(1, 2) * 0.2 + 0.01 * torch.eye(2), 6.0, gen)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    net.clamp_()
    return net


def dense_forward(net: ICNN, height: int, width: int) -> np.ndarray:
    """-G by ICNN.forward (float32) at every pixel inside each window."""
    out = np.full((net.num_nets, height, width), OUTSIDE_LOGIT, np.float32)
    for i in range(net.num_nets):
        r0, r1, c0, c1, u, v = window_pixels(WINDOWS[i], IMAGE, height, width)
        if r1 > r0 and c1 > c0:
            vv, uu = np.meshgrid(v(np.arange(r0, r1)), u(np.arange(c0, c1)), indexing="ij")
            coords = torch.from_numpy(np.stack([uu.ravel(), vv.ravel()], 1).astype(np.float32))
            with torch.no_grad():
                g = net(coords[None], nets=torch.tensor([i]))[0]
            out[i, r0:r1, c0:c1] = (-g).reshape(r1 - r0, c1 - c0).numpy()
    return out


@pytest.mark.parametrize("kind", ["random", "moments"])
@pytest.mark.parametrize("size", [(48, 64), (97, 131), (480, 640)])
def test_masks_and_logits_match_the_networks_own_forward(kind, size):
    net = general_nets(kind)
    masks = render_masks(net, WINDOWS, IMAGE, *size)
    logits = render_logits(net, WINDOWS, IMAGE, *size)
    assert np.array_equal(masks, logits >= 0)  # one evaluator decides both
    reference = dense_forward(net, *size)
    np.testing.assert_allclose(logits, reference, atol=1e-4, rtol=1e-5)
    differ = masks != (reference >= 0)
    # float64 vs float32 arithmetic may only disagree where G is ~0.
    assert differ.sum() <= 2 and (np.abs(reference[differ]) < 1e-4).all()


def test_logits_are_rendered_in_bounded_chunks(monkeypatch):
    """Many small chunks give the same logits as one big evaluation."""
    net = general_nets("moments")
    whole = render_logits(net, WINDOWS, IMAGE, 97, 131)
    monkeypatch.setattr("sam_convex.rendering.CHUNK_POINTS", 50)
    assert np.array_equal(render_logits(net, WINDOWS, IMAGE, 97, 131), whole)
