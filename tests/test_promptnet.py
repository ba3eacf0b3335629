"""sam_convex.promptnet (the promptable U-Net) and eval.train (its training command), on
tiny fixtures in Kvasir-SEG's layout (never the real images)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from test_datasets import write_cvc, write_kvasir

from eval import train as train_mod
from eval.corruptions.__main__ import main as corruptions_main
from sam_convex import ConvexProjector
from sam_convex.promptnet import PromptNet, PromptNetPredictor, load_promptnet, prompt_channels, save_promptnet
from sam_convex.segmenters import choose_segmenter


def test_prompt_channels_put_prompts_where_they_are():
    maps = prompt_channels(
        np.array([[10.0, 5.0], [40.0, 30.0]]), np.array([1, 0]), np.array([8, 4, 24, 20]), (40, 48), 48
    )
    scale = 48 / 40  # rows are stretched from 40 to 48
    pos, neg, box = maps
    assert np.unravel_index(pos.argmax(), pos.shape) == (round(5.5 * scale - 0.5), 10)
    assert np.unravel_index(neg.argmax(), neg.shape) == (round(30.5 * scale - 0.5), 40)
    assert box[int(4 * scale) + 1, 9] == 1 and box[0, 0] == 0 and box.sum() == 20 * 16  # rows 4..23, cols 8..23


def test_predictor_returns_full_size_logits_that_proj_s_fits():
    torch.manual_seed(0)
    net = PromptNet(width=4, depth=2, size=32)
    image = np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    predictor = PromptNetPredictor(net)
    predictor.set_image(image)
    logits, _, low = predictor.predict(box=np.array([10, 10, 40, 30]), return_logits=True)
    assert logits.shape == (1, 50, 70) and logits.dtype == np.float32 and low.shape == (1, 32, 32)
    with pytest.raises(ValueError, match="box or a positive point"):
        predictor.predict(point_coords=np.array([[5.0, 5.0]]), point_labels=np.array([0]))
    fit = ConvexProjector().fit(logits, logits=True)
    assert fit.masks.shape == (1, 50, 70)


def test_checkpoint_round_trip_and_segmenter(tmp_path):
    net = PromptNet(width=4, depth=2, size=32)
    save_promptnet(tmp_path / "p.pt", net)
    again = load_promptnet(tmp_path / "p.pt")
    for a, b in zip(net.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)
    chosen = choose_segmenter("promptnet", tmp_path / "p.pt")
    assert chosen.kind == "promptnet" and "PromptNet" in chosen.description
    with pytest.raises(FileNotFoundError, match=r"eval\.train"):
        choose_segmenter("promptnet", None)
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(ValueError, match=r"junk\.pt"):
        load_promptnet(tmp_path / "junk.pt")


def test_train_resumes_and_reports(tmp_path):
    """Two epochs in one go equal one epoch, a stop, and a resumed second epoch."""
    data = tmp_path / "kvasir"
    write_kvasir(data, n=10)
    args = ["--data", str(data), "--size", "32", "--width", "4", "--depth", "2", "--batch", "4", "--threads", "1"]
    once = tmp_path / "once"
    with pytest.warns(UserWarning):
        train_mod.main(
            [*args, "--epochs", "2", "--work", str(once), "--save", str(once / "m.pt"), "--report", str(once)]
        )
    twice = tmp_path / "twice"
    settings = train_mod.TrainSettings(data=str(data), size=32, width=4, depth=2, batch=4, epochs=2)
    with pytest.warns(UserWarning):  # stopped after epoch 1 (for time): the best so far is saved
        stopped = train_mod.train(settings, twice, twice / "m.pt", twice, progress=False, stop_after=1)
    assert stopped["epochs_done"] == 1 and "Stopped after epoch 1 of 2" in (twice / "train_promptnet.md").read_text()
    with pytest.warns(UserWarning):  # a rerun without stop_after resumes at epoch 2
        summary = train_mod.train(settings, twice, twice / "m.pt", twice, progress=False)
    first = json.loads((once / "train_promptnet.json").read_text())
    assert len(summary["history"]) == 2 and summary["history"][0]["epoch"] == 1
    assert [r["train_loss"] for r in summary["history"]] == pytest.approx([r["train_loss"] for r in first["history"]])
    assert (twice / "train_promptnet.md").exists() and (twice / "train_promptnet.png").exists()
    assert load_promptnet(twice / "m.pt").config["size"] == 32


def test_extra_loss_term_is_added(tmp_path):
    data = tmp_path / "kvasir"
    write_kvasir(data, n=10)
    seen = []

    def spy(logits, target, batch):
        seen.append(batch["inputs"].shape)
        return logits.mean() * 0

    settings = train_mod.TrainSettings(data=str(data), size=32, width=4, depth=2, batch=4, epochs=1)
    with pytest.warns(UserWarning):
        summary = train_mod.train(settings, tmp_path / "w", tmp_path / "m.pt", None, {"spy": (0.5, spy)}, False)
    assert seen and seen[0][1:] == (6, 32, 32) and summary["loss_terms"]["spy"] == 0.5


def test_bad_arguments_exit_2(tmp_path, capsys):
    for argv in (["--data", str(tmp_path), "--loss", "focal=1"], ["--data", str(tmp_path), "--size", "33"]):
        with pytest.raises(SystemExit) as info:
            train_mod.main(argv)
        assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        train_mod.main(["--data", str(tmp_path / "nowhere"), "--work", str(tmp_path / "w")])
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 2 and "datasets.simula.no" in err[-1]


@pytest.mark.parametrize("dataset", ["kvasir-seg", "cvc-clinicdb"])
def test_corruption_benchmark_runs_promptnet_on_real_layouts(tmp_path, dataset):
    """The benchmark command on fixtures in the official layouts, with PromptNet."""
    data = tmp_path / "data"
    (write_kvasir if dataset == "kvasir-seg" else write_cvc)(data)
    torch.manual_seed(0)
    save_promptnet(tmp_path / "p.pt", PromptNet(width=4, depth=2, size=32))
    out = tmp_path / "out"
    argv = ["--dataset", dataset, "--data", str(data), "--model", "promptnet", "--checkpoint", str(tmp_path / "p.pt")]
    argv += ["--prompt", "box", "--corruptions", "contrast", "--limit", "1", "--max-side", "40", "--out", str(out)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the fixture's JPEG masks
        assert corruptions_main(argv) == 0
    meta = json.loads((out / "corruptions_sev5.json").read_text())
    assert meta["model"] == "PromptNet" and meta["dataset"] == dataset and meta["max_side"] == 40
    assert "When does proj_S help?" in (out / "corruptions_sev5.md").read_text()
