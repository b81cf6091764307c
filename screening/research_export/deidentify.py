"""De-identification of one DICOM dataset: PS3.15 Basic Application Level Confidentiality Profile with the
options Retain Longitudinal Temporal Information with Modified Dates, Retain Patient Characteristics and Retain
Device Identity. Plain pydicom + dicognito, no Django.

dicognito does the keyed replacement: every UI (but SOP class and transfer syntax UIDs) becomes
"2." + md5(key + UID), every ID (PatientID, AccessionNumber, StudyID, ...) a keyed pseudonym and every
date and time moves by one keyed offset (62 days to 2 years back), so two exports with the same key (one
export project) give the same new UIDs, IDs and dates for the same source: a later export links up.
Around it, what the profile asks and dicognito does not do: private attributes, overlays and curves go;
person names and every free text (descriptions, comments, operators, institution) are emptied unless
they are codes or device/patient characteristics the options keep (an allow-list: text no one vetted
goes); the birth date goes (the age stays, with the patient-characteristics option); and the dataset
says what was done (PatientIdentityRemoved, DeidentificationMethod and its code sequence).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import dicognito
import pydicom
from dicognito.anonymizer import Anonymizer
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID

PROFILE = ("113100", "Basic Application Confidentiality Profile")
OPTION_DATES = ("113107", "Retain Longitudinal Temporal Information Modified Dates Option")
OPTION_PATIENT = ("113108", "Retain Patient Characteristics Option")
OPTION_DEVICE = ("113109", "Retain Device Identity Option")

TEXT_VRS = {"LO", "SH", "LT", "ST", "UT", "UC", "AE", "UR"}
DATE_VRS = {"DA", "DT", "TM"}
# Text kept as it is: codes (their meaning is vocabulary, not identity), what the image is and how to show it,
# the pseudonyms dicognito made, and what this module writes.
KEEP_TEXT = {
    "CodeValue",
    "CodingSchemeDesignator",
    "CodingSchemeVersion",
    "CodeMeaning",
    "LongCodeValue",
    "URNCodeValue",
    "ContextIdentifier",
    "MappingResource",
    "Manufacturer",
    "ManufacturerModelName",
    "RescaleType",
    "PixelSpacingCalibrationDescription",  # Type 1C in the pixel spacing calibration macro: technical text
    "WindowCenterWidthExplanation",
    "LUTExplanation",
    "PatientID",
    "AccessionNumber",
    "StudyID",
    "DeidentificationMethod",
}
DEVICE = {
    "StationName",
    "DeviceSerialNumber",
    "DetectorID",
    "DeviceUID",
    "PlateID",
    "SoftwareVersions",
    "DetectorDescription",
    "DetectorManufacturerName",
    "DetectorManufacturerModelName",
    "DateOfLastDetectorCalibration",
    "TimeOfLastDetectorCalibration",
    "DateOfLastCalibration",
    "TimeOfLastCalibration",
}
PATIENT_CHARACTERISTICS = {"PatientAge", "PatientSex", "PatientSize", "PatientWeight", "EthnicGroup", "SmokingStatus"}
# Whole sequences the profile removes (X): what they hold is about the patient or the order, not the image.
REMOVED_SEQUENCES = {
    "OtherPatientIDsSequence",
    "RequestAttributesSequence",
    "OriginalAttributesSequence",
    "ReferencedPatientSequence",
    "ReferencedPatientPhotoSequence",
    "ReferencedStudySequence",
    "ReferencedPerformedProcedureStepSequence",
    "IconImageSequence",
}


@dataclass(frozen=True)
class Options:
    retain_dates: bool = True  # shifted by the project's offset; off: every date and time emptied
    retain_patient_characteristics: bool = True  # age, sex, size, weight
    retain_device_identity: bool = False  # station name, serial numbers, detector ID


def burned_in_reason(ds: Dataset) -> str:
    """Why an image's pixels may carry identity ("" when the header says they do not)."""
    sop_class = str(ds.get("SOPClassUID", ""))
    image_type = [str(v).upper() for v in (ds.get("ImageType") or [])]
    if str(ds.get("BurnedInAnnotation", "")).upper() == "YES":
        return "BurnedInAnnotation is YES"
    if sop_class.startswith("1.2.840.10008.5.1.4.1.1.7"):
        return "a secondary capture"
    if any(t in ("SECONDARY", "SCREEN SAVE") for t in image_type):
        return "a derived or screen-captured image (ImageType)"
    if str(ds.get("BurnedInAnnotation", "")).upper() != "NO":
        return "BurnedInAnnotation is not stated"
    return ""


