"""Learning from radiologists, in-process: labels, locked pools, runs, the promotion rule, rollback, failures.

Tiny synthetic mammograms (NumPy phantoms, a bright disc for an abnormality) and
the 256x160 test checkpoint keep a whole training run to seconds on two cores.
"""

from __future__ import annotations

import io
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from django.db.models import Count
from django.utils import timezone
from PIL import Image as PILImage

from screening.ai import labels
from screening.ai.services import evaluation, promotion, splits, training, training_run
from screening.ai.services.checkpoints import register_checkpoint
from screening.errors import Conflict, PortalError
from screening.intake.services.ingest import ingest_file
from screening.models import AuditEvent, Image, ModelVersion, Patient, Prediction, Review, Study, TrainingRun
from screening.reading.services.reviews import FindingInput, review_submit
from tests.ml.phantoms import phantom

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.django_db
LESION = (70, 150, 26)  # x, y, radius on the left breast of a 320x256 phantom
FAST = {"epochs": 6, "patience": 6, "augment_views": ["orig"]}


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    PILImage.fromarray((pixels * 255).round().astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def add_woman(n: int, *, abnormal: bool, radiologist=None, finding: bool = True) -> Study:
    """Both breasts (MLO) of woman W<n>, abnormal ones with a disc on the left; read when a radiologist is given."""
    images = {}
    for lat in ("L", "R"):
        lesion = LESION if abnormal and lat == "L" else None
        pixels = phantom(lesion=lesion, chest_left=lat == "L", seed=7 * n + (lat == "R"))
        images[lat] = ingest_file(
            file=io.BytesIO(png(pixels)), filename=f"w{n}{lat}.png", patient_id=f"W{n:03d}", laterality=lat, view="MLO"
        ).image
    study = images["L"].study
    if radiologist is not None:
        read(study, radiologist, abnormal=abnormal, finding=finding)
    return study


def read(study: Study, radiologist, *, abnormal: bool, finding: bool = True):
    left = study.images.get(laterality="L")
    x, y, r = LESION
    return review_submit(
        study=study,
        radiologist=radiologist,
        decision="abnormal" if abnormal else "normal",
        birads=4 if abnormal else 1,
        findings=[FindingInput(left.pk, "mass", x - r, y - r, 2 * r, 2 * r)] if abnormal and finding else [],
    )


@pytest.fixture
def fast_training(settings, tmp_path):
    settings.PORTAL_VALIDATION_FRACTION = 0.34
    settings.PORTAL_TRAINING_CACHE_DIR = tmp_path / "cache"
    settings.PORTAL_MODEL_DIR = tmp_path / "models"
    settings.PORTAL_TRAINING_OVERRIDES = FAST
    return settings


@pytest.fixture
def cohort(radiologist):
    """12 read women, every other one with an abnormal left breast."""
    return [add_woman(n, abnormal=n % 2 == 1, radiologist=radiologist) for n in range(12)]


@pytest.fixture(scope="session")
def trained_checkpoint(tmp_path_factory, test_checkpoint):
    """The test checkpoint fine-tuned on phantom files (no database): a model that finds discs."""
    from ml.checkpoint import load_checkpoint, save_checkpoint
    from ml.config import ModelConfig
    from ml.data import load_folder
    from ml.train import fit
    from tests.ml.phantoms import write_folder

    base = load_checkpoint(test_checkpoint)
    config = ModelConfig.from_dict({**base["config"], **FAST})
    examples = load_folder(*write_folder(tmp_path_factory.mktemp("phantoms"), n_patients=8, seed=100))
    checkpoint = fit(examples, None, config, init_checkpoint=base, seed=0)
    return save_checkpoint(checkpoint, tmp_path_factory.mktemp("trained") / "trained.pt")


@pytest.fixture(scope="session")
def degraded_checkpoint(tmp_path_factory, trained_checkpoint):
    """The trained model with its calibration turned upside down: probability 1 - p, so it ranks discs last.

    Its AUC on any set is exactly 1 minus the trained model's. (Negating the head's
    weights is no such thing: the image logit is a top-k mean, and the top k of the
    negated patch scores are the least suspicious patches, whose order is anybody's.)
    """
    from ml.checkpoint import load_checkpoint, save_checkpoint

    checkpoint = load_checkpoint(trained_checkpoint)
    calibration = checkpoint["calibration"]
    checkpoint["calibration"] = {**calibration, "a": -calibration["a"], "b": -calibration["b"]}
    return save_checkpoint(checkpoint, tmp_path_factory.mktemp("degraded") / "degraded.pt")


# --- the same models in every run ------------------------------------------------------------------


def test_a_fresh_model_starts_from_the_same_weights_in_every_process():
    """torch seeds its generator from the operating system: an unseeded fresh head differed from run to run,
    and so did every model fine-tuned from it, which made the promotion tests pass or fail by chance."""
    code = (
        "import hashlib; from ml.config import ModelConfig; from ml.model import build_model; "
        "head = build_model(ModelConfig(input_height=256, input_width=160)).head; "
        "print(hashlib.sha256(b''.join(p.detach().numpy().tobytes() for p in head.parameters())).hexdigest())"
    )
    runs = [subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True) for _ in range(2)]
    assert [r.returncode for r in runs] == [0, 0], runs[0].stderr[-2000:]
    assert runs[0].stdout.strip() == runs[1].stdout.strip()


