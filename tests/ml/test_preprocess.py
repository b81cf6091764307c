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
