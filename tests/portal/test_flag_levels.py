"""One meaning per flag (issue 20): each level has its own threshold, per source kind; an exam is flagged
exactly when one of its breasts is; AI marks below the region threshold are not shown."""

from __future__ import annotations

import io

import pytest
from django.urls import reverse

from screening.ai.services import predictions
from screening.ai.services.promotion import set_operating_point
from screening.intake.services.ingest import ingest_file
from screening.models import Image, ModelVersion, Prediction, Study
from tests.dicom_factory import mg_dataset, to_bytes

pytestmark = pytest.mark.django_db

# Breast logit = the mean of its views' logits; the exam logit = the worst breast's logit minus 3: an exam
# probability well below a breast's, as separately calibrated levels give.
EXAM_MODEL = {"breast_weights": [1.0, 0.0, 0.0, 0.0], "exam_weights": [1.0, -3.0]}
FILM = {"image": 0.8, "breast": 0.8, "region": 0.8}
DIGITAL = {"image": 0.4, "breast": 0.5, "region": 0.4}


def _version(champion, **extra) -> ModelVersion:
    ModelVersion.objects.filter(pk=champion.pk).update(
        threshold=0.5,
        metrics={
            **champion.metrics,
            "exam_model": EXAM_MODEL,
            "sources": {
                "film": {"thresholds": FILM, "exam_model": EXAM_MODEL},
                "digital": {"thresholds": DIGITAL, "exam_model": EXAM_MODEL},
            },
            "default_source_kind": "digital",
            **extra,
        },
    )
    champion.refresh_from_db()
    return champion


def _study(version, logits: dict[tuple[str, str], float], kind: str = "digital", regions=None) -> Study:
    uid = f"1.2.826.0.1.{abs(hash((tuple(logits), kind))) % 10**8}"
    for seed, ((side, view), logit) in enumerate(logits.items()):
        image = ingest_file(
            file=io.BytesIO(to_bytes(mg_dataset(laterality=side, view=view, study_uid=uid, seed=seed))),
            filename="x.dcm",
        ).image
        Prediction.objects.filter(image=image).delete()
        Prediction.objects.create(
            image=image,
            model_version=version,
            status="done",
            probability=1 / (1 + 2.718281828**-logit),
            logit=logit,
            regions=regions or [],
            source_kind=kind,
        )
        Image.objects.filter(pk=image.pk).update(status="predicted")
    return predictions.update_exam_scores(Study.objects.get(study_uid=uid))


def test_an_exam_is_flagged_when_one_breast_is_even_if_its_own_probability_is_lower(champion):
    """Before: the exam flag compared the exam probability with the one threshold, so a flagged breast sat
    inside an unflagged exam."""
    version = _version(champion)
    study = _study(version, {("L", "CC"): 1.0, ("L", "MLO"): 1.0, ("R", "CC"): -3.0, ("R", "MLO"): -3.0})
    assert study.score_left > 0.5 > study.exam_score  # breast above its threshold, exam probability below it
    assert study.exam_flag is True
    quiet = _study(version, {("L", "CC"): -1.0, ("R", "CC"): -2.0})
    assert quiet.score_left < 0.5 and quiet.exam_flag is False


def test_film_is_flagged_at_the_film_thresholds(champion):
    version = _version(champion)
    logits = {("L", "CC"): 1.0, ("R", "CC"): -3.0}  # left breast 0.73: above digital's 0.5, below film's 0.8
    assert _study(version, logits, kind="digital").exam_flag is True
    film = _study(version, logits, kind="film")
    assert film.source_kind == "film" and film.exam_flag is False


def test_the_api_says_which_level_each_flag_belongs_to(champion, rad_api):
    version = _version(champion)
    study = _study(version, {("L", "CC"): 0.0, ("R", "CC"): -3.0})  # image 0.5: above digital's image 0.4
    body = rad_api.get(f"/api/v1/studies/{study.pk}/").json()
    assert body["thresholds"] == DIGITAL | {"breast": 0.5}
    assert body["threshold"] == 0.5 and body["flag_left"] is True and body["flag_right"] is False
    assert body["exam_flag"] is True
    left = next(i for i in body["images"] if i["laterality"] == "L")
    prediction = rad_api.get(f"/api/v1/predictions/{left['prediction']['id']}/").json()
    assert prediction["flag_level"] == "image" and prediction["threshold"] == 0.4
    assert prediction["above_threshold"] is True


def test_moving_the_operating_point_flags_exams_by_their_breasts(champion):
    version = _version(champion)
    study = _study(version, {("L", "CC"): 1.0, ("R", "CC"): -3.0})  # left 0.73, exam 0.12
    set_operating_point(version=version, threshold=0.2)
    assert Study.objects.get(pk=study.pk).exam_flag is True  # before: exam 0.12 < 0.2 gave False
    set_operating_point(version=version, threshold=0.9)
    assert Study.objects.get(pk=study.pk).exam_flag is False


def test_the_viewer_gets_no_ai_mark_below_the_region_threshold(champion, client, radiologist):
    version = _version(champion)
    regions = [
        {"x": 10, "y": 10, "width": 20, "height": 20, "probability": 0.45},
        {"x": 60, "y": 60, "width": 20, "height": 20, "probability": 0.12},
    ]
    study = _study(version, {("L", "CC"): 0.0}, regions=regions)
    client.force_login(radiologist)
    data = client.get(reverse("study-viewer-data", args=[study.pk])).json()
    [entry] = data["images"].values()
    assert [r["probability"] for r in entry["regions"]] == [0.45]
