// The page: open an image, click or drag prompts, draw the server's raw mask and convex polygon.
// No build step: plain browser JavaScript. The JSON API is described in sam_convex/serve/app.py.
"use strict";

const RAW_RGBA = [230, 40, 40, 110]; // the segmenter's mask: semi-transparent red
const CONVEX_STROKE = "rgb(0, 255, 0)"; // the convex polygon: crisp green stroke
const POS = "#00c853", NEG = "#d50000";
const DRAG_PX = 6; // a press that moves further than this (screen px) is a box, not a click

const $ = (id) => document.getElementById(id);
const imageCanvas = $("image"), overlay = $("overlay");
const state = {
  image: null, // {id, name, width, height}
  points: [], // [[x, y, label]] in image pixels
  box: null, // [x0, y0, x1, y1]
  segment: null, // the last /api/segment answer, with .rawCanvas
  everything: null, // the last /api/everything answer
  seq: 0, // request sequence number: only the newest request's answer is drawn
  controller: null, // AbortController of the request in flight
  press: null, // {x, y, sx, sy, label} while the mouse is down
  drag: null, // [x0, y0, x1, y1] while dragging a box
};
// What the browser test and the benchmark read.
window.samConvex = { state, lastClickToOverlayMs: null, lastTimings: null, overlaySeq: 0, draws: 0 };

// ---- API ------------------------------------------------------------------------------

async function api(path, options = {}) {
  const response = await fetch(path, options);
  const body = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
  if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
  return body;
}

function postJSON(path, payload, signal) {
  return api(path, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(payload), signal,
  });
}

function showError(message) {
  $("error").textContent = message || "";
  $("error").hidden = !message;
}

// ---- opening images -------------------------------------------------------------------

async function openImage(described) {
  const img = new Image();
  img.src = `/api/images/${described.id}/image.png`;
  await img.decode();
  imageCanvas.width = described.width;
  imageCanvas.height = described.height;
  imageCanvas.getContext("2d").drawImage(img, 0, 0);
  Object.assign(state, { image: described, points: [], box: null, segment: null, everything: null });
  cancelInFlight();
  $("everything").disabled = false;
  $("clear").disabled = false;
  $("downloads").hidden = true;
  $("status").textContent = `${described.name}: ${described.width}x${described.height}. Click on an object.`;
  showError("");
  redraw();
  document.body.dataset.image = described.id;
}

$("file").addEventListener("change", async (event) => {
  const file = event.target.files[0];
  if (!file) return;
  const form = new FormData();
  form.append("file", file);
  try {
    await openImage(await api("/api/images", { method: "POST", body: form }));
  } catch (err) {
    showError(`upload refused: ${err.message}`);
  }
  event.target.value = "";
});

$("samples").addEventListener("change", async (event) => {
  const name = event.target.value;
  if (!name) return;
  try {
    await openImage(await api(`/api/samples/${encodeURIComponent(name)}`, { method: "POST" }));
  } catch (err) {
    showError(err.message);
  }
});

// ---- prompts --------------------------------------------------------------------------

function imagePoint(event) {
  // Screen position -> image pixels (the canvas may be shown smaller than the image).
  const rect = overlay.getBoundingClientRect();
  const w = state.image.width, h = state.image.height;
  const x = ((event.clientX - rect.left) / rect.width) * w;
  const y = ((event.clientY - rect.top) / rect.height) * h;
  return [Math.min(Math.max(x, 0), w - 0.01), Math.min(Math.max(y, 0), h - 0.01)];
}

overlay.addEventListener("contextmenu", (event) => event.preventDefault());

overlay.addEventListener("mousedown", (event) => {
  if (!state.image || (event.button !== 0 && event.button !== 2)) return;
  const [x, y] = imagePoint(event);
  const label = event.button === 2 || event.shiftKey ? 0 : 1;
  state.press = { x, y, sx: event.clientX, sy: event.clientY, label };
});

overlay.addEventListener("mousemove", (event) => {
  const press = state.press;
  if (!press || press.label !== 1) return;
  if (!state.drag && Math.hypot(event.clientX - press.sx, event.clientY - press.sy) < DRAG_PX) return;
  const [x, y] = imagePoint(event);
  state.drag = [Math.min(press.x, x), Math.min(press.y, y), Math.max(press.x, x), Math.max(press.y, y)];
  redraw();
});

