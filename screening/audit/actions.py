"""Every audit action, in one place: its name and what its event records (pretix's log action types).

A service writes an event with `record_event(action=actions.STUDY_DELETE, ...)`; `record_event` refuses a
name that is not registered here, so no free string reaches the trail. Each entry says what the event
records besides who, when, from where and the object (those every event has). Names are stored as text and
never change (old events keep theirs); a new kind of event is a new entry.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Action:
    name: str
    records: str  # what the event's detail and object say


class UnknownAction(ValueError):
    """An audit action nobody registered: a typo would otherwise write an event no one searches for."""


REGISTRY: dict[str, Action] = {}


def _register(name: str, records: str) -> str:
    if name in REGISTRY:
        raise ValueError(f"audit action {name!r} registered twice")
    REGISTRY[name] = Action(name, records)
    return name


def check(name: str) -> str:
    """The name itself when registered; UnknownAction otherwise."""
    if name not in REGISTRY:
        raise UnknownAction(f"{name!r} is not a registered audit action (screening.audit.actions)")
    return name


# --- intake: images, studies, filing -------------------------------------------------------------------------
INGEST = _register("ingest", "an image stored: how it came (via), its sender (AE title or client), file and study")
CAD_SR_INGEST = _register(
    "cad_sr_ingest",
    "a vendor CAD SR stored: how it came (via), its study, how many marks were read or why none could be",
)
INGEST_CONFLICT = _register("ingest_conflict", "a resend refused: it differs from the image already held")
STUDY_REOPEN = _register("study_reopen", "a reported study reopened by an image arriving for it")
STUDY_ASSIGN = _register("study_assign", "a study assigned to a reader, or unassigned")
STUDY_SITE_CHANGE = _register("study_site_change", "a study moved to another screening site")
STUDY_DELETE = _register("study_delete", "a study deleted, with the reason and what it held")
IMAGE_REFILE = _register("image_refile", "an image filed under another woman, side or view, with the reason")
STUDY_REFILE = _register("study_refile", "a study filed under another woman, with the reason")
DEMOGRAPHICS_HOLD = _register("demographics_hold", "a study held: its name or birth date differ from the woman's")
DEMOGRAPHICS_RECONCILE = _register("demographics_reconcile", "a held study reconciled, and how")

# --- ai: predictions, the model registry, training --------------------------------------------------------------
RERUN_INFERENCE = _register("rerun_inference", "studies sent to the model again, and by which version")
MODEL_UPLOAD = _register("model_upload", "an external model submitted for checking, with its manifest")
MODEL_PROMOTE = _register("model_promote", "a version made champion (by hand, by a run, or as the first)")
MODEL_REJECT = _register("model_reject", "a candidate refused by the promotion rule, with the figures")
MODEL_ROLLBACK = _register("model_rollback", "the previous champion restored")
MODEL_REPREDICT = _register("model_repredict", "unread studies predicted again by a version")
MODEL_THRESHOLD = _register("model_threshold", "a version's operating point moved, from and to")
MODEL_SERVABLE = _register("model_servable", "a version whose checkpoint loads again")
MODEL_UNSERVABLE = _register("model_unservable", "a version whose checkpoint cannot be loaded, with the reason")
TRAINING_TRIGGER = _register("training_trigger", "a training run queued, and by what (page, API, schedule)")

# --- reading: reads, locks, policies, outcomes -----------------------------------------------------------------
READ = _register("read", "a GET of a page or endpoint that holds patient data (route and status)")
OPEN_CASE = _register("open_case", "a case opened in the viewer")
REVIEW_SUBMIT = _register("review_submit", "a read submitted: slot, decision, BI-RADS, findings")
REVIEW_CORRECT = _register("review_correct", "a read corrected: a new version of the reader's own read")
CONSENSUS_PROPOSED = _register("consensus_proposed", "a consensus decision proposed by one of a discordant pair")
ARBITRATION_NEEDED = _register("arbitration_needed", "two discordant reads: the case goes to arbitration")
LOCK_ACQUIRE = _register("lock_acquire", "a case locked to its reader, until when")
LOCK_RELEASE = _register("lock_release", "a case lock released, and why (leave, submit)")
LOCK_TIMEOUT = _register("lock_timeout", "a case lock that expired, taken over or swept")
READING_POLICY_SET = _register("reading_policy_set", "a site's new reading policy, with its expected workload")
OUTCOME_RECORD = _register("outcome_record", "an outcome recorded for a breast (result, cancer type, date)")
OUTCOME_IMPORT = _register("outcome_import", "outcomes imported from a CSV file (how many lines)")
NOTE_TEMPLATE_ADD = _register("note_template_add", "a note template added for the readers: name, active")
NOTE_TEMPLATE_CHANGE = _register("note_template_change", "a note template edited or retired: name, active")

# --- exchange: DICOM in and out ----------------------------------------------------------------------------------
DICOMWEB_RETRIEVE = _register("dicomweb_retrieve", "a WADO-RS retrieve: what, in which transfer syntax")
DICOM_QUERY = _register("dicom_query", "a C-FIND: calling AE, level, keys used, matches")
DICOM_RETRIEVE = _register("dicom_retrieve", "a C-MOVE or C-GET of a study: calling AE, destination, instances")
DICOM_QR_REFUSED = _register("dicom_qr_refused", "a query or retrieve refused: the peer has no account")
DICOM_ASSOCIATION_REJECTED = _register("dicom_association_rejected", "an association refused: AE title or host")
DICOM_EXPORT_RESEND = _register("dicom_export_resend", "SR exports queued again by an admin")
DICOM_PEER_ADD = _register("dicom_peer_add", "a DICOM peer added: AE title, host, site, account, enabled")
DICOM_PEER_CHANGE = _register("dicom_peer_change", "a DICOM peer changed: its new values")
DICOM_PEER_DELETE = _register("dicom_peer_delete", "a DICOM peer removed: what it was")
DICOM_DESTINATION_ADD = _register("dicom_destination_add", "a DICOM destination added")
DICOM_DESTINATION_CHANGE = _register("dicom_destination_change", "a DICOM destination changed")
DICOM_DESTINATION_DELETE = _register("dicom_destination_delete", "a DICOM destination removed")
HL7_DESTINATION_ADD = _register("hl7_destination_add", "an HL7 destination added: name, host, port, MSH names")
HL7_DESTINATION_CHANGE = _register("hl7_destination_change", "an HL7 destination changed: its new values")
HL7_DESTINATION_DELETE = _register("hl7_destination_delete", "an HL7 destination removed: what it was")
HL7_RESULT_SENT = _register("hl7_result_sent", "an ORU^R01 acknowledged (AA): destination, control ID, F or C")
HL7_RESULT_FAILED = _register("hl7_result_failed", "an ORU^R01 given up on: destination, control ID, attempts, why")
HL7_EXPORT_RESEND = _register("hl7_export_resend", "HL7 results queued again by an admin")

# --- sites and accounts --------------------------------------------------------------------------------------------
SITE_ADD = _register("site_add", "a screening site added: code and name")
SITE_CHANGE = _register("site_change", "a screening site renamed")
API_TOKEN_ISSUE = _register("api_token_issue", "an API token issued to an account")
API_TOKEN_REVOKE = _register("api_token_revoke", "an API token revoked")

# --- monitoring and research export ------------------------------------------------------------------------------
MONITORING_RUN = _register("monitoring_run", "a monitoring run requested or done, for a model version")
MONITORING_ALERT = _register("monitoring_alert", "a drift or performance alert raised")
MONITORING_ALERT_ACK = _register("monitoring_alert_ack", "an alert acknowledged, with the note")
RESEARCH_PROJECT_CREATE = _register("research_project_create", "a research project created")
RESEARCH_EXPORT_REQUEST = _register("research_export_request", "a research export requested: project, criteria")
RESEARCH_EXPORT_DONE = _register("research_export_done", "a research export built: how many studies and files")
RESEARCH_EXPORT_FAILED = _register("research_export_failed", "a research export that failed, with the reason")
RESEARCH_EXPORT_DOWNLOAD = _register("research_export_download", "a research export downloaded")
