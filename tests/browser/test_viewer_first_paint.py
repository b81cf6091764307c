"""The case's first paint, before the viewer bundle and Cornerstone have started (early.js, firstpaint.js,
pixelworker.js, fastpaint.js): each image's preview at once, then its first full-depth picture, drawn by a
worker where the viewer's cell will show the image, and giving way to the cell once it paints."""

from __future__ import annotations

import io
import time
from unittest import mock

import numpy as np
import pytest
from PIL import Image as PILImage
from pydicom.uid import generate_uid

from screening.models import Study
from tests.browser.conftest import FOUR_VIEWS, log_in
from tests.dicom_factory import dcmtk_compress, mg_dataset, phantom, to_bytes

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

VIEWER_BUNDLE = "**/viewer/dist/viewer.js"
FULL_SHOWN = (
    "() => performance.getEntriesByName('viewer:image-shown').filter((e) => e.detail.quality === 'full').length === {}"
)
# Everything drawn over the images (the cells' text and marks, the stage's message): compared are the images alone.
IMAGES_ONLY = (
    ".vp-label, .vp-info, .vp-readout, .vp-badge, .vp-enlarge, svg, #stage-message { visibility: hidden !important; }"
)


def images_only(page) -> None:
    """Hide the cells' text and marks (through the CSSOM: the page's CSP refuses inline style)."""
    page.evaluate(
        "(rule) => { const s = document.styleSheets[0]; s.insertRule(rule, s.cssRules.length); }", IMAGES_ONLY
    )


def rendered_study(datasets, patient_id: str) -> Study:
    """One study of these datasets through the ingest service, each image rendered as the render worker does
    at ingest (its display rendition and preview); no predictions run."""
    from screening.intake.services.ingest import ingest_file
    from screening.intake.services.renditions import render_image

    study_uid = generate_uid()
    with mock.patch("screening.dispatch.send"):
        for i, ds in enumerate(datasets):
            ds.StudyInstanceUID = study_uid
            ds.PatientID = patient_id
            result = ingest_file(file=io.BytesIO(to_bytes(ds)), filename=f"{patient_id}-{i}.dcm")
            render_image(result.image.pk)
    return Study.objects.get(study_uid=study_uid)


def four_views(patient_id: str, **kwargs) -> list:
    out = []
    for k, (side, view) in enumerate(FOUR_VIEWS):
        pixels = phantom(640, 520, bits=12, seed=k)
        if side == "L":
            pixels = pixels[:, ::-1].copy()  # the chest wall on the other edge, as a real left breast
        out.append(mg_dataset(pixels, bits=12, laterality=side, view=view, **kwargs))
    return out


def marks(page, name: str) -> list[dict]:
    return page.evaluate(f"() => performance.getEntriesByName('{name}').map((e) => ({{t: e.startTime, ...e.detail}}))")


def stage_picture(page) -> np.ndarray:
    box = page.eval_on_selector(
        "#stage", "e => { const r = e.getBoundingClientRect(); return [r.x, r.y, r.width, r.height]; }"
    )
    shot = page.screenshot(clip=dict(zip(("x", "y", "width", "height"), box, strict=True)))
    return np.asarray(PILImage.open(io.BytesIO(shot)).convert("L")).astype(int)


def open_without_viewer(page, live_server, study: Study) -> None:
    """The case page with the viewer bundle refused: what the early script alone puts on the screen."""
    log_in(page, live_server.url, "rad", "/")  # its messages shown there: the case page is then as on a reload
    page.route(VIEWER_BUNDLE, lambda route: route.abort())
    page.goto(f"{live_server.url}/studies/{study.pk}/")


