"""`python -m eval.bench_overhead`: what projection adds to a SAM 2 call and to an AMG image.

(a) `Sam2ConvexPredictor.predict` with project=False vs True on a sam2.1 Hiera-tiny with
    random weights at its official 1024 frame (no checkpoint exists here; the projection's
    cost depends on the number of masks and their fit windows, not on the weights), on a
    480x640 image. Random weights give noisy masks spread over the whole image: the
    largest fit windows, so an upper bound for the per-mask cost.
(b) the convex AMGs' post-processing (`sam_convex.amg.project_records`: gate, one batched
    fit, rendering, boxes) for N masks of a 480x640 image, half clean scene objects and
    half rings / L-shapes (those of `eval.bench_amg_gate`) at random sizes and places, with every mask projected
    (min_solidity 0) and with the library's default gate, in one process and in
    `--workers` processes (`ConvexProjector(workers=...)`).
(c) one click on a 1920x1080 photo: SAM 2's predict (point prompt, its 3 masks) with and
    without projection, the time of SAM 2's mask decoder inside that call (forward hooks
    on `sam_mask_decoder`; the real Hiera-tiny decoder, random weights: its cost does not
    depend on the weights), and the projection of 3 SAM-like masks of that size
    (`eval.bench_projection.photo_targets` as logits), what a real model's smooth masks cost.

One torch thread; median of `--repeats` calls. Writes <out>/bench_overhead{,_gpu}.{md,json}.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from skimage.transform import resize

from eval import runs
from eval.bench_projection import photo_targets, scene_targets
from sam_convex import ConvexProjector, validation
from sam_convex.amg import DEFAULT_MIN_SOLIDITY, major_solidity, project_records
from sam_convex.sam2_predictor import Sam2ConvexPredictor
from sam_convex.synthetic import nonconvex_shapes

H, W = 480, 640
SAM2_CONFIG = "configs/sam2.1/sam2.1_hiera_t.yaml"


def median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def sam2_predictors(size: tuple[int, int], device: str):
    """Random-weight sam2.1 Hiera-tiny (seed 0) and, on one random (h, w) image, a plain
    and a convex predictor with the image set: (model, plain, convex, set_image seconds)."""
    from sam2.build_sam import build_sam2

    torch.manual_seed(0)  # the random weights
    model = build_sam2(SAM2_CONFIG, ckpt_path=None, device=device)
    image = np.random.default_rng(0).integers(0, 255, (*size, 3), dtype=np.uint8)
    plain = Sam2ConvexPredictor(model, project=False)
    convex = Sam2ConvexPredictor(model, projector=ConvexProjector(threads=1))
    start = time.perf_counter()
    plain.set_image(image)
    set_image_s = time.perf_counter() - start
    convex.set_image(image)
    return model, plain, convex, set_image_s


def sam2_overhead(repeats: int, device: str) -> tuple[float, list[dict]]:
    """(set_image seconds, rows {call, masks, off_s, on_s}) for three prompt kinds."""
    _, plain, convex, set_image_s = sam2_predictors((H, W), device)
    point = dict(point_coords=np.array([[320.0, 240.0]]), point_labels=np.array([1]))
    boxes = np.array([[40.0 + 60 * i, 40.0, 200.0 + 50 * i, 300.0] for i in range(8)])
    cases = [
        ("point, multimask", 3, point),
        ("point, single mask", 1, dict(point, multimask_output=False)),
        ("8 boxes, single mask each", 8, dict(box=boxes, multimask_output=False)),
    ]
    rows = []
    for name, masks, kwargs in cases:
        off = median_seconds(lambda kw=kwargs: plain.predict(**kw), repeats)
        on = median_seconds(lambda kw=kwargs: convex.predict(**kw), repeats)
        rows.append(dict(call=name, masks=masks, off_s=off, on_s=on))
    return set_image_s, rows


def amg_masks(n: int, seed: int = 0) -> list[np.ndarray]:
    """n (H, W) bool masks: even i a clean scene object, odd i alternately a ring and an
    L-shape (the AMG gate benchmark's shapes), each scaled to 2-40% of the short side
    and placed at random."""
    half = (n + 1) // 2
    _, convex = scene_targets(half, seed, damaged=False)
    _, _, shapes = nonconvex_shapes(half, seed)  # half rings, half L-shapes, half two-object masks
    rings, ells = shapes[:half], shapes[half : 2 * half]
    nonconvex = [rings[i // 2] if i % 2 == 0 else ells[i // 2] for i in range(half)]
    rng = np.random.default_rng(seed)
    masks = []
    for i in range(n):
        shape = convex[i // 2] if i % 2 == 0 else nonconvex[i // 2]
        size = int(rng.uniform(0.02, 0.4) * H) + 8
        y0, x0 = rng.integers(0, H - size), rng.integers(0, W - size)
        m = np.zeros((H, W), bool)
        m[y0 : y0 + size, x0 : x0 + size] = resize(shape.astype(float), (size, size), order=0) > 0.5
        masks.append(m)
    return masks


def amg_overhead(counts: list[int], repeats: int, workers: int = 1) -> list[dict]:
    """Rows {masks, min_solidity, workers, fitted, seconds} per mask count, gate and
    worker count (1 and `workers`)."""
    rows = []
    for w in sorted({1, workers}):
        projector = ConvexProjector(threads=1, workers=w)
        project_records([dict(segmentation=m) for m in amg_masks(2 * w)], projector, 0.0)  # starts the pool
        for n in counts:
            records = [dict(segmentation=m) for m in amg_masks(n)]
            for gate in (0.0, DEFAULT_MIN_SOLIDITY):
                seconds = median_seconds(lambda r=records, g=gate, p=projector: project_records(r, p, g), repeats)
                fitted = int(sum(major_solidity(r["segmentation"]) >= gate for r in records))
                rows.append(dict(masks=n, min_solidity=gate, workers=w, fitted=fitted, seconds=seconds))
    return rows


CLICK_SIZE = (1080, 1920)


def click_overhead(repeats: int, device: str) -> dict:
    """One click on a 1920x1080 image: SAM 2's predict with 3 masks with and without
    projection, its mask decoder's share, and the projection of 3 SAM-like masks."""
    model, plain, convex, set_image_s = sam2_predictors(CLICK_SIZE, device)
    point = dict(point_coords=np.array([[960.0, 540.0]]), point_labels=np.array([1]))
    decoder = []

    def before(*_):
        decoder.append(-time.perf_counter())

    def after(*_):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        decoder[-1] += time.perf_counter()

    hooks = [
        model.sam_mask_decoder.register_forward_pre_hook(before),
        model.sam_mask_decoder.register_forward_hook(after),
    ]
    try:
        plain.predict(**point)  # warm-up
        decoder.clear()
        off = median_seconds(lambda: plain.predict(**point), repeats)
        decoder_s = statistics.median(decoder)
    finally:
        for hook in hooks:
            hook.remove()
    convex.predict(**point)
    on = median_seconds(lambda: convex.predict(**point), repeats)
    probs = photo_targets(3, CLICK_SIZE)
    logits = torch.from_numpy(np.log(probs) - np.log1p(-probs))
    projector = ConvexProjector(threads=1)
    projector.fit(logits, logits=True)
    smooth = median_seconds(lambda: projector.fit(logits, logits=True), repeats)
    return dict(
        size=CLICK_SIZE, set_image_s=set_image_s, off_s=off, on_s=on, decoder_s=decoder_s, sam_like_fit_s=smooth
    )


def markdown(r: dict) -> str:
    lines = [
        "# What projection adds to a SAM 2 call and to an AMG image",
        "",
        f"Produced by `{r['command']}` on {r['machine']}, 1 torch thread, {r['date']}; median of {r['repeats']} "
        f"calls. Model: sam2.1 Hiera-tiny ({SAM2_CONFIG}) with random weights (seed 0); checkpoint: none; data: "
        f"a random {W}x{H} image (a), masks built from the embedded scenes' objects, rings and L-shapes (b), a "
        f"random {CLICK_SIZE[1]}x{CLICK_SIZE[0]} image and SAM-like masks (c). Load average (1, 5, 15 min) at the "
        f"end: {', '.join(f'{v:.2f}' for v in r['load_average'])}. "
        f"Versions: {', '.join(f'{k} {v}' for k, v in r['versions'].items())}.",
        "",
        "## (a) Sam2ConvexPredictor.predict",
        "",
        f"SAM 2's set_image (unchanged by the wrapper): {r['set_image_s']:.2f} s. Random weights give noisy masks "
        "over the whole image (the largest fit windows): an upper bound for the per-mask cost.",
        "",
        "| call | masks | project=False | project=True | projection adds | per mask |",
        "|---|---|---|---|---|---|",
    ]
    for row in r["sam2"]:
        extra = row["on_s"] - row["off_s"]
        lines.append(
            f"| {row['call']} | {row['masks']} | {1e3 * row['off_s']:.0f} ms | {1e3 * row['on_s']:.0f} ms | "
            f"{1e3 * extra:.0f} ms | {1e3 * extra / row['masks']:.0f} ms |"
        )
    lines += [
        "",
        f"## (b) AMG post-processing (`project_records`) of N masks of a {W}x{H} image",
        "",
        "Half convex scene objects, half rings / L-shapes. min_solidity 0 projects every mask; "
        f"{DEFAULT_MIN_SOLIDITY} is the library's default gate (`python -m eval.bench_amg_gate`).",
        "",
        "| masks per image | min_solidity | workers | masks fitted | time per image | per fitted mask |",
        "|---|---|---|---|---|---|",
    ]
    for row in r["amg"]:
        per = f"{1e3 * row['seconds'] / row['fitted']:.0f} ms" if row["fitted"] else "–"
        lines.append(
            f"| {row['masks']} | {row['min_solidity']:g} | {row['workers']} | {row['fitted']} | {row['seconds']:.2f} s "
            f"| {per} |"
        )
    c = r["click"]
    lines += [
        "",
        f"## (c) One click on a {c['size'][1]}x{c['size'][0]} photo (SAM 2, 3 masks)",
        "",
        "SAM 2's own predict: prompt encoder, mask decoder and the upsampling of its 3 masks to the photo size "
        f"(set_image, once per photo, is not part of a click: {c['set_image_s']:.2f} s). The decoder is the real "
        "sam2.1 Hiera-tiny mask decoder (random weights; its cost does not depend on them), timed by forward "
        "hooks inside the same calls. Random weights give noisy masks over the whole photo, an upper bound "
        "for the fit; the last row projects 3 smooth SAM-like masks of the same size (logits in), what a "
        "trained model's masks cost.",
        "",
        "| per click | ms |",
        "|---|---|",
        f"| SAM 2 predict, project=False | {1e3 * c['off_s']:.1f} |",
        f"| of which SAM 2's mask decoder | {1e3 * c['decoder_s']:.1f} |",
        f"| Sam2ConvexPredictor predict (project=True) | {1e3 * c['on_s']:.1f} |",
        f"| projection adds (random-weight masks) | {1e3 * (c['on_s'] - c['off_s']):.1f} |",
        f"| `ConvexProjector().fit` of 3 SAM-like masks (logits) | {1e3 * c['sam_like_fit_s']:.1f} |",
    ]
    return "\n".join(lines) + "\n"


def run(repeats: int, counts: list[int], device: str, out: Path, command: str, workers: int = 2) -> dict:
    torch.set_num_threads(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sam2 warns once that its optional CUDA extension is missing
        set_image_s, sam2_rows = sam2_overhead(repeats, device)
    result = {
        "command": command,
        "repeats": repeats,
        "set_image_s": set_image_s,
        "sam2": sam2_rows,
        "amg": amg_overhead(counts, repeats, workers),
        "click": click_overhead(repeats, device),
        "load_average": os.getloadavg(),
        "machine": runs.machine(device),
        "versions": runs.versions(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    out.mkdir(parents=True, exist_ok=True)
    stem = out / ("bench_overhead_gpu" if device.startswith("cuda") else "bench_overhead")
    runs.write_json(stem.with_suffix(".json"), result)
    stem.with_suffix(".md").write_text(markdown(result))
    return result


def build_parser() -> validation.CommandLineParser:
    parser = validation.CommandLineParser(prog="python -m eval.bench_overhead", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="calls per measurement, median taken (default 3)")
    parser.add_argument("--counts", default="10,25,50,100", help="AMG masks per image (default 10,25,50,100)")
    parser.add_argument("--device", default="cpu", help="torch device of SAM 2 (default cpu)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes of the AMG rows (default 2)")
    parser.add_argument("--out", default="reports", help="output directory (default reports/)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")
    if args.workers < 1:
        parser.error(f"--workers must be >= 1, got {args.workers}")
    try:
        counts = [int(c) for c in args.counts.split(",")]
    except ValueError:
        parser.error(f"--counts must be comma-separated integers, got {args.counts!r}")
    if any(c < 1 for c in counts):
        parser.error(f"--counts must be >= 1, got {args.counts!r}")
    try:
        validation.device("--device", args.device)
        out = runs.check_writable(args.out)
        command = " ".join(["python -m eval.bench_overhead", *argv])
        r = run(args.repeats, counts, args.device, out, command, args.workers)
    except (OSError, ValueError) as err:
        parser.fail(err)
    one = next(row for row in r["sam2"] if row["masks"] == 1)
    print(
        f"SAM 2, one mask: projection adds {1e3 * (one['on_s'] - one['off_s']):.0f} ms; "
        f"report in {args.out}/bench_overhead.md"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
