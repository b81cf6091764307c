"""The model registry page (admins): versions, metrics and plots, comparison, operating point, training runs.

Thin: reads come from screening.ai.selectors, writes go through the promotion and
training services; errors come back as messages on the page.
"""

from __future__ import annotations

from functools import wraps

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST, require_safe

from screening.accounts.roles import is_admin, require
from screening.ai.selectors import cross_validated, labelled_counts, recent_exam_scores, registry_versions, trade_off
from screening.ai.services import external_models, promotion, training
from screening.api.media import stream_png
from screening.audit.services import client_ip
from screening.errors import PortalError
from screening.models import ModelVersion, TrainingRun
from screening.svg_plots import curve_plot


def _run_json(run: TrainingRun) -> dict:
    return {
        "id": run.pk,
        "status": run.status,
        "triggered_by": run.triggered_by,
        "created": run.created.isoformat(),
        "started": run.started.isoformat() if run.started else None,
        "finished": run.finished.isoformat() if run.finished else None,
        "progress": run.progress,
        "error": run.error,
        "candidate": run.candidate.name if run.candidate_id else None,
        "train": (run.data_summary or {}).get("train"),
        "validation": (run.data_summary or {}).get("validation"),
    }


@login_required
@require_safe
def registry(request):
    """Every version, the side-by-side comparison (?a=&b=), the operating point editor (?op=) and the runs."""
    require(is_admin(request.user))
    versions = list(registry_versions())
    by_id = {v.pk: v for v in versions}
    current = next((v for v in versions if v.status == ModelVersion.Status.CHAMPION), None)

    def pick(key: str, default):
        try:
            return by_id.get(int(request.GET.get(key, "")), default)
        except ValueError:
            return default

    a = pick("a", current)
    b = pick("b", next((v for v in versions if v is not a), None))
    edited = pick("op", current)
    runs = list(TrainingRun.objects.select_related("candidate").order_by("-created", "-id")[:20])
    active = next((r for r in runs if r.status in (TrainingRun.Status.QUEUED, TrainingRun.Status.RUNNING)), None)
    editor = None
    if edited is not None:
        locked = (edited.metrics or {}).get("locked_validation") or {}
        editor = {
            "version": edited,
            "scores": locked.get("scores") or [],
            "exams": recent_exam_scores(edited),
            "trade_off": trade_off(edited),
        }
    for version in versions:  # figures from its model card until the locked validation set scores it
        version.cv_sources = _cv_with_plots(version)
    return render(
        request,
        "screening/models.html",
        {
            "versions": versions,
            "compare": [v for v in (a, b) if v is not None],
            "editor": editor,
            "runs": runs,
            "active": _run_json(active) if active else None,
            "labels": labelled_counts(),
        },
    )


def _cv_with_plots(version: ModelVersion) -> list[dict]:
    rows = cross_validated(version)
    for row in rows:
        curves = row.get("curves") or {}
        roc = [
            (f"{level} AUC {row[level].get('auc', 0):.2f}", curves[f"roc_{level}"])
            for level in ("image", "breast")
            if curves.get(f"roc_{level}")
        ]
        row["plots"] = []
        if roc:
            row["plots"].append(
                curve_plot(f"ROC, {row['kind']}, cross-validated", roc, x_axis="1 - specificity", y_axis="sensitivity")
            )
        if curves.get("reliability_breast"):
            points = [[p, r] for p, r, _ in curves["reliability_breast"]]
            row["plots"].append(
                curve_plot(
                    f"Calibration, {row['kind']} breasts", [("observed", points)], x_axis="predicted", y_axis="observed"
                )
            )
    return rows


@login_required
@require_safe
def run_status(request, pk: int):
    """Progress of one run as JSON, polled by the page while it runs."""
    require(is_admin(request.user))
    return JsonResponse(_run_json(get_object_or_404(TrainingRun.objects.select_related("candidate"), pk=pk)))


@login_required
@require_safe
def plot(request, pk: int, kind: str):
    """A version's ROC curve or reliability diagram on the locked validation set (PNG from storage)."""
    require(is_admin(request.user))
    version = get_object_or_404(ModelVersion, pk=pk)
    name = (((version.metrics or {}).get("locked_validation") or {}).get("plots") or {}).get(kind)
    if not name:
        raise Http404("no such plot")
    return stream_png(name)


def _registry_action(back=lambda **kwargs: reverse("models")):
    """An admin's button on the registry page (POST): the action calls a service and says what it did; a
    PortalError becomes the page's error message; either way the page is shown again (`back`)."""

    def decorate(action):
        @login_required
        @require_POST
        @wraps(action)
        def view(request, **kwargs):
            require(is_admin(request.user))
            try:
                messages.success(request, action(request, **kwargs))
            except PortalError as exc:
                messages.error(request, exc.message)
            return redirect(back(**kwargs))

        return view

    return decorate


def _repredict(request) -> bool:
    return request.POST.get("repredict") == "on"


@_registry_action()
def train_now(request) -> str:
    run = training.trigger_run(trigger="admin", user=request.user, ip_address=client_ip(request))
    return training.started_message(run)


@_registry_action()
def promote(request, pk: int) -> str:
    version = get_object_or_404(ModelVersion, pk=pk)
    promotion.promote(version=version, user=request.user, ip_address=client_ip(request), repredict=_repredict(request))
    return f"{version.name} is now the champion; workers load it with their next image."


@_registry_action()
def rollback(request) -> str:
    version = promotion.rollback(user=request.user, ip_address=client_ip(request), repredict=_repredict(request))
    return f"Rolled back: {version.name} is the champion again."


@_registry_action(back=lambda pk: f"{reverse('models')}?op={pk}")
def operating_point(request, pk: int) -> str:
    version = get_object_or_404(ModelVersion, pk=pk)
    threshold = request.POST.get("threshold")
    promotion.set_operating_point(
        version=version, threshold=threshold, user=request.user, ip_address=client_ip(request)
    )
    return f"Operating point of {version.name} set to {float(request.POST['threshold']):.3f}."


@_registry_action()
def register_external(request) -> str:
    """An ONNX or TorchScript model and its manifest: queued for checking, registration and the challenge."""
    started = external_models.submit(
        manifest=request.FILES.get("manifest"),
        model=request.FILES.get("model"),
        name=request.POST.get("name", ""),
        note=request.POST.get("note", ""),
        user=request.user,
        ip_address=client_ip(request),
    )
    return (
        f"Run #{started.pk} checks the model, registers it and scores it against the champion on the "
        "locked validation women; follow it under Training runs."
    )
