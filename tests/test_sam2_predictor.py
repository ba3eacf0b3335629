"""Sam2ConvexPredictor against sam2's SAM2ImagePredictor, on a tiny random SAM 2; load_sam2."""

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.ndimage import binary_erosion

from sam_convex import ConvexProjector, SamConvexPredictor
from sam_convex.loading import SAM2_CONFIGS, load_sam2, sam2_config_from_state_dict
from sam_convex.measures import hull_gap, iou
from sam_convex.sam2_predictor import Sam2ConvexPredictor

from tiny_sam import random_image, tiny_sam
from tiny_sam2 import FixedSam2Decoder, sam2_image_predictor, tiny_sam2

pytest.importorskip("sam2")  # an optional extra

H, W = 96, 160  # non-square: SAM 2 stretches it to its square frame
PROMPTS = {
    "point": dict(point_coords=np.array([[80.0, 40.0]]), point_labels=np.array([1])),
    "points": dict(point_coords=np.array([[80.0, 40.0], [20.0, 80.0]]), point_labels=np.array([1, 0])),
    "box": dict(box=np.array([30.0, 20.0, 120.0, 80.0])),
    "points+box": dict(
        point_coords=np.array([[70.0, 50.0]]), point_labels=np.array([1]), box=np.array([30.0, 20.0, 120.0, 80.0])
    ),
    "boxes": dict(box=np.array([[30.0, 20.0, 120.0, 80.0], [0.0, 0.0, 60.0, 50.0]])),
}

# sam2 warns once per call that its optional CUDA extension is missing when
# max_hole_area > 0; that is sam2's documented behaviour, not a test failure.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def small_projector():
    return ConvexProjector()


def is_convex(mask):
    """Equal to its convex hull up to a few boundary pixels (rounding of G near 0)."""
    mask = np.asarray(mask) > 0
    boundary = int((mask & ~binary_erosion(mask)).sum())
    return hull_gap(mask) <= max(2, 0.02 * boundary)


def assert_identical(ours, theirs):
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        if isinstance(a, list):
            assert_identical(a, b)
            continue
        assert type(a) is type(b) and a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)


@pytest.fixture(scope="module")
def model():
    return tiny_sam2()


@pytest.fixture(scope="module")
def image():
    return random_image(H, W)


@pytest.fixture(scope="module")
def plain(model, image):
    predictor = sam2_image_predictor(model, mask_threshold=0.5, max_hole_area=4.0)
    predictor.set_image(image)
    return predictor


@pytest.fixture(scope="module")
def unprojected(model, image):
    predictor = Sam2ConvexPredictor(model, 0.5, 4.0, project=False)
    predictor.set_image(image)
    return predictor


@pytest.fixture(scope="module")
def convex(model, image):
    predictor = Sam2ConvexPredictor(model, projector=small_projector())
    predictor.set_image(image)
    return predictor


# ---------------------------------------------------------------- project=False: SAM 2


@pytest.mark.parametrize("name", PROMPTS)
@pytest.mark.parametrize("multimask", [True, False])
def test_unprojected_is_bit_identical_to_sam2_image_predictor(unprojected, plain, name, multimask):
    for return_logits in (False, True):
        kwargs = dict(PROMPTS[name], multimask_output=multimask, return_logits=return_logits)
        assert_identical(unprojected.predict(**kwargs), plain.predict(**kwargs))
    assert unprojected.last_fit is None
    assert torch.equal(unprojected.get_image_embedding(), plain.get_image_embedding())
    assert (unprojected.mask_threshold, unprojected.max_hole_area) == (0.5, 4.0)


def test_unprojected_normalized_coords_and_mask_input(unprojected, plain):
    kwargs = dict(point_coords=np.array([[0.5, 0.4]]), point_labels=np.array([1]), normalize_coords=False)
    first = plain.predict(**kwargs)
    assert_identical(unprojected.predict(**kwargs), first)
    again = dict(kwargs, mask_input=first[2][:1], multimask_output=False)
    assert_identical(unprojected.predict(**again), plain.predict(**again))


