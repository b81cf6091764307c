from __future__ import annotations

import numpy as np
import pydicom
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from ml.config import ModelConfig
from ml.io import dicom_to_float
from ml.preprocess import heatmap_to_original, point_to_input, preprocess
from tests.ml.phantoms import LABEL_BOX, phantom

CONFIG = ModelConfig(input_height=256, input_width=192)


def _dicom(stored: np.ndarray, photometric: str) -> pydicom.Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.2"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("phantom.dcm", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.Modality = "MG"
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel = 1
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.RescaleSlope = 1
    ds.RescaleIntercept = 0
    ds.PixelData = stored.astype(np.uint16).tobytes()
    return ds


def test_it_gives_the_configured_shape_and_dtype_in_unit_range() -> None:
    out = preprocess(phantom(), "L", CONFIG)
    assert out.image.shape == (256, 192)
    assert out.image.dtype == np.float32
    assert 0.0 <= out.image.min() and out.image.max() <= 1.0


def test_monochrome1_and_monochrome2_dicoms_of_the_same_anatomy_give_the_same_input() -> None:
    anatomy = phantom(seed=3)
    mono2 = np.round(anatomy * 4095)  # dense tissue = high stored value
    mono1 = 4095 - mono2  # dense tissue = low stored value, displayed inverted
    a = preprocess(dicom_to_float(_dicom(mono2, "MONOCHROME2")), "L", CONFIG)
    b = preprocess(dicom_to_float(_dicom(mono1, "MONOCHROME1")), "L", CONFIG)
    np.testing.assert_allclose(a.image, b.image, atol=1e-6)
    assert a.geometry.box == b.geometry.box


def test_a_left_breast_flipped_equals_the_right() -> None:
    left = phantom(chest_left=True, seed=5)
    right = np.ascontiguousarray(left[:, ::-1])
    a = preprocess(left, "L", CONFIG)
    b = preprocess(right, "R", CONFIG)
    np.testing.assert_allclose(a.image, b.image, atol=1e-6)
    assert not a.geometry.flipped and b.geometry.flipped


def test_the_image_not_the_laterality_decides_orientation_when_they_disagree() -> None:
    # mini-MIAS has images whose laterality does not match the display convention.
    left = phantom(chest_left=True, seed=5)
    np.testing.assert_allclose(preprocess(left, "R", CONFIG).image, preprocess(left, "L", CONFIG).image, atol=1e-6)


def test_chest_wall_ends_up_on_the_left() -> None:
    out = preprocess(phantom(chest_left=False), "R", CONFIG).image
    rows, cols = out.shape
    breast_cols = np.flatnonzero((out > 0).any(axis=0))
    left_area = (out[:, : breast_cols[-1] // 3] > 0).sum()
    right_area = (out[:, breast_cols[-1] - breast_cols[-1] // 3 : breast_cols[-1]] > 0).sum()
    assert left_area > right_area


def test_labels_and_markers_outside_the_breast_are_removed() -> None:
    image = phantom(seed=7)
    assert image[LABEL_BOX].min() == 1.0  # the label is there to remove
    out = preprocess(image, "L", CONFIG)
    # Breast tissue is at most 0.8 in the phantom; label and marker are 1.0.
    assert out.image.max() <= 0.8 + 1e-5
    top, bottom, left, right = out.geometry.box
    assert right <= image.shape[1] - 70  # the crop stops before the label's columns


def test_a_heatmap_hot_spot_maps_back_onto_the_lesion() -> None:
    lesion = (70, 150, 15)
    for chest_left in (True, False):
        image = phantom(lesion=lesion, chest_left=chest_left, seed=2)
        x = lesion[0] if chest_left else image.shape[1] - 1 - lesion[0]
        prep = preprocess(image, "L", CONFIG)
        ix, iy = point_to_input(x, lesion[1], prep.geometry)
        yy, xx = np.mgrid[0:256, 0:192]
        heat = np.exp(-((xx - ix) ** 2 + (yy - iy) ** 2) / (2 * 6.0**2)).astype(np.float32)
        back = heatmap_to_original(heat, prep.geometry)
        assert back.shape == image.shape and back.dtype == np.float32
        row, col = np.unravel_index(int(np.argmax(back)), back.shape)
        assert abs(col - x) <= 3 and abs(row - lesion[1]) <= 3


def _flood_one_cell_at_a_time(seed: np.ndarray, within: np.ndarray) -> np.ndarray:
    """The former flood (grow by one cell until stable): the reference the faster one must equal."""
    region = seed & within
    while True:
        grown = region.copy()
        grown[1:] |= region[:-1]
        grown[:-1] |= region[1:]
        grown[:, 1:] |= region[:, :-1]
        grown[:, :-1] |= region[:, 1:]
        grown &= within
        if np.array_equal(grown, region):
            return region
        region = grown


def test_the_run_filling_flood_finds_exactly_the_seeded_4_connected_parts() -> None:
    from ml.preprocess import _flood

    rng = np.random.default_rng(0)
    for _ in range(200):
        shape = tuple(int(n) for n in rng.integers(1, 50, 2))
        within = rng.random(shape) < rng.uniform(0.3, 0.8)
        seed = rng.random(shape) < 0.03
        assert np.array_equal(_flood(seed, within), _flood_one_cell_at_a_time(seed, within))
    spiral = np.zeros((9, 9), bool)  # a path that turns at every wall: many passes, still exact
    spiral[0, :] = spiral[:, 8] = spiral[8, :] = spiral[2:, 0] = spiral[2, :7] = spiral[2:7, 6] = True
    seed = np.zeros_like(spiral)
    seed[2, 3] = True
    assert np.array_equal(_flood(seed, spiral), _flood_one_cell_at_a_time(seed, spiral))


def test_a_display_sized_heatmap_keeps_exactly_the_breast_cells() -> None:
    """The breast mask is applied cell by cell at any output size: exactly what indexing the coarse mask with
    each output pixel's cell gives (the former gather), zero beyond the mask and outside the crop box."""
    image = phantom(seed=4)
    for laterality in ("L", "R"):
        prep = preprocess(image if laterality == "L" else image[:, ::-1], laterality, CONFIG)
        geometry = prep.geometry
        for side in (None, 700, 333):
            out = heatmap_to_original(np.ones((32, 20), np.float32), geometry, side)
            if geometry.flipped:
                out = out[:, ::-1]
            scale = 1.0 if side is None else min(1.0, side / max(geometry.original_shape))
            rows = (np.arange(out.shape[0]) / (geometry.mask_factor * scale)).astype(np.int64)
            cols = (np.arange(out.shape[1]) / (geometry.mask_factor * scale)).astype(np.int64)
            keep = np.zeros(out.shape, bool)
            ok_r, ok_c = rows < geometry.mask.shape[0], cols < geometry.mask.shape[1]
            keep[np.ix_(ok_r, ok_c)] = geometry.mask[np.ix_(rows[ok_r], cols[ok_c])]
            top, bottom, left, right = (round(v * scale) for v in geometry.box)
            box = np.zeros(out.shape, bool)
            box[top:bottom, left:right] = True
            assert np.array_equal(out > 0.5, keep & box) and not out[~(keep & box)].any()
