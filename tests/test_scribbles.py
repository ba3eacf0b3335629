"""Scribble experiment: predictors, semantic features, the command end to end, bad arguments
and data (one line, exit code 2), damaged cache entries, splits and the paired statistics."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from eval.scribbles import cpu, harness, report, tune
from eval.scribbles.__main__ import main
from eval.scribbles.features import EMBEDMAP, STANDIN, load_embedmap, pca_reduce, semantic_features, standin_features
from eval.scribbles.harness import downsample_scribbles, stack_inputs
from eval.scribbles.nets import TrainConfig, initial_shape, make_predictor, scribble_bce, train_pair
from sam_convex.measures import iou


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
    torch.save({"embedmap": np.zeros((4, 4, 0))}, tmp_path / "z.pt")
    with pytest.raises(ValueError, match=r"z\.pt: 'embedmap' must be .* C >= 1"):
        load_embedmap(tmp_path / "z.pt")
    (tmp_path / "t.pt").write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match=r"t\.pt: not a"):
        load_embedmap(tmp_path / "t.pt")
    with pytest.raises(FileNotFoundError):
        load_embedmap(tmp_path / "missing.pt")


class RunsCodeWhenUnpickled:
    def __reduce__(self):
        return (exec, ("import builtins; builtins.FEATURE_FILE_RAN_CODE = True",))


def test_feature_files_are_never_unpickled_in_full(tmp_path):
    import builtins

    torch.save({"embedmap": RunsCodeWhenUnpickled()}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="weights-only"):
        load_embedmap(tmp_path / "evil.pt")
    assert not hasattr(builtins, "FEATURE_FILE_RAN_CODE")
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


def fast_args(data, out, *extra):
    """A folder dataset run small enough for a test (seconds)."""
    return [
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
        "--prefit",
        "5",
        "--size",
        "32",
        "--figure-images",
        "1",
        "--projector",
        "polygon",
        *extra,
    ]


TIMINGS = ["train_s", "project_s", "item_s"]


def test_command_end_to_end(tmp_path):
    data, out, feats = tmp_path / "data", tmp_path / "out", tmp_path / "feats"
    write_folder_dataset(data)
    feats.mkdir()
    torch.save({"embedmap": np.random.default_rng(0).normal(size=(12, 16, 6)).astype(np.float32)}, feats / "s1.pt")
    args = fast_args(
        data, out, "--features", str(feats), "--seeds", "2", "--projector", "gradient", "--projector-steps", "5"
    )
    assert main(args) == 0
    csv = pd.read_csv(out / "scribbles.csv")
    assert len(csv) == 2 * 2 * 2 * 2 * 2  # images x nets x feature sets x seeds x modes
    assert set(csv["mode"]) == {"sequential", "joint"} and set(csv.k) == {0, 1} and set(csv.split) == {"all"}
    # Each seed index has its own seed, shared by the item's two modes.
    seeds = csv.groupby(["image", "net", "features", "k"]).seed.nunique()
    assert (seeds == 1).all() and csv.drop_duplicates(["image", "net", "features", "k"]).seed.is_unique
    assert dict(csv.groupby("image").semantic_source.first()) == {"s0": STANDIN, "s1": EMBEDMAP}
    ious = csv[["iou_pred", "iou_convex", "iou_proj"]]
    assert ((ious >= 0) & (ious <= 1)).all().all()
    md = (out / "scribbles.md").read_text()
    for text in ("standin", "## Answer", "joint − sequential [95% CI]", "pooled: poster's columns", "*0.843*"):
        assert text in md, text
    assert "all: every image of" in md and "2 seeds per" in md
    assert (out / "scribbles.png").stat().st_size > 1000
    # Rerun: every training comes from the cache and the table is identical.
    cached = list((out / ".cache" / "scribbles").glob("*.json"))
    assert len(cached) == 16 and "seq_s" in json.loads(cached[0].read_text())
    assert main(args) == 0
    assert "16 of 16 training pairs from cache" in (out / "scribbles.md").read_text()
    again = pd.read_csv(out / "scribbles.csv")
    pd.testing.assert_frame_equal(csv.drop(columns=TIMINGS), again.drop(columns=TIMINGS))


# ---------------------------------------------------------------- bad input, cache, splits, statistics

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def folder(tmp_path):
    data = tmp_path / "data"
    write_folder_dataset(data)
    return data


def damage(data: Path, case: str) -> Path:
    """Turn a good folder dataset into a bad one; returns the dataset root."""
    if case == "no scribbles":
        for p in (data / "scribbles").iterdir():
            p.unlink()
    elif case == "corrupt png":
        (data / "images" / "s1.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    elif case == "truncated png":
        blob = (data / "masks" / "s0.png").read_bytes()
        (data / "masks" / "s0.png").write_bytes(blob[: len(blob) // 2])
    elif case == "mask size":
        Image.fromarray(np.zeros((10, 10), np.uint8)).save(data / "masks" / "s1.png")
    elif case == "empty scribbles":
        Image.fromarray(np.zeros((48, 64), np.uint8)).save(data / "scribbles" / "s0.png")
    return data


# (case, extra arguments ({tmp}: the test's directory), expected text in the message)
BAD_ARGUMENTS = [
    ("limit 0", ["--limit", "0"], "--limit must be an integer >= 1, got 0"),
    ("threads 0", ["--threads", "0"], "--threads must be an integer >= 1, got 0"),
    ("projector steps 0", ["--projector-steps", "0"], "--projector-steps must be an integer >= 1, got 0"),
    ("projector steps, polygon", ["--projector-steps", "5"], "use it with --projector gradient"),
    ("unknown projector", ["--projector", "hull"], "argument --projector: invalid choice: 'hull'"),
    ("size 0", ["--size", "0"], "--size must be an integer >= 8, got 0"),
    ("seeds 0", ["--seeds", "0"], "--seeds must be an integer >= 1, got 0"),
    ("seed -1", ["--seed", "-1"], "--seed must be an integer >= 0, got -1"),
    ("steps 0", ["--steps", "0"], "--steps must be an integer >= 1, got 0"),
    ("warmup >= steps", ["--warmup", "12"], "--warmup must be < --steps, got warmup 12 and steps 12"),
    ("prefit -1", ["--prefit", "-1"], "--prefit must be an integer >= 0, got -1"),
    ("lam nan", ["--lam", "nan"], "--lam must be a finite number >= 0 (the weight of dist(p, S)), got nan"),
    ("lam negative", ["--lam", "-5"], "got -5.0"),
    ("lam inf", ["--lam", "inf"], "got inf"),
    ("sem channels 0", ["--sem-channels", "0"], "--sem-channels must be an integer >= 1, got 0"),
    ("figure images -1", ["--figure-images", "-1"], "--figure-images must be an integer >= 0, got -1"),
    ("not an int", ["--limit", "x"], "argument --limit: invalid int value: 'x'"),
    ("unknown feature set", ["--inputs", "rgb,depth"], "unknown feature set 'depth'"),
    ("unknown net", ["--nets", "rnn"], "unknown net 'rnn'"),
    ("unknown option", ["--bogus"], "unrecognized arguments: --bogus"),
    ("unknown split", ["--split", "train"], "argument --split: invalid choice: 'train'"),
    ("missing features dir", ["--features", "{tmp}/nofeats"], "--features {tmp}/nofeats is not a directory"),
    ("test split too small", ["--split", "test"], "--split test: "),
    ("out is a file", ["--out", "{tmp}/afile"], "--out '{tmp}/afile' is not a writable directory"),
    ("out below a file", ["--out", "{tmp}/afile/sub"], "is not a writable directory"),
]

BAD_DATA = [
    ("no scribbles", "2 image(s) have no scribbles (e.g. s0)"),
    ("corrupt png", "s1.png: not a readable image"),
    ("truncated png", "s0.png: not a readable image"),
    ("mask size", "s1.png: size 10x10 (WxH) does not match its image (64x48)"),
    ("empty scribbles", "s0: no scribbled pixel at the training size"),
]


def expect_usage_error(capsys, args: list[str], text: str) -> str:
    """main(args) returns 2 with one stderr line holding `text`, no traceback, no
    output; returns the line."""
    assert main(args) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("python -m eval.scribbles: error: ") and text in lines[0], lines[0]
    assert "Traceback" not in captured.err and "wrote" not in captured.out
    return lines[0]


@pytest.mark.parametrize("case,extra,text", BAD_ARGUMENTS, ids=[c[0] for c in BAD_ARGUMENTS])
def test_bad_arguments_exit_2_with_one_line(tmp_path, folder, capsys, case, extra, text):
    (tmp_path / "afile").write_text("not a directory")
    extra = [a.replace("{tmp}", str(tmp_path)) for a in extra]
    out = tmp_path / "out"
    expect_usage_error(capsys, fast_args(folder, out, *extra), text.replace("{tmp}", str(tmp_path)))
    assert not (out / ".cache" / "scribbles").exists() or not any((out / ".cache" / "scribbles").iterdir())


@pytest.mark.parametrize("case,text", BAD_DATA, ids=[c[0] for c in BAD_DATA])
def test_bad_data_exit_2_with_one_line(tmp_path, folder, capsys, case, text):
    expect_usage_error(capsys, fast_args(damage(folder, case), tmp_path / "out"), text)


def test_missing_or_empty_dataset_directory(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    for data in (tmp_path / "missing", tmp_path / "empty"):
        line = expect_usage_error(capsys, fast_args(data, tmp_path / "out"), "a folder dataset must be laid out as")
        assert f"missing {data / 'images'}" in line
    expect_usage_error(capsys, ["--dataset", "folder", "--out", str(tmp_path / "o")], "needs --data ROOT")
    expect_usage_error(capsys, ["--split", "all", "--out", str(tmp_path / "o")], "--split all: the scenes")


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root may write to read-only directories")
def test_read_only_out_is_refused_before_computing(tmp_path, folder, capsys):
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o500)
    try:
        expect_usage_error(capsys, fast_args(folder, out), "is not a writable directory")
    finally:
        out.chmod(0o700)


@pytest.mark.parametrize(
    "args,text",
    [
        (["--limit", "0"], "--limit must be an integer >= 1, got 0"),
        (["--lam", "nan"], "got nan"),
        (["--dataset", "folder", "--data", "/nonexistent/scribble/data"], "/nonexistent/scribble/data"),
        (["--sem-channels", "0"], "--sem-channels must be an integer >= 1, got 0"),
        (["--out", "/dev/null/x"], "--out '/dev/null/x' is not a writable directory"),
    ],
)
def test_command_line_process_exits_2_without_traceback(tmp_path, args, text):
    out = [] if "--out" in args else ["--out", str(tmp_path)]
    proc = subprocess.run(
        [sys.executable, "-m", "eval.scribbles", *args, *out], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and text in lines[0] and "Traceback" not in proc.stderr, proc.stderr


def test_help_is_informative():
    proc = subprocess.run(
        [sys.executable, "-m", "eval.scribbles", "--help"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0
    for text in ("--seeds", "--split", "dev", "test", "--lam", "proj_S", "bootstrap"):
        assert text in proc.stdout, text


def test_damaged_cache_entries_are_recomputed(tmp_path, folder):
    out = tmp_path / "out"
    args = fast_args(folder, out, "--inputs", "rgb", "--nets", "fcn", "--seeds", "2")
    assert main(args) == 0
    fresh = pd.read_csv(out / "scribbles.csv")
    cache = out / ".cache" / "scribbles"
    jsons, npzs = sorted(cache.glob("*.json")), sorted(cache.glob("*.npz"))
    assert len(jsons) == len(npzs) == 4
    jsons[0].write_text("")  # empty
    jsons[1].write_text("[1, 2, 3]")  # a JSON list
    npzs[2].write_bytes(npzs[2].read_bytes()[:100])  # truncated
    np.savez(npzs[3], wrong=np.zeros(3))  # wrong keys
    npzs[0].unlink()
    npzs[0].mkdir()  # a directory where a cache file belongs
    with pytest.warns(UserWarning) as record:
        assert main(args) == 0
    named = " ".join(str(w.message) for w in record)
    for path in (jsons[0], jsons[1], npzs[2], npzs[3]):
        assert str(path) in named
    assert npzs[0].is_file()
    again = pd.read_csv(out / "scribbles.csv")
    pd.testing.assert_frame_equal(fresh.drop(columns=TIMINGS), again.drop(columns=TIMINGS))
    assert "0 of 4 training pairs from cache" in (out / "scribbles.md").read_text()
    # The entries were rewritten: a third run reads everything from the cache.
    assert main(args) == 0
    assert "4 of 4 training pairs from cache" in (out / "scribbles.md").read_text()


def test_dev_and_test_splits_are_disjoint(tmp_path, monkeypatch):
    data = tmp_path / "data"
    write_folder_dataset(data, n=23)
    names = {}
    for split in ("dev", "test", "all"):
        s = harness.Settings(dataset="folder", data=str(data), split=split)
        samples, text = harness.load_split(s)
        names[split] = [x.name for x in samples]
        assert text.startswith(split)
    assert len(names["dev"]) == harness.DEV_IMAGES and len(names["test"]) == 3
    assert not set(names["dev"]) & set(names["test"]) and sorted(names["dev"] + names["test"]) == sorted(names["all"])
    # scenes: the split picks the generation seed.
    calls = []
    monkeypatch.setattr(harness, "load_dataset", lambda *a, **k: calls.append(k) or [])
    for split in ("dev", "test"):
        harness.load_split(harness.Settings(split=split, limit=5))
    assert [(c["seed"], c["limit"]) for c in calls] == [(0, 5), (1, 5)]
    assert harness.Settings().split_name == "test" and harness.Settings(dataset="folder").split_name == "all"


def test_numerics_set_threads_and_restore():
    before = torch.get_num_threads()
    with harness.numerics(1):
        assert torch.get_num_threads() == 1
        assert "ATen vector kernels" in harness.numerics_label()
    assert torch.get_num_threads() == before


def synthetic_results(delta_by_image: dict[str, list[float]]) -> pd.DataFrame:
    """Rows where joint − sequential of image i, seed k is delta_by_image[i][k] (all outputs)."""
    rows = []
    for image, deltas in delta_by_image.items():
        for k, d in enumerate(deltas):
            for mode, v in (("sequential", 0.5), ("joint", 0.5 + d)):
                rows.append(
                    dict(image=image, features="rgb+sem", net="cnn", mode=mode, k=k, iou_pred=v, iou_convex=v)
                    | dict(iou_proj=v)
                )
    return pd.DataFrame(rows)


def test_paired_statistics_average_seeds_before_the_ci():
    df = synthetic_results({f"i{i}": [0.1, -0.1 + 0.01 * i, 0.0] for i in range(10)})
    s = report.summarise(df, [("rgb+sem", "cnn")], "convex: regulariser's mask")
    per_image = np.array([(0.1 - 0.1 + 0.01 * i) / 3 for i in range(10)])
    assert s["n"] == 10 and s["seeds"] == 3
    assert s["mean"] == pytest.approx(per_image.mean()) and s["lo"] <= s["mean"] <= s["hi"]
    assert s["wins"] + s["ties"] + s["losses"] == 10 and s["seed_sd"] > 0.05
    assert report.verdict({"lo": 0.01, "hi": 0.02}) == "joint better"
    assert report.verdict({"lo": -0.01, "hi": 0.02}) == "no clear difference"
    assert report.verdict({"lo": -0.03, "hi": -0.02}) == "sequential better"


def test_command_pins_the_cpu_code_paths(tmp_path, folder):
    """Run as a command, ATen's vector kernels and MKL's branch are pinned before torch
    loads, and the report says so; a user's own setting wins."""
    args = fast_args(folder, tmp_path / "out", "--inputs", "rgb", "--nets", "fcn", "--seeds", "1")
    env = {k: v for k, v in os.environ.items() if k not in cpu.PINNED}
    proc = subprocess.run(
        [sys.executable, "-m", "eval.scribbles", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    md = (tmp_path / "out" / "scribbles.md").read_text()
    assert (
        "numerics: ATen vector kernels AVX2, MKL_CBWR=AVX2,STRICT, ONEDNN_MAX_CPU_ISA=AVX2, convolutions oneDNN" in md
    )


def test_tune_rule_and_subset_errors(capsys):
    rows = []
    for config, (joint_iou, seq_iou) in {
        "start": (0.7, 0.8),
        "λ 3": (0.75, 0.8),
        "gradient projector": (0.7, 0.82),
    }.items():
        for mode, v in (("joint", joint_iou), ("sequential", seq_iou)):
            rows.append(dict(config=config, features="rgb+sem", mode=mode, iou_convex=v))
    assert tune.choose(pd.DataFrame(rows)) == ("λ 3", "gradient projector")
    # A gain within the tie margin keeps ConvexProjector (the "start" configuration).
    close = [dict(r, iou_convex=0.803) if r["config"] == "gradient projector" else r for r in rows]
    assert tune.choose(pd.DataFrame(close)) == ("λ 3", "start")
    assert tune.main(["--configs", "λ 4", "--out", "/tmp"]) == 2
    assert "unknown configuration 'λ 4'" in capsys.readouterr().err


def test_tune_rechoose_rewrites_the_choice_only(tmp_path, capsys):
    rows = []
    for config, (joint_iou, seq_iou) in {
        "start": (0.7, 0.8),
        "λ 3": (0.75, 0.8),
        "gradient projector": (0.7, 0.9),
    }.items():
        for image in ("a", "b"):
            for mode, v in (("joint", joint_iou), ("sequential", seq_iou)):
                rows.append(
                    dict(
                        config=config,
                        settings=config,
                        image=image,
                        net="fcn",
                        features="rgb+sem",
                        mode=mode,
                        k=0,
                        iou_pred=v,
                        iou_convex=v,
                        iou_proj=v,
                        chosen=False,
                        numerics="n",
                    )
                )
    pd.DataFrame(rows).to_csv(tmp_path / report.DEV_CSV, index=False)
    assert tune.main(["--rechoose", "--out", str(tmp_path)]) == 0
    dev = pd.read_csv(tmp_path / report.DEV_CSV)
    assert set(dev[dev.chosen].config) == {"λ 3", "gradient projector"}
    assert dev.drop(columns="chosen").equals(pd.DataFrame(rows).drop(columns="chosen"))
    assert "projector **gradient projector**" in (tmp_path / "scribbles_dev.md").read_text()
    assert tune.main(["--rechoose", "--out", str(tmp_path / "none")]) == 2
    assert "scribbles_dev.csv not found" in capsys.readouterr().err


# ---------------------------------------------------------------- issue 24: contents, dotted names, foreign dev grids


def test_cache_is_keyed_on_contents_not_names(tmp_path, folder):
    """Replacing an image, its scribbles or its feature file retrains that image (the
    cache was keyed on names: "3 of 3 from cache")."""
    out, feats = tmp_path / "out", tmp_path / "feats"
    feats.mkdir()
    rng = np.random.default_rng(0)
    torch.save({"embedmap": rng.normal(size=(12, 16, 6)).astype(np.float32)}, feats / "s1.pt")
    args = fast_args(folder, out, "--features", str(feats), "--inputs", "rgb+sem", "--nets", "fcn", "--seeds", "1")

    def from_cache():
        assert main(args) == 0
        return (out / "scribbles.md").read_text().count("1 of 2 training pairs from cache")

    assert main(args) == 0
    torch.save({"embedmap": rng.normal(size=(12, 16, 6)).astype(np.float32)}, feats / "s1.pt")
    assert from_cache() == 1  # s1 retrained, s0 from the cache
    image, _, scribbles = generated_scene(seed=5)
    Image.fromarray(image).save(folder / "images" / "s0.png")
    assert from_cache() == 1  # s0 retrained
    Image.fromarray(np.array([0, 128, 255], np.uint8)[np.roll(scribbles, 3, axis=1)]).save(
        folder / "scribbles" / "s1.png"
    )
    assert from_cache() == 1  # s1 retrained


def test_a_dotted_name_never_reads_another_images_feature_file(tmp_path):
    """scan.v1 looked for scan.v1.pt, then scan.pt: another image's features."""
    torch.save({"embedmap": np.zeros((12, 16, 6), np.float32)}, tmp_path / "scan.pt")
    _, source = semantic_features(np.zeros((24, 32, 3), np.uint8), "scan.v1", 6, 8, tmp_path, k=3)
    assert source == STANDIN


def _foreign_dev_grids(tmp_path):
    """A truncated dev grid, a table of other columns and another command's CSV."""
    rows = [
        dict(config="start", settings="s", image="a", net="fcn", features="rgb+sem", mode=m, k=0, iou_pred=0.5,
             iou_convex=0.5, iou_proj=0.5, chosen=True, numerics="n")
        for m in ("sequential", "joint")
    ]  # fmt: skip
    text = pd.DataFrame(rows * 20).to_csv(index=False)
    grids = {"truncated": text[: len(text) // 2 + 7], "other table": "a,b,c\n1,2,3\n", "wrong values": text.replace(
        "0.5,0.5,0.5", "0.5,x,0.5", 1)}  # fmt: skip
    grids["corruption csv"] = pd.DataFrame({"image": ["a"], "condition": ["clean"], "iou": [0.5]}).to_csv(index=False)
    for name, content in grids.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / report.DEV_CSV).write_text(content)
    return list(grids)


def test_rechoose_refuses_a_foreign_or_truncated_dev_grid_with_one_line(tmp_path, capsys):
    for name in _foreign_dev_grids(tmp_path):
        assert tune.main(["--rechoose", "--out", str(tmp_path / name)]) == 2, name
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "scribbles_dev.csv" in err[0] and "Traceback" not in err[0], (name, err)


def test_the_command_refuses_a_foreign_dev_grid_before_training(tmp_path, folder, capsys):
    for name in _foreign_dev_grids(tmp_path):
        line = expect_usage_error(capsys, fast_args(folder, tmp_path / name), "scribbles_dev.csv")
        assert "rerun python -m eval.scribbles.tune" in line
        assert not any((tmp_path / name / ".cache" / "scribbles").glob("*.json"))  # nothing trained


def test_channel_first_feature_files_are_transposed_with_a_warning_or_refused(tmp_path):
    """A C x H x W embedmap was read as H x W x C and stretched over the image."""
    image = np.zeros((48, 64, 3), np.uint8)
    rng = np.random.default_rng(0)
    hwc = rng.normal(size=(24, 32, 10)).astype(np.float32)  # at half the image's resolution
    torch.save({"embedmap": hwc}, tmp_path / "a.pt")
    torch.save({"embedmap": hwc.transpose(2, 0, 1).copy()}, tmp_path / "b.pt")
    expected, _ = semantic_features(image, "a", 6, 8, tmp_path, k=3)
    with pytest.warns(UserWarning, match=r"read as C x H x W"):
        got, source = semantic_features(image, "b", 6, 8, tmp_path, k=3)
    assert source == EMBEDMAP
    np.testing.assert_allclose(got, expected, atol=1e-5)
    torch.save({"embedmap": np.zeros((12, 12, 12), np.float32)}, tmp_path / "cube.pt")
    with pytest.raises(ValueError, match="could be H x W x C or C x H x W"):
        semantic_features(np.zeros((24, 24, 3), np.uint8), "cube", 6, 6, tmp_path, k=3)
    torch.save({"embedmap": np.zeros((5, 40, 7), np.float32)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="fits neither"):
        semantic_features(image, "other", 6, 8, tmp_path, k=3)
