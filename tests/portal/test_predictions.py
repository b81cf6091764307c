"""Predictions in-process: claim, record, exam scores, failures, re-runs and the sweeper."""

from __future__ import annotations

import io
from datetime import timedelta

import numpy as np
import pytest
from django.core.files.storage import default_storage
from django.utils import timezone
from PIL import Image as PILImage

from ml.exam import ExamModel
from screening.ai.services import predicting, predictions
from screening.ai.services.checkpoints import register_checkpoint
from screening.ai.services.predictions import sweep
from screening.ai.services.registry import promote_version
from screening.intake.services.ingest import ingest_file
from screening.models import Image, ModelVersion, Prediction, Study
from tests.dicom_factory import mg_dataset, to_bytes

pytestmark = pytest.mark.django_db


def ingest(ds):
    return ingest_file(file=io.BytesIO(to_bytes(ds)), filename="x.dcm").image


def test_ingest_queues_a_prediction_by_the_champion(champion):
    image = ingest(mg_dataset())
    prediction = Prediction.objects.get(image=image)
    assert (prediction.status, prediction.model_version) == ("queued", champion)
    assert Image.objects.get(pk=image.pk).status == "queued"


def test_images_no_model_could_serve_are_queued_by_the_sweeper_once_the_champion_serves(champion):
    ModelVersion.objects.filter(pk=champion.pk).update(servable=False, load_error="cannot be loaded")
    image = ingest(mg_dataset())
    assert not Prediction.objects.exists() and image.status == "received"
    ModelVersion.objects.filter(pk=champion.pk).update(servable=True, load_error="")
    assert sweep()["enqueued_images"] == 1
    assert Prediction.objects.get(image=image).status == "queued"


def test_a_prediction_records_probability_heatmap_and_timings(champion):
    image = ingest(mg_dataset(laterality="L", view="CC"))
    prediction = Prediction.objects.get(image=image)
    assert predicting.run_prediction(prediction.pk) == 1
    prediction.refresh_from_db()
    assert prediction.status == "done" and 0 <= prediction.probability <= 1
    assert prediction.preprocess_ms > 0 and prediction.inference_ms > 0
    with default_storage.open(prediction.heatmap.name) as fh:
        heatmap = PILImage.open(io.BytesIO(fh.read()))
    assert heatmap.mode == "L"
    assert heatmap.size == (200, 256)  # aligned with the 200x256 original
    assert prediction.logit is not None and prediction.regions  # what the exam model and the viewer need
    study = Study.objects.get(pk=image.study_id)
    assert study.status == "predicted" and study.exam_model == champion
    # The exam score is the version's exam model on the image logit, as the model was evaluated.
    assert champion.metrics["exam_model"]
    expected = ExamModel.from_dict(champion.metrics["exam_model"]).score([("L", prediction.logit)])
    assert study.exam_score == pytest.approx(expected.exam)
    assert study.score_left == pytest.approx(expected.breasts["L"])
    assert study.exam_flag == (study.score_left >= champion.threshold)  # the exam follows its breasts
    assert Image.objects.get(pk=image.pk).status == "predicted"


def test_breast_and_exam_scores_come_from_the_versions_exam_model(champion):
    """Both views and the other breast enter a breast's score; the weights are the version's."""
    ModelVersion.objects.filter(pk=champion.pk).update(
        metrics={
            **champion.metrics,
            "exam_model": {"breast_weights": [1.0, 0.0, 0.5, 0.0], "exam_weights": [1.0, 0.0]},
        }
    )
    champion.refresh_from_db()
    study_uid = "1.2.3.5"
    views = [("L", "CC", 1.0), ("L", "MLO", 3.0), ("R", "CC", -1.0), ("R", "MLO", -1.0)]
    for seed, (side, view, logit) in enumerate(views):
        image = ingest(mg_dataset(laterality=side, view=view, study_uid=study_uid, seed=seed))
        Prediction.objects.filter(image=image).delete()
        Prediction.objects.create(
            image=image, model_version=champion, status="done", probability=0.5, logit=logit, regions=[]
        )
        Image.objects.filter(pk=image.pk).update(status="predicted")
    study = predictions.update_exam_scores(Study.objects.get(study_uid=study_uid))
    left, right = 2.0 + 0.5 * 3.0, -1.0 + 0.5 * -3.0  # mean of the views plus half the asymmetry
    assert study.score_left == pytest.approx(1 / (1 + np.exp(-left)))
    assert study.score_right == pytest.approx(1 / (1 + np.exp(-right)))
    assert study.exam_score == pytest.approx(1 / (1 + np.exp(-left)))


