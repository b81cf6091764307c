"""Query/Retrieve SCP of the DICOM receiver: C-FIND (Patient Root and Study Root, patient, study, series
and image level), C-MOVE to a registered destination and C-GET, for the images and the portal's SRs.

A calling AE is on the allow-list already (receiver.handle_requested). It may query and retrieve only
when its DICOM peer (admin) names a portal account, `query_user`: it then finds, sees and retrieves
what that account sees over DICOMweb (qr_model: the same selectors, identity or its pseudonyms; a
pseudonymised copy declares its de-identification). Every query and retrieve is audited before
anything leaves. A C-MOVE goes only to an enabled DicomDestination or PORTAL_DICOM_DESTINATIONS entry,
by AE title. A stored original in a compressed transfer syntax that the receiving side did not accept
is sent decompressed (explicit VR little endian). Every failure answers a status with an Error Comment
(pynetdicom sends 0xA801 "Move destination unknown" without one).
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import close_old_connections, connections
from pydicom import Dataset, dcmread
from pydicom.uid import (
    Comprehensive3DSRStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
)
from pynetdicom import build_context, evt
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from screening.accounts.roles import can_see_identity
from screening.audit import actions
from screening.audit.services import record_event
from screening.exchange import deid
from screening.exchange.qr_model import (
    IDENTIFIER_DOES_NOT_MATCH,
    UNABLE_TO_PROCESS,
    QueryError,
    entities,
    keys_of,
    response,
)
from screening.exchange.web.common import Instance, Report, file_name, sop_class
from screening.intake.selectors import pseudonym
from screening.intake.services.ingest_validation import MG_SOP_CLASSES
from screening.models import DicomDestination, DicomPeer, Study

log = logging.getLogger(__name__)

PATIENT_ROOT = {
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelMove,
    PatientRootQueryRetrieveInformationModelGet,
}
QR_SOP_CLASSES = [
    *sorted(PATIENT_ROOT),
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelGet,
]
# What the portal serves: its mammograms and its SRs.
SERVED_SOP_CLASSES = [*MG_SOP_CLASSES, Comprehensive3DSRStorage]
COMPRESSED = [JPEG2000Lossless, JPEGLSLossless, JPEGLosslessSV1, RLELossless]
UNCOMPRESSED = [ExplicitVRLittleEndian, ImplicitVRLittleEndian]

PENDING, CANCEL = 0xFF00, 0xFE00
NOT_AUTHORISED = 0x0124
UNIQUE_KEYS = {
    "PATIENT": "PatientID",
    "STUDY": "StudyInstanceUID",
    "SERIES": "SeriesInstanceUID",
    "IMAGE": "SOPInstanceUID",
}


def _status(code: int, comment: str) -> Dataset:
    status = Dataset()
    status.Status = code
    status.ErrorComment = comment[:64]
    return status


def _peer(event) -> tuple[str, str]:
    requestor = event.assoc.requestor
    return str(requestor.primitive.calling_ae_title).strip(), str(requestor.address)


def account(ae_title: str, host: str):
    """The portal account a peer queries and retrieves as; None: it may only store."""
    peer = (
        DicomPeer.objects.filter(ae_title=ae_title, host=host, enabled=True, query_user__is_active=True)
        .select_related("query_user")
        .first()
    )
    return peer.query_user if peer is not None else None


def _audit(action: str, *, user, host: str, study: Study | None = None, **detail) -> None:
    record_event(action=action, user=user, study=study, obj=study, ip_address=host, detail=detail)


def _refused(service: str, ae_title: str, host: str, user, comment: str) -> None:
    """Logged by AE and reason (never the identifier: it may hold patient data) and audited."""
    log.warning("refused a %s from AE %r at %s: %s", service, ae_title, host, comment)
    _audit(actions.DICOM_QR_REFUSED, user=user, host=host, service=service, calling_ae=ae_title, reason=comment)


def _level(event) -> tuple[str, dict, bool]:
    identifier = event.identifier
    level = str(identifier.get("QueryRetrieveLevel", "") or "").strip().upper()
    return level, keys_of(identifier), str(event.request.AffectedSOPClassUID) in PATIENT_ROOT


# --- C-FIND ---------------------------------------------------------------------------------------------


def handle_find(event):
    """EVT_C_FIND: the matches as the peer's account sees them, audited before the first leaves."""
    ae_title, host = _peer(event)
    close_old_connections()
    user = None
    try:
        user = account(ae_title, host)
        if user is None:
            comment = "this AE may store only: it has no Query/Retrieve account"
            _refused("C-FIND", ae_title, host, None, comment)
            answers, failure = [], _status(NOT_AUTHORISED, comment)
        else:
            level, keys, patient_root = _level(event)
            found = list(entities(user, level, keys, patient_root=patient_root))
            answers = [response(entity, event.identifier, level, event.assoc.ae.ae_title) for entity in found]
            studies = sorted({study.pk for entity in found for study in entity.studies})
            _audit(
                actions.DICOM_QUERY,
                user=user,
                host=host,
                calling_ae=ae_title,
                level=level,
                model="patient" if patient_root else "study",
                keys=sorted(k for k, v in keys.items() if v not in (None, "")),
                matches=len(answers),
                studies=studies[:1000],
            )
            failure = None
    except QueryError as exc:
        _refused("C-FIND", ae_title, host, user, exc.comment)
        answers, failure = [], _status(exc.status, exc.comment)
    except Exception as exc:  # the type only: its text may quote the identifier
        log.error("could not answer a C-FIND from AE %r at %s: %s", ae_title, host, type(exc).__name__)
        answers, failure = [], _status(UNABLE_TO_PROCESS, "the query could not be processed")
    finally:
        connections.close_all()
    if failure is not None:
        yield failure, None
        return
    for answer in answers:
        if event.is_cancelled:
            yield CANCEL, None
            return
        yield PENDING, answer