def test_the_degraded_fixture_ranks_every_image_in_reverse(trained_checkpoint, degraded_checkpoint, tmp_path):
    """The rejection tests need a candidate that is worse by construction, not by luck: AUC exactly 1 - AUC."""
    from ml.data import load_folder
    from ml.evaluate import predict_examples
    from ml.inference import Predictor
    from ml.metrics import roc_auc
    from tests.ml.phantoms import write_folder

    examples = load_folder(*write_folder(tmp_path, n_patients=8, seed=500))
    labels = [ex.label for ex in examples]
    good, worse = (Predictor.load(path, device="cpu") for path in (trained_checkpoint, degraded_checkpoint))
    p_good = good.calibrated(predict_examples(good, examples))
    p_worse = worse.calibrated(predict_examples(worse, examples))
    assert np.allclose(p_worse, 1 - p_good)
    assert roc_auc(labels, p_good) > 0.5 and roc_auc(labels, p_worse) == pytest.approx(1 - roc_auc(labels, p_good))


# --- labels, pools and snapshots ------------------------------------------------------------------


def test_the_latest_review_decides_the_label_and_findings_become_hints(radiologist):
    study = add_woman(1, abnormal=True, radiologist=radiologist)
    by_side = {lab.laterality: lab for lab in labels.collect_labels()}
    assert (by_side["L"].label, by_side["R"].label) == (1, 0)  # the finding puts the abnormality on the left
    x, y, r = LESION
    assert by_side["L"].findings == ((x, y, r),)
    assert by_side["R"].findings == ()
    read(study, radiologist, abnormal=False)  # a correction: version 2 says normal
    assert {lab.label for lab in labels.collect_labels()} == {0}


def test_an_abnormal_decision_without_findings_labels_every_image_abnormal(radiologist):
    add_woman(1, abnormal=True, radiologist=radiologist, finding=False)
    assert [lab.label for lab in labels.collect_labels()] == [1, 1]


def test_unread_studies_and_unreadable_images_are_not_labels(radiologist):
    add_woman(1, abnormal=False)
    read_study = add_woman(2, abnormal=False, radiologist=radiologist)
    Image.objects.filter(study=read_study, laterality="R").update(status=Image.Status.FAILED)
    found = labels.collect_labels()
    assert [(lab.patient_id, lab.laterality) for lab in found] == [("W002", "L")]


