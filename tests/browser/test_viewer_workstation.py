"""The reading station's hanging protocols and navigation in a real Chromium: protocol sequences stepped with
the keyboard and remembered, 1:1 and true size, synchronised pan/zoom of mirrored views, the prior chosen for
comparison, the thumbnails, and the woman's identity for a reader allowed to see it."""

from __future__ import annotations

import datetime

import pytest

from screening.models import Patient, Prediction, Study
from tests.browser.conftest import FOUR_VIEWS, log_in, make_study, screenshot
from tests.browser.test_viewer import _no_console_errors, cell, ingest, open_case, ramp_14bit  # noqa: F401
from tests.dicom_factory import mg_dataset

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


def slots(page) -> list[str]:
    return page.eval_on_selector_all("#hanging .vp:not(.empty)", "els => els.map(e => e.dataset.slot)")


def wait_ready(page) -> None:
    page.wait_for_selector("#viewer[data-ready=true]", timeout=90_000)


def test_a_hanging_protocol_steps_through_its_sequence_and_is_remembered(live_server, page, radiologist, champion):
    study = make_study(patient_id="P-SEQ", predict=False)
    open_case(page, live_server, study)
    assert page.locator("#viewer").get_attribute("data-protocol") == "four-up"
    assert slots(page) == ["R-CC", "L-CC", "R-MLO", "L-MLO"]
    page.select_option("#hanging-protocol", "sequence")
    wait_ready(page)
    assert slots(page) == ["R-CC", "L-CC", "R-MLO", "L-MLO"]  # the sequence starts with the 4-up
    page.keyboard.press("]")
    page.wait_for_selector("#viewer[data-step='1'][data-ready=true]")
    assert slots(page) == ["R-CC", "L-CC"]
    page.keyboard.press("ArrowRight")
    page.wait_for_selector("#viewer[data-step='2'][data-ready=true]")
    assert slots(page) == ["R-MLO", "L-MLO"]
    page.keyboard.press("]")
    page.wait_for_selector("#viewer[data-step='3'][data-ready=true]")
    assert slots(page) == ["R-CC"]  # each view alone
    screenshot(page, "viewer-sequence-single")
    page.keyboard.press("[")
    page.wait_for_selector("#viewer[data-step='2'][data-ready=true]")
    assert "MLO pair (3 of 7)" in page.locator("#status-line").inner_text()
    # Remembered for this reader: the next page opens with it.
    page.reload()
    wait_ready(page)
    assert page.locator("#viewer").get_attribute("data-protocol") == "sequence"
    assert page.locator("#hanging-protocol").input_value() == "sequence"


def test_the_chosen_protocol_follows_the_reader_to_another_browser_and_no_one_else(
    live_server, browser, page, radiologist, champion, django_user_model
):
    from tests.conftest import _user

    _user(django_user_model, "rad2", "radiologist")
    study = make_study(patient_id="P-PREF", predict=False)
    open_case(page, live_server, study)
    assert page.locator("#viewer").get_attribute("data-protocol") == "four-up"
    with page.expect_response(lambda r: r.url.endswith("/reading/preferences/") and r.request.method == "POST") as sent:
        page.select_option("#hanging-protocol", "sequence")
    assert sent.value.status == 200
    for username, expected in (("rad", "sequence"), ("rad2", "four-up")):
        context = browser.new_context(viewport={"width": 1920, "height": 1080})  # no cookie, no local storage
        try:
            other = context.new_page()
            log_in(other, live_server.url, username, f"/studies/{study.pk}/")
            other.wait_for_selector("#viewer[data-ready=true]", timeout=90_000)
            assert other.locator("#viewer").get_attribute("data-protocol") == expected, username
            assert other.locator("#hanging-protocol").input_value() == expected
            other.goto("about:blank")
        finally:
            context.close()


def test_true_size_and_one_to_one_follow_the_pixel_spacing(live_server, page, radiologist, champion):
    ds = mg_dataset(ramp_14bit(), bits=14, laterality="L", view="CC")
    ds.ImagerPixelSpacing = [0.1, 0.1]
    study = ingest([ds], "P-SIZE")
    image = study.images.get()
    open_case(page, live_server, study)
    height = page.locator(f"{cell(image)} .vp-element").bounding_box()["height"]
    ratio = page.evaluate("window.devicePixelRatio")
    page.keyboard.press("z")
    # True size: the shown height is the cell's height in mm at 96 CSS pixels to the inch.
    page.wait_for_selector("#viewer[data-display=true]")
    scale = float(page.locator(cell(image)).get_attribute("data-scale"))
    assert scale == pytest.approx(height * 25.4 / 96 / 2, rel=0.02)
    page.keyboard.press("x")
    # 1:1: one stored pixel (0.1 mm) on one device pixel.
    page.wait_for_selector("#viewer[data-display=pixel]")
    scale = float(page.locator(cell(image)).get_attribute("data-scale"))
    assert scale == pytest.approx(height * ratio * 0.1 / 2, rel=0.02)
    page.keyboard.press("f")
    page.wait_for_selector("#viewer[data-display=fit]")
    assert float(page.locator(cell(image)).get_attribute("data-scale")) != pytest.approx(scale, rel=0.02)


def centre(page, image) -> tuple[float, float]:
    x, y = page.locator(cell(image)).get_attribute("data-centre").split(",")
    return float(x), float(y)


