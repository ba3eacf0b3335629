"""GrabCutPredictor, load_sam and find_checkpoint."""
import numpy as np
import pytest
import torch

from sam_convex import backends
from sam_convex.backends import GrabCutPredictor, find_checkpoint, load_sam
from shapes import iou
from tiny_sam import tiny_sam


def textured_scene(h=150, w=200, seed=0):
    """(h, w, 3) uint8 RGB: a checker-textured orange ellipse on a striped blue
    background, both noisy; returns (image, ground-truth mask)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    gt = ((xx - 115) / 55.0) ** 2 + ((yy - 85) / 38.0) ** 2 <= 1
    img = np.empty((h, w, 3), np.float32)
    img[:] = (70, 100, 150)
    img += (25 * np.sin(xx / 3.0))[..., None]
    checker = np.sign(np.sin(xx / 4.0) * np.sin(yy / 4.0))
    fg = np.array((190, 140, 70), np.float32) + (30 * checker)[..., None]
    img[gt] = fg[gt]
    img += rng.normal(0, 15, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8), gt


@pytest.fixture(scope="module")
def scene():
    return textured_scene()


@pytest.fixture(scope="module")
def grabcut(scene):
    predictor = GrabCutPredictor()
    predictor.set_image(scene[0])
    return predictor


@pytest.mark.parametrize("prompt", [
    dict(box=np.array([50.0, 40.0, 180.0, 130.0])),
    dict(point_coords=np.array([[115.0, 85.0]]), point_labels=np.array([1])),
    dict(point_coords=np.array([[115.0, 85.0], [10.0, 10.0]]), point_labels=np.array([1, 0])),
    dict(point_coords=np.array([[100.0, 80.0]]), point_labels=np.array([1]),
         box=np.array([50.0, 40.0, 180.0, 130.0])),
], ids=["box", "point", "point+negative", "point+box"])
def test_grabcut_segments_textured_ellipse(grabcut, scene, prompt):
    masks, scores, logits = grabcut.predict(**prompt)
    h, w = scene[1].shape
    assert masks.shape == (1, h, w) and masks.dtype == bool
    assert scores.shape == (1,) and scores.dtype == np.float32 and scores[0] == 1.0
    assert logits.shape == (1, h, w) and logits.dtype == np.float32
    assert iou(masks[0], scene[1]) >= 0.8
    # The soft logits are consistent with the mask and bounded.
    np.testing.assert_array_equal(logits[0] > 0, masks[0])
    assert np.isfinite(logits).all() and np.abs(logits).max() <= 20


def test_grabcut_is_deterministic_and_honours_format(scene):
    a = GrabCutPredictor(seed=3)
    a.set_image(scene[0])
    box = np.array([50.0, 40.0, 180.0, 130.0])
    first = a.predict(box=box)[0]
    np.testing.assert_array_equal(first, a.predict(box=box)[0])
    b = GrabCutPredictor(seed=3)
    b.set_image(np.ascontiguousarray(scene[0][..., ::-1]), image_format="BGR")
    np.testing.assert_array_equal(first, b.predict(box=box)[0])
    logits = a.predict(box=box, return_logits=True)[0]
    assert logits.dtype == np.float32
    np.testing.assert_array_equal(logits > 0, first)


def test_grabcut_mask_input_round_trip(grabcut, scene):
    _, _, logits = grabcut.predict(box=np.array([50.0, 40.0, 180.0, 130.0]))
    masks, _, _ = grabcut.predict(mask_input=logits)
    assert iou(masks[0], scene[1]) >= 0.8


def test_grabcut_errors(scene):
    predictor = GrabCutPredictor()
    with pytest.raises(ValueError, match="set_image"):
        predictor.predict(box=np.array([0.0, 0.0, 10.0, 10.0]))
    with pytest.raises(RuntimeError):  # what code written for SamPredictor catches
        predictor.predict(box=np.array([0.0, 0.0, 10.0, 10.0]))
    with pytest.raises(ValueError, match="uint8"):
        predictor.set_image(scene[0].astype(np.float32))
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        predictor.set_image(scene[0][..., 0])
    predictor.set_image(scene[0])
    assert predictor.is_image_set
    h, w = scene[1].shape
    bad = [
        (dict(), "needs a box"),
        (dict(point_coords=np.array([[5.0, 5.0]]), point_labels=np.array([0])), "needs a box"),
        (dict(point_coords=np.array([[w + 1.0, 5.0]]), point_labels=np.array([1])), "outside"),
        (dict(point_coords=np.array([[5.0, -1.0]]), point_labels=np.array([1])), "outside"),
        (dict(box=np.array([10.0, 10.0, w + 5.0, 50.0])), "box"),
        (dict(box=np.array([50.0, 10.0, 20.0, 50.0])), "box"),
        (dict(point_coords=np.array([5.0, 5.0]), point_labels=np.array([1])), r"\(K, 2\)"),
        (dict(point_coords=np.array([[5.0, 5.0]]), point_labels=np.array([1, 0])), "point_labels"),
        (dict(point_coords=np.array([[5.0, 5.0]]), point_labels=np.array([2])), "point_labels"),
        (dict(point_coords=np.array([[5.0, 5.0]])), "together"),
    ]
    for prompt, message in bad:
        with pytest.raises(ValueError, match=message):
            predictor.predict(**prompt)
    predictor.reset_image()
    assert not predictor.is_image_set


def test_grabcut_box_covering_whole_image(scene):
    # GrabCut needs background samples; the predictor must not crash without any.
    predictor = GrabCutPredictor()
    predictor.set_image(scene[0])
    h, w = scene[1].shape
    masks, _, _ = predictor.predict(box=np.array([0.0, 0.0, w, h]))
    assert masks.shape == (1, h, w)


# ---------------------------------------------------------------------------- load_sam

@pytest.fixture
def tiny_registry(monkeypatch):
    """Point every registry entry at the tiny SAM builder (no 90M-parameter builds)."""
    for name in ("default", "vit_h", "vit_l", "vit_b"):
        monkeypatch.setitem(backends.sam_model_registry, name, lambda: tiny_sam(seed=1))


@pytest.fixture(scope="module")
def tiny_state():
    return tiny_sam(seed=7).state_dict()


def _same_weights(model, state):
    return all(torch.equal(v.cpu(), state[k]) for k, v in model.state_dict().items())


def test_load_sam_explicit_type_and_file_name(tmp_path, tiny_registry, tiny_state):
    custom = tmp_path / "my_weights.pth"
    torch.save(tiny_state, custom)
    sam = load_sam(custom, model_type="vit_b", device="cpu")
    assert _same_weights(sam, tiny_state) and not sam.training
    assert sam.device == torch.device("cpu")
    # No model_type: the tiny weights' width (32) is no official one, the name decides.
    official = tmp_path / "sam_vit_b_01ec64.pth"
    torch.save(tiny_state, official)
    assert _same_weights(load_sam(official), tiny_state)
    with pytest.raises(ValueError, match="cannot tell the model type"):
        load_sam(custom)


def test_model_type_inferred_from_weight_shapes(tmp_path, monkeypatch):
    for width, name in ((768, "vit_b"), (1024, "vit_l"), (1280, "vit_h")):
        fake = {"image_encoder.patch_embed.proj.weight": torch.zeros(width, 3, 16, 16)}
        assert backends.model_type_from_state_dict(fake) == name
    assert backends.model_type_from_state_dict({"x": torch.zeros(1)}) is None
    assert backends.model_type_from_name("sam_vit_l_0b3195.pth") == "vit_l"
    assert backends.model_type_from_name("weights.pth") is None

    # End to end: a file with ViT-L shaped weights under a neutral name loads as vit_l,
    # even when the name claims another type (the weights are tried first).
    class FakeL(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.image_encoder = torch.nn.Module()
            self.image_encoder.patch_embed = torch.nn.Module()
            self.image_encoder.patch_embed.proj = torch.nn.Conv2d(3, 1024, 1)

    built = []
    for name in ("vit_l", "vit_h"):
        monkeypatch.setitem(backends.sam_model_registry, name,
                            lambda name=name: built.append(name) or FakeL())
    for name in ("weights.pth", "sam_vit_h_4b8939.pth"):
        path = tmp_path / name
        torch.save(FakeL().state_dict(), path)
        built.clear()
        assert isinstance(load_sam(path, device="cpu"), FakeL)
        assert built == ["vit_l"]


def test_load_sam_mismatch_corrupt_missing(tmp_path, monkeypatch, tiny_state):
    monkeypatch.setitem(backends.sam_model_registry, "vit_b", lambda: tiny_sam(embed_dim=48))
    path = tmp_path / "sam_vit_b_01ec64.pth"
    torch.save(tiny_state, path)
    with pytest.raises(ValueError, match="vit_b"):
        load_sam(path)

    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"this is not a checkpoint" * 10)
    with pytest.raises(ValueError, match="cannot read"):
        load_sam(garbage, model_type="vit_b")
    truncated = tmp_path / "sam_vit_b_truncated.pth"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match="cannot read"):
        load_sam(truncated)

    with pytest.raises(FileNotFoundError, match="checkpoints/") as err:
        load_sam(tmp_path / "sam_vit_h_4b8939.pth")
    assert "github.com/facebookresearch/segment-anything" in str(err.value)
    with pytest.raises(ValueError, match="unknown model_type"):
        load_sam(path, model_type="vit_xl")


def test_find_checkpoint(tmp_path):
    assert find_checkpoint(tmp_path) is None
    assert find_checkpoint(tmp_path / "missing") is None
    (tmp_path / "notes.txt").write_text("x")
    assert find_checkpoint(tmp_path) is None
    (tmp_path / "zzz.pth").write_bytes(b"")
    assert find_checkpoint(tmp_path) == tmp_path / "zzz.pth"
    (tmp_path / "sam_vit_b_01ec64.pth").write_bytes(b"")
    assert find_checkpoint(str(tmp_path)) == tmp_path / "sam_vit_b_01ec64.pth"
    (tmp_path / "sam_vit_h_4b8939.pth").write_bytes(b"")
    assert find_checkpoint(tmp_path) == tmp_path / "sam_vit_h_4b8939.pth"


def test_signed_distance_logits():
    mask = np.zeros((20, 30), bool)
    mask[5:15, 10:20] = True
    sd = backends.signed_distance(mask)
    np.testing.assert_array_equal(sd > 0, mask)
    assert sd[10, 15] > sd[5, 15] == 0.5 and sd[4, 15] == -0.5
    assert (backends.signed_distance(np.zeros((4, 4), bool)) < 0).all()
    assert (backends.signed_distance(np.ones((4, 4), bool)) > 0).all()


def test_grabcut_accepts_seeds_beyond_32_bits(scene):
    predictor = GrabCutPredictor(seed=2**40 + 5)
    predictor.set_image(scene[0])
    masks, _, _ = predictor.predict(box=np.array([50.0, 40.0, 180.0, 130.0]))
    assert masks.shape == (1,) + scene[0].shape[:2] and masks.any()
