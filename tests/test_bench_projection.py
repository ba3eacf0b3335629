"""The projection benchmark: targets, reference procedure, the command end to end."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from eval import bench_projection
from sam_convex.measures import hull_gap, iou

REPO = Path(__file__).resolve().parents[1]


def test_bench_targets_are_deterministic_soft_and_nonconvex():
    a, b = bench_projection.bench_targets(3, seed=1), bench_projection.bench_targets(3, seed=1)
    assert a.shape == (3, 256, 256) and a.dtype == np.float32
    assert np.array_equal(a, b)
    assert 0 <= a.min() and a.max() <= 1
    assert all(hull_gap(t > 0.5) > 50 for t in a)  # bites, holes, islands
    _, truths = bench_projection.scene_targets(3, seed=1)
    assert all(hull_gap(t) < hull_gap(m > 0.5) and iou(t, m > 0.5) > 0.8 for t, m in zip(truths, a))  # undamaged


def test_reference_fit_and_objective():
    target = np.zeros((32, 32), np.float32)
    target[8:24, 10:20] = 1
    mask = bench_projection.reference_fit(target, steps=300, width=16, lr=0.02)
    assert iou(mask, target > 0.5) > 0.8
    assert bench_projection.objective(target, target > 0.5) == 0.0
    assert bench_projection.objective(target, ~(target > 0.5)) == 1.0


def test_bench_command_writes_report_and_caches_the_slow_fits(tmp_path, monkeypatch):
    argv = ["--masks", "2", "--reference-masks", "1", "--reference-steps", "3", "--batch", "2", "--repeats", "1"]
    monkeypatch.setattr(bench_projection, "LONG_FIT", dict(bench_projection.LONG_FIT, steps=20, grid=32))
    monkeypatch.setattr(bench_projection, "big_image", lambda threads: None)
    monkeypatch.setattr(bench_projection, "PHOTO_SIZES", {"192x108": ((108, 192), 1.0), "400x300": ((300, 400), 0.5)})
    argv += ["--photo-masks", "2"]
    assert bench_projection.main([*argv, "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "bench_projection.json").read_text())
    assert [p["masks"] for p in result["photo"].values()] == [2, 1]
    assert all(
        set(p["rows"])
        == {"cv2 contour hull + fill", "skimage convex_hull_image", "ConvexProjector()", "ConvexProjector().fit"}
        for p in result["photo"].values()
    )
    assert list(result["workers"]) == ["2 masks of 256x256", "2 masks of 192x108"]
    assert all(row["equal"] and row["masks_per_s"] > 0 for rows in result["workers"].values() for row in rows.values())

    assert set(result["single"]) >= {
        "skimage convex_hull_image",
        "cv2 convexHull + fill",
        "remove_small_regions",
        "ConvexProjector()",
        "GradientProjector()",
    }
    assert result["single"]["ConvexProjector()"]["ratio"] > 0 and result["batched_equals_single"]
    assert result["fidelity"]["ConvexProjector()"]["objective_ratio"]["median"] > 0
    assert "| ConvexProjector() |" in (tmp_path / "bench_projection.md").read_text()
    cached = sorted(p.name.split("-")[0] for p in (tmp_path / ".cache" / "bench_projection").iterdir())
    assert cached == ["long_fit", "reference"]


def test_peak_memory_is_measured_from_the_reset():
    # In a fresh process: in pytest's, freed heap memory may still be resident and reused.
    script = """
import numpy as np
from eval import bench_projection as b
big = np.ones(40_000_000, np.uint8)  # a 40 MB peak before the reset must not count
del big
b.reset_peak()
before = b.memory_kb("VmRSS")
assert b.memory_kb("VmHWM") < before + 20_000
step = np.ones(20_000_000, np.uint8)  # 20 MB touched after it
assert b.memory_kb("VmHWM") >= before + 19_000
"""
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
