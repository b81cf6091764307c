"""No patient data in any log line: odd uploads whose headers carry distinctive patient
identifiers leave no trace of them in log records, warnings, stdout or stderr."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image as PILImage
from PIL.PngImagePlugin import PngInfo
from pydicom.uid import JPEG2000Lossless

from tests.dicom_factory import corrupt_file_meta_length, mg_dataset, set_raw, to_bytes

URL = "/api/v1/images/"
ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.django_db

NAME, PATIENT_ID, BIRTH_DATE, ACCESSION = "Zyxwvut^Qwertina", "PIDZQ90210", "19411231", "ACCQ7731"
SECRETS = (NAME, NAME.replace("^", " "), "Zyxwvut", "Qwertina", PATIENT_ID, BIRTH_DATE, "1941-12-31", ACCESSION)


def _marked(**kwargs):
    ds = mg_dataset(patient_id=PATIENT_ID, **kwargs)
    ds.PatientName, ds.PatientBirthDate, ds.AccessionNumber = NAME, BIRTH_DATE, ACCESSION
    return ds


def _odd_files() -> list[tuple[str, bytes, dict]]:
    files = []
    plain = to_bytes(_marked())
    files.append(("valid.dcm", plain, {}))
    for length in (400, 1000):
        files.append(
            (f"meta-{length}.dcm", corrupt_file_meta_length(to_bytes(_marked(seed=length)), length=length), {})
        )
    files.append(("group-length.dcm", corrupt_file_meta_length(plain, "FileMetaInformationGroupLength", 9), {}))
    for keyword in ("StudyDate", "PatientBirthDate", "WindowCenter", "StudyInstanceUID", "Rows", "PatientSex"):
        files.append((f"bad-{keyword}.dcm", to_bytes(set_raw(_marked(window=(2000, 400)), keyword, NAME)), {}))
    files.append(("long-id.dcm", to_bytes(set_raw(_marked(), "PatientID", PATIENT_ID * 8)), {}))
    files.append(("truncated.dcm", plain[:-5000], {}))
    compressed = _marked(seed=7)
    compressed.compress(JPEG2000Lossless)
    j2k = to_bytes(compressed)
    files.append(("truncated-j2k.dcm", j2k[: len(j2k) - 3000], {}))
    files.append(("ct.dcm", to_bytes(_marked(modality="CT", sop_class="1.2.840.10008.5.1.4.1.1.2")), {}))
    files.append(("huge-window.dcm", to_bytes(_marked(window=(1e308, float("nan")))), {}))
    files.append(
        ("nan-slope.dcm", to_bytes(set_raw(set_raw(_marked(), "RescaleSlope", "nan"), "RescaleIntercept", "0")), {})
    )
    files.append(("no-preamble.dcm", plain[128:], {}))
    png = io.BytesIO()
    info = PngInfo()
    info.add_text("Comment", f"{NAME} {PATIENT_ID} {BIRTH_DATE} {ACCESSION}")
    PILImage.fromarray(np.zeros((40, 30), np.uint8)).save(png, format="PNG", pnginfo=info)
    files.append(("tagged.png", png.getvalue(), {"patient_id": PATIENT_ID, "accession_number": ACCESSION}))
    tiff = io.BytesIO()
    PILImage.fromarray(np.zeros((40, 30), np.uint8)).save(tiff, format="TIFF", description=f"{NAME} {PATIENT_ID}")
    files.append(("tagged.tiff", tiff.getvalue(), {"patient_id": PATIENT_ID + "X"}))
    return files


def test_odd_uploads_leave_no_patient_data_in_any_log_warning_or_output(api, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    answers = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # record every warning, whatever the filters would show
        for name, content, fields in _odd_files():
            response = api.post(URL, {"file": SimpleUploadedFile(name, content), **fields}, format="multipart")
            answers.append((name, response.status_code))
    out, err = capfd.readouterr()
    captured = [out, err]
    captured += [str(w.message) for w in caught]
    for record in caplog.records:
        captured += [record.getMessage(), str(record.args), record.exc_text or "", record.name]
        if record.exc_info:
            captured.append(logging.Formatter().formatException(record.exc_info))
    leaks = [(secret, text[:200]) for text in captured for secret in SECRETS if secret in text]
    assert not leaks, leaks
    # The run did exercise ingest: the valid files were stored and the odd ones refused.
    statuses = dict(answers)
    assert statuses["valid.dcm"] == 201 and statuses["tagged.png"] == 201, answers
    assert all(status < 500 for _, status in answers), answers
    assert sum(status >= 400 for _, status in answers) >= 12, answers


def test_pydicom_warnings_and_log_records_never_reach_the_output(tmp_path):
    """pydicom quotes what it reads; once the portal is set up none of it is printed, even with
    pydicom's value validation switched back on."""
    damaged = tmp_path / "damaged.dcm"
    damaged.write_bytes(corrupt_file_meta_length(to_bytes(_marked()), length=1000))
    code = (
        "import django; django.setup()\n"
        "import pydicom\n"
        "pydicom.config.settings.reading_validation_mode = pydicom.config.WARN\n"
        f"pydicom.dcmread({str(damaged)!r})\n"
        "print('done')\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "portal.settings", "PORTAL_VAR_DIR": str(tmp_path)}
    env.pop("PYTHONWARNINGS", None)
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "done", result.stderr
    assert not [secret for secret in SECRETS if secret in result.stderr], result.stderr
