"""OHIF as a client of the portal, in a real Chromium: the prebuilt @ohif/app (scripts/build_ohif.sh) served at
/ohif/ behind the login, reading the portal's DICOMweb with the session cookie.

It lists the studies, opens an MG study with its two SRs (the AI result and the decision), and under
blinding a reader's OHIF lists no AI SR: DICOMweb decides, whichever viewer asks. Every request OHIF makes
must succeed (no 4xx/5xx, no request leaving the origin) and the page's policy must refuse nothing.
"""

from __future__ import annotations

import os
from pathlib import Path
from unittest import mock

import pytest
from django.conf import settings

from screening.exchange import sr
from screening.exchange.services import export as export_service
from screening.models import DicomExport, Study
from screening.reading.services import reading
from screening.reading.services.reviews import review_submit
from tests.browser.conftest import log_in, make_study, screenshot
from tests.browser.test_csp import REPORT_VIOLATIONS

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.skipif(
        not (Path(settings.PORTAL_OHIF_DIR) / "index.html").is_file(),
        reason="OHIF is not installed (scripts/build_ohif.sh)",
    ),
]
SHOTS = os.environ.get("PORTAL_OHIF_SHOTS", "")  # a folder: keep the screenshots to look at


def with_srs(settings, radiologist=None) -> Study:
    """Four synthetic MG views scored by the test model, decided by `radiologist` if given; the SRs written
    and 'sent' to a PACS (the network replaced), so DICOMweb serves them beside the images."""
    settings.PORTAL_DICOM_DESTINATIONS = [("PACS", "127.0.0.1", 104)]
    study = make_study(patient_id="P-OHIF", seed=3, lesion_on=("L",))
    with mock.patch("screening.dispatch.send"), mock.patch.object(export_service, "c_store"):
        export_service.queue_ai_result(study)
        if radiologist:
            review_submit(study=study, radiologist=radiologist, decision="abnormal", birads=4, density="B")
        for export in DicomExport.objects.filter(study=study):
            export_service.send_export(export.pk)
    kinds = set(DicomExport.objects.filter(study=study, status="sent").values_list("kind", flat=True))
    assert kinds == ({"ai", "decision"} if radiologist else {"ai"})
    return study


FETCH = """async (urls) => Promise.all(urls.map(async (u) => {
    const r = await fetch(u, {credentials: 'same-origin'});
    return [r.status, await r.text()];
}))"""


def skip_tour(page) -> None:
    """OHIF's first-visit tour covers the image: dismiss it, as a reader would."""
    skip = page.get_by_text("Skip all")
    if skip.count():
        skip.first.click()


class Watch:
    """What the page did wrong: failed or off-origin requests, policy refusals, uncaught errors."""

    def __init__(self, page, origin: str) -> None:
        self.problems: list[str] = []
        self.requests: list[str] = []
        page.add_init_script(REPORT_VIOLATIONS)
        page.on("console", lambda m: self.problems.append(m.text) if "Refused" in m.text else None)
        page.on("pageerror", lambda exc: self.problems.append(f"uncaught: {exc}"))
        page.on("request", lambda r: self.requests.append(r.url))

        def answered(response) -> None:
            if response.status >= 400:
                self.problems.append(f"{response.status} {response.url}")

        page.on("response", answered)
        page.on("requestfailed", lambda r: self.problems.append(f"failed {r.url} {r.failure}"))
        self.origin = origin

    def off_origin(self) -> list[str]:
        return [u for u in self.requests if not u.startswith((self.origin, "data:", "blob:"))]


def shot(page, name: str) -> None:
    screenshot(page, name)
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / f"{name}.png"))


def test_ohif_lists_the_studies_and_opens_an_mg_study_with_its_srs(
    live_server, page, settings, champion, admin_user, radiologist
):
    study = with_srs(settings, radiologist)
    watch = Watch(page, live_server.url)
    log_in(page, live_server.url, admin_user.username, "/ohif/")
    row = page.get_by_text("P-OHIF").first  # an admin sees identity: the patient ID in the study list
    row.wait_for(timeout=60_000)
    shot(page, "ohif-study-list")

    page.goto(f"{live_server.url}/ohif/viewer?StudyInstanceUIDs={study.study_uid}")
    page.wait_for_selector("canvas", state="attached", timeout=60_000)
    page.get_by_text(sr.SERIES_DESCRIPTIONS[sr.AI]).first.wait_for(timeout=30_000)
    page.get_by_text(sr.SERIES_DESCRIPTIONS[sr.DECISION]).first.wait_for(timeout=30_000)
    page.wait_for_load_state("networkidle")
    skip_tour(page)
    shot(page, "ohif-mg-study")
    if SHOTS:  # what the page fetched, to size it (README)
        (Path(SHOTS) / "ohif-requests.txt").write_text("\n".join(watch.requests))
    assert watch.problems == []
    assert watch.off_origin() == []  # nothing from a CDN: OHIF works offline


