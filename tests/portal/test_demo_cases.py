"""setup_demo's synthetic demonstration cases: a fresh install has something to read, made by the portal itself."""

from __future__ import annotations

import io
import re
import shutil
import subprocess

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from screening.ai.labels import collect_labels
from screening.intake import demo_cases
from screening.intake.services import demo
from screening.models import AuditEvent, Image, Prediction, Study
from screening.reading.services.reviews import review_submit
from tests.conftest import stored_files

pytestmark = pytest.mark.django_db


def setup_demo(*args: str) -> str:
    out = io.StringIO()
    call_command("setup_demo", *args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db(transaction=True, serialized_rollback=True)  # tasks go on commit, as in run.sh
def test_a_fresh_install_gets_four_synthetic_cases_rendered_predicted_and_on_the_worklist(
    champion, client, radiologist
):  # noqa: E501
    from tests.eager import tasks_in_process

    with tasks_in_process("screening.tasks.predict_image"):  # embedded mode: render and predict in this process
        output = setup_demo()
    assert re.search(r"case 4/4 \(DEMO3A, 2026-02-12, calcifications in the right breast\): 4 images in", output)
    assert "4 case(s) added" in output
    studies = Study.objects.filter(study_uid__in=demo_cases.demo_study_uids())
    assert studies.count() == 4 and Image.objects.filter(study__in=studies).count() == 16
    assert {(i.laterality, i.view) for i in Image.objects.all()} == set(demo.VIEWS)
    assert not Image.objects.exclude(rendition="").filter(status="failed").exists()
    assert Prediction.objects.filter(status="done").count() == 16
    assert studies.filter(exam_score__isnull=False).count() == 4
    client.force_login(radiologist)
    worklist = client.get(reverse("worklist")).content.decode()
    assert worklist.count("DEMO-000") >= 4
    prior = Study.objects.get(accession_number="DEMO1A")
    current = Study.objects.get(accession_number="DEMO1B")
    assert prior.patient_id == current.patient_id and prior.study_date < current.study_date


def test_the_cases_are_synthetic_mg_that_pass_the_dicom_iod_check(tmp_path):
    ds = demo.demo_dataset(demo_cases.CASES[1], "L", "MLO")
    assert (ds.Modality, ds.PatientID, str(ds.PatientName)) == ("MG", "DEMO-0001", "SYNTHETIC^DEMO ONE")
    assert "Synthetic" in ds.StudyDescription and ds.BurnedInAnnotation == "NO"
    again = demo.demo_dataset(demo_cases.CASES[1], "L", "MLO")  # the same case every time
    assert again.PixelData == ds.PixelData and again.SOPInstanceUID == ds.SOPInstanceUID
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy (Debian dicom3tools) is not installed")
    path = tmp_path / "demo.dcm"
    ds.save_as(path, enforce_file_format=True)
    report = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
    errors = [line for line in (report.stdout + report.stderr).splitlines() if line.startswith("Error")]
    assert not errors, errors


@pytest.mark.parametrize(("laterality", "view"), demo.VIEWS)
def test_the_chest_wall_and_the_finding_are_where_a_reader_expects_them(laterality, view):
    case = demo_cases.CASES[1]  # a mass in the left breast, on both views
    pixels = demo.synthetic_mammogram(case, laterality, view).astype(float)
    columns = pixels.shape[1]
    left, right = pixels[:, : columns // 2].mean(), pixels[:, columns // 2 :].mean()
    assert (left > right) == (laterality == "L")  # tissue against the chest wall: left edge for L, right for R
    fx, fy = demo.finding_centre(view)
    x = int(fx * columns) if laterality == "L" else columns - 1 - int(fx * columns)
    y = int(fy * pixels.shape[0])
    centre = pixels[y - 10 : y + 10, x - 10 : x + 10].mean()
    around = np.median(pixels[y - 200 : y + 200, x - 200 : x + 200])
    assert (centre - around > 400) == (laterality == "L")  # the mass on both views of the left breast only


def test_setup_demo_twice_adds_nothing_new_and_changes_passwords_but_not_tokens(django_user_model):
    from rest_framework.authtoken.models import Token

    first = setup_demo("--cases", "yes")
    user = django_user_model.objects.get(username="radiologist")
    password = re.search(r"username=radiologist\s+password=(\S+)", first).group(1)
    token = Token.objects.get(user=user).key
    second = setup_demo("--cases", "yes")
    assert "case 1/4 (DEMO1A) is already here" in second and "0 case(s) added" in second
    assert Study.objects.count() == 4 and Image.objects.count() == 16
    user.refresh_from_db()
    assert not user.check_password(password)  # a new password at every start, as the README says
    assert Token.objects.get(user=user).key == token and f"api-token={token}" in second  # the token is kept


def test_on_a_portal_that_holds_studies_auto_adds_no_demonstration_case():
    from tests.portal.reading_fixtures import make_study

    make_study("REAL-1", 0.3)
    output = setup_demo()
    assert "none added (the portal holds studies" in output
    assert not Study.objects.filter(study_uid__in=demo_cases.demo_study_uids()).exists()


def test_a_read_demonstration_case_is_neither_a_training_label_nor_a_screening_figure(radiologist):
    from screening.reading.performance import performance
    from tests.portal.reading_fixtures import make_study

    setup_demo("--cases", "yes")
    real = make_study("REAL-1", 0.3)
    for study in Study.objects.all():
        review_submit(study=study, radiologist=radiologist, decision="normal", birads=1)
    assert {label.image_id for label in collect_labels()} == set(real.images.values_list("pk", flat=True))
    assert performance()["programme"]["exams"] == 1


def test_remove_cases_deletes_them_with_their_files_and_an_audit(media_root, django_capture_on_commit_callbacks):
    setup_demo("--cases", "yes")
    assert stored_files(media_root)
    with django_capture_on_commit_callbacks(execute=True):  # the files go after the commit
        assert "Removed 4 synthetic demonstration case(s)." in setup_demo("--remove-cases")
    assert not Study.objects.exists() and not stored_files(media_root)
    events = AuditEvent.objects.filter(action="study_delete")
    assert events.count() == 4 and {e.detail["reason"] for e in events} == {"synthetic demonstration case removed"}


def test_no_demonstration_case_is_added_while_a_pacs_would_receive_its_srs(settings):
    settings.PORTAL_DICOM_DESTINATIONS = [("PACS", "127.0.0.1", 11113)]
    assert "none added: a DICOM destination is configured" in setup_demo()  # run.sh carries on
    with pytest.raises(CommandError, match="demonstration cases not added: a DICOM destination is configured"):
        setup_demo("--cases", "yes")
    assert not Study.objects.exists()
