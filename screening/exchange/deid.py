"""Pseudonymised copies of the DICOM objects the portal serves (DICOMweb, Query/Retrieve) to a viewer
who may not see patient identity: PatientID replaced by the viewer's pseudonym, the name emptied,
other patient identifiers removed, and the copy says so (PS3.3 C.7.1.1: Patient Identity Removed,
De-identification Method and its code sequence, from CID 7050)."""

from __future__ import annotations

from pydicom import Dataset

# Type 2 (present, possibly empty, in an MG image and an SR): emptied rather than removed.
EMPTIED_KEYWORDS = ("PatientName", "PatientBirthDate", "AccessionNumber", "ReferringPhysicianName", "StudyID")
IDENTITY_KEYWORDS = (
    "PatientBirthTime",
    "OtherPatientIDs",
    "OtherPatientIDsSequence",
    "OtherPatientNames",
    "PatientMotherBirthName",
    "PatientAddress",
    "PatientTelephoneNumbers",
    "IssuerOfPatientID",
    "MedicalRecordLocator",
    "ReferencedPatientSequence",
    # what else tells who she is or where her exam was asked for (issue 21)
    "PatientComments",
    "AdditionalPatientHistory",
    "StudyDescription",
    "ReferringPhysicianAddress",
    "ReferringPhysicianTelephoneNumbers",
    "ReferringPhysicianIdentificationSequence",
    "RequestingPhysician",
    "PhysiciansOfRecord",
    "PerformingPhysicianName",
    "NameOfPhysiciansReadingStudy",
    "OperatorsName",
    "IssuerOfAccessionNumberSequence",
    "RequestAttributesSequence",
)
DUMMY_STUDY_ID = "ANON"
METHOD = "Portal pseudonym: Patient ID replaced, identifiers removed"  # LO: 64 at most
# What the copy keeps, in CID 7050's terms: UIDs, full dates, patient characteristics (sex, age), device identity.
METHOD_CODES = (
    ("113110", "Retain UIDs Option"),
    ("113106", "Retain Longitudinal Temporal Information Full Dates Option"),
    ("113108", "Retain Patient Characteristics Option"),
    ("113109", "Retain Device Identity Option"),
)


def _code(value: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "DCM", meaning
    return item


def pseudonymise(ds: Dataset, pseudonym: str) -> None:
    """In place: the identity replaced by `pseudonym` (selectors.pseudonym) and the de-identification declared."""
    ds.PatientID = pseudonym
    had_study_id = bool(ds.get("StudyID"))
    for keyword in EMPTIED_KEYWORDS:
        if keyword in ("PatientName", "PatientBirthDate") or keyword in ds:
            setattr(ds, keyword, "")
    if had_study_id:  # PS3.15 E.1-1 "Z": empty or a dummy; a DICOMDIR needs one (dciodvfy warns when empty)
        ds.StudyID = DUMMY_STUDY_ID
    for keyword in IDENTITY_KEYWORDS:
        if keyword in ds:
            delattr(ds, keyword)
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = METHOD
    ds.DeidentificationMethodCodeSequence = [_code(value, meaning) for value, meaning in METHOD_CODES]
