"""What the monitoring page and the API show of one model version: numbers and the plots drawn from them.

One function builds both, so the page and the API cannot disagree.
"""

from __future__ import annotations

from django.conf import settings

from screening.models import ModelVersion, MonitoringAlert, MonitoringRun
from screening.monitoring import selectors
from screening.monitoring.drift import FEATURES
from screening.monitoring.plots import line_plot, shares_plot
from screening.monitoring.subgroups import DIMENSIONS
from screening.svg_plots import interval_plot


def _measure(m) -> dict:
    return {
        "feature": m.feature,
        "site": m.site or None,
        "source": m.source or None,
        "psi": m.value,
        "threshold": m.threshold,
        "n": m.n,
        "n_reference": m.n_reference,
        "drifted": m.drifted,
        "too_few": m.value is None,
        "bins": m.bins,
    }


def alert_dict(alert: MonitoringAlert) -> dict:
    ack = getattr(alert, "acknowledgement", None)
    return {
        "id": alert.pk,
        "model": alert.model_version.name,
        "kind": alert.kind,
        "key": alert.key,
        "message": alert.message,
        "value": alert.value,
        "threshold": alert.threshold,
        "created": alert.created.isoformat(),
        "run": alert.run_id,
        "acknowledged": (
            {"by": ack.user.get_username(), "at": ack.created.isoformat(), "note": ack.note} if ack else None
        ),
    }


def run_dict(run: MonitoringRun) -> dict:
    return {
        "id": run.pk,
        "model": run.model_version.name,
        "status": run.status,
        "triggered_by": run.triggered_by,
        "created": run.created.isoformat(),
        "finished": run.finished.isoformat() if run.finished else None,
        "window_start": run.window_start.isoformat() if run.window_start else None,
        "window_end": run.window_end.isoformat() if run.window_end else None,
        "error": run.error,
    }


AXES = {
    "sensitivity": "cancers flagged, of exams with a cancer",
    "specificity": "exams not flagged, of exams without a cancer",
    "recall_rate": "exams flagged at the operating point",
}


def _subgroup_plots(subgroups: dict) -> dict[str, str]:
    plots = {}
    for dimension in DIMENSIONS:
        values = (subgroups.get("groups") or {}).get(dimension) or {}
        for metric in ("sensitivity", "specificity", "recall_rate"):
            rows = [(f"{value}{' *' if f['too_few'] else ''}", f[metric]) for value, f in values.items()]
            plots[f"{dimension}_{metric}"] = interval_plot(
                f"{metric.replace('_', ' ').capitalize()} by {dimension.replace('_', ' ')} (* too few cases)",
                rows,
                axis=AXES[metric],
                upper=1.0,
                scale=100,
                unit="%",
            )
    return plots


def dashboard(version: ModelVersion) -> dict:
    """The version's latest run (drift table, subgroups), its history plots and its alerts."""
    latest = selectors.latest_done_run(version)
    drift = selectors.drift_history(version)
    scores = selectors.score_history(version)
    measures = [_measure(m) for m in selectors.measures_of(latest)] if latest else []
    subgroups = latest.subgroups if latest else {}
    overall = {m["feature"]: m for m in measures if m["site"] is None and m["source"] is None}
    # A new vendor gives PSI in the tens: a capped axis keeps the threshold and the stable features readable.
    psi_axis = max(1.0, 4 * settings.PORTAL_MONITORING_PSI_THRESHOLD)
    plots = {
        "drift_over_time": line_plot(
            f"Drift (PSI) per feature, whole programme (axis capped at {psi_axis:g})",
            {f: drift.get(f, []) for f in FEATURES},
            threshold=settings.PORTAL_MONITORING_PSI_THRESHOLD,
            upper=psi_axis,
        ),
        "scores_over_time": line_plot(
            "Image score quantiles per run (p10, p50, p90) and flag rate",
            {
                **{q: [(t, s["quantiles"][q]) for t, s in scores if s.get("quantiles")] for q in ("p10", "p50", "p90")},
                "flag rate": [(t, s.get("flag_rate")) for t, s in scores],
            },
            threshold=version.threshold,
            upper=1.0,
        ),
    }
    if "score" in overall:
        plots["score_distribution"] = shares_plot("Score distribution, latest window", overall["score"]["bins"])
    if "manufacturer" in overall:
        plots["manufacturer_distribution"] = shares_plot("Manufacturer, latest window", overall["manufacturer"]["bins"])
    if subgroups:
        plots.update(_subgroup_plots(subgroups))
    return {
        "model": {"id": version.pk, "name": version.name, "status": version.status, "threshold": version.threshold},
        "settings": {
            "measure": "population stability index (PSI)",
            "psi_threshold": settings.PORTAL_MONITORING_PSI_THRESHOLD,
            "window_days": settings.PORTAL_MONITORING_WINDOW_DAYS,
            "min_images": settings.PORTAL_MONITORING_MIN_IMAGES,
            "min_cases": settings.PORTAL_MONITORING_MIN_CASES,
        },
        "latest_run": run_dict(latest) if latest else None,
        "reference": (
            {k: latest.reference.get(k) for k in ("basis", "complete", "n")} if latest and latest.reference else None
        ),
        "score_summary": latest.score_summary if latest else None,
        "drift": measures,
        "subgroups": subgroups,
        "drift_history": {
            f: [{"at": t.isoformat(), "psi": v} for t, v in values] for f, values in drift.items() if values
        },
        "score_history": [{"at": t.isoformat(), **s} for t, s in scores],
        "runs": [run_dict(r) for r in selectors.runs_of(version, 20)],
        "alerts": [alert_dict(a) for a in selectors.recent_alerts(version)],
        "plots": {name: str(svg) for name, svg in plots.items()},
    }
