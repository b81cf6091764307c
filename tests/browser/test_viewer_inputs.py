"""Every input the portal accepts reaches the screen right: pixel values read back from the canvas.

One ramp of stored values per image (left to right), so each point under the pointer has a stored value
(the probe's readout) and a grey level on the canvas; the grey must be what the image's own display rule
makes of that value: an 8-bit picture as it is, a 16-bit picture stretched over its range (as the server's
renditions do), a stored-inverted picture the right way round, and each DICOM photometric interpretation and
VOI LUT function (LINEAR, LINEAR_EXACT, SIGMOID, a VOI LUT table) by the DICOM formulas (PS3.3 C.11.2.1).
Every image of a case is checked, not only the first (the active) one.
"""

from __future__ import annotations

import io
import math
from unittest import mock

import numpy as np
import pytest
from PIL import Image as PILImage

from screening.models import Image, Study
from tests.browser.conftest import grey_at
from tests.browser.test_viewer import _no_console_errors, cell, ingest, open_case  # noqa: F401 - the fixture
from tests.browser.test_viewer_voi_lut import inverting_lut, through_lut
from tests.dicom_factory import mg_dataset

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

TOLERANCE = 8  # GPU interpolation between neighbouring columns and 8-bit rounding
VIEWS = (("R", "CC"), ("L", "CC"), ("R", "MLO"), ("L", "MLO"))


def ramp(low: int, high: int, dtype, rows: int = 480, columns: int = 400) -> np.ndarray:
    """Stored values rising from `low` (left column) to `high` (right column), the same on every row."""
    return np.tile(np.round(np.linspace(low, high, columns)).astype(dtype), (rows, 1))


