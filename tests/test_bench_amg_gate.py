"""The AMG gate measurement: its masks, its gating arithmetic, the command end to end."""

import json

import cv2
import numpy as np
import pytest

from eval import bench_amg_gate
from sam_convex import synthetic
from sam_convex.amg import DEFAULT_MIN_SOLIDITY, solidity
from sam_convex.measures import iou


def test_nonconvex_shapes_are_ragged_nonconvex_and_deterministic():
    kinds, raw, truths = synthetic.nonconvex_shapes(2, seed=3)
    again = synthetic.nonconvex_shapes(2, seed=3)
    assert kinds == ["ring"] * 2 + ["L"] * 2 + ["two_objects"] * 2
    assert raw.shape == truths.shape == (6, 256, 256) and raw.dtype == truths.dtype == bool
    assert np.array_equal(raw, again[1]) and np.array_equal(truths, again[2])
    for kind, r, t in zip(kinds, raw, truths):
        assert 0.9 < iou(r, t) < 1.0, kind  # ragged edges, the shape kept
        assert solidity(t) < 0.85, kind  # clearly non-convex
    for t in truths[4:]:  # two separate objects, each a major component
        _, _, stats, _ = cv2.connectedComponentsWithStats(t.astype(np.uint8))
        areas = stats[1:, cv2.CC_STAT_AREA]
        assert len(areas) == 2 and areas.min() >= 0.1 * areas.max()


def test_convex_groups_share_objects_and_edges():
    """convex_ragged is convex_damaged without the damage: same truths, and IoU to them
    near 1 (ragged edges only), where the damaged masks are further off."""
    groups, kinds = bench_amg_gate.mask_groups(3, 1, seed=0)
    (damaged, truths), (clean, clean_truths) = groups["convex_damaged"], groups["convex_ragged"]
    assert np.array_equal(truths, clean_truths) and damaged.dtype == clean.dtype == bool
    assert all(iou(c, t) > 0.97 > iou(d, t) for d, c, t in zip(damaged, clean, truths))
    assert len(kinds) == len(groups["nonconvex"][0]) == 3


def test_gated_projects_at_or_above_the_threshold():
    rows = {"g": [0.5, 0.8, 0.9], "iou_raw": [0.9, 0.6, 0.7], "iou_proj": [0.3, 0.9, 1.0]}
    assert bench_amg_gate.gated(rows, "g", 0.0) == pytest.approx((0.7333, 1.0), abs=1e-3)
    assert bench_amg_gate.gated(rows, "g", 0.8) == pytest.approx((0.9333, 2 / 3), abs=1e-3)
    assert bench_amg_gate.gated(rows, "g", None) == pytest.approx((0.7333, 0.0), abs=1e-3)


def test_command_writes_the_report(tmp_path, capsys):
    argv = ["--convex", "2", "--per-kind", "1", "--check-seeds", "1", "--out", str(tmp_path)]
    assert bench_amg_gate.main(argv) == 0
    r = json.loads((tmp_path / "amg_gate.json").read_text())
    assert set(r["tables"]) == set(bench_amg_gate.GATES) and set(r["balanced_by_seed"]) == {"0", "1"}
    for gate, table in r["tables"].items():
        assert [row["threshold"] for row in table] == [*bench_amg_gate.THRESHOLDS, None]
        everything, nothing = table[0], table[-1]
        for group, n in (("convex_damaged", 2), ("convex_ragged", 2), ("nonconvex", 3)):
            rows = r["per_mask"][group]
            assert len(rows["iou_raw"]) == len(rows[gate]) == n
            assert everything[f"{group}:projected"] == 1.0 and nothing[f"{group}:projected"] == 0.0
            assert everything[group] == pytest.approx(np.mean(rows["iou_proj"]))
            assert nothing[group] == pytest.approx(np.mean(rows["iou_raw"]))
        assert r["best"][gate]["balanced"] == max(row["balanced"] for row in table[:-1])
    # Islands raise the major-component solidity, never lower it.
    rows = r["per_mask"]["convex_damaged"]
    assert all(m >= s - 1e-9 for m, s in zip(rows["major-component solidity"], rows["solidity"]))
    assert r["library_default"]["threshold"] == DEFAULT_MIN_SOLIDITY
    assert r["command"] == "python -m eval.bench_amg_gate " + " ".join(argv) and r["versions"]["numpy"]
    md = (tmp_path / "amg_gate.md").read_text()
    for text in ("## Gate: solidity", "## Gate: major-component solidity", "## Balanced score by seed", "**best**"):
        assert text in md
    assert "## The default" in md and "- Margin: " in md
    assert "report in" in capsys.readouterr().out


def test_command_bad_arguments_fail_in_one_line_before_computing(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(bench_amg_gate, "mask_groups", lambda *a: pytest.fail("computed despite a bad argument"))
    blocker = tmp_path / "file"
    blocker.write_text("")
    for argv, message in (
        (["--convex", "0"], "--convex must be >= 1"),
        (["--per-kind", "-1"], "--per-kind must be >= 1"),
        (["--seed", "-2"], "must be >= 0"),
        (["--out", str(blocker / "sub")], "--out"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            bench_amg_gate.main(argv)
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
