"""`python -m sam_convex`: end to end with GrabCut, SAM via a tiny checkpoint, errors."""

import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from eval.metrics import iou
from sam_convex import loading
from sam_convex.__main__ import main

from shapes import hull_gap, textured_scene
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
    assert green.sum() > 100 and red.sum() > 0


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
