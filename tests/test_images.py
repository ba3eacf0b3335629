"""sam_convex.images: one reader for images and masks (issues 19 and 24: JPEG, palette,
{0, 1}, alpha and red masks, > 8-bit and float images, EXIF orientation, suffix case)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import tifffile
from PIL import Image

from eval.datasets import load_dataset
from sam_convex.images import EmptyMaskWarning, LossyMaskWarning, files_by_stem, read_image, read_mask

H, W = 48, 64


def disk(h: int = H, w: int = W) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    return (yy - h / 2) ** 2 + (xx - w / 2.5) ** 2 < (h / 3) ** 2


def test_jpeg_mask_noise_is_not_object(tmp_path):
    """A real JPEG-compressed mask: 'any non-zero value' grows the object with the
    compression noise; the reader keeps the object and warns once, naming the file."""
    gt = disk()
    path = tmp_path / "m.jpg"
    Image.fromarray(gt.astype(np.uint8) * 255).save(path, quality=60)
    levels = np.asarray(Image.open(path))
    assert ((levels > 0) & ~gt).sum() > 20  # the noise the old reading counted as object
    with pytest.warns(LossyMaskWarning, match=r"m\.jpg"):
        mask = read_mask(path)
    assert (mask != gt).sum() <= 0.02 * gt.sum()


def test_palette_mask_by_index(tmp_path):
    """Index 0 is background even when its colour is white."""
    gt = disk()
    im = Image.fromarray(gt.astype(np.uint8), "P")
    im.putpalette([255, 255, 255, 0, 0, 0] + [0] * 762)  # index 0 white, index 1 black
    im.save(tmp_path / "p.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "p.png"), gt)


@pytest.mark.parametrize("kind", ["zero_one", "alpha", "red", "bool", "uint16", "float"])
def test_mask_encodings(tmp_path, kind):
    gt = disk()
    path = tmp_path / f"{kind}.png"
    if kind == "zero_one":
        Image.fromarray(gt.astype(np.uint8)).save(path)
    elif kind == "alpha":  # black everywhere, the object only in the alpha channel
        rgba = np.zeros((H, W, 4), np.uint8)
        rgba[..., 3] = gt * 255
        Image.fromarray(rgba, "RGBA").save(path)
    elif kind == "red":
        rgb = np.zeros((H, W, 3), np.uint8)
        rgb[gt, 0] = 255
        Image.fromarray(rgb).save(path)
    elif kind == "bool":
        Image.fromarray(gt).save(path)
    elif kind == "uint16":
        path = tmp_path / "m.tif"
        tifffile.imwrite(path, gt.astype(np.uint16) * 65535)
    else:
        path = tmp_path / "m.tif"
        tifffile.imwrite(path, gt.astype(np.float32))
    np.testing.assert_array_equal(read_mask(path), gt)


def test_empty_mask_warns(tmp_path):
    Image.fromarray(np.zeros((H, W), np.uint8)).save(tmp_path / "e.png")
    with pytest.warns(EmptyMaskWarning, match=r"e\.png"):
        assert not read_mask(tmp_path / "e.png").any()


def test_high_bit_depth_and_float_images(tmp_path):
    ramp = np.linspace(0, 1, W)[None].repeat(H, 0)
    full16 = (ramp * 65535).astype(np.uint16)
    Image.fromarray(full16).save(tmp_path / "g16.png")  # PIL writes I;16
    twelve = (ramp * 4095).astype(np.uint16)
    Image.fromarray(twelve).save(tmp_path / "g12.png")
    tifffile.imwrite(tmp_path / "f.tif", np.dstack([ramp] * 3).astype(np.float32), photometric="rgb")
    tifffile.imwrite(
        tmp_path / "chw.tif", (np.stack([ramp] * 3) * 255).astype(np.uint8), photometric="rgb", planarconfig="separate"
    )
    expected = np.round(ramp * 255)
    for name in ("g16.png", "g12.png", "f.tif", "chw.tif"):
        img = read_image(tmp_path / name)
        assert img.shape == (H, W, 3) and img.dtype == np.uint8, name
        assert np.abs(img[..., 0].astype(float) - expected).max() <= 1.0, name


def test_alpha_dropped_and_grey_replicated(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)
    Image.fromarray(np.dstack([rgb, np.zeros((H, W), np.uint8)]), "RGBA").save(tmp_path / "a.png")
    np.testing.assert_array_equal(read_image(tmp_path / "a.png"), rgb)
    Image.fromarray(rgb[..., 0]).save(tmp_path / "g.png")
    np.testing.assert_array_equal(read_image(tmp_path / "g.png"), np.dstack([rgb[..., 0]] * 3))


def test_exif_orientation_applied(tmp_path):
    """Orientation 3 (180°): the image comes out turned, as viewers show it."""
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[:10, :10] = 255  # a bright top-left corner in the stored pixels
    exif = Image.Exif()
    exif[0x0112] = 3
    Image.fromarray(rgb).save(tmp_path / "o.jpg", exif=exif, quality=95)
    img = read_image(tmp_path / "o.jpg")
    assert img[-5:, -5:].mean() > 200 and img[:5, :5].mean() < 50


def test_unreadable_file_names_itself(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match=r"bad\.png"):
        read_image(tmp_path / "bad.png")


def test_mask_suffix_case_insensitive(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(tmp_path / "images" / "A.jpg")
    Image.fromarray(disk().astype(np.uint8) * 255).save(tmp_path / "masks" / "A.PNG")
    assert files_by_stem(tmp_path / "masks")["A"].name == "A.PNG"
    (sample,) = load_dataset("folder", tmp_path)
    np.testing.assert_array_equal(sample.gt, disk())


def test_loader_summarises_lossy_masks(tmp_path):
    """A dataset of JPEG masks gives one warning (naming a file and the count), not one
    per mask."""
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for i in range(4):
        Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(tmp_path / "images" / f"i{i}.png")
        Image.fromarray(disk().astype(np.uint8) * 255).save(tmp_path / "masks" / f"i{i}.jpg", quality=50)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_dataset("folder", tmp_path)
    lossy = [w for w in caught if issubclass(w.category, LossyMaskWarning)]
    assert len(lossy) == 1 and "i0.jpg" in str(lossy[0].message) and "3 more" in str(lossy[0].message)
