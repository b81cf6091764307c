"""Monitoring reads: the rows a run measures, the reference, alerts and the history the plots draw."""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime, timedelta

from django.conf import settings
from django.db.models import Q, QuerySet
from django.utils import timezone

from screening.audit import actions
from screening.models import (
    AuditEvent,
    DriftMeasure,
    Image,
    ImageStats,
    ModelVersion,
    MonitoringAlert,
    MonitoringRun,
    Prediction,
    Review,
    Study,
)
from screening.monitoring.drift import FEATURES
from screening.monitoring.subgroups import Case, age_band
from screening.reading.selectors import breast_outcomes

STAT_FIELDS = ("manufacturer", "model_name", "pixel_spacing", "bits_stored", "photometric")
NUMERIC_STATS = ("mean_intensity", "breast_area_cm2")


def validated_sensitivity(version: ModelVersion) -> float | None:
    """The sensitivity the version was validated with: its locked-validation figure, else its operating point's."""
    metrics = version.metrics or {}
    for value in (
        (metrics.get("locked_validation") or {}).get("sensitivity"),
        metrics.get("sensitivity"),
        (metrics.get("operating_point") or {}).get("sensitivity"),
    ):
        if isinstance(value, int | float):
            return float(value)
    return None


def locked_reference_scores(version: ModelVersion) -> dict[int, float]:
    """{image id: probability} of the version on the locked validation women, as scored at promotion."""
    scores = ((version.metrics or {}).get("locked_validation") or {}).get("scores") or []
    found = {}
    for row in scores:
        try:
            found[int(row[2])] = float(row[1])
        except (IndexError, TypeError, ValueError):
            continue  # a score of an image that is not a portal image (the shipped baseline's files)
    return found


ROW_KEYS = ("image_id", "score", "site", *STAT_FIELDS, *NUMERIC_STATS, "source")


def _rows(predictions: QuerySet[Prediction]) -> list[dict]:
    fields = (
        "image_id",
        "probability",
        "image__study__site",
        *[f"image__stats__{f}" for f in (*STAT_FIELDS, *NUMERIC_STATS, "source")],
    )
    return [dict(zip(ROW_KEYS, values, strict=True)) for values in predictions.values_list(*fields)]


def locked_rows(scores: dict[int, float]) -> list[dict]:
    """The locked validation images with the scores the version gave them at promotion (scored offline: they
    need not have a prediction of this version in the portal)."""
    fields = ("pk", "study__site", *[f"stats__{f}" for f in (*STAT_FIELDS, *NUMERIC_STATS, "source")])
    rows = []
    for values in Image.objects.filter(pk__in=list(scores)).order_by("pk").values_list(*fields):
        row = dict(zip(ROW_KEYS, (values[0], scores[values[0]], *values[1:]), strict=True))
        rows.append(row)
    return rows


def predicted(version: ModelVersion) -> QuerySet[Prediction]:
    return Prediction.objects.filter(
        model_version=version, status=Prediction.Status.DONE, probability__isnull=False
    ).order_by("updated", "id")


def rows_for_images(version: ModelVersion, image_ids) -> list[dict]:
    return _rows(predicted(version).filter(image_id__in=list(image_ids)))


def first_rows(version: ModelVersion, n: int) -> list[dict]:
    """The first n images the version predicted in service (the reference when it has no locked scores)."""
    return _rows(predicted(version)[:n])


def window_rows(version: ModelVersion, start: datetime, end: datetime, exclude: set[int]) -> list[dict]:
    rows = _rows(predicted(version).filter(updated__gte=start, updated__lt=end))
    return [r for r in rows if r["image_id"] not in exclude]


def images_without_stats(image_ids) -> list[int]:
    have = set(ImageStats.objects.filter(image_id__in=list(image_ids)).values_list("image_id", flat=True))
    return [i for i in image_ids if i not in have]


def ingest_channel(image_id: int) -> str:
    """How an image came in (dicom, stow, api, upload, import_images...), from its ingest audit event."""
    event = (
        AuditEvent.objects.filter(action=actions.INGEST, object_type="image", object_id=str(image_id))
        .order_by("at")
        .first()
    )
    return str((event.detail or {}).get("via") or "")[:32] if event else ""


def feature_values(rows: list[dict], feature: str) -> list:
    return [row[feature] for row in rows]


def _final_reads(study_ids: list[int]) -> tuple[dict[int, str], dict[int, str]]:
    """Final decision and density per study (the latest final read; density from the latest read giving one)."""
    decisions, densities = {}, {}
    rows = Review.objects.filter(study_id__in=study_ids).order_by("version", "id")
    for study_id, decision, density, is_final in rows.values_list("study_id", "decision", "density", "is_final"):
        if is_final:
            decisions[study_id] = decision
        if density:
            densities[study_id] = density
    return decisions, densities


def _exam_day(study: dict) -> date:
    return study["study_date"] or timezone.localtime(study["created"]).date()


