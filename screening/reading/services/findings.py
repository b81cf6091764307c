"""Findings described with the ACR BI-RADS lexicon, and the marks that show them (issue 24).

A read has marks (a box or point on one image: models.Finding) and reported findings (models_findings):
each reported finding names its marks by their place in the read's list of marks, so one finding seen on
CC and MLO is one finding with two marks. Checked here, written with the read by services.reviews.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from screening.errors import PortalError
from screening.models import Finding, Image, ReportedFinding, Review
from screening.reading import lexicon


@dataclass(frozen=True)
class FindingInput:
    """A mark: a box (or a point: width and height 0) in original pixels of one image of the study."""

    image_id: int
    type: str
    x: float
    y: float
    width: float = 0.0
    height: float = 0.0


@dataclass(frozen=True)
class ReportedFindingInput:
    """A finding in lexicon terms; `marks`: indexes into the read's marks (none: laterality is needed)."""

    type: str
    marks: tuple[int, ...] = ()
    descriptors: Mapping[str, str] = field(default_factory=dict)
    laterality: str = ""
    clock: int | None = None
    quadrant: str = ""
    depth: str = ""
    distance_cm: float | None = None


def check_marks(marks: list[FindingInput], images: dict[int, Image]) -> None:
    for mark in marks:
        image = images.get(mark.image_id)
        if image is None:
            raise PortalError(f"image {mark.image_id} is not part of this study", field="findings")
        if mark.type not in Finding.Type.values:
            raise PortalError(f"finding type must be one of {', '.join(Finding.Type.values)}", field="findings")
        if min(mark.x, mark.y, mark.width, mark.height) < 0 or (
            mark.x + mark.width > image.columns or mark.y + mark.height > image.rows
        ):
            raise PortalError("a finding lies outside its image", field="findings")


def check_reported(
    reported: list[ReportedFindingInput], marks: list[FindingInput], images: dict[int, Image]
) -> list[str]:
    """Each reported finding's breast ("R" or "L"), or a PortalError naming the finding and what is wrong:
    a term outside the lexicon, a mark that does not exist or shows two findings, marks on both breasts."""
    used: dict[int, int] = {}
    sides = []
    for number, finding in enumerate(reported, start=1):
        where = f"reported_findings[{number - 1}]"
        try:
            lexicon.check(
                type=finding.type,
                descriptors=finding.descriptors,
                clock=finding.clock,
                quadrant=finding.quadrant,
                depth=finding.depth,
                distance_cm=finding.distance_cm,
            )
        except lexicon.LexiconError as error:
            raise PortalError(f"finding {number}: {error}", field=f"{where}.{error.field}") from None
        for index in finding.marks:
            if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(marks):
                raise PortalError(f"finding {number}: there is no mark {index}", field=f"{where}.marks")
            if index in used:
                raise PortalError(
                    f"finding {number}: mark {index} already shows finding {used[index]}", field=f"{where}.marks"
                )
            used[index] = number
        marked = {images[marks[i].image_id].laterality for i in finding.marks}
        if len(marked) > 1:
            raise PortalError(f"finding {number}: its marks lie on both breasts", field=f"{where}.marks")
        side = next(iter(marked), "") or finding.laterality
        if side not in ("R", "L"):
            raise PortalError(
                f"finding {number}: give its breast (laterality R or L) or mark it on an image of known side",
                field=f"{where}.laterality",
            )
        if finding.laterality and finding.laterality != side:
            raise PortalError(f"finding {number}: its marks are on the other breast", field=f"{where}.laterality")
        sides.append(side)
    return sides


def copy_of(review: Review | None, images: dict[int, Image]) -> tuple[list[FindingInput], list[ReportedFindingInput]]:
    """The marks and reported findings of the read a correction starts from (marks of images no longer in
    the study left out)."""
    if review is None:
        return [], []
    rows = [m for m in review.findings.order_by("id") if m.image_id in images]
    marks = [FindingInput(m.image_id, m.type, m.x, m.y, m.width, m.height) for m in rows]
    reported = [
        ReportedFindingInput(
            type=r.type,
            marks=tuple(i for i, m in enumerate(rows) if m.reported_id == r.pk),
            descriptors=dict(r.descriptors),
            laterality=r.laterality,
            clock=r.clock,
            quadrant=r.quadrant,
            depth=r.depth,
            distance_cm=r.distance_cm,
        )
        for r in review.reported_findings.all()
    ]
    return marks, reported


def record(
    *,
    review: Review,
    marks: list[FindingInput],
    reported: list[ReportedFindingInput],
    sides: list[str],
    images: dict[int, Image],
) -> None:
    """Write a read's reported findings and marks (checked before: check_marks, check_reported)."""
    rows = [
        ReportedFinding.objects.create(
            review=review,
            number=number,
            laterality=side,
            type=finding.type,
            descriptors=dict(finding.descriptors),
            clock=finding.clock,
            quadrant=finding.quadrant,
            depth=finding.depth,
            distance_cm=finding.distance_cm,
        )
        for number, (finding, side) in enumerate(zip(reported, sides, strict=True), start=1)
    ]
    shows = {index: row for row, finding in zip(rows, reported, strict=True) for index in finding.marks}
    Finding.objects.bulk_create(
        Finding(
            review=review,
            image_id=mark.image_id,
            laterality=images[mark.image_id].laterality,
            # a mark of a reported finding takes its type (the lexicon's "associated features" are "other")
            type=lexicon.MARK_TYPE[shows[i].type] if i in shows else mark.type,
            reported=shows.get(i),
            x=mark.x,
            y=mark.y,
            width=mark.width,
            height=mark.height,
        )
        for i, mark in enumerate(marks)
    )
