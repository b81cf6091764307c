"""The vendor's CAD marks (a Mammography CAD SR received with the study) as the viewer's "Vendor CAD" layer, in
a real Chromium: drawn on the images the SR references, labelled with the finding and its certainty, toggled
with its button and with V."""

from __future__ import annotations

import io

import pydicom
import pytest

from screening.intake.services.ingest import ingest_file
from tests.browser.conftest import make_study, screenshot
from tests.browser.test_viewer import _no_console_errors, open_case  # noqa: F401 (autouse: no console error)
from tests.cad_sr_factory import CALCIFICATION_CLUSTER, MASS, CadFinding, cad_sr_dataset
from tests.dicom_factory import to_bytes

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


def cad_marks(page) -> list[str]:
    return page.eval_on_selector_all(
        "#hanging .svg-layer .cad-mark-label", "els => els.map(e => e.textContent.trim()).sort()"
    )


def test_the_vendor_cad_marks_are_a_layer_that_the_reader_toggles(live_server, page, radiologist, champion):
    study = make_study(patient_id="P-CAD", predict=False)
    headers = {}
    for image in study.images.all():
        with image.original.open("rb") as stored:
            headers[(image.laterality, image.view)] = pydicom.dcmread(stored, stop_before_pixels=True)
    lcc, rmlo = headers[("L", "CC")], headers[("R", "MLO")]
    outline = ((150.0, 200.0), (260.0, 200.0), (260.0, 300.0), (150.0, 300.0))
    sr = cad_sr_dataset(
        list(headers.values()),
        [CadFinding(lcc, MASS, outline, certainty=87), CadFinding(rmlo, CALCIFICATION_CLUSTER, ((200.0, 250.0),))],
    )
    ingest_file(file=io.BytesIO(to_bytes(sr)), filename="cad.dcm")
    open_case(page, live_server, study)
    page.wait_for_function("document.querySelectorAll('#hanging .svg-layer .cad-mark').length === 2")
    assert page.locator("#viewer").get_attribute("data-cad") == "on"
    assert cad_marks(page) == ["CAD Cluster of calcifications", "CAD Mass 0.87"]
    lcc_cell = page.locator("#hanging .vp[data-slot='L-CC']")
    assert lcc_cell.locator(".svg-layer .cad-mark").count() == 1  # on the image the SR references
    screenshot(page, "viewer-vendor-cad")
    page.keyboard.press("v")
    page.wait_for_selector("#viewer[data-cad=off]")
    assert page.locator("#hanging .svg-layer .cad-mark").count() == 0
    assert page.locator("[data-action=cad]").get_attribute("aria-pressed") == "false"
    page.click("[data-action=cad]")
    page.wait_for_function("document.querySelectorAll('#hanging .svg-layer .cad-mark').length === 2")
    assert page.locator("#viewer").get_attribute("data-cad") == "on"
