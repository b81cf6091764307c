from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from portal import net
from screening.audit import actions
from screening.models import AuditEvent, Study


def client_ip(request: HttpRequest | None) -> str | None:
    """The client's address, the one the login guard counts (X-Forwarded-For only from trusted proxies)."""
    if request is None:
        return None
    return net.client_ip(request)


def record_event(
    *,
    action: str,
    user=None,
    study: Study | None = None,
    obj: Any = None,
    ip_address: str | None = None,
    detail: dict | None = None,
) -> AuditEvent:
    """Append one audit event: who (user), when (now), what (action, object), from where (IP).

    `action` is one of screening.audit.actions (UnknownAction otherwise: no free strings in the trail)."""
    actions.check(action)
    authenticated = user is not None and getattr(user, "is_authenticated", False)
    return AuditEvent.objects.create(
        user=user if authenticated else None,
        username=user.get_username() if authenticated else "",
        action=action,
        study=study,
        object_type=type(obj).__name__.lower() if obj is not None else "",
        object_id=str(obj.pk) if obj is not None else "",
        ip_address=ip_address,
        detail=detail or {},
    )


# --- reads of patient data ---------------------------------------------------------------------------------
# One "read" event per answered GET of a portal user (portal.middleware.ReadAuditMiddleware), on every route
# but those below: a new page or endpoint is audited unless someone says here that it holds no patient data.
NO_PATIENT_DATA = frozenset(
    {
        "healthz",
        "favicon",
        "login",
        "logout",
        "upload",  # the empty upload form
        "api-root",
        "api-schema",
        "api-docs",
        "api-token",
        # the model registry, the reading policy and the performance figures: models and aggregates
        "models",
        "training-run-status",
        "model-plot",
        "reading-policy",
        "api-reading-policy",
        "performance",
        "api-performance",
    }
)
NO_PATIENT_DATA_PREFIXES = ("api-model-", "api-training-run-")
# Routes whose views audit their reads themselves, with more detail: the case page ("case_opened") and the
# DICOMweb retrieves ("dicomweb_retrieve").
AUDITED_BY_THE_VIEW = frozenset(
    {
        "study-viewer",
        "dicomweb-study",
        "dicomweb-series",
        "dicomweb-instance",
        "dicomweb-study-metadata",
        "dicomweb-series-metadata",
        "dicomweb-instance-metadata",
        "dicomweb-instance-frames",
        "dicomweb-instance-rendered",
    }
)
# The Django admin's pages that hold patient data: those of these models (admin:screening_<model>_<view>).
ADMIN_CASE_RECORDS = frozenset(
    {"patient", "study", "image", "prediction", "review", "outcome", "auditevent", "dicomexport", "caselock"}
)
# Routes about one study, by the name of the URL argument that holds its id.
STUDY_ROUTES = {
    "api-study-detail": "pk",
    "api-study-reviews": "pk",
    "study-viewer-data": "pk",
    "study-audit": "pk",
    "admin:screening_study_change": "object_id",
}


def reads_patient_data(route: str) -> bool:
    """Is an answered GET of this route (a URL name, with its namespace) a read of patient data to audit?"""
    if route.startswith("admin:"):  # the case records; not the index, users, models, schedules or peers
        return route.startswith("admin:screening_") and route.split("_")[1] in ADMIN_CASE_RECORDS
    return not (route in NO_PATIENT_DATA or route in AUDITED_BY_THE_VIEW or route.startswith(NO_PATIENT_DATA_PREFIXES))


def record_read(*, request: HttpRequest, route: str, arguments: dict) -> AuditEvent:
    """Audit one read: who, from where, which route with which ids, and the names (never the values: a
    QIDO search may hold a PatientID) of its query parameters. One row per request, whatever it lists."""
    study_key = STUDY_ROUTES.get(route)
    study_id = arguments.get(study_key) if study_key else None
    detail = {"route": route, "args": {k: str(v)[:64] for k, v in arguments.items()}}
    if request.GET:
        detail["query"] = sorted(request.GET.keys())[:20]
    return AuditEvent.objects.create(
        user=request.user,
        username=request.user.get_username(),
        action=actions.READ,
        study_id=int(study_id) if study_id and str(study_id).isdigit() else None,
        ip_address=client_ip(request),
        detail=detail,
    )