def test_the_api_gives_each_prediction_its_top_regions(champion, rad_api):
    image = ingest(mg_dataset(laterality="L", view="CC"))
    predicting.run_prediction(Prediction.objects.get(image=image).pk)
    prediction = Prediction.objects.get(image=image)
    body = rad_api.get(f"/api/v1/predictions/{prediction.pk}/").json()
    assert body["regions"] == prediction.regions and body["logit"] == pytest.approx(prediction.logit)
    region = body["regions"][0]
    assert {"x", "y", "width", "height", "probability"} <= set(region)
    assert 0 <= region["x"] < 200 and 0 <= region["y"] < 256


def test_the_same_task_delivered_twice_gives_one_prediction(champion):
    image = ingest(mg_dataset())
    prediction = Prediction.objects.get(image=image)
    assert predicting.run_prediction(prediction.pk) == 1
    assert predicting.run_prediction(prediction.pk) == 0
    assert Prediction.objects.filter(image=image).count() == 1
    assert Prediction.objects.get(pk=prediction.pk).attempts == 1


def test_waiting_images_are_predicted_together_as_a_batch(champion):
    images = [ingest(mg_dataset(seed=i, patient_id=f"P{i}")) for i in range(3)]
    first = Prediction.objects.get(image=images[0])
    assert predicting.run_prediction(first.pk) == 3
    assert set(Prediction.objects.values_list("status", flat=True)) == {"done"}


def test_a_task_claims_batch_by_batch_up_to_its_limit(champion, settings, monkeypatch):
    """Two batches of two per task: the first batch is claimed when the task starts, the second when the loader
    is due to decode it (a row claimed then is not another worker's any more); four of five predicted."""
    from screening.ai import inference

    settings.PORTAL_INFERENCE_BATCH, settings.PORTAL_INFERENCE_BATCHES_PER_TASK = 2, 2
    images = [ingest(mg_dataset(seed=i, patient_id=f"P{i}")) for i in range(5)]
    seen = []
    running_when_forward_started = []
    real = inference.predictor_for

    def spying(version):
        predictor = real(version)
        stream = predictor.stream_batches
        forward = predictor._forward_timed

        def stream_batches(loaders, batch_size=8, **kwargs):
            seen.append((len(loaders), batch_size))
            return stream(loaders, batch_size=batch_size, **kwargs)

        def counting_forward(prepared):
            running_when_forward_started.append(Prediction.objects.filter(status="running").count())
            return forward(prepared)

        monkeypatch.setattr(predictor, "stream_batches", stream_batches)
        monkeypatch.setattr(predictor, "_forward_timed", counting_forward)
        return predictor

    monkeypatch.setattr(inference, "predictor_for", spying)
    first = Prediction.objects.get(image=images[0])
    assert predicting.run_prediction(first.pk) == 4
    assert seen == [(2, 2)]  # one batch claimed up front
    assert running_when_forward_started == [2, 2]  # the second batch was claimed after the first forward pass
    assert Prediction.objects.filter(status="queued").count() == 1


def test_a_corrupt_image_fails_with_its_reason_and_is_not_retried(champion):
    image = ingest(mg_dataset())
    with default_storage.open(image.original.name, "wb") as fh:
        fh.write(b"garbage")
    prediction = Prediction.objects.get(image=image)
    assert predicting.run_prediction(prediction.pk) == 0
    prediction.refresh_from_db()
    assert prediction.status == "failed" and prediction.error  # the decoder's reason (ml.io words it)
    assert predicting.run_prediction(prediction.pk) == 0  # redelivery: nothing to do
    assert Prediction.objects.get(pk=prediction.pk).attempts == 1
    assert Image.objects.get(pk=image.pk).status == "failed"
    assert Study.objects.get(pk=image.study_id).status == "predicted"