def test_pan_and_zoom_are_synchronised_across_mirrored_views(live_server, page, radiologist, champion):
    study = make_study(patient_id="P-SYNC", views=FOUR_VIEWS[:2], predict=False)
    rcc, lcc = study.images.get(laterality="R"), study.images.get(laterality="L")
    open_case(page, live_server, study)
    width = page.locator(f"{cell(lcc)} .vp-element").bounding_box()["width"]
    (rx, ry), (lx, ly) = centre(page, rcc), centre(page, lcc)
    assert rx + lx == pytest.approx(width, abs=2) and ry == pytest.approx(ly, abs=2)  # the fit is mirrored
    page.keyboard.press("s")
    assert page.locator("#viewer").get_attribute("data-sync-pan-zoom") == "true"
    box = page.locator(f"{cell(rcc)} .vp-element").bounding_box()
    x, y = box["x"] + box["width"] * 0.7, box["y"] + box["height"] * 0.5
    page.mouse.move(x, y)
    before = page.locator(cell(lcc)).get_attribute("data-scale")
    page.mouse.wheel(0, -300)
    page.wait_for_function("([s, b]) => document.querySelector(s).dataset.scale !== b", arg=[cell(lcc), before])
    page.wait_for_function(
        "([a, b]) => document.querySelector(a).dataset.scale === document.querySelector(b).dataset.scale",
        arg=[cell(rcc), cell(lcc)],
    )
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 60, y + 30, steps=6)
    page.mouse.up()
    (rx2, ry2), (lx2, ly2) = centre(page, rcc), centre(page, lcc)
    assert (rx2, ry2) != pytest.approx((rx, ry), abs=5)  # the right CC moved
    assert rx2 + lx2 == pytest.approx(width, abs=2)  # the left CC moved the mirrored way
    assert ry2 == pytest.approx(ly2, abs=2)
    screenshot(page, "viewer-sync")
    page.keyboard.press("s")  # off: each view moves alone again
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 60, y, steps=6)
    page.mouse.up()
    assert centre(page, lcc) == pytest.approx((lx2, ly2), abs=1)


def test_the_reader_chooses_which_prior_to_compare(live_server, page, radiologist, champion):
    older = make_study(patient_id="P-TWO", seed=6, predict=False)
    Study.objects.filter(pk=older.pk).update(study_date=datetime.date(2022, 3, 1))
    newer = make_study(patient_id="P-TWO", seed=7)  # scored: its AI result is a layer on its images
    Study.objects.filter(pk=newer.pk).update(study_date=datetime.date(2024, 3, 1))
    Prediction.objects.filter(image__study=newer).update(regions=[])
    newer_lcc = newer.images.get(laterality="L", view="CC")
    region = {"x": 150, "y": 200, "width": 60, "height": 50, "probability": 0.9}
    Prediction.objects.filter(image=newer_lcc).update(regions=[region])
    current = make_study(patient_id="P-TWO", seed=8, predict=False)
    Patient.objects.filter(patient_id="P-TWO").update(name="DOE^JANE", birth_date=datetime.date(1960, 5, 17))
    open_case(page, live_server, current)
    # The thumbnails: every image of the exam and of both priors.
    assert page.locator("#thumbnails .thumb").count() == 12
    assert page.locator("#thumbnails [data-prior]").count() == 2
    # The woman's identity, for a radiologist (the portal lets readers see it).
    assert page.locator("#study-facts [data-identity=name]").inner_text() == "DOE JANE"
    assert page.locator("#study-facts [data-identity=birth_date]").inner_text() == "1960-05-17"
    priors = page.locator("#priors li")
    assert priors.count() == 2 and "2024-03-01" in priors.first.inner_text()
    priors.nth(1).get_by_role("button", name="Compare").click()
    page.wait_for_selector("#viewer[data-layout=comparison][data-ready=true]")
    shown = {int(i) for i in page.eval_on_selector_all(".vp.prior", "els => els.map(e => e.dataset.imageId)")}
    assert shown == set(older.images.values_list("pk", flat=True))
    page.keyboard.press("b")
    page.wait_for_selector("#viewer[data-layout=current][data-ready=true]")
    page.keyboard.press("b")  # B compares with the chosen prior again
    page.wait_for_selector("#viewer[data-layout=comparison][data-ready=true]")
    shown = {int(i) for i in page.eval_on_selector_all(".vp.prior", "els => els.map(e => e.dataset.imageId)")}
    assert shown == set(older.images.values_list("pk", flat=True))
    # A prior's thumbnail compares with that prior.
    page.locator("#thumbnails [data-prior='0'] .thumb").first.click()
    page.wait_for_selector("#viewer[data-layout=comparison][data-ready=true]")
    page.wait_for_function(
        "ids => [...document.querySelectorAll('.vp.prior')].every(e => ids.includes(Number(e.dataset.imageId)))",
        arg=list(newer.images.values_list("pk", flat=True)),
    )
    # The prior's AI result, a layer on its images (J toggles it); the current study's marks are apart.
    page.wait_for_selector(f"{cell(newer_lcc)} .ai-mark")
    assert page.locator(".vp.prior .ai-mark").count() == 1
    assert "AI 0.90" in page.locator(f"{cell(newer_lcc)} .ai-mark-label").text_content()
    screenshot(page, "viewer-prior-choice")
    page.keyboard.press("j")
    assert page.locator(".vp.prior .ai-mark").count() == 0
    page.keyboard.press("j")
    assert page.locator(".vp.prior .ai-mark").count() == 1
