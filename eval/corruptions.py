"""`python -m eval.corruptions --severity 5`: SAM vs proj_S(SAM) under image corruptions.

For every image of the benchmark and every condition (clean + the eight corruptions of
the paper at one severity) the predictor (SAM, or GrabCut where no checkpoint is
available) runs once from the same prompt, and four methods post-process its output:

    raw           the predictor's mask (logits > 0)
    remove_small  segment-anything's remove_small_regions (holes, then islands)
    convex_hull   convex hull of the raw mask
    proj_S        ConvexProjector fitted to the predictor's soft logits

Each result's IoU against the ground truth goes to a CSV (one row per image x condition
x method), a markdown table in the paper's layout and plots (see `eval.report`).

Per-(image, condition) results are cached as JSON under <out>/.cache/corruptions_sev<S>/
<key>/ (key: dataset, model, prompt, seed, projector settings), so a killed run resumes;
--fresh ignores the cache. Randomness: one seed per (image, condition, role) is derived
from --seed (roles: the corruption, the predictor, each method), so reruns give the same
table.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import hashlib
import json
import os
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from eval import report
from eval.compat import CORRUPTIONS, SEVERITIES, corrupt
from eval.datasets import DATASETS, Sample, load_dataset
from eval.metrics import iou
from eval.prompts import PROMPTS, has_positive, make_prompt
from sam_convex import ConvexProjector, baselines

METHODS = ("raw", "remove_small", "convex_hull", "proj_S")
CLEAN = "clean"
MODELS = ("sam", "grabcut")
CACHE_VERSION = 1
GRID_IMAGES = 3  # images whose masks are kept for the qualitative figure
EMPTY_LOGIT = -20.0  # the prediction when the prompt has nothing positive


def derive_seed(base: int, *keys: str) -> int:
    """A seed in [0, 2**31) from the base seed and string keys, stable across runs and
    platforms (31 bits: OpenCV's setRNGSeed takes a signed C int)."""
    entropy = [int(base)] + [zlib.crc32(k.encode()) for k in keys]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0]) & 0x7FFFFFFF


@dataclass
class Model:
    """The predictor under test: `make(seed)` returns a ready SamPredictor-like object."""

    name: str        # "sam" or "grabcut"
    label: str       # how tables name the raw method, e.g. "SAM"
    description: str
    checkpoint: str  # path, or "none"
    make: Callable[[int], object]


def sam_model(sam, checkpoint: str) -> Model:
    """Wrap a loaded `Sam` in segment_anything's own SamPredictor (one for all items)."""
    from segment_anything import SamPredictor

    from sam_convex.backends import EMBED_DIM_TO_TYPE

    kind = EMBED_DIM_TO_TYPE.get(sam.image_encoder.patch_embed.proj.out_channels, "")
    predictor = SamPredictor(sam)
    return Model("sam", "SAM", f"SAM {kind} (segment_anything.SamPredictor, "
                 f"multimask_output=False) on {sam.device}", checkpoint, lambda seed: predictor)


def choose_model(model: str | None, checkpoint: str | None, device: str | None) -> Model:
    """SAM when a checkpoint is given or found in checkpoints/, else GrabCut (unless
    `model` says which)."""
    from sam_convex.backends import GrabCutPredictor, find_checkpoint, load_sam

    if model is not None and model not in MODELS:
        raise ValueError(f"unknown model {model!r}; valid: {', '.join(MODELS)}")
    if model == "grabcut":
        if checkpoint is not None:
            raise ValueError("--checkpoint is for --model sam; GrabCut takes no checkpoint")
    else:
        if checkpoint is None:
            checkpoint = find_checkpoint()
            if checkpoint is None and model == "sam":
                raise FileNotFoundError(
                    "--model sam needs a SAM checkpoint: pass --checkpoint PATH or put one "
                    "(e.g. sam_vit_b_01ec64.pth) in checkpoints/ (see checkpoints/README.md)")
        if checkpoint is not None:
            return sam_model(load_sam(checkpoint, device=device), str(checkpoint))
    return Model("grabcut", "GrabCut", "GrabCut (sam_convex.backends.GrabCutPredictor, "
                 "5 iterations; a classical stand-in, not SAM)", "none",
                 lambda seed: GrabCutPredictor(iterations=5, seed=seed))