def picture_bytes(pixels: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image = PILImage.fromarray(pixels)
    if fmt == "JPEG":
        image.save(buffer, format="JPEG", quality=95)
    else:
        image.save(buffer, format="PNG")
    return buffer.getvalue()


def ingest_pictures(files: list[tuple[bytes, str]], patient_id: str) -> Study:
    """Upload picture files (bytes, extension) as one woman's study, one view each."""
    from screening.intake.services.ingest import ingest_file

    with mock.patch("screening.dispatch.send"):
        for (content, ext), (side, view) in zip(files, VIEWS, strict=False):
            ingest_file(
                file=io.BytesIO(content),
                filename=f"{patient_id}-{side}{view}.{ext}",
                patient_id=patient_id,
                laterality=side,
                view=view,
            )
    return Image.objects.filter(study__patient__patient_id=patient_id).first().study


def samples(page, image: Image, *, ramp: bool = True) -> list[tuple[int, int]]:
    """(stored value the probe reads, grey on the canvas) at points across the cell's middle row that fall
    on the image (the fitted image fills only part of its cell: the probe is silent beside it)."""
    target = cell(image)
    box = page.locator(f"{target} .vp-element").bounding_box()
    out = []
    for step in range(1, 40):
        x, y = box["x"] + box["width"] * step / 40, box["y"] + box["height"] * 0.5
        page.mouse.move(x, y)  # the probe is written by the mousemove handler, before this returns
        probe = page.locator(target).get_attribute("data-probe")
        if probe is None:
            continue
        grey = grey_at(page, target, x, y)
        out.append((int(probe), grey))
    # The probe follows the pointer over the image: distinct points of the ramp give distinct values.
    assert len(out) >= 8 and (not ramp or len({s for s, _ in out}) >= len(out) - 2), out
    return out


def assert_shown(page, image: Image, expected, label: str, *, ramp: bool = True) -> None:
    shown = samples(page, image, ramp=ramp)
    wrong = [(s, g, round(expected(s), 1)) for s, g in shown if abs(g - expected(s)) > TOLERANCE]
    assert not wrong, f"{label}: (stored, grey, expected) {wrong} of {shown}"
    assert max(g for _, g in shown) - min(g for _, g in shown) > 60, f"{label}: no contrast {shown}"


def linear(c: float, w: float):
    def grey(x: float) -> float:  # PS3.3 C.11.2.1.2.1
        if x <= c - 0.5 - (w - 1) / 2:
            return 0
        if x > c - 0.5 + (w - 1) / 2:
            return 255
        return ((x - (c - 0.5)) / (w - 1) + 0.5) * 255

    return grey


def linear_exact(c: float, w: float):
    def grey(x: float) -> float:  # PS3.3 C.11.2.1.3.2
        return 255 * min(1, max(0, (x - c) / w + 0.5))

    return grey


def sigmoid(c: float, w: float):
    def grey(x: float) -> float:  # PS3.3 C.11.2.1.3.1
        return 255 / (1 + math.exp(-4 * (x - c) / w))

    return grey


def stretch(low: float, high: float):
    return lambda x: 255 * min(1, max(0, (x - low) / (high - low)))


def wait_loaded(page, study: Study) -> None:
    for image in study.images.all():
        page.wait_for_function("s => document.querySelector(s).dataset.state === 'loaded'", arg=cell(image))
    page.wait_for_timeout(300)  # painted on the next frame


def test_png_and_jpeg_uploads_show_their_pixels_and_answer_the_tools(live_server, page, radiologist, champion):
    png8 = ramp(10, 245, np.uint8)
    png16 = ramp(1000, 41000, np.uint16)
    jpeg = ramp(20, 235, np.uint8)
    study = ingest_pictures(
        [
            (picture_bytes(png8, "PNG"), "png"),
            (picture_bytes(png16, "PNG"), "png"),
            (picture_bytes(jpeg, "JPEG"), "jpg"),
        ],
        "P-PICTURES",
    )
    images = {(i.laterality, i.view): i for i in study.images.all()}
    open_case(page, live_server, study)
    wait_loaded(page, study)
    # An 8-bit picture as it is (0 black, 255 white); a 16-bit one over its range, as the server renders it.
    assert_shown(page, images["R", "CC"], stretch(0, 255), "8-bit PNG")
    assert_shown(page, images["L", "CC"], stretch(1000, 41000), "16-bit PNG")
    assert_shown(page, images["R", "MLO"], stretch(0, 255), "JPEG")
    # The probe reads the stored 16-bit value, not an 8-bit copy.
    assert max(s for s, _ in samples(page, images["L", "CC"])) > 255
    # Every picture has a window readout; a preset, window/level and reset act on it.
    for image in images.values():
        assert page.locator(cell(image)).get_attribute("data-window"), image
    target = images["R", "CC"]
    page.locator(cell(target)).click()
    page.wait_for_function("() => document.querySelector('#wl-preset').options.length > 1")
    options = [o.strip() for o in page.locator("#wl-preset option").all_inner_texts()]
    assert any(o.startswith("Full range of the image") for o in options), options
    before = page.locator(cell(target)).get_attribute("data-window")
    page.select_option("#wl-preset", str(options.index(next(o for o in options if o.startswith("Full range"))) - 1))
    page.wait_for_function("([s, w]) => document.querySelector(s).dataset.window !== w", arg=[cell(target), before])
    page.wait_for_timeout(300)
    assert_shown(page, target, stretch(9.5, 245.5), "8-bit PNG, full-range preset")
    page.keyboard.press("r")
    page.wait_for_function("([s, w]) => document.querySelector(s).dataset.window === w", arg=[cell(target), before])
    page.wait_for_timeout(300)
    assert_shown(page, target, stretch(0, 255), "8-bit PNG after reset")


def test_a_picture_stored_inverted_is_shown_the_right_way_round(live_server, page, radiologist, champion):
    from tests.browser.conftest import synthetic_mammogram

    tissue = (synthetic_mammogram("CC", seed=2) // 16).astype(np.uint8)  # dark air, bright breast
    study = ingest_pictures([(picture_bytes(255 - tissue, "PNG"), "png")], "P-INVERTED")
    image = study.images.get()
    open_case(page, live_server, study)
    wait_loaded(page, study)
    # As the server's rendition shows it: the stored value v is shown as 255 - v.
    assert_shown(page, image, lambda v: 255 - v, "inverted PNG", ramp=False)


def test_each_dicom_photometric_and_voi_lut_function_is_shown_by_its_rule(live_server, page, radiologist, champion):
    pixels = ramp(0, 4095, np.uint16)
    mono2 = mg_dataset(pixels, bits=12, laterality="R", view="CC", window=(2048, 2048))
    mono2.VOILUTFunction = "LINEAR"
    mono1 = mg_dataset(pixels, bits=12, laterality="L", view="CC", window=(2048, 2048), photometric="MONOCHROME1")
    mono1.VOILUTFunction = "LINEAR"
    exact = mg_dataset(pixels, bits=12, laterality="R", view="MLO", window=(2048, 2048))
    exact.VOILUTFunction = "LINEAR_EXACT"
    sig = mg_dataset(pixels, bits=12, laterality="L", view="MLO", window=(2048, 1024))
    sig.VOILUTFunction = "SIGMOID"
    study = ingest([mono2, mono1, exact, sig], "P-VOIFN")
    images = {(i.laterality, i.view): i for i in study.images.all()}
    open_case(page, live_server, study)
    wait_loaded(page, study)
    for image in images.values():  # every image has its window from the start, not only the active one
        assert page.locator(cell(image)).get_attribute("data-window") in ("2048/2048", "2048/1024"), image
    assert_shown(page, images["R", "CC"], linear(2048, 2048), "MONOCHROME2 LINEAR")
    assert_shown(page, images["L", "CC"], lambda x: 255 - linear(2048, 2048)(x), "MONOCHROME1 LINEAR")
    assert_shown(page, images["R", "MLO"], linear_exact(2048, 2048), "LINEAR_EXACT")
    assert_shown(page, images["L", "MLO"], sigmoid(2048, 1024), "SIGMOID")
    assert "C 2048 W 1024" in page.locator(f"{cell(images['L', 'MLO'])} .vp-wl").inner_text()


def test_a_voi_lut_table_under_monochrome1_is_inverted_like_a_window(live_server, page, radiologist, champion):
    pixels = ramp(0, 4095, np.uint16)
    mono2 = mg_dataset(pixels, bits=12, laterality="R", view="CC", voi_lut=inverting_lut())
    mono1 = mg_dataset(pixels, bits=12, laterality="L", view="CC", voi_lut=inverting_lut(), photometric="MONOCHROME1")
    study = ingest([mono2, mono1], "P-VOITABLE")
    images = {(i.laterality, i.view): i for i in study.images.all()}
    open_case(page, live_server, study)
    wait_loaded(page, study)
    assert_shown(page, images["R", "CC"], through_lut, "VOI LUT table, MONOCHROME2")
    assert_shown(page, images["L", "CC"], lambda x: 255 - through_lut(x), "VOI LUT table, MONOCHROME1")


def test_monochrome1_inverts_linear_exact_and_sigmoid_windows_too(live_server, page, radiologist, champion):
    pixels = ramp(0, 4095, np.uint16)
    exact = mg_dataset(pixels, bits=12, laterality="R", view="CC", window=(2048, 2048), photometric="MONOCHROME1")
    exact.VOILUTFunction = "LINEAR_EXACT"
    sig = mg_dataset(pixels, bits=12, laterality="L", view="CC", window=(2048, 1024), photometric="MONOCHROME1")
    sig.VOILUTFunction = "SIGMOID"
    study = ingest([exact, sig], "P-VOIFN1")
    images = {(i.laterality, i.view): i for i in study.images.all()}
    open_case(page, live_server, study)
    wait_loaded(page, study)
    assert_shown(page, images["R", "CC"], lambda x: 255 - linear_exact(2048, 2048)(x), "MONOCHROME1 LINEAR_EXACT")
    assert_shown(page, images["L", "CC"], lambda x: 255 - sigmoid(2048, 1024)(x), "MONOCHROME1 SIGMOID")
    # Another window and an inversion, then reset: the image's own window, function and photometric again.
    target = cell(images["L", "CC"])
    page.locator(target).click()
    page.wait_for_function("() => document.querySelector('#wl-preset').options.length > 2")
    page.select_option("#wl-preset", "1")  # the full range
    page.keyboard.press("i")
    page.wait_for_function("s => document.querySelector(s).dataset.window !== '2048/1024'", arg=target)
    page.keyboard.press("r")
    page.wait_for_function("s => document.querySelector(s).dataset.window === '2048/1024'", arg=target)
    page.wait_for_timeout(300)
    assert_shown(page, images["L", "CC"], lambda x: 255 - sigmoid(2048, 1024)(x), "MONOCHROME1 SIGMOID after reset")
