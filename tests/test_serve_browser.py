"""End to end: the page in headless Chromium (Debian's, driven by Playwright) against the
real server on a loopback port: open a sample, click on the object, check the canvas."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from eval.bench_serve import (
    CHROMIUM,
    browser_page,
    click_image,
    inside_point,
    open_sample,
    open_upload,
    overlay_counts,
    serving,
)
from eval.scenes import make_scene
from sam_convex.segmenters import grabcut
from sam_convex.serve.app import create_app
from sam_convex.serve.engine import Engine

pytest.importorskip("playwright", reason="the browser test needs the [serve] extra (playwright)")
pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium; .ci/run installs it)"
)
SAMPLE = 1  # has bars across the object: raw mask and convex polygon differ
# Overlay pixels drawn semi-transparent: the fills of convex records.
FILLED_PIXELS_JS = """() => {
  const c = document.getElementById('overlay');
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let n = 0;
  for (let i = 3; i < d.length; i += 4) if (d[i] > 0 && d[i] < 200) n += 1;
  return n;
}"""


@pytest.fixture(scope="module")
def page():
    with serving(create_app(Engine(grabcut()))) as url, browser_page(url) as page:
        yield page


def test_click_draws_raw_mask_and_convex_polygon(page, tmp_path):
    gt = make_scene(0, SAMPLE)[1]
    open_sample(page, f"img_{SAMPLE}")
    x, y = inside_point(gt)
    answer = click_image(page, x, y)
    assert answer["click_to_overlay_ms"] > 0 and answer["timings"]["projection_ms"] > 0
    counts = overlay_counts(page)
    area = counts["width"] * counts["height"]
    # The red fill covers about the object (GrabCut misses the bars); the green stroke its outline.
    assert 0.5 * gt.mean() < counts["raw"] / area < 1.5 * gt.mean()
    perimeter_px = 2 * np.sqrt(np.pi * gt.sum()) * counts["width"] / gt.shape[1]
    assert counts["convex"] > perimeter_px
    page.screenshot(path=str(tmp_path / "demo.png"))

    page.uncheck("#show-raw")
    hidden_raw = overlay_counts(page)
    page.check("#show-raw")
    page.uncheck("#show-convex")
    hidden_convex = overlay_counts(page)
    page.check("#show-convex")
    # Each toggle hides its own overlay only (the stroke, drawn over the fill, hid some of it).
    assert hidden_raw["raw"] == 0 and hidden_raw["convex"] > perimeter_px
    assert hidden_convex["convex"] == 0 and hidden_convex["raw"] >= counts["raw"]


def test_right_click_adds_a_background_point(page):
    gt = make_scene(0, SAMPLE)[1]
    open_sample(page, f"img_{SAMPLE}")
    click_image(page, *inside_point(gt))
    click_image(page, 5.5, 5.5, button="right")
    labels = page.evaluate("() => window.samConvex.state.points.map((p) => p[2])")
    assert labels == [1, 0]


def test_a_new_click_supersedes_the_request_in_flight(page):
    gt = make_scene(0, SAMPLE)[1]
    open_sample(page, f"img_{SAMPLE}")
    x, y = inside_point(gt)
    draws = page.evaluate("() => window.samConvex.draws")
    box = page.locator("#overlay").bounding_box()
    scale = box["width"] / gt.shape[1]
    for dx in (0, 4):  # two clicks in quick succession: the first answer must not be drawn
        page.mouse.click(box["x"] + (x + dx) * scale, box["y"] + y * scale)
    page.wait_for_function("(d) => window.samConvex.draws > d", arg=draws, timeout=60_000)
    page.wait_for_timeout(1500)  # time for a stale answer to arrive (and be ignored)
    assert page.evaluate("() => window.samConvex.draws") == draws + 1
    assert page.evaluate("() => window.samConvex.state.points.length") == 2


def test_upload_and_segment_everything(page, tmp_path):
    image = make_scene(0, 0)[0]
    path = tmp_path / "scene.png"
    Image.fromarray(image).save(path)
    open_upload(page, path)
    assert page.evaluate("() => window.samConvex.state.image.name") == "scene.png"
    seq = page.evaluate("() => window.samConvex.overlaySeq")
    page.click("#everything")
    page.wait_for_function("(s) => window.samConvex.overlaySeq > s", arg=seq, timeout=120_000)
    masks = page.evaluate("() => window.samConvex.state.everything.masks.map((m) => m.convex)")
    filled = page.evaluate(FILLED_PIXELS_JS)
    # Convex records are filled (semi-transparent), so a good share of the canvas is tinted.
    area = page.evaluate("() => { const c = document.getElementById('overlay'); return c.width * c.height; }")
    assert any(masks) and filled > 0.02 * area
    assert "convex (filled)" in page.inner_text("#status")
