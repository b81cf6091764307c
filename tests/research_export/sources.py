"""A full-field digital mammogram (For Presentation) that dciodvfy finds conformant, with identifiers in
every standard place a PACS puts them and in private elements, for the research export tests."""

from __future__ import annotations

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid

from tests.dicom_factory import mg_dataset, phantom

NAME = "Smithereens^Agatha^Q"
PATIENT_ID = "NHS-943-476-5919"
ACCESSION = "ACC77123"
BIRTH = "19581107"
OTHER_ID = "MRN-0042-7781"
REFERRER = "Quackenbush^Horace"
OPERATOR = "Radiographer^Winifred"
INSTITUTION = "Nether Wallop Breast Unit"


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def identified_mammogram(
    *, patient_id: str = PATIENT_ID, study_uid: str | None = None, laterality: str = "L", burned_in: str = "NO"
) -> Dataset:
    ds = mg_dataset(phantom(rows=128, columns=96), patient_id=patient_id, study_uid=study_uid, laterality=laterality)
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName = NAME
    ds.PatientBirthDate = BIRTH
    ds.PatientSex = "F"
    ds.OtherPatientIDs = OTHER_ID
    other = Dataset()
    other.PatientID, other.TypeOfPatientID = OTHER_ID, "TEXT"
    ds.OtherPatientIDsSequence = [other]
    ds.PatientAddress = "12 Lark Rise, Nether Wallop"
    ds.PatientComments = f"sister of {NAME}"
    ds.AccessionNumber = ACCESSION
    ds.StudyDate, ds.StudyTime = "20260301", "093012"
    ds.SeriesDate, ds.SeriesTime = "20260301", "093012"
    ds.ContentDate, ds.ContentTime = "20260301", "093015"
    ds.AcquisitionDateTime = "20260301093014"
    ds.ReferringPhysicianName = REFERRER
    ds.OperatorsName = OPERATOR
    ds.PerformingPhysicianName = REFERRER
    ds.StudyID = "S-88121"
    ds.StudyDescription = f"Screening {NAME}"
    ds.SeriesDescription = f"L CC for {PATIENT_ID}"
    ds.InstitutionName = INSTITUTION
    ds.InstitutionAddress = "Station Road, Nether Wallop"
    ds.StationName = "NWBU-MG1"
    ds.DeviceSerialNumber = "SN-55219"
    ds.DetectorID = "DET-7781"
    ds.SoftwareVersions = "4.2.1"
    ds.ManufacturerModelName = "Selenia Dimensions"
    ds.SeriesNumber, ds.InstanceNumber = 1, 1
    ds.FrameOfReferenceUID = generate_uid()
    ds.PositionReferenceIndicator = ""
    request = Dataset()
    request.RequestedProcedureID = ACCESSION
    request.AccessionNumber = ACCESSION
    request.StudyInstanceUID = ds.StudyInstanceUID
    ds.RequestAttributesSequence = [request]
    referenced = Dataset()
    referenced.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"
    referenced.ReferencedSOPInstanceUID = generate_uid()
    ds.ReferencedStudySequence = [referenced]
    ds.ImageComments = f"{NAME} {PATIENT_ID} born {BIRTH}"
    # Private elements: a vendor block holding identity, as some modalities write
    block = ds.private_block(0x0029, "ACME SCREENING 1.0", create=True)
    block.add_new(0x10, "LO", PATIENT_ID)
    block.add_new(0x11, "PN", NAME)
    block.add_new(0x12, "DA", BIRTH)
    block.add_new(0x13, "UI", ds.StudyInstanceUID)
    # What the Digital Mammography X-Ray Image IOD (For Presentation) needs beyond the factory's basics
    ds.ImageType = ["ORIGINAL", "PRIMARY", ""]
    ds.PixelIntensityRelationship, ds.PixelIntensityRelationshipSign = "LOG", 1
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = 0, 1, "US"
    ds.PresentationLUTShape = "IDENTITY"
    ds.LossyImageCompression = "00"
    ds.BurnedInAnnotation = burned_in
    ds.WindowCenter, ds.WindowWidth = 2048, 4096
    ds.PatientOrientation = ["A", "R"] if laterality == "L" else ["P", "L"]
    ds.DetectorType = "DIRECT"
    ds.ImagerPixelSpacing = [0.1, 0.1]
    ds.PixelSpacing = [0.1, 0.1]
    ds.PixelSpacingCalibrationType = "GEOMETRY"
    ds.PixelSpacingCalibrationDescription = "magnification corrected"
    ds.PositionerType = "MAMMOGRAPHIC"
    ds.OrganExposed = "BREAST"
    ds.BodyPartExamined = "BREAST"
    ds.AnatomicRegionSequence = Sequence([_code("76752008", "SCT", "Breast")])
    ds.ViewCodeSequence = Sequence([_code("399162004", "SCT", "cranio-caudal")])
    ds.ViewCodeSequence[0].ViewModifierCodeSequence = Sequence()
    ds.AcquisitionContextSequence = Sequence()
    ds.DistanceSourceToDetector, ds.DistanceSourceToPatient = 660, 640
    ds.EstimatedRadiographicMagnificationFactor = 1.0
    ds.BreastImplantPresent = "NO"
    ds.PartialView = "NO"
    ds.QualityControlImage = "NO"
    return ds
