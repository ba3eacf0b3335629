"""The convex-training experiment end to end on fixtures in the official layouts
(tiny model, one seed, one corruption), its cache, and its argument checks."""

import json

import pytest
import torch

from sam_convex import ConvexityLoss, StarShapeLoss

# The experiment trains issue 19's PromptNet with its eval.train loop (and its dataset fixtures).
pytest.importorskip("eval.train", reason="needs PromptNet's training loop (issue 19)")
from test_datasets import write_cvc, write_kvasir

from eval import convex_training

TINY = ["--size", "32", "--width", "2", "--depth", "2", "--epochs", "1", "--batch", "8", "--seeds", "1"]
TINY += ["--corruptions", "contrast", "--max-side", "40"]


def test_extra_terms_use_the_losses_on_training_shapes():
    logits = torch.randn(2, 1, 16, 16, requires_grad=True)
    target = (torch.rand(2, 1, 16, 16) > 0.5).float()
    assert convex_training.extra_terms("plain", 0.0) == {}
    for variant, loss in (("convexity", ConvexityLoss()(logits)), ("star", StarShapeLoss()(logits, target))):
        ((name, (weight, fn)),) = convex_training.extra_terms(variant, 2.0).items()
        assert name == variant and weight == 2.0
        assert torch.allclose(fn(logits, target, {}), loss)


def test_experiment_writes_the_table_and_resumes_from_its_cache(tmp_path, capsys):
    write_kvasir(tmp_path / "kvasir", n=20)
    write_cvc(tmp_path / "cvc", n=4)
    args = [*TINY, "--kvasir", str(tmp_path / "kvasir"), "--cvc", str(tmp_path / "cvc")]
    args += ["--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "out")]
    assert convex_training.main(args) == 0
    csv = (tmp_path / "out" / "convex_training.csv.gz").read_bytes()
    record = json.loads((tmp_path / "out" / "convex_training.json").read_text())
    # One weight per grid value of seed 0 was trained and scored on val; the best kept.
    assert {(s["variant"], s["weight"]) for s in record["selection"]} == {
        (v, w) for v, spec in convex_training.VARIANTS.items() for w in spec.weights
    }
    md = (tmp_path / "out" / "convex_training.md").read_text()
    for text in ("joint vs sequential", "CVC-ClinicDB", "Kvasir-SEG test", "contrast", "Training time per epoch"):
        assert text in md
    models = sorted((tmp_path / "cache").glob("model-*.pt"))
    assert len(models) == sum(len(v.weights) for v in convex_training.VARIANTS.values())
    stamps = [m.stat().st_mtime_ns for m in models]
    capsys.readouterr()
    assert convex_training.main(args) == 0  # everything from the cache: nothing retrained
    assert [m.stat().st_mtime_ns for m in models] == stamps
    assert (tmp_path / "out" / "convex_training.csv.gz").read_bytes() == csv


@pytest.mark.parametrize(
    "args,text",
    [
        (["--variants", "plain,nonsense"], "--variants: unknown nonsense"),
        (["--size", "36"], "--size must be >= 32 and divisible"),
        (["--max-side", "16"], "--max-side must be >= 32"),
        (["--severity", "6"], "--severity must be 1..5"),
        (["--corruptions", "rain"], "unknown corruption"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(args, text, tmp_path, capsys):
    (tmp_path / "k").mkdir()
    (tmp_path / "c").mkdir()
    with pytest.raises(SystemExit) as exit_:
        convex_training.main(["--kvasir", str(tmp_path / "k"), "--cvc", str(tmp_path / "c"), *args])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and text in err[0]