def test_women_are_assigned_to_a_pool_once_stratified_by_label(radiologist, settings):
    settings.PORTAL_VALIDATION_FRACTION = 0.25
    studies = [add_woman(n, abnormal=n < 8, radiologist=radiologist) for n in range(16)]
    splits.assign_splits()
    pools = dict(Patient.objects.values_list("patient_id", "split"))
    abnormal_in_validation = sum(pools[f"W{n:03d}"] == "validation" for n in range(8))
    normal_in_validation = sum(pools[f"W{n:03d}"] == "validation" for n in range(8, 16))
    assert (abnormal_in_validation, normal_in_validation) == (2, 2)
    # Relabelling a validation woman never moves her, and assigning again changes nothing.
    moved = next(s for s in studies if s.patient.split == "" and pools[s.patient.patient_id] == "validation")
    read(moved, radiologist, abnormal=False)
    splits.assign_splits()
    assert dict(Patient.objects.values_list("patient_id", "split")) == pools


def test_the_snapshot_hash_changes_with_a_label_and_not_otherwise(radiologist):
    study = add_woman(1, abnormal=True, radiologist=radiologist)
    add_woman(2, abnormal=False, radiologist=radiologist)
    first, summary, _ = splits.current_snapshot()
    assert splits.current_snapshot()[0] == first
    assert summary["train"]["images"] + summary["validation"]["images"] == 4
    assert sorted(item[0] for item in summary["images"]) == sorted(Image.objects.values_list("pk", flat=True))
    read(study, radiologist, abnormal=False)
    assert splits.current_snapshot()[0] != first


# --- a run, the promotion rule, rollback ------------------------------------------------------------


def test_a_run_trains_on_the_training_pool_scores_the_locked_women_and_promotes(
    champion, cohort, fast_training, radiologist
):
    # The fixture's champion has an untrained head: with a high threshold it misses abnormal images.
    ModelVersion.objects.filter(pk=champion.pk).update(threshold=0.99)
    run_id = training_run.run_training(trigger="manual")
    run = TrainingRun.objects.select_related("candidate").get(pk=run_id)
    assert run.status == "succeeded", run.error
    candidate = run.candidate
    assert candidate.status == "champion", (candidate.note, candidate.metrics["locked_validation"]["scores"])
    assert ModelVersion.objects.get(pk=champion.pk).status == "retired"
    assert candidate.note.startswith(f"Promoted by run #{run.pk}")
    # The data snapshot: which images in which pool, and the locked women never trained on.
    summary = run.data_summary
    assert len(run.snapshot_hash) == 64 and summary["init"] == "fine-tune test-model"
    validation_women = set(Patient.objects.filter(split="validation").values_list("patient_id", flat=True))
    assert len(validation_women) == 4 and summary["validation"]["women"] == 4  # 2 of 6 abnormal, 2 of 6 normal
    assert summary["train"]["women"] == 8 and summary["validation"]["abnormal"] == 2
    locked = candidate.metrics["locked_validation"]
    assert locked["n"] == 8 and locked["n_abnormal"] == 2
    assert locked["auc"] >= ModelVersion.objects.get(pk=champion.pk).metrics["locked_validation"]["auc"] - 0.02
    assert sum(locked["confusion"].values()) == 8 and set(locked["plots"]) == {"roc", "reliability"}
    assert [h["epoch"] for h in run.progress["history"]] == list(range(1, 7))
    assert AuditEvent.objects.filter(action="model_promote", object_id=str(candidate.pk)).exists()
    # Nothing new since: the nightly trigger does not start another run; a new label does.
    assert training_run.run_training(trigger="schedule") is None
    add_woman(40, abnormal=False, radiologist=radiologist)
    assert labels.has_new_labels(splits.current_snapshot()[0])


def test_a_degraded_candidate_is_rejected_with_its_reason(
    trained_checkpoint, degraded_checkpoint, cohort, fast_training
):
    good = register_checkpoint(trained_checkpoint, name="good", promote=True)
    splits.assign_splits()
    locked = [lab for lab in labels.collect_labels() if lab.split == "validation"]
    worse = register_checkpoint(degraded_checkpoint, name="degraded")
    decision = evaluation.challenge(worse, examples=labels.to_examples(locked))
    evaluation.apply_decision(worse, decision, run_id=None)
    worse.refresh_from_db()
    assert worse.status == "rejected" and ModelVersion.objects.get(pk=good.pk).status == "champion"
    assert "validation AUC" in worse.note and "lower than the champion's" in worse.note
    assert worse.metrics["decision"]["outcome"] == "rejected"
    good.refresh_from_db()
    assert worse.metrics["locked_validation"]["auc"] < good.metrics["locked_validation"]["auc"]


