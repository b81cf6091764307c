"""Blinded double reading in a real Chromium: the second reader's page carries no trace of the first
read, and a discordant pair lands on the arbitrator's worklist.

Decisions are posted from inside the page, with the page's session and CSRF token, to the same
endpoint the viewer posts to: the test is about what the server sends, whichever viewer draws it.
"""

from __future__ import annotations

import pytest

from screening.models import Review, Study
from screening.reading.services.reading import set_policy
from screening.reading.services.reviews import review_submit
from tests.browser.conftest import log_in, make_study
from tests.conftest import _user

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

NOTE = "FIRST-READER-SECRET-NOTE"
SUBMIT = """async ([url, decision, birads]) => {
    const token = document.querySelector('#reading-status input[name=csrfmiddlewaretoken]').value;
    const r = await fetch(url, {method: 'POST', credentials: 'same-origin',
        headers: {'Content-Type': 'application/json', 'X-CSRFToken': token},
        body: JSON.stringify({decision, birads})});
    return [r.status, await r.json()];
}"""


@pytest.fixture
def readers(db, django_user_model, admin_user, radiologist):
    return {
        "rad2": _user(django_user_model, "rad2", "radiologist"),
        "arb": _user(django_user_model, "arb", "arbitrator"),
    }


def open_case_recording(page, base_url: str, username: str, study: Study) -> list[str]:
    """Log in, open the case, wait until the page has loaded everything; return every response body."""
    bodies: list[str] = []

    def keep(response):
        if response.request.resource_type in ("document", "fetch", "xhr"):
            try:
                bodies.append(response.text())
            except Exception:  # a redirect or a beacon has no body to read
                pass

    page.on("response", keep)
    log_in(page, base_url, username, f"/studies/{study.pk}/")
    page.wait_for_load_state("networkidle")
    return bodies


def test_the_second_readers_page_carries_no_trace_of_the_first_decision(
    live_server, page, admin_user, radiologist, readers, champion
):
    set_policy(user=admin_user, mode="double", blind_ai=True)
    study = make_study(patient_id="P-BLIND", views=(("L", "CC"), ("R", "CC")))
    assert study.exam_score is not None  # the AI did score it: the page must not show it
    review_submit(study=study, radiologist=radiologist, decision="abnormal", birads=5, density="C", note=NOTE)

    bodies = open_case_recording(page, live_server.url, "rad2", study)
    everything = page.content() + "".join(bodies)
    assert NOTE not in everything
    assert '"radiologist": "rad"' not in everything and '"radiologist":"rad"' not in everything
    assert '"birads": 5' not in everything and '"birads":5' not in everything
    seen = page.evaluate(f"fetch('/api/v1/studies/{study.pk}/').then(r => r.json())")
    assert seen["exam_score"] is None and seen["reviews"] == []  # the AI is blinded by the policy too
    assert all(image["prediction"] is None for image in seen["images"])
    status = page.locator("#reading-status").inner_text()
    assert "second read" in status and "blinded" in status

    # After submitting, both decisions show.
    code, _ = page.evaluate(SUBMIT, [f"/api/v1/studies/{study.pk}/reviews/", "abnormal", 4])
    assert code == 201
    page.reload()
    page.wait_for_load_state("networkidle")
    history = page.evaluate(f"fetch('/api/v1/studies/{study.pk}/reviews/').then(r => r.json())")
    assert {r["radiologist"] for r in history} == {"rad", "rad2"} and NOTE in {r["note"] for r in history}


def test_a_discordant_pair_lands_in_arbitration_and_the_arbitrator_decides(
    live_server, page, browser, admin_user, radiologist, readers, champion
):
    set_policy(user=admin_user, mode="double")
    study = make_study(patient_id="P-ARB", views=(("L", "CC"),), predict=False)
    url = f"/api/v1/studies/{study.pk}/reviews/"

    open_case_recording(page, live_server.url, "rad", study)
    assert "first read" in page.locator("#reading-status").inner_text()
    assert page.evaluate(SUBMIT, [url, "normal", 1])[0] == 201

    second = browser.new_page()
    open_case_recording(second, live_server.url, "rad2", study)
    assert "second read" in second.locator("#reading-status").inner_text()
    code, body = second.evaluate(SUBMIT, [url, "abnormal", 4])
    assert code == 201 and body["review"]["decision"] == "abnormal"
    assert Study.objects.get(pk=study.pk).status == "in_review"  # no final decision yet

    arbitrator = browser.new_page()
    log_in(arbitrator, live_server.url, "arb", "/reading/arbitration/")
    assert arbitrator.locator(f'#arbitration-worklist tr[data-study="{study.pk}"]').count() == 1
    arbitrator.click(f'#arbitration-worklist tr[data-study="{study.pk}"] a')
    arbitrator.wait_for_load_state("networkidle")
    assert "arbitration" in arbitrator.locator("#reading-status").inner_text()
    code, body = arbitrator.evaluate(SUBMIT, [url, "abnormal", 4])
    assert code == 201
    final = Review.objects.get(pk=body["review"]["id"])
    assert (final.slot, final.is_final, final.radiologist.username) == ("arbitration", True, "arb")
    arbitrator.goto(f"{live_server.url}/reading/arbitration/")
    assert arbitrator.locator(f'#arbitration-worklist tr[data-study="{study.pk}"]').count() == 0
    assert Study.objects.get(pk=study.pk).status == "reported"


def test_a_second_reader_sees_who_is_reading_a_locked_case(live_server, page, browser, radiologist, readers):
    study = make_study(patient_id="P-LOCK", views=(("L", "CC"),), predict=False)
    open_case_recording(page, live_server.url, "rad", study)
    other = browser.new_page()
    open_case_recording(other, live_server.url, "rad2", study)
    assert "Being read by rad" in other.locator("#reading-status").inner_text()
    other.goto(f"{live_server.url}/")
    assert "being read by rad" in other.locator(f'#worklist tr[data-study="{study.pk}"]').inner_text()
    page.goto(f"{live_server.url}/reading/")  # leaving the case releases the lock
    other.wait_for_function(
        "url => fetch(url, {credentials: 'same-origin'}).then(r => r.text()).then(t => !t.includes('being read by'))",
        arg=f"{live_server.url}/",
    )
