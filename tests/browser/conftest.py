"""Browser tests: Playwright for Python driving the system Chromium against Django's live server.

Never downloads a browser: without /usr/bin/chromium (or $PORTAL_CHROMIUM) every browser test is skipped.
The live server needs committed data, so these tests use transactional databases;
`serialized_rollback` restores the role groups that migrations created after each flush.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from unittest import mock

import numpy as np
import pytest

from tests.dicom_factory import mg_dataset, to_bytes

CHROMIUM = os.environ.get("PORTAL_CHROMIUM", "/usr/bin/chromium")  # Debian's package; never a downloaded one
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD = "a-long-test-password"
FOUR_VIEWS = (("R", "CC"), ("L", "CC"), ("R", "MLO"), ("L", "MLO"))


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"browser tests need the system Chromium at {CHROMIUM}")
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": CHROMIUM_ARGS}


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args):
    return {**browser_context_args, "viewport": {"width": 1920, "height": 1080}}


@pytest.fixture
def page(page):
    page.set_default_timeout(15_000)
    return page


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Gaussian-filtered white noise (through the FFT), scaled to [0, 1]: a tissue-like texture."""
    noise = rng.standard_normal(shape)
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.rfftfreq(shape[1])[None, :]
    kernel = np.exp(-2 * (np.pi * sigma) ** 2 * (fx**2 + fy**2))
    smooth = np.fft.irfft2(np.fft.rfft2(noise) * kernel, s=shape)
    return (smooth - smooth.min()) / (np.ptp(smooth) or 1)


def synthetic_mammogram(
    view: str, *, seed: int, rows: int = 640, columns: int = 512, lesion: bool = False
) -> np.ndarray:
    """A 12-bit breast-like image, chest wall on the image's LEFT edge (the viewer must mirror R images).

    Synthetic only: a half-ellipse of textured tissue, denser towards the chest wall, a pectoral
    muscle on MLO views and, optionally, a bright spiculated mass.
    """
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:rows, 0:columns].astype(np.float64)
    cy = rows * (0.45 if view == "MLO" else 0.5)
    r = np.sqrt((x / (0.78 * columns)) ** 2 + ((y - cy) / (0.46 * rows)) ** 2)
    breast = r < 1
    skin = np.clip((1 - r) / 0.08, 0, 1)
    texture = 0.55 * _smooth_noise(rng, (rows, columns), 6) + 0.45 * _smooth_noise(rng, (rows, columns), 18)
    glandular = np.clip(1.15 - r, 0, 1) * texture
    image = np.where(breast, 0.25 * skin + 0.55 * glandular, 0.0)
    if view == "MLO":
        pectoral = x < (0.35 * columns) * (1 - y / (0.6 * rows))
        image = np.where(pectoral & breast, np.maximum(image, 0.42 + 0.12 * texture), image)
    if lesion:
        ly, lx = rows * 0.42, columns * 0.42
        d = np.hypot(x - lx, y - ly)
        angle = np.arctan2(y - ly, x - lx)
        spicules = 1 + 0.25 * np.sin(9 * angle + rng.uniform(0, 6))
        image = image + 0.35 * np.exp(-((d / (0.045 * columns * spicules)) ** 2))
    image = image + rng.normal(0, 0.01, image.shape)
    return np.clip(image * 4095, 0, 4095).astype(np.uint16)


def make_study(
    *,
    patient_id: str,
    views=FOUR_VIEWS,
    seed: int = 0,
    lesion_on: tuple[str, ...] = (),
    predict: bool = True,
):
    """Ingest one study of synthetic MG DICOMs through the real ingest service.

    The queued predictions are not delivered to a broker (none is consumed here, and a real
    one would keep the messages); with predict=True they run in-process, batched, as the
    inference worker would run them.
    """
    from pydicom.uid import generate_uid

    from screening.models import Prediction, Study
    from screening.services import ingest_file, predictions

    study_uid = generate_uid()
    with mock.patch("screening.dispatch.send"):
        for i, (side, view) in enumerate(views):
            pixels = synthetic_mammogram(view, seed=seed * 10 + i, lesion=side in lesion_on)
            ds = mg_dataset(pixels, laterality=side, view=view, study_uid=study_uid, patient_id=patient_id)
            ingest_file(file=io.BytesIO(to_bytes(ds)), filename=f"{patient_id}-{side}{view}.dcm")
    study = Study.objects.get(study_uid=study_uid)
    if predict:
        while queued := Prediction.objects.filter(image__study=study, status="queued").first():
            predictions.run_prediction(queued.pk)
    study.refresh_from_db()
    return study


def log_in(page, base_url: str, username: str, next_path: str = "/") -> None:
    page.goto(f"{base_url}{next_path}")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_load_state()


def screenshot(page, name: str) -> None:
    """README screenshots, only when PORTAL_SCREENSHOTS names a folder (see bench/screenshots.py)."""
    folder = os.environ.get("PORTAL_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"))
