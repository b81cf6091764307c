"""The exam's structured report page (issue 24): per-breast assessment, lexicon findings, blinding."""

from __future__ import annotations

import base64
import re
import zlib

import pytest
from django.test import Client
from django.urls import reverse

from screening.intake.services.renditions import render_image
from screening.models import Finding
from screening.reading.services.findings import FindingInput, ReportedFindingInput
from screening.reading.services.reviews import review_submit
from screening.reports.pdf import MARK, marked_picture
from tests.portal.test_breast_assessment import older_read, two_sided_study

pytestmark = pytest.mark.django_db


def page_of(user, study) -> str:
    client = Client()
    client.force_login(user)
    response = client.get(reverse("study-report", args=[study.pk]))
    assert response.status_code == 200
    return response.content.decode()


def test_the_report_gives_each_breast_and_the_findings_in_lexicon_words(radiologist):
    study, right, left = two_sided_study("A")
    review_submit(
        study=study,
        radiologist=radiologist,
        breasts={"R": ("normal", 2), "L": ("abnormal", 4)},
        density="C",
        note="Compare with prior.",
        findings=[FindingInput(left.pk, "mass", 10, 10, 20, 20)],
        reported=[
            ReportedFindingInput(type="mass", marks=(0,), descriptors={"shape": "irregular"}, clock=2, depth="middle")
        ],
    )
    html = page_of(radiologist, study)
    assert '<tr data-side="Right"><th scope="row">Right</th><td>No recall</td><td>2</td></tr>' in html
    assert '<tr data-side="Left"><th scope="row">Left</th><td>Recall</td><td>4</td></tr>' in html
    assert "Exam: recall, BI-RADS 4." in html and "C: heterogeneously dense" in html
    assert "<li>Mass: irregular; left breast, 2 o&#x27;clock, middle third" in html
    assert "Compare with prior." in html


def test_an_older_read_is_reported_on_both_breasts(radiologist):
    study, _, _ = two_sided_study("A")
    older_read(study, radiologist, "normal", 1)
    html = page_of(radiologist, study)
    assert html.count("<td>No recall</td><td>1</td>") == 2 and "Read before per-breast assessment" in html


def test_a_blinded_second_reader_sees_no_decision_in_the_report(double_reading, radiologist, second_radiologist):
    study, _, _ = two_sided_study("A")
    review_submit(study=study, radiologist=radiologist, breasts={"R": ("abnormal", 5), "L": ("normal", 1)}, note="X9")
    html = page_of(second_radiologist, study)
    assert "once you have read this case" in html
    assert "X9" not in html and "Recall" not in html
    assert "No final decision yet" in page_of(radiologist, study)  # the first reader: awaiting the second read


def pdf_text(user, study) -> str:
    """The text a PDF's pages draw (reportlab's content streams, inflated): enough to assert what it says."""
    client = Client()
    client.force_login(user)
    response = client.get(reverse("study-report-pdf", args=[study.pk]))
    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"] == f'inline; filename="report-study-{study.pk}.pdf"'
    body = response.content
    assert body.startswith(b"%PDF-") and body.rstrip().endswith(b"%%EOF")
    text = []
    for match in re.finditer(rb"stream\r?\n(.*?)endstream", body, re.S):
        raw = match.group(1).strip()
        try:  # reportlab writes page streams ASCII85 (ending "~>") over Flate
            data = zlib.decompress(base64.a85decode(raw.removesuffix(b"~>")) if raw.endswith(b"~>") else raw)
        except (ValueError, zlib.error):
            continue  # an image's stream
        for block in re.findall(rb"BT (.*?) ET", data, re.S):  # a paragraph; T* breaks its lines
            pieces = re.findall(rb"\(((?:\\.|[^\\)])*)\) Tj( T\*)?", block)
            text.append("".join(p.decode("latin-1") + (" " if brk else "") for p, brk in pieces).strip())
    return "\n".join(text).replace("\\(", "(").replace("\\)", ")")


def test_the_pdf_report_says_what_the_page_says_with_the_marked_images(radiologist):
    study, right, left = two_sided_study("A")
    render_image(left.pk)  # the left image has its 8-bit rendition, the right one not yet: one picture
    review_submit(
        study=study,
        radiologist=radiologist,
        breasts={"R": ("normal", 2), "L": ("abnormal", 4)},
        density="C",
        note="Compare with prior.",
        findings=[FindingInput(left.pk, "mass", 10, 10, 20, 20)],
        reported=[ReportedFindingInput(type="mass", marks=(0,), descriptors={"shape": "irregular"}, clock=2)],
    )
    text = pdf_text(radiologist, study)
    assert "Screening mammography report" in text and "Research use only" in text
    assert "Exam: recall, BI-RADS 4. Breast composition: C: heterogeneously dense" in text
    assert "1. Mass: irregular; left breast, 2 o'clock" in text and "Compare with prior." in text
    assert "Recall" in text and "No recall" in text
    body = Client(enforce_csrf_checks=False)
    body.force_login(radiologist)
    pdf = body.get(reverse("study-report-pdf", args=[study.pk])).content
    assert pdf.count(b"/Subtype /Image") == 1  # the rendered image, with its mark drawn in


def test_the_marks_are_drawn_on_the_pictures_where_the_reader_put_them(radiologist):
    study, _, left = two_sided_study("A")
    render_image(left.pk)
    left.refresh_from_db()
    review_submit(
        study=study,
        radiologist=radiologist,
        breasts={"R": ("normal", 1), "L": ("abnormal", 4)},
        findings=[
            FindingInput(left.pk, "mass", 0.25 * left.columns, 0.25 * left.rows, 0.5 * left.columns, 0.5 * left.rows)
        ],
    )
    [mark] = Finding.objects.filter(image=left)
    picture = marked_picture(left, [mark])
    w, h = picture.size
    assert picture.getpixel((w // 4 + 1, h // 2)) == MARK  # the box's left edge, where the mark begins
    assert picture.getpixel((w // 2, h // 2)) != MARK  # its inside is the image


def test_a_blinded_second_reader_gets_no_decision_in_the_pdf(double_reading, radiologist, second_radiologist):
    study, _, _ = two_sided_study("A")
    review_submit(study=study, radiologist=radiologist, breasts={"R": ("abnormal", 5), "L": ("normal", 1)}, note="X9")
    text = pdf_text(second_radiologist, study)
    assert "once you have read this case" in text
    assert "X9" not in text and "Recall" not in text and "BI-RADS" not in text
