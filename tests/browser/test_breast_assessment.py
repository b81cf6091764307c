"""Per-breast assessment on the reading page (issue 24), in a real Chromium."""

from __future__ import annotations

import pytest

from screening.models import NoteTemplate, Prediction, Review
from screening.reading.services.findings import FindingInput, ReportedFindingInput
from screening.reading.services.reviews import review_submit
from tests.browser.conftest import log_in, make_study, screenshot
from tests.browser.test_viewer import _no_console_errors, cell, centre_of, open_case  # noqa: F401 - the fixture

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


def test_a_reader_recalls_the_left_breast_and_clears_the_right_then_corrects_from_it(
    live_server, page, radiologist, champion
):
    study = make_study(patient_id="P-BREASTS", views=(("R", "CC"), ("L", "CC")), predict=False)
    open_case(page, live_server, study)
    page.locator("fieldset.keys-side label", has_text="Left").click()
    page.keyboard.press("a")
    page.keyboard.press("0")
    page.locator("fieldset.keys-side label", has_text="Right").click()
    page.keyboard.press("n")
    assert page.locator("#exam-result").inner_text() == "Exam: recall, BI-RADS 0"
    page.locator(".breast-call[data-side=R] fieldset.birads label", has_text="2").click()
    assert page.locator("input[name=decision_R]:checked").input_value() == "normal"
    screenshot(page, "breast_assessment")
    page.get_by_role("button", name="Submit and next").click()
    page.wait_for_function("p => window.location.pathname !== p", arg=f"/studies/{study.pk}/")
    v1 = Review.objects.get(study=study)
    assert (v1.decision, v1.birads) == ("abnormal", 0)
    assert (v1.decision_right, v1.birads_right, v1.decision_left, v1.birads_left) == ("normal", 2, "abnormal", 0)

    # The correction opens with v1's breasts; making the left breast BI-RADS 4 keeps the right as it was.
    page.goto(f"{live_server.url}/studies/{study.pk}/")
    page.wait_for_selector("#viewer[data-ready=true]", timeout=90_000)
    assert "Right: normal, BI-RADS 2 · Left: recall, BI-RADS 0" in page.locator("#history li").first.inner_text()
    page.wait_for_function("() => document.querySelector('input[name=birads_L][value=\"0\"]').checked")
    assert page.locator("input[name=birads_R][value='2']").is_checked()
    page.locator("fieldset.keys-side label", has_text="Left").click()
    page.keyboard.press("4")
    page.get_by_role("button", name="Submit as v2").click()
    page.wait_for_function("p => window.location.pathname !== p", arg=f"/studies/{study.pk}/")
    v2 = Review.objects.get(study=study, version=2)
    assert (v2.decision_right, v2.birads_right, v2.decision_left, v2.birads_left, v2.birads) == (
        "normal",
        2,
        "abnormal",
        4,
        4,
    )


def test_submitting_with_one_breast_undecided_names_that_breast(live_server, page, radiologist, champion):
    study = make_study(patient_id="P-HALF", views=(("R", "CC"), ("L", "CC")), predict=False)
    open_case(page, live_server, study)
    page.locator("fieldset.keys-side label", has_text="Right").click()
    page.keyboard.press("n")
    page.keyboard.press("Control+Enter")
    assert "for the left breast" in page.locator("#form-error").inner_text()
    assert not Review.objects.exists()


