"""Subgroup performance from the portal's records: truth from outcomes where recorded, the final read
otherwise; age, density, vendor, site and round taken from the right places; an alert when a subgroup's
sensitivity falls significantly below the validated figure."""

from __future__ import annotations

from datetime import date

import pytest

from tests.monitoring.streams import make_version


def _exam(version, *, woman, score, flag, site="north", birth=date(1960, 6, 1), day=date(2026, 3, 1), vendor="A"):
    from screening.models import Image, Patient, Study

    patient, _ = Patient.objects.get_or_create(patient_id=woman, defaults={"birth_date": birth})
    study = Study.objects.create(
        study_uid=f"1.2.3.{Study.objects.count() + 1}",
        patient=patient,
        site=site,
        study_date=day,
        exam_score=score,
        exam_flag=flag,
        exam_model=version,
    )
    Image.objects.create(
        sop_uid=f"{study.study_uid}.1",
        study=study,
        file_format="dicom",
        original="x.dcm",
        rows=10,
        columns=10,
        manufacturer=vendor,
        sha256=f"{study.pk:064d}",
        size_bytes=1,
    )
    return study


def _read(study, user, decision, density="B"):
    from screening.models import Review

    Review.objects.create(
        study=study,
        version=1,
        radiologist=user,
        decision=decision,
        birads=4 if decision == "abnormal" else 1,
        density=density,
    )


def _outcome(study, user, result):
    from screening.models import Outcome

    Outcome.objects.create(
        study=study,
        laterality="L",
        result=result,
        cancer_type="invasive" if result == "malignant" else "",
        recorded_by=user,
    )


def test_truth_age_round_and_density_come_from_the_records(db, admin_user, radiologist):
    from screening.monitoring.selectors import cases_for

    version = make_version()
    # Outcome beats the read: read normal, biopsy malignant -> a cancer (from the outcome)
    a = _exam(version, woman="W1", score=0.9, flag=True, birth=date(1976, 3, 2), day=date(2026, 3, 1))
    _read(a, radiologist, "normal", density="D")
    _outcome(a, admin_user, "malignant")
    # No outcome: the final read decides (abnormal -> positive)
    b = _exam(version, woman="W2", score=0.7, flag=True, vendor="B", site="south")
    _read(b, radiologist, "abnormal")
    from screening.models import ImageStats

    ImageStats.objects.create(image=b.images.get(), manufacturer="B", model_name="Dim 2")  # manufacturer and model
    # Neither: left out
    _exam(version, woman="W3", score=0.2, flag=False)
    # The same woman's second exam: round "subsequent"
    c = _exam(version, woman="W1", score=0.1, flag=False, day=date(2028, 3, 1), birth=date(1976, 3, 2))
    _read(c, radiologist, "normal", density="C")
    cases = {(cs.woman, cs.round): cs for cs in cases_for(version)}
    assert len(cases) == 3
    first = cases[(str(a.patient_id), "first")]
    assert first.truth is True and first.truth_source == "outcome"
    assert first.age_band == "under 50" and first.density == "D"  # 49 on 2026-03-01
    second = cases[(str(a.patient_id), "subsequent")]
    assert second.truth is False and second.truth_source == "reading" and second.age_band == "50-59"
    other = cases[(str(b.patient_id), "first")]
    assert (
        other.truth is True and other.manufacturer == "B Dim 2" and other.site == "south" and other.age_band == "60-69"
    )


def test_a_subgroup_whose_sensitivity_falls_below_the_validated_figure_raises_an_alert(db, settings, radiologist):
    from screening.models import AuditEvent, MonitoringAlert, MonitoringRun
    from screening.monitoring import services

    settings.PORTAL_MONITORING_MIN_CASES = 10
    version = make_version(metrics={"locked_validation": {"sensitivity": 0.9}})
    # Site north: 20 cancers, 18 flagged (0.90). Site south: 20 cancers, only 6 flagged (0.30).
    for site, flagged in (("north", 18), ("south", 6)):
        for i in range(20):
            study = _exam(version, woman=f"{site}-c{i}", score=0.9 if i < flagged else 0.2, flag=i < flagged, site=site)
            _read(study, radiologist, "abnormal")
        for i in range(20):
            study = _exam(version, woman=f"{site}-n{i}", score=0.1, flag=False, site=site)
            _read(study, radiologist, "normal")
    run = MonitoringRun.objects.create(model_version=version)
    services.run_monitoring(run.pk)
    run.refresh_from_db()
    south = run.subgroups["groups"]["site"]["south"]
    assert south["sensitivity"]["value"] == pytest.approx(6 / 20)
    assert south["specificity"]["value"] == pytest.approx(1.0)
    assert run.subgroups["groups"]["site"]["north"]["sensitivity"]["value"] == pytest.approx(0.9)
    keys = set(MonitoringAlert.objects.filter(kind="sensitivity").values_list("key", flat=True))
    assert "sensitivity:site=south" in keys
    assert "sensitivity:site=north" not in keys
    assert "sensitivity:all=all" in keys  # 24/40 overall is significantly below 0.9 too
    assert AuditEvent.objects.filter(action="monitoring_alert", detail__key="sensitivity:site=south").exists()
