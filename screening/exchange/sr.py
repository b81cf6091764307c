"""DICOM Structured Reports of the AI result and of a radiologist's decision (highdicom).

Both are Comprehensive 3D SR documents with a TID 1500 Measurement Report as their
content: the template of the IHE AI Results profile, which highdicom writes and
validates, and which PACS and viewers that show SR measurements can read. (The
Mammography CAD SR template, TID 4000, has no highdicom builder.)

They are pure functions of the database rows and stored files: the UIDs derive
from the study, model version and review ids, so building an SR twice gives the
same SOP Instance UID, and a correction can name the SR of the decision it corrects
without looking it up. Patient and study attributes are copied from the header of
the source DICOM instances. Images uploaded as PNG, JPEG or TIFF have no source
instance to point at: they are left out, and a study with no DICOM image has no SR.

Codes: DICOM (DCM), SNOMED CT (SCT) and UCUM only, with the code meanings of their context
groups (BI-RADS: CID 6026), every one within the 64 characters of a Code Meaning. The AI
flag (exam at or above the operating point) is the Mammography CAD SR's Rendering Intent
(presentation required / optional), a region's heatmap peak its Certainty of Finding (%),
and the model's top regions are imaging findings. (They were private 99SCREEN codes, which
dciodvfy warns of even when declared in the Coding Scheme Identification Sequence: it
knows a fixed list of private designators.) A reported finding carries its ACR BI-RADS lexicon words
as TID 4206 says them (breast_codes: finding type, shape, margins, lesion density, calcification type
and distribution, clockface or region, quadrant, depth, distance from the nipple), on each of its marks,
in standard codes only (the global and developing asymmetry: see breast_codes).

Each kind of SR has its own series (the AI results, the decisions). An AI-result SR covers
the study's images as they were when it was built: its UID derives from them too, so an
exam that changes (more images arrive) gets a new SR instance that names the one it
supersedes. Written in explicit VR little endian, which every peer accepts.

The measurement groups with an image region come first (the AI's top regions, view by view, the most
suspicious view first; the reader's marks), then the others: a viewer opens a report at its first group
(OHIF's SR viewport shows the image under it, README "OHIF").
"""

from __future__ import annotations

import hashlib

import numpy as np
from django.core.files.storage import default_storage
from highdicom import sr as hsr
from PIL import Image as PILImage
from pydicom import Dataset, dcmread
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import Comprehensive3DSRStorage, ExplicitVRLittleEndian

from screening.exchange import breast_codes
from screening.models import DicomExport, Finding, Image, ModelVersion, Prediction, ReportedFinding, Review, Study
from screening.reading import lexicon
from screening.reading.assessment import SIDE_NAMES, breasts_of

MANUFACTURER = "Breast screening portal"
AI, DECISION = "ai", "decision"  # the kinds of SR (DicomExport.Kind), one series each
SERIES_NUMBERS = {AI: 9901, DECISION: 9902}
SERIES_DESCRIPTIONS = {AI: "AI result", DECISION: "Radiologist decision"}
PROCEDURE = Code("24623002", "SCT", "Screening mammography")

NO_UNITS = Code("1", "UCUM", "no units")
PROBABILITY = codes.DCM.ProbabilityOfCancer  # 111047
OPERATING_POINT = codes.DCM.CADOperatingPoint  # 111071
PERCENT = Code("%", "UCUM", "percent")
# The flag as a CAD SR says it: a finding at or above the operating point is to be shown.
AI_FLAG = codes.DCM.RenderingIntent  # 111056
AI_FLAG_VALUES = {
    True: codes.DCM.PresentationRequiredRenderingDeviceIsExpectedToPresent,  # 111150
    False: codes.DCM.PresentationOptionalRenderingDeviceMayPresent,  # 111151
}
HEAT_PEAK = codes.DCM.CertaintyOfFinding  # 111012, in percent: the heatmap peak x 100
AI_REGION = Code("365853002", "SCT", "Imaging finding")

