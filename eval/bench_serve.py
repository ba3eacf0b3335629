"""`python -m eval.bench_serve`: is the page fast enough to feel live?

(a) Click to overlay, in a real browser: headless Chromium (Debian's /usr/bin/chromium,
    driven by Playwright) opens the page served by uvicorn on a loopback port, uploads a
    640x480 image of the embedded benchmark (scene 0, seed 0, generated at 640x480), and
    clicks on the object `--clicks` times (the prompts cleared between clicks). The time
    is the page's own: performance.now() from the mouse-up to the frame after the raw mask
    and the convex polygon are drawn (request, segmentation, projection, JSON, RLE
    decoding, drawing). The server's segmenter and projection times of each click give
    the projection's share.
(b) API load test (httpx, loopback): `--requests` sequential POST /api/segment calls,
    then `--clients` concurrent clients for `--seconds`; latency p50 / p95 and requests
    per second. The server serialises model calls (one lock), so concurrency measures
    queueing, not parallel speed-up.

Writes <out>/bench_serve.{md,json} and, with `--screenshot PATH`, the page after one click
(reports/demo.png in README). Needs the [serve] extra and /usr/bin/chromium.
"""

from __future__ import annotations

import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from eval import runs
from sam_convex import validation

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
BENCH_SIZE = (480, 640)  # (H, W) of the benchmark image
# The screenshot's sample: scene 1 has bars across the object, so GrabCut's mask has gaps that
# the convex polygon closes (both overlays visibly differ).
DEMO_SAMPLE = 1
# The overlay canvas's colours (sam_convex/serve/static/app.js): raw mask red, convex green.
OVERLAY_COUNTS_JS = """() => {
  const c = document.getElementById('overlay');
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let raw = 0, convex = 0;
  for (let i = 0; i < d.length; i += 4) {
    const [r, g, b, a] = [d[i], d[i + 1], d[i + 2], d[i + 3]];
    if (a > 0 && a < 200 && r > 200 && g < 80 && b < 80) raw += 1;      // the semi-transparent mask
    if (a > 200 && g > 200 && r < 80 && b < 80) convex += 1;            // the polygon's stroke
  }
  return {raw, convex, width: c.width, height: c.height};
}"""


# ---------------------------------------------------------------------------- server


@contextlib.contextmanager
def serving(app) -> Iterator[str]:
    """Run an ASGI app with uvicorn in a thread on a free loopback port; yields its URL."""
    import uvicorn

    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@contextlib.contextmanager