overlay.addEventListener("mouseup", (event) => {
  const press = state.press;
  if (!press) return;
  const clicked = performance.now();
  state.press = null;
  if (state.drag) {
    const [x0, y0, x1, y1] = state.drag;
    state.drag = null;
    if (x1 - x0 < 1 || y1 - y0 < 1) return redraw();
    state.box = [x0, y0, x1, y1];
  } else {
    state.points.push([press.x, press.y, press.label]);
  }
  state.everything = null;
  redraw();
  segment(clicked);
});

$("clear").addEventListener("click", () => {
  Object.assign(state, { points: [], box: null, segment: null, everything: null });
  cancelInFlight();
  $("downloads").hidden = true;
  redraw();
});

function cancelInFlight() {
  if (state.controller) state.controller.abort();
  state.controller = null;
  state.seq += 1; // an answer already on its way is ignored too
}

// ---- requests -------------------------------------------------------------------------

async function segment(clicked) {
  if (!state.points.some((p) => p[2] === 1) && !state.box) {
    $("status").textContent = "Add an object point (left click) or a box: background points alone name no object.";
    return;
  }
  cancelInFlight(); // a new click supersedes the request in flight
  const seq = state.seq;
  const controller = (state.controller = new AbortController());
  $("status").textContent = "segmenting…";
  try {
    const payload = { image_id: state.image.id, points: state.points };
    if (state.box) payload.box = state.box;
    const answer = await postJSON("/api/segment", payload, controller.signal);
    if (seq !== state.seq) return; // superseded while decoding
    answer.rawCanvas = maskCanvas(answer.raw, RAW_RGBA);
    state.segment = answer;
    showError("");
    await drawn(seq, clicked, answer.timings);
  } catch (err) {
    if (err.name === "AbortError" || seq !== state.seq) return;
    showError(err.message);
    $("status").textContent = "";
  } finally {
    if (state.controller === controller) state.controller = null;
  }
}

$("everything").addEventListener("click", async () => {
  if (!state.image) return;
  const clicked = performance.now();
  Object.assign(state, { points: [], box: null, segment: null });
  cancelInFlight();
  const seq = state.seq;
  const controller = (state.controller = new AbortController());
  $("status").textContent = "segmenting everything…";
  redraw();
  try {
    const answer = await postJSON("/api/everything", { image_id: state.image.id }, controller.signal);
    if (seq !== state.seq) return;
    state.everything = answer;
    showError("");
    await drawn(seq, clicked, answer.timings);
  } catch (err) {
    if (err.name === "AbortError" || seq !== state.seq) return;
    showError(err.message);
    $("status").textContent = "";
  } finally {
    if (state.controller === controller) state.controller = null;
  }
});

async function drawn(seq, clicked, timings) {
  // Draw, wait for the frame to be painted, then report the click-to-overlay time.
  redraw();
  await new Promise((resolve) => requestAnimationFrame(() => resolve()));
  const ms = performance.now() - clicked;
  window.samConvex.lastClickToOverlayMs = ms;
  window.samConvex.lastTimings = timings;
  window.samConvex.overlaySeq = seq;
  window.samConvex.draws += 1;
  document.body.dataset.overlay = String(seq);
  const result = state.segment || state.everything;
  const what = state.everything
    ? `${state.everything.masks.length} masks, ${state.everything.masks.filter((m) => m.convex).length} convex (filled)`
    : `convex polygon with ${state.segment.polygon.length} vertices`;
  const embedding = timings.set_image_ms ? ` · image embedding ${timings.set_image_ms.toFixed(0)} ms (once)` : "";
  $("status").textContent =
    `${what} · segmenter ${timings.segmenter_ms.toFixed(0)} ms · projection ${timings.projection_ms.toFixed(0)} ms` +
    `${embedding} · click to overlay ${ms.toFixed(0)} ms`;
  for (const [id, name] of [["dl-png", "mask.png"], ["dl-coco", "coco.json"], ["dl-labelme", "labelme.json"]]) {
    $(id).href = `/api/results/${result.result_id}/${name}`;
  }
  $("downloads").hidden = false;
}

// ---- drawing --------------------------------------------------------------------------

function rleCounts(counts) {
  // COCO's compressed RLE string -> run lengths (pycocotools' rleFrString).
  const out = [];
  let p = 0;
  while (p < counts.length) {
    let x = 0, k = 0, more = 1;
    while (more) {
      const c = counts.charCodeAt(p) - 48;
      x |= (c & 0x1f) << (5 * k);
      more = c & 0x20;
      p += 1;
      k += 1;
      if (!more && c & 0x10) x |= -1 << (5 * k);
    }
    if (out.length > 2) x += out[out.length - 2];
    out.push(x);
  }
  return out;
}