NORMALITY = codes.DCM.Normality  # 121402
DECISION_CODES = {"normal": codes.SCT.Normal, "abnormal": codes.SCT.Abnormal}
ASSESSMENT = codes.DCM.AssessmentCategory  # 111005, values from CID 6026 (BI-RADS)
# CID 6026's code meanings: SNOMED's fully specified names run past the 64 characters of a Code Meaning
# (LO), which a PACS then refuses ("Code meaning can have maximally 64 characters").
BIRADS_CODES = {
    0: Code("397138000", "SCT", "Incomplete - Need additional imaging evaluation"),
    1: Code("397140005", "SCT", "Negative"),
    2: Code("397141009", "SCT", "Benign"),
    3: Code("397143007", "SCT", "Probably Benign"),
    4: Code("397144001", "SCT", "Suspicious"),
    5: Code("397145000", "SCT", "Highly suggestive of malignancy"),
    6: codes.DCM.KnownBiopsyProvenMalignancy,  # 111125
}
COMPOSITION = codes.DCM.BreastComposition  # 111006, values from CID 6000 (ACR BI-RADS density)
DENSITY_CODES = {
    "A": Code("129716005", "SCT", "Almost entirely fat"),
    "B": Code("129717001", "SCT", "Scattered fibroglandular densities"),
    "C": Code("129718006", "SCT", "Heterogeneously dense"),
    "D": Code("129719003", "SCT", "Extremely dense"),
}
FINDING_CODES = {
    Finding.Type.MASS: Code("4147007", "SCT", "Mass"),
    Finding.Type.CALCIFICATION: Code("129748009", "SCT", "Radiographic calcification finding"),
    Finding.Type.DISTORTION: Code("129792006", "SCT", "Architectural distortion of breast"),
    Finding.Type.ASYMMETRY: Code("129790003", "SCT", "Asymmetric breast tissue"),
    Finding.Type.OTHER: Code("365853002", "SCT", "Imaging finding"),
}
BREAST = Code("76752008", "SCT", "Breast")
LATERALITY_CODES = {"L": codes.SCT.Left, "R": codes.SCT.Right}


# Patient and study attributes the SR copies from the source header: type 2 there, so present even when empty.
TYPE_2_COPIED = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyID",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "AccessionNumber",
)


class NoSource(Exception):
    """The study has no DICOM image to report on (only PNG, JPEG or TIFF uploads)."""


# --- UIDs: derived from ids, so the same rows give the same UIDs ------------------------------------------


def _uid(*parts: object) -> str:
    """A 2.25 UID (a 128-bit number) hashed from the parts: the same parts, the same UID."""
    digest = hashlib.sha256("\x1f".join(["screening-portal-sr", *map(str, parts)]).encode()).hexdigest()
    return f"2.25.{int(digest[:32], 16)}"


def series_uid(study: Study, kind: str) -> str:
    """The series that holds the portal's SRs of one kind (AI or DECISION) of a study. (The decisions keep
    the UID of the single series that once held both kinds.)"""
    if kind == DECISION:
        return _uid(study.study_uid, study.pk, "series")
    return _uid(study.study_uid, study.pk, "series", kind)


def ai_result_uid(study: Study, version: ModelVersion, image_ids: list[int] | None = None) -> str:
    """One AI-result SR per study, model version and set of DICOM images (default: the study's now).
    Images predicted one by one before it is sent replace the unsent SR (screening.exchange.services.export); an image
    that arrives after it was sent makes a new instance, which supersedes it."""
    if image_ids is None:
        image_ids = list(Image.objects.filter(study=study, file_format=Image.Format.DICOM).values_list("pk", flat=True))
    return _uid(study.study_uid, study.pk, "ai", version.pk, *sorted(image_ids))


def decision_uid(review: Review) -> str:
    return _uid(review.study.study_uid, review.study_id, "decision", review.pk)


# --- sources ----------------------------------------------------------------------------------------------


def source_images(study: Study) -> list[tuple[Image, Dataset]]:
    """The study's DICOM images with their headers (no pixels), in a stable order."""
    pairs = []
    for image in Image.objects.filter(study=study, file_format=Image.Format.DICOM).order_by("pk"):
        with default_storage.open(image.original.name, "rb") as handle:
            header = dcmread(handle, stop_before_pixels=True)
        for keyword in TYPE_2_COPIED:  # copied into the SR, where they must be present (empty if unknown)
            if keyword not in header:
                setattr(header, keyword, "")
        pairs.append((image, header))
    if not pairs:
        raise NoSource(f"study {study.pk} has no DICOM image: there is no source instance to report on")
    return pairs


