"""The case viewer at full bit depth (Cornerstone3D over the portal's WADO-RS) in a real Chromium."""

from __future__ import annotations

import io
import re
from unittest import mock

import numpy as np
import pytest
from pydicom.uid import generate_uid

from screening.models import Finding, Image, Prediction, Review, Study
from tests.browser.conftest import FOUR_VIEWS, log_in, make_study, screenshot
from tests.dicom_factory import dcmtk_compress, mg_dataset, to_bytes

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


def ingest(datasets, patient_id: str) -> Study:
    """Ingest DICOM datasets as one study (no predictions run)."""
    from screening.intake.services.ingest import ingest_file

    study_uid = generate_uid()
    with mock.patch("screening.dispatch.send"):
        for i, ds in enumerate(datasets):
            ds.StudyInstanceUID = study_uid
            ds.PatientID = patient_id
            ingest_file(file=io.BytesIO(to_bytes(ds)), filename=f"{patient_id}-{i}.dcm")
    return Study.objects.get(study_uid=study_uid)


def cell(image: Image) -> str:
    return f'.vp[data-image-id="{image.pk}"]'


def open_case(page, live_server, study: Study) -> None:
    log_in(page, live_server.url, "rad", f"/studies/{study.pk}/")
    page.wait_for_selector("#viewer[data-ready=true]", timeout=90_000)


def grey_levels(page, image: Image) -> list[int]:
    """The distinct grey values Cornerstone painted on the cell's canvas (red channel)."""
    return page.eval_on_selector(
        f"{cell(image)} canvas",
        """c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; const s = new Set();
                  for (let i = 0; i < d.length; i += 4) s.add(d[i]); return [...s].sort((a, b) => a - b); }""",
    )


def ramp_14bit(rows: int = 512, columns: int = 400) -> np.ndarray:
    """Every 14-bit value, in order, row after row: stored values 0..16383 (and again)."""
    return (np.arange(rows * columns, dtype=np.uint32) % 16384).reshape(rows, columns).astype(np.uint16)


def test_a_14_bit_image_reaches_the_screen_at_full_bit_depth(live_server, page, radiologist, champion):
    pixels = ramp_14bit()
    ds = mg_dataset(pixels, bits=14, laterality="L", view="CC", window=([4000, 12000], [100, 100]))
    study = ingest([ds], "P-BITS")
    image = study.images.get()
    open_case(page, live_server, study)
    target = cell(image)
    assert page.locator(target).get_attribute("data-state") == "loaded"

    # The probe reads the stored value under the pointer.
    box = page.locator(f"{target} .vp-element").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + box["height"] * 0.4)
    page.wait_for_function(f"() => document.querySelector('{target}').dataset.probe !== undefined")
    text = page.locator(f"{target} .vp-probe").inner_text()
    x, y = (int(v) for v in text.split(":")[0].replace("x", "").split("y"))
    assert int(page.locator(target).get_attribute("data-probe")) == int(pixels[y, x])

    # The DICOM windows (width 100 stored units) are presets; each shows detail an 8-bit rendition
    # of the 14-bit range (64 stored units per grey level: at most 2 levels in 100 units) has lost.
    shown = []
    for index, centre in enumerate((4000, 12000)):
        page.select_option("#wl-preset", str(index))
        page.wait_for_function(f"() => document.querySelector('{target}').dataset.window === '{centre}/100'")
        page.wait_for_timeout(300)  # painted on the next frame
        levels = grey_levels(page, image)
        assert len(levels) > 60, levels
        shown.append(levels)
    assert page.locator("#wl-readout").inner_text() == "C 12000 / W 100"


def test_a_jpeg_ls_image_is_decoded_in_the_browser_under_the_csp(live_server, page, radiologist, champion):
    """The WebAssembly codec runs in a worker: the policy's 'wasm-unsafe-eval' and worker-src 'self'
    let it (a refusal would be a console error, which the fixture fails on)."""
    pixels = ramp_14bit(256, 200)
    ds = dcmtk_compress(mg_dataset(pixels, bits=14, laterality="L", view="CC"), "dcmcjpls")
    study = ingest([ds], "P-JLS")
    image = study.images.get()
    open_case(page, live_server, study)
    target = cell(image)
    assert page.locator(target).get_attribute("data-state") == "loaded"
    box = page.locator(f"{target} .vp-element").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5)
    page.wait_for_function(f"() => document.querySelector('{target}').dataset.probe !== undefined")
    text = page.locator(f"{target} .vp-probe").inner_text()
    x, y = (int(v) for v in text.split(":")[0].replace("x", "").split("y"))
    assert int(page.locator(target).get_attribute("data-probe")) == int(pixels[y, x])  # lossless


