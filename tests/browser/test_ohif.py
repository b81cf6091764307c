"""OHIF as a client of the portal, in a real Chromium: the prebuilt @ohif/app (scripts/build_ohif.sh) served at
/ohif/ behind the login, reading the portal's DICOMweb with the session cookie.

It lists the studies, opens an MG study with its two SRs (the AI result and the decision), shows an SR's
regions on their image in its SR viewport, and under blinding a reader's OHIF lists no AI SR: DICOMweb
decides, whichever viewer asks. Every request OHIF makes must succeed (no 4xx/5xx, no request leaving the
origin) and the page's policy must refuse nothing.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from unittest import mock

import pytest
from django.conf import settings
from django.core.files.storage import default_storage
from pydicom import dcmread

from screening.exchange import sr
from screening.exchange.services import export as export_service
from screening.models import DicomExport, Prediction, Study
from screening.reading.services import reading
from screening.reading.services.findings import FindingInput, ReportedFindingInput
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


def with_srs(settings, radiologist=None, *, marked: bool = False) -> Study:
    """Four synthetic MG views scored by the test model, decided by `radiologist` if given (`marked`: with a
    mass marked on the left CC, 4.5 cm from the nipple; else with no mark); the SRs written and 'sent' to a
    PACS (the network replaced), so DICOMweb serves them beside the images."""
    settings.PORTAL_DICOM_DESTINATIONS = [("PACS", "127.0.0.1", 104)]
    study = make_study(patient_id="P-OHIF", seed=3, lesion_on=("L",))
    marks = {}
    if marked:
        left_cc = study.images.get(laterality="L", view="CC")
        marks = {
            "findings": [FindingInput(left_cc.pk, "mass", 60, 80, 90, 70)],
            "reported": [ReportedFindingInput(type="mass", marks=(0,), descriptors={"shape": "oval"}, distance_cm=4.5)],
        }
    with mock.patch("screening.dispatch.send"), mock.patch.object(export_service, "c_store"):
        export_service.queue_ai_result(study)
        if radiologist:
            review_submit(study=study, radiologist=radiologist, decision="abnormal", birads=4, density="B", **marks)
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


IMAGING_MEASUREMENTS, TRACKING_UID = "126010", "112040"
ACTIVE = "rgb(0, 255, 0)"  # OHIF draws the measurement it opened the report at in green, the others in yellow


def region_groups(export: DicomExport) -> list[dict]:
    """The SR's measurement groups with an image region, in order, as it was sent (and DICOMweb serves it): the
    group's tracking UID (OHIF's annotation UID), the image the region lies on and the group's numbers."""
    with default_storage.open(export.sr_file.name, "rb") as handle:
        ds = dcmread(handle)
    container = next(i for i in ds.ContentSequence if i.ConceptNameCodeSequence[0].CodeValue == IMAGING_MEASUREMENTS)
    out = []
    for group in container.ContentSequence:
        items = group.ContentSequence
        region = next((i for i in items if i.ValueType == "SCOORD"), None)
        out.append(
            {
                "uid": next(i.UID for i in items if i.ConceptNameCodeSequence[0].CodeValue == TRACKING_UID),
                "image": region.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID
                if region
                else None,
                "numbers": [
                    (i.ConceptNameCodeSequence[0].CodeMeaning, float(i.MeasuredValueSequence[0].NumericValue))
                    for i in items
                    if i.ValueType == "NUM"
                ],
            }
        )
    return [group for group in out if group["image"]]


DRAWN = """() => [...document.querySelectorAll('[data-cy=viewport-pane] svg g[data-annotation-uid]')].map(g => [
    g.getAttribute('data-annotation-uid'),
    [...g.querySelectorAll('tspan')].map(t => t.textContent),
    g.querySelector('text').getAttribute('fill'),
])"""


def open_sr(page, kind: str) -> None:
    """Double-click the SR's thumbnail, as a reader would: the SR viewport replaces the MG view."""
    page.get_by_text(sr.SERIES_DESCRIPTIONS[kind]).first.dblclick()


def opened_viewer(page, live_server, user, study):
    """OHIF open on the study (its first MG view shown), with what went wrong watched and the console kept."""
    watch = Watch(page, live_server.url)
    console: list[str] = []
    page.on("console", lambda m: console.append(m.text))
    log_in(page, live_server.url, user.username, f"/ohif/viewer?StudyInstanceUIDs={study.study_uid}")
    page.locator("[data-cy=viewport-pane] canvas").first.wait_for(state="attached", timeout=60_000)
    page.wait_for_load_state("networkidle")
    skip_tour(page)
    return watch, console


