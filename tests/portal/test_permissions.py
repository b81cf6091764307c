"""Every URL x role x method, generated from the URL conf: a new endpoint cannot be forgotten.

The API client's records are its own uploads: the matrix's case is one it sent, and every
record endpoint is checked against another account's case too.
"""

from __future__ import annotations

import io
import re

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from screening.ai.services.predicting import run_prediction
from screening.exchange.web import series_uid
from screening.intake.services import renditions
from screening.intake.services.ingest import ingest_file
from screening.models import Prediction, TrainingRun
from tests.dicom_factory import mg_dataset, to_bytes

pytestmark = pytest.mark.django_db
ALL = {"anonymous", "radiologist", "arbitrator", "admin", "api_client", "outsider"}
ROLES = {"radiologist", "arbitrator", "admin", "api_client"}
READERS = {"radiologist", "arbitrator", "admin"}

# url name -> {method: roles allowed}. Anything else must answer 401/302 (anonymous) or 403.
EXPECTED: dict[str, dict[str, set[str]]] = {
    "login": {"GET": ALL, "POST": ALL},
    "logout": {"POST": ALL},
    "healthz": {"GET": ALL},
    "favicon": {"GET": ALL},
    "worklist": {"GET": READERS},
    "upload": {"GET": ROLES},
    "study-viewer": {"GET": READERS},
    "study-viewer-data": {"GET": READERS},
    "study-report": {"GET": READERS},
    "study-report-pdf": {"GET": READERS},
    "study-audit": {"GET": {"admin"}},
    "api-root": {"GET": ROLES},
    "api-token": {"POST": ALL},
    "api-schema": {"GET": ROLES},
    "api-docs": {"GET": ROLES},
    "api-image-list": {"GET": ROLES, "POST": ROLES},
    "api-image-detail": {"GET": ROLES},
    "api-image-rendition": {"GET": ROLES},
    "api-image-full": {"GET": ROLES},
    "api-image-preview": {"GET": ROLES},
    "api-image-pixels": {"GET": ROLES},
    "api-prediction-list": {"GET": ROLES},
    "api-prediction-detail": {"GET": ROLES},
    "api-prediction-heatmap": {"GET": ROLES},
    "api-patient-list": {"GET": ROLES},
    "api-patient-detail": {"GET": ROLES},
    "api-study-list": {"GET": ROLES},
    "api-study-detail": {"GET": ROLES},
    "api-study-predict": {"POST": READERS},
    "api-study-reviews": {"GET": READERS, "POST": READERS},
    "api-worklist-list": {"GET": READERS},
    "models": {"GET": {"admin"}},
    "models-train": {"POST": {"admin"}},
    "models-rollback": {"POST": {"admin"}},
    "models-external": {"POST": {"admin"}},
    "training-run-status": {"GET": {"admin"}},
    "model-promote": {"POST": {"admin"}},
    "model-operating-point": {"POST": {"admin"}},
    "model-plot": {"GET": {"admin"}},
    "api-model-list": {"GET": {"admin"}},
    "api-model-detail": {"GET": {"admin"}},
    "api-model-operating-point": {"GET": {"admin"}, "POST": {"admin"}},
    "api-model-promote": {"POST": {"admin"}},
    "api-model-rollback": {"POST": {"admin"}},
    "api-training-run-list": {"GET": {"admin"}, "POST": {"admin"}},
    "api-external-model-list": {"POST": {"admin"}},
    "api-training-run-detail": {"GET": {"admin"}},
    "dicomweb-studies": {"GET": ROLES, "POST": ROLES},
    "dicomweb-study": {"GET": ROLES, "POST": ROLES},
    "dicomweb-study-metadata": {"GET": ROLES},
    "dicomweb-study-series": {"GET": ROLES},
    "dicomweb-study-instances": {"GET": ROLES},
    "dicomweb-series": {"GET": ROLES},
    "dicomweb-series-metadata": {"GET": ROLES},
    "dicomweb-series-instances": {"GET": ROLES},
    "dicomweb-instance": {"GET": ROLES},
    "dicomweb-instance-metadata": {"GET": ROLES},
    "dicomweb-instance-frames": {"GET": ROLES},
    "dicomweb-instance-rendered": {"GET": ROLES},
    "dicomweb-study-thumbnail": {"GET": ROLES},
    "dicomweb-series-thumbnail": {"GET": ROLES},
    "dicomweb-instance-thumbnail": {"GET": ROLES},
    # the reading workflow (issue 15)
    "reading": {"GET": READERS},
    "ohif": {"GET": READERS},
    "ohif-file": {"GET": READERS},
    "reading-arbitration": {"GET": {"arbitrator", "admin"}},
    "reading-policy": {"GET": {"admin"}, "POST": {"admin"}},
    "reading-assign": {"GET": {"admin"}, "POST": {"admin"}},
    "reading-release": {"POST": READERS},
    "reading-preferences": {"GET": READERS, "POST": READERS},
    "outcomes": {"GET": {"admin"}, "POST": {"admin"}},
    "performance": {"GET": {"admin"}},
    "api-reading-worklist": {"GET": READERS},
    "api-reading-arbitration": {"GET": {"arbitrator", "admin"}},
    "api-reading-policy": {"GET": {"admin"}, "POST": {"admin"}},
    "api-reading-assign": {"POST": {"admin"}},
    "api-reading-lock": {"POST": READERS, "DELETE": READERS},
    "api-outcome-list": {"GET": {"admin"}, "POST": {"admin"}},
    "api-outcome-import": {"POST": {"admin"}},
    "api-performance": {"GET": {"admin"}},
    # filing corrections (issue 21)
    "filing-reconciliation": {"GET": {"admin"}},
    "filing-reconcile": {"POST": {"admin"}},
    "filing-image": {"GET": {"admin"}, "POST": {"admin"}},
    "filing-study": {"GET": {"admin"}, "POST": {"admin"}},
    "monitoring": {"GET": {"admin"}},
    "monitoring-run": {"POST": {"admin"}},
    "monitoring-acknowledge": {"POST": {"admin"}},
    "api-monitoring": {"GET": {"admin"}},
    "api-monitoring-run": {"POST": {"admin"}},
    "api-monitoring-alerts": {"GET": {"admin"}},
    "api-monitoring-acknowledge": {"POST": {"admin"}},
    "research-exports": {"GET": {"admin"}},
    "research-project-new": {"POST": {"admin"}},
    "research-export-new": {"POST": {"admin"}},
    "research-export-status": {"GET": {"admin"}},
    "research-export-download": {"GET": {"admin"}},
    "api-research-projects": {"GET": {"admin"}, "POST": {"admin"}},
    "api-research-exports": {"GET": {"admin"}, "POST": {"admin"}},
    "api-research-export": {"GET": {"admin"}},
    "api-research-export-download": {"GET": {"admin"}},
}
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def project_url_names() -> set[str]:
    names: set[str] = set()

    def walk(patterns, namespace=""):
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                if pattern.namespace == "admin":
                    continue
                walk(pattern.url_patterns, pattern.namespace or namespace)
            elif isinstance(pattern, URLPattern) and pattern.name:
                names.add(f"{namespace}:{pattern.name}" if namespace else pattern.name)

    walk(get_resolver().url_patterns)
    return names


