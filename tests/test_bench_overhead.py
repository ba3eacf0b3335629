"""The overhead benchmark end to end (tiny counts) and its argument checks."""

import json

import pytest

from eval import bench_overhead


def test_overhead_command_writes_both_parts(tmp_path, capsys):
    pytest.importorskip("sam2")  # part (a) runs SAM 2, an optional extra
    assert bench_overhead.main(["--repeats", "1", "--counts", "4", "--out", str(tmp_path)]) == 0
    r = json.loads((tmp_path / "bench_overhead.json").read_text())
    assert [row["masks"] for row in r["sam2"]] == [3, 1, 8]
    assert all(row["on_s"] > 0 and row["off_s"] > 0 for row in r["sam2"])
    assert {row["workers"] for row in r["amg"]} == {1, 2}
    assert r["click"]["off_s"] > r["click"]["decoder_s"] > 0 and r["click"]["sam_like_fit_s"] > 0
    gates = {row["min_solidity"]: row["fitted"] for row in r["amg"]}
    assert gates[0.0] == 4 and gates[bench_overhead.DEFAULT_MIN_SOLIDITY] == 2  # rings and Ls are gated out
    md = (tmp_path / "bench_overhead.md").read_text()
    assert "checkpoint: none" in md and "python -m eval.bench_overhead --repeats 1" in md
    assert "report in" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args,text",
    [
        (["--repeats", "0"], "--repeats must be >= 1"),
        (["--counts", "a,b"], "--counts must be comma-separated integers"),
        (["--counts", "0"], "--counts must be >= 1"),
        (["--workers", "0"], "--workers must be >= 1"),
        (["--device", "nonsense"], "nonsense"),
    ],
)
def test_overhead_bad_arguments(args, text, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_:
        bench_overhead.main([*args, "--out", str(tmp_path)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and text in err[0]
