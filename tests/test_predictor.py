"""SamConvexPredictor against segment-anything's SamPredictor, on a tiny random SAM."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.ndimage import binary_erosion
from segment_anything import SamPredictor

from sam_convex import ConvexProjector, SamConvexPredictor, loading
from sam_convex.measures import hull_gap, iou

from tiny_sam import random_image, tiny_sam

H, W = 96, 160  # non-square on purpose: the model frame has padding at the bottom
PROMPTS = {
    "point": dict(point_coords=np.array([[80.0, 40.0]]), point_labels=np.array([1])),
    "points": dict(point_coords=np.array([[80.0, 40.0], [20.0, 80.0]]), point_labels=np.array([1, 0])),
    "box": dict(box=np.array([30.0, 20.0, 120.0, 80.0])),
    "points+box": dict(
        point_coords=np.array([[70.0, 50.0]]), point_labels=np.array([1]), box=np.array([30.0, 20.0, 120.0, 80.0])
    ),
}


def small_projector():
    return ConvexProjector()


@pytest.fixture(scope="module")
def sam():
    return tiny_sam()


@pytest.fixture(scope="module")
def image():
    return random_image(H, W)


@pytest.fixture(scope="module")
def plain(sam, image):
    predictor = SamPredictor(sam)
    predictor.set_image(image)
    return predictor


@pytest.fixture(scope="module")
def convex(sam, image):
    predictor = SamConvexPredictor(sam, small_projector())
    predictor.set_image(image)
    return predictor


def assert_identical(ours, theirs):
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        assert type(a) is type(b) and a.dtype == b.dtype and a.shape == b.shape
        if isinstance(a, torch.Tensor):
            assert torch.equal(a, b)
        else:
            np.testing.assert_array_equal(a, b)


def boundary_length(mask):
    return int((mask & ~binary_erosion(mask)).sum())


def is_convex(mask):
    """Equal to its convex hull up to a few boundary pixels (rounding of G near 0)."""
    return hull_gap(mask) <= max(2, 0.02 * boundary_length(mask))


# ---------------------------------------------------------------- project=False: SAM


@pytest.fixture(scope="module")
def unprojected(sam, image):
    predictor = SamConvexPredictor(sam, project=False)
    predictor.set_image(image)
    return predictor


@pytest.mark.parametrize("name", PROMPTS)
@pytest.mark.parametrize("multimask", [True, False])
def test_unprojected_is_bit_identical_to_sam_predictor(unprojected, plain, name, multimask):
    for return_logits in (False, True):
        kwargs = dict(PROMPTS[name], multimask_output=multimask, return_logits=return_logits)
        assert_identical(unprojected.predict(**kwargs), plain.predict(**kwargs))
    assert unprojected.last_fit is None
    assert torch.equal(unprojected.get_image_embedding(), plain.get_image_embedding())
    assert unprojected.original_size == plain.original_size
    assert unprojected.input_size == plain.input_size


def test_unprojected_predict_torch_and_set_torch_image(sam, image, plain):
    ours = SamConvexPredictor(sam, project=False)
    x = torch.as_tensor(ours.transform.apply_image(image)).permute(2, 0, 1)[None]
    ours.set_torch_image(x, image.shape[:2])
    assert ours.is_image_set and ours.device == plain.device
    coords = torch.as_tensor(
        ours.transform.apply_coords(np.array([[[80.0, 40.0]], [[20.0, 30.0]]]), (H, W)), dtype=torch.float
    )
    labels = torch.ones(2, 1, dtype=torch.int)
    boxes = torch.as_tensor(
        ours.transform.apply_boxes(np.array([[30.0, 20.0, 120.0, 80.0], [0.0, 0.0, 60.0, 50.0]]), (H, W)),
        dtype=torch.float,
    )
    for multimask in (True, False):
        args = (coords, labels, boxes, None, multimask)
        assert_identical(ours.predict_torch(*args), plain.predict_torch(*args))
    ours.reset_image()
    assert not ours.is_image_set
    with pytest.raises(RuntimeError, match="set_image"):
        ours.predict(**PROMPTS["box"])


# ---------------------------------------------------------------- project=True


@pytest.mark.parametrize("name,multimask", [("point", True), ("box", False), ("points+box", True)])
def test_projected_masks_are_convex(convex, plain, name, multimask):
    masks, scores, low_res = convex.predict(**PROMPTS[name], multimask_output=multimask)
    sam_masks, sam_scores, sam_low_res = plain.predict(**PROMPTS[name], multimask_output=multimask)
    c = 3 if multimask else 1
    assert masks.shape == (c, H, W) and masks.dtype == bool
    # Scores and low-res logits are SAM's, untouched.
    assert_identical((scores, low_res), (sam_scores, sam_low_res))
    # One batched fit for all C masks.
    assert convex.last_fit.masks.shape == (c, H, W) and convex.last_fit.losses.shape == (c,)
    # (The random SAM's masks are speckle, so their nearest convex set is often empty;
    # test_projection_follows_a_nonconvex_sam_mask checks a non-trivial projection.)
    for m in masks:
        assert is_convex(m), f"hull gap {hull_gap(m)} for boundary {boundary_length(m)}"
    # The random SAM's own masks are not convex, so the check above has teeth.
    assert not all(is_convex(m) for m in sam_masks)


def test_projection_follows_a_nonconvex_sam_mask():
    """SAM says "L-shape": the projection is convex and still mostly the L."""
    low_res = torch.full((1, 1, 64, 64), -8.0)
    low_res[..., 4:20, 8:14] = 8.0  # valid region: rows 0-38 for a 96x160 image
    low_res[..., 14:20, 8:40] = 8.0
    sam = tiny_sam()
    sam.mask_decoder = FixedDecoder(low_res)
    predictor = SamConvexPredictor(sam, small_projector())
    predictor.set_image(random_image(H, W))
    masks, _, _ = predictor.predict(**PROMPTS["point"], multimask_output=True)
    raw = predictor.last_sam_logits.numpy() > 0
    assert masks.shape == (3, H, W) and predictor.last_fit.masks.shape[0] == 3
    for m, r in zip(masks, raw):
        assert not is_convex(r) and is_convex(m)
        assert iou(m, r) >= 0.6


def test_projected_logits_threshold_to_masks(convex):
    masks, _, _ = convex.predict(**PROMPTS["point"])
    fit = convex.last_fit
    logits, scores, low_res = convex.predict(**PROMPTS["point"], return_logits=True)
    assert logits.dtype == np.float32 and logits.shape == (3, H, W)
    np.testing.assert_array_equal(logits >= 0, masks)  # same projector seed, same fit
    np.testing.assert_array_equal(logits, convex.last_fit.logits.numpy())
    np.testing.assert_array_equal(fit.losses, convex.last_fit.losses)
    # SAM's low-res logits still work as mask_input.
    best = int(np.argmax(scores))
    again, _, _ = convex.predict(**PROMPTS["point"], mask_input=low_res[best : best + 1], multimask_output=False)
    assert again.shape == (1, H, W) and is_convex(again[0])


def test_projected_predict_torch_batched(convex):
    t = convex.transform
    coords = torch.as_tensor(t.apply_coords(np.array([[[80.0, 40.0]], [[40.0, 60.0]]]), (H, W)), dtype=torch.float)
    labels = torch.ones(2, 1, dtype=torch.int)
    masks, scores, low_res = convex.predict_torch(coords, labels, multimask_output=True)
    assert masks.shape == (2, 3, H, W) and masks.dtype == torch.bool
    assert scores.shape == (2, 3) and low_res.shape == (2, 3, 64, 64)
    assert convex.last_fit.masks.shape == (6, H, W)  # B x C masks, one fit
    assert torch.equal(masks.reshape(6, H, W), convex.last_fit.masks)
    for m in masks.reshape(6, H, W).numpy():
        assert is_convex(m)
    logits, _, _ = convex.predict_torch(coords, labels, multimask_output=False, return_logits=True)
    assert logits.shape == (2, 1, H, W) and logits.dtype == torch.float32


# ---------------------------------------------------------------- the padding


class FixedDecoder(torch.nn.Module):
    """Stands in for SAM's mask decoder: always the same low-res logits."""

    def __init__(self, low_res):
        super().__init__()
        self.register_buffer("low_res", low_res)

    def forward(self, image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings, multimask_output):
        b, c = sparse_prompt_embeddings.shape[0], 3 if multimask_output else 1
        return self.low_res.expand(b, c, -1, -1).clone(), torch.full((b, c), 0.9)


