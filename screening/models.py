"""The case data of the portal and the invariants the database enforces."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Case, F, Q, Value, When
from django.db.models.functions import Coalesce


class AppendOnlyError(Exception):
    """Raised on any attempt to change or delete a record that is append-only (decisions, audit)."""


class AppendOnlyQuerySet(models.QuerySet):
    """No bulk update or delete. Deleting a study still removes its reviews: Django's cascade
    deletes in SQL without going through QuerySet.delete()."""

    def update(self, **kwargs):
        raise AppendOnlyError(f"{self.model._meta.verbose_name_plural} are append-only: add a new version instead")

    def delete(self):
        raise AppendOnlyError(f"{self.model._meta.verbose_name_plural} are append-only and cannot be deleted")


class AppendOnlyModel(models.Model):
    """A medical record: written once, never changed. The database refuses updates too (migration 0007)."""

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        abstract = True

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise AppendOnlyError(f"{self._meta.verbose_name} #{self.pk} is append-only: add a new version instead")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnlyError(f"{self._meta.verbose_name} #{self.pk} is append-only and cannot be deleted")


class Role(models.TextChoices):
    """Portal roles, stored as Django groups so admins manage them in the admin."""

    RADIOLOGIST = "radiologist", "Radiologist"
    ARBITRATOR = "arbitrator", "Arbitrator"
    ADMIN = "admin", "Admin"
    API_CLIENT = "api_client", "API client"


DEFAULT_SITE = "default"


class Site(models.Model):
    """A screening unit. Its studies are read under its own reading policy; its modalities are DICOM peers of it.

    Studies, peers and policies name their site by code (text, not a foreign key: the default site
    needs no row, and records keep the code they were made under).
    """

    code = models.SlugField(
        max_length=64, unique=True, help_text="Short name used by uploads (`site=`) and the API; never changes."
    )
    name = models.CharField(max_length=200)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["code"]
        constraints = [models.CheckConstraint(condition=~Q(code=""), name="site_code_not_empty")]

    def __str__(self) -> str:
        return f"{self.name} ({self.code})"


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


class ModelVersion(models.Model):
    class Status(models.TextChoices):
        CHAMPION = "champion", "Champion"
        CHALLENGER = "challenger", "Challenger"
        REJECTED = "rejected", "Rejected"
        RETIRED = "retired", "Retired"

    name = models.CharField(max_length=100, unique=True)
    checkpoint = models.CharField(max_length=255, help_text="Checkpoint path (shipped file or storage name).")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.CHALLENGER)
    threshold = models.FloatField(
        help_text="Breast-level operating point of the default source kind: a breast at or above it is flagged, and "
        "its exam with it. Each kind's image, breast and region thresholds are in metrics['sources']."
    )
    metrics = models.JSONField(default=dict, blank=True)
    note = models.TextField(blank=True)
    servable = models.BooleanField(
        default=True, help_text="False once its checkpoint failed to load: it predicts nothing until fixed."
    )
    load_error = models.TextField(blank=True, help_text="Why the checkpoint could not be loaded.")
    created = models.DateTimeField(auto_now_add=True)
    promoted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["status"], condition=Q(status="champion"), name="one_champion"),
            models.CheckConstraint(condition=Q(threshold__gte=0, threshold__lte=1), name="model_threshold_unit"),
        ]

    def __str__(self) -> str:
        return self.name


class Prediction(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="predictions")
    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="predictions")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    probability = models.FloatField(null=True, blank=True)
    heatmap = models.FileField(max_length=255, blank=True)
    error = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    preprocess_ms = models.FloatField(null=True, blank=True)
    inference_ms = models.FloatField(null=True, blank=True)
    source_kind = models.CharField(
        max_length=8, blank=True, default="", help_text="'film' or 'digital': the calibration that scored it."
    )
    logit = models.FloatField(
        null=True,
        blank=True,
        help_text="The model's uncalibrated image logit: the breast and exam scores are computed from the logits "
        "of a study's images by the same version's exam model (ml.exam), as in its evaluation.",
    )
    regions = models.JSONField(
        default=list,
        blank=True,
        help_text="Top suspicious regions: [{x, y, width, height, probability}] in original pixel coordinates.",
    )
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["image", "model_version"], name="one_prediction_per_model"),
            models.CheckConstraint(
                condition=Q(probability__isnull=True) | Q(probability__gte=0, probability__lte=1),
                name="prediction_probability_unit",
            ),
            models.CheckConstraint(
                condition=~Q(status="done") | Q(probability__isnull=False), name="done_prediction_has_probability"
            ),
        ]
        indexes = [
            models.Index(fields=["status", "updated"], name="prediction_sweep"),
            # Keyset pages of the prediction list (newest first), filtered by status or model version.
            models.Index(fields=["status", "-id"], name="prediction_list_by_status"),
            models.Index(fields=["model_version", "-id"], name="prediction_list_by_version"),
        ]


class Review(AppendOnlyModel):
    """A radiologist's decision on a study. Corrections add a version, never overwrite."""

    class Decision(models.TextChoices):
        NORMAL = "normal", "Normal"
        ABNORMAL = "abnormal", "Abnormal"

    class Density(models.TextChoices):
        A = "A", "A: almost entirely fatty"
        B = "B", "B: scattered fibroglandular"
        C = "C", "C: heterogeneously dense"
        D = "D", "D: extremely dense"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="reviews")
    version = models.PositiveIntegerField()
    radiologist = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="reviews")
    decision = models.CharField(max_length=8, choices=Decision.choices)
    birads = models.PositiveSmallIntegerField("BI-RADS")
    density = models.CharField(max_length=1, choices=Density.choices, blank=True)
    note = models.TextField(blank=True)
    agrees_with_ai = models.BooleanField(null=True, blank=True)
    # Which read of the case this is (screening/services/reading.py), and whether it is the case's
    # final decision: the one the study status, the decision SR and the training labels follow.
    # Rows from before reading policies were single reads, each final.
    slot = models.CharField(
        max_length=12,
        choices=[
            ("single", "Single read"),
            ("first", "First read"),
            ("second", "Second read"),
            ("arbitration", "Arbitration"),
            ("consensus", "Consensus"),
        ],
        default="single",
    )
    is_final = models.BooleanField(default=True, help_text="The case's final decision (the latest final one wins).")
    reading_seconds = models.FloatField(
        null=True, blank=True, help_text="From opening the case (taking its lock) to submitting."
    )
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["study", "version"], name="review_version_unique"),
            models.CheckConstraint(
                condition=Q(slot__in=["single", "first", "second", "arbitration", "consensus"]),
                name="review_slot_valid",
            ),
            models.CheckConstraint(condition=Q(birads__lte=6), name="review_birads_0_6"),
            models.CheckConstraint(condition=Q(decision__in=["normal", "abnormal"]), name="review_decision_valid"),
            models.CheckConstraint(condition=Q(density__in=["", "A", "B", "C", "D"]), name="review_density_valid"),
            # A coherent decision: normal is BI-RADS 1 or 2; abnormal is 0 (recall), 3, 4, 5 or 6.
            models.CheckConstraint(
                condition=Q(decision="normal", birads__in=[1, 2]) | Q(decision="abnormal", birads__in=[0, 3, 4, 5, 6]),
                name="review_decision_matches_birads",
            ),
        ]
        indexes = [
            # The arbitration worklist starts from the second reads: a few rows among every read ever made.
            models.Index(fields=["study"], condition=Q(slot="second"), name="review_second_read"),
        ]
        ordering = ["study", "-version"]


