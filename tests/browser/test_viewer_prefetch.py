"""How the viewer gets its pixel data: the page's early script asks for this case's while the viewer bundle
boots; while a case is open the viewer fetches the next case's, and the next case opens from them without
asking the server for its pixels again."""

from __future__ import annotations

import io
from unittest import mock

import pytest
from pydicom.uid import generate_uid

from screening.models import Study
from screening.reading.selectors import next_study_after
from screening.reading.views import _pixel_source
from tests.browser.conftest import FOUR_VIEWS, log_in
from tests.dicom_factory import mg_dataset, to_bytes

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


def four_views(patient_id: str, seed: int) -> Study:
    """One study of four small synthetic MG DICOMs, through the ingest service (no predictions run)."""
    from screening.intake.services.ingest import ingest_file

    study_uid = generate_uid()
    with mock.patch("screening.dispatch.send"):
        for i, (side, view) in enumerate(FOUR_VIEWS):
            ds = mg_dataset(laterality=side, view=view, study_uid=study_uid, patient_id=patient_id, seed=seed * 10 + i)
            ingest_file(file=io.BytesIO(to_bytes(ds)), filename=f"{patient_id}-{side}{view}.dcm")
    return Study.objects.get(study_uid=study_uid)


def pixel_urls(study: Study, base: str) -> set[str]:
    return {base + _pixel_source(image)["url"] for image in study.images.all()}


def record_requests(page) -> list:
    seen = []
    page.on("request", lambda request: seen.append(request))
    return seen


def test_the_page_asks_for_its_pixels_itself_once_each_while_the_viewer_boots(live_server, page, radiologist):
    only = four_views("P-EARLY", 4)
    urls = pixel_urls(only, live_server.url)
    requests = record_requests(page)

    log_in(page, live_server.url, "rad", f"/studies/{only.pk}/")
    page.wait_for_selector("#viewer[data-ready=true]", timeout=90_000)

    asked = [r for r in requests if r.url in urls]
    assert sorted(r.url for r in asked) == sorted(urls)  # once each: the viewer took the early script's answers
    assert all(r.headers.get("accept") == "application/dicom; transfer-syntax=*" for r in asked)
    # Fetched by the early script (it marks each instance it got), so not again by Cornerstone's loader.
    handed = page.evaluate("() => performance.getEntriesByName('viewer:image-bytes').map((e) => e.detail.from)")
    assert handed == ["network"] * 4
    assert page.locator(".vp[data-painted=full][data-source=network]").count() == 4


def test_the_next_case_is_prefetched_while_this_one_is_open_and_opens_without_fetching_its_pixels(
    live_server, page, radiologist
):
    first, second = four_views("P-FIRST", 1), four_views("P-SECOND", 2)
    assert next_study_after(radiologist, first) == second
    first_urls, second_urls = pixel_urls(first, live_server.url), pixel_urls(second, live_server.url)
    requests = record_requests(page)

    log_in(page, live_server.url, "rad", f"/studies/{first.pk}/")
    page.wait_for_selector("#viewer[data-ready=true]", timeout=90_000)
    page.wait_for_selector("#viewer[data-prefetch='done:4']", timeout=30_000)

    asked = [r for r in requests if r.url in first_urls | second_urls]
    # This case's pixels came from the network, painted at full resolution, before any of the next case's.
    assert {r.url for r in asked[:4]} == first_urls
    assert page.locator(".vp[data-painted=full][data-source=network]").count() == 4
    # The next case's four instances were asked for while this case was open, each once, as DICOM.
    prefetched = [r for r in asked if r.url in second_urls]
    assert sorted(r.url for r in prefetched) == sorted(second_urls)
    assert all(r.headers.get("accept") == "application/dicom; transfer-syntax=*" for r in prefetched)
    # The server forbids HTTP caching of pixel data, so the browser cache could not have kept them.
    assert all(r.response().headers.get("cache-control") == "no-store" for r in prefetched)
    assert page.evaluate("async () => (await (await caches.open('portal-next-case')).keys()).length") == 4

    requests.clear()
    page.click("#skip-link")  # "Next case without deciding": the case "Submit and next" would open
    page.wait_for_url(f"**/studies/{second.pk}/")
    page.wait_for_selector("#viewer[data-ready=true]", timeout=90_000)

    assert page.locator(".vp[data-painted=full]").count() == 4
    assert page.locator(".vp[data-source=prefetch]").count() == 4
    assert not [r.url for r in requests if r.url in second_urls]
    # Taken out of the store as they were used: nothing of the second case stays in the browser.
    page.wait_for_selector("#viewer[data-prefetch^='done:']", timeout=30_000)
    kept = page.evaluate("async () => (await (await caches.open('portal-next-case')).keys()).map((r) => r.url)")
    assert not set(kept) & second_urls


def test_the_last_case_prefetches_nothing_and_empties_the_store(live_server, page, radiologist):
    only = four_views("P-ONLY", 3)
    assert next_study_after(radiologist, only) is None
    requests = record_requests(page)

    log_in(page, live_server.url, "rad", "/")
    page.evaluate(
        """async () => { const store = await caches.open('portal-next-case');
                         await store.put('/left-over', new Response('stale')); }"""
    )
    page.goto(f"{live_server.url}/studies/{only.pk}/")
    page.wait_for_selector("#viewer[data-prefetch='done:0']", timeout=90_000)

    assert page.locator(".vp[data-painted=full]").count() == 4
    assert len([r for r in requests if "/dicomweb/studies/" in r.url]) == 4  # its own four, nothing more
    assert page.evaluate("async () => (await caches.keys()).includes('portal-next-case')") is False
