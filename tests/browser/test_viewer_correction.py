"""A correction opens with the decision and findings of the read it corrects, in a real Chromium."""

from __future__ import annotations

import pytest

from screening.models import Review
from screening.reading.services.reviews import FindingInput, review_submit
from tests.browser.conftest import make_study
from tests.browser.test_viewer import _no_console_errors, open_case  # noqa: F401 - the fixture

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


def test_a_correction_starts_from_the_findings_it_corrects(live_server, page, radiologist, champion):
    study = make_study(patient_id="P-CORRECT", views=(("R", "CC"), ("L", "CC")), predict=False)
    rcc, lcc = study.images.get(laterality="R"), study.images.get(laterality="L")
    findings = [FindingInput(lcc.pk, "mass", 100, 120, 40, 30), FindingInput(rcc.pk, "calcification", 80, 90)]
    review_submit(study=study, radiologist=radiologist, decision="abnormal", birads=4, findings=findings)
    open_case(page, live_server, study)
    page.wait_for_function("() => document.querySelectorAll('#findings li').length === 2")
    # the findings mark both breasts: v1 recalled both, BI-RADS 4
    assert page.locator("input[name=decision_L][value=abnormal]").is_checked()
    assert page.locator("input[name=birads_R][value='4']").is_checked()
    assert "Correcting v1" in page.locator("#status-line").inner_text()
    # Only the category is corrected: the findings go into v2 as they were.
    page.keyboard.press("5")
    page.get_by_role("button", name="Submit as v2").click()
    page.wait_for_function("p => window.location.pathname !== p", arg=f"/studies/{study.pk}/")
    v1, v2 = Review.objects.filter(study=study).order_by("version")
    assert (v2.decision, v2.birads) == ("abnormal", 5)
    shape = lambda r: sorted(r.findings.values_list("image_id", "type", "x", "y", "width", "height"))  # noqa: E731
    assert shape(v2) == shape(v1) and len(shape(v2)) == 2