# --- C-MOVE and C-GET -------------------------------------------------------------------------------------


def _targets(event, user) -> list[tuple[Study, Instance]]:
    """The instances a C-MOVE or C-GET asks for: by the unique keys of its level, never by a wildcard."""
    level, keys, patient_root = _level(event)
    unique = UNIQUE_KEYS.get(level)
    if unique is None:
        raise QueryError(IDENTIFIER_DOES_NOT_MATCH, f"QueryRetrieveLevel {level or '(none)'} is not supported")
    given = {k: keys[k] for k in UNIQUE_KEYS.values() if keys.get(k) not in (None, "")}
    if unique not in given:
        raise QueryError(IDENTIFIER_DOES_NOT_MATCH, f"a retrieve at {level} level needs the {unique}")
    if any(c in str(value) for value in given.values() for c in "*?"):
        raise QueryError(IDENTIFIER_DOES_NOT_MATCH, "a retrieve takes unique keys, not wildcards")
    found: dict[tuple[int, str], tuple[Study, Instance]] = {}
    for entity in entities(user, level, given, patient_root=patient_root):
        for study, instance in entity.instances:
            found.setdefault((study.pk, instance.sop_uid), (study, instance))
    if len(found) > 65535:
        raise QueryError(UNABLE_TO_PROCESS, "over 65535 instances: retrieve fewer at a time")
    return list(found.values())


def _audit_retrieve(service: str, targets, *, user, host: str, ae_title: str, destination: str = "") -> None:
    by_study: dict[int, tuple[Study, list[Instance]]] = {}
    for study, instance in targets:
        by_study.setdefault(study.pk, (study, []))[1].append(instance)
    for study, opened in by_study.values():
        detail = {
            "service": service,
            "calling_ae": ae_title,
            "images": [i.pk for i in opened if not isinstance(i, Report)],
            "srs": [i.sop_uid for i in opened if isinstance(i, Report)],
        }
        if destination:
            detail["destination"] = destination
        _audit(actions.DICOM_RETRIEVE, user=user, host=host, study=study, **detail)


def _fit(ds: Dataset, assoc) -> Dataset:
    """The dataset in a transfer syntax the receiving side accepted: as stored if it accepted that one,
    decompressed to explicit VR little endian if it accepted only uncompressed ones."""
    stored = ds.file_meta.TransferSyntaxUID
    accepted = [
        cx.transfer_syntax[0]
        for cx in (assoc.accepted_contexts if assoc is not None else [])
        if cx.abstract_syntax == ds.SOPClassUID and cx.as_scu
    ]
    if stored.is_compressed and stored not in accepted and any(not ts.is_compressed for ts in accepted):
        ds.decompress(generate_instance_uid=False)  # lossless: the same instance
    return ds


