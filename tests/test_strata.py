"""eval.corruptions.strata: Δ by raw IoU / solidity, spill and miss from the CSV columns."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from eval.corruptions import strata


def rows(image: str, raw: tuple, proj: tuple, gt: int, solidity: float) -> list[dict]:
    """(pred_area, intersection) of raw and proj_S -> the harness's CSV rows."""
    out = []
    for method, (area, inter) in (("raw", raw), ("proj_S", proj), ("convex_hull", raw)):
        out.append(
            {
                "image": image,
                "condition": "clean",
                "method": method,
                "iou": inter / (area + gt - inter),
                "pred_area": area,
                "gt_area": gt,
                "raw_solidity": solidity,
            }
        )
    return out


def test_spill_and_miss_are_recovered_from_iou_and_areas():
    # a: raw spills 50 px outside a 100 px object, proj_S removes all of it;
    # b: proj_S cuts 20 px out of the object (miss) that raw had.
    df = pd.DataFrame(rows("a", (150, 100), (100, 100), 100, 0.6) + rows("b", (100, 100), (80, 80), 100, 0.97))
    items = strata.item_table(df).set_index("image")
    assert items.loc["a", "spill_removed_pct"] == pytest.approx(50)
    assert items.loc["a", "miss_added_pct"] == pytest.approx(0, abs=1e-9)
    assert items.loc["b", "miss_added_pct"] == pytest.approx(20)
    assert items.loc["b", "delta"] == pytest.approx(0.8 - 1.0)
    gates = strata.gate_table(items.reset_index()).set_index("rule")["mean IoU"]
    # projecting only the low-solidity mask (a) keeps b's raw IoU: best of both
    assert gates["project when solidity < 0.70"] == pytest.approx(1.0)
    assert gates["never project (raw)"] == pytest.approx((100 / 150 + 1) / 2)
    assert strata.best_gate(items.reset_index())[0] == "project when solidity < 0.70"
    assert "When does proj_S help?" in strata.markdown(df)


def test_summary_transfers_the_gate_between_datasets(tmp_path):
    from eval.corruptions import summary

    dirs = []
    for dataset in ("kvasir-seg", "cvc-clinicdb"):
        df = pd.DataFrame(rows("a", (150, 100), (100, 100), 100, 0.6) + rows("b", (100, 100), (80, 80), 100, 0.97))
        df = pd.concat([df, df.assign(condition="contrast")])
        d = tmp_path / dataset
        d.mkdir()
        df.to_csv(d / "corruptions_sev5.csv", index=False)
        meta = {"dataset": dataset, "model": "PromptNet", "prompt": "box", "images": 2, "seed": 0}
        (d / "corruptions_sev5.json").write_text(json.dumps({**meta, "model_description": "test"}))
        dirs.append(d)
    text = summary.summarise(dirs)
    transfer = summary.gate_transfer([summary.load_run(d) for d in dirs])
    assert list(transfer["rule chosen on"]) == ["kvasir-seg", "cvc-clinicdb"]
    assert transfer["with the rule"].tolist() == pytest.approx([1.0, 1.0])
    assert "+0.067" in text  # clean Δ: (1 − 2/3 + 0.8 − 1) / 2