def test_the_case_is_on_the_screen_before_the_viewer_starts_as_the_viewer_then_shows_it(live_server, page, radiologist):
    study = rendered_study(four_views("P-FIRST"), "P-FIRST")
    assert all(image.rendition for image in study.images.all())
    page_errors = []
    page.on("pageerror", lambda error: page_errors.append(str(error)))
    # The pixel data held back a while, as a slower network would: the previews show first (with the range
    # the render worker recorded, a small image's full picture can otherwise come before its preview).
    page.route("**/dicomweb/**", lambda route: (time.sleep(0.8), route.continue_()))
    open_without_viewer(page, live_server, study)
    images_only(page)

    # The viewer never started: the early script drew the four previews and then the four full-depth pictures.
    page.wait_for_function(
        FULL_SHOWN.format(4),
        timeout=60_000,
    )
    shown = marks(page, "viewer:image-shown")
    ids = sorted(image.pk for image in study.images.all())
    assert sorted(m["image"] for m in shown if m["quality"] == "preview") == ids
    assert sorted(m["image"] for m in shown if m["quality"] == "full") == ids
    for image_id in ids:  # never the preview after the full picture
        times = {m["quality"]: m["t"] for m in shown if m["image"] == image_id}
        assert times["preview"] <= times["full"]
    assert page.locator(".early-cell[data-early=full]").count() == 4
    assert page.locator("#hanging .vp").count() == 0  # no cell of the viewer's: it did not run
    # The refused bundle is said on the stage, over the pictures, and is no page error.
    page.wait_for_selector("#stage-message.failed", state="attached")  # (hidden here for the comparison)
    assert "The image viewer could not be loaded" in page.text_content("#stage-message")
    assert page_errors == []
    page.wait_for_timeout(300)
    early = stage_picture(page)

    page.unroute(VIEWER_BUNDLE)
    page.unroute("**/dicomweb/**")
    page.reload()
    images_only(page)
    page.wait_for_selector("#viewer[data-ready=true]", timeout=90_000)
    page.wait_for_function("() => performance.getEntriesByName('viewer:case-painted').length === 1", timeout=60_000)
    # Each image gave way to its cell as the cell painted it; once all had, the layer went.
    page.wait_for_selector(".early-stage", state="detached", timeout=10_000)
    assert page.locator("#hanging .vp[data-painted=full]").count() == 4
    page.wait_for_timeout(300)
    viewer = stage_picture(page)

    # The same picture in the same place: the hanging, the fit, the chest wall mirrored to the centre line,
    # the window. Only the edges of the breast differ by a display pixel's sampling.
    assert early.shape == viewer.shape
    difference = np.abs(early - viewer)
    assert difference.mean() < 2.0, difference.mean()
    assert np.percentile(difference, 99) < 40
    tissue_early, tissue_viewer = early > 40, viewer > 40
    assert abs(int(tissue_early.sum()) - int(tissue_viewer.sum())) < 0.01 * tissue_viewer.sum()
    columns_early = np.flatnonzero(tissue_early.any(axis=0))
    columns_viewer = np.flatnonzero(tissue_viewer.any(axis=0))
    assert abs(columns_early[0] - columns_viewer[0]) <= 2 and abs(columns_early[-1] - columns_viewer[-1]) <= 2


def test_signed_rescaled_monochrome1_pixels_with_an_exact_window_are_drawn_early_as_the_viewer_draws_them(
    live_server, page, radiologist
):
    datasets = four_views("P-SIGNED", photometric="MONOCHROME1", window=(1800, 2600))
    for ds in datasets:
        stored = ds.pixel_array.astype(np.int16) - 2048  # signed 12-bit values in 16 bits
        ds.PixelRepresentation = 1
        ds.PixelData = stored.astype(np.int16).tobytes()
        ds.RescaleSlope, ds.RescaleIntercept = 1, 2048
        ds.VOILUTFunction = "LINEAR_EXACT"
    study = rendered_study(datasets, "P-SIGNED")
    open_without_viewer(page, live_server, study)
    images_only(page)
    page.wait_for_function(
        FULL_SHOWN.format(4),
        timeout=60_000,
    )
    page.wait_for_timeout(300)
    early = stage_picture(page)
    page.unroute(VIEWER_BUNDLE)
    page.reload()
    images_only(page)
    page.wait_for_function("() => performance.getEntriesByName('viewer:case-painted').length === 1", timeout=90_000)
    page.wait_for_selector(".early-stage", state="detached", timeout=10_000)
    page.wait_for_timeout(300)
    viewer = stage_picture(page)
    difference = np.abs(early - viewer)
    assert difference.mean() < 2.0, difference.mean()
    # MONOCHROME1: the images' background (low values) is white in both, not black.
    assert (early > 200).mean() > 0.1 and (viewer > 200).mean() > 0.1


def test_a_compressed_image_shows_its_preview_early_and_its_full_depth_when_the_viewer_has_decoded_it(
    live_server, page, radiologist
):
    datasets = four_views("P-PACKED")
    datasets[0] = dcmtk_compress(datasets[0], "dcmcjpls")
    study = rendered_study(datasets, "P-PACKED")
    packed = study.images.order_by("pk").first()
    open_without_viewer(page, live_server, study)
    page.wait_for_function(
        FULL_SHOWN.format(3),
        timeout=60_000,
    )
    page.wait_for_function("() => performance.getEntriesByName('viewer:image-not-shown').length === 1")
    (not_shown,) = marks(page, "viewer:image-not-shown")
    assert not_shown["image"] == packed.pk and "transfer syntax" in not_shown["reason"]
    assert page.locator(f'.early-cell[data-early-image="{packed.pk}"]').get_attribute("data-early") == "preview"

    page.unroute(VIEWER_BUNDLE)
    page.reload()
    page.wait_for_function("() => performance.getEntriesByName('viewer:case-painted').length === 1", timeout=90_000)
    assert page.locator(f'#hanging .vp[data-image-id="{packed.pk}"]').get_attribute("data-painted") == "full"
    page.wait_for_selector(".early-stage", state="detached", timeout=10_000)


def test_enlarging_a_view_before_the_cells_have_painted_removes_the_first_paint_layer(live_server, page, radiologist):
    study = rendered_study(four_views("P-ENLARGE"), "P-ENLARGE")
    log_in(page, live_server.url, "rad", f"/studies/{study.pk}/")
    page.wait_for_selector(".early-stage", state="attached")
    page.wait_for_selector("#hanging .vp[data-image-id]", timeout=60_000)
    first = page.locator("#hanging .vp[data-image-id]").first
    first.locator(".vp-enlarge").click()
    assert page.locator(".early-stage").count() == 0
    page.wait_for_selector("#viewer[data-ready=true]", timeout=90_000)
    assert page.locator("#hanging .vp.maximised").count() == 1