def _done(image, version, probability):
    return Prediction.objects.create(image=image, model_version=version, status="done", probability=probability)


def test_exam_score_is_the_highest_breast_mean(champion):
    study_uid = "1.2.3.4"
    views = [("L", "CC", 0.2), ("L", "MLO", 0.4), ("R", "CC", 0.9), ("R", "MLO", 0.5)]
    for seed, (side, view, probability) in enumerate(views):
        image = ingest(mg_dataset(laterality=side, view=view, study_uid=study_uid, seed=seed))
        Prediction.objects.filter(image=image).delete()
        _done(image, champion, probability)
        Image.objects.filter(pk=image.pk).update(status="predicted")
    study = predictions.update_exam_scores(Study.objects.get(study_uid=study_uid))
    assert study.score_left == pytest.approx(0.3)
    assert study.score_right == pytest.approx(0.7)
    assert study.exam_score == pytest.approx(0.7)
    assert study.exam_flag is True  # 0.7 >= threshold 0.5
    assert study.status == "predicted"


def test_a_rerun_with_a_new_champion_keeps_the_old_prediction(champion, test_checkpoint, tmp_path):
    image = ingest(mg_dataset())
    predicting.run_prediction(Prediction.objects.get(image=image).pk)
    copy = tmp_path / "second.pt"
    copy.write_bytes(test_checkpoint.read_bytes())
    second = register_checkpoint(copy, name="second-model")
    promote_version(second)
    assert ModelVersion.objects.get(pk=champion.pk).status == "retired"
    queued = predictions.rerun_studies([image.study])
    assert len(queued) == 1
    predicting.run_prediction(queued[0])
    versions = set(Prediction.objects.filter(image=image, status="done").values_list("model_version__name", flat=True))
    assert versions == {"test-model", "second-model"}
    assert Study.objects.get(pk=image.study_id).exam_model == second


def test_the_sweeper_requeues_work_of_a_dead_worker_then_gives_up(champion, settings):
    image = ingest(mg_dataset())
    prediction = Prediction.objects.get(image=image)
    long_ago = timezone.now() - timedelta(hours=1)
    Prediction.objects.filter(pk=prediction.pk).update(status="running", attempts=1, updated=long_ago)
    assert sweep()["requeued"] == 1
    assert Prediction.objects.get(pk=prediction.pk).status == "queued"
    Prediction.objects.filter(pk=prediction.pk).update(
        status="running", attempts=settings.PORTAL_PREDICTION_MAX_ATTEMPTS, updated=long_ago
    )
    assert sweep()["failed"] == 1
    prediction.refresh_from_db()
    assert prediction.status == "failed" and "gave up after" in prediction.error


def test_embedded_mode_predicts_an_upload_in_process(champion, api, settings, django_capture_on_commit_callbacks):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    from portal.celery import app

    app.conf.task_always_eager = True
    try:
        with django_capture_on_commit_callbacks(execute=True):
            response = api.post("/api/v1/images/", {"file": io.BytesIO(to_bytes(mg_dataset()))}, format="multipart")
    finally:
        app.conf.task_always_eager = settings.CELERY_TASK_ALWAYS_EAGER = settings.CELERY_BROKER_URL == "memory://"
    assert response.status_code == 201
    prediction = Prediction.objects.get(image_id=response.json()["id"])
    assert prediction.status == "done" and prediction.probability is not None


def test_an_image_of_blank_pixels_is_still_answered(champion):
    image = ingest(mg_dataset(pixels=np.zeros((64, 64), np.uint16)))
    prediction = Prediction.objects.get(image=image)
    predicting.run_prediction(prediction.pk)
    prediction.refresh_from_db()
    assert prediction.status in ("done", "failed")
    assert prediction.status == "done" or prediction.error


