"""Every model of the `screening` app, gathered so Django registers them under the one app label.

Each model lives in its sub-domain package (`screening/<domain>/models.py`); the tables, app label
and migrations are those of the single `screening` app. Code imports a model from its own package;
this module only makes Django see them all.
"""

from screening.ai.models import ModelVersion, Prediction, TrainingRun
from screening.audit.models import AuditEvent
from screening.core.models import AppendOnlyError, AppendOnlyModel, AppendOnlyQuerySet, Role
from screening.exchange.models import (
    AE_TITLE_VALIDATOR,
    DicomDestination,
    DicomExport,
    DicomPeer,
    Hl7Destination,
    Hl7Export,
)
from screening.intake.models import (
    CadMark,
    CadReport,
    DemographicsConflict,
    Image,
    Patient,
    Refiling,
    Study,
    unread_rank,
)
from screening.monitoring.models import (
    AlertAcknowledgement,
    DriftMeasure,
    ImageStats,
    MonitoringAlert,
    MonitoringRun,
)
from screening.reading.models import (
    CaseLock,
    Finding,
    NoteTemplate,
    Outcome,
    ReaderPreference,
    ReadingPolicy,
    ReportedFinding,
    Review,
)
from screening.research_export.models import ResearchExport, ResearchProject
from screening.sites.models import DEFAULT_SITE, Site

__all__ = [
    "AE_TITLE_VALIDATOR",
    "DEFAULT_SITE",
    "AlertAcknowledgement",
    "AppendOnlyError",
    "AppendOnlyModel",
    "AppendOnlyQuerySet",
    "AuditEvent",
    "CadMark",
    "CadReport",
    "CaseLock",
    "DemographicsConflict",
    "DicomDestination",
    "DicomExport",
    "Hl7Destination",
    "Hl7Export",
    "DicomPeer",
    "DriftMeasure",
    "Finding",
    "Image",
    "ImageStats",
    "ModelVersion",
    "MonitoringAlert",
    "MonitoringRun",
    "NoteTemplate",
    "Outcome",
    "Patient",
    "Prediction",
    "ReaderPreference",
    "ReadingPolicy",
    "Refiling",
    "ReportedFinding",
    "ResearchExport",
    "ResearchProject",
    "Review",
    "Role",
    "Site",
    "Study",
    "TrainingRun",
    "unread_rank",
]
