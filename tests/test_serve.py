"""The page's JSON API (sam_convex.serve) through FastAPI's test client."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import time

import cv2
import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from pycocotools import mask as mask_utils

from sam_convex import outlines
from sam_convex.grabcut import GrabCutPredictor
from sam_convex.measures import iou
from sam_convex.segmenters import Segmenter, grabcut
from sam_convex.serve import __main__ as serve_main
from sam_convex.serve.app import create_app
from sam_convex.serve.engine import MAX_IMAGE_SIDE, MAX_UPLOAD_BYTES, Engine

from tiny_sam import tiny_sam

H, W = 90, 120
CENTRE, RADII = (60, 45), (32, 24)  # (x, y), (a, b) of the ellipse in `disk_image`


def disk_image() -> tuple[np.ndarray, np.ndarray]:
    """(H, W, 3) uint8 RGB: a textured bright ellipse on a dark noisy background, and its mask."""
    rng = np.random.default_rng(0)
    mask = np.zeros((H, W), np.uint8)
    cv2.ellipse(mask, CENTRE, RADII, 0, 0, 360, 1, -1)
    image = np.where(mask[..., None] > 0, (200, 170, 60), (40, 60, 90)) + rng.normal(0, 12, (H, W, 3))
    return np.clip(image, 0, 255).astype(np.uint8), mask.astype(bool)


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def decode(rle: dict) -> np.ndarray:
    return mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()}).astype(bool)


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app(Engine(grabcut(), grabcut_max_side=None))) as c:
        yield c


@pytest.fixture(scope="module")
def uploaded(client):
    """(image id, mask) of the disk image, uploaded once."""
    image, mask = disk_image()
    answer = client.post("/api/images", files={"file": ("disk.png", png_bytes(image), "image/png")})
    assert answer.status_code == 200, answer.text
    assert answer.json()["width"] == W and answer.json()["height"] == H
    return answer.json()["id"], mask


@pytest.fixture(scope="module")
def segmented(client, uploaded):
    image_id, _ = uploaded
    answer = client.post("/api/segment", json={"image_id": image_id, "points": [[60, 45, 1]]})
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_upload_round_trips_the_image(client, uploaded):
    image_id, _ = uploaded
    served = client.get(f"/api/images/{image_id}/image.png")
    assert served.headers["content-type"] == "image/png"
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(served.content))), disk_image()[0])


def test_segment_returns_raw_mask_convex_mask_polygon_and_timings(segmented, uploaded):
    _, truth = uploaded
    raw, convex = decode(segmented["raw"]), decode(segmented["convex"])
    assert raw.shape == convex.shape == (H, W)
    assert iou(raw, truth) > 0.9 and iou(convex, truth) > 0.9
    # The polygon arrives intact: filled by the pixel-centre rule, it is the convex mask.
    polygon = np.asarray(segmented["polygon"])
    assert polygon.ndim == 2 and polygon.shape[1] == 2 and len(polygon) >= 3
    np.testing.assert_array_equal(outlines.rasterize([polygon], H, W)[0], convex)
    timings = segmented["timings"]
    assert timings["projection_ms"] > 0 and timings["segmenter_ms"] > 0
    assert timings["server_ms"] >= timings["projection_ms"]


def test_downloads_hold_the_result(client, segmented):
    convex = decode(segmented["convex"])
    base = f"/api/results/{segmented['result_id']}"
    png = client.get(f"{base}/mask.png")
    assert "mask.png" in png.headers["content-disposition"]
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png.content))), convex.astype(np.uint8) * 255)
    coco = client.get(f"{base}/coco.json").json()
    (annotation,) = coco["annotations"]
    assert coco["images"][0]["width"] == W and annotation["convex"] is True
    rles = mask_utils.frPyObjects(annotation["segmentation"], H, W)
    assert iou(mask_utils.decode(mask_utils.merge(rles)).astype(bool), convex) > 0.9
    labelme = client.get(f"{base}/labelme.json").json()
    (shape,) = labelme["shapes"]
    assert shape["shape_type"] == "polygon" and shape["points"] == segmented["polygon"]
    assert (labelme["imageWidth"], labelme["imageHeight"]) == (W, H)


def test_the_embedding_is_computed_once_per_image(client, monkeypatch):
    calls = []
    original = GrabCutPredictor.set_image
    monkeypatch.setattr(GrabCutPredictor, "set_image", lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    image_id = client.post("/api/images", files={"file": ("d.png", png_bytes(disk_image()[0]))}).json()["id"]
    for points in ([[60, 45, 1]], [[60, 45, 1], [5, 5, 0]]):
        assert client.post("/api/segment", json={"image_id": image_id, "points": points}).status_code == 200
    assert len(calls) == 1


def test_sam_model_segments_and_reuses_its_embedding(monkeypatch):
    from segment_anything import SamPredictor

    calls = []
    original = SamPredictor.set_image
    monkeypatch.setattr(SamPredictor, "set_image", lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    engine = Engine(Segmenter("sam", "SAM", "tiny random SAM", "none", tiny_sam()))
    with TestClient(create_app(engine)) as c:
        image_id = c.post("/api/images", files={"file": ("d.png", png_bytes(disk_image()[0]))}).json()["id"]
        embedding_ms = []
        for point in ([60, 45, 1], [30, 20, 1]):
            answer = c.post("/api/segment", json={"image_id": image_id, "points": [point]})
            assert answer.status_code == 200, answer.text
            assert decode(answer.json()["convex"]).shape == (H, W)
            embedding_ms.append(answer.json()["timings"]["set_image_ms"])
    assert len(calls) == 1 and embedding_ms[0] > 0 and embedding_ms[1] == 0


def test_everything_fills_convex_records(client, uploaded):
    image_id, truth = uploaded
    answer = client.post("/api/everything", json={"image_id": image_id})
    assert answer.status_code == 200, answer.text
    masks = answer.json()["masks"]
    convex = [decode(m["rle"]) for m in masks if m["convex"]]
    assert convex and max(iou(m, truth) for m in convex) > 0.8
    for m in masks:  # a convex record's outline is its mask; the others are outlined
        assert len(m["outlines"]) >= 1
        if m["convex"]:
            np.testing.assert_array_equal(outlines.rasterize(m["outlines"], H, W)[0], decode(m["rle"]))
    base = f"/api/results/{answer.json()['result_id']}"
    labels = np.asarray(Image.open(io.BytesIO(client.get(f"{base}/mask.png").content)))
    assert labels.shape == (H, W) and set(np.unique(labels)) <= set(range(len(masks) + 1))
    coco = client.get(f"{base}/coco.json").json()
    assert sorted(a["convex"] for a in coco["annotations"]) == sorted(m["convex"] for m in masks)
    for a in coco["annotations"]:
        if not a["convex"]:  # kept masks travel exactly, as RLE
            assert any(np.array_equal(decode(a["segmentation"]), decode(m["rle"])) for m in masks)
    labelme = client.get(f"{base}/labelme.json").json()
    assert {s["label"] for s in labelme["shapes"]} <= {"convex", "object"}


def test_samples_open_the_embedded_benchmark(client):
    from eval.scenes import make_scene

    samples = client.get("/api/samples").json()
    assert samples[0]["name"] == "img_0"
    opened = client.post("/api/samples/img_2").json()
    served = client.get(f"/api/images/{opened['id']}/image.png").content
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(served))), make_scene(0, 2)[0])


def test_old_images_are_forgotten():
    with TestClient(create_app(Engine(grabcut(), max_images=2))) as c:
        ids = [c.post("/api/images", files={"file": ("d.png", png_bytes(disk_image()[0]))}).json()["id"] for _ in "abc"]
        assert c.get(f"/api/images/{ids[0]}/image.png").status_code == 404
        assert c.get(f"/api/images/{ids[2]}/image.png").status_code == 200


def test_grey_and_rgba_uploads_become_rgb(client):
    rgba = np.dstack([disk_image()[0], np.full((H, W), 128, np.uint8)])
    for array in (disk_image()[0][..., 0], rgba):
        answer = client.post("/api/images", files={"file": ("x.png", png_bytes(array))})
        assert answer.status_code == 200 and (answer.json()["height"], answer.json()["width"]) == (H, W)


def test_the_page_is_served(client):
    page = client.get("/")
    assert page.status_code == 200 and "<canvas" in page.text
    assert client.get("/static/app.js").status_code == 200


# ---------------------------------------------------------------------------- bad input


def truncated_png() -> bytes:
    data = png_bytes(disk_image()[0])
    return data[: len(data) // 2]


def tall_png() -> bytes:
    """A few hundred bytes declaring an image taller than the limit."""
    return png_bytes(np.zeros((MAX_IMAGE_SIDE + 1, 1), np.uint8))


UPLOADS = [
    ("text file", lambda: {"files": {"file": ("notes.txt", b"hello", "text/plain")}}, 415),
    ("empty file", lambda: {"files": {"file": ("empty.png", b"", "image/png")}}, 400),
    ("truncated PNG", lambda: {"files": {"file": ("cut.png", truncated_png(), "image/png")}}, 400),
    ("image side over the limit", lambda: {"files": {"file": ("tall.png", tall_png(), "image/png")}}, 413),
    ("file over the byte limit", lambda: {"files": {"file": ("big.png", b"\0" * (MAX_UPLOAD_BYTES + 1))}}, 413),
    ("no file field", lambda: {"data": {"other": "x"}}, 422),
]


@pytest.mark.parametrize(("case", "request_kwargs", "status"), UPLOADS, ids=[u[0] for u in UPLOADS])
def test_bad_uploads_are_refused_with_json(client, case, request_kwargs, status):
    answer = client.post("/api/images", **request_kwargs())
    assert_refused(answer, status)


def segment_cases(image_id: str) -> list[tuple[str, dict, int]]:
    def body(**fields) -> dict:
        return {"json": {"image_id": image_id, **fields}}

    return [
        ("unknown image id", {"json": {"image_id": "nope", "points": [[1, 1, 1]]}}, 404),
        ("malformed JSON", {"content": b'{"image_id": ', "headers": {"content-type": "application/json"}}, 400),
        ("point outside the image", body(points=[[W + 5, 10, 1]]), 422),
        ("negative coordinate", body(points=[[-1, 10, 1]]), 422),
        ("unknown label", body(points=[[10, 10, 2]]), 422),
        ("label not a number", body(points=[[10, 10, "yes"]]), 422),
        ("background points only", body(points=[[10, 10, 0]]), 422),
        ("no prompt", body(), 422),
        ("point without label", body(points=[[10, 10]]), 422),
        ("NaN coordinate", {"content": b'{"image_id": "%s", "points": [[NaN, 1, 1]]}' % image_id.encode()}, 422),
        ("inverted box", body(box=[50, 50, 10, 10]), 422),
        ("box outside the image", body(box=[0, 0, W + 50, 10]), 422),
        ("box of three numbers", body(box=[0, 0, 10]), 422),
        ("unknown field", body(points=[[10, 10, 1]], mask=[1]), 422),
        ("body is a list", {"json": [1, 2, 3]}, 422),
        ("missing image id", {"json": {"points": [[10, 10, 1]]}}, 422),
    ]


SEGMENT_CASES = [case for case, _, _ in segment_cases("x")]


@pytest.mark.parametrize("case", SEGMENT_CASES)
def test_bad_segment_requests_are_refused_with_json(client, uploaded, case):
    _, request_kwargs, status = next(c for c in segment_cases(uploaded[0]) if c[0] == case)
    assert_refused(client.post("/api/segment", **request_kwargs), status)


OTHER_CASES = [
    ("everything: unknown image id", "post", "/api/everything", {"json": {"image_id": "nope"}}, 404),
    ("everything: malformed JSON", "post", "/api/everything", {"content": b"{", "headers": {}}, 400),
    ("unknown sample", "post", "/api/samples/img_99", {}, 404),
    ("unknown image's PNG", "get", "/api/images/nope/image.png", {}, 404),
    ("unknown result", "get", "/api/results/nope/mask.png", {}, 404),
    ("unknown API path", "get", "/api/nothing", {}, 404),
    ("wrong method", "get", "/api/segment", {}, 405),
]


@pytest.mark.parametrize(("case", "method", "path", "kwargs", "status"), OTHER_CASES, ids=[c[0] for c in OTHER_CASES])
def test_other_bad_requests_are_refused_with_json(client, case, method, path, kwargs, status):
    if "headers" in kwargs:
        kwargs = {**kwargs, "headers": {"content-type": "application/json"}}
    assert_refused(getattr(client, method)(path, **kwargs), status)


def test_unknown_download_name_is_refused(client, segmented):
    assert_refused(client.get(f"/api/results/{segmented['result_id']}/mask.gif"), 404)


def assert_refused(answer, status: int) -> None:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/json"
    message = answer.json()["error"]
    assert isinstance(message, str) and message and "Traceback" not in answer.text


# ---------------------------------------------------------------------------- command


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--port", "70000"], "--port must be"),
        (["--grabcut-side", "3"], "--grabcut-side"),
        (["--model", "sam2"], "needs --checkpoint"),
        (["--model", "grabcut", "--checkpoint", "x.pth"], "GrabCut takes no checkpoint"),
    ],
)
def test_command_refuses_bad_arguments_in_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        serve_main.main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_command_refuses_a_port_in_use(capsys):
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        with pytest.raises(SystemExit) as exit_info:
            serve_main.main(["--port", str(port), "--model", "grabcut"])
    assert exit_info.value.code == 2 and f"127.0.0.1:{port}" in capsys.readouterr().err


def test_command_binds_loopback_by_default():
    assert serve_main.build_parser().parse_args([]).host == "127.0.0.1"


def test_json_answers_are_plain_json(segmented):
    json.dumps(segmented)  # no numpy scalars left in the answer


def test_command_serves_the_page_on_loopback(tmp_path):
    """`python -m sam_convex.serve` as a user starts it: the page and the API answer."""
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    argv = [sys.executable, "-m", "sam_convex.serve", "--port", str(port), "--model", "grabcut"]
    server = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                info = httpx.get(f"http://127.0.0.1:{port}/api/info", timeout=5)
                break
            except httpx.TransportError:
                assert server.poll() is None and time.monotonic() < deadline, "the server did not start"
                time.sleep(0.5)
        assert info.json()["model"] == "GrabCut"
        assert "<canvas" in httpx.get(f"http://127.0.0.1:{port}/", timeout=5).text
    finally:
        server.terminate()
        output = server.communicate(timeout=30)[0]
    assert "model: GrabCut" in output


def test_promptnet_checkpoint_serves_clicks_and_everything(tmp_path):
    """--model promptnet --checkpoint PATH: the learned model through the segmenter registry."""
    from sam_convex.promptnet import PromptNet, save_promptnet
    from sam_convex.segmenters import choose_segmenter

    save_promptnet(tmp_path / "p.pt", PromptNet(width=4, depth=2, size=32))
    segmenter = choose_segmenter("promptnet", tmp_path / "p.pt", device="cpu")
    with TestClient(create_app(Engine(segmenter))) as c:
        assert c.get("/api/info").json()["model"] == "PromptNet"
        image_id = c.post("/api/images", files={"file": ("d.png", png_bytes(disk_image()[0]))}).json()["id"]
        answer = c.post("/api/segment", json={"image_id": image_id, "points": [[60, 45, 1]], "box": [20, 15, 100, 75]})
        assert answer.status_code == 200, answer.text
        polygon, convex = answer.json()["polygon"], decode(answer.json()["convex"])
        if polygon:  # an untrained net may find nothing; what it finds arrives as its polygon
            np.testing.assert_array_equal(outlines.rasterize([np.asarray(polygon)], H, W)[0], convex)
        assert c.post("/api/everything", json={"image_id": image_id}).status_code == 200
