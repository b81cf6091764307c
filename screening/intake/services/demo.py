"""Synthetic demonstration cases, so a fresh install has something to read.

The portal draws them itself with NumPy: no person's image, no research data set. Each case is a
four-view screening exam (RCC, LCC, RMLO, LMLO) of 12-bit MONOCHROME2 "for presentation" MG
DICOMs that look enough like mammograms to try the viewer on: a breast outline with its skin
line and thinning periphery, fibroglandular tissue from smoothed noise, the pectoral muscle on
the MLO views, quantum noise, and in two cases a finding seen on both views of one breast (a
spiculated mass; a cluster of calcifications). One woman also has a prior exam two years
earlier, so the priors panel has something to show.

They enter through `ingest_file` like any upload (renditions and AI prediction follow), with
fixed UIDs derived from a constant: adding them twice adds nothing, and `is_demo_study` can
tell them apart. They never become training labels (screening.ai.labels leaves them out).
Patient names and IDs say SYNTHETIC / DEMO.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian

from screening.errors import PortalError
from screening.exchange.services.export import destinations
from screening.intake.demo_cases import CASES, DemoCase, demo_study_uids, demo_uid
from screening.intake.services.ingest import ingest_file
from screening.intake.services.studies import delete_study
from screening.models import Study

MG_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.2"
ROWS, COLUMNS = 1536, 1248  # 21.5 x 17.5 cm at the imager pixel spacing below: a small detector
PIXEL_SPACING_MM = 0.14
BITS = 12
VIEWS = (("R", "CC"), ("L", "CC"), ("R", "MLO"), ("L", "MLO"))
# SNOMED CT view codes, as modalities send them (ViewCodeSequence)
VIEW_CODES = {"CC": ("399162004", "cranio-caudal"), "MLO": ("399368009", "medio-lateral oblique")}
# PatientOrientation (row, column directions) with the chest wall on the image's left for L, right for R
ORIENTATION = {("L", "CC"): ["A", "R"], ("R", "CC"): ["P", "L"], ("L", "MLO"): ["A", "FR"], ("R", "MLO"): ["P", "FL"]}


def _texture(rng: np.random.Generator, shape: tuple[int, int], scales: tuple[tuple[float, float], ...]) -> np.ndarray:
    """White noise low-passed by a weighted sum of Gaussians ((scale in pixels, weight), each of unit variance), in
    one FFT on a padded grid of fast sizes: lobes and strands at once, in a fraction of a second."""
    padded = (-(-shape[0] // 256) * 256, -(-shape[1] // 256) * 256)
    fy = np.fft.fftfreq(padded[0])[:, None]
    fx = np.fft.rfftfreq(padded[1])[None, :]
    f2 = fx**2 + fy**2
    # A Gaussian low-pass of scale s leaves white noise a variance of about 1 / (4 pi s^2): scaled back to 1.
    kernel = sum(w * 2 * s * np.sqrt(np.pi) * np.exp(-2 * (np.pi * s) ** 2 * f2) for s, w in scales)
    noise = rng.standard_normal(padded, dtype=np.float32)
    return np.fft.irfft2(np.fft.rfft2(noise) * kernel, s=padded)[: shape[0], : shape[1]]


def finding_centre(view: str) -> tuple[float, float]:
    """Where a case's finding sits, as (x, y) fractions of the image with the chest wall at x = 0."""
    return (0.42, 0.42) if view == "CC" else (0.45, 0.36)


def _draw_finding(image: np.ndarray, rng: np.random.Generator, kind: str, fx: float, fy: float) -> None:
    """A spiculated mass or a cluster of fine calcifications around (fx, fy) (fractions of the image), in place."""
    cx, cy = int(fx * COLUMNS), int(fy * ROWS)
    half = 120
    y, x = np.mgrid[cy - half : cy + half, cx - half : cx + half].astype(np.float64)
    patch = image[cy - half : cy + half, cx - half : cx + half]
    d = np.hypot(x - cx, y - cy)
    if kind == "mass":
        angle = np.arctan2(y - cy, x - cx)
        spicules = 1 + 0.45 * np.maximum(np.sin(angle * 11 + 0.7), 0) ** 8  # a spiculated margin
        patch += 800 * np.exp(-((d / (40 * spicules)) ** 4))
        return
    for _ in range(14):  # 1-3 pixels each, within about 5 mm
        px, py = cx + rng.normal(0, 20), cy + rng.normal(0, 15)
        patch += 1400 * np.exp(-((np.hypot(x - px, y - py) / rng.uniform(1.0, 2.2)) ** 2))


