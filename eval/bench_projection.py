"""`python -m eval.bench_projection`: speed and fidelity of proj_S.

Measures, in one run on the same masks:
  (a) the authors' reference fit: an ICNN of width 130 with one hidden skip layer,
      random initialisation, Adam lr 2e-3, 2000 steps on the full 256x256 pixel grid,
      squared error between sigmoid(-G) and the target (the paper's distance);
  (b) the default `ConvexProjector`, one mask per call;
  (c) the default `ConvexProjector`, `--batch` masks per call.
Fidelity: IoU of (b) and (c) to (a)'s mask, and each result's objective — the squared
distance sum_x (p(x) - mask(x))^2 / (H W) of the target to the returned convex mask —
relative to a long, high-precision fit of the same target (`LONG_FIT`).

Targets are 256x256 soft masks like real predictor output: the embedded benchmark's
convex objects with bites, holes, islands and noisy edges (fixed seed).
Writes reports/bench_projection.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import gaussian_filter
from skimage.transform import resize
from tqdm import tqdm

from eval.datasets import load_dataset
from eval.metrics import iou
from sam_convex import ICNN, ConvexProjector
from sam_convex.projection import grid_coords, squared_distance

SIZE = 256
# The long high-precision fit that objective ratios are measured against.
LONG_FIT = dict(grid=96, width=48, depth=2, steps=1000, fine_steps=None, lr=0.01, sharpness=6.0, tol=0.0)


def bench_targets(count: int, seed: int = 0) -> np.ndarray:
    """(count, 256, 256) float32 probabilities: benchmark objects, damaged like a
    segmenter's output (a bite, a hole, islands, ragged soft edges)."""
    samples = load_dataset("scenes", seed=seed)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    targets = []
    for i in range(count):
        gt = samples[i % len(samples)].gt
        rows, cols = np.nonzero(gt)
        cy, cx = (rows.min() + rows.max()) / 2, (cols.min() + cols.max()) / 2
        half = max(np.ptp(rows), np.ptp(cols)) * rng.uniform(0.6, 0.9) + 4
        y0, x0 = int(max(0, cy - half)), int(max(0, cx - half))
        crop = gt[y0 : int(cy + half) + 1, x0 : int(cx + half) + 1]
        obj = resize(crop.astype(float), (SIZE, SIZE), order=0) > 0.5
        r_obj = np.sqrt(obj.sum() / np.pi)
        ys, xs = np.nonzero(obj)
        edge = obj & ~np.roll(obj, 3, axis=int(rng.integers(2)))
        ey, ex = np.nonzero(edge) if edge.any() else (ys, xs)

        def blob(y, x, r):
            return (yy - y) ** 2 + (xx - x) ** 2 <= r**2

        k = rng.integers(len(ey))
        damaged = obj & ~blob(ey[k], ex[k], r_obj * rng.uniform(0.25, 0.5))  # bite
        k = rng.integers(len(ys))
        damaged &= ~blob(ys[k], xs[k], r_obj * rng.uniform(0.05, 0.15))  # hole
        for _ in range(rng.integers(1, 4)):  # islands
            damaged |= blob(rng.uniform(0, SIZE), rng.uniform(0, SIZE), r_obj * rng.uniform(0.05, 0.2))
        field = gaussian_filter(damaged.astype(float) - 0.5, 2.0)
        field += gaussian_filter(rng.normal(0, 1, (SIZE, SIZE)), 3.0) * 0.4  # ragged edges
        targets.append(1 / (1 + np.exp(-12 * field)))
    return np.stack(targets).astype(np.float32)


def reference_fit(
    target: np.ndarray, steps: int = 2000, width: int = 130, lr: float = 2e-3, seed: int = 0, device: str = "cpu"
) -> np.ndarray:
    """The authors' procedure on one (H, W) target; returns the (H, W) bool mask."""
    torch.manual_seed(seed)
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
    """Squared distance of the (H, W) target to an (H, W) bool convex mask, per pixel."""
    pred = torch.from_numpy(np.asarray(mask, np.float32)).reshape(1, -1)
    return float(squared_distance(pred, torch.from_numpy(np.asarray(target, np.float32)).reshape(1, -1))[0])


def timed(func, *args):
    start = time.perf_counter()
    out = func(*args)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return out, time.perf_counter() - start


def as_mask_array(masks) -> np.ndarray:
    return masks.cpu().numpy() if isinstance(masks, torch.Tensor) else masks


