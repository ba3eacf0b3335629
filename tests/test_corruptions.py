"""The eval.corruptions harness end to end (GrabCut, tiny images, a small projector);
the corruptions themselves are tested in test_corrupt.py."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from eval.corruptions import cluster, harness, items
from eval.corruptions.prompts import make_prompt
from eval.datasets import Sample, load_dataset
from eval.scenes import write_scenes
from sam_convex import ConvexProjector
from sam_convex.segmenters import Segmenter, choose_segmenter

from tiny_sam import tiny_sam
from tiny_sam2 import tiny_sam2

# ---------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    write_scenes(root, seed=0, n=2, size=(64, 80))
    return root


def small_run(data, out, **kw):
    kw = {
        "dataset": "convexitydb",
        "data": str(data),
        "model": "grabcut",
        "corruptions": ["spatter", "gaussian_noise"],
        "out": out,
        "projector": ConvexProjector(),
        "progress": False,
        **kw,
    }
    return harness.run(**kw)


def test_end_to_end(data, tmp_path):
    paths = small_run(data, tmp_path / "rep")
    df = pd.read_csv(paths["csv"])
    assert len(df) == 2 * 3 * len(harness.METHODS)
    assert set(df["method"]) == set(harness.METHODS) and (df["severity"] == 5).all()
    assert {"image", "condition", "method", "iou", "seed", "model", "checkpoint"} <= set(df.columns)
    assert set(df["condition"]) == {"clean", "spatter", "gaussian_noise"}
    assert df["iou"].between(0, 1).all() and (df["model"] == "grabcut").all()
    text = paths["markdown"].read_text()
    assert "| Method | Clean | Spatter | Gaussian |" in text
    assert "| proj_S(GrabCut) |" in text and "Δ proj_S − raw" in text
    assert "| *paper: SAM* | 0.728 | 0.563 | 0.625 |" in text
    assert "checkpoint: none" in text and "imagecorruptions 1.1.2" in text
    for key in ("bars", "deltas", "grid"):
        with Image.open(paths[key]) as im:
            assert im.size[0] > 300
    assert json.loads(paths["meta"].read_text())["items"] == 6


def test_resume_after_interrupt_gives_same_table(data, tmp_path):
    reference = pd.read_csv(small_run(data, tmp_path / "ref")["csv"])

    class Stop(Exception):
        pass

    done = []

    def stop_after_two(record):
        done.append(record)
        if len(done) == 2:
            raise Stop

    with pytest.raises(Stop):
        small_run(data, tmp_path / "rep", on_item=stop_after_two)
    resumed = []
    paths = small_run(data, tmp_path / "rep", on_item=resumed.append)
    assert len(resumed) == 6 - 2  # only the missing items were computed
    pd.testing.assert_frame_equal(pd.read_csv(paths["csv"]), reference)
    fresh = []
    small_run(data, tmp_path / "rep", on_item=fresh.append, fresh=True)
    assert len(fresh) == 6


def test_bad_arguments(data, tmp_path):
    """run() refuses bad settings before it computes (the command's table is in test_commands)."""
    with pytest.raises(ValueError, match="1, 2, 3, 4, 5"):
        small_run(data, tmp_path, severity=0)
    with pytest.raises(ValueError, match=r"unknown corruption\(s\) hail; valid: .*spatter"):
        small_run(data, tmp_path, corruptions=["hail"])
    with pytest.raises(FileNotFoundError, match=r"user_scribbles/scribbleMask_<i>\.png"):
        small_run(tmp_path / "none", tmp_path)


class EmptyPredictor:
    """Predicts nothing: logits -5 everywhere."""

    def set_image(self, image, image_format="RGB"):
        self.shape = image.shape[:2]

    def predict(self, *args, **kw):
        logits = np.full((1, *self.shape), -5.0, np.float32)
        return logits, np.zeros(1, np.float32), logits


def test_empty_prediction_and_empty_gt_are_counted():
    model = Segmenter("sam", "Empty", "predicts nothing", "none", EmptyPredictor())
    image = np.full((40, 48, 3), 90, np.uint8)
    gt = np.zeros((40, 48), bool)
    gt[10:20, 10:20] = True
    proj = ConvexProjector()
    prompt = {"point_coords": np.array([[15.0, 15.0]]), "point_labels": np.array([1]), "box": None}
    job = items.Job(0, model, proj, {"a": prompt})
    record, _masks = items.evaluate_item(Sample("a", image, gt, None), "contrast", 5, job)
    assert record["iou"] == dict.fromkeys(harness.METHODS, 0.0)
    empty_gt = Sample("b", image, np.zeros_like(gt), None)
    no_prompt = {"point_coords": None, "point_labels": None, "box": None}
    record, _ = items.evaluate_item(empty_gt, "clean", 5, items.Job(0, model, proj, {"b": no_prompt}))
    assert record["iou"] == dict.fromkeys(harness.METHODS, 1.0)


def test_sam_path_feeds_full_resolution_logits():
    """segment_anything's SamPredictor (a tiny random SAM) behind the harness: the prompt
    dict is accepted and proj_S sees (H, W) logits of the original image size."""
    model = Segmenter("sam", "SAM", "tiny random SAM", "none", tiny_sam())
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (48, 72, 3), dtype=np.uint8)
    gt = np.zeros((48, 72), bool)
    gt[10:30, 20:50] = True
    s = Sample("t", image, gt, None)
    prompt = make_prompt(s, "points+box", 2)
    record, masks = items.evaluate_item(s, "shot_noise", 5, items.Job(0, model, ConvexProjector(), {"t": prompt}))
    assert all(m.shape == gt.shape and m.dtype == bool for m in masks.values())
    assert all(0.0 <= v <= 1.0 for v in record["iou"].values())
    assert record["area"]["raw"] > 0  # logit_scale makes the random SAM confident


