"""`python -m eval.polygon_compare`: our convex polygons against what annotation tools make.

Annotation tools that run SAM turn its mask into a polygon themselves: the mask's
largest outer contour, simplified by Douglas-Peucker. This command compares, on the
benchmark's raw masks (the embedded scenes' GrabCut masks from the corruption
benchmark's prompts: 3 positive and 3 negative points per image; clean images, and
with `--corruptions` also the corrupted ones at `--severity`, as that benchmark makes
them), the polygons' vertex counts and their IoU to the ground truth:

* proj_S polygon: `ConvexFit.polygons` of `ConvexProjector()` fitted to the raw
  logits (what `python -m sam_convex ... --format` writes); exact for its mask;
* approxPolyDP: OpenCV's Douglas-Peucker on the largest contour (CHAIN_APPROX_NONE) at
  the tolerances in `SIMPLIFIERS` (X-AnyLabeling's SAM models use 0.1% of the arc
  length, anylabeling/services/auto_labeling/segment_anything.py; the others are the
  usual fixed and relative choices), filled as the tools fill them (integer vertices
  at pixel centres, OpenCV's fillPoly);
* labelme's: skimage's marching-squares contour, the longest, simplified with a
  tolerance of 0.4% of its largest extent (labelme/_automation/polygon_from_mask.py),
  filled with PIL as labelme's shape_to_mask does. labelme does not remove the one-pixel
  padding it adds before tracing (its polygons sit 1 px right and down); it is removed
  here, to compare the simplification alone;
* convex hull: cv2.convexHull of the largest contour, filled with fillPoly;
* raw mask: the bitmap itself (no polygon), for reference.

A second table reads the exports back with each format's own reader (`READERS`) on
ellipses of 50-400 px across, and gives the IoU to the masks they came from: pycocotools
for COCO (Label Studio's converter turns its percent coordinates into COCO's), ultralytics'
polygon2mask for YOLO (in a process of its own: it patches PIL on import), PIL as
labelme's shape_to_mask. A reader that is not installed is reported as such.

Items (raw logits) are cached under <out>/.cache/polygons, so a rerun only reports.
Writes <out>/polygons.{md,json}.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import PIL.Image
import PIL.ImageDraw
from skimage.measure import approximate_polygon, find_contours
from tqdm import tqdm

import sam_convex
from eval import runs
from eval.corruptions.corrupt import corruption_names
from eval.corruptions.harness import sample_digest
from eval.corruptions.items import CLEAN, condition_image, segment
from eval.corruptions.prompts import make_prompt
from eval.datasets import DATASETS, Sample, load_dataset
from eval.metrics import iou
from sam_convex import ConvexProjector, exports, validation
from sam_convex.outlines import rasterize
from sam_convex.segmenters import choose_segmenter

CACHE_VERSION = 1
PROMPT, NUM_POINTS = "points", 3  # the corruption benchmark's default prompt
# Douglas-Peucker tolerances: (name, px) or (name, fraction of the contour's arc length).
SIMPLIFIERS = {
    "approxPolyDP 1 px": ("px", 1.0),
    "approxPolyDP 2 px": ("px", 2.0),
    "approxPolyDP 0.1% arc (X-AnyLabeling)": ("arc", 0.001),
    "approxPolyDP 0.5% arc": ("arc", 0.005),
    "approxPolyDP 1% arc": ("arc", 0.01),
}
LABELME_TOLERANCE = 0.004  # labelme: of the contour's largest extent (np.ptp(contour, axis=0).max())
METHODS = ("proj_S polygon (ours)", *SIMPLIFIERS, "labelme (skimage, 0.4% extent)", "convex hull", "raw mask")
READER_SIZES = (50, 100, 200, 400)  # ellipse widths (px) of the read-back table
READERS = (
    "COCO: pycocotools annToMask",
    "Label Studio: its converter to COCO, then pycocotools",
    "YOLO: ultralytics polygon2mask",
    "labelme: shape_to_mask (PIL)",
)
LABEL_CONFIG = (
    '<View><Image name="image" value="$image"/>'
    '<PolygonLabels name="label" toName="image"><Label value="object"/></PolygonLabels></View>'
)
# ultralytics reads a YOLO label file with its own parser and fills each polygon.
ULTRALYTICS_READER = """
import sys
import numpy as np
from ultralytics.data.utils import polygon2mask, verify_image_label
image, label, out = sys.argv[1:]
_, lb, shape, segments, _, _, nf, _, nc, msg = verify_image_label((image, label, "", False, 3, 0, 0, False))
assert (nf, nc) == (1, 0), msg
h, w = shape
np.save(out, np.stack([polygon2mask((h, w), [s * [w, h]]).astype(bool) for s in segments]))
"""


def largest_contour(mask: np.ndarray) -> np.ndarray | None:
    """(K, 2) int32 (x, y) pixel indices of the mask's outer contour with the largest
    area (all points, CHAIN_APPROX_NONE), or None for an empty mask."""
    found, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not found:
        return None
    return max(found, key=cv2.contourArea).reshape(-1, 2)


def fill_indices(poly: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A polygon with integer vertices at pixel centres (pixel indices), filled as the
    tools do (OpenCV's fillPoly, boundary included)."""
    out = np.zeros(shape, np.uint8)
    if len(poly) >= 3:
        cv2.fillPoly(out, [np.asarray(poly, np.int32).reshape(-1, 1, 2)], 1)
    return out > 0