class Finding(AppendOnlyModel):
    class Type(models.TextChoices):
        MASS = "mass", "Mass"
        CALCIFICATION = "calcification", "Calcification"
        DISTORTION = "distortion", "Architectural distortion"
        ASYMMETRY = "asymmetry", "Asymmetry"
        OTHER = "other", "Other"

    review = models.ForeignKey(Review, on_delete=models.CASCADE, related_name="findings")
    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="findings")
    laterality = models.CharField(max_length=1, choices=Image.Laterality.choices)
    type = models.CharField(max_length=16, choices=Type.choices)
    # Region in original image pixels: a point when width and height are 0.
    x = models.FloatField()
    y = models.FloatField()
    width = models.FloatField(default=0)
    height = models.FloatField(default=0)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(x__gte=0, y__gte=0, width__gte=0, height__gte=0), name="finding_region_positive"
            ),
        ]


class TrainingRun(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    triggered_by = models.CharField(max_length=32, default="schedule")
    snapshot_hash = models.CharField(max_length=64, blank=True)
    data_summary = models.JSONField(default=dict, blank=True)
    progress = models.JSONField(default=dict, blank=True)
    candidate = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="training_runs"
    )
    error = models.TextField(blank=True)
    created = models.DateTimeField(auto_now_add=True)
    started = models.DateTimeField(null=True, blank=True)
    finished = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["status"], condition=Q(status="running"), name="one_running_training"),
        ]


