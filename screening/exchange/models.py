"""DICOM nodes the portal talks to (peers that send or query, destinations it sends to) and its exports.

Part of the single `screening` app (tables, label and migrations unchanged): see `screening.models`.
"""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q

from screening.intake.models import Study
from screening.reading.models import Review
from screening.sites.models import DEFAULT_SITE


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


HL7_NAME_VALIDATOR = RegexValidator(
    r"^[!-%'-\[\]_-{}]([ -%'-\[\]_-{}]{0,225}[!-%'-\[\]_-{}])?$",
    "printable ASCII without the HL7 delimiters | ^ ~ \\ & and no leading or trailing space",
)


class Hl7Destination(models.Model):
    """A RIS that receives each final decision (and each correction) as an HL7 v2.5.1 ORU^R01 over MLLP."""

    name = models.CharField(max_length=64, unique=True, help_text="What the admin and the case call it.")
    host = models.CharField(max_length=255, help_text="Host name or IP address of the RIS's MLLP listener.")
    port = models.PositiveIntegerField(validators=[MinValueValidator(1), MaxValueValidator(65535)])
    sending_application = models.CharField(
        max_length=227, default="SCREENING", validators=[HL7_NAME_VALIDATOR], help_text="MSH-3."
    )
    sending_facility = models.CharField(max_length=227, blank=True, validators=[HL7_NAME_VALIDATOR], help_text="MSH-4.")
    receiving_application = models.CharField(
        max_length=227, blank=True, validators=[HL7_NAME_VALIDATOR], help_text="MSH-5."
    )
    receiving_facility = models.CharField(
        max_length=227, blank=True, validators=[HL7_NAME_VALIDATOR], help_text="MSH-6."
    )
    send_identity = models.BooleanField(
        default=True,
        help_text="PID carries the woman's patient ID, name, birth date and sex (as the SRs sent to the PACS do). "
        "Off: a pseudonym of this destination's own as the patient ID, and no name or birth date.",
    )
    enabled = models.BooleanField(default=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(port__gte=1, port__lte=65535), name="hl7_destination_port"),
        ]
        ordering = ["name"]
        verbose_name = "HL7 destination"

    def __str__(self) -> str:
        return f"{self.name} ({self.host}:{self.port})"


class Hl7Export(models.Model):
    """One decision sent to one HL7 destination as an ORU^R01, with its sending status and the RIS's answer."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"

    class ResultStatus(models.TextChoices):
        FINAL = "F", "Final"
        CORRECTED = "C", "Corrected"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="hl7_exports")
    review = models.ForeignKey(Review, on_delete=models.CASCADE, related_name="hl7_exports")
    destination = models.ForeignKey(Hl7Destination, null=True, on_delete=models.SET_NULL, related_name="exports")
    destination_label = models.CharField(max_length=400, help_text="The destination as it was when queued.")
    control_id = models.CharField("message control ID (MSH-10)", max_length=20, unique=True)
    result_status = models.CharField("result status (OBR-25)", max_length=1, choices=ResultStatus.choices)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    ack_code = models.CharField("acknowledgment code (MSA-1)", max_length=2, blank=True)
    error = models.TextField(blank=True)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["review", "destination"], name="hl7_export_once"),
            models.CheckConstraint(condition=Q(result_status__in=["F", "C"]), name="hl7_export_result_status_valid"),
            models.CheckConstraint(
                condition=Q(status__in=["pending", "sent", "failed"]), name="hl7_export_status_valid"
            ),
        ]
        indexes = [models.Index(fields=["status", "updated"], name="hl7_export_status")]
        ordering = ["-created", "-id"]
        verbose_name = "HL7 export"

    def __str__(self) -> str:
        return f"{self.get_result_status_display()} result of study #{self.study_id} to {self.destination_label}"
