"""A newcomer opens a synthetic demonstration case (setup_demo) in the viewer: four views and the prior paint."""

from __future__ import annotations

import io
from unittest import mock

import pytest
from django.core.management import call_command

from screening.models import Image, Study
from tests.browser.conftest import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


def test_a_demonstration_case_opens_with_its_four_views_and_its_prior(live_server, page, radiologist, champion):
    with mock.patch("screening.dispatch.send"):  # no worker here: the viewer reads the stored DICOMs
        call_command("setup_demo", "--cases", "yes", stdout=io.StringIO())
    study = Study.objects.get(accession_number="DEMO1B")
    log_in(page, live_server.url, "rad", "/")
    assert page.locator("text=DEMO-0001").count() >= 1  # on the worklist
    page.goto(f"{live_server.url}/studies/{study.pk}/")
    page.wait_for_selector("#viewer[data-ready=true]", timeout=90_000)
    for image in Image.objects.filter(study=study):
        assert page.locator(f'.vp[data-image-id="{image.pk}"]').get_attribute("data-state") == "loaded"
    priors = page.locator("#priors li")
    assert priors.count() == 1 and "2024-02-12" in priors.first.inner_text()