def run(
    masks: int,
    reference_masks: int,
    reference_steps: int,
    batch: int,
    repeats: int,
    device: str,
    out: Path,
    seed: int,
    quick: bool,
    single_masks: int = 16,
) -> dict:
    targets = bench_targets(masks, seed)
    on_device = torch.from_numpy(targets).to(device)
    projector = ConvexProjector(seed=seed, device=device)
    print(
        f"{masks} targets of {SIZE}x{SIZE}; projector {projector}; device {device}; "
        f"torch threads {torch.get_num_threads()}",
        file=sys.stderr,
    )

    # Warm-up (allocator, kernels) so no path pays a one-off start-up cost.
    projector(on_device[:1])
    projector(on_device[:batch])

    reference, reference_times = [], []
    for t in tqdm(targets[:reference_masks], desc=f"(a) reference, {reference_steps} steps"):
        mask, seconds = timed(reference_fit, t, reference_steps, 130, 2e-3, seed, device)
        reference.append(mask)
        reference_times.append(seconds)

    single_times, single = [], []
    single_masks = min(single_masks, masks)
    for r in range(repeats):
        for i in tqdm(range(single_masks), desc=f"(b) single, repeat {r + 1}/{repeats}"):
            mask, seconds = timed(projector, on_device[i])
            single_times.append(seconds)
            if r == 0:
                single.append(as_mask_array(mask))

    batch_rates, batched = [], []
    for r in tqdm(range(repeats), desc=f"(c) batched, {batch} per call"):
        done = []
        start = time.perf_counter()
        for b0 in range(0, masks, batch):
            done.append(as_mask_array(projector(on_device[b0 : b0 + batch])))
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        batch_rates.append(masks / (time.perf_counter() - start))
        if r == 0:
            batched = np.concatenate(done)

    long_fit = ConvexProjector(seed=seed, device=device, **LONG_FIT)
    long_masks = np.concatenate(
        [as_mask_array(long_fit(on_device[b0 : b0 + batch])) for b0 in tqdm(range(0, masks, batch), desc="long fit")]
    )
    long_obj = [objective(t, m) for t, m in zip(targets, long_masks)]

    def ratios(results):
        return [objective(t, m) / lo for t, m, lo in zip(targets, results, long_obj)]

    single_ratio, batched_ratio = ratios(single), ratios(batched)
    reference_ratio = ratios(reference)
    result = {
        "quick": quick,
        "masks": masks,
        "mask_size": [SIZE, SIZE],
        "single_masks": single_masks,
        "reference_masks": reference_masks,
        "reference_steps": reference_steps,
        "reference_s_per_mask": statistics.median(reference_times),
        "reference_s_per_mask_min": min(reference_times),
        "reference_s_per_mask_max": max(reference_times),
        "single_s_per_mask": statistics.median(single_times),
        "single_s_per_mask_min": min(single_times),
        "single_s_per_mask_max": max(single_times),
        "batch_size": batch,
        "batched_masks_per_s": statistics.median(batch_rates),
        "batched_masks_per_s_min": min(batch_rates),
        "batched_masks_per_s_max": max(batch_rates),
        "speedup_single_vs_reference": statistics.median(reference_times) / statistics.median(single_times),
        "speedup_batched_vs_reference": statistics.median(reference_times) * statistics.median(batch_rates),
        "median_iou_to_reference": statistics.median(
            [iou(s, r) for s, r in zip(single, reference)] + [iou(b, r) for b, r in zip(batched, reference)]
        ),
        "single_iou_to_reference": [iou(s, r) for s, r in zip(single, reference)],
        "batched_iou_to_reference": [iou(b, r) for b, r in zip(batched, reference)],
        "objective_ratio": statistics.median(single_ratio + batched_ratio),
        "objective_ratio_max": max(single_ratio + batched_ratio),
        "reference_objective_ratio": reference_ratio,
        "long_fit": LONG_FIT,
        "projector": repr(projector),
        "repeats": repeats,
        "seed": seed,
        "device": torch.cuda.get_device_name()
        if device.startswith("cuda")
        else f"cpu: {platform.processor() or platform.machine()}",
        "threads": torch.get_num_threads(),
        "cpu_count": __import__("os").cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    write_report(result, out)
    return result


def write_report(r: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    suffix = "" if r["device"].startswith("cpu") else "_gpu"
    (out / f"bench_projection{suffix}.json").write_text(json.dumps(r, indent=2) + "\n")
    label = " (QUICK: shortened reference, fewer masks — not the reference numbers)" if r["quick"] else ""
    lines = [
        f"# proj_S speed and fidelity{label}",
        "",
        f"Produced by `python -m eval.bench_projection` — device {r['device']}, "
        f"{r['threads']} torch threads ({r['cpu_count']} CPUs), torch {r['torch']}, "
        f"Python {r['python']}, seed {r['seed']}, {r['masks']} damaged benchmark masks of "
        f"{r['mask_size'][0]}x{r['mask_size'][1]}, {r['repeats']} repeats. Model: none "
        "(targets are generated); checkpoint: none; dataset: embedded scenes.",
        "",
        "| | wall time per mask (median [min, max]) | masks/s | speed vs (a) |",
        "|---|---|---|---|",
        f"| (a) reference: width 130, {r['reference_steps']} Adam steps, full grid "
        f"({r['reference_masks']} masks) | {r['reference_s_per_mask']:.1f} s "
        f"[{r['reference_s_per_mask_min']:.1f}, {r['reference_s_per_mask_max']:.1f}] | "
        f"{1 / r['reference_s_per_mask']:.4f} | 1x |",
        f"| (b) `ConvexProjector()` one mask per call ({r['single_masks']} masks) | "
        f"{r['single_s_per_mask'] * 1000:.0f} ms "
        f"[{r['single_s_per_mask_min'] * 1000:.0f}, {r['single_s_per_mask_max'] * 1000:.0f}] | "
        f"{1 / r['single_s_per_mask']:.1f} | {r['speedup_single_vs_reference']:.0f}x |",
        f"| (c) `ConvexProjector()` {r['batch_size']} masks per call | "
        f"{1000 / r['batched_masks_per_s']:.0f} ms | {r['batched_masks_per_s']:.1f} "
        f"[{r['batched_masks_per_s_min']:.1f}, {r['batched_masks_per_s_max']:.1f}] | "
        f"{r['speedup_batched_vs_reference']:.0f}x |",
        "",
        "Fidelity:",
        "",
        f"- median IoU of (b) and (c) to the reference's mask: **{r['median_iou_to_reference']:.4f}** "
        f"(single: {', '.join(f'{v:.4f}' for v in r['single_iou_to_reference'])}; "
        f"batched: {', '.join(f'{v:.4f}' for v in r['batched_iou_to_reference'])})",
        f"- objective (squared distance of the target to the returned convex mask) relative to "
        f"a long fit `ConvexProjector(**{r['long_fit']})`: median **{r['objective_ratio']:.4f}**, "
        f"worst {r['objective_ratio_max']:.4f} over (b) and (c); the reference's own ratio: "
        f"{', '.join(f'{v:.4f}' for v in r['reference_objective_ratio'])}",
        "",
        f"Projector: `{r['projector']}`.",
    ]
    (out / f"bench_projection{suffix}.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m eval.bench_projection",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--quick", action="store_true", help="development run: 8 masks, 1 reference mask of 200 steps, 1 repeat"
    )
    parser.add_argument("--masks", type=int, default=16, help="number of targets (default 16)")
    parser.add_argument(
        "--reference-masks", type=int, default=2, help="targets fitted with the reference procedure (default 2)"
    )
    parser.add_argument("--reference-steps", type=int, default=2000)
    parser.add_argument("--single-masks", type=int, default=16, help="targets timed one per call in (b) (default 16)")
    parser.add_argument("--batch", type=int, default=16, help="masks per batched call (default 16)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("reports"))
    args = parser.parse_args(argv)
    if args.quick:
        args.masks, args.reference_masks, args.reference_steps, args.repeats = 8, 1, 200, 1
        args.batch = min(args.batch, 8)
    for name in ("masks", "single_masks", "reference_masks", "reference_steps", "batch", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.reference_masks > args.masks:
        parser.error("--reference-masks cannot exceed --masks")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda requested but torch sees no CUDA device")
    if args.threads:
        torch.set_num_threads(args.threads)
    r = run(
        args.masks,
        args.reference_masks,
        args.reference_steps,
        args.batch,
        args.repeats,
        args.device,
        args.out,
        args.seed,
        args.quick,
        args.single_masks,
    )
    print(
        f"(a) reference {r['reference_s_per_mask']:.1f} s/mask; (b) single "
        f"{r['single_s_per_mask'] * 1000:.0f} ms/mask; (c) batched {r['batched_masks_per_s']:.1f} "
        f"masks/s; IoU to reference {r['median_iou_to_reference']:.4f}; objective ratio "
        f"{r['objective_ratio']:.4f}; report in {args.out}/"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
