"""The preview: each image's display rendition scaled down to at most 1024 pixels a side, an 8-bit JPEG the
viewer paints first (GET /api/v1/images/<id>/preview/). Made by the render worker with the rendition, on first
request for an image rendered before; stored under the image's digest; same roles and scoping as /rendition/."""

from __future__ import annotations

import io

import numpy as np
import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from PIL import Image as PILImage

from screening.errors import PortalError
from screening.intake.services import renditions
from screening.intake.services.ingest import ingest_file
from screening.intake.services.studies import stored_files_of
from screening.models import Image
from tests.conftest import _token_client, _user, stored_files
from tests.dicom_factory import mg_dataset, phantom, to_bytes

pytestmark = pytest.mark.django_db


def ingest(ds, user=None) -> Image:
    return ingest_file(file=io.BytesIO(to_bytes(ds)), filename="x.dcm", user=user).image


def picture(content: bytes) -> PILImage.Image:
    shown = PILImage.open(io.BytesIO(content))
    shown.load()
    return shown


def stored(name: str) -> bytes:
    with default_storage.open(name, "rb") as fh:
        return fh.read()


def rendition_pixels(image: Image) -> np.ndarray:
    return np.asarray(picture(stored(Image.objects.get(pk=image.pk).rendition.name)))


def body(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


@pytest.fixture
def encoded(monkeypatch):
    """Every picture handed to the preview's JPEG encoder, before its lossy coding."""
    seen: list[np.ndarray] = []
    jpeg = renditions._jpeg

    def spy(pixels):
        seen.append(pixels.copy())
        return jpeg(pixels)

    monkeypatch.setattr(renditions, "_jpeg", spy)
    return seen


def test_the_preview_is_the_rendition_scaled_down_by_whole_block_means_as_a_grey_jpeg(encoded):
    # 2048 x 1600: the rendition is the full picture; the preview is exactly its 2 x 2 block means.
    image = ingest(mg_dataset(phantom(rows=2048, columns=1600, bits=12)))
    assert renditions.render_image(image.pk) == "ready"
    name = renditions.preview_name(image.sha256)
    assert name == f"previews/{image.sha256[:2]}/{image.sha256}.jpg"
    shown = picture(stored(name))
    assert (shown.format, shown.mode, shown.size) == ("JPEG", "L", (800, 1024))
    assert renditions.PREVIEW_MAX_SIDE == 1024

    rendition = rendition_pixels(image).astype(np.float64)
    expected = np.floor(rendition.reshape(1024, 2, 800, 2).mean(axis=(1, 3)) + 0.5).astype(np.uint8)
    assert len(encoded) == 1 and np.array_equal(encoded[0], expected)  # exactly its grey levels, scaled
    error = np.asarray(shown).astype(np.int16) - expected
    # What the JPEG coding (quality 90) adds on top: small and unbiased; a LUT or an inversion of its own is not.
    assert np.abs(error).mean() < 1.5 and abs(error.mean()) < 0.25, (np.abs(error).mean(), error.mean())


@pytest.mark.parametrize(
    ("rows", "columns", "size"),
    [(4096, 3328, (832, 1024)), (3000, 2400, (819, 1024)), (1300, 1700, (1024, 783)), (256, 200, (200, 256))],
    ids=["mammogram", "large", "landscape", "small-never-upscaled"],
)
def test_the_preview_keeps_the_renditions_shape_with_its_longest_side_at_most_1024(rows, columns, size, settings):
    image = ingest(mg_dataset(phantom(rows=rows, columns=columns, bits=12)))
    assert renditions.render_image(image.pk) == "ready"
    shown = picture(stored(renditions.preview_name(image.sha256)))
    assert shown.size == size and (shown.format, shown.mode) == ("JPEG", "L")
    rendition = rendition_pixels(image)
    assert abs(size[0] / size[1] - rendition.shape[1] / rendition.shape[0]) < 2 / 1024
    # the 202 placeholder said which size it would have
    assert picture(renditions.placeholder_jpeg(image)).size == size


def test_an_inverted_image_keeps_the_renditions_grey_levels(encoded):
    image = ingest(mg_dataset(photometric="MONOCHROME1"))  # 256 x 200: the preview has the rendition's size
    renditions.render_image(image.pk)
    rendition = rendition_pixels(image)
    assert np.array_equal(encoded[0], rendition)
    shown = np.asarray(picture(stored(renditions.preview_name(image.sha256)))).astype(np.int16)
    error = shown - rendition  # the JPEG coding's, on the phantom's full-resolution noise: small, unbiased
    assert np.abs(error).mean() < 3 and abs(error.mean()) < 0.5, (np.abs(error).mean(), error.mean())
    assert rendition[0, -1] > 200 and shown[0, -1] > 200  # the background white, as in the rendition


def test_the_preview_is_made_on_demand_for_an_image_rendered_before_it_existed():
    image = ingest(mg_dataset(phantom(rows=2600, columns=2100, bits=12)))
    renditions.render_image(image.pk)
    name = renditions.preview_name(image.sha256)
    made_by_the_render = stored(name)
    default_storage.delete(name)  # as an image rendered before previews were made has none
    image.refresh_from_db()
    assert renditions.preview_jpeg(image) == name
    assert stored(name) == made_by_the_render  # from the stored rendition: the same picture, byte for byte
    assert renditions.preview_jpeg(image) == name and stored(name) == made_by_the_render  # kept, not made again


def test_an_existing_preview_under_the_digests_name_is_kept_and_shared(media_root):
    image = ingest(mg_dataset())
    name = renditions.preview_name(image.sha256)
    default_storage.save(name, ContentFile(b"made by a concurrent render"))
    assert renditions.render_image(image.pk) == "ready"
    assert stored(name) == b"made by a concurrent render"  # never overwritten, never saved under another name
    assert [f for f in stored_files(media_root) if f.startswith("previews/")] == [name]
    image.refresh_from_db()
    assert renditions.preview_jpeg(image) == name
    assert name in stored_files_of(image.study)  # goes with its study


def test_a_render_whose_row_is_not_updated_leaves_no_preview_behind(monkeypatch, media_root):
    image = ingest(mg_dataset())
    save_preview = renditions._save_preview

    def another_worker_finishes_first(sha256, display):
        written = save_preview(sha256, display)
        Image.objects.filter(pk=image.pk).update(rendition="renditions/by-another-worker.png")
        return written

    monkeypatch.setattr(renditions, "_save_preview", another_worker_finishes_first)
    renditions.render_image(image.pk)
    assert [f.split("/")[0] for f in stored_files(media_root)] == ["originals"]


def test_a_render_that_fails_after_the_preview_leaves_nothing_but_a_preview_that_was_there(monkeypatch, media_root):
    large = ingest(mg_dataset(phantom(rows=2600, columns=2100, bits=12)))

    def storage_fails(sha256, full):
        raise OSError("the storage went away")

    monkeypatch.setattr(renditions, "_save_full", storage_fails)
    with pytest.raises(OSError):
        renditions.render_image(large.pk)
    assert [f.split("/")[0] for f in stored_files(media_root)] == ["originals"]

    kept = renditions.preview_name(large.sha256)
    default_storage.save(kept, ContentFile(b"made earlier"))
    with pytest.raises(OSError):
        renditions.render_image(large.pk)
    assert sorted(f.split("/")[0] for f in stored_files(media_root)) == ["originals", "previews"]
    assert stored(kept) == b"made earlier"


def test_the_endpoint_answers_the_stored_jpeg_privately_cached(api, api_client_user):
    image = ingest(mg_dataset(phantom(rows=2600, columns=2100, bits=12)), user=api_client_user)
    renditions.render_image(image.pk)
    response = api.get(f"/api/v1/images/{image.pk}/preview/")
    assert response.status_code == 200
    assert response["Content-Type"] == "image/jpeg" and response["Cache-Control"] == "private, max-age=3600"
    content = body(response)
    assert content == stored(renditions.preview_name(image.sha256))
    assert picture(content).size == (827, 1024)
    assert api.head(f"/api/v1/images/{image.pk}/preview/").status_code == 200


def test_before_the_render_a_placeholder_of_the_previews_size_then_the_preview(api, api_client_user):
    image = ingest(mg_dataset(phantom(rows=2600, columns=2100, bits=12)), user=api_client_user)
    url = f"/api/v1/images/{image.pk}/preview/"
    waiting = api.get(url)
    assert waiting.status_code == 202 and waiting["Retry-After"] == "2" and waiting["Cache-Control"] == "no-store"
    assert waiting["Content-Type"] == "image/jpeg"  # one decoder for the page, placeholder or preview
    placeholder = picture(waiting.content)
    assert (placeholder.format, placeholder.size) == ("JPEG", (827, 1024))
    assert set(np.unique(np.asarray(placeholder))) == {64} and len(waiting.content) < 20_000
    assert not default_storage.exists(renditions.preview_name(image.sha256))  # nothing made before the rendition
    renditions.render_image(image.pk)
    ready = api.get(url)
    assert ready.status_code == 200 and picture(body(ready)).size == placeholder.size


def test_a_failed_image_answers_the_same_409_as_its_rendition(api, api_client_user):
    image = ingest(mg_dataset(), user=api_client_user)
    renditions.fail_image(image.pk, "the pixel data is damaged and cannot be decoded: its decoder gave up")
    preview = api.get(f"/api/v1/images/{image.pk}/preview/")
    rendition = api.get(f"/api/v1/images/{image.pk}/rendition/")
    assert preview.status_code == rendition.status_code == 409
    assert preview.json() == rendition.json()
    assert preview.json()["error"]["code"] == "image_failed"
    with pytest.raises(PortalError):
        renditions.preview_jpeg(Image.objects.get(pk=image.pk))


def test_an_unreadable_stored_rendition_is_a_409_not_a_500(api, api_client_user, media_root):
    image = ingest(mg_dataset(), user=api_client_user)
    renditions.render_image(image.pk)
    image.refresh_from_db()
    default_storage.delete(renditions.preview_name(image.sha256))
    default_storage.delete(image.rendition.name)
    response = api.get(f"/api/v1/images/{image.pk}/preview/")
    assert response.status_code == 409 and response.json()["error"]["code"] == "missing_file"
    assert "previews" not in {f.split("/")[0] for f in stored_files(media_root)}


def test_a_client_that_accepts_only_jpeg_gets_the_preview_and_json_errors(api, api_client_user):
    image = ingest(mg_dataset(), user=api_client_user)
    url = f"/api/v1/images/{image.pk}/preview/"
    assert api.get(url, HTTP_ACCEPT="image/jpeg").status_code == 202
    renditions.render_image(image.pk)
    for accept in ("image/jpeg", "image/*", "image/avif,image/webp,image/apng,image/*,*/*;q=0.8"):
        response = api.get(url, HTTP_ACCEPT=accept)
        assert response.status_code == 200 and response["Content-Type"] == "image/jpeg", accept
    missing = api.get(f"/api/v1/images/{image.pk + 1000}/preview/", HTTP_ACCEPT="image/jpeg")
    assert missing.status_code == 404 and missing["Content-Type"] == "application/json"
    assert missing.json()["error"]["code"]


def test_who_may_fetch_a_preview(api_client_user, radiologist, admin_user, outsider, anon_api, django_user_model):
    own = ingest(mg_dataset(patient_id="OWN-1"), user=api_client_user)
    theirs = ingest(mg_dataset(patient_id="THEIRS-1", seed=1), user=radiologist)
    for image in (own, theirs):
        renditions.render_image(image.pk)
    other_client = _user(django_user_model, "other-bridge", "api_client")
    clients = {user: _token_client(user) for user in (api_client_user, radiologist, admin_user, outsider, other_client)}

    def code(user, image):
        return (clients[user] if user else anon_api).get(f"/api/v1/images/{image.pk}/preview/").status_code

    for reader in (radiologist, admin_user):
        assert (code(reader, own), code(reader, theirs)) == (200, 200)
    assert (code(api_client_user, own), code(api_client_user, theirs)) == (200, 404)  # not 403: ids not probed
    assert code(other_client, own) == 404
    assert code(outsider, own) == 403
    assert code(None, own) == 401
    # the rendition answers the same
    rendition = clients[api_client_user].get(f"/api/v1/images/{theirs.pk}/rendition/")
    assert rendition.status_code == 404


def test_deleting_the_study_removes_its_preview(admin_user, media_root, django_capture_on_commit_callbacks):
    from screening.intake.services.studies import delete_study

    image = ingest(mg_dataset())
    renditions.render_image(image.pk)
    assert renditions.preview_name(image.sha256) in stored_files(media_root)
    with django_capture_on_commit_callbacks(execute=True):
        delete_study(study=image.study, user=admin_user, reason="test")
    assert stored_files(media_root) == []
