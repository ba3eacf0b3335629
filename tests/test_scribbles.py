"""Scribble experiment: predictors, semantic features, and the command end to end."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from eval.metrics import iou
from eval.scribbles.__main__ import main
from eval.scribbles.features import EMBEDMAP, STANDIN, load_embedmap, pca_reduce, semantic_features, standin_features
from eval.scribbles.harness import downsample_scribbles, stack_inputs
from eval.scribbles.nets import TrainConfig, initial_shape, make_predictor, scribble_bce, train_pair


def generated_scene(h: int = 48, w: int = 64, seed: int = 0):
    """Noisy red ellipse on a noisy blue background with clear scribbles.

    Returns (image (h, w, 3) uint8, gt (h, w) bool, scribbles (h, w) uint8 0/1/2).
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    gt = ((yy - 0.5 * h) / (0.3 * h)) ** 2 + ((xx - 0.45 * w) / (0.3 * w)) ** 2 < 1
    image = np.where(gt[..., None], [200, 80, 60], [60, 120, 180]) + rng.normal(0, 35, (h, w, 3))
    image = np.clip(image, 0, 255).astype(np.uint8)
    scribbles = np.zeros((h, w), np.uint8)
    scribbles[h // 2 - 1 : h // 2 + 1, int(0.3 * w) : int(0.6 * w)] = 2
    scribbles[2:4, 2:-2] = 1
    scribbles[-4:-2, 2:-2] = 1
    scribbles[4:-4, -4:-2] = 1
    return image, gt, scribbles


def inputs(image):
    rgb = image.transpose(2, 0, 1).astype(np.float32) / 255
    return stack_inputs({"rgb": rgb}, "rgb")


@pytest.mark.parametrize("kind,reach", [("cnn", 4), ("fcn", 0)])
def test_cnn_sees_a_neighbourhood_and_fcn_one_pixel(kind, reach):
    """Four 3x3 layers see 4 pixels in every direction; the FCN is pixel-wise."""
    net = make_predictor(kind, 3)
    x = torch.zeros(1, 3, 15, 17)
    bumped = x.clone()
    bumped[0, :, 7, 8] = 5.0
    with torch.no_grad():
        changed = (net(bumped) != net(x))[0, 0]
    rows, cols = torch.nonzero(changed, as_tuple=True)
    assert changed[7, 8] and net(x).shape == (1, 1, 15, 17)
    assert int((rows - 7).abs().max()) == reach and int((cols - 8).abs().max()) == reach


def test_bce_uses_scribbled_pixels_only():
    labels = torch.zeros(4, 4, dtype=torch.long)
    labels[0, 0], labels[3, 3] = 2, 1
    logits = torch.zeros(4, 4, requires_grad=True)
    scribble_bce(logits, labels).backward()
    assert {tuple(i) for i in torch.nonzero(logits.grad).tolist()} == {(0, 0), (3, 3)}
    with pytest.raises(ValueError, match="no scribbled pixels"):
        scribble_bce(logits, torch.zeros(4, 4, dtype=torch.long))


def test_training_on_scribbles_beats_chance():
    image, gt, scribbles = generated_scene()
    chance = gt.mean()  # IoU of predicting everything as foreground
    cfg = TrainConfig(steps=120, warmup=40)
    for kind in ("cnn", "fcn"):
        pair = train_pair(kind, inputs(image), scribbles, cfg, seed=0)
        for name, mask in (
            ("sequential", pair.seq_logits > 0),
            ("joint", pair.joint_logits > 0),
            ("joint convex", pair.joint_reg.masks[0].numpy()),
        ):
            score = iou(mask, gt)
            assert score >= 0.7 and score > chance + 0.4, (kind, name, score)


def test_joint_start_shape_ignores_false_positives_away_from_scribbles():
    p = torch.zeros(20, 30)
    p[5:15, 3:12] = 0.9  # the object, holding the foreground scribble
    p[2:18, 20:28] = 0.8  # a larger false positive elsewhere
    labels = torch.zeros(20, 30, dtype=torch.long)
    labels[10, 5:9] = 2
    labels[0, :] = 1
    start = initial_shape(p, labels, "component")
    assert start[5:15, 3:12].all() and start.sum() == 90
    assert initial_shape(p, labels, "scribbles").sum() == 4
    assert torch.equal(initial_shape(p, labels.clamp(max=1), "component"), p)  # no fg scribble


def test_thin_scribbles_survive_downsampling():
    s = np.zeros((90, 120), np.uint8)
    s[40, 10:100] = 2  # one pixel wide
    s[5:8, :] = 1
    small = downsample_scribbles(s, 30, 40)
    assert (small == 2).sum() >= 25 and (small == 1).sum() >= 35
    assert not ((small == 2) & (small == 1)).any()


def test_embedmap_fixture_is_read_and_reduced(tmp_path):
    h, w, c = 12, 16, 10
    rng = np.random.default_rng(0)
    # Rank-2 structure (orthonormal loadings u, v) plus noise: the top component
    # must follow the dominant factor a.
    a, b = rng.normal(size=(h, w)), rng.normal(size=(h, w))
    u, v = np.linalg.qr(rng.normal(size=(c, 2)))[0].T
    emb = (a[..., None] * 5 * u + b[..., None] * v + 0.01 * rng.normal(size=(h, w, c))).astype(np.float32)
    torch.save({"embedmap": emb}, tmp_path / "img_3.pt")  # numpy, as the authors' dumps
    torch.save({"embedmap": torch.from_numpy(emb)}, tmp_path / "img_4.pt")
    np.testing.assert_allclose(load_embedmap(tmp_path / "img_3.pt"), emb)
    np.testing.assert_allclose(load_embedmap(tmp_path / "img_4.pt"), emb)

    red = pca_reduce(emb, 3)
    assert red.shape == (h, w, 3)
    assert abs(np.corrcoef(red[..., 0].ravel(), a.ravel())[0, 1]) > 0.99
    image = np.zeros((24, 32, 3), np.uint8)
    feats, source = semantic_features(image, "img_3", 6, 8, tmp_path, k=3)
    assert source == EMBEDMAP and feats.shape == (6, 8, 3) and feats.dtype == np.float32
    # No file for this image: the stand-in, labelled as such.
    feats, source = semantic_features(image, "img_5", 6, 8, tmp_path, k=3)
    assert source == STANDIN and feats.shape == (6, 8, 3)


def test_bad_feature_files_raise(tmp_path):
    torch.save({"other": np.zeros((2, 2, 2))}, tmp_path / "x.pt")
    with pytest.raises(ValueError, match="embedmap"):
        load_embedmap(tmp_path / "x.pt")
    torch.save({"embedmap": np.zeros((4, 4))}, tmp_path / "y.pt")
    with pytest.raises(ValueError, match="H x W x C"):
        load_embedmap(tmp_path / "y.pt")
    with pytest.raises(FileNotFoundError):
        load_embedmap(tmp_path / "missing.pt")
    with pytest.raises(FileNotFoundError, match="not a directory"):
        semantic_features(np.zeros((4, 4, 3), np.uint8), "a", 4, 4, tmp_path / "nope")


def test_standin_is_deterministic_and_informative():
    image, gt, _ = generated_scene()
    f1, f2 = standin_features(image, 4), standin_features(image, 4)
    np.testing.assert_array_equal(f1, f2)
    assert f1.shape == (48, 64, 4) and np.isfinite(f1).all()
    # The first component separates the object from the background.
    assert abs(f1[..., 0][gt].mean() - f1[..., 0][~gt].mean()) > f1[..., 0].std()


def write_folder_dataset(root, n=2):
    for sub in ("images", "masks", "scribbles"):
        (root / sub).mkdir(parents=True)
    for i in range(n):
        image, gt, scribbles = generated_scene(seed=i)
        Image.fromarray(image).save(root / "images" / f"s{i}.png")
        Image.fromarray(gt.astype(np.uint8) * 255).save(root / "masks" / f"s{i}.png")
        grey = np.array([0, 128, 255], np.uint8)[scribbles]
        Image.fromarray(grey).save(root / "scribbles" / f"s{i}.png")


def test_command_end_to_end(tmp_path):
    data, out, feats = tmp_path / "data", tmp_path / "out", tmp_path / "feats"
    write_folder_dataset(data)
    feats.mkdir()
    torch.save({"embedmap": np.random.default_rng(0).normal(size=(12, 16, 6)).astype(np.float32)}, feats / "s1.pt")
    args = [
        "--dataset",
        "folder",
        "--data",
        str(data),
        "--out",
        str(out),
        "--steps",
        "12",
        "--warmup",
        "4",
        "--projector-steps",
        "5",
        "--size",
        "32",
        "--figure-images",
        "1",
        "--features",
        str(feats),
    ]
    assert main(args) == 0
    csv = pd.read_csv(out / "scribbles.csv")
    assert len(csv) == 2 * 2 * 2 * 2  # images x nets x feature sets x modes
    assert set(csv["mode"]) == {"sequential", "joint"}
    assert dict(csv.groupby("image").semantic_source.first()) == {"s0": STANDIN, "s1": EMBEDMAP}
    assert (
        ((csv[["iou_pred", "iou_convex", "iou_proj"]] >= 0) & (csv[["iou_pred", "iou_convex", "iou_proj"]] <= 1))
        .all()
        .all()
    )
    md = (out / "scribbles.md").read_text()
    assert "standin" in md and "0.726 / 0.843" in md and "| joint |" in md
    assert (out / "scribbles.png").stat().st_size > 1000
    # Rerun: every training comes from the cache and the table is identical.
    cached = list((out / ".cache" / "scribbles").glob("*.json"))
    assert len(cached) == 8 and "seq_s" in json.loads(cached[0].read_text())
    assert main(args) == 0
    assert "8 of 8 trainings from cache" in (out / "scribbles.md").read_text()
    timings = ["project_s", "item_s"]  # the projection is rerun and re-timed
    again = pd.read_csv(out / "scribbles.csv")
    pd.testing.assert_frame_equal(csv.drop(columns=timings), again.drop(columns=timings))
