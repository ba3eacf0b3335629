"""The one prompt checker (sam_convex.validation.prompts) and its border rule."""

import numpy as np
import pytest

from sam_convex import validation
from sam_convex.grabcut import GrabCutPredictor

H, W = 40, 60


def test_the_closed_image_frame_is_inside_and_beyond_it_is_not():
    """Upstream SAM / SAM 2 scale x by frame / W, so x == W is the right edge."""
    edge = validation.prompts([[W, H], [0, 0]], [1, 0], [0, 0, W, H], image_size=(H, W))
    assert edge.points.dtype == np.float64 and edge.labels.dtype == np.int64
    for point in ([W + 0.01, 5], [5, -0.01]):
        with pytest.raises(ValueError, match="outside the 60x40 image"):
            validation.prompts([point], [1], None, image_size=(H, W))
    for box in ([10, 10, 10, 20], [0, 0, W + 1, H]):
        with pytest.raises(ValueError, match="0 <= x0 < x1"):
            validation.prompts(None, None, box, image_size=(H, W))


def test_options_padding_normalised_and_batched():
    with pytest.raises(ValueError, match="point_labels must be 1"):
        validation.prompts([[1, 1], [0, 0]], [1, -1], None, image_size=(H, W))
    # A padding point has no position: it is not range-checked.
    validation.prompts([[1, 1], [-50, 999]], [1, -1], None, image_size=(H, W), padding=True)
    validation.prompts([[0.5, 1.0]], [1], None, image_size=(H, W), normalized=True)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        validation.prompts([[2.0, 0.5]], [1], None, image_size=(H, W), normalized=True)
    with pytest.raises(ValueError, match=r"\(K, 2\)"):
        validation.prompts(np.ones((2, 1, 2)), np.ones((2, 1)), None)
    validation.prompts(np.ones((2, 1, 2)), np.ones((2, 1)), np.ones((2, 4)), batched=None)
    with pytest.raises(ValueError, match="same B"):
        validation.prompts(np.ones((2, 1, 2)), np.ones((2, 1)), np.ones((3, 4)), batched=None)
    with pytest.raises(ValueError, match="at least one point"):
        validation.prompts(np.zeros((0, 2)), np.zeros(0), None)


def test_grabcut_takes_a_point_on_the_far_border():
    image = np.zeros((H, W, 3), np.uint8)
    image[10:30, 20:50] = 200
    predictor = GrabCutPredictor(iterations=1)
    predictor.set_image(image)
    masks, _, _ = predictor.predict(point_coords=np.array([[W, H]], float), point_labels=np.array([1]))
    assert masks.shape == (1, H, W)
    with pytest.raises(RuntimeError, match="set_image"):
        GrabCutPredictor().predict(box=np.array([0, 0, 5, 5]))