def test_uncompressed_pixels_are_read_where_they_arrive_and_compressed_ones_in_a_worker(
    live_server, page, radiologist, champion
):
    """Issue 24: an uncompressed frame no longer travels to a decode worker and back (two 27 MB copies for a
    mammogram); it is read on the page. Both paths give the stored values, and the compressed one still
    decodes in its worker."""
    pixels = ramp_14bit(256, 200)
    plain = mg_dataset(pixels, bits=14, laterality="L", view="CC")
    packed = dcmtk_compress(mg_dataset(pixels, bits=14, laterality="R", view="CC"), "dcmcjpls")
    study = ingest([plain, packed], "P-PLAIN")
    open_case(page, live_server, study)
    # One frame read here (plain), one sent to the workers (JPEG-LS): the mark counts the first kind.
    assert page.evaluate("() => performance.getEntriesByName('viewer:decode-here').length") == 1
    for image in study.images.all():
        target = cell(image)
        assert page.locator(target).get_attribute("data-state") == "loaded"
        box = page.locator(f"{target} .vp-element").bounding_box()
        page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5)
        page.wait_for_function(f"() => document.querySelector('{target}').dataset.probe !== undefined")
        text = page.locator(f"{target} .vp-probe").inner_text()
        x, y = (int(v) for v in text.split(":")[0].replace("x", "").split("y"))
        assert int(page.locator(target).get_attribute("data-probe")) == int(pixels[y, x])
        assert len(grey_levels(page, image)) > 200  # windowed over the full range, not a blank canvas


def test_signed_uncompressed_pixels_read_on_the_page_are_sign_extended_from_bits_stored(
    live_server, page, radiologist, champion
):
    """A signed 12-bit image whose unused high bits are zero (allowed by DICOM: only Bits Stored count):
    read on the page as the decode worker read it, -5 is 0x0FFB in the file and -5 under the probe."""
    values = (np.arange(256 * 200, dtype=np.int32) % 4096 - 2048).reshape(256, 200).astype(np.int16)
    ds = mg_dataset(np.zeros((256, 200), dtype=np.uint16), bits=12, laterality="L", view="CC")
    ds.PixelRepresentation = 1
    ds.PixelData = (values.astype(np.int32) & 0x0FFF).astype("<u2").tobytes()  # high 4 bits left at 0
    study = ingest([ds], "P-SIGNED")
    image = study.images.get()
    open_case(page, live_server, study)
    target = cell(image)
    assert page.locator(target).get_attribute("data-state") == "loaded"
    assert page.evaluate("() => performance.getEntriesByName('viewer:decode-here').length") == 1
    box = page.locator(f"{target} .vp-element").bounding_box()
    for fx, fy in ((0.3, 0.3), (0.5, 0.5), (0.7, 0.6)):
        page.mouse.move(box["x"] + box["width"] * fx, box["y"] + box["height"] * fy)
        page.wait_for_function(f"() => document.querySelector('{target}').dataset.probe !== undefined")
        text = page.locator(f"{target} .vp-probe").inner_text()
        x, y = (int(v) for v in text.split(":")[0].replace("x", "").split("y"))
        assert int(page.locator(target).get_attribute("data-probe")) == int(values[y, x])


def mean_grey(page, image: Image) -> float:
    return page.eval_on_selector(
        f"{cell(image)} canvas",
        """c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let t = 0;
                  for (let i = 0; i < d.length; i += 4) t += d[i]; return t / (d.length / 4); }""",
    )


def test_monochrome1_looks_like_monochrome2_of_the_same_data(live_server, page, radiologist, champion):
    from tests.browser.conftest import synthetic_mammogram

    pixels = synthetic_mammogram("CC", seed=3)
    mono2 = mg_dataset(pixels, laterality="L", view="CC")
    mono1 = mg_dataset(4095 - pixels, laterality="R", view="CC", photometric="MONOCHROME1")
    study = ingest([mono2, mono1], "P-MONO")
    left, right = study.images.get(laterality="L"), study.images.get(laterality="R")
    open_case(page, live_server, study)
    assert page.locator(cell(right)).get_attribute("data-photometric") == "MONOCHROME1"
    # Same tissue, same brightness: the MONOCHROME1 image is not shown as a negative.
    bright, dark = mean_grey(page, left), mean_grey(page, right)
    assert bright > 10 and abs(bright - dark) < 0.1 * bright
    # Both chest walls (the synthetic one is on the stored image's left) face the centre line.
    assert page.locator(cell(right)).get_attribute("data-flip") == "true"
    assert page.locator(cell(left)).get_attribute("data-flip") == "false"