function maskCanvas(rle, rgba) {
  // An offscreen canvas of the image's size: `rgba` where the mask is set, transparent elsewhere.
  const [h, w] = rle.size;
  const canvas = document.createElement("canvas");
  canvas.width = w;
  canvas.height = h;
  const ctx = canvas.getContext("2d");
  const data = ctx.createImageData(w, h);
  const pixels = new Uint32Array(data.data.buffer);
  const colour = new Uint32Array(new Uint8ClampedArray(rgba).buffer)[0];
  let index = 0, value = 0;
  for (const run of rleCounts(rle.counts)) {
    if (value) {
      for (let k = index; k < index + run; k++) {
        const col = Math.floor(k / h); // column-major, as COCO stores masks
        pixels[(k - col * h) * w + col] = colour;
      }
    }
    index += run;
    value ^= 1;
  }
  ctx.putImageData(data, 0, 0);
  return canvas;
}

function tracePolygon(ctx, vertices) {
  ctx.beginPath();
  vertices.forEach(([x, y], i) => (i ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
  ctx.closePath();
}

function palette(i) {
  const hue = (i * 137.508) % 360; // golden angle: neighbours differ
  return [`hsla(${hue}, 85%, 55%, 0.45)`, `hsl(${hue}, 85%, 45%)`];
}

function redraw() {
  // The overlay has the displayed size in device pixels, so strokes stay crisp at any zoom;
  // it draws in image pixels through a scale transform.
  const rect = imageCanvas.getBoundingClientRect();
  const dpr = window.devicePixelRatio || 1;
  overlay.width = Math.max(1, Math.round(rect.width * dpr));
  overlay.height = Math.max(1, Math.round(rect.height * dpr));
  const ctx = overlay.getContext("2d");
  ctx.clearRect(0, 0, overlay.width, overlay.height);
  if (!state.image) return;
  const scale = overlay.width / state.image.width;
  ctx.setTransform(scale, 0, 0, overlay.height / state.image.height, 0, 0);
  const px = 1 / scale; // one device pixel, in image pixels
  const seg = state.segment;
  if (seg && $("show-raw").checked) {
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(seg.rawCanvas, 0, 0);
  }
  if (seg && $("show-convex").checked && seg.polygon.length) {
    tracePolygon(ctx, seg.polygon);
    ctx.lineWidth = 2.5 * px;
    ctx.strokeStyle = CONVEX_STROKE;
    ctx.stroke();
  }
  if (state.everything) {
    state.everything.masks.forEach((mask, i) => {
      const [fill, stroke] = palette(i);
      const show = mask.convex ? $("show-convex").checked : $("show-raw").checked;
      if (!show) return;
      for (const outline of mask.outlines) {
        tracePolygon(ctx, outline);
        if (mask.convex) {
          ctx.fillStyle = fill;
          ctx.fill();
        }
        ctx.lineWidth = 1.5 * px;
        ctx.strokeStyle = stroke;
        ctx.stroke();
      }
    });
  }
  const box = state.drag || state.box;
  if (box) {
    ctx.setLineDash([6 * px, 4 * px]);
    ctx.lineWidth = 1.5 * px;
    ctx.strokeStyle = "#ffeb3b";
    ctx.strokeRect(box[0], box[1], box[2] - box[0], box[3] - box[1]);
    ctx.setLineDash([]);
  }
  for (const [x, y, label] of state.points) {
    ctx.beginPath();
    ctx.arc(x, y, 5 * px, 0, 2 * Math.PI);
    ctx.fillStyle = label ? POS : NEG;
    ctx.fill();
    ctx.lineWidth = 1.5 * px;
    ctx.strokeStyle = "white";
    ctx.stroke();
  }
}

$("show-raw").addEventListener("change", redraw);
$("show-convex").addEventListener("change", redraw);
window.addEventListener("resize", redraw);

// ---- start ----------------------------------------------------------------------------

(async () => {
  try {
    const info = await api("/api/info");
    $("model").textContent = `segmenter: ${info.description}`;
    for (const sample of await api("/api/samples")) {
      const option = document.createElement("option");
      option.value = sample.name;
      option.textContent = `${sample.name} (${sample.kind})`;
      $("samples").append(option);
    }
    document.body.dataset.ready = "1";
  } catch (err) {
    showError(`the server did not answer: ${err.message}`);
  }
})();
