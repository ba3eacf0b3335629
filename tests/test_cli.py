"""`python -m sam_convex`: end to end with GrabCut, SAM via a tiny checkpoint, errors."""

import json
import os
import re
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from segment_anything.utils.amg import rle_to_mask

from sam_convex import loading
from sam_convex.__main__ import main
from sam_convex.measures import hull_gap, iou
from sam_convex.outlines import rasterize
from sam_convex.synthetic import textured_scene

from tiny_sam import tiny_sam
from tiny_sam2 import tiny_sam2


@pytest.fixture(scope="module")
def scene_file(tmp_path_factory):
    image, gt = textured_scene()
    path = tmp_path_factory.mktemp("cli") / "scene.png"
    cv2.imwrite(str(path), image[..., ::-1])  # file is BGR on disk, as cv2 writes it
    return path, gt


def test_cli_grabcut_end_to_end(scene_file, tmp_path):
    path, gt = scene_file
    out, over = tmp_path / "mask.png", tmp_path / "sub" / "overlay.png"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sam_convex",
            str(path),
            "--point",
            "115",
            "85",
            "--neg-point",
            "10",
            "10",
            "--model",
            "grabcut",
            "--out",
            str(out),
            "--overlay",
            str(over),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},  # tiny fit: threads only contend
    )
    assert result.returncode == 0, result.stderr
    assert "GrabCut" in result.stdout and "not SAM" in result.stdout
    mask = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert mask.shape == gt.shape and set(np.unique(mask)) <= {0, 255}
    assert iou(mask > 0, gt) >= 0.8 and hull_gap(mask > 0) <= 5
    drawn = cv2.imread(str(over))
    assert drawn.shape == gt.shape + (3,)
    green = (drawn[..., 1] == 255) & (drawn[..., 0] == 0) & (drawn[..., 2] == 0)
    red = (drawn[..., 2] == 255) & (drawn[..., 0] == 0) & (drawn[..., 1] == 0)
    counts = re.search(r"raw mask: (\d+) px, convex mask: (\d+) px", result.stdout)
    raw_px, convex_px = int(counts[1]), int(counts[2])
    # The raw contour is drawn in red under the convex one: hidden where they coincide
    # (GrabCut's mask of this convex scene may already be convex, then it is its own projection).
    assert green.sum() > 100 and (red.sum() > 0 or raw_px == convex_px)


