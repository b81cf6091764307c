"""Schema-driven fuzzing with schemathesis: no 5xx, and responses match the OpenAPI schema."""

from __future__ import annotations

import io

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from rest_framework.authtoken.models import Token
from schemathesis.checks import content_type_conformance, not_a_server_error, response_schema_conformance

from screening.ai.services.predicting import run_prediction
from screening.intake.services.ingest import ingest_file
from screening.models import Prediction
from tests.dicom_factory import mg_dataset, to_bytes


@pytest.fixture
def api_token(db, admin_user, champion):
    """An admin token (every endpoint open to it) and a little data so detail endpoints have something."""
    image = ingest_file(file=io.BytesIO(to_bytes(mg_dataset())), filename="x.dcm").image
    run_prediction(Prediction.objects.get(image=image).pk)
    return Token.objects.create(user=admin_user).key


@pytest.fixture
def api_schema(api_token):
    """The schema served by the app itself, called in-process through WSGI.

    Like Django's test client, keep the test's database connection open across requests
    (the request signals would otherwise close it under the test transaction).
    """
    from django.core import signals
    from django.db import close_old_connections

    from portal.wsgi import application

    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        yield schemathesis.openapi.from_wsgi(
            "/api/schema/?format=json", application, headers={"Authorization": f"Token {api_token}"}
        )
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


def test_the_api_never_fails_and_matches_its_schema(api_schema, api_token):
    """Every operation of the schema, fuzzed by hypothesis (driven by hand: the pytest plugin of
    schemathesis 4.32 does not run under pytest 9)."""
    headers = {"Authorization": f"Token {api_token}"}
    checks = [not_a_server_error, response_schema_conformance, content_type_conformance]
    failures, operations = [], 0
    for result in api_schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy())
        @settings(
            max_examples=10, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None
        )
        def fuzz(case):
            case.call_and_validate(headers=headers, checks=checks)

        try:
            fuzz()
        except Exception as exc:  # collect every operation's failure, then report them together
            failures.append(f"{operation.label}: {str(exc)[:800]}")
    assert operations >= 15
    assert not failures, "\n\n".join(failures)