def test_every_url_in_the_url_conf_has_expectations():
    missing = project_url_names() - set(EXPECTED)
    assert not missing, f"add these URL names to EXPECTED with the roles allowed: {sorted(missing)}"


@pytest.fixture
def world(champion, radiologist, arbitrator, admin_user, api_client_user, outsider):
    image = ingest_file(file=io.BytesIO(to_bytes(mg_dataset())), filename="x.dcm", user=api_client_user).image
    renditions.render_image(image.pk)  # what the render worker does after ingest
    prediction = Prediction.objects.get(image=image)
    run_prediction(prediction.pk)
    users = {
        "radiologist": radiologist,
        "arbitrator": arbitrator,
        "admin": admin_user,
        "api_client": api_client_user,
        "outsider": outsider,
    }
    return {
        "image": image,
        "prediction": prediction,
        "study": image.study,
        "patient": image.study.patient,
        "model": champion,
        "training-run": TrainingRun.objects.create(status="failed", triggered_by="test", error="test"),
        "users": users,
    }


def url_for(name: str, world) -> str:
    kind = re.match(r"api-(image|prediction|patient|study|model|training-run)-", name)
    if name in (
        "study-viewer",
        "study-viewer-data",
        "study-report",
        "study-report-pdf",
        "study-audit",
        "reading-release",
        "api-reading-lock",
    ):
        return reverse(name, args=[world["study"].pk])
    if name == "filing-image":
        return reverse(name, args=[world["image"].pk])
    if name in ("filing-study", "filing-reconcile"):  # no conflict is held: the admin's reconcile is a 404
        return reverse(name, args=[world["study"].pk])
    if name in ("model-promote", "model-operating-point", "monitoring-run", "api-monitoring", "api-monitoring-run"):
        return reverse(name, args=[world["model"].pk])
    if name == "model-plot":
        return reverse(name, args=[world["model"].pk, "roc"])
    if name in (
        "monitoring-acknowledge",
        "api-monitoring-acknowledge",
        "research-export-status",
        "research-export-download",
        "api-research-export",
        "api-research-export-download",
    ):
        return reverse(name, args=[1])  # no such alert or export: admins get 404, everyone else no access
    if name == "ohif-file":
        return reverse(name, args=["app-config.js"])
    if name == "training-run-status":
        return reverse(name, args=[world["training-run"].pk])
    if name == "api-model-rollback":
        return reverse(name)
    if name.startswith("dicomweb-") and name != "dicomweb-studies":
        image = world["image"]
        uids = [image.study.study_uid, series_uid(image), image.sop_uid, "1"]
        depth = {"study": 1, "series": 2, "instance": 3}[name.split("-")[1]] + name.endswith("-frames")
        return reverse(name, args=uids[:depth])
    if kind and not name.endswith("-list"):
        return reverse(name, args=[world[kind.group(1)].pk])
    return reverse(name)


