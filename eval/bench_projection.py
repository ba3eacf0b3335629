"""`python -m eval.bench_projection`: speed and fidelity of proj_S, side by side in one run.

On the same damaged 256x256 masks (`bench_targets`), in one run:

* the floor: skimage's `convex_hull_image`, OpenCV's `convexHull` + fill and
  segment-anything's `remove_small_regions`, on the thresholded masks;
* `ConvexProjector()` (the exact polygon fit) and `GradientProjector()` (Adam on the
  smooth objective), one mask per call and `--batch` masks per call;
* the authors' reference procedure (an ICNN of width 130 with a skip layer, random
  start, Adam 2e-3, 2000 steps on the full pixel grid) on `--reference-masks` masks.

Timing: every repeat runs the methods back to back on each mask (the hull first), so
load from other work hits them alike; ratios to the hull's median are what to compare.
Fidelity: each result's objective, the squared distance mean_x (p(x) - mask(x))^2 of
the target to the returned mask, divided by that of a long, high-precision gradient fit
(`LONG_FIT`), and the IoU to the reference procedure's mask. The long fit and the
reference masks are cached under <out>/.cache/bench_projection/ (they take minutes to
hours on a CPU). A 12-megapixel target measures time and peak memory at photo size.
Writes <out>/bench_projection.{md,json} (<out>/bench_projection_gpu.* with a CUDA device).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from skimage.morphology import convex_hull_image
from tqdm import tqdm

from eval import runs
from eval.datasets import load_dataset
from eval.metrics import iou
from sam_convex import ICNN, ConvexProjector, GradientProjector, baselines, validation
from sam_convex.projection import grid_coords, limit_threads, squared_distance
from sam_convex.synthetic import MASK_SIZE, damaged_objects

BIG_IMAGE = (3000, 4000)  # 12 megapixels, a phone photo
# Photo sizes of the photo rows: (H, W) and the share of --photo-masks measured there.
PHOTO_SIZES = {"1920x1080": ((1080, 1920), 1.0), "12 MP": (BIG_IMAGE, 0.5)}
SKIMAGE_PHOTO_MASKS = 2  # skimage's hull takes about a second per megapixel
# The long high-precision fit that objective ratios are measured against.
LONG_FIT = dict(grid=96, width=48, depth=2, steps=1000, fine_steps=None, lr=0.01, sharpness=6.0, tol=0.0)
CACHE_VERSION = 1


# ---------------------------------------------------------------------------- targets


def scene_targets(
    count: int, seed: int = 0, damaged: bool = True, size: int = MASK_SIZE
) -> tuple[np.ndarray, np.ndarray]:
    """(targets (count, size, size) float32, truths (count, size, size) bool): the
    embedded scenes' objects, damaged as a segmenter's output
    (`sam_convex.synthetic.damaged_objects`)."""
    return damaged_objects([s.gt for s in load_dataset("scenes", seed=seed)], count, seed, size, damaged)


def bench_targets(count: int, seed: int = 0) -> np.ndarray:
    """(count, 256, 256) float32 damaged benchmark masks (see `scene_targets`)."""
    return scene_targets(count, seed)[0]


def photo_targets(count: int, size: tuple[int, int], seed: int = 0) -> np.ndarray:
    """Soft masks at photo size as SAM returns them: the benchmark's damaged objects
    (`scene_targets`: a bite, a hole, islands, ragged soft edges) as logits on a
    low-resolution frame (long side 256, SAM's mask size), each object at a random size
    (30-90% of the short side) and place, upsampled bilinearly to `size` and turned into
    probabilities, as SAM's `postprocess_masks` does: smooth at full resolution.

    Returns:
        (count, H, W) float32 probabilities.
    """
    height, width = size
    probs, _ = scene_targets(count, seed)
    logits = np.log(np.clip(probs, 1e-6, 1 - 1e-6) / np.clip(1 - probs, 1e-6, 1)).astype(np.float32)
    rng = np.random.default_rng(seed + 1)
    low = (
        (round(MASK_SIZE * height / width), MASK_SIZE)
        if width >= height
        else (MASK_SIZE, round(MASK_SIZE * width / height))
    )
    out = np.empty((count, height, width), np.float32)
    for i, logit in enumerate(logits):
        side = int(rng.uniform(0.3, 0.9) * min(low))
        frame = np.full(low, float(logit.min()), np.float32)
        y, x = int(rng.integers(0, low[0] - side + 1)), int(rng.integers(0, low[1] - side + 1))
        frame[y : y + side, x : x + side] = cv2.resize(logit, (side, side), interpolation=cv2.INTER_LINEAR)
        big = cv2.resize(frame, (width, height), interpolation=cv2.INTER_LINEAR)
        out[i] = 1 / (1 + np.exp(-big))
    return out


# ---------------------------------------------------------------------------- methods


def reference_fit(
    target: np.ndarray, steps: int = 2000, width: int = 130, lr: float = 2e-3, seed: int = 0, device: str = "cpu"
) -> np.ndarray:
    """The authors' procedure on one (H, W) target; returns the (H, W) bool mask."""
    h, w = target.shape
    net = ICNN(num_nets=1, width=width, depth=2).to(device)
    net.reset_random(torch.Generator().manual_seed(seed))
    coords = grid_coords(h, w, device)
    p = torch.from_numpy(target).to(device).reshape(1, -1)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        loss = squared_distance(torch.sigmoid(-net(coords)), p).sum()
        loss.backward()
        opt.step()
        net.clamp_()
    with torch.no_grad():
        return (net(coords) <= 0).reshape(h, w).cpu().numpy()


def objective(target: np.ndarray, mask: np.ndarray) -> float:
    """Squared distance of an (H, W) target to an (H, W) bool mask, per pixel."""
    pred = torch.from_numpy(np.asarray(mask, np.float32)).reshape(1, -1)
    return float(squared_distance(pred, torch.from_numpy(np.asarray(target, np.float32)).reshape(1, -1))[0])


def projectors(device: str) -> dict:
    """The projectors under test, by report name."""
    return {"ConvexProjector()": ConvexProjector(), "GradientProjector()": GradientProjector(device=device)}


# ---------------------------------------------------------------------------- timing


def time_single(targets: np.ndarray, device: str, repeats: int) -> tuple[dict, dict]:
    """Per method: wall times of one mask per call, all methods back to back per mask.

    Returns ({method: [seconds]}, {method: (N, H, W) bool results of the first repeat}).
    """
    binary = targets > 0.5
    on_device = torch.from_numpy(targets).to(device)
    methods = {
        "skimage convex_hull_image": lambda i: convex_hull_image(binary[i]),
        "cv2 convexHull + fill": lambda i: baselines.opencv_hull(binary[i]),
        "remove_small_regions": lambda i: baselines.remove_small(binary[i]),
    }
    for name, projector in projectors(device).items():
        methods[name] = lambda i, projector=projector: projector(on_device[i]).cpu().numpy()
    for method in methods.values():  # warm-up: allocators, kernels, lazy imports
        method(0)
    seconds = {name: [] for name in methods}
    results = {name: [None] * len(targets) for name in methods}
    for r in tqdm(range(repeats), desc="single masks", unit="repeat"):
        for i in range(len(targets)):
            for name, method in methods.items():
                start = time.perf_counter()
                out = method(i)
                if device.startswith("cuda"):
                    torch.cuda.synchronize()
                seconds[name].append(time.perf_counter() - start)
                if r == 0:
                    results[name][i] = out
    return seconds, {name: np.stack(masks) for name, masks in results.items()}


def time_batched(targets: np.ndarray, device: str, batch: int, repeats: int) -> tuple[dict, dict]:
    """Per projector: per-mask time ratio to the hull, calls of `batch` masks, the hull
    looped over the same masks right before, per repeat. Returns (ratios, masks)."""
    binary = targets > 0.5
    on_device = torch.from_numpy(targets).to(device)
    ratios, masks = {}, {}
    for name, projector in projectors(device).items():
        projector(on_device[:batch])  # warm-up
        ratios[name] = []
        for r in range(repeats):
            start = time.perf_counter()
            for m in binary:
                convex_hull_image(m)
            hull_s = time.perf_counter() - start
            start = time.perf_counter()
            out = [projector(on_device[b : b + batch]).cpu().numpy() for b in range(0, len(targets), batch)]
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            ratios[name].append(((time.perf_counter() - start) / len(targets), hull_s / len(targets)))
            if r == 0:
                masks[name] = np.concatenate(out)
    return ratios, masks


def time_photo(targets: np.ndarray, repeats: int, skimage_masks: int) -> dict:
    """Photo-size targets, one mask per call, methods back to back per mask (OpenCV's
    contour hull + fill first; skimage's hull once, on the first `skimage_masks` masks:
    about a second per megapixel). The hulls include thresholding the target. Each call
    follows a 1 ms pause, and a mask's time is the best of its `repeats`: on a shared
    machine a short call right after a long one is often preempted (measured here: the
    OpenCV hull took 1 ms, or 25 ms right after a projection).

    The projection is timed twice: as a call (the masks alone) and as `fit` (which also
    computes the distance of each mask to its target: one more pass over the image).

    Returns {method: [seconds per mask]} and, per mask, the objective ratio of the
    projection to the OpenCV hull ("objective / cv2 hull").
    """
    projector = ConvexProjector()
    methods = {
        "cv2 contour hull + fill": lambda t: baselines.opencv_hull(t > 0.5),
        "ConvexProjector()": lambda t: projector(t),
        "ConvexProjector().fit": lambda t: projector.fit(t).masks[0].numpy(),
    }
    for method in methods.values():
        method(targets[0])  # warm-up
    seconds = {name: [[] for _ in targets] for name in methods}
    skimage_s, ratios = [], []
    for r in range(repeats):
        for i, target in enumerate(targets):
            if r == 0 and i < skimage_masks:
                start = time.perf_counter()
                convex_hull_image(target > 0.5)
                skimage_s.append(time.perf_counter() - start)
            out = {}
            for name, method in methods.items():
                time.sleep(1e-3)
                start = time.perf_counter()
                out[name] = method(target)
                seconds[name][i].append(time.perf_counter() - start)
            if r == 0:
                ratios.append(
                    objective(target, out["ConvexProjector()"]) / objective(target, out["cv2 contour hull + fill"])
                )
    best = {name: [min(s) for s in per_mask] for name, per_mask in seconds.items()}
    return {"seconds": {"skimage convex_hull_image": skimage_s, **best}, "objective_vs_cv2_hull": ratios}


def time_workers(targets: np.ndarray, workers: list[int], repeats: int) -> dict:
    """All `targets` in one `ConvexProjector(workers=w).fit` call per repeat, for every
    w; the pool is started (and timed) before the repeats. Returns {w: {"seconds": [...],
    "start_s": pool start, "equal": masks equal to workers=1 bit for bit}}."""
    rows, first = {}, None
    for w in workers:
        projector = ConvexProjector(workers=w)
        start = time.perf_counter()
        projector.fit(targets[: 2 * w])  # starts the pool (w > 1)
        start_s = time.perf_counter() - start
        seconds = []
        for _ in range(repeats):
            start = time.perf_counter()
            masks = projector.fit(targets).masks
            seconds.append(time.perf_counter() - start)
        first = masks if first is None else first
        rows[w] = {"seconds": seconds, "start_s": start_s, "equal": bool(torch.equal(masks, first))}
    return rows


# ---------------------------------------------------------------------------- cached fits


def long_fits(targets: np.ndarray, seed: int, device: str, cache: Path) -> np.ndarray:
    """(N, H, W) bool masks of GradientProjector(**LONG_FIT), cached per target set."""
    path = cache / f"long_fit-{runs.key(CACHE_VERSION, seed, len(targets), LONG_FIT)}.npz"
    if path.exists():
        try:
            return runs.read_npz(path, keys=("masks",))["masks"]
        except ValueError as err:
            runs.warn_damaged(path, err)
    projector = GradientProjector(seed=seed, device=device, **LONG_FIT)
    masks = np.concatenate(
        [
            projector(torch.from_numpy(targets[b : b + 16]).to(device)).cpu().numpy()
            for b in tqdm(range(0, len(targets), 16), desc="long fit", unit="batch")
        ]
    )
    runs.write_npz(path, {"masks": masks})
    return masks


def reference_fits(targets: np.ndarray, steps: int, seed: int, device: str, cache: Path) -> tuple[list, list]:
    """Masks of the reference procedure and the seconds each took (as first measured),
    cached per target."""
    masks, seconds = [], []
    for i, target in enumerate(tqdm(targets, desc=f"reference, {steps} steps", unit="mask")):
        digest = runs.key(CACHE_VERSION, seed, steps, i, target.tobytes().hex()[:64], float(target.sum()))
        path = cache / f"reference-{digest}.npz"
        try:
            cached = runs.read_npz(path, keys=("mask", "seconds")) if path.exists() else None
        except ValueError as err:
            runs.warn_damaged(path, err)
            cached = None
        if cached is None:
            start = time.perf_counter()
            cached = {"mask": reference_fit(target, steps, 130, 2e-3, seed, device)}
            cached["seconds"] = np.array(time.perf_counter() - start)
            runs.write_npz(path, cached)
        masks.append(cached["mask"])
        seconds.append(float(cached["seconds"]))
    return masks, seconds


# ---------------------------------------------------------------------------- big image


def memory_kb(field: str) -> int:
    """VmRSS (resident now) or VmHWM (peak since the last `reset_peak`) in kB."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))


def reset_peak() -> None:
    """Restart the kernel's peak-RSS counter (Linux >= 4.0): imports and data generation
    before the measured step must not set the peak."""
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")


def big_image_child(queue, threads: int) -> None:
    """In a fresh process: peak memory and time of a 12-megapixel projection."""
    torch.set_num_threads(threads)
    # cv2 writes the float32 result directly: no larger temporary raises the peak before the fit
    small = np.ascontiguousarray(bench_targets(1, 0)[0], dtype=np.float32)
    target = cv2.resize(small, BIG_IMAGE[::-1], interpolation=cv2.INTER_LINEAR)
    projector = ConvexProjector(threads=threads)
    projector.fit(target[:64, :64])  # warm-up: lazy imports, allocations, the compiled code fit loads
    reset_peak()
    base = memory_kb("VmRSS")
    start = time.perf_counter()
    fit = projector.fit(target)
    fit_s = time.perf_counter() - start
    fit_peak = memory_kb("VmHWM")
    reset_peak()
    base_logits = memory_kb("VmRSS")
    start = time.perf_counter()
    logits = fit.logits
    logits_s = time.perf_counter() - start
    logits_peak = memory_kb("VmHWM")
    queue.put(
        {
            "pixels": int(target.size),
            "fit_s": fit_s,
            "fit_extra_mb": (fit_peak - base) / 1024,
            "logits_s": logits_s,
            "logits_extra_mb": (logits_peak - base_logits) / 1024,
            "mask_pixels": int(fit.masks.sum()),
            "logits_agree": bool(torch.equal(logits >= 0, fit.masks)),
        }
    )


def big_image(threads: int) -> dict:
    """`big_image_child` in a spawned process (its peak memory is its own)."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=big_image_child, args=(queue, threads))
    child.start()
    result = queue.get()
    child.join()
    return result


# ---------------------------------------------------------------------------- the run


def ratio_stats(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summarise_times(single_s: dict, batched_s: dict) -> tuple[dict, dict]:
    """Median times in ms and ratios to skimage's hull: one mask per call, and batched
    (the ratio per repeat to the hull looped over the same masks)."""
    hull = statistics.median(single_s["skimage convex_hull_image"])
    timing = {
        name: dict(
            ms=1e3 * statistics.median(s), ratio=statistics.median(s) / hull, ms_min=1e3 * min(s), ms_max=1e3 * max(s)
        )
        for name, s in single_s.items()
    }
    batched_timing = {
        name: dict(ms=1e3 * statistics.median(t for t, _ in r), ratio=ratio_stats([t / h for t, h in r]))
        for name, r in batched_s.items()
    }
    return timing, batched_timing


def fidelity_of(targets: np.ndarray, results: dict, long_masks: np.ndarray, reference: list) -> dict:
    """Per result: the objective relative to the long fit (median, min, max) and the IoU
    to the reference procedure's masks."""
    long_obj = [objective(t, m) for t, m in zip(targets, long_masks)]
    fidelity = {}
    for name, result in results.items():
        ratios = [objective(t, m) / lo for t, m, lo in zip(targets, result, long_obj)]
        fidelity[name] = dict(
            objective_ratio=ratio_stats(ratios),
            masks=len(ratios),
            iou_to_reference=[iou(m, r) for m, r in zip(result, reference)],
        )
    return fidelity


def photo_summary(p: dict) -> dict:
    """Median ms per method and its ratio to the two hulls' medians in the same run."""
    med = {name: statistics.median(s) for name, s in p["seconds"].items() if s}
    rows = {
        name: dict(
            ms=1e3 * m,
            ms_min=1e3 * min(p["seconds"][name]),
            ms_max=1e3 * max(p["seconds"][name]),
            x_cv2=m / med["cv2 contour hull + fill"],
            x_skimage=m / med["skimage convex_hull_image"],
            timed=len(p["seconds"][name]),
        )
        for name, m in med.items()
    }
    return dict(
        size=p["size"], masks=p["masks"], rows=rows, objective_vs_cv2_hull=ratio_stats(p["objective_vs_cv2_hull"])
    )


def workers_summary(rows: dict, masks: int) -> dict:
    """Per worker count: median seconds per call of `masks` masks, masks/s, speed-up
    over the first count."""
    base = statistics.median(rows[min(rows)]["seconds"])
    return {
        str(w): dict(
            seconds=statistics.median(r["seconds"]),
            masks_per_s=masks / statistics.median(r["seconds"]),
            speedup=base / statistics.median(r["seconds"]),
            start_s=r["start_s"],
            equal=r["equal"],
        )
        for w, r in rows.items()
    }


def run(
    masks: int = 64,
    batch: int = 16,
    repeats: int = 3,
    reference_masks: int = 3,
    reference_steps: int = 2000,
    device: str = "cpu",
    threads: int = 1,
    seed: int = 0,
    out: Path = Path("reports"),
    quick: bool = False,
    big: bool = True,
    photo_masks: int = 8,
    workers: tuple[int, ...] = (1, 2),
) -> dict:
    """Measure everything on the same targets and write the report; returns the results."""
    out = runs.check_writable(out)
    cache = out / ".cache" / "bench_projection"
    targets, _ = scene_targets(masks, seed)
    load_before = os.getloadavg()
    with limit_threads(threads):
        photo, first = {}, None  # first: the targets of the first photo size, also timed across workers
        for k, (name, (size, share)) in enumerate(PHOTO_SIZES.items()):
            if quick and k > 0:
                continue
            count = max(1, round(photo_masks * share))
            found = photo_targets(count, size, seed)
            photo[name] = dict(size=size, masks=count, **time_photo(found, repeats, SKIMAGE_PHOTO_MASKS))
            first = (name, found) if first is None else first
        workers_rows = {
            f"{masks} masks of {MASK_SIZE}x{MASK_SIZE}": (masks, time_workers(targets, list(workers), repeats)),
            f"{len(first[1])} masks of {first[0]}": (len(first[1]), time_workers(first[1], list(workers), repeats)),
        }
        single_s, single = time_single(targets, device, repeats)
        batched_s, batched = time_batched(targets, device, batch, repeats)
        load_after = os.getloadavg()
        long_masks = long_fits(targets, seed, device, cache)
        reference, reference_s = reference_fits(targets[:reference_masks], reference_steps, seed, device, cache)
    timing, batched_timing = summarise_times(single_s, batched_s)
    results = {
        **single,
        **{f"{name}, {batch} per call": m for name, m in batched.items()},
    }
    if reference:
        results["reference procedure"] = np.stack(reference)
    fidelity = fidelity_of(targets, results, long_masks, reference)
    exact = bool(np.array_equal(batched["ConvexProjector()"], single["ConvexProjector()"]))
    result = {
        "quick": quick,
        "masks": masks,
        "mask_size": MASK_SIZE,
        "batch": batch,
        "repeats": repeats,
        "seed": seed,
        "single": timing,
        "batched": batched_timing,
        "fidelity": fidelity,
        "reference": dict(masks=reference_masks, steps=reference_steps, seconds=reference_s),
        "long_fit": LONG_FIT,
        "batched_equals_single": exact,
        "projectors": {name: repr(p) for name, p in projectors(device).items()},
        "big_image": big_image(threads) if big else None,
        "photo": {name: photo_summary(p) for name, p in photo.items()},
        "workers": {name: workers_summary(rows, count) for name, (count, rows) in workers_rows.items()},
        "load_average": {"before": load_before, "after_timing": load_after},
        "device": runs.machine(device),
        "threads": threads,
        "versions": runs.versions(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    write_report(result, out, device)
    return result


# ---------------------------------------------------------------------------- report


def write_report(r: dict, out: Path, device: str) -> None:
    suffix = "_gpu" if device.startswith("cuda") else ""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"bench_projection{suffix}.json").write_text(json.dumps(r, indent=1, default=float) + "\n")
    (out / f"bench_projection{suffix}.md").write_text(markdown(r))


def markdown(r: dict) -> str:
    quick = " (QUICK: a shortened development run, not the reference numbers)" if r["quick"] else ""
    lines = [
        f"# proj_S speed and fidelity{quick}",
        "",
        f"Produced by `python -m eval.bench_projection` on {r['device']}, {r['threads']} torch/BLAS thread(s), "
        f"{r['date']}; seed {r['seed']}; {r['masks']} damaged benchmark masks of {r['mask_size']}x{r['mask_size']} "
        "(embedded scenes' objects with a bite, a hole, islands and ragged soft edges); model: none; checkpoint: "
        f"none. Versions: {', '.join(f'{k} {v}' for k, v in r['versions'].items())}.",
        "",
    ]
    lines += time_section(r) + fidelity_section(r) + photo_markdown(r) + big_image_section(r)
    lines += ["", "Projectors: " + "; ".join(f"`{v}`" for v in r["projectors"].values()) + "."]
    return "\n".join(lines) + "\n"


def time_section(r: dict) -> list[str]:
    """Time per mask, one per call and batched, against skimage's hull."""
    lines = [
        "## Time",
        "",
        f"One mask per call; every repeat ({r['repeats']}) runs the methods back to back on each mask; ratio = "
        "median time / median time of skimage's hull in the same run.",
        "",
        "| method | median ms per mask [min, max] | x skimage hull |",
        "|---|---|---|",
    ]
    for name, t in r["single"].items():
        lines.append(f"| {name} | {t['ms']:.2f} [{t['ms_min']:.2f}, {t['ms_max']:.2f}] | {t['ratio']:.2f} |")
    lines += [
        "",
        f"{r['batch']} masks per call (per-mask time; the ratio per repeat to the hull looped over the "
        "same masks right before; median [min, max]):",
        "",
        "| projector | ms per mask | x skimage hull |",
        "|---|---|---|",
    ]
    for name, t in r["batched"].items():
        q = t["ratio"]
        lines.append(f"| {name} | {t['ms']:.2f} | {q['median']:.2f} [{q['min']:.2f}, {q['max']:.2f}] |")
    ref = r["reference"]
    if ref["seconds"]:
        lines += [
            "",
            f"The reference procedure took {statistics.median(ref['seconds']):.0f} s per mask "
            f"(median of {len(ref['seconds'])}; as first measured, cached since).",
        ]
    return lines


def fidelity_section(r: dict) -> list[str]:
    """The objective against the long fit, and the IoU to the reference procedure."""
    ref = r["reference"]
    lines = [
        "",
        "## Fidelity",
        "",
        f"Objective = mean over pixels of (p - mask)^2 of the target to the returned mask, divided by that of "
        f"a long fit `GradientProjector(**{r['long_fit']})`; IoU to the mask of the authors' reference "
        + (
            f"procedure ({ref['steps']} Adam steps, width 130, full grid) on the first {ref['masks']} masks."
            if ref["masks"]
            else "procedure: not run (`--reference-masks 0`; about 35 minutes per mask on this CPU)."
        ),
        "",
        "| result | objective / long fit: median [min, max] | IoU to the reference |",
        "|---|---|---|",
    ]
    for name, f in r["fidelity"].items():
        q = f["objective_ratio"]
        ious = ", ".join(f"{v:.4f}" for v in f["iou_to_reference"])
        lines.append(f"| {name} ({f['masks']} masks) | {q['median']:.4f} [{q['min']:.4f}, {q['max']:.4f}] | {ious} |")
    lines += [
        "",
        f"`ConvexProjector()`, {r['batch']} per call, returned exactly the single calls' masks: "
        f"{r['batched_equals_single']}. The hulls and `remove_small_regions` are the floor in time, not "
        "competitors in fidelity: islands ruin the hulls, and `remove_small_regions` is not convex.",
    ]
    return lines


def big_image_section(r: dict) -> list[str]:
    """Time and peak memory of a 12-megapixel target (none when not measured)."""
    lines = []
    if not r["big_image"]:
        return []
    b = r["big_image"]
    lines += [
        "",
        "## A 12-megapixel target",
        "",
        f"`ConvexProjector().fit` of one {BIG_IMAGE[0]}x{BIG_IMAGE[1]} target (a benchmark mask scaled up), "
        f"in a fresh process: {b['fit_s']:.2f} s, peak memory {b['fit_extra_mb']:.0f} MB above the resident "
        f"memory before the call ({b['fit_extra_mb'] * 2**20 / b['pixels']:.1f} bytes per pixel; "
        "the float32 target itself is 4, the returned mask 1). "
        f"The full-resolution logits on request (`fit.logits`): {b['logits_s']:.2f} s, peak "
        f"{b['logits_extra_mb']:.0f} MB above the memory before that call "
        f"(the float32 logits are 4 bytes per pixel); masks == (logits >= 0): {b['logits_agree']}. "
        "Peaks: the kernel's VmHWM, reset before each call.",
    ]
    return lines


def photo_markdown(r: dict) -> list[str]:
    """The photo-size and workers sections of the report."""
    lines = [
        "",
        "## Photo size",
        "",
        "Soft masks as SAM returns them (`photo_targets`: the benchmark's damaged objects as low-resolution "
        "logits, at a random size and place, upsampled bilinearly to the photo size), one mask per call, the "
        "methods back to back per mask, each call after a 1 ms pause, per mask the best of "
        f"{r['repeats']} repeats (median over masks [min, max]); skimage's hull once on the first "
        f"{SKIMAGE_PHOTO_MASKS} masks (about a second per megapixel). The hulls include the threshold "
        "p > 0.5; OpenCV's is findContours + convexHull + fillConvexPoly of all contours. `ConvexProjector()` "
        "is a call (the masks alone); `ConvexProjector().fit` also computes each mask's distance to its target "
        "(`ConvexFit.losses`: one more pass over the image).",
        "",
        "| size | method | median ms per mask [min, max] | x OpenCV hull | x skimage hull |",
        "|---|---|---|---|---|",
    ]
    for name, p in r["photo"].items():
        for method, t in p["rows"].items():
            lines.append(
                f"| {name} ({p['masks']} masks) | {method} | {t['ms']:.2f} [{t['ms_min']:.2f}, {t['ms_max']:.2f}] | "
                f"{t['x_cv2']:.2f} | {t['x_skimage']:.3f} |"
            )
    lines += ["", "Objective of `ConvexProjector()` / objective of OpenCV's hull, median [min, max]: "]
    lines[-1] += (
        "; ".join(
            f"{name} {q['median']:.3f} [{q['min']:.3f}, {q['max']:.3f}]"
            for name, q in ((n, p["objective_vs_cv2_hull"]) for n, p in r["photo"].items())
        )
        + " (below 1: the projection is closer to the target than the hull)."
    )
    lines += [
        "",
        "## Across cores: `ConvexProjector(workers=w)`",
        "",
        "All masks in one `fit` call per repeat (median of the repeats); the worker pool is started before "
        "the repeats (its start is the last column). Same masks: bit for bit those of workers=1.",
        "",
        "| masks per call | workers | s per call | masks/s | x workers=1 | same masks | pool start |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, rows in r["workers"].items():
        for w, t in rows.items():
            lines.append(
                f"| {name} | {w} | {t['seconds']:.3f} | {t['masks_per_s']:.1f} | {t['speedup']:.2f} | {t['equal']} | "
                f"{t['start_s']:.2f} s |"
            )
    load = r["load_average"]
    lines += [
        "",
        f"Load average (1, 5, 15 min) of the machine: {', '.join(f'{v:.2f}' for v in load['before'])} before the "
        f"timings, {', '.join(f'{v:.2f}' for v in load['after_timing'])} after them (other work shares this "
        "machine; ratios are measured side by side).",
    ]
    return lines


DEFAULTS = {"masks": 64, "batch": 16, "repeats": 3, "reference_masks": 3, "reference_steps": 2000, "photo_masks": 8}
QUICK = {"masks": 8, "batch": 8, "repeats": 1, "reference_masks": 1, "reference_steps": 200, "photo_masks": 2}


def build_parser() -> validation.CommandLineParser:
    parser = validation.CommandLineParser(prog="python -m eval.bench_projection", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="development run (options not given: 8 masks, batch 8, 1 repeat, 1 reference mask of 200 steps, 2 "
        "photo masks; no 12 MP lines)",
    )
    parser.add_argument("--masks", type=int, help="benchmark masks (default 64)")
    parser.add_argument("--batch", type=int, help="masks per batched call (default 16)")
    parser.add_argument("--repeats", type=int, help="timing repeats (default 3)")
    parser.add_argument(
        "--reference-masks",
        type=int,
        help="masks fitted by the authors' reference procedure (default 3; ~35 min each on a 2-core CPU, cached; 0 "
        "skips it)",
    )
    parser.add_argument(
        "--photo-masks", type=int, help="SAM-like masks at 1920x1080, half as many at 12 MP (default 8)"
    )
    parser.add_argument("--workers", default="1,2", help="worker counts of the workers rows (default 1,2)")
    parser.add_argument("--reference-steps", type=int, help="its Adam steps (default 2000)")
    parser.add_argument("--device", default="cpu", help="torch device of the gradient fits (default cpu)")
    parser.add_argument("--threads", type=int, default=1, help="torch and BLAS threads (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the targets and the fits (default 0)")
    parser.add_argument("--out", default="reports", help="output directory (default reports/)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for name, default in (QUICK if args.quick else DEFAULTS).items():  # options given keep their value
        if getattr(args, name) is None:
            setattr(args, name, default)
    for name in ("masks", "batch", "repeats", "reference_steps", "threads", "photo_masks"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.reference_masks < 0:
        parser.error(f"--reference-masks must be >= 0, got {args.reference_masks}")
    try:
        workers = tuple(int(w) for w in args.workers.split(","))
    except ValueError:
        parser.error(f"--workers must be comma-separated integers, got {args.workers!r}")
    if any(w < 1 for w in workers):
        parser.error(f"--workers must be >= 1, got {args.workers!r}")
    if args.reference_masks > args.masks:
        parser.error(f"--reference-masks ({args.reference_masks}) cannot exceed --masks ({args.masks})")
    if args.seed < 0:
        parser.error(f"--seed must be >= 0, got {args.seed}")
    try:
        validation.device("--device", args.device)
        out = runs.check_writable(args.out)
        r = run(
            args.masks,
            args.batch,
            args.repeats,
            args.reference_masks,
            args.reference_steps,
            args.device,
            args.threads,
            args.seed,
            out,
            args.quick,
            big=not args.quick,
            photo_masks=args.photo_masks,
            workers=workers,
        )
    except (OSError, ValueError) as err:
        parser.fail(err)
    t, b = r["single"]["ConvexProjector()"], r["batched"]["ConvexProjector()"]["ratio"]["median"]
    f = r["fidelity"]["ConvexProjector()"]["objective_ratio"]
    print(
        f"ConvexProjector: single {t['ms']:.1f} ms ({t['ratio']:.2f}x the hull), batched {b:.2f}x the hull; "
        f"objective / long fit median {f['median']:.4f}, worst {f['max']:.4f}; report in {args.out}/"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
