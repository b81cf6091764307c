"""The case viewer applies a DICOM VOI LUT table (VOI LUT Sequence), in a real Chromium.

The test image is a horizontal 12-bit ramp and its table an inverting curve, y = (1 - x/4095)^2: under the
pointer, the screen shows the table's output for the stored value the probe reads, which a linear window
(x/4095 for the full range) would not show (up to 160 grey levels apart; the curves cross once, near stored value 1564).
"""

from __future__ import annotations

import numpy as np
import pytest

from screening.models import Image
from tests.browser.conftest import grey_at
from tests.browser.test_viewer import _no_console_errors, cell, ingest, open_case  # noqa: F401 - the fixture
from tests.dicom_factory import mg_dataset

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

TOP = 4095
GREY_TOLERANCE = 8  # GPU interpolation between neighbouring columns and 8-bit rounding


def ramp(rows: int = 512, columns: int = 400) -> np.ndarray:
    """Stored values rising from 0 (left column) to 4095 (right column), the same on every row."""
    return np.tile(np.round(np.linspace(0, TOP, columns)).astype(np.uint16), (rows, 1))


def inverting_lut() -> np.ndarray:
    """4096 entries for stored values 0..4095, 16-bit outputs: (1 - x/4095)^2, from 65535 down to 0."""
    x = np.arange(TOP + 1) / TOP
    return np.round(65535 * (1 - x) ** 2).astype(np.uint16)


def through_lut(stored: int) -> float:
    return 255 * (1 - stored / TOP) ** 2


def linear(stored: int, lower: float = 0, upper: float = TOP) -> float:
    return 255 * min(1, max(0, (stored - lower) / (upper - lower)))


def samples(page, image: Image) -> list[tuple[int, int]]:
    """(stored value, grey on the screen) at points across the image, read under the pointer."""
    target = cell(image)
    box = page.locator(f"{target} .vp-element").bounding_box()
    out = []
    for fraction in (0.2, 0.32, 0.44, 0.56, 0.68, 0.8):
        x, y = box["x"] + box["width"] * fraction, box["y"] + box["height"] * 0.5
        page.mouse.move(x, y)
        page.wait_for_function("s => document.querySelector(s).dataset.probe !== undefined", arg=target)
        stored = int(page.locator(target).get_attribute("data-probe"))
        grey = grey_at(page, target, x, y)
        out.append((stored, grey))
    assert len({s for s, _ in out}) == len(out), out  # distinct points of the ramp
    return out


def wait_painted(page, image: Image, voi: str) -> None:
    page.wait_for_function("([s, v]) => document.querySelector(s).dataset.voi === v", arg=[cell(image), voi])
    page.wait_for_timeout(300)  # painted on the next frame


def preset_names(page) -> list[str]:
    return [o.strip() for o in page.locator("#wl-preset option").all_inner_texts()]


def test_a_voi_lut_table_without_a_window_is_what_the_screen_shows(live_server, page, radiologist, champion):
    ds = mg_dataset(ramp(), bits=12, laterality="L", view="CC", voi_lut=inverting_lut())
    assert "WindowCenter" not in ds and "VOILUTSequence" in ds
    study = ingest([ds], "P-VOILUT")
    image = study.images.get()
    open_case(page, live_server, study)
    assert page.locator(cell(image)).get_attribute("data-state") == "loaded"
    wait_painted(page, image, "lut")
    shown = samples(page, image)
    for stored, grey in shown:
        assert abs(grey - through_lut(stored)) <= GREY_TOLERANCE, (stored, grey, through_lut(stored))
    # Not a linear window of the stored values (the two curves cross once, near 1564: points away from it).
    apart = [(s, g) for s, g in shown if abs(through_lut(s) - linear(s)) > 40]
    assert len(apart) >= 3 and all(abs(g - linear(s)) > 30 for s, g in apart), shown
    # The table is a preset: no DICOM window is invented for it (the full range stays a choice).
    assert preset_names(page)[1:] == ["VOI LUT", "Full range of the image (C 2048 W 4096)"]
    # A window preset shows the stored values linearly; the table preset brings it back.
    page.select_option("#wl-preset", "1")
    wait_painted(page, image, "linear")
    for stored, grey in samples(page, image):
        assert abs(grey - linear(stored, -0.5, TOP + 0.5)) <= GREY_TOLERANCE, (stored, grey)
    page.select_option("#wl-preset", "0")
    wait_painted(page, image, "lut")
    for stored, grey in samples(page, image):
        assert abs(grey - through_lut(stored)) <= GREY_TOLERANCE, (stored, grey)
    # Reset: the table again (it is this image's default).
    page.keyboard.press("r")
    wait_painted(page, image, "lut")
    assert all(abs(g - through_lut(s)) <= GREY_TOLERANCE for s, g in samples(page, image))


def test_with_windows_and_a_table_the_window_is_the_default_and_the_table_a_preset(
    live_server, page, radiologist, champion
):
    windows = ([2048, 1024], [4096, 2048])
    ds = mg_dataset(ramp(), bits=12, laterality="L", view="CC", window=windows, voi_lut=inverting_lut())
    ds.WindowCenterWidthExplanation = ["STANDARD", "DENSE"]
    ds.VOILUTSequence[0].LUTExplanation = "VENDOR CURVE"
    study = ingest([ds], "P-VOIBOTH")
    image = study.images.get()
    open_case(page, live_server, study)
    wait_painted(page, image, "linear")
    assert page.locator(cell(image)).get_attribute("data-window") == "2048/4096"
    for stored, grey in samples(page, image):
        assert abs(grey - linear(stored)) <= GREY_TOLERANCE, (stored, grey)
    assert preset_names(page)[1:] == [
        "STANDARD (C 2048 W 4096)",
        "DENSE (C 1024 W 2048)",
        "VOI LUT: VENDOR CURVE",
        "Full range of the image (C 2048 W 4096)",
    ]
    page.select_option("#wl-preset", "2")  # the table, chosen
    wait_painted(page, image, "lut")
    for stored, grey in samples(page, image):
        assert abs(grey - through_lut(stored)) <= GREY_TOLERANCE, (stored, grey, through_lut(stored))
    page.select_option("#wl-preset", "1")  # a window again: linear, C 1024 W 2048
    wait_painted(page, image, "linear")
    assert page.locator(cell(image)).get_attribute("data-window") == "1024/2048"
    for stored, grey in samples(page, image):
        assert abs(grey - linear(stored, 0, 2048)) <= GREY_TOLERANCE, (stored, grey)
