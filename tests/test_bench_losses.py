"""The loss benchmark end to end (tiny batch) and its argument checks."""

import json

import pytest

from eval import bench_losses


def test_bench_losses_writes_every_method_per_size(tmp_path, capsys):
    assert bench_losses.main(["--sizes", "32", "--batch", "2", "--repeats", "1", "--out", str(tmp_path)]) == 0
    r = json.loads((tmp_path / "bench_losses.json").read_text())
    assert [(row["kind"], row["method"]) for row in r["rows"]] == [
        (k, m) for k in bench_losses.KINDS for m in bench_losses.METHODS
    ]
    assert all(row["ms"] > 0 for row in r["rows"])
    md = (tmp_path / "bench_losses.md").read_text()
    assert "| 32x32 |" in md and "python -m eval.bench_losses" in md
    assert "projector's time" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args,text",
    [
        (["--sizes", "a"], "--sizes must be comma-separated integers"),
        (["--sizes", "4"], "--sizes must be >= 8"),
        (["--batch", "0"], "--batch must be >= 1"),
        (["--device", "nonsense"], "nonsense"),
    ],
)
def test_bench_losses_bad_arguments(args, text, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_:
        bench_losses.main([*args, "--out", str(tmp_path)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and text in err[0]
