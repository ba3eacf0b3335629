"""eval.corruptions.corrupt: the corruption sets, all 19 imagecorruptions corruptions
seeded on current packages, and the fixed ones against the published code."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from PIL import Image
from skimage.filters import gaussian

from eval.corruptions.corrupt import (
    ALL_CORRUPTIONS,
    CORRUPTION_SETS,
    CORRUPTIONS,
    corrupt,
    corruption_names,
    fog,
    gaussian_blur,
    glass_blur,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import imagecorruptions
    import imagecorruptions.corruptions as published

# The corruptions that draw random numbers; the others are deterministic filters.
RANDOM = {
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "glass_blur",
    "motion_blur",
    "snow",
    "frost",
    "fog",
    "elastic_transform",
    "speckle_noise",
    "spatter",
}


@pytest.fixture(scope="module")
def image():
    """(37, 53, 3) uint8: odd-sized, near imagecorruptions' 32-pixel minimum, coloured."""
    rng = np.random.default_rng(0)
    base = rng.integers(40, 216, (37, 53, 3)).astype(np.uint8)
    base[10:30, 12:36] = (200, 60, 40)
    return base


def old_gaussian(x, sigma, multichannel=False, **kw):
    """skimage's gaussian as the released imagecorruptions calls it (before 0.19)."""
    return gaussian(x, sigma=sigma, channel_axis=-1 if multichannel else None, **kw)


def test_corruption_sets():
    assert CORRUPTIONS == CORRUPTION_SETS["paper"]
    assert CORRUPTIONS == (
        "spatter",
        "contrast",
        "brightness",
        "impulse_noise",
        "shot_noise",
        "gaussian_noise",
        "defocus_blur",
        "glass_blur",
    )
    assert list(CORRUPTION_SETS["common"]) == imagecorruptions.get_corruption_names("common")
    assert list(CORRUPTION_SETS["all"]) == imagecorruptions.get_corruption_names("all") == list(ALL_CORRUPTIONS)
    assert set(CORRUPTIONS) <= set(ALL_CORRUPTIONS) and len(ALL_CORRUPTIONS) == 19


def test_corruption_names():
    for spec in CORRUPTION_SETS:
        assert corruption_names(spec) == CORRUPTION_SETS[spec]
    assert corruption_names("fog") == ("fog",)
    assert corruption_names(" fog, snow,fog,") == ("fog", "snow")  # spaces, duplicates, trailing comma
    assert corruption_names("paper,fog,spatter") == CORRUPTIONS + ("fog",)
    with pytest.raises(ValueError, match=r"unknown corruption\(s\) nope, Fog; valid: gaussian_noise, .*saturate; sets"):
        corruption_names("fog,nope,Fog")
    for empty in ("", " , "):
        with pytest.raises(ValueError, match="no corruptions given"):
            corruption_names(empty)


@pytest.mark.parametrize("severity", [1, 5])
@pytest.mark.parametrize("name", ALL_CORRUPTIONS)
def test_corruption_runs_and_is_seeded(image, name, severity):
    np.random.seed(123)
    state = np.random.get_state()[1].copy()
    a = corrupt(image, name, severity, seed=1)
    np.testing.assert_array_equal(np.random.get_state()[1], state)  # caller's RNG restored
    assert a.shape == image.shape and a.dtype == np.uint8
    assert not np.array_equal(a, image)
    np.testing.assert_array_equal(corrupt(image, name, severity, seed=1), a)
    b = corrupt(image, name, severity, seed=2)
    assert (not np.array_equal(a, b)) == (name in RANDOM)


def test_full_size_image():
    """Every corruption at severity 5 keeps a (300, 400, 3) image's size."""
    img = np.random.default_rng(1).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    for name in ALL_CORRUPTIONS:
        out = corrupt(img, name, 5, seed=0)
        assert out.shape == img.shape and out.dtype == np.uint8, name


def test_glass_blur_matches_published(image, monkeypatch):
    """The released function, unchanged except that its `gaussian(..., multichannel=True)`
    (rejected by scikit-image >= 0.19) is routed to channel_axis=-1."""
    monkeypatch.setattr(published, "gaussian", old_gaussian)
    for severity in (1, 2, 3, 4, 5):
        np.random.seed(severity)
        expected = published.glass_blur(Image.fromarray(image), severity)
        np.random.seed(severity)
        np.testing.assert_array_equal(glass_blur(Image.fromarray(image), severity), expected)


def test_gaussian_blur_matches_published(image, monkeypatch):
    """As glass_blur: the released gaussian_blur with only its skimage call routed."""
    monkeypatch.setattr(published, "gaussian", old_gaussian)
    for severity in (1, 2, 3, 4, 5):
        expected = published.gaussian_blur(Image.fromarray(image), severity)
        np.testing.assert_array_equal(gaussian_blur(Image.fromarray(image), severity), expected)


def test_fog_matches_published(image, monkeypatch):
    """The released fog, run with numpy's removed `np.float_` put back as float64."""
    monkeypatch.setattr(np, "float_", np.float64, raising=False)
    for severity in (1, 2, 3, 4, 5):
        np.random.seed(severity)
        expected = published.fog(Image.fromarray(image), severity)
        np.random.seed(severity)
        np.testing.assert_array_equal(fog(Image.fromarray(image), severity), expected)


def test_impulse_noise_amount():
    out = corrupt(np.full((64, 64, 3), 128, np.uint8), "impulse_noise", 5, seed=0)
    assert np.mean(out != 128) == pytest.approx(0.27, abs=0.03)  # imagecorruptions' amount


def test_corrupt_rejects_bad_input(image):
    with pytest.raises(ValueError, match=r"unknown corruption 'fogg'; valid: gaussian_noise, .*saturate"):
        corrupt(image, "fogg", 5, 0)
    with pytest.raises(ValueError, match="1, 2, 3, 4, 5"):
        corrupt(image, "contrast", 6, 0)
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
        corrupt(image[..., 0], "contrast", 1, 0)
    with pytest.raises(ValueError, match="needs H and W >= 32"):
        corrupt(image[:31], "contrast", 1, 0)