def test_clients_see_prediction_status_per_image_and_scores_per_study(champion, rad_api, api, api_client_user):
    ds = mg_dataset(patient_id="P-secret")
    image = ingest_file(file=io.BytesIO(to_bytes(ds)), filename="x.dcm", user=api_client_user).image
    queued = rad_api.get(f"/api/v1/images/{image.pk}/").json()
    assert queued["prediction"]["status"] == "queued" and queued["prediction"]["model_version"] == "test-model"
    predicting.run_prediction(Prediction.objects.get(image=image).pk)
    body = rad_api.get(f"/api/v1/studies/{image.study_id}/").json()
    assert body["status"] == "predicted" and body["exam_model"] == "test-model"
    assert body["patient"] == "P-secret"
    assert body["images"][0]["prediction"]["status"] == "done"
    assert body["images"][0]["prediction"]["above_threshold"] == (body["exam_score"] >= 0.5)
    heatmap = rad_api.get(body["images"][0]["prediction"]["heatmap_url"])
    assert heatmap.status_code == 200 and heatmap["Content-Type"] == "image/png"
    client_view = api.get(f"/api/v1/studies/{image.study_id}/").json()
    assert client_view["patient"].startswith("anon-") and "P-secret" not in str(client_view)


def test_re_running_a_study_through_the_api(champion, rad_api, api):
    image = ingest(mg_dataset())
    predicting.run_prediction(Prediction.objects.get(image=image).pk)
    assert api.post(f"/api/v1/studies/{image.study_id}/predict/").status_code == 403
    response = rad_api.post(f"/api/v1/studies/{image.study_id}/predict/")
    assert response.status_code == 202 and response.json() == {"queued": []}  # already done by the champion


def test_the_predict_command_queues_pending_images(champion):
    from django.core.management import call_command

    ingest(mg_dataset())
    Prediction.objects.all().delete()
    out = io.StringIO()
    call_command("predict", "--pending", stdout=out)
    assert "queued 1 predictions by model test-model" in out.getvalue()


def test_each_batch_is_stored_before_the_next_runs_and_a_failed_batch_goes_image_by_image(
    champion, settings, monkeypatch
):
    """One transaction per batch, while the loader decodes the next (not all at the end of the task); when
    the model fails on a whole batch, its images are predicted one at a time and still recorded."""
    from screening.ai import inference

    settings.PORTAL_INFERENCE_BATCH, settings.PORTAL_INFERENCE_BATCHES_PER_TASK = 2, 2
    images = [ingest(mg_dataset(seed=i, patient_id=f"P{i}")) for i in range(4)]
    done_before_each_forward = []
    real = inference.predictor_for

    def spying(version):
        predictor = real(version)
        forward = predictor._forward_timed

        def flaky(prepared):
            done_before_each_forward.append(Prediction.objects.filter(status="done").count())
            if len(done_before_each_forward) == 2:
                raise RuntimeError("out of memory for this batch")
            return forward(prepared)

        monkeypatch.setattr(predictor, "_forward_timed", flaky)
        return predictor

    monkeypatch.setattr(inference, "predictor_for", spying)
    assert predicting.run_prediction(Prediction.objects.get(image=images[0]).pk) == 4
    assert done_before_each_forward == [0, 2, 2, 3]  # batch 1 stored; batch 2 failed, then its images alone
    assert Prediction.objects.filter(status="done").count() == 4


def test_each_stored_batch_logs_where_its_time_went_without_patient_data(champion, caplog):
    """bench/pipeline.py reports the per-image breakdown (decode, preprocess, forward, heatmap, store) from it."""
    import logging
    import re

    image = ingest(mg_dataset(patient_id="SECRET-PATIENT-7"))
    with caplog.at_level(logging.INFO, logger="screening.ai.services.predicting"):
        assert predicting.run_prediction(Prediction.objects.get(image=image).pk) == 1
    [line] = [r.getMessage() for r in caplog.records if "batch timing" in r.getMessage()]
    values = dict(re.findall(r"(\w+)=([\d.]+)", line))
    assert set(values) == {"decode", "preprocess", "forward", "heatmap", "store", "images"}
    assert float(values["forward"]) > 0 and float(values["store"]) > 0 and values["images"] == "1"
    assert "SECRET" not in line
