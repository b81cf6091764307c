"""Synthetic mammography DICOM files, built with pydicom for the tests and benches."""

from __future__ import annotations

import io
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pydicom
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.tag import Tag
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEG2000Lossless, RLELossless, generate_uid

MG_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.2"
MG_PROCESSING = "1.2.840.10008.5.1.4.1.1.1.2.1"


def phantom(rows: int = 256, columns: int = 200, bits: int = 12, seed: int = 0) -> np.ndarray:
    """A breast-like phantom: a half-disc of tissue against the left edge, a dense blob, noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:rows, 0:columns]
    top = (2**bits) - 1
    breast = ((x / (0.8 * columns)) ** 2 + ((y - rows / 2) / (0.45 * rows)) ** 2) < 1
    image = np.where(breast, 0.45 * top, 0.02 * top)
    blob = ((x - 0.35 * columns) ** 2 + (y - 0.5 * rows) ** 2) < (0.06 * rows) ** 2
    image = image + np.where(blob, 0.35 * top, 0) + rng.normal(0, 0.01 * top, (rows, columns))
    return np.clip(image, 0, top).astype(np.uint16)


def mg_dataset(
    pixels: np.ndarray | None = None,
    *,
    bits: int = 12,
    photometric: str = "MONOCHROME2",
    laterality: str | None = "L",
    view: str | None = "CC",
    view_code: tuple[str, str] | None = None,
    modality: str = "MG",
    sop_class: str = MG_PRESENTATION,
    patient_id: str = "PAT-0001",
    study_uid: str | None = None,
    sop_uid: str | None = None,
    window: tuple[float, float] | None = None,
    voi_lut: np.ndarray | None = None,
    seed: int = 0,
) -> Dataset:
    if pixels is None:
        pixels = phantom(bits=bits, seed=seed)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid or generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = modality
    ds.PatientID = patient_id
    ds.PatientName = "Test^Patient"
    ds.PatientBirthDate = "19600102"
    ds.PatientSex = "F"
    ds.StudyDate = "20260301"
    ds.AccessionNumber = "ACC1"
    ds.Manufacturer = "Synthetic"
    ds.PresentationIntentType = "FOR PRESENTATION" if sop_class == MG_PRESENTATION else "FOR PROCESSING"
    if laterality:
        ds.ImageLaterality = laterality
    if view:
        ds.ViewPosition = view
    if view_code:
        item = Dataset()
        item.CodeValue, item.CodeMeaning = view_code
        item.CodingSchemeDesignator = "SCT"
        ds.ViewCodeSequence = [item]
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 16 if bits > 8 else 8
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    if window:
        ds.WindowCenter, ds.WindowWidth = window
    if voi_lut is not None:
        item = Dataset()
        item.LUTDescriptor = [len(voi_lut), 0, 16]
        item.add_new(0x00283006, "OW", np.asarray(voi_lut, dtype="<u2").tobytes())
        ds.VOILUTSequence = [item]
    ds.PixelData = pixels.astype(np.uint16 if bits > 8 else np.uint8).tobytes()
    return ds


def to_bytes(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def dcmtk_compress(ds: Dataset, tool: str, *args: str) -> Dataset:
    """Compress with dcmtk (dcmcjpeg: JPEG lossless; dcmcjpls: JPEG-LS), the reference encoder."""
    if shutil.which(tool) is None:
        raise RuntimeError(f"{tool} not found: install Debian's dcmtk")
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.dcm", Path(tmp) / "out.dcm"
        src.write_bytes(to_bytes(ds))
        subprocess.run([tool, *args, str(src), str(dst)], check=True, capture_output=True)
        return pydicom.dcmread(dst)


def set_raw(ds: Dataset, keyword: str, value: bytes | str) -> Dataset:
    """Store `value` as the element's bytes, unchecked by pydicom: what a damaged or hostile file
    can hold (a window of 'abc', an 80-character PatientID, a UID of '../../etc/passwd')."""
    raw = value.encode() if isinstance(value, str) else value
    if len(raw) % 2:
        raw += b" "
    tag = Tag(tag_for_keyword(keyword))
    ds._dict[tag] = RawDataElement(tag, dictionary_VR(tag), len(raw), raw, 0, False, True)
    return ds


def corrupt_file_meta_length(content: bytes, keyword: str = "TransferSyntaxUID", length: int = 1000) -> bytes:
    """The file with the 2-byte value length of a file meta (group 2) element rewritten, as a damaged
    file has it: pydicom then reads the header bytes that follow, patient data included, into it."""
    tag = Tag(tag_for_keyword(keyword))
    header = tag.group.to_bytes(2, "little") + tag.element.to_bytes(2, "little") + dictionary_VR(tag).encode()
    at = content.index(header, 132)
    return content[: at + 6] + length.to_bytes(2, "little") + content[at + 8 :]


def implicit_vr(ds):
    """The dataset re-encoded in implicit VR little endian."""
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    return ds


def jpeg2000_lossless(ds):
    ds.compress(JPEG2000Lossless)
    return ds


def rle_lossless(ds):
    ds.compress(RLELossless)
    return ds
