"""Real photos read as a person sees them: transparency on white, EXIF orientation, 16-bit
grey by value, palette / CMYK by their colours, a chosen geometry (resize, crop, pad), and
a large JPEG decoded at a reduced scale. Every file is written here with PIL."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, JpegImagePlugin

from attnmeta.fewshot.inputs import Preprocessing, image_tensor
from attnmeta.tasks import load_image_folder
from attnmeta.tasks.image_folder import FITS, load_image

TOL = 1 / 255 + 1e-6
RED_GREY = (0.299 * 255) / 255  # PIL's L of pure red, 76/255 after rounding


def disc_mask(size: int, radius: float) -> np.ndarray:
    """``[size, size]`` bool: a disc of ``radius`` at the centre."""
    y, x = np.mgrid[:size, :size]
    centre = (size - 1) / 2
    return (x - centre) ** 2 + (y - centre) ** 2 <= radius ** 2


def old_read(path: Path, size: int, channels: int) -> np.ndarray:
    """The decode every model was trained with before ``fit``: open, convert, squash with
    LANCZOS, [0, 1]."""
    with Image.open(path) as image:
        image = image.convert("L" if channels == 1 else "RGB")
        image = image.resize((size, size), Image.Resampling.LANCZOS)
        array = np.asarray(image, dtype=np.float32) / 255.0
    return array[None] if channels == 1 else array.transpose(2, 0, 1)


# ------------------------------------------------------------------------ transparency
@pytest.fixture
def rgba_disc(tmp_path: Path) -> Path:
    """A red disc on a fully transparent (black, alpha 0) background, 40 x 40."""
    pixels = np.zeros((40, 40, 4), dtype=np.uint8)
    pixels[disc_mask(40, 12)] = (255, 0, 0, 255)
    path = tmp_path / "disc.png"
    Image.fromarray(pixels).save(path)
    assert Image.open(path).mode == "RGBA"
    return path


def test_transparent_rgba_reads_white_outside_the_disc_and_red_inside(rgba_disc):
    array = load_image(rgba_disc, 40, 3)
    assert array.shape == (3, 40, 40)
    np.testing.assert_allclose(array[:, 20, 20], [1.0, 0.0, 0.0], atol=TOL)
    for y, x in [(0, 0), (0, 39), (39, 0), (39, 39), (20, 2)]:
        np.testing.assert_allclose(array[:, y, x], [1.0, 1.0, 1.0], atol=TOL)


def test_transparent_rgba_read_as_grey_has_a_white_background(rgba_disc):
    array = load_image(rgba_disc, 40, 1)
    assert array.shape == (1, 40, 40)
    assert abs(array[0, 20, 20] - RED_GREY) <= TOL
    assert array[0, 0, 0] == pytest.approx(1.0, abs=TOL)
    assert array[0, 39, 39] == pytest.approx(1.0, abs=TOL)


def test_palette_png_with_a_transparent_index_reads_white_there(tmp_path):
    index = disc_mask(30, 9).astype(np.uint8)  # 0 outside (transparent), 1 inside (blue)
    image = Image.fromarray(index)
    image = image.convert("P")
    image.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
    path = tmp_path / "palette.png"
    image.save(path, transparency=0)
    with Image.open(path) as stored:
        assert stored.mode == "P" and stored.info.get("transparency") == 0
    array = load_image(path, 30, 3)
    np.testing.assert_allclose(array[:, 15, 15], [0.0, 0.0, 1.0], atol=TOL)
    np.testing.assert_allclose(array[:, 0, 0], [1.0, 1.0, 1.0], atol=TOL)


def test_la_png_reads_white_where_transparent(tmp_path):
    pixels = np.zeros((30, 30, 2), dtype=np.uint8)
    pixels[disc_mask(30, 9)] = (50, 255)
    path = tmp_path / "la.png"
    Image.fromarray(pixels, "LA").save(path)
    assert Image.open(path).mode == "LA"
    for channels in (1, 3):
        array = load_image(path, 30, channels)
        np.testing.assert_allclose(array[:, 15, 15], 50 / 255, atol=TOL)
        np.testing.assert_allclose(array[:, 0, 0], 1.0, atol=TOL)


# ------------------------------------------------------------------------ 16-bit grey
def test_16_bit_grey_png_reads_by_value_not_clipped(tmp_path):
    values = np.repeat(np.array([[0, 16384, 65535]], dtype=np.uint16), 2, axis=1)
    pixels = np.repeat(values, 6, axis=0)  # [6, 6]: columns 0, 0, 16384, 16384, 65535, 65535
    path = tmp_path / "deep.png"
    Image.fromarray(pixels.astype(np.uint16)).save(path)
    with Image.open(path) as stored:  # the file round-trips as 16-bit data
        assert stored.mode in ("I", "I;16", "I;16B", "I;16L")
        np.testing.assert_array_equal(np.asarray(stored).astype(np.int64), pixels)
    for channels in (1, 3):
        array = load_image(path, 6, channels)
        assert array.shape == (channels, 6, 6) and array.dtype == np.float32
        np.testing.assert_allclose(array[:, :, 0], 0.0, atol=TOL)
        np.testing.assert_allclose(array[:, :, 2], 0.25, atol=TOL)
        np.testing.assert_allclose(array[:, :, 5], 1.0, atol=TOL)


def test_16_bit_grey_half_value_reads_half(tmp_path):
    path = tmp_path / "half.png"
    Image.fromarray(np.full((8, 8), 32768, dtype=np.uint16)).save(path)
    np.testing.assert_allclose(load_image(path, 4, 1), 0.5, atol=TOL)


# ------------------------------------------------------------------------ EXIF orientation
@pytest.mark.parametrize("orientation, dark", [(6, "top"), (8, "bottom")])
def test_exif_rotated_jpeg_shows_its_dark_half_where_a_viewer_would(tmp_path, orientation,
                                                                     dark):
    pixels = np.full((20, 40), 255, dtype=np.uint8)
    pixels[:, :20] = 0  # stored: left half black, right half white
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"rotated{orientation}.jpg"
    Image.fromarray(pixels).save(path, exif=exif, quality=95)
    array = load_image(path, 20, 1)[0]
    top, bottom = array[:6].mean(), array[-6:].mean()
    # 6: rotate 90 degrees clockwise to view (the left edge goes to the top); 8: the opposite
    assert (top, bottom) == ((pytest.approx(0, abs=0.1), pytest.approx(1, abs=0.1))
                             if dark == "top" else
                             (pytest.approx(1, abs=0.1), pytest.approx(0, abs=0.1)))
    # and left and right look alike: the picture is not read as stored
    assert abs(array[:, :6].mean() - array[:, -6:].mean()) < 0.1


# ------------------------------------------------------------------------ geometry
@pytest.fixture
def wide_with_markers(tmp_path: Path) -> Path:
    """200 x 100 mid-grey with black 10 x 10 markers at the far left, centre and far right."""
    pixels = np.full((100, 200), 128, dtype=np.uint8)
    for left in (0, 95, 190):
        pixels[45:55, left:left + 10] = 0
    path = tmp_path / "wide.png"
    Image.fromarray(pixels).save(path)
    return path


def test_crop_keeps_the_centre_square(wide_with_markers):
    array = load_image(wide_with_markers, 50, 1, fit="crop")[0]
    assert array.shape == (50, 50)
    assert array[24:26, 24:26].max() < 0.1  # the centre marker is kept
    # the far left and right markers are cut away: no dark pixel at all
    assert array[:, :10].min() > 0.4 and array[:, -10:].min() > 0.4


def test_pad_keeps_the_whole_picture_on_white(wide_with_markers):
    array = load_image(wide_with_markers, 50, 1, fit="pad")[0]
    assert array.shape == (50, 50)
    # 200 x 100 -> 50 x 25, centred: rows 12..36 hold the picture, the rest is white
    assert np.all(array[:12] == 1.0) and np.all(array[37:] == 1.0)
    assert array[24, 25] < 0.2  # centre marker
    assert array[24, 0] < 0.3 and array[24, 49] < 0.3  # both far markers are still there
    assert array[15, 10] == pytest.approx(128 / 255, abs=0.02)


def test_resize_is_the_old_decode_exactly(tmp_path, wide_with_markers):
    rng = np.random.default_rng(0)
    files = [wide_with_markers]
    rgb = rng.integers(0, 256, (23, 37, 3), dtype=np.uint8)
    for name, image in [("rgb.png", Image.fromarray(rgb)), ("rgb.jpg", Image.fromarray(rgb)),
                        ("grey.png", Image.fromarray(rgb[..., 0])),
                        ("bits.png", Image.fromarray(rgb[..., 0] > 127)),  # Omniglot: 1-bit
                        ("big.jpg", Image.fromarray(np.tile(rgb, (3, 3, 1))))]:
        image.save(tmp_path / name)
        files.append(tmp_path / name)
    assert Image.open(tmp_path / "bits.png").mode == "1"
    for path in files:
        for channels in (1, 3):
            expected = old_read(path, 28, channels)
            np.testing.assert_array_equal(load_image(path, 28, channels), expected)
            np.testing.assert_array_equal(load_image(path, 28, channels, fit="resize"), expected)


def test_image_folder_and_image_tensor_follow_the_fit(tmp_path, wide_with_markers):
    folder = tmp_path / "data" / "train" / "a"
    folder.mkdir(parents=True)
    wide_with_markers.rename(folder / "wide.png")
    padded = load_image_folder(tmp_path / "data", "train", image_size=50, fit="pad").images
    assert torch.all(padded[0, 0, :12] == 1.0)
    squashed = load_image_folder(tmp_path / "data", "train", image_size=50).images
    assert not torch.all(squashed[0, 0, :12] == 1.0)
    tensor, _ = image_tensor(folder / "wide.png",
                             Preprocessing("image", image_size=50, channels=1, fit="pad"))
    np.testing.assert_array_equal(tensor.numpy(), padded[0].numpy())


def test_tensors_given_directly_follow_the_fit():
    image = torch.full((1, 100, 200), 0.5)
    image[:, 45:55, :10] = 0.0  # far left marker
    image[:, 45:55, 95:105] = 0.0  # centre marker
    pad = image_tensor(image, Preprocessing("image", image_size=50, channels=1, fit="pad"))[0]
    assert pad.shape == (1, 50, 50)
    assert torch.all(pad[0, :12] == 1.0) and torch.all(pad[0, 37:] == 1.0)
    assert pad[0, 24, 0] < 0.3
    inverted = Preprocessing("image", image_size=50, channels=1, fit="pad", inverted=True)
    assert torch.all(image_tensor(image, inverted)[0][0, :12] == 0.0)
    crop = image_tensor(image, Preprocessing("image", image_size=50, channels=1, fit="crop"))[0]
    assert crop.shape == (1, 50, 50)
    assert crop[0, 24, 25] < 0.1 and crop[0, :, :10].min() > 0.4
    resize = image_tensor(image, Preprocessing("image", image_size=50, channels=1))[0]
    assert resize[0, 24, 0] < 0.3 and resize[0, 0, 0] == pytest.approx(0.5)


def test_preprocessing_records_without_fit_read_as_resize():
    old_record = {"modality": "image", "image_size": 84, "channels": 3, "max_length": 48,
                  "inverted": False}
    assert Preprocessing.from_dict(old_record).fit == "resize"
    crop = Preprocessing("image", image_size=84, channels=3, fit="crop")
    assert crop.to_dict()["fit"] == "crop"
    assert Preprocessing.from_dict(crop.to_dict()) == crop


def test_a_bad_fit_is_a_value_error_naming_it_and_the_choices(tmp_path, wide_with_markers):
    assert FITS == ("resize", "crop", "pad")
    with pytest.raises(ValueError, match=r"'squash'.*'resize'.*'crop'.*'pad'"):
        Preprocessing("image", fit="squash")
    with pytest.raises(ValueError, match=r"'squash'.*'resize'.*'crop'.*'pad'"):
        Preprocessing.from_dict({"modality": "image", "fit": "squash"})
    with pytest.raises(ValueError, match=r"'centre'.*'resize'.*'crop'.*'pad'"):
        load_image(wide_with_markers, 28, 1, fit="centre")
    with pytest.raises(ValueError, match=r"'centre'.*'resize'"):
        load_image_folder(tmp_path, None, fit="centre")


# ------------------------------------------------------------------------ colour spaces
def test_cmyk_jpeg_reads_as_its_rgb_colour(tmp_path):
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(path, quality=95)  # red
    assert Image.open(path).mode == "CMYK"
    array = load_image(path, 8, 3)
    np.testing.assert_allclose(array.mean(axis=(1, 2)), [1.0, 0.0, 0.0], atol=0.03)
    grey = load_image(path, 8, 1)
    np.testing.assert_allclose(grey.mean(), RED_GREY, atol=0.03)


# ------------------------------------------------------------------------ large JPEG
def test_large_jpeg_decodes_through_draft_close_to_the_full_decode(tmp_path, monkeypatch):
    y, x = np.mgrid[:3000, :4000]
    pixels = np.stack([(x * 255 // 3999), (y * 255 // 2999),
                       np.where((x // 500 + y // 500) % 2 == 0, 230, 30)], axis=-1)
    path = tmp_path / "large.jpg"
    Image.fromarray(pixels.astype(np.uint8)).save(path, quality=90)
    del pixels, x, y
    scales = []
    original_draft = JpegImagePlugin.JpegImageFile.draft

    def recording_draft(self, mode, size):
        result = original_draft(self, mode, size)
        scales.append(self.decoderconfig[0] if self.decoderconfig else 1)
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", recording_draft)
    for channels in (3, 1):
        array = load_image(path, 64, channels)
        assert array.shape == (channels, 64, 64)
        assert np.abs(array - old_read(path, 64, channels)).mean() < 0.05
    assert scales and max(scales) == 8  # libjpeg decoded at 1/8: 500 x 375 >= 2 x 64


# ------------------------------------------------------------------------ PIL images handed in
def test_pil_images_handed_in_are_read_like_files_and_left_as_they_were(tmp_path):
    grey = Preprocessing("image", image_size=20, channels=1)
    # EXIF orientation 6 (left edge to the top), opened by the caller from a JPEG
    pixels = np.full((20, 40), 255, dtype=np.uint8)
    pixels[:, :20] = 0
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(pixels).save(tmp_path / "rotated.jpg", exif=exif, quality=95)
    with Image.open(tmp_path / "rotated.jpg") as photo:
        tensor, _ = image_tensor(photo, grey)
        assert photo.size == (40, 20)  # the caller's image is not turned in place
    assert tensor[0, :6].mean() < 0.1 and tensor[0, -6:].mean() > 0.9
    # modes a PNG cannot hold: CMYK red, and 16-bit values held as 32-bit "I" (older PILs)
    red, _ = image_tensor(Image.new("CMYK", (8, 8), (0, 255, 255, 0)),
                          Preprocessing("image", image_size=8, channels=3))
    torch.testing.assert_close(red[:, 4, 4], torch.tensor([1.0, 0.0, 0.0]))
    half = Image.fromarray(np.full((8, 8), 32768, dtype=np.int32))
    assert half.mode == "I"
    assert image_tensor(half, grey)[0].mean().item() == pytest.approx(0.5, abs=TOL)
