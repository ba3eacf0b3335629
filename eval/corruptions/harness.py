"""The corruption benchmark's run: items, per-item evaluation, cache, table.

One item is (image, condition): the image under one condition (clean or a corruption at
the run's severity) is segmented once from the sample's prompt, and every method
post-processes that same output (see `METHODS`). `evaluate_item` is pure (everything
random is seeded from the run's seed, the image, the condition and the role), so an
item's record does not depend on which process or run computes it; `run` reads finished
items from the cache, computes the rest and writes the report.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from segment_anything import SamPredictor
from tqdm import tqdm

from eval import runs
from eval.corruptions import report
from eval.corruptions.corrupt import CORRUPTIONS, SEVERITIES, corrupt
from eval.corruptions.prompts import PROMPTS, has_positive, make_prompt
from eval.datasets import DATASETS, Sample, load_dataset
from eval.metrics import iou
from sam_convex import ConvexProjector, GrabCutPredictor, baselines, find_checkpoint, load_sam, validation
from sam_convex.loading import EMBED_DIM_TO_TYPE

METHODS = ("raw", "remove_small", "convex_hull", "proj_S")
CLEAN = "clean"
MODELS = ("sam", "grabcut")
CACHE_VERSION = 1
GRID_IMAGES = 3  # images whose masks are kept for the qualitative figure
EMPTY_LOGIT = -20.0  # the prediction when the prompt has nothing positive


@dataclass
class Model:
    """The predictor under test: `make(seed)` returns a ready SamPredictor-like object."""

    name: str  # "sam" or "grabcut"
    label: str  # how tables name the raw method, e.g. "SAM"
    description: str
    checkpoint: str  # path, or "none"
    make: Callable[[int], object]


def sam_model(sam, checkpoint: str) -> Model:
    """Wrap a loaded `Sam` in segment_anything's own SamPredictor (one for all items)."""
    kind = EMBED_DIM_TO_TYPE.get(sam.image_encoder.patch_embed.proj.out_channels, "")
    predictor = SamPredictor(sam)
    description = f"SAM {kind} (segment_anything.SamPredictor, multimask_output=False) on {sam.device}"
    return Model("sam", "SAM", description, checkpoint, lambda seed: predictor)


def choose_model(model: str | None, checkpoint: str | None, device: str | None) -> Model:
    """SAM when a checkpoint is given or found in checkpoints/, else GrabCut (unless
    `model` says which)."""
    if model is not None:
        validation.choice("model", model, MODELS)
    if model == "grabcut":
        if checkpoint is not None:
            raise ValueError("--checkpoint is for --model sam; GrabCut takes no checkpoint")
    else:
        if checkpoint is None:
            checkpoint = find_checkpoint()
            if checkpoint is None and model == "sam":
                raise FileNotFoundError(
                    "--model sam needs a SAM checkpoint: pass --checkpoint PATH or put one "
                    "(e.g. sam_vit_b_01ec64.pth) in checkpoints/ (see checkpoints/README.md)"
                )
        if checkpoint is not None:
            return sam_model(load_sam(checkpoint, device=device), str(checkpoint))
    description = "GrabCut (sam_convex.GrabCutPredictor, 5 iterations; a classical stand-in, not SAM)"
    return Model("grabcut", "GrabCut", description, "none", lambda seed: GrabCutPredictor(iterations=5, seed=seed))


def condition_image(sample: Sample, condition: str, severity: int, seed: int) -> np.ndarray:
    """The (H, W, 3) uint8 image the predictor sees under `condition` (seeded)."""
    if condition == CLEAN:
        return sample.image
    return corrupt(sample.image, condition, severity, runs.derive_seed(seed, sample.name, condition, "corruption"))


def predict_logits(
    sample: Sample, image: np.ndarray, condition: str, seed: int, model: Model, prompt: dict
) -> np.ndarray:
    """(H, W) float32 logits of the predictor on `image` (one mask per prompt)."""
    if not has_positive(prompt):  # nothing to point at: the prediction is empty
        return np.full(sample.gt.shape, EMPTY_LOGIT, np.float32)
    predictor = model.make(runs.derive_seed(seed, sample.name, condition, "predictor"))
    predictor.set_image(image)
    logits, _, _ = predictor.predict(**prompt, multimask_output=False, return_logits=True)
    return np.asarray(logits[0], dtype=np.float32)


