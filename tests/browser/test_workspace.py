"""The worklist and the case page in a real Chromium: missing views, predictions arriving, errors, help, roles."""

from __future__ import annotations

import pytest

from screening.ai.services import predicting
from screening.models import Prediction, Review
from tests.browser.conftest import FOUR_VIEWS, log_in, make_study

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


def test_missing_views_are_labelled_and_predictions_arrive_without_reloading(live_server, page, radiologist, champion):
    study = make_study(patient_id="P-DELTA", views=(("L", "CC"), ("L", "OTHER")), predict=False)
    queued = list(Prediction.objects.filter(image__study=study, status="queued"))
    assert len(queued) == 2

    log_in(page, live_server.url, "rad", f"/studies/{study.pk}/")
    page.wait_for_selector("#viewer[data-ready=true]")
    # Only the CC row hangs (no half-empty MLO row); the missing right CC is labelled.
    assert page.locator('#hanging .vp.empty[data-slot="R-CC"]').is_visible()
    assert page.locator("#hanging .vp.empty", has_text="No right CC image").count() == 1
    assert page.locator('#hanging [data-slot$="-MLO"]').count() == 0
    assert page.locator('#extra-strip .vp[data-slot="L-OTHER"]').is_visible()
    assert page.locator("#ai-images li[data-status=queued]").count() == 2
    assert "2 queued" in page.locator("#ai-exam").inner_text()

    predicting.run_prediction(queued[0].pk)
    page.wait_for_selector("#viewer[data-ai-pending='0']", timeout=20_000)
    study.refresh_from_db()
    assert page.locator("#ai-images li[data-status=done]").count() == 2
    assert page.locator("#ai-exam [data-testid=exam-score]").inner_text() == f"{study.exam_score:.2f}"
    assert page.locator("#status-line").inner_text() == f"AI finished: exam probability {study.exam_score:.2f}."


def test_a_failed_prediction_shows_its_reason(live_server, page, radiologist, champion):
    study = make_study(patient_id="P-ECHO", views=(("R", "CC"),))
    Prediction.objects.filter(image__study=study).update(status="failed", probability=None, error="cannot decode")
    log_in(page, live_server.url, "rad", f"/studies/{study.pk}/")
    page.wait_for_selector("#viewer[data-ready=true]")
    assert "failed: cannot decode" in page.locator("#ai-images li[data-status=failed]").inner_text()


def test_an_incomplete_or_refused_decision_is_explained_and_not_saved(live_server, page, radiologist, champion):
    study = make_study(patient_id="P-FOXTROT", views=(("R", "CC"),))
    log_in(page, live_server.url, "rad", f"/studies/{study.pk}/")
    page.wait_for_selector("#viewer[data-ready=true]")
    page.keyboard.press("a")
    page.keyboard.press("Control+Enter")
    assert "BI-RADS" in page.locator("#form-error").inner_text()

    page.keyboard.press("5")
    page.eval_on_selector("#decision-form input[name=csrfmiddlewaretoken]", "e => { e.value = 'x'.repeat(64); }")
    page.keyboard.press("Control+Enter")  # the server refuses a request without a valid CSRF token
    page.wait_for_selector("#form-error:has-text('CSRF')")
    assert "log in again" in page.locator("#form-error").inner_text()
    assert page.url.endswith(f"/studies/{study.pk}/")
    assert not Review.objects.exists()


def test_the_help_overlay_lists_the_shortcuts(live_server, page, radiologist, champion):
    study = make_study(patient_id="P-GOLF", views=(("L", "MLO"),))
    log_in(page, live_server.url, "rad", f"/studies/{study.pk}/")
    page.wait_for_selector("#viewer[data-ready=true]")
    page.keyboard.press("?")
    help_dialog = page.locator("#help")
    assert help_dialog.is_visible()
    assert "Heatmap overlay" in help_dialog.inner_text() and "BI-RADS" in help_dialog.inner_text()
    page.keyboard.press("Escape")
    assert not help_dialog.is_visible()


def test_a_radiologist_cannot_reach_the_admin(live_server, page, radiologist):
    log_in(page, live_server.url, "rad")
    assert page.locator("header nav a", has_text="Admin").count() == 0
    page.goto(f"{live_server.url}/admin/")
    assert "Site administration" not in page.content()
    assert "not authorized" in page.content()


def test_an_admin_reaches_the_admin(live_server, page, admin_user):
    log_in(page, live_server.url, "boss")
    page.locator("header nav a", has_text="Admin").click()
    assert "Site administration" in page.content()


def test_confirm_ai_prefills_the_decision_from_the_exam_flag(live_server, page, radiologist, champion):
    study = make_study(patient_id="P-INDIA", views=FOUR_VIEWS[:2])
    log_in(page, live_server.url, "rad", f"/studies/{study.pk}/")
    page.wait_for_selector("#viewer[data-ready=true]")
    page.keyboard.press("c")
    if study.exam_flag:
        page.keyboard.press("c")  # the AI says abnormal: confirmed by a second press
    expected = ("abnormal",) if study.exam_flag else ("normal",)
    # the exam's result from the breasts the AI flags (issue 24: each breast's call)
    exam = "recall, BI-RADS 0" if study.exam_flag else "normal, BI-RADS 1"
    assert page.locator("#exam-result").inner_text() == f"Exam: {exam}"
    page.keyboard.press("Control+Enter")
    page.keyboard.press("Control+Enter")  # a double press saves one version
    page.wait_for_url(f"{live_server.url}/")  # no other case: back to the worklist
    review = Review.objects.get(study=study)
    assert review.decision == expected[0] and review.agrees_with_ai is True