def browser_page(url: str) -> Iterator[object]:
    """A Playwright page of headless Debian Chromium at `url`, once the page is ready."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 760})
            page.goto(url)
            page.wait_for_selector("body[data-ready='1']", timeout=30_000)
            yield page
        finally:
            browser.close()


def chromium_version() -> str:
    try:
        out = subprocess.run([CHROMIUM, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.strip().splitlines()[-1] if out.strip() else "unknown"


# ---------------------------------------------------------------------------- page actions


def inside_point(mask: np.ndarray) -> tuple[float, float]:
    """(x, y) of the pixel centre deepest inside an (H, W) bool mask."""
    depth = ndimage.distance_transform_edt(mask)
    row, col = np.unravel_index(int(np.argmax(depth)), mask.shape)
    return col + 0.5, row + 0.5


def click_image(page, x: float, y: float, button: str = "left", timeout_ms: int = 60_000) -> dict:
    """Click at image pixel (x, y) and wait until the page has drawn the answer.

    Returns the page's {click_to_overlay_ms, timings: {segmenter_ms, projection_ms,
    server_ms}}. Raises if the page shows an error instead.
    """
    before = page.evaluate("() => window.samConvex.overlaySeq")
    box = page.locator("#overlay").bounding_box()
    size = page.evaluate("() => [window.samConvex.state.image.width, window.samConvex.state.image.height]")
    page.mouse.click(box["x"] + x / size[0] * box["width"], box["y"] + y / size[1] * box["height"], button=button)
    page.wait_for_function(
        "(before) => window.samConvex.overlaySeq > before || !document.getElementById('error').hidden",
        arg=before,
        timeout=timeout_ms,
    )
    if page.locator("#error").is_visible():
        raise RuntimeError(f"the page shows an error: {page.locator('#error').inner_text()}")
    return page.evaluate(
        "() => ({click_to_overlay_ms: window.samConvex.lastClickToOverlayMs, timings: window.samConvex.lastTimings})"
    )


def open_upload(page, path: Path) -> None:
    before = page.evaluate("() => document.body.dataset.image || ''")
    page.set_input_files("#file", str(path))
    page.wait_for_function("(before) => (document.body.dataset.image || '') !== before", arg=before, timeout=30_000)


def open_sample(page, name: str) -> None:
    before = page.evaluate("() => document.body.dataset.image || ''")
    page.select_option("#samples", name)
    page.wait_for_function("(before) => (document.body.dataset.image || '') !== before", arg=before, timeout=30_000)


def save_demo(page, path: Path) -> None:
    """Open sample DEMO_SAMPLE, click on its object, save a screenshot of the page."""
    from eval.scenes import make_scene

    gt = make_scene(0, DEMO_SAMPLE)[1]
    open_sample(page, f"img_{DEMO_SAMPLE}")
    click_image(page, *inside_point(gt))
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path))


def overlay_counts(page) -> dict:
    """Pixels of the overlay canvas in the raw mask's red and in the polygon's green."""
    return page.evaluate(OVERLAY_COUNTS_JS)


# ---------------------------------------------------------------------------- measurements


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, float), q))


def summary(values: list[float]) -> dict:
    return {
        "n": len(values),
        "median": statistics.median(values),
        "p95": percentile(values, 95),
        "min": min(values),
        "max": max(values),
    }


def load_test(url: str, image_id: str, point: tuple[float, float], requests: int, clients: int, seconds: float):
    """(sequential, concurrent) dicts of latencies (ms) and requests per second."""
    import httpx

    payload = {"image_id": image_id, "points": [[point[0], point[1], 1]]}

    def call(client) -> float:
        start = time.perf_counter()
        response = client.post(f"{url}/api/segment", json=payload, timeout=60)
        response.raise_for_status()
        return 1000 * (time.perf_counter() - start)

    with httpx.Client() as client:
        call(client)  # warm-up: the first call sets the image
        start = time.perf_counter()
        sequential = [call(client) for _ in range(requests)]
        sequential_s = time.perf_counter() - start

    latencies: list[list[float]] = [[] for _ in range(clients)]
    stop = time.perf_counter() + seconds

    def worker(k: int) -> None:
        with httpx.Client() as client:
            while time.perf_counter() < stop:
                latencies[k].append(call(client))

    start = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    concurrent_s = time.perf_counter() - start
    flat = [v for per in latencies for v in per]
    return (
        {**summary(sequential), "requests_per_s": requests / sequential_s},
        {**summary(flat), "clients": clients, "seconds": concurrent_s, "requests_per_s": len(flat) / concurrent_s},
    )


def run(clicks: int, requests: int, clients: int, seconds: float, out: Path, screenshot: Path | None, command: str):
    from eval.scenes import make_scene
    from sam_convex.segmenters import grabcut
    from sam_convex.serve.app import create_app
    from sam_convex.serve.engine import GRABCUT_MAX_SIDE, Engine

    image, gt, _, _ = make_scene(0, 0, BENCH_SIZE)
    x, y = inside_point(gt)
    load_before = os.getloadavg()
    engine = Engine(grabcut())
    with tempfile.TemporaryDirectory() as tmp, serving(create_app(engine)) as url:
        path = Path(tmp) / "scene0_640x480.png"
        Image.fromarray(image).save(path)
        rows = []
        with browser_page(url) as page:
            open_upload(page, path)
            for _ in range(clicks):
                page.click("#clear")
                rows.append(click_image(page, x, y))
            counts = overlay_counts(page)
            image_id = page.evaluate("() => window.samConvex.state.image.id")
            if screenshot is not None:
                save_demo(page, screenshot)
        sequential, concurrent = load_test(url, image_id, (x, y), requests, clients, seconds)
    click_ms = [r["click_to_overlay_ms"] for r in rows]
    segmenter_ms = [r["timings"]["segmenter_ms"] for r in rows]
    projection_ms = [r["timings"]["projection_ms"] for r in rows]
    server_ms = [r["timings"]["server_ms"] for r in rows]
    result = {
        "command": command,
        "model": engine.segmenter.description,
        "checkpoint": "none",
        "grabcut_max_side": GRABCUT_MAX_SIDE,
        "image": "embedded benchmark scene 0 (seed 0) generated at 640x480; one positive point at the object's "
        f"deepest pixel ({x:.1f}, {y:.1f})",
        "click_to_overlay_ms": summary(click_ms),
        "segmenter_ms": summary(segmenter_ms),
        "projection_ms": summary(projection_ms),
        "server_ms": summary(server_ms),
        "projection_share": statistics.median(p / c for p, c in zip(projection_ms, click_ms)),
        "overlay_pixels": counts,
        "sequential": sequential,
        "concurrent": concurrent,
        "load_average_before": [round(v, 2) for v in load_before],
        "browser": chromium_version(),
        "machine": runs.machine(),
        "versions": {**runs.versions(), **serve_versions()},
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    out.mkdir(parents=True, exist_ok=True)
    runs.write_json(out / "bench_serve.json", result)
    (out / "bench_serve.md").write_text(markdown(result))
    return result


def serve_versions() -> dict:
    from importlib import metadata

    found = {}
    for name in ("fastapi", "uvicorn", "playwright", "httpx"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[name] = metadata.version(name)
    return found


def markdown(r: dict) -> str:
    def row(name: str, s: dict) -> str:
        return f"| {name} | {s['median']:.0f} ms | {s['p95']:.0f} ms | {s['min']:.0f} ms | {s['max']:.0f} ms |"

    versions = ", ".join(f"{k} {v}" for k, v in r["versions"].items())
    seq, con = r["sequential"], r["concurrent"]
    return "\n".join(
        [
            "# The page: click to overlay, and the API under load",
            "",
            f"Produced by `{r['command']}` on {r['machine']}, {r['date']} (load average before the run: "
            f"{', '.join(map(str, r['load_average_before']))}; other work shares this machine). Model: {r['model']}, "
            f"working size {r['grabcut_max_side']} px on the longer side; checkpoint: {r['checkpoint']}. Image: "
            f"{r['image']}. Browser: {r['browser']} (headless, Playwright). Versions: {versions}.",
            "",
            f"## Click to overlay ({r['click_to_overlay_ms']['n']} clicks, in the browser)",
            "",
            "performance.now() from the mouse-up to the frame after both overlays are drawn; the server's parts "
            "are its own timers for the same clicks.",
            "",
            "| | median | p95 | min | max |",
            "|---|---|---|---|---|",
            row("click to overlay (page)", r["click_to_overlay_ms"]),
            row("server: whole request", r["server_ms"]),
            row("server: segmenter (GrabCut)", r["segmenter_ms"]),
            row("server: projection (ConvexProjector)", r["projection_ms"]),
            "",
            f"Projection's share of click to overlay (median over clicks): {100 * r['projection_share']:.0f} %. "
            f"Overlay canvas after the last click: {r['overlay_pixels']['raw']} raw-mask pixels, "
            f"{r['overlay_pixels']['convex']} polygon-stroke pixels "
            f"({r['overlay_pixels']['width']}x{r['overlay_pixels']['height']} canvas).",
            "",
            "## API load test (POST /api/segment, loopback, httpx)",
            "",
            "| | requests | p50 | p95 | requests/s |",
            "|---|---|---|---|---|",
            f"| sequential, 1 client | {seq['n']} | {seq['median']:.0f} ms | {seq['p95']:.0f} ms | "
            f"{seq['requests_per_s']:.2f} |",
            f"| concurrent, {con['clients']} clients for {con['seconds']:.0f} s | {con['n']} | "
            f"{con['median']:.0f} ms | {con['p95']:.0f} ms | {con['requests_per_s']:.2f} |",
            "",
            "The server runs one model call at a time (the engine's lock), so with several clients a request waits "
            "for the ones before it: throughput stays that of one client and latency grows with the queue.",
            "",
        ]
    )


def build_parser() -> validation.CommandLineParser:
    parser = validation.CommandLineParser(prog="python -m eval.bench_serve", description=__doc__.split("\n\n")[0])
    parser.add_argument("--clicks", type=int, default=20, help="clicks in the browser (default 20)")
    parser.add_argument("--requests", type=int, default=30, help="sequential API requests (default 30)")
    parser.add_argument("--clients", type=int, default=4, help="concurrent API clients (default 4)")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the concurrent test (default 20)")
    parser.add_argument("--out", default="reports", help="output directory (default reports/)")
    parser.add_argument("--screenshot", type=Path, metavar="PNG", help="also save the page after a click here")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    for name in ("clicks", "requests", "clients"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if not (0 < args.seconds <= 600):
        parser.error(f"--seconds must be in (0, 600], got {args.seconds}")
    if not Path(CHROMIUM).exists():
        parser.fail(ValueError(f"{CHROMIUM} is missing: apt-get install chromium"))
    try:
        out = runs.check_writable(args.out)
        r = run(
            args.clicks,
            args.requests,
            args.clients,
            args.seconds,
            out,
            args.screenshot,
            " ".join(["python -m eval.bench_serve", *argv]),
        )
    except (OSError, ValueError) as err:
        parser.fail(err)
    print(
        f"click to overlay: median {r['click_to_overlay_ms']['median']:.0f} ms "
        f"(projection {100 * r['projection_share']:.0f} %); report in {args.out}/bench_serve.md"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