@pytest.mark.parametrize(
    "image,argv,message",
    [
        (None, ["--model", "grabcut"], "give a prompt"),
        ("{tmp}/nope.png", ["--point", "5", "5", "--model", "grabcut"], "cannot read image"),
        (None, ["--neg-point", "5", "5", "--model", "grabcut"], "negative points alone"),
        (None, ["--point", "500", "5", "--model", "grabcut"], "outside"),
        (None, ["--box", "10", "10", "900", "50", "--model", "grabcut"], "box"),
        (None, ["--point", "5", "5", "--model", "sam", "--checkpoint-dir", "{tmp}/empty"], "needs a SAM checkpoint"),
        (None, ["--point", "5", "5", "--checkpoint", "{tmp}/missing.pth"], "checkpoints/"),
    ],
)
def test_cli_errors(scene_file, tmp_path, capsys, image, argv, message):
    """Exit code 2 with a message (argparse's error path), never a traceback."""
    image = str(scene_file[0]) if image is None else image.replace("{tmp}", str(tmp_path))
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    with pytest.raises(SystemExit) as exit_:
        main([image, *argv, "--out", str(tmp_path / "m.png")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "m.png").exists()


def test_cli_finds_checkpoint_or_falls_back(scene_file, tmp_path, monkeypatch, capsys):
    path, _ = scene_file
    empty = tmp_path / "empty"
    empty.mkdir()
    args = [str(path), "--box", "50", "40", "180", "130", "--projector", "polygon"]
    assert main(args + ["--checkpoint-dir", str(empty), "--out", str(tmp_path / "g.png")]) == 0
    assert "GrabCut" in capsys.readouterr().out

    # A (tiny) SAM checkpoint under an official name in the directory is picked up.
    monkeypatch.setitem(loading.sam_model_registry, "vit_b", lambda: tiny_sam(seed=2))
    full = tmp_path / "ckpts"
    full.mkdir()
    torch.save(tiny_sam(seed=3).state_dict(), full / "sam_vit_b_01ec64.pth")
    out = tmp_path / "s.png"
    assert main(args + ["--checkpoint-dir", str(full), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "SAM" in printed and "sam_vit_b_01ec64.pth" in printed and "GrabCut" not in printed
    mask = cv2.imread(str(out), cv2.IMREAD_UNCHANGED) > 0
    assert hull_gap(mask) <= 5


def test_cli_sam2_from_a_checkpoint(scene_file, tmp_path, monkeypatch, capsys):
    """--model sam2 --checkpoint: load_sam2 (config from the official file name), then
    Sam2ConvexPredictor; the tiny random SAM 2 stands in for the official build."""
    monkeypatch.setattr("sam2.build_sam.build_sam2", lambda config, **kw: tiny_sam2(seed=1))
    path, _ = scene_file
    checkpoint = tmp_path / "sam2.1_hiera_tiny.pt"
    torch.save({"model": tiny_sam2(seed=4).state_dict()}, checkpoint)
    out, over = tmp_path / "m.png", tmp_path / "o.jpg"
    args = [str(path), "--box", "50", "40", "180", "130", "--model", "sam2", "--checkpoint", str(checkpoint)]
    assert main([*args, "--out", str(out), "--overlay", str(over)]) == 0
    printed = capsys.readouterr().out
    assert "SAM 2 from" in printed and "sam2.1_hiera_tiny.pt" in printed
    mask = cv2.imread(str(out), cv2.IMREAD_UNCHANGED) > 0
    assert mask.any() and hull_gap(mask) <= 5
    with pytest.raises(SystemExit) as stop:
        main([*args[:-4], "--model", "sam2", "--out", str(out)])  # no checkpoint
    assert stop.value.code == 2 and "needs --checkpoint" in capsys.readouterr().err


def test_cli_auto_writes_records_and_overlay(scene_file, tmp_path, monkeypatch, capsys):
    """--auto: the convex automatic mask generator on a tiny SAM; records as JSON."""
    monkeypatch.setitem(loading.sam_model_registry, "vit_b", lambda: tiny_sam(seed=2))
    checkpoint = tmp_path / "sam_vit_b_01ec64.pth"
    torch.save(tiny_sam(seed=3).state_dict(), checkpoint)
    path, _ = scene_file
    out, over = tmp_path / "records.json", tmp_path / "all.png"
    argv = [str(path), "--auto", "--checkpoint", str(checkpoint), "--min-solidity", "0"]
    assert main([*argv, "--out", str(out), "--overlay", str(over)]) == 0
    records = json.loads(out.read_text())
    assert isinstance(records, list) and "masks" in capsys.readouterr().out
    for record in records:
        assert {"segmentation", "area", "bbox", "predicted_iou", "solidity", "convex_distance"} <= set(record)
        assert set(record["segmentation"]) == {"size", "counts"}
    assert cv2.imread(str(over)).shape[:2] == cv2.imread(str(path)).shape[:2]
    with pytest.raises(SystemExit) as stop:
        main([str(path), "--auto", "--model", "grabcut", "--out", str(out)])
    assert stop.value.code == 2 and "SAM or SAM 2" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:
        main([*argv, "--out", str(tmp_path / "m.png")])
    assert stop.value.code == 2 and ".json" in capsys.readouterr().err


def test_cli_writes_polygons_in_every_format(scene_file, tmp_path, capsys):
    """--format (or the --out suffix) writes the convex mask's polygon; it rasterises
    back to the mask the PNG output holds, bit for bit."""
    path, _ = scene_file
    argv = [str(path), "--point", "115", "85", "--model", "grabcut", "--label", "lesion"]
    assert main([*argv, "--out", str(tmp_path / "m.png")]) == 0
    mask = cv2.imread(str(tmp_path / "m.png"), cv2.IMREAD_UNCHANGED) > 0
    h, w = mask.shape
    runs = {"coco": "c.json", "yolo": "y.txt", "labelme": "sub/l.json", "labelstudio": "s.json"}
    for fmt, name in runs.items():
        extra = [] if fmt in ("coco", "yolo") else ["--format", fmt]  # coco, yolo: from the suffix
        assert main([*argv, "--out", str(tmp_path / name), *extra]) == 0
        assert f"({fmt}, 1 polygon" in capsys.readouterr().out
    coco = json.loads((tmp_path / "c.json").read_text())
    assert coco["images"] == [{"id": 1, "file_name": path.name, "height": h, "width": w}]
    assert coco["categories"][0]["name"] == "lesion"
    yolo = (tmp_path / "y.txt").read_text().split()
    labelme = json.loads((tmp_path / "sub" / "l.json").read_text())
    assert (
        labelme["imagePath"] == os.path.relpath(path.resolve(), (tmp_path / "sub").resolve())
        and labelme["shapes"][0]["label"] == "lesion"
    )
    (task,) = json.loads((tmp_path / "s.json").read_text())
    (region,) = task["predictions"][0]["result"]
    assert task["data"]["image"] == str(path) and region["value"]["polygonlabels"] == ["lesion"]
    polygons = [
        np.reshape(coco["annotations"][0]["segmentation"][0], (-1, 2)),
        np.reshape(np.array(yolo[1:], float), (-1, 2)) * [w, h],
        np.array(labelme["shapes"][0]["points"]),
        np.array(region["value"]["points"]) / 100 * [w, h],
    ]
    assert yolo[0] == "0"
    for poly in polygons:
        np.testing.assert_array_equal(rasterize([poly], h, w)[0], mask)


def test_cli_auto_writes_one_polygon_per_projected_record(scene_file, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(loading.sam_model_registry, "vit_b", lambda: tiny_sam(seed=2))
    checkpoint = tmp_path / "sam_vit_b_01ec64.pth"
    torch.save(tiny_sam(seed=3).state_dict(), checkpoint)
    path, _ = scene_file
    argv = [str(path), "--auto", "--checkpoint", str(checkpoint), "--min-solidity", "0"]
    assert main([*argv, "--out", str(tmp_path / "r.json")]) == 0
    records = json.loads((tmp_path / "r.json").read_text())
    projected = [r for r in records if r["convex_distance"] is not None]
    assert (
        main([*argv, "--out", str(tmp_path / "c.json"), "--format", "coco", "--overlay", str(tmp_path / "o.png")]) == 0
    )
    anns = json.loads((tmp_path / "c.json").read_text())["annotations"]
    assert len(anns) == len(projected)
    for ann, record in zip(anns, projected):
        poly = np.reshape(ann["segmentation"][0], (-1, 2))
        mask = rle_to_mask(record["segmentation"])
        np.testing.assert_array_equal(rasterize([poly], *mask.shape)[0], mask)
        assert ann["area"] == record["area"]


@pytest.mark.parametrize(
    ("out", "extra", "message"),
    [
        ("p.json", ["--format", "yolo"], "writes a .txt"),
        ("p.txt", ["--format", "labelme"], "writes a .json"),
        ("p.png", ["--format", "coco"], "writes a .json"),
        ("p.json", ["--format", "pascal"], "invalid choice"),
    ],
)
def test_cli_polygon_format_errors(scene_file, tmp_path, capsys, out, extra, message):
    with pytest.raises(SystemExit) as stop:
        main([str(scene_file[0]), "--point", "5", "5", "--model", "grabcut", "--out", str(tmp_path / out), *extra])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / out).exists()