def _source_for_group(header: Dataset) -> hsr.SourceImageForMeasurementGroup:
    return hsr.SourceImageForMeasurementGroup(str(header.SOPClassUID), str(header.SOPInstanceUID))


def _region(graphic_type: str, points: list[tuple[float, float]], header: Dataset) -> hsr.ImageRegion:
    return hsr.ImageRegion(
        graphic_type=graphic_type,
        graphic_data=np.array(points, dtype=np.float64),
        source_image=hsr.SourceImageForRegion(str(header.SOPClassUID), str(header.SOPInstanceUID)),
    )


def _sites(laterality: str) -> list[hsr.FindingSite]:
    side = LATERALITY_CODES.get(laterality)
    return [hsr.FindingSite(BREAST, laterality=side)] if side else []


def _regions_of(prediction: Prediction, image: Image) -> list[tuple[str, list[tuple[float, float]], float]]:
    """The model's top regions as closed boxes (Prediction.regions, ml.regions), most suspicious first; a
    prediction made before regions were stored gives its heatmap peak as a point."""
    out = []
    for region in (prediction.regions or [])[:3]:
        x0, y0 = float(region["x"]), float(region["y"])
        x1 = min(x0 + float(region["width"]), image.columns - 1.0)
        y1 = min(y0 + float(region["height"]), image.rows - 1.0)
        box = [(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)]
        out.append(("POLYLINE", box, float(region["probability"])))
    if not out:
        peak = heatmap_peak(prediction, image)
        if peak is not None:
            out.append(("POINT", [(peak[0], peak[1])], peak[2]))
    return out


def heatmap_peak(prediction: Prediction, image: Image) -> tuple[float, float, float] | None:
    """(column, row, value) of the heatmap's maximum, in original image pixels (centre of the heatmap cell).

    The stored heatmap PNG is aligned with the original (same aspect, scaled down), so
    a heatmap cell maps to original pixels by the ratio of the sizes.
    """
    if not prediction.heatmap:
        return None
    with default_storage.open(prediction.heatmap.name, "rb") as handle:
        heat = np.asarray(PILImage.open(handle).convert("L"), dtype=np.float64)
    row, column = np.unravel_index(int(np.argmax(heat)), heat.shape)
    x = (column + 0.5) * image.columns / heat.shape[1]
    y = (row + 0.5) * image.rows / heat.shape[0]
    return float(x), float(y), float(heat[row, column] / 255.0)


def _document(
    *,
    study: Study,
    evidence: list[Dataset],
    report: hsr.MeasurementReport,
    kind: str,
    sop_instance_uid: str,
    instance_number: int,
    previous: list[Dataset] | None = None,
) -> hsr.Comprehensive3DSR:
    document = hsr.Comprehensive3DSR(
        evidence=evidence,
        content=report,
        series_instance_uid=series_uid(study, kind),
        series_number=SERIES_NUMBERS[kind],
        sop_instance_uid=sop_instance_uid,
        instance_number=instance_number,
        manufacturer=MANUFACTURER,
        is_complete=True,
        is_final=True,
        previous_versions=previous or None,
        transfer_syntax_uid=ExplicitVRLittleEndian,
    )
    document.SeriesDescription = SERIES_DESCRIPTIONS[kind]
    return document


def _image_regions_first(groups: list) -> list:
    """The measurement groups with an image region (the AI's top regions, most suspicious view first; the
    reader's marks) first, in their order, then those without one (exam, breasts, images' probabilities, the
    decision, unmarked findings).

    The order of a TID 1500 report's groups means nothing to the standard, but viewers open a report at its
    first group: OHIF's SR viewport shows the image under the first measurement with the report's regions on
    it, and nothing when that measurement lies on no image."""
    return sorted(groups, key=lambda group: not isinstance(group, hsr.PlanarROIMeasurementsAndQualitativeEvaluations))


def _reference(study: Study, kind: str, sop_instance_uid: str) -> Dataset:
    """A reference to an earlier SR of the portal (for the Predecessor Documents Sequence)."""
    reference = Dataset()
    reference.StudyInstanceUID = study.study_uid
    reference.SeriesInstanceUID = series_uid(study, kind)
    reference.SOPClassUID = Comprehensive3DSRStorage
    reference.SOPInstanceUID = sop_instance_uid
    return reference


# --- the AI result --------------------------------------------------------------------------------------


