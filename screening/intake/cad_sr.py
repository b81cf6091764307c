"""A vendor's Mammography CAD SR (TID 4000), read for its single-image findings: where each one is drawn on
which image (SCOORD points, polylines, circles, ellipses selected from a referenced image), what was found
(the finding's code meaning) and, when the vendor gives them, its certainty and probability of cancer.

Plain pydicom, no Django. Vendors nest the findings differently (under individual impressions, composite
features or directly), so the tree is walked for every Single Image Finding wherever it stands; anything
that cannot be read raises CadSrError with a message that names the structure, never a value from it.
"""

from __future__ import annotations

from dataclasses import dataclass

MAMMOGRAPHY_CAD_SR = "1.2.840.10008.5.1.4.1.1.88.50"
SINGLE_IMAGE_FINDING = "111059"  # (111059, DCM) Single Image Finding
CERTAINTY = "111012"  # (111012, DCM) Certainty of Finding, 0-100 %
PROBABILITY = "111047"  # (111047, DCM) Probability of cancer, 0-100 %
RENDERING_INTENT = "111056"  # (111056, DCM) Rendering Intent
NOT_FOR_PRESENTATION = "111152"  # (111152, DCM) Not for Presentation: the vendor's own bookkeeping, never drawn
GRAPHIC_TYPES = ("POINT", "MULTIPOINT", "POLYLINE", "CIRCLE", "ELLIPSE")
MAX_MARKS = 500


class CadSrError(ValueError):
    """The SR's findings cannot be read (the SR itself is still kept)."""


@dataclass(frozen=True)
class CadMarkData:
    image_sop_uid: str  # the referenced image's SOPInstanceUID
    finding: str  # the finding type's code meaning, e.g. "Mass", "Calcification Cluster"
    graphic_type: str
    x: float  # the mark's box in the image's pixels (column, row); a point has no width or height
    y: float
    width: float
    height: float
    certainty: float | None = None  # 0..1
    probability: float | None = None  # 0..1


def _code_value(item, keyword: str) -> str:
    sequence = item.get(keyword) or []
    return str(sequence[0].get("CodeValue", "")).strip() if len(sequence) else ""


def _code_meaning(item, keyword: str) -> str:
    sequence = item.get(keyword) or []
    return str(sequence[0].get("CodeMeaning", "")).strip()[:64] if len(sequence) else ""


def _children(item) -> list:
    return list(item.get("ContentSequence") or [])


def _fraction(item) -> float:
    """A NUM item's value as a fraction: percent (the templates' unit) over 1, a plain 0..1 as it is."""
    measured = item.get("MeasuredValueSequence") or []
    if not len(measured):
        raise CadSrError("a certainty or probability has no measured value")
    value = float(measured[0].NumericValue)
    unit = _code_value(measured[0], "MeasurementUnitsCodeSequence")
    fraction = value / 100 if unit == "%" or value > 1 else value
    if not 0 <= fraction <= 1:
        raise CadSrError("a certainty or probability lies outside 0-100 %")
    return fraction


def _box(graphic_type: str, data: list[float]) -> tuple[float, float, float, float]:
    if len(data) < 2 or len(data) % 2:
        raise CadSrError(f"a {graphic_type} SCOORD has an odd or empty GraphicData")
    xs, ys = data[0::2], data[1::2]
    if graphic_type == "POINT":
        return xs[0], ys[0], 0.0, 0.0
    if graphic_type == "CIRCLE":  # the centre, then a point on the circle
        if len(xs) != 2:
            raise CadSrError("a CIRCLE SCOORD needs two points")
        radius = ((xs[1] - xs[0]) ** 2 + (ys[1] - ys[0]) ** 2) ** 0.5
        return xs[0] - radius, ys[0] - radius, 2 * radius, 2 * radius
    return min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)


def _scoord_marks(item) -> list[tuple[str, str, tuple]]:
    """(image SOPInstanceUID, graphic type, box) of a SCOORD item and the image it is selected from."""
    graphic_type = str(item.get("GraphicType", "")).strip().upper()
    if graphic_type not in GRAPHIC_TYPES:
        raise CadSrError("a SCOORD has a graphic type other than POINT, MULTIPOINT, POLYLINE, CIRCLE or ELLIPSE")
    data = [float(v) for v in (item.get("GraphicData") or [])]
    if any(v != v or abs(v) > 1e6 for v in data):  # NaN or absurd
        raise CadSrError("a SCOORD's GraphicData is not a position in an image")
    images = [c for c in _children(item) if str(c.get("ValueType", "")).upper() == "IMAGE"]
    if not images:
        raise CadSrError("a SCOORD does not say which image it is drawn on (no IMAGE item selected from)")
    marks = []
    for image in images:
        references = image.get("ReferencedSOPSequence") or []
        uid = str(references[0].get("ReferencedSOPInstanceUID", "")).strip() if len(references) else ""
        if not uid:
            raise CadSrError("a SCOORD's IMAGE item has no referenced SOP instance")
        marks.append((uid, graphic_type, _box(graphic_type, data)))
    return marks


def _finding_marks(finding) -> list[CadMarkData]:
    kind = _code_meaning(finding, "ConceptCodeSequence") or "Finding"
    certainty = probability = None
    shown = True
    places: list[tuple[str, str, tuple]] = []
    stack = _children(finding)
    while stack:
        item = stack.pop(0)
        value_type = str(item.get("ValueType", "")).upper()
        name = _code_value(item, "ConceptNameCodeSequence")
        if name == SINGLE_IMAGE_FINDING:
            continue  # a finding nested in this one is read on its own
        if value_type == "NUM" and name == CERTAINTY:
            certainty = _fraction(item)
        elif value_type == "NUM" and name == PROBABILITY:
            probability = _fraction(item)
        elif value_type == "CODE" and name == RENDERING_INTENT:
            shown = _code_value(item, "ConceptCodeSequence") != NOT_FOR_PRESENTATION
        elif value_type == "SCOORD":
            places.extend(_scoord_marks(item))
            continue  # its IMAGE children are read with it
        stack.extend(_children(item))
    if not shown:
        return []
    return [
        CadMarkData(uid, kind, graphic, *box, certainty=certainty, probability=probability)
        for uid, graphic, box in places
    ]


def _findings(item) -> list:
    found = []
    for child in _children(item):
        if str(child.get("ValueType", "")).upper() == "CODE" and _code_value(child, "ConceptNameCodeSequence") == (
            SINGLE_IMAGE_FINDING
        ):
            found.append(child)
        found.extend(_findings(child))
    return found


def read_cad_marks(ds) -> list[CadMarkData]:
    """Every mark of the SR's single-image findings that is meant to be shown; raises CadSrError."""
    if str(ds.get("SOPClassUID", "")) != MAMMOGRAPHY_CAD_SR:
        raise CadSrError("not a Mammography CAD SR")
    if str(ds.get("ValueType", "")).upper() != "CONTAINER" or "ContentSequence" not in ds:
        raise CadSrError("the SR has no content tree (a root CONTAINER with a ContentSequence)")
    try:
        marks = [mark for finding in _findings(ds) for mark in _finding_marks(finding)]
    except CadSrError:
        raise
    except Exception as exc:  # pydicom's ValueError, TypeError, AttributeError... on a malformed item
        raise CadSrError("a content item of the SR is malformed and cannot be read") from exc
    if len(marks) > MAX_MARKS:
        raise CadSrError(f"the SR holds more than {MAX_MARKS} marks")
    return marks