def test_a_candidate_with_lower_sensitivity_is_rejected_even_with_the_same_auc():
    champion_metrics = {"auc": 0.80, "sensitivity": 0.90}
    assert evaluation.decide({"auc": 0.80, "sensitivity": 0.90}, champion_metrics)["outcome"] == "promoted"
    assert evaluation.decide({"auc": 0.79, "sensitivity": 0.95}, champion_metrics)["outcome"] == "promoted"  # margin
    lower_sensitivity = evaluation.decide({"auc": 0.85, "sensitivity": 0.85}, champion_metrics)
    assert lower_sensitivity["outcome"] == "rejected"
    assert lower_sensitivity["reasons"] == [
        "sensitivity at the operating point 0.850 is lower than the champion's 0.900"
    ]
    assert evaluation.decide({"auc": 0.70, "sensitivity": 0.95}, champion_metrics)["outcome"] == "rejected"


def test_rollback_restores_the_previous_champion_and_retires_the_current(champion, test_checkpoint, admin_user):
    newer = register_checkpoint(test_checkpoint, name="newer")
    promotion.promote(version=newer, user=admin_user)
    assert ModelVersion.objects.get(pk=champion.pk).status == "retired"
    restored = promotion.rollback(user=admin_user)
    assert restored == champion
    assert ModelVersion.objects.get(pk=champion.pk).status == "champion"
    assert ModelVersion.objects.get(pk=newer.pk).status == "retired"
    assert AuditEvent.objects.filter(action="model_rollback", username="boss").exists()
    with pytest.raises(Conflict):
        promotion.promote(version=champion, user=admin_user)


def test_moving_the_operating_point_reflags_the_studies_it_scored(champion, admin_user):
    study = add_woman(1, abnormal=False)
    Study.objects.filter(pk=study.pk).update(exam_score=0.4, score_left=0.4, exam_flag=False, exam_model=champion)
    promotion.set_operating_point(version=champion, threshold=0.3, user=admin_user)
    assert Study.objects.get(pk=study.pk).exam_flag is True
    assert ModelVersion.objects.get(pk=champion.pk).threshold == 0.3
    with pytest.raises(PortalError):
        promotion.set_operating_point(version=champion, threshold=1.5, user=admin_user)


# --- failures and the one-run rule ------------------------------------------------------------------


def test_a_training_crash_fails_the_run_with_its_reason_and_the_champion_keeps_serving(
    champion, cohort, fast_training, monkeypatch
):
    import ml.train

    def out_of_memory(*args, **kwargs):
        raise MemoryError("cannot allocate 64 GiB")

    monkeypatch.setattr(ml.train, "fit", out_of_memory)
    versions = ModelVersion.objects.count()
    run = TrainingRun.objects.get(pk=training_run.run_training(trigger="manual"))
    assert run.status == "failed" and run.error.startswith("out of memory while training")
    assert ModelVersion.objects.get(status="champion") == champion
    assert ModelVersion.objects.count() == versions  # no candidate left behind


def test_a_run_past_its_time_limit_fails_and_leaves_the_champion(champion, cohort, fast_training):
    fast_training.PORTAL_TRAINING_SOFT_TIME_LIMIT = 0
    run = TrainingRun.objects.get(pk=training_run.run_training(trigger="manual"))
    assert run.status == "failed" and run.error.startswith("timed out")
    assert ModelVersion.objects.get(status="champion") == champion


def test_too_few_labels_fail_the_run_with_an_explanation(champion, radiologist, fast_training):
    add_woman(1, abnormal=False, radiologist=radiologist)
    run = TrainingRun.objects.get(pk=training_run.run_training(trigger="manual"))
    assert run.status == "failed" and "needs normal and abnormal images" in run.error