def test_every_projector_setting_is_in_the_cache_key(tmp_path):
    """Changing any ConvexProjector setting but `workers` must give a fresh cache directory, or a
    run would silently reuse results computed with other settings."""
    model = Segmenter("grabcut", "GrabCut", "", "none")
    base = ConvexProjector()

    def directory(projector):
        return harness.cache_dir(tmp_path, "scenes", None, model, "points", 3, 0, projector)

    other = {int: 7, float: 0.37}
    for field in dataclasses.fields(ConvexProjector):
        value = getattr(base, field.name)
        if field.name == "device":
            changed = dataclasses.replace(base, device="cpu")
        elif field.name == "fine_steps":
            changed = dataclasses.replace(base, fine_steps=None)
        elif field.name == "threads":
            changed = dataclasses.replace(base, threads=3)
        elif field.name == "workers":  # where the fits run, not what they return (bit for bit): one cache
            assert directory(dataclasses.replace(base, workers=2)) == directory(base)
            continue
        else:
            changed = dataclasses.replace(base, **{field.name: other[type(value)] + value})
        assert directory(changed) != directory(base), field.name


def _damage(path, how):
    if how == "truncated":
        path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "json list":
        path.write_text("[1, 2, 3]")
    elif how == "missing field":
        record = json.loads(path.read_text())
        del record["iou"]
        path.write_text(json.dumps(record))
    elif how == "a directory":
        path.unlink()
        path.mkdir()
    elif how in ("iou not a number", "iou NaN", "a seed missing"):
        record = json.loads(path.read_text())
        if how == "a seed missing":
            del record["seeds"]["raw"]
        else:
            record["iou"]["proj_S"] = "x" if how == "iou not a number" else float("nan")
        path.write_text(json.dumps(record))
    elif how == "wrong npz keys":
        np.savez_compressed(path.with_suffix(""), other=np.zeros(3))
        path.with_suffix("").with_suffix(".npz").replace(path)


@pytest.mark.parametrize(
    "suffix,how",
    [
        (".json", "truncated"),
        (".json", "empty"),
        (".json", "json list"),
        (".json", "missing field"),
        (".npz", "truncated"),
        (".npz", "wrong npz keys"),
    ],
)
def test_damaged_cache_entries_are_recomputed(data, tmp_path, suffix, how):
    reference = small_run(data, tmp_path / "rep")["csv"].read_bytes()
    cache = next((tmp_path / "rep" / ".cache").glob("corruptions/*"))
    victim = sorted(cache.glob(f"img_0__*{suffix}"))[0]
    _damage(victim, how)
    recomputed = []
    with pytest.warns(UserWarning, match=f"{victim.name}.*recomputing"):
        paths = small_run(data, tmp_path / "rep", on_item=recomputed.append)
    assert len(recomputed) == 1
    assert paths["csv"].read_bytes() == reference


def test_sam2_end_to_end(data, tmp_path):
    """The harness behind Sam2ConvexPredictor: a tiny random SAM 2 through the whole run."""
    segmenter = Segmenter("sam2", "SAM 2", "tiny random SAM 2", "none", tiny_sam2(image_size=128))
    paths = small_run(data, tmp_path / "rep", segmenter=segmenter, corruptions=["contrast"])
    df = pd.read_csv(paths["csv"])
    assert len(df) == 2 * 2 * len(harness.METHODS) and (df["model"] == "sam2").all()
    assert df["iou"].between(0, 1).all()
    assert "| proj_S(SAM 2) |" in paths["markdown"].read_text()


@pytest.mark.parametrize(
    "text,expected",
    [("5", (5,)), (3, (3,)), ("1-5", (1, 2, 3, 4, 5)), ("1,3,5", (1, 3, 5)), ("5,1,1", (1, 5)), ("2-3,5", (2, 3, 5))],
)
def test_severities(text, expected):
    assert harness.parse_severities(text) == expected