def _age(ds: Dataset) -> str | None:
    def day(text: str) -> date:
        return date(int(text[:4]), int(text[4:6]), int(text[6:8]))

    try:
        born = day(str(ds.PatientBirthDate))
        seen = day(str(ds.get("StudyDate") or ds.get("ContentDate") or ""))
    except (AttributeError, TypeError, ValueError):
        return None
    years = seen.year - born.year - ((seen.month, seen.day) < (born.month, born.day))
    return f"{years:03d}Y" if 0 <= years < 1000 else None


def _code(value: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "DCM", meaning
    return item


def _prune(ds: Dataset) -> None:
    """Remove, at every depth: the sequences the profile removes, UN elements, overlays and curves."""
    for element in list(ds):
        if element.keyword in REMOVED_SEQUENCES or element.VR == "UN" or element.tag.group & 0xFF00 in (0x5000, 0x6000):
            del ds[element.tag]
        elif element.VR == "SQ":
            for item in element.value:
                _prune(item)


def _clean(ds: Dataset, options: Options) -> None:
    keep = set(KEEP_TEXT)
    if options.retain_device_identity:
        keep |= DEVICE
    if options.retain_patient_characteristics:
        keep |= PATIENT_CHARACTERISTICS

    def visit(dataset: Dataset, element) -> None:
        keyword = element.keyword
        if element.VR == "PN":
            element.value = ""
        elif element.VR in TEXT_VRS and keyword not in keep:
            element.value = ""
        elif element.VR in DATE_VRS and not options.retain_dates and keyword not in keep:
            element.value = ""

    ds.remove_private_tags()
    _prune(ds)
    ds.walk(visit)
    ds.PatientBirthDate = ""
    for keyword in ("PatientBirthTime", "PatientAddress", "PatientComments", "OtherPatientIDs"):
        if keyword in ds:
            del ds[keyword]
    if not options.retain_patient_characteristics:
        for keyword in PATIENT_CHARACTERISTICS - {"PatientSex"}:
            if keyword in ds:
                del ds[keyword]
        if "PatientSex" in ds:
            ds.PatientSex = ""


def deidentify(ds: Dataset, *, key: str, options: Options) -> Dataset:
    """De-identify `ds` in place with the project's key; returns it with a fresh file meta."""
    age = _age(ds) if options.retain_patient_characteristics and not ds.get("PatientAge") else None
    kept = {k: ds[k].value for k in DEVICE if k in ds} if options.retain_device_identity else {}
    Anonymizer(seed=key).anonymize(ds)
    for keyword, value in kept.items():  # the device option keeps what dicognito replaced
        setattr(ds, keyword, value)
    _clean(ds, options)
    if age:
        ds.PatientAge = age
    codes = [PROFILE]
    if options.retain_dates:
        codes.append(OPTION_DATES)
    if options.retain_patient_characteristics:
        codes.append(OPTION_PATIENT)
    if options.retain_device_identity:
        codes.append(OPTION_DEVICE)
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = f"PS3.15 Basic Profile; dicognito {dicognito.__version__}"
    ds.DeidentificationMethodCodeSequence = [_code(*c) for c in codes]
    ds.LongitudinalTemporalInformationModified = "MODIFIED" if options.retain_dates else "REMOVED"
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ds.file_meta.TransferSyntaxUID
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.file_meta = meta
    return ds


def source_identifiers(ds: Dataset) -> set[str]:
    """What of the source must not appear in its export: names, IDs, accession numbers, birth date, every UID
    (but SOP class and transfer syntax UIDs, which name kinds of object, not people)."""
    found: set[str] = set()

    def visit(dataset: Dataset, element) -> None:
        value = element.value
        values = value if isinstance(value, list | tuple | pydicom.multival.MultiValue) else [value]
        if element.VR == "PN":
            for v in values:
                found.update(part for part in str(v).replace("=", "^").split("^") if len(part) >= 3)
        elif element.VR == "UI" and not element.keyword.endswith("ClassUID") and element.keyword != "TransferSyntaxUID":
            found.update(str(v) for v in values if v)
        elif element.keyword in (
            "PatientID",
            "AccessionNumber",
            "OtherPatientIDs",
            "PatientBirthDate",
            "IssuerOfPatientID",
            "StudyID",
            "PatientAddress",
            "InstitutionName",
            "MedicalRecordLocator",
        ):
            found.update(str(v) for v in values if v and len(str(v)) >= 3)

    ds.walk(visit)
    if hasattr(ds, "file_meta"):
        ds.file_meta.walk(visit)
    return found
