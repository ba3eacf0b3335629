"""load_sam and find_checkpoint."""

import pytest
import torch

from sam_convex import loading
from sam_convex.loading import find_checkpoint, load_sam

from tiny_sam import tiny_sam


@pytest.fixture
def tiny_registry(monkeypatch):
    """Point every registry entry at the tiny SAM builder (no 90M-parameter builds)."""
    for name in ("default", "vit_h", "vit_l", "vit_b"):
        monkeypatch.setitem(loading.sam_model_registry, name, lambda: tiny_sam(seed=1))


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
        assert loading.model_type_from_state_dict(fake) == name
    assert loading.model_type_from_state_dict({"x": torch.zeros(1)}) is None
    assert loading.model_type_from_name("sam_vit_l_0b3195.pth") == "vit_l"
    assert loading.model_type_from_name("weights.pth") is None

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
        monkeypatch.setitem(loading.sam_model_registry, name, lambda name=name: built.append(name) or FakeL())
    for name in ("weights.pth", "sam_vit_h_4b8939.pth"):
        path = tmp_path / name
        torch.save(FakeL().state_dict(), path)
        built.clear()
        assert isinstance(load_sam(path, device="cpu"), FakeL)
        assert built == ["vit_l"]


def test_load_sam_mismatch_corrupt_missing(tmp_path, monkeypatch, tiny_state):
    monkeypatch.setitem(loading.sam_model_registry, "vit_b", lambda: tiny_sam(embed_dim=48))
    path = tmp_path / "sam_vit_b_01ec64.pth"
    torch.save(tiny_state, path)
    with pytest.raises(ValueError, match=r"vit_b: 18 shape mismatches \(image_encoder\.pos_embed"):
        load_sam(path)
    partial = dict(list(tiny_sam(embed_dim=48).state_dict().items())[5:])
    partial["extra.weight"] = torch.zeros(1)
    torch.save(partial, path)
    with pytest.raises(ValueError, match=r"5 missing keys \(image_encoder\..*1 unexpected keys \(extra\.weight\)"):
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


@pytest.mark.parametrize("device", ["cuda:7", "nonsense", "meta"])
def test_load_sam_checks_the_device_before_reading(tmp_path, device):
    if device.startswith("cuda") and torch.cuda.device_count() > 7:
        pytest.skip("this machine has that device")
    with pytest.raises(ValueError, match="device"):
        load_sam(tmp_path / "missing.pth", device=device)  # the device is refused first


def test_load_sam_names_what_is_wrong_with_the_file(tmp_path):
    with pytest.raises(ValueError, match="path of a checkpoint"):
        load_sam(None)
    path = tmp_path / "sam_vit_b_01ec64.pth"
    torch.save({"image_encoder.trunk.blocks.0.attn.qkv.weight": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match=r"SAM 2 weights.*load_sam2"):
        load_sam(path)
