"""eval.datasets (convexitydb / folder loaders, errors) and eval.scenes (embedded benchmark)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage.morphology import convex_hull_image

from eval import scenes
from eval.datasets import load_dataset
from eval.scenes import ensure_scenes, make_scene

H, W = 40, 48


def write_convexitydb(root: Path, n: int = 2, levels=(0, 128, 255), rgba: bool = False, seed: int = 0) -> list[dict]:
    """Fixture in the authors' layout; returns what each file encodes."""
    rng = np.random.default_rng(seed)
    for sub in ("img", "ground_truth", "user_scribbles"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    truth = []
    for i in range(1, n + 1):
        image = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
        gt_grey = np.zeros((H, W), np.uint8)
        gt_grey[10:25, 12:30] = 255
        gt_grey[0:3, 0:3] = 100  # neither 0 nor 255: background per the authors' loaders
        labels = np.zeros((H, W), np.uint8)
        labels[15:18, 15:25] = 2
        labels[35:38, 5:40] = 1
        if rgba:
            alpha = rng.integers(0, 256, (H, W, 1), dtype=np.uint8)
            Image.fromarray(np.concatenate([image, alpha], 2), "RGBA").save(root / "img" / f"img_{i}.png")
        else:
            Image.fromarray(image).save(root / "img" / f"img_{i}.png")
        Image.fromarray(gt_grey).save(root / "ground_truth" / f"GT_{i}.png")
        Image.fromarray(np.asarray(levels, np.uint8)[labels]).save(root / "user_scribbles" / f"scribbleMask_{i}.png")
        truth.append({"image": image, "gt": gt_grey == 255, "scribbles": labels})
    return truth


@pytest.mark.parametrize("rgba", [False, True])
def test_convexitydb_round_trip(tmp_path, rgba):
    truth = write_convexitydb(tmp_path, n=3, levels=(7, 90, 201), rgba=rgba)
    samples = load_dataset("convexitydb", tmp_path)
    assert [s.name for s in samples] == ["img_1", "img_2", "img_3"]
    for s, t in zip(samples, truth):
        assert s.image.dtype == np.uint8 and s.image.shape == (H, W, 3)
        np.testing.assert_array_equal(s.image, t["image"])
        assert s.gt.dtype == bool
        np.testing.assert_array_equal(s.gt, t["gt"])
        np.testing.assert_array_equal(s.scribbles, t["scribbles"])
    assert len(load_dataset("convexitydb", tmp_path, limit=2)) == 2


def test_indices_sort_numerically(tmp_path):
    write_convexitydb(tmp_path, n=11)
    names = [s.name for s in load_dataset("convexitydb", tmp_path)]
    assert names[:3] == ["img_1", "img_2", "img_3"] and names[-1] == "img_11"


def test_missing_directory_lists_layout(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"GT_<i>\.png") as err:
        load_dataset("convexitydb", tmp_path / "nowhere")
    assert "scribbleMask_<i>.png" in str(err.value)
    with pytest.raises(FileNotFoundError, match="--data ROOT"):
        load_dataset("convexitydb", None)


def test_missing_partner_file_is_named(tmp_path):
    write_convexitydb(tmp_path, n=2)
    (tmp_path / "ground_truth" / "GT_2.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"GT_2\.png"):
        load_dataset("convexitydb", tmp_path)


def test_size_mismatch_names_file(tmp_path):
    write_convexitydb(tmp_path, n=2)
    Image.fromarray(np.zeros((H + 1, W), np.uint8)).save(tmp_path / "ground_truth" / "GT_2.png")
    with pytest.raises(ValueError, match=r"GT_2\.png"):
        load_dataset("convexitydb", tmp_path)


def test_too_many_scribble_levels(tmp_path):
    write_convexitydb(tmp_path, n=1)
    grey = np.arange(H * W, dtype=np.uint32).reshape(H, W) % 7 * 30
    Image.fromarray(grey.astype(np.uint8)).save(tmp_path / "user_scribbles" / "scribbleMask_1.png")
    with pytest.raises(ValueError, match=r"scribbleMask_1\.png"):
        load_dataset("convexitydb", tmp_path)


def test_unknown_dataset_and_bad_limit(tmp_path):
    with pytest.raises(ValueError, match="scenes, convexitydb, folder"):
        load_dataset("coco", tmp_path)
    with pytest.raises(ValueError, match="limit"):
        load_dataset("convexitydb", tmp_path, limit=0)


def test_folder_dataset(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    image = np.full((H, W, 3), 7, np.uint8)
    mask = np.zeros((H, W), np.uint8)
    mask[5:9, 5:9] = 1  # any non-zero value is the object
    Image.fromarray(image).save(tmp_path / "images" / "b.png")
    Image.fromarray(mask).save(tmp_path / "masks" / "b.png")
    Image.fromarray(image).save(tmp_path / "images" / "a.jpg")
    with pytest.raises(FileNotFoundError, match=r"masks.a"):
        load_dataset("folder", tmp_path)
    Image.fromarray(mask).save(tmp_path / "masks" / "a.png")
    samples = load_dataset("folder", tmp_path)
    assert [s.name for s in samples] == ["a", "b"]
    assert samples[1].gt.sum() == 16 and samples[1].scribbles is None


def test_scenes_deterministic_and_convex(tmp_path):
    size = (64, 80)
    a = ensure_scenes(tmp_path / "a", seed=3, n=4, size=size)
    b = ensure_scenes(tmp_path / "b", seed=3, n=4, size=size)
    c = ensure_scenes(tmp_path / "c", seed=4, n=4, size=size)
    files = sorted(p.relative_to(a) for p in a.rglob("*.png"))
    assert len(files) == 12
    for rel in files:
        np.testing.assert_array_equal(np.asarray(Image.open(a / rel)), np.asarray(Image.open(b / rel)))
    assert any(not np.array_equal(np.asarray(Image.open(a / r)), np.asarray(Image.open(c / r))) for r in files)
    samples = load_dataset("scenes", a)  # reads the cached copy with the convexitydb loader
    assert len(samples) == 4
    for s in samples:
        assert s.image.shape == (*size, 3) and s.gt.any()
        np.testing.assert_array_equal(convex_hull_image(s.gt, offset_coordinates=False), s.gt)
        assert (s.scribbles == 2).any() and (s.scribbles == 1).any()
        assert s.gt[s.scribbles == 2].all() and not s.gt[s.scribbles == 1].any()


def test_scene_variety_at_full_size():
    """The default size: GT convex, an occluder scene and a distractor scene appear."""
    kinds = []
    for i in range(4):
        image, gt, _scribbles, info = make_scene(0, i)
        assert image.shape == (300, 400, 3) and image.dtype == np.uint8
        np.testing.assert_array_equal(convex_hull_image(gt, offset_coordinates=False), gt)
        kinds.append((info["occluders"] > 0, info["distractors"] > 0))
    assert (True, False) in kinds and (False, False) in kinds
    assert any(d for _, d in kinds)


def test_incomplete_scene_dir_is_not_overwritten(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "mine.txt").write_text("keep")
    with pytest.raises(FileExistsError):
        ensure_scenes(tmp_path / "x", n=1, size=(64, 80))
    assert (tmp_path / "x" / "mine.txt").read_text() == "keep"


def test_a_damaged_generated_benchmark_is_generated_again(tmp_path, monkeypatch):
    """The embedded scenes are a cache: a missing or broken file is reported and the
    benchmark regenerated, giving the same samples."""
    monkeypatch.setattr(scenes, "default_cache_dir", lambda: tmp_path)
    monkeypatch.setattr(scenes.ensure_scenes, "__defaults__", (None, 0, 3, (64, 80)))  # a small benchmark
    first = load_dataset("scenes")
    root = scenes.default_scenes_dir(0, (64, 80))
    (root / "img" / "img_0.png").unlink()
    with pytest.warns(UserWarning, match="damaged.*generating it again"):
        again = load_dataset("scenes")
    assert [s.name for s in again] == [s.name for s in first]
    assert all(np.array_equal(a.image, b.image) for a, b in zip(again, first))
    (root / "img" / "img_1.png").write_bytes(b"not a png")
    with pytest.warns(UserWarning, match="img_1.png"):
        assert len(load_dataset("scenes")) == 3


def write_kvasir(root: Path, n: int = 10) -> dict[str, np.ndarray]:
    """Kvasir-SEG's official layout: images/<name>.jpg, masks/<name>.jpg (JPEG masks)."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    truth = {}
    for i in range(n):
        name = f"cju{i:03d}x"
        gt = np.zeros((H, W), bool)
        gt[5 + i % 5 : 30, 8:40] = True
        Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8)).save(root / "images" / f"{name}.jpg")
        Image.fromarray(gt.astype(np.uint8) * 255).save(root / "masks" / f"{name}.jpg", quality=75)
        truth[name] = gt
    return truth


def write_cvc(root: Path, n: int = 6) -> dict[str, np.ndarray]:
    """CVC-ClinicDB's official layout: Original/<i>.tif, 'Ground Truth'/<i>.tif."""
    import tifffile

    (root / "Original").mkdir(parents=True)
    (root / "Ground Truth").mkdir()
    truth = {}
    for i in range(1, n + 1):
        gt = np.zeros((H, W), bool)
        gt[10 : 20 + i, 10:30] = True
        tifffile.imwrite(root / "Original" / f"{i}.tif", np.full((H, W, 3), 40 * i, np.uint8))
        tifffile.imwrite(root / "Ground Truth" / f"{i}.tif", gt.astype(np.uint8) * 255)
        truth[str(i)] = gt
    return truth


def test_kvasir_split_is_fixed_disjoint_and_complete(tmp_path):
    truth = write_kvasir(tmp_path)
    with pytest.warns(UserWarning, match="grey levels"):
        splits = {sp: load_dataset("kvasir-seg", tmp_path, split=sp) for sp in ("train", "val", "test")}
    names = {sp: [s.name for s in samples] for sp, samples in splits.items()}
    assert [len(names[sp]) for sp in ("train", "val", "test")] == [8, 1, 1]
    assert sorted(n for split in names.values() for n in split) == sorted(truth)
    assert [s.name for s in load_dataset("kvasir-seg", tmp_path)] == names["test"]  # test by default
    for s in splits["train"]:
        np.testing.assert_array_equal(s.gt, truth[s.name])  # JPEG noise is not object


def test_cvc_is_a_test_set_only(tmp_path):
    truth = write_cvc(tmp_path)
    samples = load_dataset("cvc-clinicdb", tmp_path)
    assert sorted(s.name for s in samples) == sorted(truth)
    for s in samples:
        assert s.image.shape == (H, W, 3)
        np.testing.assert_array_equal(s.gt, truth[s.name])
    with pytest.raises(ValueError, match="cross-dataset test set"):
        load_dataset("cvc-clinicdb", tmp_path, split="train")
    with pytest.raises(ValueError, match="no splits"):
        load_dataset("folder", tmp_path, split="test")


@pytest.mark.parametrize(
    "dataset, page", [("kvasir-seg", "datasets.simula.no/kvasir-seg"), ("cvc-clinicdb", "CVCClinicDB")]
)
def test_wrong_path_names_layout_and_download_page(tmp_path, dataset, page):
    with pytest.raises(FileNotFoundError, match=page):
        load_dataset(dataset, tmp_path / "nowhere")


def test_corruptions_command_wrong_path_one_line(tmp_path, capsys):
    from eval.corruptions.__main__ import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--dataset", "kvasir-seg", "--data", str(tmp_path), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and "\n" not in err and "datasets.simula.no/kvasir-seg" in err


def test_max_side_downscales_image_and_mask_alike(tmp_path):
    write_cvc(tmp_path, n=2)
    (full,) = load_dataset("cvc-clinicdb", tmp_path, limit=1)
    (small,) = load_dataset("cvc-clinicdb", tmp_path, limit=1, max_side=32)
    assert small.image.shape == (27, 32, 3) and small.gt.shape == (27, 32)  # 40x48 -> 26.7x32
    assert abs(small.gt.mean() - full.gt.mean()) < 0.02


def test_convexitydb_ground_truth_encodings_and_empty_warning(tmp_path):
    """{0, 1}, alpha-only and red-drawn masks read as their object; an empty one is said."""
    from sam_convex.images import EmptyMaskWarning

    truth = write_convexitydb(tmp_path, n=4)
    gt = truth[0]["gt"]
    Image.fromarray(gt.astype(np.uint8)).save(tmp_path / "ground_truth" / "GT_1.png")
    rgba = np.zeros((H, W, 4), np.uint8)
    rgba[..., 3] = gt * 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "ground_truth" / "GT_2.png")
    red = np.zeros((H, W, 3), np.uint8)
    red[gt, 0] = 255
    Image.fromarray(red).save(tmp_path / "ground_truth" / "GT_3.png")
    Image.fromarray(np.zeros((H, W), np.uint8)).save(tmp_path / "ground_truth" / "GT_4.png")
    with pytest.warns(EmptyMaskWarning, match=r"GT_4\.png"):
        samples = load_dataset("convexitydb", tmp_path)
    for s in samples[:3]:
        np.testing.assert_array_equal(s.gt, gt)
    assert not samples[3].gt.any()
