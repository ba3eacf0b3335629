"""Every command: bad arguments end in exit code 2 and one line naming the bad value,
never a traceback, and nothing is computed or written first."""

import subprocess
import sys

import pytest
import torch
from PIL import Image

from eval import bench_projection
from eval.corruptions import __main__ as corruptions
from eval.scenes import write_scenes
from sam_convex import __main__ as single_image
from sam_convex.synthetic import textured_scene

NO_GPU = not torch.cuda.is_available()


def run_main(main, argv, capsys):
    """(exit code, stderr) of an in-process command run."""
    try:
        code = main(argv)
    except SystemExit as stop:
        code = stop.code
    return code, capsys.readouterr().err


def assert_one_line_error(code, err, needle):
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert needle in lines[0], lines[0]


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    root = tmp_path_factory.mktemp("cmd")
    data = root / "data"
    write_scenes(data, seed=0, n=2, size=(48, 64))
    broken = root / "broken"
    write_scenes(broken, seed=0, n=2, size=(48, 64))
    (broken / "img" / "img_0.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    a_file = root / "a_file"
    a_file.write_text("x")
    image = root / "scene.png"
    Image.fromarray(textured_scene()[0]).save(image)
    return {"data": data, "broken": broken, "file": a_file, "image": image, "root": root}


CORRUPTIONS_BAD = [
    (["--severity", "0"], "severity"),
    (["--severity", "6"], "got 6"),
    (["--severity", "a"], "'a'"),
    (["--corruptions", "hail"], "hail"),
    (["--corruptions", ""], "no corruptions"),
    (["--severity", "5-1"], "backwards"),
    (["--ray", "127.0.0.1:1"], "127.0.0.1:1"),
    (["--ray", "--ray-gpus-per-worker", "inf"], "inf"),
    (["--ray-gpus-per-worker", "1"], "is for --ray"),
    (["--seed", "-1"], "--seed"),
    (["--config", "sam2.1_hiera_t"], "--config is for --model sam2"),
    (["--limit", "0"], "--limit"),
    (["--device", "nonsense"], "nonsense"),
    (["--device", "cuda:9"], "cuda:9"),
    (["--prompt", "lasso"], "lasso"),
    (["--out", "{file}"], "{file}"),
    (["--out", "{file}/sub"], "{file}/sub"),
    (["--dataset", "convexitydb"], "--data ROOT"),
    (["--dataset", "convexitydb", "--data", "{broken}"], "img_0.png"),
    (["--dataset", "convexitydb", "--data", "{root}/missing"], "missing"),
    (["--model", "sam", "--checkpoint", "{root}/nope.pth"], "nope.pth"),
]


@pytest.mark.parametrize("argv,needle", CORRUPTIONS_BAD)
def test_corruptions_bad_arguments(argv, needle, paths, capsys):
    argv = [a.format(**paths) for a in argv]
    defaults = ["--model", "grabcut"] if "--model" not in argv else []
    data = [] if "--dataset" in argv else ["--dataset", "convexitydb", "--data", str(paths["data"])]
    out = [] if "--out" in argv else ["--out", str(paths["root"] / "out")]
    limit = [] if "--limit" in argv else ["--limit", "1"]
    code, err = run_main(corruptions.main, [*argv, *defaults, *data, *out, *limit], capsys)
    assert_one_line_error(code, err, needle.format(**paths))
    assert not list((paths["root"] / "out").glob("*.csv"))


BENCH_BAD = [
    (["--device", "nonsense"], "nonsense"),
    (["--threads", "-1"], "--threads"),
    (["--masks", "0"], "--masks"),
    (["--reference-masks", "5", "--masks", "2"], "--reference-masks"),
    (["--out", "{file}"], "{file}"),
    (["--out", ""], "''"),
    (["--quick", "--masks", "0"], "--masks"),
    (["--seed", "-2"], "--seed"),
]


@pytest.mark.parametrize("argv,needle", BENCH_BAD)
def test_bench_bad_arguments(argv, needle, paths, capsys):
    argv = [a.format(**paths) for a in argv]
    code, err = run_main(bench_projection.main, argv, capsys)
    assert_one_line_error(code, err, needle.format(**paths))


SINGLE_IMAGE_BAD = [
    (["{image}", "--point", "5", "5", "--out", "{root}/m.jpg"], "m.jpg"),
    (["{image}", "--point", "5", "5", "--out", "{root}/m.xyz"], "m.xyz"),
    (["{image}", "--point", "5", "5", "--out", "{root}"], "{root}"),
    (["{image}", "--point", "5", "5", "--out", ""], "--out"),
    (["{image}", "--point", "5", "5", "--out", "{file}/m.png"], "m.png"),
    (["{image}", "--point", "5", "5", "--out", "{root}/m.png", "--overlay", "{root}/o.gif"], "o.gif"),
    (["{image}", "--point", "nan", "5", "--out", "{root}/m.png"], "NaN"),
    (["{image}", "--point", "5", "5", "--projector", "adam", "--out", "{root}/m.png"], "adam"),
    (["{image}", "--point", "5", "5", "--device", "nonsense", "--out", "{root}/m.png"], "nonsense"),
    (["{root}/missing.png", "--point", "5", "5", "--out", "{root}/m.png"], "missing.png"),
    (["{file}", "--point", "5", "5", "--out", "{root}/m.png"], "a_file"),
    (["{image}", "--point", "5", "5", "--out", "{root}/m.png", "--overlay", "{root}/m.png"], "is the --out file"),
    (["{image}", "--point", "5", "5", "--config", "x", "--out", "{root}/m.png"], "--config is for --model sam2"),
]


@pytest.mark.parametrize("argv,needle", SINGLE_IMAGE_BAD)
def test_single_image_bad_arguments(argv, needle, paths, capsys):
    argv = [a.format(**paths) for a in argv]
    code, err = run_main(single_image.main, [*argv, "--model", "grabcut"], capsys)
    assert_one_line_error(code, err, needle.format(**paths))
    assert not (paths["root"] / "m.png").exists()


@pytest.mark.parametrize(
    "module,argv",
    [
        ("eval.corruptions", ["--severity", "6"]),
        ("eval.bench_projection", ["--device", "nonsense"]),
        ("sam_convex", ["missing.png", "--point", "1", "1", "--out", "m.png"]),
    ],
)
def test_a_real_process_exits_2_with_one_line(module, argv, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", module, *argv], capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.mark.parametrize("main", [corruptions.main, bench_projection.main, single_image.main])
def test_help_lists_the_options(main, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--help"])
    assert stop.value.code == 0
    text = capsys.readouterr().out
    assert "--out" in text and "--device" in text


def test_refused_commands_leave_no_folder_behind(paths, capsys):
    target = paths["root"] / "never" / "made"
    code, _ = run_main(corruptions.main, ["--severity", "9", "--out", str(target)], capsys)
    code2, _ = run_main(corruptions.main, ["--corruptions", "hail", "--out", str(target)], capsys)
    assert code == code2 == 2 and not (paths["root"] / "never").exists()