def test_a_blinded_readers_ohif_shows_the_images_but_no_ai_sr(
    live_server, page, settings, champion, admin_user, radiologist
):
    """The AI result SR was sent before the reading policy came to blind readers to the AI until they have
    read the case: this reader's OHIF lists the four MG views and no SR, and cannot fetch the SR by its UIDs."""
    study = with_srs(settings)
    reading.set_policy(user=admin_user, mode="single", blind_ai=True)
    ai_sr = DicomExport.objects.get(study=study, kind="ai")
    watch = Watch(page, live_server.url)
    log_in(page, live_server.url, radiologist.username, f"/ohif/viewer?StudyInstanceUIDs={study.study_uid}")
    page.wait_for_selector("canvas", state="attached", timeout=60_000)
    page.wait_for_load_state("networkidle")
    skip_tour(page)
    shot(page, "ohif-blinded")
    assert page.get_by_text("S:9901").count() == 0 and page.get_by_text("AI result").count() == 0
    assert page.locator("text=MG").count() >= 4  # the four views' thumbnails
    assert watch.problems == []  # what OHIF asked for; the two requests below are the test's
    study_url = f"/dicomweb/studies/{study.study_uid}"
    series_url = f"{study_url}/series/{sr.series_uid(study, sr.AI)}"
    (listed, listing), (fetched, _) = page.evaluate(
        FETCH, [f"{study_url}/instances", f"{series_url}/instances/{ai_sr.sop_instance_uid}"]
    )
    assert listed == 200 and study.images.first().sop_uid in listing and ai_sr.sop_instance_uid not in listing
    assert fetched == 404


def test_ohif_opens_the_portals_srs_in_its_sr_viewport_without_error_but_shows_no_content(
    live_server, page, settings, champion, admin_user, radiologist
):
    """What OHIF 3.13 (cornerstone-dicom-sr, vendor/ohif 7248 and 9068 bundles) does with the portal's SRs, opened by
    double-clicking their thumbnails as a reader would. Both are TID 1500 measurement reports (root concept 126000),
    so OHIF takes its measurement viewport, not its text viewport (which shows the content tree of other SRs).

    - It reads every measurement group as a measurement. A group with no image region (the exam's, each breast's
      and each image's probability; the decision and each breast's call) stopped the load on a TypeError
      (`measurement.coords[0].ReferencedSOPSequence`) caught by the route's error boundary. The portal's
      app-config.js passes such a group on with one empty coordinate (OHIF's onBeforeSRAddMeasurement
      customization): the SR loads, its groups are read, nothing fails.
    - The measurement viewport then shows the image of the report's first measurement with the report's regions on
      it. The portal's reports begin with the exam's group, which lies on no image: the viewport stays empty. OHIF
      shows none of these SRs' content (scores, BI-RADS, density); the portal's own viewer and case page do.
    """
    study = with_srs(settings, radiologist)
    watch = Watch(page, live_server.url)
    console: list[str] = []
    page.on("console", lambda m: console.append(m.text))
    log_in(page, live_server.url, admin_user.username, f"/ohif/viewer?StudyInstanceUIDs={study.study_uid}")
    viewport = page.locator("[data-cy=viewport-pane]")
    viewport.locator("canvas").first.wait_for(state="attached", timeout=60_000)  # the first MG view
    page.wait_for_load_state("networkidle")
    skip_tour(page)
    for kind, first_group in ((sr.DECISION, "Decision"), (sr.AI, "Exam")):
        page.get_by_text(sr.SERIES_DESCRIPTIONS[kind]).first.dblclick()
        page.wait_for_function(
            "() => !document.querySelector('[data-cy=viewport-pane] canvas')", timeout=30_000
        )  # the MG view gave way to the SR viewport
        page.wait_for_load_state("networkidle")
        page.wait_for_timeout(2_000)  # OHIF reads the SR's groups after its metadata has arrived
        shot(page, f"ohif-sr-{kind}")
        read = [m for m in console if "not rehydratable" in m and first_group in m]
        assert read, f"OHIF did not read the {kind} SR's measurement groups"
        assert viewport.locator("canvas").count() == 0  # nothing shown: the first group lies on no image
    assert [m for m in console if "Error Boundary" in m or "Something went wrong" in m] == []
    assert watch.problems == []