@pytest.mark.django_db(transaction=True, serialized_rollback=True)  # the run is sent on commit, as in a real request
@pytest.mark.parametrize("page", ["models-train", "admin:screening_trainingrun_start"])
def test_train_now_says_when_the_run_failed_at_once(client, champion, admin_user, radiologist, fast_training, page):
    from django.contrib.messages import get_messages
    from django.urls import reverse

    from tests.eager import tasks_in_process

    add_woman(1, abnormal=False, radiologist=radiologist)  # one class only: the run cannot train
    client.force_login(admin_user)
    with tasks_in_process("screening.tasks.retrain"):  # embedded mode: the run is tried within the request
        response = client.post(reverse(page))
    run = TrainingRun.objects.get()
    assert run.status == "failed"
    [message] = [(m.level_tag, str(m)) for m in get_messages(response.wsgi_request)]
    assert message[0] == "error" and message[1].startswith(f"Training run #{run.pk} failed at once: ")
    assert "needs normal and abnormal images" in message[1] and "queued" not in message[1]


def test_a_run_left_for_a_training_worker_is_reported_queued(champion):
    run = training.trigger_run(trigger="admin", enqueue=False)  # what a page sees with a broker and busy workers
    assert training.started_message(run) == (
        f"Training run #{run.pk} queued; its progress shows below once a training worker takes it."
    )


def test_a_stuck_run_is_released_and_a_new_run_can_start(settings):
    stuck = TrainingRun.objects.create(
        status="running", started=timezone.now() - timedelta(hours=2), progress={"heartbeat": 0}
    )
    with pytest.raises(Conflict):  # running and fresh: no second run
        TrainingRun.objects.filter(pk=stuck.pk).update(progress={"heartbeat": timezone.now().timestamp()})
        training.trigger_run(trigger="api", enqueue=False)
    TrainingRun.objects.filter(pk=stuck.pk).update(progress={"heartbeat": timezone.now().timestamp() - 3600})
    settings.PORTAL_TRAINING_STALE_SECONDS = 600
    run = training.trigger_run(trigger="api", enqueue=False)
    stuck.refresh_from_db()
    assert stuck.status == "failed" and stuck.error.startswith("stuck")
    assert run.status == "queued"


def test_a_run_is_claimed_once(champion):
    run = training.trigger_run(trigger="api", enqueue=False)
    assert training_run._claim(run.pk) is True
    assert training_run.run_training(run_id=run.pk) is None  # a redelivered task finds it taken
    other = TrainingRun.objects.create()
    assert training_run._claim(other.pk) is False  # the database allows one running run
    other.refresh_from_db()
    assert other.status == "failed" and "was running" in other.error


def test_the_nightly_schedule_exists_after_migrations():
    from django_celery_beat.models import PeriodicTask

    nightly = PeriodicTask.objects.get(name="nightly-retrain")
    assert nightly.task == "screening.tasks.retrain" and nightly.enabled
    assert (nightly.crontab.hour, nightly.crontab.minute) == ("2", "0")
    assert str(nightly.crontab.timezone) == "Europe/London"
    sweeper = PeriodicTask.objects.get(name="sweep-stuck-predictions")
    assert (sweeper.interval.every, sweeper.interval.period) == (60, "seconds")


# --- API and the registry page (admins only) -------------------------------------------------------


@pytest.fixture
def admin_api(admin_user):
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=admin_user).key}")
    return client


def test_a_radiologist_cannot_promote_roll_back_or_train(champion, rad_api, test_checkpoint):
    other = register_checkpoint(test_checkpoint, name="other")
    assert rad_api.get("/api/v1/models/").status_code == 403
    assert rad_api.post(f"/api/v1/models/{other.pk}/promote/").status_code == 403
    assert rad_api.post("/api/v1/models/rollback/").status_code == 403
    assert rad_api.post("/api/v1/training-runs/").status_code == 403
    assert ModelVersion.objects.get(pk=champion.pk).status == "champion"
    assert not TrainingRun.objects.exists()


