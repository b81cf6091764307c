"""ml.io: the float picture for the model and the 8-bit picture for renditions agree, and the
8-bit one is made strip by strip, never through a float copy of the whole image."""

from __future__ import annotations

import io
import tracemalloc

import numpy as np
import pydicom
import pytest
from PIL import Image

from ml.io import (
    DecodeError,
    check_presentation,
    dicom_to_float,
    dicom_to_uint8,
    image_stored_values,
    image_to_float,
    image_to_uint8,
)
from tests.dicom_factory import mg_dataset, phantom, to_bytes


def _read(ds) -> pydicom.Dataset:
    return pydicom.dcmread(io.BytesIO(to_bytes(ds)))


def _png(array: np.ndarray) -> io.BytesIO:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    buffer.seek(0)
    return buffer


def _traced_peak(function, *args, **kwargs) -> tuple[object, int]:
    """Result and the peak bytes allocated through Python and NumPy while `function` ran."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        result = function(*args, **kwargs)
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda p: mg_dataset(p), id="stretch"),
        pytest.param(lambda p: mg_dataset(p, window=(2000, 400)), id="window"),
        pytest.param(lambda p: mg_dataset((4095 - p).astype(np.uint16), photometric="MONOCHROME1"), id="monochrome1"),
        pytest.param(lambda p: mg_dataset(p | 0xF000), id="junk-in-unused-high-bits"),
    ],
)
def test_the_8bit_picture_is_the_float_picture_rounded(make):
    ds = make(phantom(rows=700, columns=500, bits=12, seed=3))
    expected = np.round(dicom_to_float(_read(ds)) * 255.0).astype(np.uint8)
    np.testing.assert_array_equal(dicom_to_uint8(_read(ds)), expected)


def test_an_image_file_gives_the_same_8bit_picture_as_its_float_one():
    array = np.random.default_rng(1).integers(300, 40000, (600, 450), dtype=np.uint16)
    expected = np.round(image_to_float(_png(array)) * 255.0).astype(np.uint8)
    np.testing.assert_array_equal(image_to_uint8(_png(array)), expected)


def test_the_8bit_picture_is_shrunk_to_the_longest_side_asked_for():
    ds = _read(mg_dataset(phantom(rows=2600, columns=2000, bits=12)))
    small = dicom_to_uint8(ds, max_side=500)
    assert small.dtype == np.uint8 and small.shape == (500, 385)
    # Shrunk, not cropped: it is close to a box-filtered copy of the full picture.
    reference = np.asarray(Image.fromarray(dicom_to_uint8(ds)).resize((385, 500), Image.Resampling.BOX))
    assert np.abs(small.astype(int) - reference.astype(int)).mean() < 1.0


def test_the_8bit_picture_of_a_16bit_dicom_allocates_less_than_twice_its_own_size():
    rows, columns = 4000, 3000
    pixels = np.random.default_rng(0).integers(0, 65535, (rows, columns), dtype=np.uint16)
    ds = _read(mg_dataset(pixels, bits=16))
    picture, peak = _traced_peak(dicom_to_uint8, ds, max_side=2048)
    assert picture.dtype == np.uint8 and picture.shape == (2048, 1536)
    # A float32 copy of the image alone would be 4x its 8-bit size, a float64 one 8x.
    assert peak < 2 * rows * columns


def test_the_8bit_picture_of_a_16bit_png_allocates_less_than_its_own_size():
    rows, columns = 3000, 2500
    pixels = np.random.default_rng(0).integers(0, 65535, (rows, columns), dtype=np.uint16)
    source = _png(pixels)
    picture, peak = _traced_peak(image_to_uint8, source, max_side=1024)
    assert picture.dtype == np.uint8 and picture.shape == (1024, 853)
    assert peak < rows * columns


def test_the_float_picture_for_the_model_is_unchanged_in_type_and_size():
    shown = dicom_to_float(_read(mg_dataset(phantom(rows=300, columns=200))))
    assert shown.dtype == np.float32 and shown.shape == (300, 200)
    assert shown.min() == 0.0 and shown.max() == 1.0


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"WindowCenter": float("nan"), "WindowWidth": 400}, "WindowCenter is nan; expected a finite number"),
        ({"WindowCenter": 100, "WindowWidth": 0}, "WindowWidth is 0; expected a number above 0"),
        ({"RescaleSlope": float("inf"), "RescaleIntercept": 0}, "RescaleSlope is inf; expected a finite number"),
    ],
)
def test_the_model_path_refuses_non_finite_presentation_values_too(values, message):
    ds = mg_dataset()
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    with pytest.raises(DecodeError, match=message):
        check_presentation(_read(ds))
    with pytest.raises(DecodeError, match=message):
        dicom_to_float(_read(ds))


def test_a_truncated_uncompressed_frame_says_how_much_is_missing():
    content = to_bytes(mg_dataset())
    with pytest.raises(DecodeError) as caught:
        dicom_to_float(pydicom.dcmread(io.BytesIO(content[:-5000])))
    assert str(caught.value) == (
        "the pixel data is truncated: the file holds 97,400 of the 102,400 bytes its header describes"
    )


def _file(array: np.ndarray, mode: str | None = None, fmt: str = "PNG") -> io.BytesIO:
    buffer = io.BytesIO()
    image = Image.fromarray(array)
    (image.convert(mode) if mode else image).save(buffer, format=fmt)
    buffer.seek(0)
    return buffer


def test_image_stored_values_are_what_image_to_uint8_stretches():
    values = np.tile(np.linspace(300, 9000, 64).astype(np.uint16), (48, 1))
    pixels, low, high, inverted = image_stored_values(_file(values))
    assert pixels.dtype == np.uint16 and np.array_equal(pixels, values) and (low, high) == (300, 9000)
    shown = np.round((pixels.astype(np.float32) - low) / (high - low) * 255).astype(np.uint8)
    assert np.array_equal(shown, image_to_uint8(_file(values), fix_inversion=False)) and not inverted
    grey = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (48, 1))
    pixels, low, high, _ = image_stored_values(_file(grey, "LA"))  # grey with alpha: the grey channel
    assert pixels.dtype == np.uint8 and np.array_equal(pixels, grey) and (low, high) == (0, 255)


def test_image_stored_values_refuse_a_colour_picture():
    colour = np.zeros((16, 16, 3), dtype=np.uint8)
    colour[..., 0] = 200
    with pytest.raises(DecodeError, match="colour image"):
        image_stored_values(_file(colour))