def ai_result_sr(study: Study) -> hsr.Comprehensive3DSR:
    """The AI result of a scored study: model version and operating point, image, breast and exam
    probabilities, each image's most suspicious point (the heatmap peak) and the source instances.

    Raises NoSource when the study has no DICOM image, ValueError when it has no exam score yet.
    """
    version = study.exam_model
    if version is None or study.exam_score is None:
        raise ValueError(f"study {study.pk} has no exam score yet")
    sources = source_images(study)
    algorithm = hsr.AlgorithmIdentification(
        name="Breast screening portal classifier",
        version=version.name,
        parameters=[f"operating point {version.threshold:g}"],
        manufacturer=MANUFACTURER,
    )
    predictions = {
        p.image_id: p
        for p in Prediction.objects.filter(image__study=study, model_version=version, status=Prediction.Status.DONE)
    }

    def probability(value: float, sites=()) -> hsr.Measurement:
        return hsr.Measurement(PROBABILITY, value, NO_UNITS, algorithm_id=algorithm, finding_sites=list(sites) or None)

    groups: list = [
        hsr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=hsr.TrackingIdentifier(_uid(study.study_uid, version.pk, "exam"), "Exam"),
            algorithm_id=algorithm,
            source_images=[_source_for_group(header) for _, header in sources],
            measurements=[
                probability(study.exam_score),
                hsr.Measurement(OPERATING_POINT, version.threshold, NO_UNITS, algorithm_id=algorithm),
            ],
            qualitative_evaluations=[hsr.QualitativeEvaluation(AI_FLAG, AI_FLAG_VALUES[bool(study.exam_flag)])],
        )
    ]
    for laterality, score in (("L", study.score_left), ("R", study.score_right)):
        breast = [header for image, header in sources if image.laterality == laterality]
        if score is None or not breast:
            continue
        groups.append(
            hsr.MeasurementsAndQualitativeEvaluations(
                tracking_identifier=hsr.TrackingIdentifier(
                    _uid(study.study_uid, version.pk, "breast", laterality), f"{laterality} breast"
                ),
                algorithm_id=algorithm,
                finding_sites=_sites(laterality),
                source_images=[_source_for_group(header) for header in breast],
                measurements=[probability(score, _sites(laterality))],
            )
        )
    # the most suspicious view first (its image probability), so that its top region opens the report
    scored_sources = [(image, header) for image, header in sources if image.pk in predictions]
    for image, header in sorted(scored_sources, key=lambda pair: -(predictions[pair[0].pk].probability or 0.0)):
        prediction = predictions[image.pk]  # an image that failed is not there: the exam was scored without it
        label = f"{image.laterality} {image.view} image {header.SOPInstanceUID}"
        groups.append(
            hsr.MeasurementsAndQualitativeEvaluations(
                tracking_identifier=hsr.TrackingIdentifier(_uid(header.SOPInstanceUID, version.pk, "image"), label),
                algorithm_id=algorithm,
                finding_sites=_sites(image.laterality),
                source_images=[_source_for_group(header)],
                measurements=[probability(prediction.probability)],
            )
        )
        for rank, (graphic, points, value) in enumerate(_regions_of(prediction, image), start=1):
            groups.append(
                hsr.PlanarROIMeasurementsAndQualitativeEvaluations(
                    tracking_identifier=hsr.TrackingIdentifier(
                        _uid(header.SOPInstanceUID, version.pk, "region" if rank == 1 else f"region{rank}"),
                        f"Suspicious region {rank}, {label}",
                    ),
                    referenced_region=_region(graphic, points, header),
                    finding_type=AI_REGION,
                    algorithm_id=algorithm,
                    finding_sites=_sites(image.laterality),
                    measurements=[hsr.Measurement(HEAT_PEAK, round(value * 100, 4), PERCENT, algorithm_id=algorithm)],
                )
            )
    context = hsr.ObservationContext(
        observer_device_context=hsr.ObserverContext(
            observer_type=codes.DCM.Device,
            observer_identifying_attributes=hsr.DeviceObserverIdentifyingAttributes(
                uid=_uid("model", version.pk, version.name),
                name=version.name[:64],
                manufacturer_name=MANUFACTURER,
                model_name=version.name[:64],
            ),
        )
    )
    report = hsr.MeasurementReport(
        observation_context=context, procedure_reported=PROCEDURE, imaging_measurements=_image_regions_first(groups)
    )
    uid = ai_result_uid(study, version, [image.pk for image, _ in sources])
    earlier = _sent_ai_results(study, uid)
    return _document(
        study=study,
        evidence=[header for _, header in sources],
        report=report,
        kind=AI,
        sop_instance_uid=uid,
        instance_number=1 + len(earlier),
        previous=[_reference(study, AI, earlier[-1])] if earlier else None,
    )


