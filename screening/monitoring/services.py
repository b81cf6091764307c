"""Monitoring writes: a run (image statistics, drift against the reference, subgroup performance),
its alerts (audited, optionally e-mailed), and admins' acknowledgements (audited).

Called by the Celery tasks (nightly beat and on-demand runs), the page and the API alike.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime, timedelta

import numpy as np
from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.utils import timezone

from screening import dispatch
from screening.audit import actions
from screening.audit.services import record_event
from screening.errors import Conflict, PortalError
from screening.models import (
    AlertAcknowledgement,
    DriftMeasure,
    Image,
    ModelVersion,
    MonitoringAlert,
    MonitoringRun,
)
from screening.monitoring import selectors
from screening.monitoring.drift import FEATURES, Reference, measure, reference_of
from screening.monitoring.image_stats import compute_stats
from screening.monitoring.subgroups import by_subgroup, sensitivity_below

log = logging.getLogger(__name__)

RUN_TASK = "screening.monitoring.tasks.run_monitoring"
# A run still queued or running this long after it was made is dead (the task's hard limit is 1 h, the nightly
# task's 4 h): it is failed, so it blocks neither "Run now" nor the next night.
STALE_AFTER = timedelta(hours=6)


def release_stale_runs(now: datetime | None = None) -> int:
    cutoff = (now or timezone.now()) - STALE_AFTER
    return MonitoringRun.objects.filter(
        status__in=[MonitoringRun.Status.QUEUED, MonitoringRun.Status.RUNNING], created__lt=cutoff
    ).update(
        status=MonitoringRun.Status.FAILED,
        error="abandoned: its worker stopped or the queue lost it",
        finished=timezone.now(),
    )


# --- starting runs ---------------------------------------------------------------------------------


def request_run(*, version: ModelVersion, user, ip_address: str | None = None) -> MonitoringRun:
    """An admin asks for a run now: queued for the worker, audited. One queued or running run per version
    (a partial unique constraint holds it against two requests at once)."""
    release_stale_runs()
    try:
        with transaction.atomic():
            run = MonitoringRun.objects.create(model_version=version, triggered_by="admin", requested_by=user)
            record_event(
                action=actions.MONITORING_RUN, user=user, obj=run, ip_address=ip_address, detail={"model": version.name}
            )
            dispatch.after_commit(RUN_TASK, run.pk)
    except IntegrityError:
        raise Conflict(f"a monitoring run of {version.name} is already queued or running") from None
    return run


def run_nightly(now: datetime | None = None) -> list[int]:
    """Beat, nightly: one run per monitored version (the champion and any version still predicting)."""
    release_stale_runs(now)
    ids = []
    for version in selectors.monitored_versions():
        try:
            run = MonitoringRun.objects.create(model_version=version, triggered_by="schedule")
        except IntegrityError:  # an admin's run of it is queued or running: that one serves tonight
            continue
        try:
            run_monitoring(run.pk, now=now)
        except Exception:  # one version's failure must not stop the others' monitoring
            log.exception("monitoring run %s failed", run.pk)
            fail_run(run.pk, "the run stopped on an internal error (see the worker's log)")
        ids.append(run.pk)
    return ids


# --- one run -------------------------------------------------------------------------------------


def _claim(run_id: int) -> MonitoringRun | None:
    claimed = MonitoringRun.objects.filter(pk=run_id, status=MonitoringRun.Status.QUEUED).update(
        status=MonitoringRun.Status.RUNNING
    )
    return MonitoringRun.objects.select_related("model_version").get(pk=run_id) if claimed else None


def _sample(rows: list[dict]) -> list[dict]:
    """At most PORTAL_MONITORING_MAX_IMAGES rows, the same ones night after night (chosen by a hash of the image
    id, so a sliding window keeps most of yesterday's sample and its statistics need computing only once). PSI
    does not grow with n: a few thousand images measure a shift as well as all of them."""
    limit = settings.PORTAL_MONITORING_MAX_IMAGES
    if len(rows) <= limit:
        return rows
    return sorted(rows, key=lambda r: hashlib.sha256(str(r["image_id"]).encode()).digest())[:limit]


def _ensure_stats(image_ids) -> None:
    missing = selectors.images_without_stats(image_ids)
    for image in Image.objects.filter(pk__in=missing):
        compute_stats(image)


def _reference(version: ModelVersion) -> dict:
    """The distributions the version is compared with, frozen at its first complete run.

    Its locked validation women's images as scored at promotion when the portal holds them; otherwise
    (a version validated outside the portal, such as the shipped baseline) its first
    PORTAL_MONITORING_REFERENCE_IMAGES images in service, which stands for the data it went live on.
    """
    frozen = selectors.frozen_reference(version)
    if frozen is not None:
        return frozen
    wanted = settings.PORTAL_MONITORING_REFERENCE_IMAGES
    locked = selectors.locked_reference_scores(version)
    if len(locked) >= settings.PORTAL_MONITORING_MIN_IMAGES:
        rows = _sample(selectors.locked_rows(locked))
        _ensure_stats([r["image_id"] for r in rows])
        rows = selectors.locked_rows({r["image_id"]: locked[r["image_id"]] for r in rows})
        basis = f"locked validation set ({len(rows)} images)"
        complete = len(rows) >= settings.PORTAL_MONITORING_MIN_IMAGES
    else:
        rows = selectors.first_rows(version, wanted)
        _ensure_stats([r["image_id"] for r in rows])
        rows = selectors.rows_for_images(version, [r["image_id"] for r in rows])
        basis = f"first {len(rows)} images predicted in service"
        complete = len(rows) >= wanted
    return {
        "basis": basis,
        "complete": complete,
        "n": len(rows),
        "image_ids": sorted(r["image_id"] for r in rows),
        "features": {f: reference_of(f, selectors.feature_values(rows, f)).to_dict() for f in FEATURES},
    }


def _score_summary(rows: list[dict], threshold: float) -> dict:
    scores = np.array([r["score"] for r in rows], dtype=float)
    if not scores.size:
        return {"n": 0}
    q = np.quantile(scores, [0.1, 0.25, 0.5, 0.75, 0.9])
    return {
        "n": int(scores.size),
        "quantiles": dict(zip(("p10", "p25", "p50", "p75", "p90"), [round(float(v), 6) for v in q], strict=True)),
        "flag_rate": float((scores >= threshold).mean()),
    }


def _groups(rows: list[dict]) -> list[tuple[str, str, list[dict]]]:
    """(site, source, rows): the whole programme ("", ""), then each site, then each source."""
    groups = [("", "", rows)]
    for site in sorted({r["site"] or "" for r in rows}):
        groups.append((site, "", [r for r in rows if (r["site"] or "") == site]))
    for source in sorted({r["source"] or "" for r in rows}):
        groups.append(("", source or "unknown", [r for r in rows if (r["source"] or "") == source]))
    return groups


def _drift(run: MonitoringRun, reference: dict, rows: list[dict]) -> list[DriftMeasure]:
    threshold = settings.PORTAL_MONITORING_PSI_THRESHOLD
    min_n = settings.PORTAL_MONITORING_MIN_IMAGES
    measures = []
    for site, source, members in _groups(rows):
        for feature in FEATURES:
            ref = Reference.from_dict(reference["features"][feature])
            result = measure(ref, selectors.feature_values(members, feature), min_n=min_n)
            measures.append(
                DriftMeasure(
                    run=run,
                    feature=feature,
                    site=site,
                    source=source,
                    value=result.value,
                    threshold=threshold,
                    n=result.n,
                    n_reference=result.n_reference,
                    drifted=result.drifted(threshold),
                    bins=[list(b) for b in result.bins],
                )
            )
    return DriftMeasure.objects.bulk_create(measures)


def _drift_alert(m: DriftMeasure) -> tuple[str, str]:
    where = ", ".join(p for p in (f"site {m.site}" if m.site else "", f"source {m.source}" if m.source else "") if p)
    kind = "output" if m.feature == "score" else "input"
    text = (
        f"{kind} drift in {m.feature.replace('_', ' ')}"
        f"{' (' + where + ')' if where else ''}: PSI {m.value:.2f} > {m.threshold:.2f} over {m.n} images"
    )
    return f"drift:{m.feature}:{m.site or '*'}:{m.source or '*'}", text


def _subgroup_alerts(version: ModelVersion, subgroups: dict) -> list[tuple[str, str, float, float]]:
    validated = subgroups.get("validated_sensitivity")
    if validated is None:
        return []
    found = []
    candidates = [("all", "all", subgroups["all"])] + [
        (dimension, value, figures)
        for dimension, values in subgroups["groups"].items()
        for value, figures in values.items()
    ]
    for dimension, value, figures in candidates:
        if sensitivity_below(figures, validated):
            s = figures["sensitivity"]
            found.append(
                (
                    f"sensitivity:{dimension}={value}",
                    f"sensitivity {s['value']:.2f} [{s['low']:.2f}, {s['high']:.2f}] in {dimension.replace('_', ' ')} "
                    f"{value} ({s['k']}/{s['n']} cancers flagged) is below the validated {validated:.2f}",
                    s["value"],
                    validated,
                )
            )
    return found


def _raise_alerts(run: MonitoringRun, measures: list[DriftMeasure]) -> list[MonitoringAlert]:
    version = run.model_version
    raised: list[tuple[str, str, str, float | None, float | None]] = [
        (MonitoringAlert.Kind.DRIFT, *_drift_alert(m), m.value, m.threshold) for m in measures if m.drifted
    ]
    raised += [(MonitoringAlert.Kind.SENSITIVITY, *a) for a in _subgroup_alerts(version, run.subgroups)]
    alerts = []
    for kind, key, message, value, threshold in raised:
        if selectors.alert_suppressed(version, key):
            continue
        alert = MonitoringAlert.objects.create(
            run=run, model_version=version, kind=kind, key=key, message=message[:300], value=value, threshold=threshold
        )
        record_event(
            action=actions.MONITORING_ALERT,
            obj=alert,
            detail={"model": version.name, "kind": kind, "key": key, "value": value, "threshold": threshold},
        )
        alerts.append(alert)
    if alerts and settings.PORTAL_MONITORING_ALERT_EMAILS:
        transaction.on_commit(lambda: _email(version.name, [a.message for a in alerts]))
    return alerts


def _email(model: str, messages: list[str]) -> None:
    """Alert e-mail through Django's backend: feature names, site codes and figures only, never patient data."""
    body = "\n".join(f"- {m}" for m in messages) + "\n\nAcknowledge them on the portal's monitoring page."
    try:
        send_mail(
            f"[screening portal] {len(messages)} monitoring alert(s) for model {model}",
            body,
            None,
            settings.PORTAL_MONITORING_ALERT_EMAILS,
        )
    except Exception as exc:  # a mail server that is down must not fail the run: the banner still shows
        log.warning("monitoring alert e-mail could not be sent: %s", type(exc).__name__)


def run_monitoring(run_id: int, *, now: datetime | None = None) -> str:
    """Compute one run: the window's drift against the reference, subgroup performance, alerts."""
    run = _claim(run_id)
    if run is None:
        return "not queued"
    version = run.model_version
    end = now or timezone.now()
    start = end - timedelta(days=settings.PORTAL_MONITORING_WINDOW_DAYS)
    try:
        reference = _reference(version)
        exclude = set(reference["image_ids"])
        sample = {r["image_id"] for r in _sample(selectors.window_rows(version, start, end, exclude))}
        _ensure_stats(sorted(sample))
        rows = [r for r in selectors.window_rows(version, start, end, exclude) if r["image_id"] in sample]
        subgroups = by_subgroup(selectors.cases_for(version), min_cases=settings.PORTAL_MONITORING_MIN_CASES)
        subgroups["validated_sensitivity"] = selectors.validated_sensitivity(version)
        with transaction.atomic():
            run.window_start, run.window_end = start, end
            run.reference = reference
            run.subgroups = subgroups
            run.score_summary = _score_summary(rows, version.threshold)
            measures = _drift(run, reference, rows) if reference["complete"] else []
            alerts = _raise_alerts(run, measures)
            run.status = MonitoringRun.Status.DONE
            run.finished = timezone.now()
            run.save()
    except PortalError as exc:
        fail_run(run_id, exc.message)
        return "failed"
    log.info("monitoring run %s of %s: %d alert(s)", run.pk, version.name, len(alerts))
    return "done"


def fail_run(run_id: int, reason: str) -> None:
    MonitoringRun.objects.filter(pk=run_id).exclude(status=MonitoringRun.Status.DONE).update(
        status=MonitoringRun.Status.FAILED, error=reason[:1000], finished=timezone.now()
    )


# --- acknowledgement ------------------------------------------------------------------------------


def acknowledge(*, alert: MonitoringAlert, user, note: str = "", ip_address: str | None = None) -> AlertAcknowledgement:
    note = (note or "").strip()
    if len(note) > 500:
        raise PortalError("the note is longer than 500 characters", field="note")
    try:
        with transaction.atomic():
            ack = AlertAcknowledgement.objects.create(alert=alert, user=user, note=note)
            record_event(
                action=actions.MONITORING_ALERT_ACK,
                user=user,
                obj=alert,
                ip_address=ip_address,
                detail={"key": alert.key, "note": note},
            )
    except IntegrityError:
        raise Conflict("this alert is already acknowledged") from None
    return ack