def test_unprojected_predict_batch(model):
    images = [random_image(H, W, seed=1), random_image(120, 90, seed=2)]
    ours = Sam2ConvexPredictor(model, project=False)
    theirs = sam2_image_predictor(model)
    ours.set_image_batch(images)
    theirs.set_image_batch(images)
    args = dict(
        point_coords_batch=[np.array([[80.0, 40.0]]), np.array([[10.0, 100.0]])],
        point_labels_batch=[np.array([1]), np.array([1])],
        box_batch=[None, np.array([5.0, 50.0, 80.0, 119.0])],
    )
    for return_logits in (False, True):
        assert_identical(
            ours.predict_batch(**args, return_logits=return_logits),
            theirs.predict_batch(**args, return_logits=return_logits),
        )
    assert torch.equal(ours.get_image_embedding(), theirs.get_image_embedding())


# ---------------------------------------------------------------- project=True


@pytest.mark.parametrize("name,multimask", [("point", True), ("box", False), ("points+box", True)])
def test_projected_masks_are_convex(convex, model, image, name, multimask):
    plain = sam2_image_predictor(model)
    plain.set_image(image)
    masks, scores, low_res = convex.predict(**PROMPTS[name], multimask_output=multimask)
    sam_masks, sam_scores, sam_low_res = plain.predict(**PROMPTS[name], multimask_output=multimask)
    c = 3 if multimask else 1
    # SAM 2's dtype: float32 0/1.
    assert masks.shape == (c, H, W) and masks.dtype == np.float32
    assert set(np.unique(masks)) <= {0.0, 1.0}
    # Scores and low-res logits are SAM 2's, untouched.
    assert_identical((scores, low_res), (sam_scores, sam_low_res))
    # All C masks in one batched fit, of exactly SAM 2's logits.
    assert convex.last_fit.masks.shape == (c, H, W) and convex.last_fit.losses.shape == (c,)
    np.testing.assert_array_equal(convex.last_sam_logits > 0, sam_masks > 0)
    for m in masks:
        assert is_convex(m), f"hull gap {hull_gap(m > 0)}"
    # The random SAM 2's own masks are not convex, so the check above has teeth.
    assert not all(is_convex(m) for m in sam_masks)


def test_projected_logits_threshold_to_masks(convex):
    masks, _, _ = convex.predict(**PROMPTS["point"])
    logits, scores, low_res = convex.predict(**PROMPTS["point"], return_logits=True)
    assert logits.dtype == np.float32 and logits.shape == (3, H, W)
    np.testing.assert_array_equal((logits >= 0).astype(np.float32), masks)
    np.testing.assert_array_equal(logits, convex.last_fit.logits.numpy())
    best = int(np.argmax(scores))  # SAM 2's low-res logits still work as mask_input
    again, _, _ = convex.predict(**PROMPTS["point"], mask_input=low_res[best : best + 1], multimask_output=False)
    assert again.shape == (1, H, W) and is_convex(again[0])


def test_projected_batched_prompts_one_fit(convex):
    masks, scores, low_res = convex.predict(**PROMPTS["boxes"], multimask_output=True)
    assert masks.shape == (2, 3, H, W) and scores.shape == (2, 3) and low_res.shape == (2, 3, 32, 32)
    assert convex.last_fit.masks.shape == (6, H, W)
    np.testing.assert_array_equal(masks.reshape(6, H, W), convex.last_fit.masks.float().numpy())
    assert all(is_convex(m) for m in masks.reshape(6, H, W))


def test_projected_predict_batch_mixed_sizes_one_fit():
    """Two images of different sizes: one fit, padded to the largest; each image's masks
    match what predict gives on that image alone."""
    model = tiny_sam2()
    model.sam_mask_decoder = FixedSam2Decoder(model.sam_mask_decoder, l_shape_logits(32))
    sizes = [(H, W), (120, 90)]
    images = [random_image(h, w, seed=i) for i, (h, w) in enumerate(sizes)]
    points = [np.array([[80.0, 40.0]]), np.array([[10.0, 100.0]])]
    labels = [np.array([1]), np.array([1])]
    predictor = Sam2ConvexPredictor(model, projector=small_projector())
    predictor.set_image_batch(images)
    masks, scores, low_res = predictor.predict_batch(points, labels, multimask_output=True)
    assert [m.shape for m in masks] == [(3, h, w) for h, w in sizes]
    assert all(m.dtype == np.float32 for m in masks)
    assert predictor.last_fit.masks.shape == (6, 120, 160)
    assert [s.shape for s in scores] == [(3,), (3,)] and len(low_res) == 2
    fitted = predictor.last_fit.masks.float().numpy()
    for i, m in enumerate(masks):
        np.testing.assert_array_equal(m, fitted[3 * i : 3 * i + 3, : m.shape[1], : m.shape[2]])
        predictor.set_image(images[i])
        alone, _, _ = predictor.predict(points[i], labels[i])
        for a, b in zip(m > 0, alone > 0):
            assert is_convex(a) and iou(a, b) >= 0.95


