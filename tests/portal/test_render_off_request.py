"""Ingest answers before any pixel is decoded; the render worker makes the PNGs (issue 14).

The upload stores the original and the rows and answers; the rendition task runs after
the commit. Undecodable pixel data fails the image with its reason (API and case page),
and a render worker killed mid-render leaves no stuck image and no orphan file.
"""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from PIL import Image as PILImage
from pydicom.encaps import encapsulate, generate_frames
from pydicom.uid import JPEG2000Lossless, RLELossless

from screening.intake.services import renditions
from screening.intake.services.ingest import ingest_file
from screening.models import Image, Study
from tests.celery_worker import WorkerProcess, needs_worker_services, purge, wait_until
from tests.conftest import stored_files
from tests.dicom_factory import mg_dataset, phantom, to_bytes
from tests.eager import tasks_in_process
from tests.uploads import upload

RENDER = "screening.tasks.render_image"


def empty_jpeg2000_tile() -> bytes:
    """A JPEG 2000 file whose framing is sound (the SIZ size of the header, an end marker, its
    fragments inside the file) but whose tile holds no coded data: only decoding can tell."""
    ds = mg_dataset()
    ds.compress(JPEG2000Lossless)
    codestream = next(generate_frames(ds.PixelData, number_of_frames=1))
    start_of_data = codestream.index(b"\xff\x93") + 2  # SOD
    ds.PixelData = encapsulate([codestream[:start_of_data] + b"\xff\xd9"])
    return to_bytes(ds)


def noisy_rle() -> bytes:
    """RLE segments of noise: the Rust RLE decoder panics (a BaseException, not an Exception) on it."""
    ds = mg_dataset()
    ds.compress(RLELossless)
    fragment = bytearray(next(generate_frames(ds.PixelData, number_of_frames=1)))
    fragment[64:] = np.random.default_rng(0).integers(0, 255, len(fragment) - 64, dtype=np.uint8).tobytes()
    ds.PixelData = encapsulate([bytes(fragment)])
    return to_bytes(ds)


@pytest.mark.django_db
def test_an_upload_answers_before_rendering_and_the_render_task_makes_the_rendition(
    api, media_root, django_capture_on_commit_callbacks, settings
):
    settings.PORTAL_RENDITION_MAX_SIDE = 256
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = upload(api, to_bytes(mg_dataset(phantom(rows=600, columns=480, bits=12))))
    assert response.status_code == 201, response.json()
    body = response.json()
    # Answered: the rows and the original exist, no pixel was rendered.
    assert body["rendition_status"] == "pending" and body["error"] == ""
    assert [name.split("/")[0] for name in stored_files(media_root)] == ["originals"]
    placeholder = api.get(body["rendition_url"])
    assert placeholder.status_code == 202 and placeholder["Retry-After"]
    assert PILImage.open(io.BytesIO(placeholder.content)).size == (205, 256)
    full = api.get(body["full_url"])
    assert full.status_code == 409 and full.json()["error"]["code"] == "not_rendered"

    with tasks_in_process(RENDER) as runs:  # what the render worker does once the commit has happened
        for callback in callbacks:
            callback()
    assert runs[body["id"]] == 1
    image = Image.objects.get(pk=body["id"])
    assert renditions.rendition_state(image) == "ready" and image.render_attempts == 1
    made = {name.split("/")[0] for name in stored_files(media_root)}
    rendered = {"full", "originals", "previews", "renditions"}
    assert rendered <= made <= rendered | {"heatmaps"}
    shown = api.get(body["rendition_url"])
    assert shown.status_code == 200
    assert PILImage.open(io.BytesIO(b"".join(shown.streaming_content))).size == (205, 256)
    assert api.get(f"/api/v1/images/{body['id']}/").json()["rendition_status"] == "ready"
    assert api.get(body["full_url"]).status_code == 200