def evaluate_item(
    sample: Sample, condition: str, severity: int, seed: int, model: Model, prompt: dict, projector: ConvexProjector
) -> tuple[dict, dict]:
    """Corrupt one image, predict once, post-process with every method, score.

    Returns:
        (record, masks): record is JSON-able (ious, areas, seeds, timings); masks maps
        method -> (H, W) bool.
    """
    timings = {}
    t0 = time.perf_counter()
    image = condition_image(sample, condition, severity, seed)
    timings["corrupt"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    logits = predict_logits(sample, image, condition, seed, model, prompt)
    timings["predict"] = time.perf_counter() - t0

    seeds = {m: runs.derive_seed(seed, sample.name, condition, m) for m in METHODS}
    raw = logits > 0
    t0 = time.perf_counter()
    masks = {"raw": raw, "remove_small": baselines.remove_small(raw), "convex_hull": baselines.convex_hull(raw)}
    timings["baselines"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    proj = dataclasses.replace(projector, seed=seeds["proj_S"])
    # The fit is many small operations: one thread is fastest on a CPU.
    with runs.torch_threads(1 if torch.device(proj.device or "cpu").type == "cpu" else None):
        fit = proj.fit(logits, logits=True)
    masks["proj_S"] = fit.masks[0].cpu().numpy()
    timings["proj_S"] = time.perf_counter() - t0
    record = {
        "image": sample.name,
        "condition": condition,
        "iou": {m: iou(masks[m], sample.gt) for m in METHODS},
        "area": {m: int(masks[m].sum()) for m in METHODS},
        "gt_area": int(sample.gt.sum()),
        "seeds": seeds,
        "proj_loss": float(fit.losses[0]),
        "time_s": timings,
    }
    return record, masks


def sample_digest(sample: Sample) -> str:
    """Hash of a sample's image, GT and scribbles (a cached item is reused only if equal)."""
    h = hashlib.sha256()
    for arr in (sample.image, sample.gt, sample.scribbles):
        if arr is not None:
            h.update(np.ascontiguousarray(arr).tobytes())
            h.update(str(arr.shape).encode())
    return h.hexdigest()[:16]


def cache_dir(
    out: Path,
    severity: int,
    dataset: str,
    data: str | None,
    model: Model,
    prompt: str,
    num_points: int,
    seed: int,
    projector: ConvexProjector,
) -> Path:
    """Where items are cached: a readable name + a hash of everything that changes an
    item's result (every projector setting included)."""
    settings = dataclasses.asdict(projector)
    digest = runs.key(
        CACHE_VERSION,
        dataset,
        str(Path(data).resolve()) if data else None,
        model.name,
        model.checkpoint,
        prompt,
        num_points,
        seed,
        settings,
    )
    name = f"{dataset}-{model.name}-{prompt.replace('+', '_')}-seed{seed}-{digest}"
    return Path(out) / ".cache" / f"corruptions_sev{severity}" / name


def read_cached(cache: Path, sample: Sample, condition: str, want_masks: bool) -> tuple[dict, dict | None] | None:
    """(record, masks or None) of a finished item, or None when it is missing or was
    computed from a different sample (image, GT or scribbles changed)."""
    stem = cache / f"{sample.name}__{condition}"
    json_path, npz_path = stem.with_suffix(".json"), stem.with_suffix(".npz")
    if not json_path.exists() or (want_masks and not npz_path.exists()):
        return None
    record = runs.read_json(json_path)
    if record.get("sample") != sample_digest(sample):
        return None
    if not want_masks:
        return record, None
    packed, size = runs.read_npz(npz_path), sample.gt.size
    masks = {m: np.unpackbits(packed[m])[:size].reshape(sample.gt.shape).astype(bool) for m in METHODS}
    return record, masks


def write_cached(cache: Path, sample: Sample, condition: str, record: dict, masks: dict | None) -> None:
    """Store a finished item: masks (bit-packed) first, the JSON record last, as the
    marker that the item is complete. Adds the sample's digest to `record`."""
    stem = cache / f"{sample.name}__{condition}"
    record["sample"] = sample_digest(sample)
    if masks is not None:
        runs.write_npz(stem.with_suffix(".npz"), {m: np.packbits(masks[m].ravel()) for m in METHODS})
    runs.write_json(stem.with_suffix(".json"), record)


def check_settings(severity: int, corruptions, prompt: str, dataset: str) -> None:
    validation.choice("severity", severity, SEVERITIES)
    unknown = [c for c in corruptions if c not in CORRUPTIONS]
    if unknown or not corruptions:
        raise ValueError(
            f"unknown corruption(s) {', '.join(unknown) or '(none given)'}; valid: {', '.join(CORRUPTIONS)}"
        )
    validation.choice("prompt", prompt, PROMPTS)
    validation.choice("dataset", dataset, DATASETS)


def run(
    severity: int = 5,
    dataset: str = "scenes",
    data: str | None = None,
    model: str | None = None,
    checkpoint: str | None = None,
    prompt: str = "points",
    corruptions: list[str] | tuple[str, ...] = CORRUPTIONS,
    limit: int | None = None,
    seed: int = 0,
    device: str | None = None,
    out: str | os.PathLike = "reports",
    fresh: bool = False,
    num_points: int = 3,
    projector: ConvexProjector | None = None,
    projector_steps: int | None = None,
    on_item: Callable[[dict], None] | None = None,
    progress: bool = True,
) -> dict[str, Path]:
    """Run the benchmark and write the report.

    Args: as the command-line options (see `eval.corruptions.__main__`); plus
        projector: the ConvexProjector to use (its seed is replaced per item); default
            `ConvexProjector()` with `projector_steps` if given.
        on_item: called with each item's record after it is computed and cached.
        progress: show a tqdm progress bar.
    Returns:
        paths of the written files: csv, markdown, meta, bars, deltas, grid.
    """
    check_settings(severity, corruptions, prompt, dataset)
    started = time.perf_counter()
    samples = load_dataset(dataset, data, limit=limit, seed=seed)
    chosen = choose_model(model, checkpoint, device)
    if projector is None:
        steps = {} if projector_steps is None else {"steps": projector_steps}
        projector = ConvexProjector(device=device, **steps)
    conditions = [CLEAN] + [c for c in CORRUPTIONS if c in corruptions]
    cache = cache_dir(Path(out), severity, dataset, data, chosen, prompt, num_points, seed, projector)
    cache.mkdir(parents=True, exist_ok=True)

    prompts = {s.name: make_prompt(s, prompt, num_points) for s in samples}
    grid_names = {s.name for s in samples[:GRID_IMAGES]}
    records, grid_masks, computed = [], {}, 0
    items = [(s, c) for s in samples for c in conditions]
    bar = tqdm(
        total=len(items), desc=f"corruptions sev{severity}", unit="item", disable=not progress, dynamic_ncols=True
    )
    for sample, cond in items:
        want_masks = sample.name in grid_names
        cached = None if fresh else read_cached(cache, sample, cond, want_masks)
        if cached is None:
            record, masks = evaluate_item(sample, cond, severity, seed, chosen, prompts[sample.name], projector)
            write_cached(cache, sample, cond, record, masks if want_masks else None)
            computed += 1
            if on_item is not None:
                on_item(record)
        else:
            record, masks = cached
        records.append(record)
        if want_masks:
            grid_masks[(sample.name, cond)] = masks
        bar.set_postfix(computed=computed, cached=len(records) - computed, refresh=False)
        bar.update()
    bar.close()

    df = results_table(records, severity, seed, chosen, dataset, prompt)
    meta = report.run_metadata(
        model=chosen,
        dataset=dataset,
        data=data,
        samples=len(samples),
        severity=severity,
        seed=seed,
        prompt=prompt,
        num_points=num_points,
        projector=projector,
        wall_s=time.perf_counter() - started,
        computed=computed,
        items=len(records),
        compute_s=sum(sum(r["time_s"].values()) for r in records),
    )
    by_name = {s.name: s for s in samples}
    grid_images = {k: condition_image(by_name[k[0]], k[1], severity, seed) for k in grid_masks}
    return report.write_report(df, conditions, Path(out), severity, meta, samples, grid_masks, grid_images)


def results_table(
    records: list[dict], severity: int, seed: int, model: Model, dataset: str, prompt: str
) -> pd.DataFrame:
    """One row per (image, condition, method)."""
    rows = [
        {
            "image": r["image"],
            "condition": r["condition"],
            "severity": severity,
            "method": m,
            "iou": r["iou"][m],
            "seed": r["seeds"][m],
            "base_seed": seed,
            "model": model.name,
            "checkpoint": model.checkpoint,
            "dataset": dataset,
            "prompt": prompt,
            "pred_area": r["area"][m],
            "gt_area": r["gt_area"],
        }
        for r in records
        for m in METHODS
    ]
    return pd.DataFrame(rows)
