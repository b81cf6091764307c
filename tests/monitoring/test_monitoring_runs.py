"""Monitoring runs end to end: a synthetic stream whose vendor changes halfway raises an alert, a stable
one does not; alerts show as a banner and on the page, are audited, e-mailed and acknowledged (audited)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from tests.monitoring.streams import add_images, make_version


@pytest.fixture(autouse=True)
def small_windows(settings):
    settings.PORTAL_MONITORING_REFERENCE_IMAGES = 120
    settings.PORTAL_MONITORING_MIN_IMAGES = 100
    settings.PORTAL_MONITORING_WINDOW_DAYS = 30
    settings.PORTAL_MONITORING_ALERT_EMAILS = ["safety@example.org"]
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"


def _stream(version, *, second_vendor: str, second_scores=(2.0, 5.0), second_brightness=1.0):
    now = timezone.now()
    start = now - timedelta(days=20)
    add_images(version, 120, start=start - timedelta(days=10), seed=1)  # the first 120: the reference
    add_images(
        version,
        120,
        start=start,
        seed=2,
        vendor=second_vendor,
        model_name="Unit 1" if second_vendor == "VendorA" else "Other 9",
        scores=second_scores,
        brightness=second_brightness,
    )
    return now


def _run(version, now):
    from screening.models import MonitoringRun
    from screening.monitoring import services

    run = MonitoringRun.objects.create(model_version=version)
    assert services.run_monitoring(run.pk, now=now) == "done"
    run.refresh_from_db()
    return run


def test_a_stream_whose_vendor_changes_halfway_raises_an_alert(db, django_capture_on_commit_callbacks):
    from screening.models import AuditEvent, MonitoringAlert

    version = make_version()
    now = _stream(version, second_vendor="VendorB", second_scores=(5.0, 2.0), second_brightness=0.6)
    with django_capture_on_commit_callbacks(execute=True):
        run = _run(version, now)
    assert run.reference["basis"] == "first 120 images predicted in service"
    overall = {m.feature: m for m in run.measures.filter(site="", source="")}
    assert overall["manufacturer"].drifted and overall["manufacturer"].n == 120
    assert overall["model_name"].drifted
    assert overall["score"].drifted  # the output shifted too
    assert not overall["bits_stored"].drifted  # unchanged inputs stay quiet
    keys = set(MonitoringAlert.objects.values_list("key", flat=True))
    assert "drift:manufacturer:*:*" in keys
    assert "drift:manufacturer:north:*" in keys  # per site too
    assert AuditEvent.objects.filter(action="monitoring_alert").count() == len(keys)
    assert len(mail.outbox) == 1 and "manufacturer" in mail.outbox[0].body
    assert "PAT" not in mail.outbox[0].body and "P2-" not in mail.outbox[0].body


def test_a_stable_stream_raises_no_alert(db):
    from screening.models import MonitoringAlert

    version = make_version()
    now = _stream(version, second_vendor="VendorA")
    run = _run(version, now)
    values = {m.feature: m.value for m in run.measures.filter(site="", source="")}
    assert all(v is not None and v < 0.25 for v in values.values()), values
    assert not MonitoringAlert.objects.exists()
    assert not mail.outbox


def test_the_reference_is_frozen_and_an_open_alert_is_not_raised_twice(db):
    from screening.models import MonitoringAlert

    version = make_version()
    now = _stream(version, second_vendor="VendorB")
    first = _run(version, now)
    count = MonitoringAlert.objects.count()
    second = _run(version, now)
    assert second.reference["image_ids"] == first.reference["image_ids"]
    assert MonitoringAlert.objects.count() == count  # still open: not raised again


def test_too_few_images_in_the_window_measure_nothing(db):
    from screening.models import MonitoringAlert

    version = make_version()
    now = timezone.now()
    add_images(version, 120, start=now - timedelta(days=25), seed=1)
    add_images(version, 10, start=now - timedelta(days=2), seed=2, vendor="VendorB")
    run = _run(version, now)
    assert run.measures.filter(site="", source="", feature="manufacturer").get().value is None
    assert not MonitoringAlert.objects.exists()


def test_admins_see_a_banner_acknowledge_the_alert_and_it_is_audited(db, client, admin_user, radiologist):
    from screening.models import AuditEvent, MonitoringAlert

    version = make_version()
    _run(version, _stream(version, second_vendor="VendorB"))
    client.force_login(admin_user)
    page = client.get(reverse("worklist")).content.decode()
    open_count = MonitoringAlert.objects.count()
    assert f"{open_count} monitoring alert" in page
    monitoring = client.get(reverse("monitoring")).content.decode()
    assert "input drift in manufacturer" in monitoring and "<svg" in monitoring
    alert = MonitoringAlert.objects.get(key="drift:manufacturer:*:*")
    response = client.post(reverse("monitoring-acknowledge", args=[alert.pk]), {"note": "site north changed units"})
    assert response.status_code == 302
    event = AuditEvent.objects.get(action="monitoring_alert_ack")
    assert event.username == "boss" and event.detail["note"] == "site north changed units"
    again = client.post(reverse("monitoring-acknowledge", args=[alert.pk]), follow=True)
    assert "already acknowledged" in again.content.decode()
    assert AuditEvent.objects.filter(action="monitoring_alert_ack").count() == 1
    client.force_login(radiologist)
    assert "monitoring alert" not in client.get(reverse("worklist")).content.decode()
    assert client.get(reverse("monitoring")).status_code == 403


def test_an_acknowledgement_cannot_be_rewritten(db, admin_user):
    from screening.models import AlertAcknowledgement, AppendOnlyError, MonitoringAlert
    from screening.monitoring import services

    version = make_version()
    _run(version, _stream(version, second_vendor="VendorB"))
    alert = MonitoringAlert.objects.first()
    ack = services.acknowledge(alert=alert, user=admin_user, note="seen")
    ack.note = "changed"
    with pytest.raises(AppendOnlyError):
        ack.save()
    with pytest.raises(AppendOnlyError):
        AlertAcknowledgement.objects.update(note="x")


def test_a_version_validated_in_the_portal_is_compared_with_its_locked_validation_images(db):
    """The locked women were scored at promotion (offline): their images need no prediction of this version."""
    from screening.models import MonitoringAlert

    now = timezone.now()
    old_champion = make_version(name="old champion")
    locked = add_images(old_champion, 120, start=now - timedelta(days=90), seed=1)
    version = make_version(
        metrics={"locked_validation": {"sensitivity": 0.9, "scores": [[0, 0.3, str(i)] for i in locked]}}
    )
    add_images(version, 120, start=now - timedelta(days=20), seed=2, vendor="VendorB", model_name="Other 9")
    run = _run(version, now)
    assert run.reference["basis"] == "locked validation set (120 images)" and run.reference["complete"]
    assert run.reference["image_ids"] == sorted(locked)
    overall = {m.feature: m for m in run.measures.filter(site="", source="")}
    assert overall["manufacturer"].drifted and overall["manufacturer"].n == 120
    assert overall["score"].n_reference == 120
    assert MonitoringAlert.objects.filter(model_version=version, key="drift:manufacturer:*:*").exists()


def test_a_large_window_is_measured_on_a_stable_sample(db, settings):
    from screening.models import ImageStats

    settings.PORTAL_MONITORING_MAX_IMAGES = 100
    version = make_version()
    now = _stream(version, second_vendor="VendorB")
    first = _run(version, now)
    manufacturer = first.measures.get(feature="manufacturer", site="", source="")
    assert manufacturer.n == 100 and manufacturer.drifted
    assert ImageStats.objects.count() == 120 + 100  # the reference, and the window's sample only
    second = _run(version, now)
    assert second.measures.get(feature="manufacturer", site="", source="").bins == manufacturer.bins  # same sample
