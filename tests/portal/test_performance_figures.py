"""Performance from the database: per reader, per model version, programme; filters; page and API."""

from __future__ import annotations

from datetime import date

import pytest
from django.urls import reverse

from screening.models import ModelVersion, Review, Study
from screening.reading.performance import PerformanceFilters, performance
from screening.reading.services.outcomes import OutcomeInput, record_outcome
from screening.reading.services.reading import open_case, set_policy
from screening.reading.services.reviews import review_submit
from tests.conftest import _token_client
from tests.portal.reading_fixtures import make_study

pytestmark = pytest.mark.django_db


@pytest.fixture
def programme(admin_user, radiologist, second_radiologist, arbitrator):
    """Four double-read exams, hand-made: rad and rad2 agree on three, an arbitrator settles the fourth.

    exam  rad        rad2       final            outcome    AI flag  density
    A     recall 4   recall 4   recall (2nd)     malignant  True     C
    B     normal 1   normal 1   normal (2nd)     no cancer  False    B
    C     recall 0   normal 2   normal (arb)     benign     True     C
    D     normal 1   normal 2   normal (2nd)     -          False    B
    """
    set_policy(user=admin_user, mode="double")
    model = ModelVersion.objects.create(name="m-1", checkpoint="x", threshold=0.5)
    plan = {
        "A": (("abnormal", 4), ("abnormal", 4), None, "malignant", True, "C"),
        "B": (("normal", 1), ("normal", 1), None, "no_cancer", False, "B"),
        "C": (("abnormal", 0), ("normal", 2), ("normal", 2), "benign", True, "C"),
        "D": (("normal", 1), ("normal", 2), None, None, False, "B"),
    }
    for seed, (name, (first, second, arbitration, outcome, flag, density)) in enumerate(plan.items()):
        study = make_study(name, 0.9 if flag else 0.1, flag, seed=seed)
        Study.objects.filter(pk=study.pk).update(exam_model=model, study_date=date(2026, 3, 1 + seed))
        study.refresh_from_db()
        review_submit(study=study, radiologist=radiologist, decision=first[0], birads=first[1], density=density)
        review_submit(study=study, radiologist=second_radiologist, decision=second[0], birads=second[1])
        if arbitration:
            review_submit(study=study, radiologist=arbitrator, decision=arbitration[0], birads=arbitration[1])
        if outcome:
            record_outcome(
                item=OutcomeInput(
                    study=study,
                    laterality="L",
                    result=outcome,
                    cancer_type="invasive" if outcome == "malignant" else "",
                ),
                user=admin_user,
            )
    return plan


def test_the_figures_per_reader_model_and_programme_match_the_hand_made_set(programme):
    figures = performance()
    prog = figures["programme"]
    assert (prog["exams"], prog["recalls"], prog["arbitrated"]) == (4, 1, 1)
    assert prog["cancer_detection_per_1000"]["value"] == 250.0
    assert (prog["sensitivity"]["k"], prog["sensitivity"]["n"]) == (1, 1)
    assert (prog["specificity"]["k"], prog["specificity"]["n"]) == (2, 2)
    # readers: recall-agreement on A, B, D, not C: po 3/4; rad recalls 2/4, rad2 1/4 -> pe 1/2*1/4 + 1/2*3/4 = 1/2
    assert prog["reader_kappa"]["value"] == pytest.approx((0.75 - 0.5) / 0.5)
    readers = {r["reader"]: r for r in figures["readers"]}
    assert set(readers) == {"rad", "rad2"}  # the arbitrator's read is not a screening read
    assert readers["rad"]["recall_rate"]["value"] == 0.5 and readers["rad2"]["recall_rate"]["value"] == 0.25
    assert (readers["rad"]["ppv_of_recall"]["k"], readers["rad"]["ppv_of_recall"]["n"]) == (1, 2)
    assert readers["rad"]["ai_agreement"]["value"] == 1.0  # rad recalled exactly the flagged exams
    (model,) = figures["models"]
    assert model["model"] == "m-1" and model["recall_rate"]["value"] == 0.5
    assert (model["specificity"]["k"], model["specificity"]["n"]) == (1, 2)


def test_the_figures_filter_by_density_and_period(programme):
    dense = performance(PerformanceFilters(density="C"))["programme"]
    assert dense["exams"] == 2
    late = performance(PerformanceFilters(date_from=date(2026, 3, 3)))["programme"]
    assert late["exams"] == 2  # C and D


def test_the_figures_filter_by_site_and_an_unknown_site_is_a_400(programme, admin_user):
    from screening.models import Site

    Site.objects.create(code="north", name="North unit")
    Study.objects.filter(patient__patient_id__in=["A", "C"]).update(site="north")
    north = performance(PerformanceFilters(site="north"))["programme"]
    assert (north["exams"], north["recalls"], north["arbitrated"]) == (2, 1, 1)
    assert performance(PerformanceFilters(site="default"))["programme"]["exams"] == 2
    api = _token_client(admin_user)
    assert api.get("/api/v1/performance/?site=north").json()["filters"]["site"] == "north"
    bad = api.get("/api/v1/performance/?site=south")
    assert bad.status_code == 400 and "site" in bad.json()["error"]["fields"]


def test_the_performance_page_draws_svg_plots_and_the_api_serves_the_same_figures(programme, admin_user, client):
    client.force_login(admin_user)
    page = client.get(reverse("performance")).content.decode()
    assert page.count("<svg") == 4 and "rad2" in page and "Wilson" in page
    assert "cdn" not in page.lower()
    api = _token_client(admin_user)
    body = api.get("/api/v1/performance/?density=B").json()
    assert body["programme"]["exams"] == 2 and body["filters"]["density"] == "B"
    bad = api.get("/api/v1/performance/?date_from=yesterday")
    assert bad.status_code == 400 and "date_from" in bad.json()["error"]["fields"]


def test_reading_time_is_the_median_from_opening_to_submitting(admin_user, radiologist):
    study = make_study("S", 0.4)
    open_case(study=study, user=radiologist)
    review_submit(study=study, radiologist=radiologist, decision="normal", birads=1)
    seconds = Review.objects.get().reading_seconds
    assert performance()["readers"][0]["median_reading_seconds"] == pytest.approx(seconds)
