"""The page's web app (FastAPI): the static page and a small JSON API over `Engine`.

    app = create_app(Engine(grabcut()))          # served by uvicorn: python -m sam_convex.serve

| method, path | body | answer |
|---|---|---|
| GET / | | the page (its files under /static/) |
| GET /api/info | | model, limits |
| GET /api/samples | | the embedded benchmark's first images |
| POST /api/samples/{name} | | {id, name, width, height} |
| POST /api/images | multipart file | {id, name, width, height} |
| GET /api/images/{id}/image.png | | the image as the server holds it |
| POST /api/segment | {image_id, points: [[x, y, label]], box: [x0, y0, x1, y1]} | masks, polygon, timings |
| POST /api/everything | {image_id} | every mask, convex ones flagged |
| GET /api/results/{id}/{mask.png, coco.json, labelme.json} | | the download |

Masks travel as COCO compressed RLE ({"size": [H, W], "counts": str}, column-major), the
format of sam2's demo. Every refusal is JSON {"error": message} with a 4xx status: 400
malformed JSON or a damaged image, 404 unknown id or sample, 413 too large, 415 not an
image, 422 a request that parses but makes no sense (a point outside the image, a label
other than 0/1, a missing field).
"""

from __future__ import annotations

import logging
import time
from importlib import resources
from typing import Annotated

from fastapi import FastAPI, File, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from sam_convex.serve.downloads import DOWNLOADS, rle
from sam_convex.serve.engine import MAX_IMAGE_SIDE, MAX_UPLOAD_BYTES, Engine, RequestError, Result

log = logging.getLogger("sam_convex.serve")
NUM_SAMPLES = 8  # the embedded benchmark's images img_0 ... img_7 (eval.scenes, seed 0)

Coordinate = Annotated[float, Field(allow_inf_nan=False)]


class SegmentRequest(BaseModel):
    """Prompts in image pixels (x right, y down; pixel (i, j) covers [j, j+1) x [i, i+1))."""

    model_config = ConfigDict(extra="forbid")
    image_id: str
    points: list[tuple[Coordinate, Coordinate, int]] = Field(default_factory=list, max_length=64)
    box: tuple[Coordinate, Coordinate, Coordinate, Coordinate] | None = None


class EverythingRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    image_id: str


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def validation_message(err: RequestValidationError) -> tuple[int, str]:
    """(status, one line) for a request FastAPI could not parse: 400 when the body is
    not JSON, else 422 naming each bad field."""
    problems = err.errors()
    if any(p.get("type") == "json_invalid" for p in problems):
        return 400, "malformed JSON in the request body"
    parts = []
    for p in problems:
        where = ".".join(str(x) for x in p.get("loc", ()) if x != "body") or "body"
        parts.append(f"{where}: {p.get('msg', 'invalid')}")
    return 422, "; ".join(parts)


def create_app(engine: Engine) -> FastAPI:
    """The app for one engine (one segmenter)."""
    app = FastAPI(title="sam-convex page", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.engine = engine

    @app.exception_handler(RequestError)
    async def refused(request: Request, err: RequestError) -> JSONResponse:
        return error(err.status, str(err))

    @app.exception_handler(RequestValidationError)
    async def unparsable(request: Request, err: RequestValidationError) -> JSONResponse:
        return error(*validation_message(err))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
        return error(err.status_code, str(err.detail))

    @app.exception_handler(Exception)
    async def crashed(request: Request, err: Exception) -> JSONResponse:
        # A bug, not bad input: logged with its traceback here, never sent to the page.
        log.exception("internal error on %s %s", request.method, request.url.path)
        return error(500, f"internal error ({type(err).__name__}); see the server's log")

    @app.get("/api/info")
    def info() -> dict:
        return {
            "model": engine.segmenter.label,
            "description": engine.segmenter.description,
            "checkpoint": engine.segmenter.checkpoint,
            "grabcut_max_side": engine.grabcut_max_side if engine.segmenter.kind == "grabcut" else None,
            "max_upload_bytes": MAX_UPLOAD_BYTES,
            "max_image_side": MAX_IMAGE_SIDE,
        }

    @app.get("/api/samples")
    def samples() -> list[dict]:
        from eval.scenes import IMAGE_SIZE, KINDS

        h, w = IMAGE_SIZE
        return [
            {"name": f"img_{i}", "width": w, "height": h, "kind": KINDS[i % len(KINDS)]} for i in range(NUM_SAMPLES)
        ]

    @app.post("/api/samples/{name}")
    def open_sample(name: str) -> dict:
        from eval.scenes import make_scene

        names = [f"img_{i}" for i in range(NUM_SAMPLES)]
        if name not in names:
            raise RequestError(404, f"unknown sample {name!r}; samples are {', '.join(names)}")
        image = make_scene(0, names.index(name))[0]
        return described(engine.add_image(image, f"{name}.png"))

    @app.post("/api/images")
    def upload(file: Annotated[UploadFile, File()]) -> dict:
        data = file.file.read(MAX_UPLOAD_BYTES + 1)
        return described(engine.add_upload(data, file.filename or "upload"))

    @app.get("/api/images/{image_id}/image.png")
    def image_png(image_id: str) -> Response:
        return Response(engine.image_png(image_id), media_type="image/png", headers={"Cache-Control": "no-store"})

    @app.post("/api/segment")
    def segment(request: SegmentRequest) -> dict:
        start = time.perf_counter()
        result, timings = engine.segment(request.image_id, [list(p) for p in request.points], request.box)
        answer = {
            "result_id": result.id,
            "image_id": result.image.id,
            "raw": rle(result.raw),
            "convex": rle(result.masks[0]),
            "polygon": result.polygons[0][0].tolist() if result.polygons[0] else [],
            **result.info,
        }
        answer["timings"] = {**rounded(timings), "server_ms": round(1000 * (time.perf_counter() - start), 1)}
        return answer

    @app.post("/api/everything")
    def everything(request: EverythingRequest) -> dict:
        start = time.perf_counter()
        result, timings = engine.everything(request.image_id)
        answer = {
            "result_id": result.id,
            "image_id": result.image.id,
            "masks": [
                {
                    "rle": rle(mask),
                    "convex": bool(convex),
                    "area": int(mask.sum()),
                    "outlines": [o.tolist() for o in outlines],
                }
                for mask, convex, outlines in zip(result.masks, result.convex, result.polygons)
            ],
        }
        answer["timings"] = {**rounded(timings), "server_ms": round(1000 * (time.perf_counter() - start), 1)}
        return answer

    @app.get("/api/results/{result_id}/{name}")
    def download(result_id: str, name: str) -> Response:
        if name not in DOWNLOADS:
            raise RequestError(404, f"unknown download {name!r}; one of {', '.join(DOWNLOADS)}")
        result: Result = engine.result(result_id)
        make, media_type = DOWNLOADS[name]
        stem = result.image.name.rsplit(".", 1)[0]
        headers = {"Content-Disposition": f'attachment; filename="{stem}-{name}"'}
        return Response(make(result), media_type=media_type, headers=headers)

    static = resources.files("sam_convex.serve") / "static"

    @app.get("/")
    def page() -> FileResponse:
        return FileResponse(str(static / "index.html"))

    app.mount("/static", StaticFiles(directory=str(static)), name="static")
    return app


def described(stored) -> dict:
    h, w = stored.size
    return {"id": stored.id, "name": stored.name, "width": w, "height": h}


def rounded(timings: dict) -> dict:
    return {k: round(float(v), 1) for k, v in timings.items()}
