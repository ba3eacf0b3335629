import json

import numpy as np

from eval import bench_projection

from shapes import hull_gap


def test_bench_targets_are_deterministic_soft_and_nonconvex():
    a, b = bench_projection.bench_targets(3, seed=1), bench_projection.bench_targets(3, seed=1)
    assert a.shape == (3, 256, 256) and a.dtype == np.float32
    assert np.array_equal(a, b)
    assert 0 <= a.min() and a.max() <= 1
    assert all(hull_gap(t > 0.5) > 50 for t in a)  # bites, holes, islands


def test_reference_fit_and_objective():
    target = np.zeros((32, 32), np.float32)
    target[8:24, 10:20] = 1
    mask = bench_projection.reference_fit(target, steps=300, width=16, lr=0.02)
    assert bench_projection.iou(mask, target > 0.5) > 0.8
    assert bench_projection.objective(target, target > 0.5) == 0.0
    assert bench_projection.objective(target, ~(target > 0.5)) == 1.0


def test_bench_command_writes_report(tmp_path, monkeypatch):
    argv = [
        "--masks",
        "2",
        "--single-masks",
        "2",
        "--reference-masks",
        "1",
        "--reference-steps",
        "3",
        "--batch",
        "2",
        "--repeats",
        "1",
        "--out",
        str(tmp_path),
    ]
    monkeypatch.setattr(bench_projection, "LONG_FIT", dict(bench_projection.LONG_FIT, steps=20, grid=32))
    assert bench_projection.main(argv) == 0
    result = json.loads((tmp_path / "bench_projection.json").read_text())
    for key in (
        "reference_s_per_mask",
        "single_s_per_mask",
        "batched_masks_per_s",
        "median_iou_to_reference",
        "objective_ratio",
        "device",
        "threads",
        "torch",
    ):
        assert key in result
    assert result["batched_masks_per_s"] > 0 and result["reference_steps"] == 3
    assert "(a) reference" in (tmp_path / "bench_projection.md").read_text()
