"""The monitoring and research export pages in a real Chromium (issue 25): the alert banner, the server-drawn
plots and acknowledgement under the Content-Security-Policy; an export's progress polled until it is ready."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from tests.browser.conftest import log_in
from tests.browser.test_csp import REPORT_VIOLATIONS
from tests.monitoring.streams import add_images, make_version

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


def test_an_admin_sees_the_banner_and_plots_and_acknowledges_an_alert(live_server, page, admin_user, settings):
    from screening.models import MonitoringAlert, MonitoringRun
    from screening.monitoring import services

    settings.PORTAL_MONITORING_REFERENCE_IMAGES = 20
    settings.PORTAL_MONITORING_MIN_IMAGES = 10
    version = make_version()
    now = timezone.now()
    add_images(version, 20, start=now - timedelta(days=29), seed=1)
    add_images(version, 20, start=now - timedelta(days=10), seed=2, vendor="VendorB")
    run = MonitoringRun.objects.create(model_version=version)
    services.run_monitoring(run.pk, now=now)
    alerts = MonitoringAlert.objects.count()
    assert alerts > 0
    refused: list[str] = []
    page.add_init_script(REPORT_VIOLATIONS)
    page.on("console", lambda msg: refused.append(msg.text) if "Refused" in msg.text else None)
    log_in(page, live_server.url, admin_user.username)
    banner = page.locator(".alert-banner")
    assert f"{alerts} monitoring alert" in banner.inner_text()
    banner.locator("a").click()
    page.wait_for_selector("#version")  # the champion by default (which may be another version, or none)
    page.select_option("#version", str(version.pk))
    page.get_by_role("button", name="Show").click()
    page.wait_for_selector("svg.plot")
    assert page.locator("svg.plot").count() >= 4
    assert page.locator("svg.plot").first.is_visible()
    row = page.locator("tr", has_text="input drift in manufacturer: PSI")
    row.locator("input[name=note]").fill("site changed its units")
    row.get_by_role("button", name="Acknowledge").click()
    page.wait_for_selector(".messages")
    assert "Alert acknowledged." in page.locator(".messages").inner_text()
    assert f"{alerts - 1} monitoring alert" in page.locator(".alert-banner").inner_text()
    assert refused == []


def test_the_export_page_follows_an_export_until_it_can_be_downloaded(live_server, page, admin_user):
    from screening.models import ResearchExport
    from screening.research_export import services

    project = services.create_project(name="followed", user=admin_user)
    export = ResearchExport.objects.create(
        project=project, requested_by=admin_user, reason="x" * 12, status="running", progress={"done": 1, "total": 4}
    )
    log_in(page, live_server.url, admin_user.username, next_path="/research-exports/")
    page.wait_for_selector("td.progress")
    assert "1 / 4 images" in page.locator("td.progress").inner_text()
    ResearchExport.objects.filter(pk=export.pk).update(progress={"done": 3, "total": 4})
    page.locator("td.progress", has_text="3 / 4 images").wait_for()  # polled, no reload
    ResearchExport.objects.filter(pk=export.pk).update(
        status="done", summary={"studies": 1, "images": 4, "left_out": 0}
    )
    page.get_by_role("link", name="Download (once)").wait_for()
