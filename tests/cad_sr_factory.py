"""Synthetic vendor Mammography CAD SRs (TID 4000) for the tests: highdicom's content items (it has no
Mammography CAD SR document class, so its Comprehensive SR is made and given the CAD SR's SOP class, which
shares its modules), referencing the test images by their SOP instance UIDs."""

from __future__ import annotations

from dataclasses import dataclass

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.coding import Code
from pydicom.uid import generate_uid

MAMMOGRAPHY_CAD_SR = "1.2.840.10008.5.1.4.1.1.88.50"
MASS = Code("4147007", "SCT", "Mass")
CALCIFICATION_CLUSTER = Code("129748009", "SCT", "Cluster of calcifications")


@dataclass(frozen=True)
class CadFinding:
    image: Dataset  # the MG dataset the mark is drawn on
    kind: Code
    points: tuple[tuple[float, float], ...]  # one point: POINT (a centre); more: a closed POLYLINE outline
    certainty: float | None = None  # percent
    presented: bool = True


def _finding(f: CadFinding) -> hd.sr.CodeContentItem:
    item = hd.sr.CodeContentItem(
        name=Code("111059", "DCM", "Single Image Finding"),
        value=f.kind,
        relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
    )
    point = len(f.points) == 1
    scoord = hd.sr.ScoordContentItem(
        name=Code("111010", "DCM", "Center") if point else Code("111041", "DCM", "Outline"),
        graphic_type=hd.sr.GraphicTypeValues.POINT if point else hd.sr.GraphicTypeValues.POLYLINE,
        graphic_data=np.array(f.points if point else [*f.points, f.points[0]], dtype=float),
        relationship_type=hd.sr.RelationshipTypeValues.HAS_PROPERTIES,
    )
    scoord.ContentSequence = [
        hd.sr.ImageContentItem(
            name=Code("111040", "DCM", "Original Source"),
            referenced_sop_class_uid=f.image.SOPClassUID,
            referenced_sop_instance_uid=f.image.SOPInstanceUID,
            relationship_type=hd.sr.RelationshipTypeValues.SELECTED_FROM,
        )
    ]
    children = [
        hd.sr.CodeContentItem(
            name=Code("111056", "DCM", "Rendering Intent"),
            value=Code("111150", "DCM", "Presentation Required")
            if f.presented
            else Code("111152", "DCM", "Not for Presentation"),
            relationship_type=hd.sr.RelationshipTypeValues.HAS_PROPERTIES,
        ),
        scoord,
    ]
    if f.certainty is not None:
        children.append(
            hd.sr.NumContentItem(
                name=Code("111012", "DCM", "Certainty of Finding"),
                value=f.certainty,
                unit=Code("%", "UCUM", "Percent"),
                relationship_type=hd.sr.RelationshipTypeValues.HAS_PROPERTIES,
            )
        )
    item.ContentSequence = children
    return item


def cad_sr_dataset(images: list[Dataset], findings: list[CadFinding], *, sop_uid: str | None = None) -> Dataset:
    """A Mammography CAD SR of the images' study: its summary, and the findings under one individual impression."""
    impression = hd.sr.ContainerContentItem(
        name=Code("111034", "DCM", "Individual Impression/Recommendation"),
        relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
    )
    impression.ContentSequence = [_finding(f) for f in findings]
    summary = hd.sr.CodeContentItem(
        name=Code("111017", "DCM", "CAD Processing and Findings Summary"),
        value=Code("111242", "DCM", "All algorithms succeeded; with findings"),
        relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
    )
    root = hd.sr.ContainerContentItem(name=Code("111036", "DCM", "Mammography CAD Report"), template_id="4000")
    root.ContentSequence = [summary, impression]
    evidence = []
    for image in images:  # highdicom reads the study's identifiers from its evidence: the header alone
        header = Dataset()
        for element in image:
            if element.keyword != "PixelData":
                header.add(element)
        for keyword, value in (("StudyID", "1"), ("StudyTime", "090000"), ("ReferringPhysicianName", "")):
            header.setdefault(keyword, value)
        evidence.append(header)
    sr = hd.sr.ComprehensiveSR(
        evidence=evidence,
        content=root,
        series_instance_uid=generate_uid(),
        series_number=90,
        sop_instance_uid=sop_uid or generate_uid(),
        instance_number=1,
        manufacturer="Synthetic CAD Vendor",
        is_complete=True,
    )
    sr.SOPClassUID = MAMMOGRAPHY_CAD_SR
    sr.file_meta.MediaStorageSOPClassUID = MAMMOGRAPHY_CAD_SR
    return sr