def l_shape_logits(size, high=8.0):
    """(1, 1, size, size) low-res logits: an L in the frame's bottom-right quarter."""
    low_res = torch.full((1, 1, size, size), -8.0)
    q = size // 2
    low_res[..., q + 2 : size - 2, q + 2 : q + 6] = high
    low_res[..., size - 6 : size - 2, q + 2 : size - 2] = high
    return low_res


@pytest.mark.parametrize("h,w", [(60, 160), (160, 60)], ids=["wide", "tall"])
def test_projection_follows_a_nonconvex_sam2_mask(h, w):
    """SAM 2 says "L in the bottom-right quarter": on a non-square image the projection
    is convex, still mostly the L, and in the image's bottom-right quarter."""
    model = tiny_sam2()
    model.sam_mask_decoder = FixedSam2Decoder(model.sam_mask_decoder, l_shape_logits(32))
    predictor = Sam2ConvexPredictor(model, projector=small_projector())
    predictor.set_image(random_image(h, w))
    masks, scores, _ = predictor.predict(point_coords=np.array([[w / 2, h / 2]]), point_labels=np.array([1]))
    raw = predictor.last_sam_logits > 0
    assert masks.shape == (3, h, w)
    np.testing.assert_allclose(scores, 0.9)
    for m, r in zip(masks > 0, raw):
        assert not is_convex(r) and is_convex(m)
        assert iou(m, r) >= 0.6
        rows, cols = np.nonzero(m)
        assert rows.min() >= h // 2 - 2 and cols.min() >= w // 2 - 2


def test_mask_threshold_sets_what_is_projected():
    """Logits 8 on an L, 2 on a square beside it: mask_threshold 0 keeps both, 5 only the
    L, in SAM 2's mask and in its projection."""
    low_res = l_shape_logits(32)
    low_res[..., 2:12, 2:12] = 2.0
    model = tiny_sam2()
    model.sam_mask_decoder = FixedSam2Decoder(model.sam_mask_decoder, low_res)
    image = random_image(128, 128)
    projected = {}
    for threshold in (0.0, 5.0):
        predictor = Sam2ConvexPredictor(model, threshold, projector=small_projector())
        predictor.set_image(image)
        masks, _, _ = predictor.predict(**PROMPTS["point"], multimask_output=False)
        assert (predictor.last_sam_logits > threshold)[0, 10:40, 10:40].all() == (threshold == 0.0)
        projected[threshold] = masks[0] > 0
    assert projected[0.0][20, 20] and not projected[5.0][20, 20]  # inside the square
    assert projected[5.0][110, 100]  # inside the L's foot


# ---------------------------------------------------------------- bad input


def test_wrong_model_family(model):
    with pytest.raises(ValueError, match="SamConvexPredictor"):
        Sam2ConvexPredictor(tiny_sam())
    with pytest.raises(ValueError, match="SAM 2 model"):
        Sam2ConvexPredictor("not a model")
    with pytest.raises(ValueError, match="Sam"):
        SamConvexPredictor(model)  # and the other way round