def assert_drawn_on_their_image(page, groups: list[dict]) -> None:
    """OHIF's SR viewport shows the image under the report's first group with every region of the report on
    that image drawn and labelled with its numbers, the first one active: the regions' annotation UIDs are the
    groups' tracking UIDs."""
    first = groups[0]
    page.locator(f'[data-cy=viewport-pane] svg g[data-annotation-uid="{first["uid"]}"]').wait_for(timeout=60_000)
    assert page.locator("[data-cy=viewport-pane] canvas").count() >= 1  # an image is shown
    drawn = {uid: (lines, color) for uid, lines, color in page.evaluate(DRAWN)}
    assert set(drawn) == {group["uid"] for group in groups if group["image"] == first["image"]}
    assert drawn[first["uid"]][1] == ACTIVE
    assert all(color != ACTIVE for uid, (_, color) in drawn.items() if uid != first["uid"])
    for group in groups:
        if group["uid"] in drawn:
            lines = drawn[group["uid"]][0]
            for meaning, value in group["numbers"]:  # "Certainty of Finding: 65.56 %", "Distance from nipple: 4.5 cm"
                shown = [re.match(rf"{re.escape(meaning)}: ([-0-9.e]+) ", line) for line in lines]
                assert [float(m.group(1)) for m in shown if m] == [pytest.approx(value)], (meaning, lines)


def test_ohif_shows_the_ai_results_regions_on_their_image_and_no_image_for_a_decision_without_marks(
    live_server, page, settings, champion, admin_user, radiologist
):
    """What OHIF 3.13 (cornerstone-dicom-sr, vendor/ohif 7248 and 9068 bundles) does with the portal's SRs, opened
    by double-clicking their thumbnails. Both are TID 1500 measurement reports (root concept 126000), so OHIF takes
    its measurement viewport, not its text viewport (which shows the content tree of other SRs), and shows there the
    image of the report's first measurement with the report's regions on it.

    - The AI result begins with the model's top regions, the most suspicious view's first (sr._image_regions_first):
      OHIF shows that MG view with its three boxes and their Certainty of Finding. Before, the report began with
      the exam's group, on no image, and the viewport stayed empty.
    - A decision with no marked finding has no region at all: the viewport stays empty (its groups are read, as the
      console says, nothing fails). A group with no region (the exam's, the decision, the breasts') is passed on
      with one empty coordinate by app-config.js's onBeforeSRAddMeasurement: OHIF 3.13 stopped the whole report
      on it with a TypeError (`measurement.coords[0].ReferencedSOPSequence`). Scores, BI-RADS and density are
      shown by the portal's own viewer and case page, not by OHIF.
    """
    study = with_srs(settings, radiologist)
    watch, console = opened_viewer(page, live_server, admin_user, study)
    viewport = page.locator("[data-cy=viewport-pane]")

    open_sr(page, sr.DECISION)
    page.wait_for_function("() => !document.querySelector('[data-cy=viewport-pane] canvas')", timeout=30_000)
    page.wait_for_load_state("networkidle")
    page.wait_for_timeout(2_000)  # OHIF reads the SR's groups after its metadata has arrived
    shot(page, "ohif-sr-decision")
    assert [m for m in console if "not rehydratable" in m and "Decision" in m], "OHIF did not read the decision SR"
    assert viewport.locator("canvas").count() == 0  # nothing shown: no group of this report lies on an image

    open_sr(page, sr.AI)
    groups = region_groups(DicomExport.objects.get(study=study, kind="ai"))
    assert len(groups) == 4 * 3  # the three top regions of each view, the most suspicious view's first
    most_suspicious = Prediction.objects.filter(image__study=study).order_by("-probability").first()
    assert groups[0]["image"] == most_suspicious.image.sop_uid
    assert_drawn_on_their_image(page, groups)
    page.wait_for_load_state("networkidle")
    shot(page, "ohif-sr-ai")

    # "Do you want to continue tracking measurements for this study?": yes loads none of them into OHIF's
    # measurements (its Cornerstone3D adapters read TID 300 measurements, not TID 1410 region groups); the
    # viewport keeps the regions and nothing fails
    with page.expect_console_message(lambda m: "find any tracked measurements" in m.text, timeout=30_000):
        page.get_by_role("button", name="Yes").click()
    assert [m for m in console if "No spatial coordinates group found" in m]
    assert_drawn_on_their_image(page, groups)
    assert [m for m in console if "Error Boundary" in m or "Something went wrong" in m] == []
    assert watch.problems == []


def test_ohif_shows_the_readers_marked_finding_of_a_decision_on_its_image(
    live_server, page, settings, champion, admin_user, radiologist
):
    """The decision SR begins with the reader's marks: OHIF shows the left CC with the marked mass and its distance
    from the nipple (the finding's other lexicon words are coded evaluations, which OHIF does not label)."""
    study = with_srs(settings, radiologist, marked=True)
    watch, _ = opened_viewer(page, live_server, admin_user, study)
    open_sr(page, sr.DECISION)
    groups = region_groups(DicomExport.objects.get(study=study, kind="decision"))
    assert len(groups) == 1 and groups[0]["image"] == study.images.get(laterality="L", view="CC").sop_uid
    assert groups[0]["numbers"] == [("Distance from nipple", 4.5)]
    assert_drawn_on_their_image(page, groups)
    shot(page, "ohif-sr-decision-marked")
    assert watch.problems == []