def test_a_mass_marked_on_cc_and_mlo_is_one_lexicon_finding(live_server, page, radiologist, champion):
    study = make_study(patient_id="P-LEXICON")
    images = {(i.laterality, i.view): i for i in study.images.all()}
    for image in images.values():  # an AI mark at the centre of each image: clicking it zooms there
        centre = {"x": image.columns / 2 - 20, "y": image.rows / 2 - 20, "width": 40, "height": 40, "probability": 0.9}
        Prediction.objects.filter(image=image).update(regions=[centre])
    open_case(page, live_server, study)

    def mark(side: str, view: str, kind: str) -> None:
        page.keyboard.press("p")  # in pan mode a click on the AI mark zooms to it; in mark mode it marks
        page.locator(f"{cell(images[side, view])} .ai-mark").click()
        page.wait_for_timeout(300)
        page.keyboard.press("m")
        page.select_option("#finding-type", kind)
        page.mouse.click(*centre_of(page, f"{cell(images[side, view])} .vp-element"))

    mark("L", "CC", "mass")
    mark("L", "MLO", "mass")
    mark("R", "CC", "calcification")
    assert page.locator("#findings li").count() == 3
    # the left CC and MLO marks show one finding; the right calcification is another
    assert page.locator("#reported li").count() == 2
    assert "Finding 1 · Left · CC + MLO" in page.locator("#reported li[data-number='1']").inner_text()
    page.select_option("select[aria-label='Finding 1 shape']", "irregular")
    page.select_option("select[aria-label='Finding 1 margin']", "spiculated")
    page.select_option("select[aria-label='Finding 1 clock position']", "2")
    page.select_option("select[aria-label='Finding 1 depth']", "middle")
    page.fill("input[aria-label='Finding 1 distance from the nipple (cm)']", "4.5")
    page.select_option("select[aria-label='Finding 2 distribution']", "grouped")
    page.locator("fieldset.keys-side label", has_text="Left").click()
    page.keyboard.press("4")
    page.locator("fieldset.keys-side label", has_text="Right").click()
    page.keyboard.press("2")
    screenshot(page, "lexicon_findings")
    page.get_by_role("button", name="Submit and next").click()
    page.wait_for_function("p => window.location.pathname !== p", arg=f"/studies/{study.pk}/")
    review = Review.objects.get(study=study)
    mass, calcs = review.reported_findings.order_by("number")
    assert (mass.type, mass.laterality, mass.descriptors) == (
        "mass",
        "L",
        {"shape": "irregular", "margin": "spiculated"},
    )
    assert (mass.clock, mass.depth, mass.distance_cm) == (2, "middle", 4.5)
    assert sorted(mass.marks.values_list("image__view", flat=True)) == ["CC", "MLO"]
    assert (calcs.type, calcs.laterality, calcs.descriptors) == ("calcifications", "R", {"distribution": "grouped"})
    assert (review.decision_left, review.birads_left, review.decision_right, review.birads_right) == (
        "abnormal",
        4,
        "normal",
        2,
    )


def test_the_report_prints_to_a_pdf_in_chromium(live_server, page, radiologist, champion, tmp_path):
    study = make_study(patient_id="P-REPORT", views=(("R", "CC"), ("L", "CC")), predict=False)
    left = study.images.get(laterality="L")
    review_submit(
        study=study,
        radiologist=radiologist,
        breasts={"R": ("normal", 1), "L": ("abnormal", 0)},
        density="B",
        findings=[FindingInput(left.pk, "mass", 10, 10, 20, 20)],
        reported=[ReportedFindingInput(type="mass", marks=(0,), descriptors={"margin": "spiculated"}, quadrant="UOQ")],
    )
    log_in(page, live_server.url, "rad", f"/studies/{study.pk}/report/")
    assert page.locator("#report-breasts tr[data-side=Left]").inner_text().split() == ["Left", "Recall", "0"]
    assert "Mass: spiculated; left breast, upper outer quadrant" in page.locator("#report-findings").inner_text()
    page.emulate_media(media="print")
    assert not page.locator("#print-report").is_visible()  # the printout has no buttons
    screenshot(page, "report_print")
    pdf = page.pdf(format="A4")  # Chromium's print-to-PDF: what "Save as PDF" in the reader's browser makes
    assert pdf.startswith(b"%PDF-")
    (tmp_path / "report.pdf").write_bytes(pdf)
    assert len(pdf) > 1000


def test_a_note_template_goes_into_the_note_and_the_reading_time_is_recorded(live_server, page, radiologist, champion):
    NoteTemplate.objects.create(name="Benign calcs", text="Benign-appearing calcifications, no action.")
    NoteTemplate.objects.create(name="Retired", text="Not offered.", active=False)
    study = make_study(patient_id="P-NOTE", views=(("R", "CC"), ("L", "CC")), predict=False)
    open_case(page, live_server, study)
    assert page.locator("#note-template option").all_inner_texts() == ["Add a template…", "Benign calcs"]
    page.fill("#note", "Seen.")
    page.select_option("#note-template", label="Benign calcs")
    assert page.input_value("#note") == "Seen.\nBenign-appearing calcifications, no action."
    page.keyboard.press("Escape")
    page.locator("body").click(position={"x": 5, "y": 5})
    page.keyboard.press("n")
    page.get_by_role("button", name="Submit and next").click()
    page.wait_for_function("p => window.location.pathname !== p", arg=f"/studies/{study.pk}/")
    review = Review.objects.get(study=study)
    assert review.note == "Seen.\nBenign-appearing calcifications, no action."
    assert review.reading_seconds is not None and review.reading_seconds > 0  # from opening the case to submitting