def test_bad_images_and_prompts_leave_the_predictor_as_it_was(model, image):
    predictor = Sam2ConvexPredictor(model, projector=small_projector())
    with pytest.raises(RuntimeError, match="set_image"):
        predictor.predict(**PROMPTS["box"])
    predictor.set_image(image)
    before, _, _ = predictor.predict(**PROMPTS["box"], multimask_output=False)
    fit = predictor.last_fit
    bad_images = {
        "uint8": image.astype(np.float32) / 255,
        r"\(H, W, 3\)": image[..., 0],
        "RGB": Image.fromarray(image).convert("L"),
    }
    for match, bad in bad_images.items():
        with pytest.raises(ValueError, match=match):
            predictor.set_image(bad)
    bad_prompts = {
        "outside": dict(point_coords=np.array([[W + 5.0, 10.0]]), point_labels=np.array([1])),
        "outside ": dict(point_coords=np.array([[-1.0, 10.0]]), point_labels=np.array([1])),
        "x0 < x1": dict(box=np.array([30.0, 20.0, W + 1.0, 80.0])),
        r"\[0, 1\]": dict(point_coords=np.array([[80.0, 40.0]]), point_labels=np.array([1]), normalize_coords=False),
        "point_labels must have shape": dict(point_coords=np.array([[1.0, 2.0]]), point_labels=np.array([1, 1])),
        "together": dict(point_coords=np.array([[1.0, 2.0]])),
        "same B": dict(
            point_coords=np.ones((2, 1, 2)), point_labels=np.ones((2, 1)), box=np.array([[1.0, 1.0, 9.0, 9.0]] * 3)
        ),
        "mask_input": dict(mask_input=np.zeros((1, 256, 256), np.float32)),
        "NaN": dict(point_coords=np.array([[np.nan, 2.0]]), point_labels=np.array([1])),
    }
    for match, prompt in bad_prompts.items():
        with pytest.raises(ValueError, match=match.strip()):
            predictor.predict(**prompt)
    with pytest.raises(ValueError, match="set_image_batch"):
        predictor.predict_batch(box_batch=[PROMPTS["box"]["box"]])
    # Nothing was half-written: same image, same last fit, same answer.
    assert predictor.last_fit is fit
    again, _, _ = predictor.predict(**PROMPTS["box"], multimask_output=False)
    np.testing.assert_array_equal(again, before)

    predictor.set_image_batch([image, image])
    with pytest.raises(ValueError, match="one entry per image"):
        predictor.predict_batch(box_batch=[PROMPTS["box"]["box"]])
    with pytest.raises(ValueError, match=r"image 1.*outside"):
        predictor.predict_batch(
            point_coords_batch=[np.array([[1.0, 1.0]])] * 2,
            point_labels_batch=[np.array([1]), np.array([1])],
            box_batch=[None, np.array([0.0, 0.0, W + 9.0, 9.0])],
        )
    with pytest.raises(ValueError, match=r"image_list\[1\].*uint8"):
        predictor.set_image_batch([image, image.astype(np.int64)])


def test_pil_and_bgr_images_give_the_rgb_result(model, image):
    predictor = Sam2ConvexPredictor(model, project=False)
    predictor.set_image(image)
    expected = predictor.predict(**PROMPTS["box"])
    for args in ((Image.fromarray(image),), (np.ascontiguousarray(image[..., ::-1]), "BGR")):
        predictor.set_image(*args)
        assert_identical(predictor.predict(**PROMPTS["box"]), expected)


# ---------------------------------------------------------------- loading


def test_load_sam2(tmp_path, model):
    state = {k: v.clone() for k, v in model.state_dict().items()}
    path = tmp_path / "sam2.1_hiera_tiny.pt"
    torch.save({"model": state}, path)
    loaded = load_sam2(path, device="cpu")
    assert loaded.image_size == 1024 and not loaded.training  # the official frame
    assert all(torch.equal(v, state[k]) for k, v in loaded.state_dict().items())
    # A renamed file: the weights say which model it is.
    renamed = path.rename(tmp_path / "mine.pt")
    predictor = Sam2ConvexPredictor.from_checkpoint(renamed, device="cpu", project=False)
    assert predictor.model.image_size == 1024 and not predictor.project
    assert torch.equal(predictor.model.no_obj_embed_spatial, state["no_obj_embed_spatial"])
    path = renamed.rename(path)

    with pytest.raises(FileNotFoundError, match=r"fbaipublicfiles\.com/.*/092824/sam2\.1_hiera_large\.pt"):
        load_sam2(tmp_path / "sam2.1_hiera_large.pt")
    with pytest.raises(FileNotFoundError, match=r"github\.com/facebookresearch/sam2"):
        load_sam2(tmp_path / "weights.pt")
    with pytest.raises(ValueError, match=r"do not fit SAM 2 config configs/sam2\.1/sam2\.1_hiera_s"):
        load_sam2(path, config="sam2.1_hiera_s.yaml", device="cpu")
    with pytest.raises(ValueError, match="unknown SAM 2 config"):
        load_sam2(path, config="sam2.1_hiera_huge")
    garbage = tmp_path / "sam2.1_hiera_small.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot read"):
        load_sam2(garbage)
    sam1 = tmp_path / "sam2_hiera_tiny.pt"
    torch.save(tiny_sam().state_dict(), sam1)
    with pytest.raises(ValueError, match="SAM 1"):
        load_sam2(sam1)
    unknown = tmp_path / "unknown.pt"
    torch.save({"model": {"w": torch.zeros(1)}}, unknown)
    with pytest.raises(ValueError, match="cannot tell"):
        load_sam2(unknown)


