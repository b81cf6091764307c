"""Browser tests: Playwright for Python driving the system Chromium against Django's live server.

Never downloads a browser: without /usr/bin/chromium (or $PORTAL_CHROMIUM) every browser test is skipped.
The live server needs committed data, so these tests use transactional databases;
`serialized_rollback` restores the role groups that migrations created after each flush.
"""

from __future__ import annotations

import io
import os
import threading
import time
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


class _LiveRequests:
    """Requests the live server is handling now, counted from Django's request signals.

    A page that leaves sends its last requests (the case lock's release beacon, for one) while the test is
    being torn down; if one of them still holds the database when the transactional flush runs, the flush
    fails and the next test starts on the last one's rows. The `page` fixture drains them first.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count = 0
        self.changed = time.monotonic()

    def started(self, **kwargs) -> None:
        with self._lock:
            self.count += 1
            self.changed = time.monotonic()

    def finished(self, **kwargs) -> None:
        with self._lock:
            self.count = max(0, self.count - 1)
            self.changed = time.monotonic()

    def wait_until_idle(self, quiet: float = 0.3, limit: float = 15.0) -> bool:
        """True once no request has been running for `quiet` seconds (the beacon may still be on its way)."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            with self._lock:
                idle = self.count == 0 and time.monotonic() - self.changed >= quiet
            if idle:
                return True
            time.sleep(0.05)
        return False


LIVE_REQUESTS = _LiveRequests()


@pytest.fixture(scope="session", autouse=True)
def _count_live_requests():
    from django.core.signals import request_finished, request_started

    request_started.connect(LIVE_REQUESTS.started, weak=False, dispatch_uid="browser-live-requests-started")
    request_finished.connect(LIVE_REQUESTS.finished, weak=False, dispatch_uid="browser-live-requests-finished")
    yield
    request_started.disconnect(dispatch_uid="browser-live-requests-started")
    request_finished.disconnect(dispatch_uid="browser-live-requests-finished")


@pytest.fixture
def page(page):
    page.set_default_timeout(15_000)
    yield page
    # Leave the page while the database is still the test's, and let its last requests finish.
    if not page.is_closed():
        try:
            page.goto("about:blank")
        except Exception:  # noqa: BLE001 - a page that cannot navigate has no requests left to send
            pass
    assert LIVE_REQUESTS.wait_until_idle(), "the live server was still answering the page 15 s after it left"


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

    from screening.ai.services import predicting
    from screening.intake.services.ingest import ingest_file
    from screening.models import Prediction, Study

    study_uid = generate_uid()
    with mock.patch("screening.dispatch.send"):
        for i, (side, view) in enumerate(views):
            pixels = synthetic_mammogram(view, seed=seed * 10 + i, lesion=side in lesion_on)
            ds = mg_dataset(pixels, laterality=side, view=view, study_uid=study_uid, patient_id=patient_id)
            ingest_file(file=io.BytesIO(to_bytes(ds)), filename=f"{patient_id}-{side}{view}.dcm")
    study = Study.objects.get(study_uid=study_uid)
    if predict:
        while queued := Prediction.objects.filter(image__study=study, status="queued").first():
            predicting.run_prediction(queued.pk)
    study.refresh_from_db()
    return study


def log_in(page, base_url: str, username: str, next_path: str = "/") -> None:
    page.goto(f"{base_url}{next_path}")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_load_state()


def grey_at(page, target: str, x: float, y: float) -> int:
    """The grey level the canvas of the cell `target` shows at page point (x, y): what the reader sees there."""
    return page.eval_on_selector(
        f"{target} canvas",
        """(c, [x, y]) => {
             const r = c.getBoundingClientRect();
             const cx = Math.floor((x - r.left) * c.width / r.width);
             const cy = Math.floor((y - r.top) * c.height / r.height);
             return c.getContext('2d').getImageData(cx, cy, 1, 1).data[0]; }""",
        [x, y],
    )


def screenshot(page, name: str) -> None:
    """README screenshots, only when PORTAL_SCREENSHOTS names a folder (see bench/screenshots.py)."""
    folder = os.environ.get("PORTAL_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"))
