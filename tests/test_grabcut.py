"""GrabCutPredictor: OpenCV GrabCut behind SamPredictor's surface."""

import numpy as np
import pytest

from sam_convex.grabcut import GrabCutPredictor, signed_distance
from sam_convex.measures import iou
from sam_convex.synthetic import textured_scene


@pytest.fixture(scope="module")
def scene():
    return textured_scene()


@pytest.fixture(scope="module")
def grabcut(scene):
    predictor = GrabCutPredictor()
    predictor.set_image(scene[0])
    return predictor


@pytest.mark.parametrize(
    "prompt",
    [
        dict(box=np.array([50.0, 40.0, 180.0, 130.0])),
        dict(point_coords=np.array([[115.0, 85.0]]), point_labels=np.array([1])),
        dict(point_coords=np.array([[115.0, 85.0], [10.0, 10.0]]), point_labels=np.array([1, 0])),
        dict(
            point_coords=np.array([[100.0, 80.0]]), point_labels=np.array([1]), box=np.array([50.0, 40.0, 180.0, 130.0])
        ),
    ],
    ids=["box", "point", "point+negative", "point+box"],
)
def test_grabcut_segments_textured_ellipse(grabcut, scene, prompt):
    masks, scores, logits = grabcut.predict(**prompt)
    h, w = scene[1].shape
    assert masks.shape == (1, h, w) and masks.dtype == bool
    assert scores.shape == (1,) and scores.dtype == np.float32 and scores[0] == 1.0
    assert logits.shape == (1, h, w) and logits.dtype == np.float32
    assert iou(masks[0], scene[1]) >= 0.8
    # The soft logits are consistent with the mask and bounded.
    np.testing.assert_array_equal(logits[0] > 0, masks[0])
    assert np.isfinite(logits).all() and np.abs(logits).max() <= 20


def test_grabcut_is_deterministic_and_honours_format(scene):
    a = GrabCutPredictor(seed=3)
    a.set_image(scene[0])
    box = np.array([50.0, 40.0, 180.0, 130.0])
    first = a.predict(box=box)[0]
    np.testing.assert_array_equal(first, a.predict(box=box)[0])
    b = GrabCutPredictor(seed=3)
    b.set_image(np.ascontiguousarray(scene[0][..., ::-1]), image_format="BGR")
    np.testing.assert_array_equal(first, b.predict(box=box)[0])
    logits = a.predict(box=box, return_logits=True)[0]
    assert logits.dtype == np.float32
    np.testing.assert_array_equal(logits > 0, first)


def test_grabcut_mask_input_round_trip(grabcut, scene):
    _, _, logits = grabcut.predict(box=np.array([50.0, 40.0, 180.0, 130.0]))
    masks, _, _ = grabcut.predict(mask_input=logits)
    assert iou(masks[0], scene[1]) >= 0.8


def test_grabcut_errors(scene):
    predictor = GrabCutPredictor()
    with pytest.raises(ValueError, match="set_image"):
        predictor.predict(box=np.array([0.0, 0.0, 10.0, 10.0]))
    with pytest.raises(RuntimeError):  # what code written for SamPredictor catches
        predictor.predict(box=np.array([0.0, 0.0, 10.0, 10.0]))
    with pytest.raises(ValueError, match="uint8"):
        predictor.set_image(scene[0].astype(np.float32))
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        predictor.set_image(scene[0][..., 0])
    predictor.set_image(scene[0])
    assert predictor.is_image_set
    _h, w = scene[1].shape
    bad = [
        (dict(), "needs a box"),
        (dict(point_coords=np.array([[5.0, 5.0]]), point_labels=np.array([0])), "needs a box"),
        (dict(point_coords=np.array([[w + 1.0, 5.0]]), point_labels=np.array([1])), "outside"),
        (dict(point_coords=np.array([[5.0, -1.0]]), point_labels=np.array([1])), "outside"),
        (dict(box=np.array([10.0, 10.0, w + 5.0, 50.0])), "box"),
        (dict(box=np.array([50.0, 10.0, 20.0, 50.0])), "box"),
        (dict(point_coords=np.array([5.0, 5.0]), point_labels=np.array([1])), r"\(K, 2\)"),
        (dict(point_coords=np.array([[5.0, 5.0]]), point_labels=np.array([1, 0])), "point_labels"),
        (dict(point_coords=np.array([[5.0, 5.0]]), point_labels=np.array([2])), "point_labels"),
        (dict(point_coords=np.array([[5.0, 5.0]])), "together"),
        (dict(box=np.array([10.0, 10.0, 50.0, 50.0]), mask_input=np.zeros((1, 0, 0))), "non-empty"),
        (dict(box=np.array([10.0, 10.0, 50.0, 50.0]), mask_input=np.full((1, 8, 8), np.nan)), "finite"),
    ]
    for prompt, message in bad:
        with pytest.raises(ValueError, match=message):
            predictor.predict(**prompt)
    predictor.reset_image()
    assert not predictor.is_image_set