@pytest.mark.django_db
def test_a_duplicated_render_task_does_nothing(api, media_root):
    image_id = upload(api, to_bytes(mg_dataset())).json()["id"]
    assert renditions.render_image(image_id) == "ready"
    files = stored_files(media_root)
    assert renditions.render_image(image_id) == "skipped"
    assert stored_files(media_root) == files and Image.objects.get(pk=image_id).render_attempts == 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (
            empty_jpeg2000_tile,
            "the compressed pixel data (JPEG 2000 Image Compression (Lossless Only)) is damaged or truncated",
        ),
        (noisy_rle, "the pixel data is damaged and cannot be decoded: its decoder gave up"),
    ],
    ids=["jpeg2000", "rle"],
)
def test_a_corrupt_pixel_payload_ends_failed_with_its_reason_in_the_api_and_on_the_case(
    api, radiologist, client, media_root, content, reason
):
    response = upload(api, content())
    assert response.status_code == 201, response.json()  # the framing is sound: only decoding finds it
    image_id = response.json()["id"]
    assert renditions.render_image(image_id) == "failed"

    image = Image.objects.get(pk=image_id)
    assert image.status == "failed" and image.error.startswith(reason) and not image.rendition
    body = api.get(f"/api/v1/images/{image_id}/").json()
    assert body["status"] == "failed" and body["rendition_status"] == "failed" and body["error"] == image.error
    refused = api.get(body["rendition_url"])
    assert refused.status_code == 409 and refused.json()["error"]["message"] == f"this image failed: {image.error}"
    assert Study.objects.get(pk=image.study_id).status == "predicted"  # not stuck waiting for the image
    # The case: its page opens (no 500) and the study it loads carries the reason.
    client.force_login(radiologist)
    assert client.get(f"/studies/{image.study_id}/").status_code == 200
    detail = client.get(f"/api/v1/studies/{image.study_id}/").json()
    assert [(i["status"], i["error"]) for i in detail["images"]] == [("failed", image.error)]
    # Nothing but the original stays: no half-written rendition.
    assert [name.split("/")[0] for name in stored_files(media_root)] == ["originals"]
    assert renditions.render_image(image_id) == "skipped"  # a failure is final, never retried


@pytest.mark.django_db
def test_the_sweeper_resends_a_lost_render_and_fails_one_that_kept_killing_its_worker(
    media_root, settings, django_capture_on_commit_callbacks
):
    settings.PORTAL_RENDER_STALE_SECONDS = 1
    lost = ingest_file(file=io.BytesIO(to_bytes(mg_dataset(seed=1, patient_id="S1"))), filename="a.dcm").image
    killer = ingest_file(file=io.BytesIO(to_bytes(mg_dataset(seed=2, patient_id="S2"))), filename="b.dcm").image
    Image.objects.filter(pk=killer.pk).update(render_attempts=settings.PORTAL_RENDER_MAX_ATTEMPTS)
    time.sleep(1.1)
    with tasks_in_process(RENDER) as runs, django_capture_on_commit_callbacks(execute=True):
        counts = renditions.sweep()
    assert counts == {"render_resent": 1, "render_failed": 1}
    assert runs[lost.pk] == 1 and renditions.rendition_state(Image.objects.get(pk=lost.pk)) == "ready"
    killer = Image.objects.get(pk=killer.pk)
    assert killer.status == "failed"
    assert killer.error == "gave up after 3 attempts: the render worker stopped or timed out each time"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("content", "message"),
    [
        (lambda: to_bytes(mg_dataset())[:-5000], "the pixel data is truncated: the file holds 97,400 of the 102,400"),
        (lambda: _j2k_of_other_size(), "the pixel data is 128x100, not the 256x200 the header says"),
    ],
)
def test_what_the_header_and_lengths_tell_is_refused_at_upload_with_nothing_stored(api, media_root, content, message):
    response = upload(api, content())
    assert response.status_code == 400 and response.json()["error"]["message"].startswith(message)
    assert stored_files(media_root) == [] and not Image.objects.exists()


def _j2k_of_other_size() -> bytes:
    small = mg_dataset(phantom(rows=128, columns=100, bits=12))
    small.compress(JPEG2000Lossless)
    ds = mg_dataset()
    ds.compress(JPEG2000Lossless)
    ds.PixelData = small.PixelData
    return to_bytes(ds)


@pytest.mark.worker
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@needs_worker_services
def test_a_render_worker_killed_mid_render_leaves_no_stuck_image_and_no_orphan_file(media_root, settings):
    purge("render")
    slow = WorkerProcess(media_root, "render", "slow-render", settings_module="tests.portal.render_worker_settings")
    workers = [slow]
    try:
        image = ingest_file(file=io.BytesIO(to_bytes(mg_dataset(seed=3, patient_id="K1"))), filename="k.dcm").image
        assert wait_until(lambda: Image.objects.get(pk=image.pk).render_attempts == 1, timeout=120), (
            slow.log.read_text()
        )
        slow.kill()  # mid-render: claimed, decoded, encoding its PNG
        assert renditions.rendition_state(Image.objects.get(pk=image.pk)) == "pending"

        settings.PORTAL_RENDER_STALE_SECONDS = 1
        time.sleep(1.1)
        assert renditions.sweep()["render_resent"] == 1
        workers.append(WorkerProcess(media_root, "render", "render"))
        assert wait_until(lambda: Image.objects.get(pk=image.pk).rendition != "", timeout=120), workers[
            -1
        ].log.read_text()
        image = Image.objects.get(pk=image.pk)
        assert image.render_attempts == 2 and image.error == ""
        made = sorted(name.split("/")[0] for name in stored_files(media_root))
        assert made == ["originals", "previews", "renditions"]
    finally:
        for worker in workers:
            worker.stop()
        purge("render", "inference")