def test_the_ruler_reads_mm_on_a_calibrated_image(live_server, page, radiologist, champion):
    ds = mg_dataset(ramp_14bit(), bits=14, laterality="L", view="CC")
    ds.ImagerPixelSpacing = [0.1, 0.1]
    study = ingest([ds], "P-RULER")
    image = study.images.get()
    open_case(page, live_server, study)
    assert "Imager pixel spacing 0.1 mm" in page.locator(f"{cell(image)} .vp-info").inner_text()
    page.keyboard.press("d")
    box = page.locator(f"{cell(image)} .vp-element").bounding_box()
    scale = float(page.locator(cell(image)).get_attribute("data-scale") or 0)
    assert scale > 0  # half the shown height in mm: a screen pixel is 2 * scale / height mm
    x0, y0 = box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.5
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x0 + 100, y0, steps=5)
    page.mouse.up()
    expected = 100 * 2 * scale / box["height"]
    # The label follows the drag: under load it may still show an intermediate length, so wait (without a
    # time assertion) until it settles within 5% of the expected length; a wrong ruler never gets there.
    reads_expected = """([s, want]) => [...document.querySelectorAll(s + ' svg text')].some(t => {
        const m = t.textContent.match(/([0-9.]+)\\s*mm/);
        return m && Math.abs(parseFloat(m[1]) - want) <= 0.05 * want;
    })"""
    try:
        page.wait_for_function(reads_expected, arg=[cell(image), expected], timeout=20000)
    except Exception:
        pass  # the assertion below reports what the label says
    text = " ".join(page.locator(f"{cell(image)} svg text").all_text_contents())
    measured = float(text.split("mm")[0].split()[-1])
    assert measured == pytest.approx(expected, rel=0.05)


