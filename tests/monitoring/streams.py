"""Synthetic streams of predicted images for the monitoring tests: real DICOM originals in storage
(so image statistics are read from the headers and pixels), rows written directly, no model run."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

import numpy as np
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from tests.dicom_factory import mg_dataset, phantom, to_bytes


def make_version(name="monitored", threshold=0.5, metrics=None):
    from screening.models import ModelVersion

    return ModelVersion.objects.create(
        name=name, checkpoint="none.pt", threshold=threshold, metrics=metrics or {}, status="challenger"
    )


def add_images(
    version,
    n: int,
    *,
    start: datetime,
    vendor: str = "VendorA",
    model_name: str = "Unit 1",
    bits: int = 12,
    spacing: float = 0.1,
    brightness: float = 1.0,
    scores=(2.0, 5.0),
    site: str = "north",
    seed: int = 0,
    patient_prefix: str = "P",
) -> list[int]:
    """n images, one a study and a woman, predicted by `version`, one an hour from `start`."""
    from screening.models import Image, Patient, Prediction, Study

    rng = np.random.default_rng(seed)
    ids = []
    for i in range(n):
        pixels = phantom(rows=96, columns=80, bits=bits, seed=seed * 10_000 + i)
        pixels = np.clip(pixels * brightness, 0, 2**bits - 1).astype(np.uint16)
        ds = mg_dataset(pixels, bits=bits, patient_id=f"{patient_prefix}{seed}-{i}")
        ds.Manufacturer, ds.ManufacturerModelName = vendor, model_name
        ds.ImagerPixelSpacing = [spacing, spacing]
        content = to_bytes(ds)
        name = default_storage.save(f"originals/{seed}-{i}.dcm", ContentFile(content))
        patient = Patient.objects.create(patient_id=f"{patient_prefix}{seed}-{i}")
        study = Study.objects.create(study_uid=ds.StudyInstanceUID, patient=patient, site=site)
        image = Image.objects.create(
            sop_uid=ds.SOPInstanceUID,
            study=study,
            laterality="L",
            view="CC",
            file_format="dicom",
            original=name,
            rows=96,
            columns=80,
            bits_stored=bits,
            photometric="MONOCHROME2",
            manufacturer=vendor,
            sha256=hashlib.sha256(content).hexdigest(),
            size_bytes=len(content),
            status="predicted",
        )
        prediction = Prediction.objects.create(
            image=image, model_version=version, status="done", probability=float(rng.beta(*scores))
        )
        Prediction.objects.filter(pk=prediction.pk).update(updated=start + timedelta(hours=i))
        ids.append(image.pk)
    return ids