def test_admins_promote_roll_back_and_move_the_operating_point_through_the_api(champion, admin_api, test_checkpoint):
    other = register_checkpoint(test_checkpoint, name="other")
    promoted = admin_api.post(f"/api/v1/models/{other.pk}/promote/", {}, format="json")
    assert promoted.status_code == 200 and promoted.json()["status"] == "champion"
    again = admin_api.post(f"/api/v1/models/{other.pk}/promote/", {}, format="json")
    assert again.status_code == 409 and again.json()["error"]["code"] == "conflict"
    rolled = admin_api.post("/api/v1/models/rollback/", {}, format="json")
    assert rolled.status_code == 200 and rolled.json()["name"] == "test-model"
    moved = admin_api.post(f"/api/v1/models/{champion.pk}/operating-point/", {"threshold": 0.42}, format="json")
    assert moved.status_code == 200 and moved.json()["version"]["threshold"] == 0.42
    assert set(moved.json()["trade_off"]) >= {"sensitivity", "specificity", "recall_rate"}
    bad = admin_api.post(f"/api/v1/models/{champion.pk}/operating-point/", {"threshold": 2}, format="json")
    assert bad.status_code == 400 and "threshold" in bad.json()["error"]["fields"]
    listed = admin_api.get("/api/v1/models/").json()["results"]
    # newest first; the shipped baseline that migrate made champion comes last, retired
    assert [(v["name"], v["status"]) for v in listed][:2] == [("other", "retired"), ("test-model", "champion")]


