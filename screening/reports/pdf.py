"""The exam's report as a PDF made on the server (reportlab): the same content as the report page, the
current images with the reader's marks, and the research-use line; A4, black on white.

The page (templates/screening/report.html) prints to PDF in a browser too; this one is for what has no
browser: an e-mail to a GP, an archive, a RIS that takes a PDF. What it shows follows `report_of` (blinding)
exactly like the page.
"""

from __future__ import annotations

import io
from xml.sax.saxutils import escape

from django.utils import timezone
from PIL import Image as PILImage
from PIL import ImageDraw
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import Image as Flowable
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from screening.models import Image
from screening.reports.selectors import Report

THUMB_HEIGHT = 62 * mm  # four views side by side across an A4 page
VIEW_ORDER = ("RCC", "LCC", "RMLO", "LMLO")
MARK = (255, 200, 0)  # the reader's marks, amber as in the viewer
RESEARCH_ONLY = (
    "Research use only. Not a medical device: this report was made with the breast screening portal, whose AI "
    "and software are not approved for clinical decisions."
)


def _p(text: str, style) -> Paragraph:
    return Paragraph(escape(text), style)


def marked_picture(image: Image, marks) -> PILImage.Image | None:
    """The image's 8-bit rendition (at most 800 pixels a side) with the marks of the final read drawn on it;
    None without a readable rendition."""
    if not image.rendition:
        return None
    try:
        with image.rendition.open("rb") as fh:
            picture = PILImage.open(fh)
            picture.load()
    except (OSError, ValueError):  # a missing or unreadable rendition: the report goes out without it
        return None
    scale = picture.width / max(1, image.columns)
    picture = picture.convert("RGB")
    draw = ImageDraw.Draw(picture)
    line = max(2, picture.width // 150)
    for mark in marks:
        x, y = mark.x * scale, mark.y * scale
        if mark.width > 0 and mark.height > 0:  # a region: its box
            draw.rectangle((x, y, x + mark.width * scale, y + mark.height * scale), outline=MARK, width=line)
        else:  # a point: a ring around it
            r = max(8, picture.width // 40)
            draw.ellipse((x - r, y - r, x + r, y + r), outline=MARK, width=line)
    picture.thumbnail((800, 800))
    return picture


def _thumbnail(image: Image, marks) -> Flowable | None:
    picture = marked_picture(image, marks)
    if picture is None:
        return None
    out = io.BytesIO()
    picture.save(out, "PNG")
    out.seek(0)
    return Flowable(out, width=THUMB_HEIGHT * picture.width / picture.height, height=THUMB_HEIGHT)


def _images(report: Report) -> list:
    """The exam's current images in hanging order (R CC, L CC, R MLO, L MLO, then the rest), each with the
    final read's marks on it and its label under it."""
    images = list(report.study.images.all())
    images.sort(key=lambda i: (VIEW_ORDER.index(i.laterality + i.view) if i.laterality + i.view in VIEW_ORDER else 9))
    marks = list(report.review.findings.all()) if report.review is not None else []
    cells, labels = [], []
    for image in images[:4]:
        thumb = _thumbnail(image, [m for m in marks if m.image_id == image.pk])
        if thumb is not None:
            cells.append(thumb)
            labels.append(f"{image.laterality} {image.view}")
    if not cells:
        return []
    table = Table([cells, labels])
    table.setStyle(TableStyle([("ALIGN", (0, 0), (-1, -1), "CENTER"), ("FONTSIZE", (0, 1), (-1, 1), 8)]))
    return [table, Spacer(1, 4 * mm)]


def report_pdf(report: Report) -> bytes:
    """The PDF of `report` (screening.reports.selectors.report_of: already blinded for its reader)."""
    styles = getSampleStyleSheet()
    body, small = styles["BodyText"], styles["Italic"]
    study, review = report.study, report.review
    patient = study.patient
    story: list = [_p("Screening mammography report", styles["Title"])]
    born = f", born {patient.birth_date:%Y-%m-%d}" if patient.birth_date else ""
    story.append(_p(f"Patient: {patient.name or '-'} ({patient.patient_id}){born}", body))
    exam = f"Exam: study #{study.pk}, {study.study_date:%Y-%m-%d}" if study.study_date else f"Exam: study #{study.pk}"
    story.append(_p(exam + (f", accession {study.accession_number}" if study.accession_number else ""), body))
    story.append(Spacer(1, 4 * mm))
    if report.state == "hidden":
        story.append(_p("The decision shows once you have read this case (blinded double reading).", body))
    elif report.state == "pending":
        story.append(_p("No final decision yet.", body))
    else:
        story += _images(report)
        story.append(_p("Assessment", styles["Heading2"]))
        rows = [["Breast", "Recall", "BI-RADS"]] + [
            [side, "Recall" if call.recall else "No recall", str(call.birads)] for side, call in report.breasts
        ]
        table = Table(rows, hAlign="LEFT")
        table.setStyle(
            TableStyle(
                [
                    ("GRID", (0, 0), (-1, -1), 0.5, colors.grey),
                    ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#eeeeee")),
                    ("FONTNAME", (0, 0), (-1, 0), "Helvetica-Bold"),
                ]
            )
        )
        story.append(table)
        outcome = "recall" if review.decision == "abnormal" else "normal"
        density = review.get_density_display() if review.density else "not assessed"
        story.append(Spacer(1, 2 * mm))
        story.append(_p(f"Exam: {outcome}, BI-RADS {review.birads}. Breast composition: {density}.", body))
        story.append(_p("Findings", styles["Heading2"]))
        if not report.findings and not report.unlinked_marks:
            story.append(_p("No findings described.", body))
        for number, text in enumerate(report.findings, start=1):
            story.append(_p(f"{number}. {text}", body))
        if report.unlinked_marks:
            story.append(_p("Marked: " + "; ".join(report.unlinked_marks) + ".", body))
        if review.note:
            story.append(_p("Note", styles["Heading2"]))
            story += [_p(line, body) for line in review.note.splitlines() if line.strip()]
        reader = review.radiologist.get_full_name() or review.radiologist.get_username()
        when = timezone.localtime(review.created).strftime("%Y-%m-%d %H:%M")
        slot = review.get_slot_display().lower()
        story.append(Spacer(1, 3 * mm))
        story.append(_p(f"Read by {reader} ({slot}), {when}; version {review.version}.", small))
    story.append(Spacer(1, 6 * mm))
    story.append(_p(RESEARCH_ONLY, small))
    out = io.BytesIO()
    doc = SimpleDocTemplate(
        out,
        pagesize=A4,
        leftMargin=18 * mm,
        rightMargin=18 * mm,
        topMargin=18 * mm,
        bottomMargin=18 * mm,
        title="Screening mammography report",
        author="Breast screening portal",
    )
    doc.build(story)
    return out.getvalue()