def _sent_ai_results(study: Study, uid: str) -> list[str]:
    """The UIDs of the study's AI-result SRs that a destination received, other than `uid`, oldest first:
    the last is the one this SR supersedes."""
    rows = (
        DicomExport.objects.filter(study=study, kind=DicomExport.Kind.AI, status=DicomExport.Status.SENT)
        .exclude(sop_instance_uid=uid)
        .order_by("pk")
        .values_list("sop_instance_uid", flat=True)
    )
    return list(dict.fromkeys(rows))


# --- the decision ---------------------------------------------------------------------------------------


def _reader_name(user) -> str:
    if user.last_name or user.first_name:
        return f"{user.last_name}^{user.first_name}"[:64]
    return f"{user.get_username()[:63]}^"  # one component (the family name), marked as such


def _predecessor(review: Review) -> Dataset | None:
    """A reference to the SR of the decision this one corrects (version - 1), by its derived UIDs."""
    previous = Review.objects.filter(study_id=review.study_id, version=review.version - 1).first()
    if previous is None:
        return None
    return _reference(review.study, DECISION, decision_uid(previous))


def _breast_groups(review: Review, sources) -> list:
    """Each breast's call (screening.assessment: an older read's mapping) as its own group: the breast as
    finding site, its recall (normality) and BI-RADS category, over that breast's images."""
    groups = []
    for side, call in breasts_of(review).items():
        images = [_source_for_group(header) for image, header in sources if image.laterality == side]
        if not images:
            continue
        groups.append(
            hsr.MeasurementsAndQualitativeEvaluations(
                tracking_identifier=hsr.TrackingIdentifier(
                    _uid(review.study.study_uid, "breast", review.pk, side), f"{SIDE_NAMES[side].capitalize()} breast"
                ),
                source_images=images,
                finding_sites=_sites(side),
                qualitative_evaluations=[
                    hsr.QualitativeEvaluation(NORMALITY, DECISION_CODES[call.decision]),
                    hsr.QualitativeEvaluation(ASSESSMENT, BIRADS_CODES[call.birads]),
                ],
            )
        )
    return groups


def decision_sr(review: Review) -> hsr.Comprehensive3DSR:
    """A radiologist's decision: normal or abnormal, BI-RADS, density, each breast's recall and BI-RADS, the
    marked findings (on DICOM images; the marks of one reported finding share its tracking identifier) and
    the reader; a correction (version > 1) names the SR of the decision it corrects.

    Raises NoSource when the study has no DICOM image.
    """
    study = review.study
    sources = source_images(study)
    headers = {image.pk: header for image, header in sources}
    evaluations = [
        hsr.QualitativeEvaluation(NORMALITY, DECISION_CODES[review.decision]),
        hsr.QualitativeEvaluation(ASSESSMENT, BIRADS_CODES[review.birads]),
    ]
    if review.density:
        evaluations.append(hsr.QualitativeEvaluation(COMPOSITION, DENSITY_CODES[review.density]))
    groups: list = [
        hsr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=hsr.TrackingIdentifier(_uid(study.study_uid, "decision", review.pk), "Decision"),
            source_images=[_source_for_group(header) for _, header in sources],
            qualitative_evaluations=evaluations,
        )
    ]
    groups += _breast_groups(review, sources)
    groups += _finding_groups(review, sources, headers)
    reader = review.radiologist
    context = hsr.ObservationContext(
        observer_person_context=hsr.ObserverContext(
            observer_type=codes.DCM.Person,
            observer_identifying_attributes=hsr.PersonObserverIdentifyingAttributes(
                name=_reader_name(reader), login_name=reader.get_username()[:64]
            ),
        )
    )
    report = hsr.MeasurementReport(
        observation_context=context, procedure_reported=PROCEDURE, imaging_measurements=_image_regions_first(groups)
    )
    predecessor = _predecessor(review)
    document = _document(
        study=study,
        evidence=[header for _, header in sources],
        report=report,
        kind=DECISION,
        sop_instance_uid=decision_uid(review),
        instance_number=review.version,
        previous=[predecessor] if predecessor is not None else None,
    )
    if any(breast_codes.uses_private_scheme(f) for f in review.reported_findings.all()):
        document.CodingSchemeIdentificationSequence = [_private_scheme()]
    return document