@pytest.mark.parametrize("h,w", [(60, 160), (160, 60)], ids=["wide", "tall"])
def test_padding_of_the_model_frame_is_not_fitted(h, w):
    """An object at the bottom-right corner whose SAM logits run on into the padding.

    The tiny model frame is 256 px with 64x64 low-res logits; a wide 60x160 image fills
    the frame's top 96 rows, i.e. low-res rows 0-24 (a tall one, the left 24 columns).
    The object covers low-res rows/columns 12-64 beyond the valid region, i.e. the
    image's bottom/right half. Fitting the whole low-res map would stretch the padding
    over the image and put the top of the object at low-res row 12 of 64 instead of
    12 of 24.
    """
    low_res = torch.full((1, 1, 64, 64), -8.0)
    low_res[..., 12:, 40:] = 8.0 if h < w else -8.0
    low_res[..., 40:, 12:] = 8.0 if h > w else -8.0
    expected = np.zeros((h, w), bool)
    if h < w:
        expected[30:, 100:] = True  # rows 12/24 of 60, columns 40/64 of 160
    else:
        expected[100:, 30:] = True

    sam = tiny_sam()
    sam.mask_decoder = FixedDecoder(low_res)
    predictor = SamConvexPredictor(sam, small_projector())
    predictor.set_image(random_image(h, w))
    prompt = dict(point_coords=np.array([[w - 5.0, h - 5.0]]), point_labels=np.array([1]), multimask_output=False)
    masks, _, sam_low_res = predictor.predict(**prompt)
    assert torch.equal(torch.as_tensor(sam_low_res), low_res[0])
    assert iou(masks[0], expected) >= 0.9
    assert masks[0, -1, -1] and not masks[0, 0, 0]

    # The check above tells the two apart: the padded map fitted directly is far off.
    padded_fit = small_projector().fit(F.interpolate(low_res, (h, w), mode="bilinear")[0], logits=True)
    assert iou(padded_fit.masks[0].numpy(), expected) < 0.75