def test_a_broken_image_says_why_and_the_case_can_still_be_decided(
    live_server, page, radiologist, champion, _no_console_errors
):
    from django.core.files.storage import default_storage

    study = make_study(patient_id="P-BROKEN", views=FOUR_VIEWS[:2], predict=False)
    broken = study.images.get(laterality="R")
    with default_storage.open(broken.original.name, "rb") as fh:
        data = fh.read()
    with default_storage.open(broken.original.name, "wb") as fh:
        fh.write(data[: len(data) // 3])  # the pixel data is cut off
    open_case(page, live_server, study)
    assert page.locator(cell(broken)).get_attribute("data-state") == "failed"
    assert "could not be loaded" in page.locator(f"{cell(broken)} .vp-badge").inner_text()
    good = study.images.get(laterality="L")
    assert page.locator(cell(good)).get_attribute("data-state") == "loaded"
    page.keyboard.press("n")
    page.keyboard.press("Control+Enter")
    page.wait_for_url(f"{live_server.url}/")
    assert Review.objects.get(study=study).decision == "normal"


def test_priors_hang_beside_the_current_study(live_server, page, radiologist, champion):
    import datetime

    prior = make_study(patient_id="P-PRIOR", seed=4, predict=False)
    Study.objects.filter(pk=prior.pk).update(study_date=datetime.date(2024, 3, 1), exam_score=0.31, exam_flag=False)
    Review.objects.create(study=prior, version=1, radiologist=radiologist, decision="normal", birads=1)
    current = make_study(patient_id="P-PRIOR", seed=5, predict=False)
    open_case(page, live_server, current)
    priors = page.locator("#priors li")
    assert priors.count() == 1
    assert "2024-03-01" in priors.first.inner_text() and "Normal · BI-RADS 1" in priors.first.inner_text()
    assert "AI 0.31" in priors.first.inner_text()
    page.keyboard.press("b")
    page.wait_for_selector("#viewer[data-layout=comparison][data-ready=true]")
    cur = {(i.laterality, i.view): i for i in current.images.all()}
    old = {(i.laterality, i.view): i for i in prior.images.all()}
    boxes = {v: page.locator(cell(cur[v])).bounding_box() for v in FOUR_VIEWS}
    prior_boxes = {v: page.locator(cell(old[v])).bounding_box() for v in FOUR_VIEWS}
    for view in FOUR_VIEWS:
        assert page.locator(cell(old[view])).get_attribute("data-state") == "loaded"
        # Its label names the view and nothing else (no AI line for a prior; it once read "null").
        assert page.locator(f"{cell(old[view])} .vp-label").inner_text() == f"Prior {view[0]} {view[1]}"
        assert prior_boxes[view]["y"] == pytest.approx(boxes[view]["y"], abs=2)  # same row: side by side
        assert prior_boxes[view]["x"] > boxes["L", view[1]]["x"]  # the prior pair right of the current pair
    page.keyboard.press("b")
    page.wait_for_selector("#viewer[data-layout=current][data-ready=true]")
    assert page.locator(".vp.prior").count() == 0


def test_ai_marks_toggle_and_zoom_to_the_region(live_server, page, radiologist, champion):
    study = make_study(patient_id="P-MARKS", views=FOUR_VIEWS[:2], lesion_on=("L",))
    lcc = study.images.get(laterality="L")
    region = {"x": 180, "y": 240, "width": 60, "height": 50, "probability": 0.83}
    Prediction.objects.filter(image__study=study).update(regions=[])
    Prediction.objects.filter(image=lcc).update(regions=[region])
    open_case(page, live_server, study)
    marks = page.locator(f"{cell(lcc)} .ai-mark")
    assert marks.count() == 1
    assert "AI 0.83" in page.locator(f"{cell(lcc)} .ai-mark-label").text_content()
    assert page.locator(".ai-mark").count() == 1  # the old prediction of the R image has no regions
    page.keyboard.press("k")
    assert marks.count() == 0
    page.keyboard.press("k")
    assert marks.count() == 1
    before = float(page.locator(cell(lcc)).get_attribute("data-scale"))
    marks.first.click()
    page.wait_for_function(
        "([s, b]) => Number(document.querySelector(s).dataset.scale) < b / 3", arg=[cell(lcc), before]
    )
    # The region is centred in the cell, once the marks are drawn again for the new camera (they are redrawn
    # after the zoom: reading the box before that found no mark, one CI run in many).
    marks.first.wait_for(state="visible")
    page.wait_for_function(
        """([s, m]) => {
            const cell = document.querySelector(s).getBoundingClientRect();
            const mark = document.querySelector(m)?.getBoundingClientRect();
            return !!mark && mark.width > 0 && Math.abs(mark.x + mark.width / 2 - (cell.x + cell.width / 2)) <= 4;
        }""",
        arg=[cell(lcc), f"{cell(lcc)} .ai-mark"],
        timeout=5000,
    )
    mark = marks.first.bounding_box()
    box = page.locator(cell(lcc)).bounding_box()
    assert mark["x"] + mark["width"] / 2 == pytest.approx(box["x"] + box["width"] / 2, abs=4)
    page.keyboard.press("h")  # the heatmap stays an option
    page.wait_for_selector(f"{cell(lcc)} image.heatmap", state="attached")


def test_confirm_ai_needs_a_second_key_press_when_the_ai_says_abnormal(live_server, page, radiologist, champion):
    study = make_study(patient_id="P-CONFIRM", views=FOUR_VIEWS[:2])
    Study.objects.filter(pk=study.pk).update(exam_flag=True, exam_score=0.9)
    open_case(page, live_server, study)
    page.keyboard.press("c")
    assert page.locator("input[name^=decision_]:checked").count() == 0
    assert "press C again" in page.locator("#confirm-ai").inner_text()
    page.keyboard.press("c")
    # the exam's flag is set by hand here and names no breast: both breasts are recalled
    assert page.locator("input[name=decision_L]:checked").input_value() == "abnormal"
    assert page.locator("input[name=birads_R]:checked").input_value() == "0"


def test_layouts_fill_the_stage_enlarge_in_one_click_and_fit_a_laptop(live_server, page, radiologist, champion):
    page.set_viewport_size({"width": 1366, "height": 768})
    study = make_study(patient_id="P-MLO", views=FOUR_VIEWS[2:], predict=False)
    open_case(page, live_server, study)
    submit = page.locator("#submit-decision").bounding_box()
    assert submit["y"] >= 0 and submit["y"] + submit["height"] <= 768  # no scrolling to submit
    stage = page.locator("#stage").bounding_box()
    rmlo = study.images.get(laterality="R")
    box = page.locator(cell(rmlo)).bounding_box()
    assert box["height"] > 0.95 * stage["height"]  # MLO only: no empty CC row
    page.locator(f"{cell(rmlo)} .vp-enlarge").click()
    page.wait_for_selector(f"{cell(rmlo)}.maximised")
    assert page.locator(cell(rmlo)).bounding_box()["width"] == pytest.approx(stage["width"], abs=3)
    page.locator(f"{cell(rmlo)} .vp-enlarge").click()
    page.wait_for_selector(".vp.maximised", state="detached")
    assert page.locator(cell(rmlo)).bounding_box()["width"] < stage["width"] / 2 + 3


def centre_of(page, selector: str) -> tuple[float, float]:
    box = page.locator(selector).bounding_box()
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


def test_a_radiologist_reads_marks_decides_and_corrects_a_case(live_server, page, radiologist, champion):
    # Every study has a mass in the left breast, where the test marks one, whichever comes first.
    for seed, patient_id in enumerate(("P-ALPHA", "P-BRAVO", "P-CHARLIE"), start=1):
        make_study(patient_id=patient_id, seed=seed, lesion_on=("L",))
    log_in(page, live_server.url, "rad")
    rows = page.locator("#worklist tbody tr")
    assert rows.count() == 3
    order = [int(r.get_attribute("data-study")) for r in rows.all()]
    assert order == list(Study.objects.order_by("-exam_score", "-id").values_list("pk", flat=True))
    screenshot(page, "worklist")

    study = Study.objects.get(pk=order[0])
    images = {(i.laterality, i.view): i for i in study.images.all()}
    rcc, lcc = images["R", "CC"], images["L", "CC"]
    # The model's top regions (original pixels): one on each CC.
    lesion = {"x": 0.42 * lcc.columns - 25, "y": 0.42 * lcc.rows - 25, "width": 50, "height": 50, "probability": 0.8}
    # Both at or above the region threshold (0.5, the test model's): a mark below it is not drawn (issue 20).
    other = {"x": 100, "y": 300, "width": 40, "height": 40, "probability": 0.6}
    Prediction.objects.filter(image__study=study).update(regions=[])
    Prediction.objects.filter(image=lcc).update(regions=[lesion])
    Prediction.objects.filter(image=rcc).update(regions=[other])

    rows.first.locator("a").first.click()
    page.wait_for_url(f"**/studies/{study.pk}/")
    page.wait_for_selector("#viewer[data-ready=true]", timeout=90_000)
    boxes = {v: page.locator(cell(images[v])).bounding_box() for v in FOUR_VIEWS}
    assert boxes["R", "CC"]["x"] < boxes["L", "CC"]["x"]  # right breast on the viewer's left
    assert boxes["R", "CC"]["y"] < boxes["R", "MLO"]["y"]  # CC row above the MLO row
    # The synthetic chest wall is on every image's left: R images are mirrored to face L ones.
    assert [page.locator(cell(images[v])).get_attribute("data-flip") for v in FOUR_VIEWS] == [
        "true",
        "false",
        "true",
        "false",
    ]
    assert page.locator("#ai-exam [data-testid=exam-score]").inner_text() == f"{study.exam_score:.2f}"
    assert page.locator("#ai-images li").count() == 4

    # Zoom to the AI mark on the left CC (it is centred), then mark a point there.
    page.locator(f"{cell(lcc)} .ai-mark").click()
    page.wait_for_timeout(300)
    page.keyboard.press("m")
    page.select_option("#finding-type", "mass")
    page.mouse.click(*centre_of(page, f"{cell(lcc)} .vp-element"))
    assert page.locator("#findings li").count() == 1
    # On the mirrored right CC: zoom to its mark, drag a box from the centre to the screen's right.
    page.keyboard.press("p")  # in mark mode a click marks; in pan mode it zooms to the AI mark
    page.locator(f"{cell(rcc)} .ai-mark").click()
    page.wait_for_timeout(300)
    page.keyboard.press("m")
    page.select_option("#finding-type", "calcification")
    x, y = centre_of(page, f"{cell(rcc)} .vp-element")
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 40, y + 40, steps=6)
    page.mouse.up()
    assert page.locator("#findings li").count() == 2

    page.keyboard.press("a")
    page.keyboard.press("4")
    page.locator("fieldset.density label", has_text="C").click()
    page.fill("#note", "Spiculated mass, left upper outer.")
    page.locator("[data-action=fit]").click()  # back to the whole breasts for the screenshot
    page.wait_for_timeout(300)
    screenshot(page, "viewer")
    page.locator("#note").press("Control+Enter")
    page.wait_for_url(f"**/studies/{order[1]}/")
    page.wait_for_selector("#viewer[data-ready=true]", timeout=90_000)
    assert f"Study #{study.pk}: v1 saved (abnormal, BI-RADS 4)" in page.locator("#status-line").inner_text()

    review = Review.objects.get(study=study)
    assert (review.version, review.decision, review.birads, review.density) == (1, "abnormal", 4, "C")
    mass = Finding.objects.get(review=review, type="mass")
    box = Finding.objects.get(review=review, type="calcification")
    # The point is the centre of the AI region, in original pixels.
    assert (mass.image_id, mass.width, mass.height) == (lcc.pk, 0, 0)
    assert mass.x == pytest.approx(lesion["x"] + 25, abs=3) and mass.y == pytest.approx(lesion["y"] + 25, abs=3)
    # Mirrored: dragging right on screen runs towards x = 0 of the stored image.
    assert box.image_id == rcc.pk and box.width > 5 and box.height > 5
    assert box.x + box.width == pytest.approx(other["x"] + 20, abs=3)
    assert box.y == pytest.approx(other["y"] + 20, abs=3)

    # A correction: back to the case, start from v1, make it normal, drop the mass, submit.
    page.goto(f"{live_server.url}/studies/{study.pk}/")
    page.wait_for_selector("#viewer[data-ready=true]", timeout=90_000)
    history = page.locator("#history li[data-version]")
    assert "v1 Abnormal · BI-RADS 4 · density C" in history.first.inner_text()
    page.get_by_role("button", name="Start from v1").click()
    assert page.locator("#findings li").count() == 2
    page.locator("#findings li", has_text="L CC").get_by_role("button", name=re.compile("Delete")).click()
    page.keyboard.press("n")
    page.keyboard.press("2")
    page.get_by_role("button", name=re.compile("Submit as v2")).click()
    page.wait_for_url(f"**/studies/{order[1]}/")
    v1, v2 = Review.objects.filter(study=study).order_by("version")
    assert (v2.version, v2.decision, v2.birads) == (2, "normal", 2)
    assert list(v2.findings.values_list("type", flat=True)) == ["calcification"]
    assert v1.findings.count() == 2
    page.goto(f"{live_server.url}/studies/{study.pk}/")
    page.wait_for_selector("#viewer[data-ready=true]", timeout=90_000)
    screenshot(page, "viewer-history")


def test_window_level_is_per_image_and_can_be_linked(live_server, page, radiologist, champion):
    study = make_study(patient_id="P-HOTEL", views=FOUR_VIEWS[:2], predict=False)
    rcc, lcc = study.images.get(laterality="R"), study.images.get(laterality="L")
    open_case(page, live_server, study)
    before = page.locator(cell(rcc)).get_attribute("data-window")
    x, y = centre_of(page, f"{cell(lcc)} .vp-element")
    page.mouse.move(x, y)
    page.mouse.down(button="right")  # window/level by right-drag, in any mode
    page.mouse.move(x - 80, y + 60, steps=5)
    page.mouse.up(button="right")
    changed = page.locator(cell(lcc)).get_attribute("data-window")
    assert changed != before
    assert page.locator(cell(rcc)).get_attribute("data-window") == before  # per image
    assert page.locator("#wl-readout").inner_text() == "C {} / W {}".format(*changed.split("/"))
    page.keyboard.press("l")  # linked: the active image's window goes to every image
    page.wait_for_function("([s, w]) => document.querySelector(s).dataset.window === w", arg=[cell(rcc), changed])


@pytest.fixture(autouse=True)
def _no_console_errors(page):
    """No page error or console error while the viewer works (a broken image is reported in its
    cell, not as an uncaught error); the page is closed before the test database is flushed."""
    page.set_default_timeout(60_000)  # four full-depth decodes on a loaded two-core machine
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
    page.on("console", lambda msg: errors.append(f"console: {msg.text}") if msg.type == "error" else None)
    yield errors
    page.goto("about:blank")  # no request of the viewer still open while the database is flushed
    assert [e for e in errors if "Failed to load resource" not in e] == []