@contextlib.contextmanager
def torch_threads(n: int | None):
    """Run the block with n torch intra-op threads (None: unchanged). The projector's
    small per-mask fit is fastest single-threaded on CPU: on a busy 2-core machine, 2
    threads made a 50-step fit ~100x slower (13 s vs 0.13 s) than 1 thread."""
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def condition_image(sample: Sample, condition: str, severity: int, seed: int) -> np.ndarray:
    """The (H, W, 3) uint8 image the predictor sees under `condition` (seeded)."""
    if condition == CLEAN:
        return sample.image
    return corrupt(sample.image, condition, severity,
                   derive_seed(seed, sample.name, condition, "corruption"))


def evaluate_item(sample: Sample, condition: str, severity: int, seed: int, model: Model,
                  prompt: dict, projector: ConvexProjector) -> tuple[dict, dict]:
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
    if has_positive(prompt):
        predictor = model.make(derive_seed(seed, sample.name, condition, "predictor"))
        predictor.set_image(image)
        logits, _, _ = predictor.predict(**prompt, multimask_output=False, return_logits=True)
        logits = np.asarray(logits[0], dtype=np.float32)
    else:  # nothing to point at: the prediction is empty (and IoU vs an empty GT is 1)
        logits = np.full(sample.gt.shape, EMPTY_LOGIT, np.float32)
    timings["predict"] = time.perf_counter() - t0

    seeds = {m: derive_seed(seed, sample.name, condition, m) for m in METHODS}
    raw = logits > 0
    t0 = time.perf_counter()
    masks = {"raw": raw, "remove_small": baselines.remove_small(raw),
             "convex_hull": baselines.convex_hull(raw)}
    timings["baselines"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    proj = copy.copy(projector)
    proj.seed = seeds["proj_S"]
    with torch_threads(1 if torch.device(proj.device or "cpu").type == "cpu" else None):
        fit = proj.fit(logits, logits=True)
    masks["proj_S"] = fit.masks[0].cpu().numpy()
    timings["proj_S"] = time.perf_counter() - t0
    record = {
        "image": sample.name, "condition": condition,
        "iou": {m: iou(masks[m], sample.gt) for m in METHODS},
        "area": {m: int(masks[m].sum()) for m in METHODS},
        "gt_area": int(sample.gt.sum()), "seeds": seeds,
        "proj_loss": float(fit.losses[0]), "time_s": timings,
    }
    return record, masks


def cache_key(dataset: str, data: str | None, model: Model, prompt: str, num_points: int,
              seed: int, projector: ConvexProjector) -> str:
    """Directory name for cached items: readable prefix + hash of everything that
    changes an item's result."""
    ident = json.dumps([CACHE_VERSION, dataset, str(Path(data).resolve()) if data else None,
                        model.name, model.checkpoint, prompt, num_points, seed, repr(projector)])
    digest = hashlib.sha256(ident.encode()).hexdigest()[:10]
    return f"{dataset}-{model.name}-{prompt.replace('+', '_')}-seed{seed}-{digest}"


def write_atomic(path: Path, write: Callable[[str], None]) -> None:
    """Call write(tmp_path), then rename tmp_path to path (no half-written files)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def sample_digest(sample: Sample) -> str:
    """Hash of a sample's image, GT and scribbles (a cached item is reused only if equal)."""
    h = hashlib.sha256()
    for arr in (sample.image, sample.gt, sample.scribbles):
        if arr is not None:
            h.update(np.ascontiguousarray(arr).tobytes())
            h.update(str(arr.shape).encode())
    return h.hexdigest()[:16]


def save_masks(path: str, masks: dict[str, np.ndarray]) -> None:
    """Bit-packed masks, one array per method (np.savez_compressed)."""
    with open(path, "wb") as f:
        np.savez_compressed(f, **{m: np.packbits(masks[m].ravel()) for m in METHODS})


def run(severity: int = 5, dataset: str = "scenes", data: str | None = None,
        model: str | None = None, checkpoint: str | None = None, prompt: str = "points",
        corruptions: list[str] | tuple[str, ...] = CORRUPTIONS, limit: int | None = None,
        seed: int = 0, device: str | None = None, out: str | os.PathLike = "reports",
        fresh: bool = False, num_points: int = 3, projector: ConvexProjector | None = None,
        projector_steps: int | None = None, on_item: Callable[[dict], None] | None = None,
        progress: bool = True) -> dict[str, Path]:
    """Run the benchmark and write the report.

    Args: as the command-line options (see `main`); plus
        projector: the ConvexProjector to use (its seed is replaced per item); default
            `ConvexProjector()` with `projector_steps` if given.
        on_item: called with each item's record after it is computed and cached.
        progress: show a tqdm progress bar.
    Returns:
        paths of the written files: csv, markdown, bars, deltas, grid.
    """
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {', '.join(map(str, SEVERITIES))}, got {severity!r}")
    unknown = [c for c in corruptions if c not in CORRUPTIONS]
    if unknown or not corruptions:
        raise ValueError(f"unknown corruption(s) {', '.join(unknown) or '(none given)'}; "
                         f"valid: {', '.join(CORRUPTIONS)}")
    if prompt not in PROMPTS:
        raise ValueError(f"unknown prompt {prompt!r}; valid: {', '.join(PROMPTS)}")
    started = time.perf_counter()
    samples = load_dataset(dataset, data, limit=limit, seed=seed)
    chosen = choose_model(model, checkpoint, device)
    if projector is None:
        projector = ConvexProjector(device=device) if projector_steps is None else \
            ConvexProjector(steps=projector_steps, device=device)
    conditions = [CLEAN] + [c for c in CORRUPTIONS if c in corruptions]

    out = Path(out)
    cache = out / ".cache" / f"corruptions_sev{severity}" / cache_key(
        dataset, data, chosen, prompt, num_points, seed, projector)
    cache.mkdir(parents=True, exist_ok=True)
    records, grid_masks, computed = [], {}, 0
    items = [(s, c) for s in samples for c in conditions]
    grid_names = {s.name for s in samples[:GRID_IMAGES]}
    by_name = {s.name: s for s in samples}
    prompts = {s.name: make_prompt(s, prompt, num_points) for s in samples}
    digests = {s.name: sample_digest(s) for s in samples}
    bar = tqdm(total=len(items), desc=f"corruptions sev{severity}", unit="item",
               disable=not progress, dynamic_ncols=True)
    for sample, cond in items:
        stem = cache / f"{sample.name}__{cond}"
        json_path, npz_path = stem.with_suffix(".json"), stem.with_suffix(".npz")
        want_masks = sample.name in grid_names
        record = None
        if not fresh and json_path.exists() and (npz_path.exists() or not want_masks):
            record = json.loads(json_path.read_text())
            if record.get("sample") != digests[sample.name]:
                record = None  # the image, GT or scribbles changed since it was cached
        if record is not None:
            if want_masks:
                with np.load(npz_path) as z:
                    grid_masks[(sample.name, cond)] = {
                        m: np.unpackbits(z[m])[: sample.gt.size].reshape(sample.gt.shape).astype(bool)
                        for m in METHODS}
        else:
            record, masks = evaluate_item(sample, cond, severity, seed, chosen,
                                          prompts[sample.name], projector)
            record["sample"] = digests[sample.name]
            computed += 1
            if want_masks:
                grid_masks[(sample.name, cond)] = masks
                write_atomic(npz_path, lambda p: save_masks(p, masks))
            write_atomic(json_path, lambda p: Path(p).write_text(json.dumps(record)))
            if on_item is not None:
                on_item(record)
        records.append(record)
        bar.set_postfix(computed=computed, cached=len(records) - computed, refresh=False)
        bar.update()
    bar.close()

    rows = [{"image": r["image"], "condition": r["condition"], "severity": severity,
             "method": m, "iou": r["iou"][m], "seed": r["seeds"][m], "base_seed": seed,
             "model": chosen.name, "checkpoint": chosen.checkpoint, "dataset": dataset,
             "prompt": prompt, "pred_area": r["area"][m], "gt_area": r["gt_area"]}
            for r in records for m in METHODS]
    df = pd.DataFrame(rows)
    meta = report.run_metadata(
        model=chosen, dataset=dataset, data=data, samples=len(samples), severity=severity,
        seed=seed, prompt=prompt, num_points=num_points, projector=projector,
        wall_s=time.perf_counter() - started, computed=computed, items=len(records),
        compute_s=sum(sum(r["time_s"].values()) for r in records))
    grid_images = {key: condition_image(by_name[key[0]], key[1], severity, seed)
                   for key in grid_masks}
    return report.write_report(df, conditions, out, severity, meta, samples, grid_masks,
                               grid_images)


def parse_list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m eval.corruptions",
        description="Mean IoU of a predictor (SAM, or GrabCut without a checkpoint) and of "
                    "proj_S and baselines applied to its output, clean and under the paper's "
                    "eight image corruptions at one severity.")
    parser.add_argument("--severity", type=int, default=5,
                        help="corruption severity, one of 1..5 (default 5)")
    parser.add_argument("--dataset", default="scenes",
                        help=f"one of {', '.join(DATASETS)} (default scenes, the embedded "
                             "benchmark generated from scikit-image photos)")
    parser.add_argument("--data", metavar="ROOT", default=None,
                        help="dataset directory (convexitydb/folder); for scenes, where to cache it")
    parser.add_argument("--model", default=None,
                        help="sam or grabcut (default: sam if a checkpoint is given or found "
                             "in checkpoints/, else grabcut)")
    parser.add_argument("--checkpoint", metavar="PATH", default=None, help="SAM checkpoint (.pth)")
    parser.add_argument("--prompt", default="points",
                        help=f"one of {', '.join(PROMPTS)} (default points: K positive points on "
                             "the foreground scribble, K negative on the background scribble; "
                             "box: the ground truth's bounding box)")
    parser.add_argument("--points", type=int, default=3, dest="num_points", metavar="K",
                        help="points per class for point prompts (default 3)")
    parser.add_argument("--corruptions", default=",".join(CORRUPTIONS), metavar="NAMES",
                        help=f"comma-separated subset of {','.join(CORRUPTIONS)} (default all)")
    parser.add_argument("--limit", type=int, default=None, metavar="N",
                        help="only the first N images")
    parser.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    parser.add_argument("--device", default=None, help="torch device (default cuda if available)")
    parser.add_argument("--projector-steps", type=int, default=None, metavar="N",
                        help="Adam steps of the projector (default: ConvexProjector's default)")
    parser.add_argument("--out", default="reports", metavar="DIR",
                        help="output directory (default reports/)")
    parser.add_argument("--fresh", action="store_true", help="ignore cached per-item results")
    args = parser.parse_args(argv)
    if args.severity not in SEVERITIES:
        parser.error(f"--severity must be one of {', '.join(map(str, SEVERITIES))}, got {args.severity}")
    for name, valid in (("dataset", DATASETS), ("prompt", PROMPTS)):
        if getattr(args, name) not in valid:
            parser.error(f"--{name} must be one of {', '.join(valid)}, got {getattr(args, name)!r}")
    if args.model is not None and args.model not in MODELS:
        parser.error(f"--model must be one of {', '.join(MODELS)}, got {args.model!r}")
    corruptions = parse_list(args.corruptions)
    unknown = [c for c in corruptions if c not in CORRUPTIONS]
    if unknown or not corruptions:
        parser.error(f"unknown corruption(s) {', '.join(unknown) or '(none given)'}; "
                     f"valid: {', '.join(CORRUPTIONS)}")
    if args.limit is not None and args.limit < 1:
        parser.error(f"--limit must be >= 1, got {args.limit}")
    try:
        paths = run(severity=args.severity, dataset=args.dataset, data=args.data,
                    model=args.model, checkpoint=args.checkpoint, prompt=args.prompt,
                    corruptions=corruptions, limit=args.limit, seed=args.seed,
                    device=args.device, out=args.out, fresh=args.fresh,
                    num_points=args.num_points, projector_steps=args.projector_steps)
    except (FileNotFoundError, ValueError, FileExistsError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    meta = json.loads(paths["meta"].read_text())
    print(f"model: {meta['model']} (checkpoint: {meta['checkpoint']})")
    print(f"dataset: {meta['dataset']} ({meta['images']} images), severity {meta['severity']}, "
          f"prompt {meta['prompt']}, seed {meta['seed']}")
    print(f"items: {meta['items']} ({meta['computed']} computed, "
          f"{meta['items'] - meta['computed']} from cache), wall time {meta['wall_s']:.1f} s")
    print(f"report: {paths['markdown']}")
    for key in ("csv", "bars", "deltas", "grid"):
        print(f"        {paths[key]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