def client_for(role: str, world) -> APIClient:
    client = APIClient()
    if role != "anonymous":
        user = world["users"][role]
        client.force_login(user)  # pages
        client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")  # API
    return client


@pytest.mark.parametrize("role", sorted(ALL))
def test_the_permission_matrix(world, role):
    problems = []
    for name in sorted(project_url_names()):
        url = url_for(name, world)
        for method in METHODS:
            allowed = EXPECTED.get(name, {})
            if "GET" in allowed:  # HEAD answers wherever GET does, for the same roles (curl -I, monitors)
                allowed = {**allowed, "HEAD": allowed["GET"]}
            client = client_for(role, world)
            response = client.generic(method, url, data=b"", content_type="application/json")
            code = response.status_code
            if method not in allowed:
                if code not in (401, 403, 405) and not (code == 302 and role == "anonymous"):
                    problems.append(f"{method} {name}: {code}, expected no access")
                continue
            if role in allowed[method]:
                redirected_to_login = code == 302 and "login" in response.get("Location", "") and name != "logout"
                if code in (401, 403) or code >= 500 or redirected_to_login:
                    problems.append(f"{method} {name}: {code}, expected access")
            elif role == "anonymous":
                if code not in (401, 302):
                    problems.append(f"{method} {name}: {code}, expected 401 or a login redirect")
            elif code != 403:
                problems.append(f"{method} {name}: {code}, expected 403")
    assert not problems, "\n".join(problems)


@pytest.fixture
def anothers(world):
    """A second case, sent by the radiologist: another account's records, for the API client."""
    ds = mg_dataset(patient_id="OTHER-1", seed=1)
    image = ingest_file(file=io.BytesIO(to_bytes(ds)), filename="y.dcm", user=world["users"]["radiologist"]).image
    renditions.render_image(image.pk)
    prediction = Prediction.objects.get(image=image)
    run_prediction(prediction.pk)
    return {"image": image, "prediction": prediction, "study": image.study, "patient": image.study.patient}


def test_an_api_client_reaches_its_own_records_and_never_anothers(world, anothers):
    client = client_for("api_client", world)
    problems = []
    for name in sorted(project_url_names()):
        kind = re.match(r"api-(image|prediction|patient|study)-", name)
        if not kind or "api_client" not in EXPECTED[name].get("GET", set()):
            continue
        if kind.group(1) == "patient":
            continue  # a client without identity gets no patient numbers: tests/portal/test_client_identity.py
        own, theirs = world[kind.group(1)].pk, anothers[kind.group(1)].pk
        if name.endswith("-list"):
            listed = {row["id"] for row in client.get(reverse(name)).json()["results"]}
            if own not in listed or theirs in listed:
                problems.append(f"{name} lists {sorted(listed)}: expected its own {own}, not another's {theirs}")
            continue
        codes = (client.get(url_for(name, world)).status_code, client.get(url_for(name, anothers)).status_code)
        if codes != (200, 404):  # 404, not 403: another's ids cannot be probed
            problems.append(f"GET {name}: own {codes[0]}, another's {codes[1]}; expected 200 and 404")
    assert not problems, "\n".join(problems)


def test_api_errors_share_one_json_shape(rad_api, radiologist):
    for response in (
        rad_api.get("/api/v1/studies/999999/"),
        rad_api.delete("/api/v1/studies/"),
        rad_api.post("/api/v1/studies/999999/reviews/", {}, format="json"),
        APIClient().get("/api/v1/images/"),
    ):
        body = response.json()
        assert set(body) == {"error"} and {"code", "message"} <= set(body["error"]), body