# ---------------------------------------------------------------- construction, errors


def test_from_checkpoint_and_errors(tmp_path, monkeypatch, sam, image):
    monkeypatch.setitem(loading.sam_model_registry, "vit_b", lambda: tiny_sam(seed=5))
    path = tmp_path / "sam_vit_b_01ec64.pth"
    torch.save(sam.state_dict(), path)
    projector = small_projector()
    predictor = SamConvexPredictor.from_checkpoint(path, device="cpu", projector=projector)
    assert all(torch.equal(v, sam.state_dict()[k]) for k, v in predictor.model.state_dict().items())
    assert predictor.project and predictor.projector is projector

    with pytest.raises(ValueError, match="Sam"):
        SamConvexPredictor("not a model")
    with pytest.raises(RuntimeError, match="set_image"):
        predictor.predict(**PROMPTS["box"])
    with pytest.raises(ValueError, match="uint8"):
        predictor.set_image(image.astype(np.float64))
    with pytest.raises(ValueError, match="image_format"):
        predictor.set_image(image, image_format="HSV")
    predictor.set_image(image)
    with pytest.raises(ValueError, match="point_labels"):
        predictor.predict(point_coords=np.array([[1.0, 2.0]]))
    with pytest.raises(ValueError, match="point_labels must have shape"):
        predictor.predict(point_coords=np.array([[1.0, 2.0]]), point_labels=np.array([1, 1]))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_model_is_projected_on_its_device(image):
    sam = tiny_sam().cuda()
    predictor = SamConvexPredictor(sam, small_projector())
    predictor.set_image(image)
    masks, _scores, _low_res = predictor.predict(**PROMPTS["point"])
    assert isinstance(masks, np.ndarray) and masks.shape == (3, H, W) and masks.dtype == bool
    assert predictor.last_fit.masks.device.type == "cuda"
    for m in masks:
        assert is_convex(m)
    t = predictor.transform
    coords = torch.as_tensor(t.apply_coords(np.array([[[80.0, 40.0]]]), (H, W)), dtype=torch.float, device="cuda")
    out, _, _ = predictor.predict_torch(coords, torch.ones(1, 1, dtype=torch.int, device="cuda"))
    assert out.device.type == "cuda" and out.shape == (1, 3, H, W)


LOW_RES = (1, 64, 64)  # the tiny SAM's mask_input size (256 frame / 4)


@pytest.mark.parametrize("project", [True, False])
@pytest.mark.parametrize(
    "prompt,match",
    [
        (dict(point_coords=np.array([[np.nan, 2.0]]), point_labels=np.array([1])), "point_coords contains NaN"),
        (dict(point_coords=np.array([[1.0, 2.0]]), point_labels=np.array([np.inf])), "point_labels contains NaN"),
        (dict(box=np.array([1.0, np.nan, 5.0, 6.0])), "box contains NaN"),
        (dict(box=np.array([1.0, 2.0, 5.0])), r"box must have shape \(4\)"),
        (dict(box=np.zeros((2, 4))), r"box must have shape \(4\) or \(1, 4\)"),
        (dict(box=[1, 2, 30, 40], mask_input=np.full(LOW_RES, np.nan, np.float32)), "mask_input contains NaN"),
        (
            dict(box=[1, 2, 30, 40], mask_input=np.zeros((1, 32, 32), np.float32)),
            r"mask_input must have shape \(1, 64, 64\)",
        ),
        (dict(point_coords=[[1.0, 2.0]]), "given together"),
        (dict(point_coords=[["a", "b"]], point_labels=[1]), "point_coords must be numbers"),
    ],
)
def test_bad_prompts_name_the_argument(sam, image, prompt, match, project):
    predictor = SamConvexPredictor(sam, small_projector(), project=project)
    predictor.set_image(image)
    with pytest.raises(ValueError, match=match):
        predictor.predict(**prompt)


