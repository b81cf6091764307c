"""Patients, studies and images as they arrive, and the corrections of where an image is filed (issue 21).

Part of the single `screening` app (tables, label and migrations unchanged): see `screening.models`.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Case, F, Q, Value, When
from django.db.models.functions import Coalesce

from screening.core.models import AppendOnlyModel
from screening.sites.models import DEFAULT_SITE


class Patient(models.Model):
    class Sex(models.TextChoices):
        FEMALE = "F", "Female"
        MALE = "M", "Male"
        OTHER = "O", "Other"
        UNKNOWN = "", "Unknown"

    patient_id = models.CharField(
        max_length=64, unique=True, help_text="Identifier from the source (DICOM PatientID or given on upload)."
    )
    name = models.CharField(max_length=200, blank=True)
    birth_date = models.DateField(null=True, blank=True)
    sex = models.CharField(max_length=1, choices=Sex.choices, blank=True, default="")
    # Which pool the woman's labelled images go to, assigned once when first labelled:
    # the locked validation set never enters training.
    split = models.CharField(
        max_length=10,
        choices=[("", "Unassigned"), ("train", "Training"), ("validation", "Locked validation")],
        blank=True,
        default="",
    )
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=~Q(patient_id=""), name="patient_id_not_empty"),
            models.CheckConstraint(condition=Q(split__in=["", "train", "validation"]), name="patient_split_valid"),
        ]

    def __str__(self) -> str:
        return f"Patient #{self.pk}"


def unread_rank() -> Case:
    """0 for a study still to be read, 1 once reported: lists show unread studies first. The worklist and the
    study list order by this exact expression, so their index (below) serves the page without a sort."""
    return Case(
        When(status__in=["new", "predicted", "in_review"], then=Value(0)),
        default=Value(1),
        output_field=models.IntegerField(),
    )


class Study(models.Model):
    class Status(models.TextChoices):
        NEW = "new", "New"
        PREDICTED = "predicted", "Predicted"
        IN_REVIEW = "in_review", "In review"
        REPORTED = "reported", "Reported"

    study_uid = models.CharField("StudyInstanceUID", max_length=64, unique=True)
    uid_generated = models.BooleanField(
        default=False, help_text="True when the portal generated the UID (non-DICOM upload)."
    )
    accession_number = models.CharField(max_length=16, blank=True)
    study_date = models.DateField(null=True, blank=True)
    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="studies")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.NEW)
    # Exam-level AI result, kept on the study so the worklist sorts by an index.
    exam_score = models.FloatField(null=True, blank=True)
    exam_flag = models.BooleanField(
        null=True,
        blank=True,
        help_text="At least one breast at or above the model's breast-level operating point (the exam is flagged "
        "exactly when one of its breasts is).",
    )
    source_kind = models.CharField(
        max_length=8,
        blank=True,
        default="",
        help_text="'film' or 'digital': whose calibration and thresholds scored it ('' = the model's default).",
    )
    score_left = models.FloatField(null=True, blank=True, help_text="Left breast: mean of its views' probabilities.")
    score_right = models.FloatField(null=True, blank=True, help_text="Right breast: mean of its views' probabilities.")
    exam_model = models.ForeignKey(
        "ModelVersion",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Model version whose predictions gave the exam score.",
    )
    assigned_to = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="assigned_studies"
    )
    site = models.CharField(
        max_length=64,
        default=DEFAULT_SITE,
        db_index=True,
        help_text="The screening unit (Site code) whose reading policy governs this study.",
    )
    reads_from = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Reopened by an image that arrived after its final decision: reads from this time on are the "
        "current round (the earlier ones stay in the record).",
    )
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "studies"
        permissions = [("view_all_studies", "Can see every study, not only its own uploads (API clients)")]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["new", "predicted", "in_review", "reported"]), name="study_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(exam_score__isnull=True) | Q(exam_score__gte=0, exam_score__lte=1),
                name="study_exam_score_unit",
            ),
        ]
        indexes = [
            # The reading worklist: unread studies by AI score, read with LIMIT from this index.
            models.Index(
                Coalesce("exam_score", -1.0).desc(),  # unscored last, in SQLite and PostgreSQL alike
                F("id").desc(),
                name="unread_by_score",
                condition=Q(status__in=["new", "predicted", "in_review"]),
            ),
            # Every study, unread first (the study list, the worklist's "all" view), by score or newest first:
            # the all_by_score and all_by_date indexes of migration 0016, on PostgreSQL only (SQLite's index
            # expressions take no NULLS LAST, and the embedded database is small).
            models.Index(fields=["status", "-exam_score", "-study_date"], name="worklist_by_score"),
            models.Index(fields=["status", "-study_date", "-created"], name="worklist_by_date"),
        ]

    def __str__(self) -> str:
        return f"Study #{self.pk}"


class Image(models.Model):
    class Laterality(models.TextChoices):
        LEFT = "L", "Left"
        RIGHT = "R", "Right"
        UNKNOWN = "U", "Unknown"

    class View(models.TextChoices):
        CC = "CC", "Cranio-caudal"
        MLO = "MLO", "Medio-lateral oblique"
        OTHER = "OTHER", "Other"

    class Format(models.TextChoices):
        DICOM = "dicom", "DICOM"
        PNG = "png", "PNG"
        JPEG = "jpeg", "JPEG"
        TIFF = "tiff", "TIFF"
        PGM = "pgm", "PGM"

    class Status(models.TextChoices):
        RECEIVED = "received", "Received"
        QUEUED = "queued", "Queued"
        PREDICTED = "predicted", "Predicted"
        FAILED = "failed", "Failed"

    sop_uid = models.CharField("SOPInstanceUID", max_length=64, unique=True)
    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="images")
    laterality = models.CharField(max_length=1, choices=Laterality.choices, default=Laterality.UNKNOWN)
    view = models.CharField(max_length=8, choices=View.choices, default=View.OTHER)
    file_format = models.CharField(max_length=8, choices=Format.choices)
    original = models.FileField(max_length=255)
    rendition = models.FileField(
        max_length=255,
        blank=True,
        help_text="8-bit PNG for the browser, presentation LUTs applied; made by the render worker after ingest "
        "(empty until then).",
    )
    rows = models.PositiveIntegerField()
    columns = models.PositiveIntegerField()
    bits_stored = models.PositiveSmallIntegerField(null=True, blank=True)
    stored_min = models.IntegerField(
        null=True,
        blank=True,
        help_text="Smallest stored pixel value (sign-extended), as a DICOM viewer finds it: the viewer's first paint "
        "windows with it when the header has no window. Set by the render worker for uncompressed grey images.",
    )
    stored_max = models.IntegerField(null=True, blank=True, help_text="Largest stored pixel value: see stored_min.")
    photometric = models.CharField(max_length=16, blank=True)
    manufacturer = models.CharField(max_length=64, blank=True)
    presentation_intent = models.CharField(max_length=16, blank=True, help_text="FOR PRESENTATION or FOR PROCESSING")
    sha256 = models.CharField(max_length=64, unique=True)
    size_bytes = models.BigIntegerField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RECEIVED)
    error = models.TextField(
        blank=True, help_text="Why the image failed: pixel data the render worker found it cannot decode."
    )
    render_attempts = models.PositiveSmallIntegerField(default=0)
    render_started = models.DateTimeField(
        null=True, blank=True, help_text="When a render worker last took the image (the sweeper resends stale ones)."
    )
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The account that sent the image: API clients see their own uploads only.",
    )
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(laterality__in=["L", "R", "U"]), name="image_laterality_valid"),
            models.CheckConstraint(condition=Q(view__in=["CC", "MLO", "OTHER"]), name="image_view_valid"),
            models.CheckConstraint(condition=Q(rows__gt=0, columns__gt=0), name="image_has_pixels"),
            models.CheckConstraint(
                condition=Q(status__in=["received", "queued", "predicted", "failed"]), name="image_status_valid"
            ),
        ]
        indexes = [
            models.Index(fields=["study", "laterality", "view"], name="image_hanging"),
            # Keyset pages of the image list (newest first), filtered by status or not.
            models.Index(fields=["status", "-id"], name="image_list_by_status"),
            # The render sweeper: images whose rendition is not made yet.
            models.Index(fields=["created"], name="image_unrendered", condition=Q(rendition="", error="")),
        ]

    def __str__(self) -> str:
        return f"Image #{self.pk} {self.laterality} {self.view}"


class DemographicsConflict(models.Model):
    """A study that arrived with a PatientID the portal holds, but another name or birth date.

    It is filed under that woman and held: never shown as her prior (nor she as its prior) until an
    admin reconciles it, either as the same woman or by refiling the study to another patient. The
    received and the stored values are kept as they were, so the queue shows what disagreed.
    """

    class Resolution(models.TextChoices):
        OPEN = "", "Waiting for an admin"
        SAME_WOMAN = "same_woman", "Confirmed as the same woman"
        REFILED = "refiled", "Refiled to another patient"

    study = models.OneToOneField(Study, on_delete=models.CASCADE, related_name="demographics_conflict")
    patient = models.ForeignKey(
        Patient, on_delete=models.CASCADE, related_name="+", help_text="The stored woman the study was filed under."
    )
    received_name = models.CharField(max_length=200, blank=True)
    received_birth_date = models.DateField(null=True, blank=True)
    stored_name = models.CharField(max_length=200, blank=True)
    stored_birth_date = models.DateField(null=True, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    resolution = models.CharField(max_length=12, choices=Resolution.choices, blank=True, default="")
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    resolved_at = models.DateTimeField(null=True, blank=True)
    note = models.TextField(blank=True)

    class Meta:
        ordering = ["created", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(resolution__in=["", "same_woman", "refiled"]), name="demographics_conflict_resolution"
            ),
            models.CheckConstraint(
                condition=Q(resolution="") | Q(resolved_at__isnull=False), name="demographics_conflict_resolved_at"
            ),
        ]
        indexes = [models.Index(fields=["created"], condition=Q(resolution=""), name="demographics_open")]

    def __str__(self) -> str:
        return f"Demographics conflict of study #{self.study_id}"


class Refiling(AppendOnlyModel):
    """One correction of where an image is filed: patient, study, laterality and view, before and after.

    Version n of an image's filing is its n-th correction; the filing before version 1 is the one it
    arrived with, readable as version 1's `from_` values. Append-only (the database refuses updates).
    """

    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="refilings")
    version = models.PositiveIntegerField()
    # Studies are kept by id without a constraint: the history stays readable if a study is deleted later.
    from_study = models.ForeignKey(
        Study, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+", null=True, blank=True
    )
    from_patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="+")
    from_laterality = models.CharField(max_length=1, choices=Image.Laterality.choices)
    from_view = models.CharField(max_length=8, choices=Image.View.choices)
    to_study = models.ForeignKey(
        Study, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+", null=True, blank=True
    )
    to_patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="+")
    to_laterality = models.CharField(max_length=1, choices=Image.Laterality.choices)
    to_view = models.CharField(max_length=8, choices=Image.View.choices)
    reason = models.TextField()
    by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["image", "version"]
        constraints = [
            models.UniqueConstraint(fields=["image", "version"], name="refiling_version_unique"),
            models.CheckConstraint(condition=Q(version__gte=1), name="refiling_version_positive"),
            models.CheckConstraint(condition=~Q(reason=""), name="refiling_has_reason"),
        ]

    def __str__(self) -> str:
        return f"Refiling v{self.version} of image #{self.image_id}"


class CadReport(models.Model):
    """A vendor's Mammography CAD SR (TID 4000) as it arrived, by any face, kept byte for byte, and whether its
    findings could be read. Its marks are the vendor's AI: shown under the same blinding as the portal's own
    (screening.blinding). An SR whose findings cannot be read is kept all the same, with the reason."""

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="cad_reports")
    sop_uid = models.CharField("SOPInstanceUID", max_length=64, unique=True)
    original = models.FileField(max_length=255)
    sha256 = models.CharField(max_length=64, unique=True)
    size_bytes = models.BigIntegerField()
    manufacturer = models.CharField(max_length=64, blank=True)
    parse_error = models.CharField(
        max_length=200, blank=True, help_text="Why its findings could not be read (empty: read, marks stored)."
    )
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"CAD SR #{self.pk} of study #{self.study_id}"


class CadMark(models.Model):
    """One mark of a CAD SR's single-image finding, on the image it references (by SOPInstanceUID: the SR may
    arrive before its images). The box is in the image's stored pixels; a point has no width or height."""

    report = models.ForeignKey(CadReport, on_delete=models.CASCADE, related_name="marks")
    image_sop_uid = models.CharField(max_length=64, db_index=True)
    finding = models.CharField(max_length=64, help_text="The finding type as the vendor names it.")
    graphic_type = models.CharField(max_length=16)
    x = models.FloatField()
    y = models.FloatField()
    width = models.FloatField(default=0)
    height = models.FloatField(default=0)
    certainty = models.FloatField(null=True, blank=True)
    probability = models.FloatField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(width__gte=0, height__gte=0), name="cad_mark_box_valid"),
            models.CheckConstraint(
                condition=Q(certainty__isnull=True) | Q(certainty__gte=0, certainty__lte=1), name="cad_mark_certainty"
            ),
            models.CheckConstraint(
                condition=Q(probability__isnull=True) | Q(probability__gte=0, probability__lte=1),
                name="cad_mark_probability",
            ),
        ]