class AuditEvent(AppendOnlyModel):
    """Who did what, when and from where. Append-only; survives the deletion of its study or user.

    The study and user keys carry no database constraint and are never nulled: the
    trail of a deleted study stays readable under its old id, and no row is rewritten.
    """

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    username = models.CharField(max_length=150, blank=True)
    action = models.CharField(max_length=32)
    study = models.ForeignKey(
        Study,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="audit_events",
    )
    object_type = models.CharField(max_length=32, blank=True)
    object_id = models.CharField(max_length=64, blank=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        indexes = [models.Index(fields=["study", "-at"], name="audit_by_study")]
        ordering = ["-at"]


class DicomPeer(models.Model):
    """A calling AE the DICOM receiver accepts, by AE title and IP address (with PORTAL_DICOM_ALLOWED_AES)."""

    ae_title = models.CharField(
        "AE title",
        max_length=16,
        validators=[
            RegexValidator(
                r"^[!-\[\]-~]([ -\[\]-~]{0,14}[!-\[\]-~])?$",
                "1 to 16 printable ASCII characters, no backslash, no leading or trailing space",
            )
        ],
    )
    host = models.GenericIPAddressField("IP address", help_text="The address the peer connects from.")
    enabled = models.BooleanField(default=True)
    site = models.CharField(
        max_length=64, default=DEFAULT_SITE, help_text="Site code: new studies this peer sends belong to that site."
    )
    query_user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        verbose_name="Query/Retrieve account",
        help_text="C-FIND, C-MOVE and C-GET from this peer act as this portal account: its role decides what it "
        "finds, sees of patient identity (else its pseudonyms) and may retrieve. Empty: the peer may only store.",
    )

    class Meta:
        constraints = [models.UniqueConstraint(fields=["ae_title", "host"], name="dicom_peer_unique")]
        ordering = ["ae_title", "host"]
        verbose_name = "DICOM peer"

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}"


AE_TITLE_VALIDATOR = RegexValidator(
    r"^[!-\[\]-~]([ -\[\]-~]{0,14}[!-\[\]-~])?$",
    "1 to 16 printable ASCII characters, no backslash, no leading or trailing space",
)


class DicomDestination(models.Model):
    """A C-STORE SCP (a PACS) that receives the portal's SRs (with PORTAL_DICOM_DESTINATIONS)."""

    ae_title = models.CharField("AE title", max_length=16, validators=[AE_TITLE_VALIDATOR])
    host = models.CharField(max_length=255, help_text="Host name or IP address of the PACS.")
    port = models.PositiveIntegerField(validators=[MinValueValidator(1), MaxValueValidator(65535)])
    enabled = models.BooleanField(default=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["ae_title", "host", "port"], name="dicom_destination_unique"),
            models.CheckConstraint(condition=Q(port__gte=1, port__lte=65535), name="dicom_destination_port"),
        ]
        ordering = ["ae_title", "host", "port"]
        verbose_name = "DICOM destination"

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


class DicomExport(models.Model):
    """One DICOM SR (the AI result or a decision) sent to one destination, with its sending status."""

    class Kind(models.TextChoices):
        AI = "ai", "AI result"
        DECISION = "decision", "Decision"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="exports")
    review = models.ForeignKey(Review, null=True, blank=True, on_delete=models.CASCADE, related_name="exports")
    kind = models.CharField(max_length=8, choices=Kind.choices)
    destination = models.CharField(max_length=300, help_text="AE_TITLE@host:port")
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    error = models.TextField(blank=True)
    sop_instance_uid = models.CharField("SOPInstanceUID of the SR", max_length=64)
    sr_file = models.FileField("SR file", max_length=255, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["sop_instance_uid", "destination"], name="dicom_export_once"),
            models.CheckConstraint(condition=Q(kind__in=["ai", "decision"]), name="dicom_export_kind_valid"),
            models.CheckConstraint(
                condition=Q(status__in=["pending", "sent", "failed"]), name="dicom_export_status_valid"
            ),
        ]
        indexes = [models.Index(fields=["status", "updated"], name="dicom_export_status")]
        ordering = ["-created", "-id"]
        verbose_name = "DICOM export"

    def __str__(self) -> str:
        return f"{self.get_kind_display()} SR of study #{self.study_id} to {self.destination}"


# --- reading workflow (issue 15): policies, locks, outcomes ---------------------------------------------