def test_list_prompts_and_upstream_quirks_are_accepted(sam, image):
    """Python lists work; with project=False, points outside the image and a reversed box
    are accepted as SamPredictor accepts them (its output bit for bit); with projection
    on they are refused."""
    predictor = SamConvexPredictor(sam, small_projector(), project=False)
    upstream = SamPredictor(sam)
    predictor.set_image(image)
    upstream.set_image(image)
    prompt = dict(point_coords=[[300.0, -5.0], [80.0, 40.0]], point_labels=[1, 1], box=[120.0, 80.0, 30.0, 20.0])
    ours = predictor.predict(**prompt)
    theirs = upstream.predict(**{k: np.asarray(v) for k, v in prompt.items()})
    for a, b in zip(ours, theirs):
        np.testing.assert_array_equal(a, b)
    projected = SamConvexPredictor(sam, small_projector())
    projected.set_image(image)
    with pytest.raises(ValueError, match=r"outside the 160x96 image"):
        projected.predict(**prompt)
    with pytest.raises(ValueError, match="0 <= x0 < x1"):
        projected.predict(box=prompt["box"])
    masks, _, _ = projected.predict(point_coords=[[80.0, 40.0]], point_labels=[1])
    assert masks.shape == (3, H, W) and all(is_convex(m) for m in masks)


def test_settings_and_torch_images_are_checked(sam, image):
    with pytest.raises(ValueError, match="projector"):
        SamConvexPredictor(sam, projector="polygon")
    with pytest.raises(ValueError, match="project"):
        SamConvexPredictor(sam, project="no")
    predictor = SamConvexPredictor(sam, small_projector())
    with pytest.raises(ValueError, match=r"\(1, 3, H, W\)"):
        predictor.set_torch_image(torch.zeros(3, 10, 10), (10, 10))
    predictor.set_image(image)
    with pytest.raises(ValueError, match="point_labels must be 1"):
        predictor.predict(point_coords=np.array([[5.0, 5.0]]), point_labels=np.array([5]))


def test_a_one_by_four_box_is_upstreams_answer(sam, image):
    ours, upstream = SamConvexPredictor(sam, project=False), SamPredictor(sam)
    ours.set_image(image)
    upstream.set_image(image)
    box = np.array([[10.0, 10.0, 100.0, 80.0]])
    for a, b in zip(ours.predict(box=box), upstream.predict(box=box)):
        np.testing.assert_array_equal(a, b)


# Calls SamPredictor answers although they are odd: with projection off the drop-in gave a
# ValueError for some of them (issue 24); it must return upstream's answer.
UPSTREAM_ANSWERS = {
    "labels without points, with a box": dict(point_labels=np.array([1]), box=np.array([10.0, 10.0, 60.0, 50.0])),
    "labels without points": dict(point_labels=np.array([1])),
    "a box-corner label": dict(point_coords=np.array([[5.0, 5.0]]), point_labels=np.array([2])),
    "a padding label": dict(point_coords=np.array([[5.0, 5.0]]), point_labels=np.array([-1])),
    "no point": dict(point_coords=np.zeros((0, 2)), point_labels=np.zeros(0)),
    "no prompt": dict(),
}


@pytest.mark.parametrize("prompt", UPSTREAM_ANSWERS.values(), ids=list(UPSTREAM_ANSWERS))
def test_projection_off_answers_what_sampredictor_answers(sam, image, prompt):
    ours, upstream = SamConvexPredictor(sam, project=False), SamPredictor(sam)
    ours.set_image(image)
    upstream.set_image(image)
    assert_identical(ours.predict(**prompt), upstream.predict(**prompt))


def test_projection_off_predict_torch_ignores_labels_without_points(sam, image):
    ours, upstream = SamConvexPredictor(sam, project=False), SamPredictor(sam)
    ours.set_image(image)
    upstream.set_image(image)
    labels, boxes = torch.ones(1, 1, dtype=torch.int), torch.tensor([[10.0, 10.0, 120.0, 80.0]])
    for a, b in zip(ours.predict_torch(None, labels, boxes), upstream.predict_torch(None, labels, boxes)):
        assert torch.equal(a, b)