@pytest.mark.parametrize(
    "text,match",
    [("0", "1, 2, 3, 4, 5"), ("6", "got 6"), ("5-1", "backwards"), ("a", "'a'"), ("1-1000000000", "got 1000000000")],
)
def test_bad_severities(text, match):
    with pytest.raises(ValueError, match=match):
        harness.parse_severities(text)


def test_sweep_end_to_end_and_shared_cache(data, tmp_path):
    """A sweep: clean once (severity 0), every corruption at every severity, one CSV,
    the sweep table and curves; items of a one-severity run are reused."""
    single = []
    small_run(data, tmp_path / "rep", severity=2, on_item=single.append)
    assert len(single) == 2 * 3
    computed = []
    paths = small_run(data, tmp_path / "rep", severity="1-2", on_item=computed.append)
    assert len(computed) == 2 * 2  # only severity 1 of the two corruptions was missing
    df = pd.read_csv(paths["csv"])
    items = df.drop_duplicates(["image", "condition", "severity"])
    assert len(items) == 2 + 2 * 2 * 2 and set(items[items.condition == "clean"].severity) == {0}
    assert set(df.severity) == {0, 1, 2}
    text = paths["markdown"].read_text()
    assert "| Method | Clean | Severity 1 | Severity 2 |" in text and "| 1 | " in text and "| clean | " in text
    with Image.open(paths["curves"]) as im:
        assert im.size[0] > 300
    # The sweep's severity-2 rows are the one-severity run's numbers.
    one = pd.read_csv(tmp_path / "rep" / "corruptions_sev2.csv")
    both = df[df.severity == 2].merge(one, on=["image", "condition", "method"])
    assert len(both) == 2 * 2 * len(harness.METHODS) and (both.iou_x == both.iou_y).all()


def test_ray_gives_the_serial_bytes_and_reports_failed_items(data, tmp_path):
    """A tiny sweep on a local 2-CPU Ray equals the serial run byte for byte; an item
    that fails (an image too small to corrupt) is retried, reported, and the rest kept."""
    pytest.importorskip("ray")
    serial = small_run(data, tmp_path / "serial", severity="1-2")["csv"].read_bytes()
    distributed = small_run(data, tmp_path / "ray", severity="1-2", executor=cluster.Ray())["csv"].read_bytes()
    assert distributed == serial
    # An item the command would refuse up front (an image below imagecorruptions' 32 px)
    # sent to the workers anyway: it fails there, is retried once, and is reported.
    tiny = tmp_path / "tiny"
    write_scenes(tiny, seed=0, n=1, size=(24, 24))
    (sample,) = load_dataset("convexitydb", str(tiny))
    (good,) = load_dataset("convexitydb", str(data), limit=1)
    job = items.Job(
        0,
        choose_segmenter("grabcut", None, None),
        ConvexProjector(),
        {s.name: make_prompt(s, "points", 3) for s in (sample, good)},
    )
    finished = []
    cluster.connect(None)
    try:
        with pytest.warns(UserWarning, match=r"img_0 spatter severity 1 failed.*retrying once"):
            failed = cluster.evaluate(
                [(sample, "spatter", 1), (good, "clean", 1)], job, 0, lambda *args: finished.append(args[:3])
            )
    finally:
        cluster.disconnect()
    assert [(item[0].name, item[1]) for item, _ in failed] == [("img_0", "spatter")]
    assert [(s.name, c) for s, c, _ in finished] == [(good.name, "clean")]  # the rest kept


def test_images_too_small_to_corrupt_are_named_before_any_compute(tmp_path):
    tiny = tmp_path / "tiny"
    write_scenes(tiny, seed=0, n=1, size=(24, 24))
    with pytest.raises(ValueError, match=r"img_0 .* smaller than 32 px"):
        small_run(tiny, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_dotted_names_get_their_own_cache_files(data, tmp_path):
    """scan.v1 and scan.v2 shared one cache file (`with_suffix` cut ".v1__clean"): a rerun
    read one image's rows as another condition's, and rows went missing."""
    import shutil

    folder = tmp_path / "folder"
    for sub in ("images", "masks", "scribbles"):
        (folder / sub).mkdir(parents=True)
    for i, name in enumerate(("scan.v1", "scan.v2")):
        shutil.copy(data / "img" / f"img_{i}.png", folder / "images" / f"{name}.png")
        shutil.copy(data / "ground_truth" / f"GT_{i}.png", folder / "masks" / f"{name}.png")
        shutil.copy(data / "user_scribbles" / f"scribbleMask_{i}.png", folder / "scribbles" / f"{name}.png")
    first = pd.read_csv(small_run(folder, tmp_path / "rep", dataset="folder")["csv"])
    assert len(first) == 2 * 3 * len(harness.METHODS)
    assert sorted(set(first["image"])) == ["scan.v1", "scan.v2"]
    computed = []
    again = pd.read_csv(small_run(folder, tmp_path / "rep", dataset="folder", on_item=computed.append)["csv"])
    assert computed == []  # every item from its own cache file
    pd.testing.assert_frame_equal(again, first)