def test_config_inference_from_weights():
    from sam2.build_sam import HF_MODEL_ID_TO_FILENAMES, build_sam2

    # Our file-name table is sam2's own (Hugging Face) one.
    assert SAM2_CONFIGS == {name: cfg for cfg, name in HF_MODEL_ID_TO_FILENAMES.values()}
    # Weights of SAM 2 (not 2.1) small: width 96 like tiny, 16 blocks, no 2.1-only keys.
    small = build_sam2("configs/sam2/sam2_hiera_s.yaml", device="cpu").state_dict()
    assert sam2_config_from_state_dict(small) == "configs/sam2/sam2_hiera_s.yaml"
    assert sam2_config_from_state_dict(tiny_sam2().state_dict()) == SAM2_CONFIGS["sam2.1_hiera_tiny.pt"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_model_is_projected_on_its_device(image):
    predictor = Sam2ConvexPredictor(tiny_sam2().cuda(), projector=small_projector())
    predictor.set_image(image)
    masks, _, _ = predictor.predict(**PROMPTS["point"])
    assert isinstance(masks, np.ndarray) and masks.shape == (3, H, W)
    assert predictor.last_fit.masks.device.type == "cuda"
    assert all(is_convex(m) for m in masks)


def test_projection_off_keeps_upstreams_answer_to_prompts_off_the_image(model, image):
    """SAM2ImagePredictor accepts points outside the image and inverted boxes; so does
    the wrapper with project=False (bit for bit), while projection on refuses them."""
    prompt = dict(point_coords=np.array([[W + 5.0, -3.0]]), point_labels=np.array([1]), box=np.array([90.0, 60, 10, 5]))
    ours = Sam2ConvexPredictor(model, project=False)
    ours.set_image(image)
    theirs = sam2_image_predictor(model)
    theirs.set_image(image)
    assert_identical(ours.predict(**prompt), theirs.predict(**prompt))
    projected = Sam2ConvexPredictor(model)
    projected.set_image(image)
    with pytest.raises(ValueError, match="outside"):
        projected.predict(**prompt)


def test_load_sam2_checks_path_and_device_before_reading(tmp_path):
    with pytest.raises(ValueError, match="path of a checkpoint"):
        load_sam2(None)
    with pytest.raises(ValueError, match="device"):
        load_sam2(tmp_path / "sam2.1_hiera_tiny.pt", device="foo")  # refused before the missing file


def test_predict_batch_equals_single_images_for_a_threshold_below_the_padding():
    """Smaller images were padded at logit -30: with mask_threshold -40 the padding was
    foreground and the batched fits differed from the single-image fits (issue 24)."""
    model = tiny_sam2()
    model.sam_mask_decoder = FixedSam2Decoder(model.sam_mask_decoder, l_shape_logits(32) * 8)  # background -64
    sizes = [(H, W), (120, 90)]
    images = [random_image(h, w, seed=i) for i, (h, w) in enumerate(sizes)]
    points, labels = [np.array([[80.0, 40.0]]), np.array([[10.0, 100.0]])], [np.array([1]), np.array([1])]
    predictor = Sam2ConvexPredictor(model, projector=small_projector(), mask_threshold=-40.0)
    predictor.set_image_batch(images)
    batched, _, _ = predictor.predict_batch(points, labels, multimask_output=False)
    for i, image in enumerate(images):
        predictor.set_image(image)
        alone, _, _ = predictor.predict(points[i], labels[i], multimask_output=False)
        assert 0 < alone.mean() < 1  # a real fit, neither empty nor the whole image
        np.testing.assert_array_equal(batched[i], alone)


@pytest.mark.parametrize(
    "prompt",
    [
        dict(point_labels=np.array([1]), box=np.array([10.0, 10.0, 60.0, 50.0])),
        dict(point_labels=np.array([1])),
        dict(point_coords=np.array([[5.0, 5.0]]), point_labels=np.array([2])),
        dict(point_coords=np.zeros((0, 2)), point_labels=np.zeros(0)),
    ],
    ids=["labels without points, with a box", "labels without points", "a box-corner label", "no point"],
)
def test_projection_off_answers_what_sam2_answers(model, image, prompt):
    """SAM2ImagePredictor answers these; with projection off the drop-in raised (issue 24)."""
    ours, theirs = Sam2ConvexPredictor(model, project=False), sam2_image_predictor(model)
    ours.set_image(image)
    theirs.set_image(image)
    assert_identical(ours.predict(**prompt), theirs.predict(**prompt))
