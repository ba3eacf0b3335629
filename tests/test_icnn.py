import pytest
import torch

from sam_convex import ICNN


def _max_convexity_violation(net: ICNN, pairs: int = 2000, seed: int = 0) -> float:
    """Largest G(t a + (1-t) b) - (t G(a) + (1-t) G(b)) over random pairs (<= 0 if convex)."""
    gen = torch.Generator().manual_seed(seed)
    a = torch.rand(net.num_nets, pairs, 2, generator=gen) * 4 - 2
    b = torch.rand(net.num_nets, pairs, 2, generator=gen) * 4 - 2
    t = torch.rand(net.num_nets, pairs, 1, generator=gen)
    with torch.no_grad():
        mid = net(t * a + (1 - t) * b)
        ga, gb = net(a), net(b)
        chord = t.squeeze(-1) * ga + (1 - t.squeeze(-1)) * gb
    scale = float(torch.maximum(ga.abs(), gb.abs()).max()) + 1.0
    return float((mid - chord).max()) / scale  # relative to |G|: float32 rounding


@pytest.mark.parametrize("depth", [1, 2, 4])
def test_random_constrained_icnns_are_convex(depth):
    net = ICNN(num_nets=8, width=16, depth=depth)
    gen = torch.Generator().manual_seed(depth)
    with torch.no_grad():  # arbitrary signed weights, then projected onto the constraint
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 2)
    net.clamp_()
    assert net.satisfies_constraint()
    assert _max_convexity_violation(net) <= 1e-4


def test_convexity_check_detects_a_negative_hidden_weight():
    net = ICNN(num_nets=4, width=8, depth=3)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 2)
        net.w_out_z.copy_(-net.w_out_z.abs())  # concave output layer
    assert not net.satisfies_constraint()
    assert _max_convexity_violation(net) > 1e-2


def test_moment_init_zero_level_set_is_the_ellipse():
    net = ICNN(num_nets=1, width=64, depth=2)
    mean = torch.tensor([[0.2, -0.1]])
    cov = torch.tensor([[[0.09, 0.02], [0.02, 0.04]]])  # semi-axes 2 * sqrt(eig)
    net.init_from_moments(mean, cov, sharpness=5.0)
    evals, evecs = torch.linalg.eigh(cov[0])
    major = evecs[:, 1] * 2 * evals[1].sqrt()
    with torch.no_grad():
        centre = net(mean)[0, 0]
        inside = net((mean + 0.9 * major)[None])[0, 0]
        outside = net((mean + 1.1 * major)[None])[0, 0]
    assert centre < inside < 0 < outside
    assert net.satisfies_constraint()


def test_bad_sizes_raise():
    with pytest.raises(ValueError, match="width"):
        ICNN(num_nets=1, width=0, depth=2)
