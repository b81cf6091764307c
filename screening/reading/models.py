"""Reads (versioned, append-only), findings, reading policies, case locks and outcomes.

Part of the single `screening` app (tables, label and migrations unchanged): see `screening.models`.
"""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from screening.core.models import AppendOnlyModel
from screening.intake.models import Image, Study
from screening.reading.lexicon import DEPTHS, MAX_DISTANCE_CM, QUADRANTS, TYPES
from screening.sites.models import DEFAULT_SITE


def _breast_constraints() -> list[models.CheckConstraint]:
    """Per-breast calls: both breasts or neither (an older read), each coherent with its BI-RADS, and the
    exam abnormal exactly when one breast is (its BI-RADS order is checked by the service: assessment.SEVERITY)."""
    unset = Q(decision_right="", birads_right__isnull=True, decision_left="", birads_left__isnull=True)
    constraints = [
        models.CheckConstraint(
            condition=unset | Q(birads_right__isnull=False, birads_left__isnull=False), name="review_breasts_both"
        ),
        models.CheckConstraint(
            condition=unset
            | Q(decision="abnormal", decision_right="abnormal")
            | Q(decision="abnormal", decision_left="abnormal")
            | Q(decision="normal", decision_right="normal", decision_left="normal"),
            name="review_exam_follows_breasts",
        ),
    ]
    for side in ("right", "left"):
        coherent = Q(**{f"decision_{side}": "normal", f"birads_{side}__in": [1, 2]}) | Q(
            **{f"decision_{side}": "abnormal", f"birads_{side}__in": [0, 3, 4, 5, 6]}
        )
        constraints.append(models.CheckConstraint(condition=unset | coherent, name=f"review_{side}_matches_birads"))
    return constraints


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
    # Each breast's call (screening.reading.assessment): the exam's decision and BI-RADS follow from them. Empty on
    # the reads made before per-breast assessment, which assessment.breasts_of maps onto both breasts.
    decision_right = models.CharField(max_length=8, choices=Decision.choices, blank=True, default="")
    birads_right = models.PositiveSmallIntegerField("BI-RADS right", null=True, blank=True)
    decision_left = models.CharField(max_length=8, choices=Decision.choices, blank=True, default="")
    birads_left = models.PositiveSmallIntegerField("BI-RADS left", null=True, blank=True)
    agrees_with_ai = models.BooleanField(null=True, blank=True)
    # Which read of the case this is (screening/reading/services/reading.py), and whether it is the case's
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
            *_breast_constraints(),
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
    # The lexicon finding this mark shows (models_findings): one finding, marked on CC and MLO, has two marks.
    reported = models.ForeignKey(
        "screening.ReportedFinding", on_delete=models.CASCADE, null=True, blank=True, related_name="marks"
    )
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


class ReportedFinding(AppendOnlyModel):
    review = models.ForeignKey(Review, on_delete=models.CASCADE, related_name="reported_findings")
    number = models.PositiveSmallIntegerField(help_text="1, 2, ... within its read, as the report numbers them.")
    laterality = models.CharField(max_length=1, choices=[("R", "Right"), ("L", "Left")])
    type = models.CharField(max_length=16, choices=list(TYPES.items()))
    descriptors = models.JSONField(default=dict, blank=True, help_text="Lexicon descriptors: {name: value}.")
    clock = models.PositiveSmallIntegerField(null=True, blank=True, help_text="Clock-face position, 1 to 12.")
    quadrant = models.CharField(max_length=16, choices=list(QUADRANTS.items()), blank=True)
    depth = models.CharField(max_length=10, choices=list(DEPTHS.items()), blank=True)
    distance_cm = models.FloatField("distance from the nipple (cm)", null=True, blank=True)

    class Meta:
        ordering = ["review", "number"]
        constraints = [
            models.UniqueConstraint(fields=["review", "number"], name="reported_finding_number_unique"),
            models.CheckConstraint(condition=Q(laterality__in=["R", "L"]), name="reported_finding_laterality_valid"),
            models.CheckConstraint(condition=Q(type__in=list(TYPES)), name="reported_finding_type_valid"),
            models.CheckConstraint(
                condition=Q(clock__isnull=True) | Q(clock__gte=1, clock__lte=12), name="reported_finding_clock_1_12"
            ),
            models.CheckConstraint(condition=Q(quadrant__in=["", *QUADRANTS]), name="reported_finding_quadrant_valid"),
            models.CheckConstraint(condition=Q(depth__in=["", *DEPTHS]), name="reported_finding_depth_valid"),
            models.CheckConstraint(
                condition=Q(distance_cm__isnull=True) | Q(distance_cm__gte=0, distance_cm__lte=MAX_DISTANCE_CM),
                name="reported_finding_distance_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"Finding {self.number} of review #{self.review_id}"


class NoteTemplate(models.Model):
    name = models.CharField(max_length=80, unique=True, help_text="What readers pick in the form.")
    text = models.TextField(help_text="Put into the note, where the reader edits it.")
    active = models.BooleanField(default=True, help_text="Offered in the form (retire one instead of deleting it).")
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.CheckConstraint(condition=~Q(name="") & ~Q(text=""), name="note_template_not_empty")]

    def __str__(self) -> str:
        return self.name


class HangingProtocol(models.TextChoices):
    """The hanging protocols of the viewer: the ids of static/viewer/src/protocols.js
    (tests/portal/test_reader_preferences.py holds the two lists equal)."""

    FOUR_UP = "four-up", "Current 4-up"
    SEQUENCE = "sequence", "Screening sequence"
    PRIOR = "prior", "Current vs prior"
    EXTRA = "extra", "Magnification and spot views"


class ReaderPreference(models.Model):
    """A reader's own settings of the reading station, kept on the server so they follow the reader from one
    browser to the next. One row per user, changed in place: a preference, not a record of the reading."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="reader_preference")
    hanging_protocol = models.CharField(max_length=16, choices=HangingProtocol.choices, default=HangingProtocol.FOUR_UP)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(hanging_protocol__in=HangingProtocol.values), name="reader_preference_known_protocol"
            )
        ]

    def __str__(self) -> str:
        return f"Reading preferences of user #{self.user_id}"
