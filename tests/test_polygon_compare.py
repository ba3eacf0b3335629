"""python -m eval.polygon_compare: the report, its cache, bad arguments."""

import json

import numpy as np
import pytest

from eval.polygon_compare import METHODS, READERS, labelme_polygon, main, polygons_of


def test_report_and_cache(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["--limit", "2", "--out", str(out)]) == 0
    report = json.loads((out / "polygons.json").read_text())
    assert [row["method"] for row in report["summary"]] == list(METHODS)
    assert report["meta"]["images"] == 2 and "GrabCut" in report["meta"]["model"]
    ours = {r["image"]: r for r in report["rows"] if r["method"] == METHODS[0]}
    assert all(r["convex"] and 3 <= r["vertices"] <= 2 * 24 - 1 + 4 for r in ours.values())
    assert "| proj_S polygon (ours) |" in (out / "polygons.md").read_text()
    # Every reader installed by the dev extra reads our exports back (0.97: OpenCV's and
    # PIL's fills are half a pixel off the pixel-centre rule on a 50 px ellipse).
    assert list(report["readers"]) == list(READERS)
    assert all(v >= 0.97 for values in report["readers"].values() for v in values)
    cached = sorted((out / ".cache" / "polygons").rglob("*.npz"))
    assert len(cached) == 2
    before = [p.stat().st_mtime_ns for p in cached]
    assert main(["--limit", "2", "--out", str(out)]) == 0  # a rerun reads the cache
    assert [p.stat().st_mtime_ns for p in cached] == before
    assert json.loads((out / "polygons.json").read_text())["rows"] == report["rows"]


def test_corrupted_items(tmp_path):
    out = tmp_path / "out"
    assert main(["--limit", "1", "--corruptions", "contrast", "--severity", "3", "--out", str(out)]) == 0
    report = json.loads((out / "polygons.json").read_text())
    assert list(report["by_condition"]) == ["clean", "contrast"]
    assert {r["condition"] for r in report["rows"]} == {"clean", "contrast"}
    assert "## Mean IoU to GT per condition" in (out / "polygons.md").read_text()
    assert "contrast (severity 3)" in report["meta"]["conditions"]


def test_methods_on_a_known_mask():
    yy, xx = np.mgrid[:60, :80]
    disk = (xx - 40) ** 2 + (yy - 30) ** 2 <= 20**2
    raw = disk.copy()
    raw[28:33, 10:70] = True  # a bar through it: not convex
    found = polygons_of(raw, np.where(raw, 5.0, -5.0).astype(np.float32))
    assert set(found) == set(METHODS)
    vertices, mask, convex = found[METHODS[0]]
    assert 3 <= vertices <= 2 * 24 - 1 + 4
    assert convex and mask.sum() > disk.sum() * 0.9
    assert not found["approxPolyDP 1 px"][2]  # the bar makes the tools' polygon non-convex
    assert (found["convex hull"][1] >= raw).all()  # the hull covers the mask
    poly = labelme_polygon(raw)
    assert poly[:, 0].min() >= 9.5 and poly[:, 0].max() <= 69.5  # padding removed: x in pixel indices


@pytest.mark.parametrize(
    "argv",
    [["--limit", "0"], ["--dataset", "nope"], ["--dataset", "folder"], ["--corruptions", "nope"], ["--severity", "6"]],
)
def test_bad_arguments(tmp_path, capsys, argv):
    with pytest.raises(SystemExit) as stop:
        main([*argv, "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and len(err.strip().splitlines()) == 1