def _private_scheme() -> Dataset:
    """The declaration of the portal's scheme for the lexicon terms no standard code says (breast_codes)."""
    item = Dataset()
    item.CodingSchemeDesignator = breast_codes.PRIVATE_SCHEME
    item.CodingSchemeName = breast_codes.PRIVATE_SCHEME_NAME
    item.CodingSchemeResponsibleOrganization = MANUFACTURER
    return item


def _code(term: breast_codes.Term) -> Code:
    return Code(*term)


def _lexicon_content(reported: ReportedFinding) -> dict:
    """A reported finding's lexicon words as TID 4206 says them (breast_codes): its type (the finding type),
    shape, margin, density, calcification type and distribution, clockface or region, quadrant, depth (coded
    qualitative evaluations) and the distance from the nipple (a measurement, in cm)."""
    measurements = []
    if reported.distance_cm is not None:
        measurements.append(
            hsr.Measurement(
                _code(breast_codes.DISTANCE_FROM_NIPPLE), float(reported.distance_cm), _code(breast_codes.CENTIMETRE)
            )
        )
    return {
        "finding_type": _code(breast_codes.finding_code(reported)),
        "qualitative_evaluations": [
            hsr.QualitativeEvaluation(_code(name), _code(value)) for name, value in breast_codes.properties(reported)
        ]
        or None,
        "measurements": measurements or None,
    }


def _finding_groups(review: Review, sources, headers: dict[int, Dataset]) -> list:
    """Each mark on a DICOM image as a planar ROI group; the marks of one reported finding (CC and MLO) share
    its tracking identifier and carry its lexicon words. A reported finding with no mark on a DICOM image
    is a group of its own over its breast's images."""
    study = review.study
    groups: list = []
    drawn: set[int] = set()
    marks = Finding.objects.filter(review=review).select_related("reported").order_by("pk")
    for number, finding in enumerate(marks, start=1):
        header = headers.get(finding.image_id)
        if header is None:  # marked on a non-DICOM image: nothing to point at
            continue
        if finding.width > 0 and finding.height > 0:
            x0, y0, x1, y1 = finding.x, finding.y, finding.x + finding.width, finding.y + finding.height
            region = _region("POLYLINE", [(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)], header)
        else:
            region = _region("POINT", [(finding.x, finding.y)], header)
        reported = finding.reported
        if reported is None:  # a mark from before the lexicon
            tracking = hsr.TrackingIdentifier(
                _uid(study.study_uid, "finding", finding.pk), f"Mark {number}: {finding.type}"
            )
            content = {"finding_type": FINDING_CODES[finding.type]}
        else:
            drawn.add(reported.pk)
            tracking = _reported_tracking(study, reported)
            content = _lexicon_content(reported)
        groups.append(
            hsr.PlanarROIMeasurementsAndQualitativeEvaluations(
                tracking_identifier=tracking,
                referenced_region=region,
                finding_sites=_sites(finding.laterality),
                **content,
            )
        )
    for reported in review.reported_findings.all().order_by("number"):
        breast = [_source_for_group(h) for image, h in sources if image.laterality == reported.laterality]
        if reported.pk in drawn or not breast:
            continue
        groups.append(
            hsr.MeasurementsAndQualitativeEvaluations(
                tracking_identifier=_reported_tracking(study, reported),
                source_images=breast,
                finding_sites=_sites(reported.laterality),
                **_lexicon_content(reported),
            )
        )
    return groups


def _reported_tracking(study: Study, reported: ReportedFinding) -> hsr.TrackingIdentifier:
    kind = reported.descriptors.get("kind") if reported.type == "asymmetry" else None
    words = f"{kind} asymmetry" if kind in ("global", "developing", "focal") else lexicon.TYPES[reported.type].lower()
    label = f"Finding {reported.number}: {words}"
    return hsr.TrackingIdentifier(_uid(study.study_uid, "reported", reported.pk), label[:64])