def test_an_api_trigger_queues_one_run_at_a_time(champion, admin_api, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        first = admin_api.post("/api/v1/training-runs/")
    assert first.status_code == 202 and first.json()["status"] == "queued" and len(callbacks) == 1
    second = admin_api.post("/api/v1/training-runs/")
    assert second.status_code == 409 and f"#{first.json()['id']}" in second.json()["error"]["message"]
    assert admin_api.get(f"/api/v1/training-runs/{first.json()['id']}/").json()["triggered_by"] == "api"


def test_the_registry_page_shows_versions_metrics_plots_and_the_running_run(
    client, admin_user, radiologist, trained_checkpoint, degraded_checkpoint, cohort, fast_training
):
    good = register_checkpoint(trained_checkpoint, name="good", promote=True)
    worse = register_checkpoint(degraded_checkpoint, name="degraded")
    splits.assign_splits()
    locked = [lab for lab in labels.collect_labels() if lab.split == "validation"]
    evaluation.apply_decision(worse, evaluation.challenge(worse, examples=labels.to_examples(locked)))
    running = TrainingRun.objects.create(
        status="running", started=timezone.now(), progress={"stage": "train", "epoch": 2, "epochs": 6, "loss": 0.5}
    )
    client.force_login(radiologist)
    assert client.get("/models/").status_code == 403
    assert client.get(f"/models/{good.pk}/plots/roc.png").status_code == 403
    client.force_login(admin_user)
    page = client.get(f"/models/?a={good.pk}&b={worse.pk}").content.decode()
    assert "good" in page and "degraded" in page and "Rejected" in page
    good.refresh_from_db()
    assert f"{good.metrics['locked_validation']['auc']:.3f}" in page
    assert f"/models/{good.pk}/plots/roc.png" in page and "Confusion at the threshold" in page
    plot = client.get(f"/models/{good.pk}/plots/reliability.png")
    assert plot.status_code == 200 and plot["Content-Type"] == "image/png"
    assert b"".join(plot.streaming_content).startswith(b"\x89PNG")
    status = client.get(f"/models/runs/{running.pk}.json").json()
    assert status["status"] == "running" and status["progress"]["epoch"] == 2


def test_a_labelled_folder_seeds_reviews_pools_and_hints(tmp_path, settings):
    from django.core.management import call_command

    from tests.ml.phantoms import write_folder

    settings.PORTAL_VALIDATION_FRACTION = 0.5
    images, labels_csv, findings_csv = write_folder(tmp_path / "base", n_patients=4)
    out = io.StringIO()
    call_command("seed_labels", str(images.parent), labels=labels_csv, findings=findings_csv, stdout=out)
    assert "8 images, 4 new reviews" in out.getvalue()
    found = labels.collect_labels()
    assert sorted(lab.label for lab in found) == [0] * 6 + [1] * 2  # one abnormal left breast in pat01 and pat03
    abnormal = [lab for lab in found if lab.label]
    assert all(len(lab.findings) == 1 and lab.findings[0][2] == 22 for lab in abnormal)
    assert dict(Patient.objects.values_list("split").annotate(n=Count("id")).order_by()) == {
        "train": 2,
        "validation": 2,
    }
    call_command("seed_labels", str(images.parent), labels=labels_csv, stdout=io.StringIO())
    assert Review.objects.count() == 4  # running it again changes nothing


def test_the_nightly_task_without_new_labels_starts_no_run(champion, radiologist):
    from screening.tasks import retrain

    assert retrain.apply(kwargs={"trigger": "schedule"}).get() is None
    assert not TrainingRun.objects.exists()
    add_woman(1, abnormal=False, radiologist=radiologist)  # a label, but not enough to train on
    failed = TrainingRun.objects.get(pk=retrain.apply(kwargs={"trigger": "schedule"}).get())
    assert failed.status == "failed" and failed.triggered_by == "schedule"
    assert retrain.apply(kwargs={"trigger": "schedule"}).get() is None  # the same labels: not every night again
    assert TrainingRun.objects.count() == 1


def test_the_retrain_command_queues_a_run_and_releases_stuck_ones(
    champion, settings, django_capture_on_commit_callbacks
):
    from django.core.management import call_command

    out = io.StringIO()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        call_command("retrain", stdout=out)
    run = TrainingRun.objects.get()
    assert f"training run #{run.pk} queued" in out.getvalue() and len(callbacks) == 1
    TrainingRun.objects.filter(pk=run.pk).update(created=timezone.now() - timedelta(days=2))
    settings.PORTAL_TRAINING_QUEUED_STALE_SECONDS = 3600
    call_command("retrain", "--release-stuck", stdout=out)
    run.refresh_from_db()
    assert run.status == "failed" and run.error.startswith("never started")


# --- the Django admin: read-only registry, changes through the services ------------------------------


@pytest.fixture
def superuser(db, django_user_model):
    return django_user_model.objects.create_superuser(username="root", password="a-long-test-password", email="")


def test_nobody_changes_a_model_version_or_a_training_run_in_the_admin(client, superuser, champion):
    run = TrainingRun.objects.create(status="failed", error="out of memory")
    client.force_login(superuser)
    page = f"/admin/screening/modelversion/{champion.pk}/change/"
    assert client.get(page).status_code == 200
    forged = {"name": "test-model", "status": "retired", "threshold": "0.01", "checkpoint": "x.pt", "note": "edited"}
    assert client.post(page, forged).status_code == 403
    champion.refresh_from_db()
    assert (champion.status, champion.threshold, champion.note) == ("champion", 0.5, "")
    assert client.post(f"/admin/screening/trainingrun/{run.pk}/change/", {"status": "succeeded"}).status_code == 403
    assert TrainingRun.objects.get(pk=run.pk).status == "failed"
    for url in (
        "/admin/screening/modelversion/add/",
        f"/admin/screening/modelversion/{champion.pk}/delete/",
        "/admin/screening/trainingrun/add/",
        f"/admin/screening/trainingrun/{run.pk}/delete/",
    ):
        assert client.post(url, {"post": "yes"}).status_code == 403, url
    assert ModelVersion.objects.filter(pk=champion.pk).exists() and TrainingRun.objects.filter(pk=run.pk).exists()
    assert not AuditEvent.objects.filter(action__startswith="model_", username="root").exists()


def test_the_admin_shows_whether_a_version_can_serve_and_why_not(client, superuser, champion):
    ModelVersion.objects.filter(pk=champion.pk).update(servable=False, load_error="checkpoint is truncated")
    client.force_login(superuser)
    page = client.get("/admin/screening/modelversion/").content.decode()
    assert "column-servable" in page and "checkpoint is truncated" in page


def test_promoting_in_the_admin_goes_through_the_service_and_is_audited(client, superuser, champion, test_checkpoint):
    other = register_checkpoint(test_checkpoint, name="other")
    client.force_login(superuser)
    answer = client.post(
        "/admin/screening/modelversion/", {"action": "promote_selected", "_selected_action": [other.pk], "index": 0}
    )
    assert answer.status_code == 302
    assert ModelVersion.objects.get(pk=other.pk).status == "champion"
    assert ModelVersion.objects.get(pk=champion.pk).status == "retired"
    event = AuditEvent.objects.get(action="model_promote", object_id=str(other.pk), username="root")
    assert event.detail == {"automatic": False, "previous": "test-model"}


def test_the_admin_rolls_back_moves_the_operating_point_re_predicts_and_starts_a_run_through_the_services(
    client, superuser, champion, test_checkpoint, django_capture_on_commit_callbacks
):
    study = add_woman(1, abnormal=False)  # predicted by the champion, test-model
    other = register_checkpoint(test_checkpoint, name="other")
    promotion.promote(version=other, user=superuser)
    client.force_login(superuser)
    assert client.post("/admin/screening/modelversion/rollback/").status_code == 302
    assert ModelVersion.objects.get(pk=champion.pk).status == "champion"
    assert AuditEvent.objects.filter(action="model_rollback", username="root").exists()

    bad = client.post(f"/admin/screening/modelversion/{champion.pk}/operating-point/", {"threshold": "7"}, follow=True)
    assert "threshold must be between 0 and 1" in bad.content.decode()
    client.post(f"/admin/screening/modelversion/{champion.pk}/operating-point/", {"threshold": "0.3"})
    assert ModelVersion.objects.get(pk=champion.pk).threshold == 0.3
    assert AuditEvent.objects.get(action="model_threshold", username="root").detail == {"from": 0.5, "to": 0.3}

    with django_capture_on_commit_callbacks(execute=False):
        client.post(
            "/admin/screening/modelversion/", {"action": "repredict_unread", "_selected_action": [other.pk], "index": 0}
        )
    assert Prediction.objects.filter(image__study=study, model_version=other, status="queued").count() == 2
    assert AuditEvent.objects.get(action="model_repredict", username="root").detail == {"images": 2}

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert client.post("/admin/screening/trainingrun/start/").status_code == 302
    run = TrainingRun.objects.get()
    assert (run.status, run.triggered_by, len(callbacks)) == ("queued", "admin", 1)
    assert AuditEvent.objects.filter(action="training_trigger", object_id=str(run.pk), username="root").exists()
    assert client.get("/admin/screening/trainingrun/start/").status_code == 405  # a change is a POST


def test_a_staff_member_outside_the_admin_role_cannot_use_the_registry_actions(
    client, django_user_model, champion, test_checkpoint
):
    from django.contrib.auth.models import Permission

    other = register_checkpoint(test_checkpoint, name="other")
    staff = django_user_model.objects.create_user(username="clerk", password="a-long-test-password", is_staff=True)
    staff.user_permissions.set(Permission.objects.filter(codename__in=["view_modelversion", "view_trainingrun"]))
    client.force_login(staff)
    listing = client.get("/admin/screening/modelversion/")
    assert listing.status_code == 200 and b"promote_selected" not in listing.content
    client.post("/admin/screening/modelversion/", {"action": "promote_selected", "_selected_action": [other.pk]})
    assert client.post("/admin/screening/modelversion/rollback/").status_code == 403
    assert (
        client.post(f"/admin/screening/modelversion/{champion.pk}/operating-point/", {"threshold": "0.3"}).status_code
        == 403
    )
    assert client.post("/admin/screening/trainingrun/start/").status_code == 403
    champion.refresh_from_db()
    assert (champion.status, champion.threshold) == ("champion", 0.5)
    assert ModelVersion.objects.get(pk=other.pk).status == "challenger" and not TrainingRun.objects.exists()
    assert not AuditEvent.objects.filter(username="clerk").exists()