def test_grabcut_box_covering_whole_image(scene):
    # GrabCut needs background samples; the predictor must not crash without any.
    predictor = GrabCutPredictor()
    predictor.set_image(scene[0])
    h, w = scene[1].shape
    masks, _, _ = predictor.predict(box=np.array([0.0, 0.0, w, h]))
    assert masks.shape == (1, h, w)


def test_signed_distance_logits():
    mask = np.zeros((20, 30), bool)
    mask[5:15, 10:20] = True
    sd = signed_distance(mask)
    np.testing.assert_array_equal(sd > 0, mask)
    assert sd[10, 15] > sd[5, 15] == 0.5 and sd[4, 15] == -0.5
    assert (signed_distance(np.zeros((4, 4), bool)) < 0).all()
    assert (signed_distance(np.ones((4, 4), bool)) > 0).all()


def test_grabcut_accepts_seeds_beyond_32_bits(scene):
    predictor = GrabCutPredictor(seed=2**40 + 5)
    predictor.set_image(scene[0])
    masks, _, _ = predictor.predict(box=np.array([50.0, 40.0, 180.0, 130.0]))
    assert masks.shape == (1,) + scene[0].shape[:2] and masks.any()


@pytest.mark.parametrize("size", [(1, 1), (1, 7), (2, 2)])
def test_tiny_images_keep_a_positive_point(size):
    """On images too small for GrabCut's border trick, a clicked pixel stays object."""
    predictor = GrabCutPredictor()
    predictor.set_image(np.full((*size, 3), 120, np.uint8))
    masks, scores, logits = predictor.predict(point_coords=np.array([[0.0, 0.0]]), point_labels=np.array([1]))
    assert masks[0, 0, 0] and scores[0] == 1.0 and logits[0, 0, 0] > 0


@pytest.mark.parametrize(
    "prompt",
    [
        dict(box=np.array([50.0, 40.0, 180.0, 130.0])),
        dict(point_coords=np.array([[115.0, 85.0], [10.0, 10.0]]), point_labels=np.array([1, 0])),
    ],
    ids=["box", "point+negative"],
)
def test_grabcut_on_a_smaller_copy_answers_at_full_size(grabcut, scene, prompt):
    small = GrabCutPredictor(max_side=100)
    small.set_image(scene[0])
    masks, _, logits = small.predict(**prompt)
    full = grabcut.predict(**prompt)[0]
    assert masks.shape == full.shape == (1, *scene[1].shape)
    np.testing.assert_array_equal(logits[0] > 0, masks[0])
    assert iou(masks[0], full[0]) >= 0.9 and iou(masks[0], scene[1]) >= 0.8
    if "box" in prompt:  # the box, scaled to the copy and back, still bounds the object
        rows, cols = np.nonzero(masks[0])
        assert cols.min() >= 49 and cols.max() <= 180 and rows.min() >= 39 and rows.max() <= 130


def test_grabcut_max_side_is_checked():
    with pytest.raises(ValueError, match="max_side"):
        GrabCutPredictor(max_side=2)