class ReadingPolicy(AppendOnlyModel):
    """How a site reads its exams. A change adds a row; the latest row of a site is its policy."""

    class Mode(models.TextChoices):
        SINGLE = "single", "Single reading"
        DOUBLE = "double", "Blinded double reading with arbitration"
        AI_TRIAGED = "ai_triaged", "AI-triaged: one reader below the AI score, two at or above"

    class Resolution(models.TextChoices):
        ARBITRATOR = "arbitrator", "An arbitrator decides"
        CONSENSUS = "consensus", "The two readers agree a consensus"

    class Order(models.TextChoices):
        SCORE = "score", "AI score, highest first"
        DATE = "date", "Exam date, oldest first"
        AGE = "age", "Age, oldest woman first"

    site = models.CharField(max_length=64, default=DEFAULT_SITE)
    mode = models.CharField(max_length=12, choices=Mode.choices, default=Mode.SINGLE)
    triage_threshold = models.FloatField(
        null=True, blank=True, help_text="AI-triaged: exams whose calibrated exam score is below this get one reader."
    )
    resolution = models.CharField(max_length=12, choices=Resolution.choices, default=Resolution.ARBITRATOR)
    blind_ai = models.BooleanField(default=False, help_text="Readers see the AI result only after their own read.")
    order = models.CharField(max_length=8, choices=Order.choices, default=Order.SCORE)
    lock_minutes = models.PositiveSmallIntegerField(
        default=15, validators=[MinValueValidator(1), MaxValueValidator(240)]
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    note = models.TextField(blank=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "reading policies"
        ordering = ["site", "-created", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(mode__in=["single", "double", "ai_triaged"]), name="reading_policy_mode_valid"
            ),
            models.CheckConstraint(
                condition=~Q(mode="ai_triaged") | Q(triage_threshold__gte=0, triage_threshold__lte=1),
                name="reading_policy_triage_threshold",
            ),
            models.CheckConstraint(condition=Q(lock_minutes__gte=1), name="reading_policy_lock_minutes"),
        ]


class CaseLock(models.Model):
    """Who is reading a case now. One per study; taken over by anyone once it has expired."""

    study = models.OneToOneField(Study, on_delete=models.CASCADE, related_name="lock")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    acquired = models.DateTimeField(help_text="When this reader opened the case (reading time starts here).")
    expires = models.DateTimeField()

    def __str__(self) -> str:
        return f"Lock on study #{self.study_id}"


class Outcome(AppendOnlyModel):
    """What was found for one breast after screening: biopsy result or follow-up. The latest row wins."""

    class Result(models.TextChoices):
        BENIGN = "benign", "Benign (biopsy)"
        MALIGNANT = "malignant", "Malignant (biopsy)"
        NO_CANCER = "no_cancer", "No cancer after follow-up"

    class CancerType(models.TextChoices):
        NONE = "", "Not malignant"
        INVASIVE = "invasive", "Invasive carcinoma"
        DCIS = "dcis", "Ductal carcinoma in situ"
        OTHER = "other", "Other malignancy"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="outcomes")
    laterality = models.CharField(max_length=1, choices=[("L", "Left"), ("R", "Right")])
    result = models.CharField(max_length=10, choices=Result.choices)
    cancer_type = models.CharField(max_length=10, choices=CancerType.choices, blank=True, default="")
    diagnosed_on = models.DateField(null=True, blank=True)
    source = models.CharField(max_length=8, default="form", help_text="form, api or csv")
    recorded_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["study", "laterality", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(laterality__in=["L", "R"]), name="outcome_laterality_valid"),
            models.CheckConstraint(
                condition=Q(result__in=["benign", "malignant", "no_cancer"]), name="outcome_result_valid"
            ),
            models.CheckConstraint(
                condition=Q(result="malignant", cancer_type__in=["invasive", "dcis", "other"])
                | (~Q(result="malignant") & Q(cancer_type="")),
                name="outcome_cancer_type_matches",
            ),
        ]
        indexes = [models.Index(fields=["study", "laterality", "-id"], name="outcome_latest")]


from screening.models_filing import DemographicsConflict, Refiling  # noqa: E402, F401  (issue 21: filing corrections)

# Sub-domain models kept in their own packages, registered here as part of the screening app.
from screening.monitoring.models import (  # noqa: E402, F401
    AlertAcknowledgement,
    DriftMeasure,
    ImageStats,
    MonitoringAlert,
    MonitoringRun,
)
from screening.research_export.models import ResearchExport, ResearchProject  # noqa: E402, F401
