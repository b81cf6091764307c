"""A radiologist works through the worklist in a real Chromium: log in, read, mark, decide, correct."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest

from screening.models import Finding, Image, Prediction, Review, Study
from screening.services import predictions
from tests.browser.conftest import FOUR_VIEWS, log_in, make_study, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


def vp_selector(image: Image) -> str:
    return f'.vp[data-image-id="{image.pk}"]'


def vp_state(page, image: Image) -> dict:
    return page.eval_on_selector(vp_selector(image), "e => ({...e.dataset})")


def wait_for_vp(page, image: Image, condition: str, arg=None) -> None:
    """Wait until a JavaScript condition on `d` (the image's viewport dataset) and `arg` holds."""
    page.wait_for_function(
        f"([id, arg]) => {{ const d = document.querySelector(`.vp[data-image-id='${{id}}']`).dataset; "
        f"return {condition}; }}",
        arg=[image.pk, arg],
    )


def vp_box(page, image: Image) -> dict:
    return page.locator(vp_selector(image)).bounding_box()


def coloured_overlay_pixels(page, image: Image) -> int:
    """Pixels of the overlay canvas painted by the heatmap colour map (red, some opacity)."""
    return page.eval_on_selector(
        f"{vp_selector(image)} canvas.overlay",
        """c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0;
                  for (let i = 0; i < d.length; i += 4) if (d[i] === 255 && d[i + 2] === 0 && d[i + 3] > 0) n++;
                  return n; }""",
    )


def test_a_radiologist_reads_marks_decides_and_corrects_a_case(live_server, page, radiologist, champion, settings):
    settings.PORTAL_RENDITION_MAX_SIDE = 480  # renditions smaller than the 640x512 originals, enough at fit
    # Every study has a mass in the left breast, where the test marks one, whichever comes first.
    for seed, patient_id in enumerate(("P-ALPHA", "P-BRAVO", "P-CHARLIE"), start=1):
        make_study(patient_id=patient_id, seed=seed, lesion_on=("L",))

    # Log in through the form; the worklist is ordered by the AI exam score, highest first.
    log_in(page, live_server.url, "rad")
    rows = page.locator("#worklist tbody tr")
    assert rows.count() == 3
    scores = [float(s) for s in page.locator("#worklist tbody tr .score").all_inner_texts()]
    assert len(scores) == 3 and scores == sorted(scores, reverse=True)
    order = [int(r.get_attribute("data-study")) for r in rows.all()]
    assert order == list(Study.objects.order_by("-exam_score", "-id").values_list("pk", flat=True))
    screenshot(page, "worklist")

    # Open the top case: the four views in the screening hanging protocol.
    rows.first.locator("a").first.click()
    page.wait_for_url(f"**/studies/{order[0]}/")
    page.wait_for_selector("#viewer[data-ready=true]")
    study = Study.objects.get(pk=order[0])
    images = {(i.laterality, i.view): i for i in study.images.all()}
    rcc, lcc, rmlo, lmlo = (images[v] for v in FOUR_VIEWS)
    boxes = {v: vp_box(page, images[v]) for v in FOUR_VIEWS}
    assert boxes["R", "CC"]["x"] < boxes["L", "CC"]["x"]  # right breast on the viewer's left
    assert boxes["R", "CC"]["y"] < boxes["R", "MLO"]["y"]  # CC row above the MLO row
    # The synthetic chest wall is on every image's left: R images are mirrored to face L ones.
    assert [vp_state(page, images[v])["flip"] for v in FOUR_VIEWS] == ["true", "false", "true", "false"]
    assert page.locator("#ai-exam [data-testid=exam-score]").inner_text() == f"{study.exam_score:.2f}"
    assert page.locator("#ai-model").inner_text().startswith("Model test-model · operating point 0.50")
    assert page.locator("#ai-images li").count() == 4

    # Heatmap overlay on and off.
    page.keyboard.press("h")
    page.wait_for_function("() => [...document.querySelectorAll('.vp')].every(e => e.dataset.heatmap === 'shown')")
    assert coloured_overlay_pixels(page, lcc) > 1000
    page.locator("[data-action=heatmap]").click()
    page.wait_for_function("() => [...document.querySelectorAll('.vp')].every(e => e.dataset.heatmap === 'hidden')")
    assert coloured_overlay_pixels(page, lcc) == 0
    page.keyboard.press("h")

    # Mark a point on the mirrored right CC, 12 screen px from its chest wall (the centre line).
    page.keyboard.press("m")
    page.select_option("#finding-type", "calcification")
    box = boxes["R", "CC"]
    fit_scale = float(vp_state(page, rcc)["scale"])
    page.mouse.click(box["x"] + box["width"] - 12, box["y"] + box["height"] / 2)
    assert page.locator("#findings li").count() == 1

    # Zoom into the left CC at the pointer (full resolution is loaded), then draw a box there.
    box = boxes["L", "CC"]
    before = vp_state(page, lcc)
    s0 = float(before["scale"])
    assert before["source"] == "rendition"
    # 30 px above and left of the synthetic lesion's centre (0.42, 0.42 of the image).
    px = box["x"] + float(before["tx"]) + (0.42 * lcc.columns - 30) * s0
    py = box["y"] + float(before["ty"]) + (0.42 * lcc.rows - 30) * s0
    page.mouse.move(px, py)
    for _ in range(4):
        page.mouse.wheel(0, -300)
        page.wait_for_timeout(60)
    wait_for_vp(page, lcc, "Number(d.scale) > 2 * arg", s0)
    wait_for_vp(page, lcc, "d.source === 'full'")
    zoomed = float(vp_state(page, lcc)["scale"])
    page.select_option("#finding-type", "mass")
    page.mouse.move(px, py)
    page.mouse.down()
    page.mouse.move(px + 60 * zoomed, py + 60 * zoomed, steps=6)
    page.mouse.up()
    assert page.locator("#findings li").count() == 2

    # Decide: abnormal, BI-RADS 4, density C, a note.
    page.keyboard.press("a")
    page.keyboard.press("4")
    page.locator("fieldset.density label", has_text="C").click()
    page.fill("#note", "Spiculated mass, left upper outer.")
    page.locator("[data-action=fit]").click()  # back to the whole breast for the screenshot
    screenshot(page, "viewer")

    # Submit with Ctrl+Enter: the next unread case opens and says what was saved.
    page.locator("#note").press("Control+Enter")
    page.wait_for_url(f"**/studies/{order[1]}/")
    page.wait_for_selector("#viewer[data-ready=true]")
    assert f"Study #{study.pk}: v1 saved (abnormal, BI-RADS 4)" in page.locator("#status-line").inner_text()

    review = Review.objects.get(study=study)
    assert (review.version, review.decision, review.birads, review.density) == (1, "abnormal", 4, "C")
    assert review.radiologist == radiologist and review.note == "Spiculated mass, left upper outer."
    point = Finding.objects.get(review=review, type="calcification")
    mass = Finding.objects.get(review=review, type="mass")
    # The point: the chest wall is x = 0 of the stored image, mirrored on screen.
    assert (point.image_id, point.laterality, point.width, point.height) == (rcc.pk, "R", 0, 0)
    assert point.x == pytest.approx(12 / fit_scale, abs=2)
    assert point.y == pytest.approx(rcc.rows / 2, abs=2)
    # The box: its corner stayed under the pointer while zooming; its size is in original pixels.
    assert (mass.image_id, mass.laterality) == (lcc.pk, "L")
    assert mass.x == pytest.approx(0.42 * lcc.columns - 30, abs=2)
    assert mass.y == pytest.approx(0.42 * lcc.rows - 30, abs=2)
    assert mass.width == pytest.approx(60, abs=1) and mass.height == pytest.approx(60, abs=1)

    # A correction: back to the case, start from v1, make it normal, drop the mass, submit.
    page.goto(f"{live_server.url}/studies/{study.pk}/")
    page.wait_for_selector("#viewer[data-ready=true]")
    history = page.locator("#history li[data-version]")
    assert history.count() == 1
    assert "v1 Abnormal · BI-RADS 4 · density C" in history.first.inner_text()
    assert "rad," in history.first.inner_text()
    page.get_by_role("button", name="Start from v1").click()
    assert page.locator("#findings li").count() == 2
    page.locator("#findings li", has_text="L CC").get_by_role("button", name=re.compile("Delete")).click()
    page.keyboard.press("n")
    page.keyboard.press("2")
    page.get_by_role("button", name=re.compile("Submit as v2")).click()
    page.wait_for_url(f"**/studies/{order[1]}/")

    v1, v2 = Review.objects.filter(study=study).order_by("version")
    assert (v2.version, v2.decision, v2.birads, v2.density) == (2, "normal", 2, "C")
    assert list(v2.findings.values_list("type", flat=True)) == ["calcification"]
    assert v1.findings.count() == 2  # the first version is kept as it was

    page.goto(f"{live_server.url}/studies/{study.pk}/")
    page.wait_for_selector("#viewer[data-ready=true]")
    assert [h.get_attribute("data-version") for h in history.all()] == ["2", "1"]
    assert "v2 Normal · BI-RADS 2" in history.first.inner_text()
    screenshot(page, "viewer-history")


def test_missing_views_are_labelled_and_predictions_arrive_without_reloading(live_server, page, radiologist, champion):
    study = make_study(patient_id="P-DELTA", views=(("L", "CC"), ("L", "OTHER")), predict=False)
    queued = list(Prediction.objects.filter(image__study=study, status="queued"))
    assert len(queued) == 2

    log_in(page, live_server.url, "rad", f"/studies/{study.pk}/")
    page.wait_for_selector("#viewer[data-ready=true]")
    for slot in ("R-CC", "R-MLO", "L-MLO"):
        assert page.locator(f'#hanging .vp.empty[data-slot="{slot}"]').is_visible()
    assert page.locator("#hanging .vp.empty", has_text="No right CC image").count() == 1
    assert page.locator('#extra-strip .vp[data-slot="L-OTHER"]').is_visible()
    assert page.locator("#ai-images li[data-status=queued]").count() == 2
    assert "2 queued" in page.locator("#ai-exam").inner_text()

    predictions.run_prediction(queued[0].pk)
    page.wait_for_selector("#viewer[data-ai-pending='0']", timeout=20_000)
    study.refresh_from_db()
    assert page.locator("#ai-images li[data-status=done]").count() == 2
    assert page.locator("#ai-exam [data-testid=exam-score]").inner_text() == f"{study.exam_score:.2f}"
    assert page.locator("#status-line").inner_text() == f"AI finished: exam probability {study.exam_score:.2f}."


def test_a_failed_prediction_shows_its_reason(live_server, page, radiologist, champion):
    study = make_study(patient_id="P-ECHO", views=(("R", "CC"),))
    Prediction.objects.filter(image__study=study).update(status="failed", probability=None, error="cannot decode")
    log_in(page, live_server.url, "rad", f"/studies/{study.pk}/")
    page.wait_for_selector("#viewer[data-ready=true]")
    assert "failed: cannot decode" in page.locator("#ai-images li[data-status=failed]").inner_text()


def test_an_incomplete_or_refused_decision_is_explained_and_not_saved(live_server, page, radiologist, champion):
    study = make_study(patient_id="P-FOXTROT", views=(("R", "CC"),))
    log_in(page, live_server.url, "rad", f"/studies/{study.pk}/")
    page.wait_for_selector("#viewer[data-ready=true]")
    page.keyboard.press("a")
    page.keyboard.press("Control+Enter")
    assert "BI-RADS" in page.locator("#form-error").inner_text()

    page.keyboard.press("5")
    page.eval_on_selector("#decision-form input[name=csrfmiddlewaretoken]", "e => { e.value = 'x'.repeat(64); }")
    page.keyboard.press("Control+Enter")  # the server refuses a request without a valid CSRF token
    page.wait_for_selector("#form-error:has-text('CSRF')")
    assert "log in again" in page.locator("#form-error").inner_text()
    assert page.url.endswith(f"/studies/{study.pk}/")
    assert not Review.objects.exists()


def test_the_help_overlay_lists_the_shortcuts(live_server, page, radiologist, champion):
    study = make_study(patient_id="P-GOLF", views=(("L", "MLO"),))
    log_in(page, live_server.url, "rad", f"/studies/{study.pk}/")
    page.wait_for_selector("#viewer[data-ready=true]")
    page.keyboard.press("?")
    help_dialog = page.locator("#help")
    assert help_dialog.is_visible()
    assert "Heatmap overlay" in help_dialog.inner_text() and "BI-RADS" in help_dialog.inner_text()
    page.keyboard.press("Escape")
    assert not help_dialog.is_visible()


def test_a_radiologist_cannot_reach_the_admin(live_server, page, radiologist):
    log_in(page, live_server.url, "rad")
    assert page.locator("header nav a", has_text="Admin").count() == 0
    page.goto(f"{live_server.url}/admin/")
    assert "Site administration" not in page.content()
    assert "not authorized" in page.content()


def test_an_admin_reaches_the_admin(live_server, page, admin_user):
    log_in(page, live_server.url, "boss")
    page.locator("header nav a", has_text="Admin").click()
    assert "Site administration" in page.content()


def mean_brightness(page, image: Image) -> float:
    from PIL import Image as PILImage

    png = page.locator(vp_selector(image)).screenshot()
    return float(np.asarray(PILImage.open(io.BytesIO(png)).convert("L")).mean())


def test_window_level_invert_linked_pan_zoom_enlarge_and_reset(live_server, page, radiologist, champion):
    study = make_study(patient_id="P-HOTEL", views=FOUR_VIEWS[:2])
    lcc = study.images.get(laterality="L")
    log_in(page, live_server.url, "rad", f"/studies/{study.pk}/")
    page.wait_for_selector("#viewer[data-ready=true]")
    plain = mean_brightness(page, lcc)

    page.keyboard.press("i")  # inverted: the black background turns white
    assert page.locator("#viewer").get_attribute("data-invert") == "true"
    assert mean_brightness(page, lcc) > plain + 100

    page.keyboard.press("i")
    box = vp_box(page, lcc)
    page.mouse.move(box["x"] + 100, box["y"] + 100)
    page.mouse.down(button="right")  # window/level by right-drag: narrower window, higher level
    page.mouse.move(box["x"] + 20, box["y"] + 180, steps=5)
    page.mouse.up(button="right")
    assert page.locator("#viewer").get_attribute("data-window") == "175/208"
    assert page.locator("#wl-preset").input_value() == "custom"
    assert mean_brightness(page, lcc) < plain

    page.select_option("#wl-preset", "default")
    assert page.locator("#viewer").get_attribute("data-window") == "255/128"
    assert abs(mean_brightness(page, lcc) - plain) < 1

    rcc = study.images.get(laterality="R")
    s_fit = float(vp_state(page, lcc)["scale"])
    tx, rcc_tx = float(vp_state(page, lcc)["tx"]), float(vp_state(page, rcc)["tx"])
    page.mouse.move(box["x"] + 100, box["y"] + 100)
    page.mouse.down()  # pan mode: drag moves the image
    page.mouse.move(box["x"] + 160, box["y"] + 120, steps=4)
    page.mouse.up()
    wait_for_vp(page, lcc, "Number(d.tx) > arg + 50", tx)
    # Right and left are linked: the right CC moved the mirror way (away from the centre line too).
    moved = float(vp_state(page, lcc)["tx"]) - tx
    wait_for_vp(page, rcc, "Math.abs(Number(d.tx) - arg) < 0.02", rcc_tx - moved)
    page.mouse.wheel(0, -300)
    wait_for_vp(page, lcc, "Number(d.scale) > arg", s_fit)
    wait_for_vp(page, rcc, "d.scale === arg", vp_state(page, lcc)["scale"])
    page.keyboard.press("l")  # unlinked: the left zooms alone
    linked_scale = vp_state(page, rcc)["scale"]
    page.mouse.wheel(0, -300)
    wait_for_vp(page, lcc, "Number(d.scale) > 1.2 * Number(arg)", linked_scale)
    assert vp_state(page, rcc)["scale"] == linked_scale
    dragged = float(vp_state(page, lcc)["tx"])
    page.keyboard.press("ArrowLeft")  # the image has the focus: arrows pan it
    wait_for_vp(page, lcc, "Math.abs(Number(d.tx) - (arg - 40)) < 0.02", dragged)

    page.keyboard.press("f")
    wait_for_vp(page, lcc, "Math.abs(Number(d.scale) - arg) < 1e-3", s_fit)
    in_hanging = s_fit
    page.locator(f"{vp_selector(lcc)} canvas.overlay").dblclick()  # enlarge to the whole stage
    page.wait_for_selector(f"{vp_selector(lcc)}.maximised")
    wait_for_vp(page, lcc, "Number(d.scale) > 1.5 * arg", in_hanging)  # fitted again, bigger
    stage = page.locator("#stage").bounding_box()
    assert vp_box(page, lcc)["width"] == pytest.approx(stage["width"], abs=3)
    enlarged = float(vp_state(page, lcc)["scale"])
    page.keyboard.press("+")
    wait_for_vp(page, lcc, "Number(d.scale) > 1.2 * arg", enlarged)
    page.keyboard.press("i")
    page.keyboard.press("r")  # reset: back to the hanging, fitted, not inverted
    page.wait_for_selector(".vp.maximised", state="detached")
    assert vp_box(page, lcc)["width"] < stage["width"] / 2 + 3
    assert page.locator("#viewer").get_attribute("data-invert") == "false"


def test_confirm_ai_prefills_the_decision_from_the_exam_flag(live_server, page, radiologist, champion):
    study = make_study(patient_id="P-INDIA", views=FOUR_VIEWS[:2])
    log_in(page, live_server.url, "rad", f"/studies/{study.pk}/")
    page.wait_for_selector("#viewer[data-ready=true]")
    page.keyboard.press("c")
    expected = ("abnormal", "0") if study.exam_flag else ("normal", "1")
    assert page.locator("input[name=decision]:checked").input_value() == expected[0]
    assert page.locator("input[name=birads]:checked").input_value() == expected[1]
    page.keyboard.press("Control+Enter")
    page.keyboard.press("Control+Enter")  # a double press saves one version
    page.wait_for_url(f"{live_server.url}/")  # no other case: back to the worklist
    review = Review.objects.get(study=study)
    assert review.decision == expected[0] and review.agrees_with_ai is True