def synthetic_mammogram(case: DemoCase, laterality: str, view: str) -> np.ndarray:
    """A 12-bit MONOCHROME2 image (denser is brighter), chest wall on the left for L and on the right for R."""
    seed = [case.seed, sum(map(ord, case.key)), sum(map(ord, laterality + view))]
    rng = np.random.default_rng(seed)
    shape = (ROWS, COLUMNS)
    y, x = np.mgrid[0:ROWS, 0:COLUMNS].astype(np.float64)
    # The compressed breast: a half ellipse on the chest wall (x = 0), taller and deeper on the MLO.
    if view == "CC":
        depth, half_height, centre = 0.62 * COLUMNS, 0.40 * ROWS, 0.5 * ROWS
    else:
        depth, half_height, centre = 0.68 * COLUMNS, 0.50 * ROWS, 0.52 * ROWS
    wobble = 1 + 0.03 * np.sin(y / ROWS * 7 + case.seed)  # no breast is a perfect ellipse
    r = np.sqrt((x / (depth * wobble)) ** 2 + ((y - centre) / half_height) ** 2)
    inside = r < 1
    thickness = np.sqrt(np.clip(1 - r**2, 0, 1))  # thinner towards the skin: darker periphery
    # Fibroglandular tissue: large lobes and finer strands, more behind the nipple than at the edge.
    lobes = _texture(rng, shape, ((45, 0.7), (12, 0.5), (3, 0.25)))
    gland = 1 / (1 + np.exp(-1.7 * (lobes + 2.4 * case.density - 0.2 - 2.2 * r)))
    image = np.where(inside, 620 + 720 * thickness + 1250 * gland * np.sqrt(thickness), 60.0)
    image += np.where(inside & (r > 0.968), 180.0, 0.0)  # the skin line
    if view == "MLO":  # the pectoral muscle: a band along the chest wall at the top
        pectoral = inside & (x < 0.30 * COLUMNS * (1 - y / (0.58 * ROWS)))
        image[pectoral] += 650 + 40 * lobes[pectoral]
    if case.finding and case.finding[0] == laterality:
        _draw_finding(image, rng, case.finding[1], *finding_centre(view))
    image += rng.normal(0, 22, shape)  # quantum noise
    image = np.clip(np.round(image), 0, 2**BITS - 1).astype(np.uint16)
    return image if laterality == "L" else np.ascontiguousarray(image[:, ::-1])


