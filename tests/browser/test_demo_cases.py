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
        cell = page.locator(f'.vp[data-image-id="{image.pk}"]')
        assert cell.get_attribute("data-state") == "loaded"
        assert cell.get_attribute("data-window") == "1500/2600"  # its first DICOM window: the whole breast
    priors = page.locator("#priors li")
    assert priors.count() == 1 and "2024-02-12" in priors.first.inner_text()


# Was a strict expected failure (dicom-image-loader 5.14 keeps only "L" of VOILUTFunction): the viewer now sets
# each image's VOI LUT function itself (static/viewer/src/imaging.js), so the window holds.
@pytest.mark.parametrize("function", ["LINEAR", "SIGMOID"])
def test_an_mg_image_naming_its_voi_lut_function_keeps_its_window(live_server, page, radiologist, champion, function):
    from screening.intake import demo_cases
    from screening.intake.services import demo
    from screening.intake.services.ingest import ingest_file

    with mock.patch("screening.dispatch.send"):
        ds = demo.demo_dataset(demo_cases.CASES[2], "L", "CC")
        ds.VOILUTFunction = function
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        image = ingest_file(file=io.BytesIO(buffer.getvalue()), filename="lcc.dcm").image
    log_in(page, live_server.url, "rad", f"/studies/{image.study_id}/")
    page.wait_for_selector("#viewer[data-ready=true]", timeout=90_000)
    assert page.locator(f'.vp[data-image-id="{image.pk}"]').get_attribute("data-window") == "1500/2600"