def _outgoing(study: Study, instance: Instance, user, assoc) -> Dataset:
    """The stored file as the account may see it; one that cannot be read gives a stand-in that fails to
    send, so the peer counts it failed and names it in the Failed SOP Instance UID List."""
    try:
        with default_storage.open(file_name(instance), "rb") as fh:
            ds = dcmread(fh, force=True)
        if not can_see_identity(user):
            deid.pseudonymise(ds, pseudonym(study.patient.patient_id, user))
        return _fit(ds, assoc)
    except Exception as exc:
        log.error("could not read or convert a stored instance for a retrieve: %s", type(exc).__name__)
        stand_in = Dataset()
        stand_in.SOPClassUID = Comprehensive3DSRStorage if isinstance(instance, Report) else sop_class(instance)
        stand_in.SOPInstanceUID = instance.sop_uid
        return stand_in


def _prepare(service: str, event, ae_title: str, host: str, destination: str = ""):
    """(account, targets, failure status): the targets audited, or the failure logged and audited."""
    close_old_connections()
    user = None
    try:
        user = account(ae_title, host)
        if user is None:
            comment = "this AE may store only: it has no Query/Retrieve account"
            _refused(service, ae_title, host, None, comment)
            return None, [], _status(NOT_AUTHORISED, comment)
        targets = _targets(event, user)
        _audit_retrieve(service, targets, user=user, host=host, ae_title=ae_title, destination=destination)
        return user, targets, None
    except QueryError as exc:
        _refused(service, ae_title, host, user, exc.comment)
        return user, [], _status(exc.status, exc.comment)
    except Exception as exc:
        log.error("could not answer a %s from AE %r at %s: %s", service, ae_title, host, type(exc).__name__)
        return user, [], _status(UNABLE_TO_PROCESS, "the retrieve could not be processed")
    finally:
        connections.close_all()


def _send(targets, user, event, assoc_of):
    for study, instance in targets:
        if event.is_cancelled:
            yield CANCEL, None
            return
        yield PENDING, _outgoing(study, instance, user, assoc_of())


def handle_get(event):
    """EVT_C_GET: the instances sent back over the peer's own association (C-STORE sub-operations)."""
    ae_title, host = _peer(event)
    user, targets, failure = _prepare("C-GET", event, ae_title, host)
    if failure is not None:
        yield 1
        yield failure, None
        return
    yield len(targets)
    yield from _send(targets, user, event, lambda: event.assoc)


def destination_address(ae_title: str) -> tuple[str, int] | None:
    """Where a C-MOVE may send: an enabled DicomDestination with this AE title, else the setting's."""
    found = DicomDestination.objects.filter(ae_title=ae_title, enabled=True).values_list("host", "port").first()
    if found is not None:
        return found[0], int(found[1])
    for ae, host, port in settings.PORTAL_DICOM_DESTINATIONS:
        if ae == ae_title:
            return host, int(port)
    return None


def _move_contexts() -> list:
    """What a move proposes for each served SOP class: each compressed syntax as stored, and uncompressed."""
    contexts = []
    for served in SERVED_SOP_CLASSES:
        if served != Comprehensive3DSRStorage:
            contexts += [build_context(served, ts) for ts in COMPRESSED]
        contexts.append(build_context(served, UNCOMPRESSED))
    return contexts


def handle_move(event):
    """EVT_C_MOVE: the instances sent to a registered destination over a new association."""
    ae_title, host = _peer(event)
    destination = str(event.move_destination or "").strip()
    close_old_connections()
    try:
        address = destination_address(destination)
        if address is None:
            _refused("C-MOVE", ae_title, host, None, f"unknown move destination {destination!r}")
    finally:
        connections.close_all()
    if address is None:
        yield None, None  # 0xA801: Move destination unknown
        return
    user, targets, failure = _prepare("C-MOVE", event, ae_title, host, destination)
    if failure is not None:
        # pynetdicom associates with the destination before it reads a failure: Verification only, then released.
        yield address[0], address[1], {"contexts": [build_context(Verification)]}
        yield 1
        yield failure, None
        return
    opened = []
    handlers = [(evt.EVT_ACCEPTED, lambda accepted: opened.append(accepted.assoc))]
    yield address[0], address[1], {"contexts": _move_contexts(), "evt_handlers": handlers}
    yield len(targets)
    yield from _send(targets, user, event, lambda: opened[0] if opened else None)


HANDLERS = [(evt.EVT_C_FIND, handle_find), (evt.EVT_C_GET, handle_get), (evt.EVT_C_MOVE, handle_move)]


def add_contexts(ae) -> None:
    """The Query/Retrieve SCP's contexts. (The storage contexts accept the SCP role a C-GET requestor
    proposes: receiver.make_ae.)"""
    for information_model in QR_SOP_CLASSES:
        ae.add_supported_context(information_model, UNCOMPRESSED)