def demo_dataset(case: DemoCase, laterality: str, view: str) -> Dataset:
    pixels = synthetic_mammogram(case, laterality, view)
    number = VIEWS.index((laterality, view)) + 1
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = MG_FOR_PRESENTATION
    ds.file_meta.MediaStorageSOPInstanceUID = demo_uid(case.key, laterality, view, "instance")
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = MG_FOR_PRESENTATION
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = demo_uid(case.key, "study")
    ds.SeriesInstanceUID = demo_uid(case.key, laterality, view, "series")
    ds.Modality = "MG"
    ds.PatientID = case.patient_id
    ds.PatientName = case.name
    ds.PatientBirthDate = case.birth_date.strftime("%Y%m%d")
    ds.PatientSex = "F"
    born = case.birth_date
    age = case.study_date.year - born.year - ((case.study_date.month, case.study_date.day) < (born.month, born.day))
    ds.PatientAge = f"{age:03d}Y"
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = case.study_date.strftime("%Y%m%d")
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "090000"
    ds.AccessionNumber = case.accession
    ds.StudyID = case.accession
    ds.StudyDescription = "Synthetic demonstration case (not a patient)"
    ds.SeriesDescription = f"{laterality}{view} synthetic"
    ds.SeriesNumber = number
    ds.InstanceNumber = 1
    ds.Manufacturer = "Breast screening portal"
    ds.ManufacturerModelName = "synthetic demonstration"
    ds.InstitutionName = "Synthetic demonstration data"
    ds.ReferringPhysicianName = ""
    ds.BodyPartExamined = "BREAST"
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.BurnedInAnnotation = "NO"
    ds.ImageType = ["DERIVED", "PRIMARY"]
    ds.ImageLaterality = laterality
    ds.ViewPosition = view
    code, meaning = VIEW_CODES[view]
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = code, "SCT", meaning
    item.ViewModifierCodeSequence = Sequence([])
    ds.ViewCodeSequence = Sequence([item])
    breast = Dataset()
    breast.CodeValue, breast.CodingSchemeDesignator, breast.CodeMeaning = "76752008", "SCT", "Breast"
    ds.AnatomicRegionSequence = Sequence([breast])
    ds.AcquisitionContextSequence = Sequence([])
    ds.OrganExposed = "BREAST"
    ds.PositionerType = "MAMMOGRAPHIC"
    ds.DetectorType = "DIRECT"
    ds.PixelIntensityRelationship = "LOG"
    ds.PixelIntensityRelationshipSign = 1
    ds.PresentationLUTShape = "IDENTITY"
    ds.LossyImageCompression = "00"
    ds.PatientOrientation = ORIENTATION[(laterality, view)]
    ds.ImagerPixelSpacing = [PIXEL_SPACING_MM, PIXEL_SPACING_MM]
    ds.KVP = 29
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, BITS, BITS - 1, 0
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = 0, 1, "US"
    ds.WindowCenter, ds.WindowWidth = [1500, 1900], [2600, 1400]
    ds.WindowCenterWidthExplanation = ["whole breast", "dense tissue"]
    # No VOILUTFunction (Type 3, LINEAR when absent): the viewer shows any image that names one without its
    # window (tests/browser/test_demo_cases.py::test_an_mg_image_naming_its_voi_lut_function_keeps_its_window).
    ds.PixelData = pixels.tobytes()
    return ds


def _dicom_bytes(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def add_demo_cases(*, user=None, progress: Callable[[str], None] = lambda line: None) -> int:
    """Add the demonstration cases not already held (each through ingest_file); returns how many were added.

    `progress` is told about each case as it goes (the command prints it: rendering and, in embedded
    mode, the AI prediction run in this process and take a few seconds per case). Refused (PortalError) while a
    DICOM destination is configured."""
    if destinations():
        # Their AI-result and decision SRs would go there: synthetic patients must never reach a real PACS.
        raise PortalError(
            "a DICOM destination is configured (PORTAL_DICOM_DESTINATIONS or Admin > DICOM destinations): the "
            "demonstration cases' SRs would be sent to it; add them on a portal without destinations"
        )
    held = set(Study.objects.filter(study_uid__in=demo_study_uids()).values_list("study_uid", flat=True))
    added = 0
    for number, case in enumerate(CASES, start=1):
        if demo_uid(case.key, "study") in held:
            progress(f"case {number}/{len(CASES)} ({case.accession}) is already here")
            continue
        start = time.monotonic()
        for laterality, view in VIEWS:
            content = _dicom_bytes(demo_dataset(case, laterality, view))
            ingest_file(
                file=io.BytesIO(content), filename=f"{case.accession}-{laterality}{view}.dcm", user=user, via="demo"
            )
        added += 1
        found = ""
        if case.finding:
            found = f", {case.finding[1]} in the {'left' if case.finding[0] == 'L' else 'right'} breast"
        progress(
            f"case {number}/{len(CASES)} ({case.accession}, {case.study_date.isoformat()}{found}): "
            f"4 images in {time.monotonic() - start:.1f} s"
        )
    return added


def remove_demo_cases(*, user=None, ip_address: str | None = None) -> int:
    """Delete the demonstration cases (audited, like any study deletion); returns how many went."""
    removed = 0
    for study in Study.objects.filter(study_uid__in=demo_study_uids()):
        delete_study(study=study, user=user, reason="synthetic demonstration case removed", ip_address=ip_address)
        removed += 1
    return removed