def labelme_polygon(mask: np.ndarray) -> np.ndarray:
    """labelme's compute_polygon_from_mask: (K, 2) float (x, y), pixel centres at
    integers (its padding offset removed, see the module docstring)."""
    contours = find_contours(np.pad(mask, 1).astype(np.float64), 0.5)
    if not contours:
        return np.zeros((0, 2))
    contour = max(contours, key=lambda c: np.linalg.norm(np.diff(c, axis=0, append=c[:1]), axis=1).sum())
    polygon = approximate_polygon(contour, tolerance=np.ptp(contour, axis=0).max() * LABELME_TOLERANCE)
    polygon = np.clip(polygon - 1, (0, 0), (mask.shape[0] - 1, mask.shape[1] - 1))[:-1]
    return polygon[:, ::-1]


def fill_pil(poly: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """labelme's shape_to_mask for a polygon: PIL, outline and fill."""
    canvas = PIL.Image.fromarray(np.zeros(shape, np.uint8))
    if len(poly) >= 3:
        PIL.ImageDraw.Draw(canvas).polygon(xy=[tuple(p) for p in poly], outline=1, fill=1)
    return np.array(canvas, bool)


def is_convex(poly: np.ndarray) -> bool:
    return len(poly) >= 3 and bool(cv2.isContourConvex(np.asarray(poly, np.float32).reshape(-1, 1, 2)))


def polygons_of(raw: np.ndarray, logits: np.ndarray) -> dict[str, tuple[int | None, np.ndarray, bool]]:
    """Per method: (vertices or None, the filled (H, W) bool mask, convex?)."""
    shape = raw.shape
    fit = ConvexProjector(threads=1).fit(logits, logits=True)
    ours = fit.polygons[0]
    out = {METHODS[0]: (len(ours), rasterize([ours], *shape)[0], True)}
    contour = largest_contour(raw)
    for name, (unit, value) in SIMPLIFIERS.items():
        if contour is None:
            out[name] = (0, np.zeros(shape, bool), False)
            continue
        epsilon = value if unit == "px" else value * cv2.arcLength(contour.reshape(-1, 1, 2), True)
        poly = cv2.approxPolyDP(contour.reshape(-1, 1, 2), epsilon, True).reshape(-1, 2)
        out[name] = (len(poly), fill_indices(poly, shape), is_convex(poly))
    poly = labelme_polygon(raw)
    out[METHODS[-3]] = (len(poly), fill_pil(poly, shape), is_convex(poly))
    hull = cv2.convexHull(contour.reshape(-1, 1, 2)).reshape(-1, 2) if contour is not None else np.zeros((0, 2))
    out["convex hull"] = (len(hull), fill_indices(hull, shape), len(hull) >= 3)
    out["raw mask"] = (None, raw, False)
    return out


def read_back(size: tuple[int, int] = (480, 640)) -> dict[str, list[float | None]]:
    """IoU of each reader's mask to ours, per ellipse width in READER_SIZES (None where
    the reader is not installed)."""
    h, w = size
    yy, xx = np.mgrid[:h, :w]
    c, s = np.cos(0.5), np.sin(0.5)
    u, v = (xx - w / 2) * c + (yy - h / 2) * s, -(xx - w / 2) * s + (yy - h / 2) * c
    targets = np.stack([(u / (d / 2)) ** 2 + (v / (0.375 * d)) ** 2 <= 1 for d in READER_SIZES])
    fit = ConvexProjector(threads=1).fit(targets)
    masks = fit.masks.numpy()
    out: dict[str, list[float | None]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        try:
            from pycocotools.coco import COCO

            (Path(tmp) / "c.json").write_text(json.dumps(exports.coco_dataset([("x.png", fit)])))
            coco = COCO(str(Path(tmp) / "c.json"))
            anns = coco.loadAnns(coco.getAnnIds())
            out[READERS[0]] = [iou(coco.annToMask(a).astype(bool), m) for a, m in zip(anns, masks)]
        except ImportError:
            out[READERS[0]] = [None] * len(masks)
        cv2.imwrite(str(Path(tmp) / "x.png"), np.zeros((h, w, 3), np.uint8))
        out[READERS[1]] = label_studio_read_back(fit, Path(tmp))
        (Path(tmp) / "x.txt").write_text(exports.to_yolo(fit))
        env = {**os.environ, "YOLO_OFFLINE": "1", "YOLO_CONFIG_DIR": tmp}
        args = [sys.executable, "-c", ULTRALYTICS_READER, *(str(Path(tmp) / n) for n in ("x.png", "x.txt", "y.npy"))]
        done = subprocess.run(args, capture_output=True, env=env, timeout=600)
        read = np.load(Path(tmp) / "y.npy") if done.returncode == 0 else None
        out[READERS[2]] = [None] * len(masks) if read is None else [iou(a, m) for a, m in zip(read, masks)]
    shapes = exports.to_labelme(fit, "x.png")["shapes"]
    out[READERS[3]] = [iou(fill_pil(np.array(sh["points"]), (h, w)), m) for sh, m in zip(shapes, masks)]
    return out


def label_studio_read_back(fit, tmp: Path) -> list[float | None]:
    """IoU per mask of Label Studio's own export to COCO (label-studio-converter) of
    our prediction, read by pycocotools; None each where either is not installed."""
    try:
        from label_studio_converter import Converter
        from pycocotools.coco import COCO
    except ImportError:
        return [None] * fit.masks.shape[0]
    result = exports.to_labelstudio(fit)["result"]
    tasks = [{"id": 1, "data": {"image": str(tmp / "x.png")}, "annotations": [{"id": 1, "result": result}]}]
    (tmp / "tasks.json").write_text(json.dumps(tasks))
    Converter(LABEL_CONFIG, str(tmp)).convert_to_coco(str(tmp / "tasks.json"), str(tmp / "ls"), is_dir=False)
    coco = COCO(str(tmp / "ls" / "result.json"))
    anns = coco.loadAnns(coco.getAnnIds())
    return [iou(coco.annToMask(a).astype(bool), m) for a, m in zip(anns, fit.masks.numpy())]


def raw_logits(
    sample: Sample, condition: str, severity: int, segmenter, seed: int, cache: Path
) -> tuple[np.ndarray, bool]:
    """The segmenter's (H, W) float32 logits on the image under `condition` (as the
    corruption benchmark makes it), cached; and whether they were computed (not read
    from the cache)."""
    tag = CLEAN if condition == CLEAN else f"{condition}-s{severity}"
    path = cache / f"{sample.name}-{tag}-{sample_digest(sample)}.npz"
    if path.is_file():
        try:
            return runs.read_npz(path, ("logits",))["logits"], False
        except ValueError as err:
            runs.warn_damaged(path, err)
    runs.clear_damaged(path)
    prompt = make_prompt(sample, PROMPT, NUM_POINTS)
    image = condition_image(sample, condition, severity, seed)
    logits, _, _ = segment(sample, image, condition, seed, segmenter, prompt, ConvexProjector(threads=1))
    runs.write_npz(path, {"logits": logits})
    return logits, True


def run(
    dataset: str,
    data: str | None,
    limit: int | None,
    seed: int,
    out: str,
    command: str,
    corruptions: tuple[str, ...] = (),
    severity: int = 5,
) -> dict:
    """Compare on every sample (clean, and under each corruption at `severity`); write
    <out>/polygons.{md,json}; return the summary."""
    started = time.perf_counter()
    samples = load_dataset(dataset, data, limit=limit, seed=seed)
    segmenter = choose_segmenter("grabcut")
    name = f"{dataset}-{segmenter.kind}-seed{seed}"
    digest = runs.key(CACHE_VERSION, sam_convex.__version__, dataset, str(data), segmenter.kind, PROMPT, seed)
    cache = Path(out) / ".cache" / "polygons" / f"{name}-{digest}"
    items = [(sample, condition) for condition in (CLEAN, *corruptions) for sample in samples]
    rows, computed = [], 0
    for sample, condition in tqdm(items, desc="polygons", unit="item"):
        logits, fresh = raw_logits(sample, condition, severity, segmenter, seed, cache)
        computed += fresh
        for method, (vertices, mask, convex) in polygons_of(logits > 0, logits).items():
            rows.append(
                {
                    "image": sample.name,
                    "condition": condition,
                    "method": method,
                    "vertices": vertices,
                    "convex": convex,
                    "iou": iou(mask, sample.gt),
                }
            )
    summary = summarise(rows)
    by_condition = {c: summarise([r for r in rows if r["condition"] == c]) for c in (CLEAN, *corruptions)}
    readers = read_back()
    meta = {
        "command": command,
        "model": segmenter.description,
        "checkpoint": segmenter.checkpoint,
        "dataset": dataset if data is None else f"{dataset} ({data})",
        "images": len(samples),
        "conditions": ", ".join([CLEAN, *(f"{c} (severity {severity})" for c in corruptions)]),
        "items": len(items),
        "prompt": f"{PROMPT}, {NUM_POINTS} per class",
        "seed": seed,
        "projector": repr(ConvexProjector(threads=1)),
        "versions": runs.versions(),
        "machine": runs.machine(),
        "wall_s": round(time.perf_counter() - started, 1),
        "segmented": f"{computed} items segmented in this run, {len(items) - computed} read from the cache",
    }
    report = {
        "meta": meta,
        "summary": summary,
        "by_condition": by_condition,
        "readers": readers,
        "reader_sizes": READER_SIZES,
        "rows": rows,
    }
    runs.write_json(Path(out) / "polygons.json", report)
    (Path(out) / "polygons.md").write_text(markdown(meta, summary, by_condition, readers))
    return summary


def summarise(rows: list[dict]) -> list[dict]:
    """Per method: mean IoU to the ground truth, median and mean vertices, share of
    convex polygons, and the mean IoU difference to the raw mask."""
    raw = {(r["image"], r["condition"]): r["iou"] for r in rows if r["method"] == "raw mask"}
    out = []
    for method in METHODS:
        mine = [r for r in rows if r["method"] == method]
        ious = np.array([r["iou"] for r in mine])
        vertices = np.array([r["vertices"] for r in mine if r["vertices"] is not None], float)
        out.append(
            {
                "method": method,
                "mean_iou": float(ious.mean()),
                "delta_vs_raw": float(np.mean([r["iou"] - raw[r["image"], r["condition"]] for r in mine])),
                "median_vertices": float(np.median(vertices)) if vertices.size else None,
                "mean_vertices": float(vertices.mean()) if vertices.size else None,
                "max_vertices": int(vertices.max()) if vertices.size else None,
                "convex_share": float(np.mean([r["convex"] for r in mine])),
            }
        )
    return out


def markdown(
    meta: dict, summary: list[dict], by_condition: dict[str, list[dict]], readers: dict[str, list[float | None]]
) -> str:
    def num(v, fmt):
        return "–" if v is None else format(v, fmt)

    lines = [
        "# Polygons for annotation tools: ours vs approxPolyDP vs the hull",
        "",
        f"Command: `{meta['command']}`  ",
        f"Model: {meta['model']}; checkpoint: {meta['checkpoint']}  ",
        f"Dataset: {meta['dataset']}, {meta['images']} images; conditions: {meta['conditions']} "
        f"({meta['items']} items); prompt: {meta['prompt']}; seed {meta['seed']}  ",
        f"Projector: `{meta['projector']}`  ",
        f"Versions: {', '.join(f'{k} {v}' for k, v in meta['versions'].items())}  ",
        f"Machine: {meta['machine']}; wall time {meta['wall_s']} s ({meta['segmented']})",
        "",
        "Each polygon is filled the way its tool fills it and scored against the ground truth; the raw mask "
        "row is the bitmap the polygons are made from.",
        "",
        "| polygon | mean IoU to GT | Δ vs raw mask | vertices: median | mean | max | convex |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in summary:
        lines.append(
            f"| {row['method']} | {row['mean_iou']:.4f} | {row['delta_vs_raw']:+.4f} | "
            f"{num(row['median_vertices'], '.0f')} | {num(row['mean_vertices'], '.1f')} | "
            f"{num(row['max_vertices'], 'd')} | {row['convex_share']:.0%} |"
        )
    if len(by_condition) > 1:
        conditions = list(by_condition)
        lines += [
            "",
            "## Mean IoU to GT per condition",
            "",
            "| polygon | " + " | ".join(conditions) + " |",
            "|---|" + "---|" * len(conditions),
        ]
        for k, method in enumerate(METHODS):
            values = " | ".join(f"{by_condition[c][k]['mean_iou']:.4f}" for c in conditions)
            lines.append(f"| {method} | {values} |")
    lines += [
        "",
        "## Our polygons read back by each format's reader",
        "",
        "IoU of the reader's mask to the projected mask, ellipses (width x 0.75 width, tilted) in a 640x480 image. "
        "OpenCV and PIL fill with pixel centres at integer coordinates and include the outline, about half a "
        "pixel off the pixel-centre rule along it.",
        "",
        "| reader | " + " | ".join(f"{d} px" for d in READER_SIZES) + " |",
        "|---|" + "---|" * len(READER_SIZES),
    ]
    for reader, values in readers.items():
        lines.append(f"| {reader} | " + " | ".join("not installed" if v is None else f"{v:.4f}" for v in values) + " |")
    return "\n".join(lines) + "\n"


def build_parser() -> validation.CommandLineParser:
    parser = validation.CommandLineParser(prog="python -m eval.polygon_compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", choices=DATASETS, default="scenes", help="benchmark (default: %(default)s)")
    parser.add_argument("--data", default=None, metavar="ROOT", help="dataset root (convexitydb, folder)")
    parser.add_argument("--limit", type=int, default=None, metavar="N", help="only the first N images")
    parser.add_argument(
        "--corruptions",
        default=None,
        metavar="SET|NAMES",
        help="also the images under these corruptions (a set such as paper, or comma-separated names; "
        "default: clean images only)",
    )
    parser.add_argument("--severity", type=int, default=5, help="corruption severity 1..5 (default 5)")
    parser.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    parser.add_argument("--out", default="reports", metavar="DIR", help="output directory (default reports/)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        parser.error(f"--limit must be >= 1, got {args.limit}")
    if not 1 <= args.severity <= 5:
        parser.error(f"--severity must be 1..5, got {args.severity}")
    try:
        corruptions = corruption_names(args.corruptions) if args.corruptions is not None else ()
        runs.check_writable(args.out)
        summary = run(
            args.dataset,
            args.data,
            args.limit,
            args.seed,
            args.out,
            " ".join(["python -m eval.polygon_compare", *argv]),
            corruptions,
            args.severity,
        )
    except (OSError, ValueError) as err:
        parser.fail(err)
    for row in summary:
        print(f"{row['method']}: IoU {row['mean_iou']:.4f}, median {row['median_vertices']} vertices")
    print(f"report in {args.out}/polygons.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