def cases_for(version: ModelVersion) -> list[Case]:
    """Every exam the version scored that has a truth: its outcomes, else the readers' final decision."""
    studies = list(
        Study.objects.filter(exam_model=version, exam_score__isnull=False, exam_flag__isnull=False).values(
            "pk", "exam_score", "exam_flag", "site", "study_date", "created", "patient_id", "patient__birth_date"
        )
    )
    ids = [s["pk"] for s in studies]
    outcomes = breast_outcomes(ids)
    cancer: dict[int, bool] = {}
    for (study_id, _side), result in outcomes.items():
        cancer[study_id] = cancer.get(study_id, False) or result == "malignant"
    decisions, densities = _final_reads(ids)
    vendors: dict[int, Counter] = {}  # "manufacturer model", the model from the image statistics where made
    rows = Image.objects.filter(study_id__in=ids).values_list("study_id", "manufacturer", "stats__model_name")
    for study_id, name, model in rows:
        label = " ".join(p for p in (name, model) if p) or "unknown"
        vendors.setdefault(study_id, Counter())[label] += 1
    # Screening round: the woman's first exam in the portal is round "first", later ones "subsequent".
    women = {s["patient_id"] for s in studies}
    earlier: dict[int, list[date]] = {}
    for row in Study.objects.filter(patient_id__in=women).values("patient_id", "study_date", "created"):
        earlier.setdefault(row["patient_id"], []).append(_exam_day(row))
    cases = []
    for s in studies:
        if s["pk"] in cancer:
            truth, source = cancer[s["pk"]], "outcome"
        elif s["pk"] in decisions:
            truth, source = decisions[s["pk"]] == Review.Decision.ABNORMAL, "reading"
        else:
            continue
        day = _exam_day(s)
        birth = s["patient__birth_date"]
        age = day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day)) if birth else None
        prior = sum(1 for d in earlier.get(s["patient_id"], []) if d < day)
        cases.append(
            Case(
                score=s["exam_score"],
                flag=bool(s["exam_flag"]),
                truth=truth,
                truth_source=source,
                woman=str(s["patient_id"]),
                age_band=age_band(age),
                density=densities.get(s["pk"], "unknown"),
                manufacturer=vendors[s["pk"]].most_common(1)[0][0] if s["pk"] in vendors else "unknown",
                site=s["site"],
                round="first" if prior == 0 else "subsequent",
            )
        )
    return cases


def open_alerts() -> QuerySet[MonitoringAlert]:
    return (
        MonitoringAlert.objects.filter(acknowledgement__isnull=True)
        .select_related("model_version")
        .order_by("-created", "-id")
    )


def alert_suppressed(version: ModelVersion, key: str) -> bool:
    """An alert on the same thing is open, or was acknowledged recently (PORTAL_MONITORING_ACK_DAYS)."""
    since = timezone.now() - timedelta(days=settings.PORTAL_MONITORING_ACK_DAYS)
    return (
        MonitoringAlert.objects.filter(model_version=version, key=key)
        .filter(Q(acknowledgement__isnull=True) | Q(acknowledgement__created__gte=since))
        .exists()
    )


def recent_alerts(version: ModelVersion | None = None, limit: int = 50) -> list[MonitoringAlert]:
    alerts = MonitoringAlert.objects.select_related("model_version", "acknowledgement__user")
    if version is not None:
        alerts = alerts.filter(model_version=version)
    return list(alerts.order_by("-created", "-id")[:limit])


def runs_of(version: ModelVersion, limit: int = 60) -> list[MonitoringRun]:
    return list(MonitoringRun.objects.filter(model_version=version).order_by("-created", "-id")[:limit])


def latest_done_run(version: ModelVersion) -> MonitoringRun | None:
    return (
        MonitoringRun.objects.filter(model_version=version, status=MonitoringRun.Status.DONE)
        .order_by("-created", "-id")
        .first()
    )


def frozen_reference(version: ModelVersion) -> dict | None:
    """The reference of the version's first run that had a complete one: later runs compare with the same."""
    for reference in (
        MonitoringRun.objects.filter(model_version=version, status=MonitoringRun.Status.DONE)
        .order_by("created", "id")
        .values_list("reference", flat=True)
    ):
        if reference and reference.get("complete"):
            return reference
    return None


def drift_history(version: ModelVersion, *, limit: int = 60) -> dict[str, list[tuple[datetime, float | None]]]:
    """Programme-wide PSI per feature, run by run (oldest first), for the drift-over-time plot."""
    runs = runs_of(version, limit)
    ids = [r.pk for r in runs if r.status == MonitoringRun.Status.DONE]
    finished = {r.pk: r.finished or r.created for r in runs}
    history: dict[str, list] = {f: [] for f in FEATURES}
    rows = DriftMeasure.objects.filter(run_id__in=ids, site="", source="").order_by("run__created", "run_id")
    for run_id, feature, value in rows.values_list("run_id", "feature", "value"):
        history.setdefault(feature, []).append((finished[run_id], value))
    return history


def score_history(version: ModelVersion, *, limit: int = 60) -> list[tuple[datetime, dict]]:
    runs = [r for r in runs_of(version, limit) if r.status == MonitoringRun.Status.DONE and r.score_summary]
    return [(r.finished or r.created, r.score_summary) for r in reversed(runs)]


def measures_of(run: MonitoringRun) -> list[DriftMeasure]:
    return list(run.measures.order_by("site", "source", "feature"))


def monitored_versions() -> list[ModelVersion]:
    """The champion and every version with predictions in the current window (a challenger shadowing it)."""
    since = timezone.now() - timedelta(days=settings.PORTAL_MONITORING_WINDOW_DAYS)
    ids = set(
        Prediction.objects.filter(status=Prediction.Status.DONE, updated__gte=since).values_list(
            "model_version_id", flat=True
        )
    )
    return list(
        ModelVersion.objects.filter(Q(status=ModelVersion.Status.CHAMPION) | Q(pk__in=ids)).order_by("-created")
    )
