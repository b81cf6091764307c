"""DICOM Storage SCP and Verification SCP: mammograms arrive from modalities and PACS.

Each received instance is written, as sent, to a temporary DICOM file (hashed as it
is written, and moved into the media storage as it is) and goes through `ingest_file`,
the path of uploads: the same validation, dedup, audit, rendition and prediction; the
C-STORE answer goes out as soon as the instance is stored, before anything is decoded, in every
run mode (embedded mode renders and predicts on a background thread, a deployment on its workers).
Every failure status carries an Error Comment saying why, without patient data. A calling AE must be on the
allow-list (AE title and host); any other is refused at association and audited. A bad
instance answers a failure status and leaves nothing behind; the receiver carries on with
the next one.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import ssl
from pathlib import Path

from django.conf import settings
from django.core.files.uploadedfile import TemporaryUploadedFile, UploadedFile
from django.db import close_old_connections, connections
from pydicom import Dataset, dcmread
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import (
    Comprehensive3DSRStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
)
from pynetdicom import AE, _config, evt
from pynetdicom.sop_class import Verification
from pynetdicom.transport import ThreadedAssociationServer

from screening import dispatch
from screening.audit import actions
from screening.audit.services import record_event
from screening.errors import PortalError, StorageFull, UnsupportedMedia
from screening.exchange import qr
from screening.intake.cad_sr import MAMMOGRAPHY_CAD_SR
from screening.intake.services.filing import RESEND_CONFLICT
from screening.intake.services.ingest import ingest_file
from screening.intake.services.ingest_validation import MG_SOP_CLASSES
from screening.models import DEFAULT_SITE, DicomExport, DicomPeer

log = logging.getLogger(__name__)

# What ingest decodes (pydicom + pylibjpeg, see ml/io.py); the order is our preference.
TRANSFER_SYNTAXES = [
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    JPEGLosslessSV1,
    RLELossless,
]
SR_TRANSFER_SYNTAXES = [ExplicitVRLittleEndian, ImplicitVRLittleEndian]

SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
DATASET_DOES_NOT_MATCH_SOP_CLASS = 0xA900
CANNOT_UNDERSTAND = 0xC000
DUPLICATE_SOP_INSTANCE = 0x0111  # PS3.7 C.4: the SOPInstanceUID is held with other content (refused, audited)


# A-ASSOCIATE-RJ: rejected permanent, by the service user, calling AE title not recognised.
_REJECT_CALLING_AE = (0x01, 0x01, 0x03)


def allowed_peers() -> set[tuple[str, str]]:
    """(AE title, IP address) pairs that may associate: PORTAL_DICOM_ALLOWED_AES and the enabled
    DICOM peers of the admin, read at each association so an admin's edit applies to the next one."""
    peers = set(settings.PORTAL_DICOM_ALLOWED_AES)
    peers.update(DicomPeer.objects.filter(enabled=True).values_list("ae_title", "host"))
    return peers


def peer_site(ae_title: str, host: str) -> str:
    """The site of the admin's DICOM peer that sent it; the default site for PORTAL_DICOM_ALLOWED_AES peers."""
    site = DicomPeer.objects.filter(ae_title=ae_title, host=host, enabled=True).values_list("site", flat=True).first()
    return site or DEFAULT_SITE


def failure_status(exc: BaseException) -> int:
    """The C-STORE status for an instance that ingest refused or could not store."""
    if isinstance(exc, UnsupportedMedia):
        return DATASET_DOES_NOT_MATCH_SOP_CLASS
    if isinstance(exc, PortalError) and exc.code == RESEND_CONFLICT:
        return DUPLICATE_SOP_INSTANCE
    if isinstance(exc, StorageFull):
        return OUT_OF_RESOURCES
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return OUT_OF_RESOURCES
    return CANNOT_UNDERSTAND


def answer(status: int, comment: str) -> Dataset:
    """A C-STORE failure status with its Error Comment (LO: at most 64 characters)."""
    ds = Dataset()
    ds.Status = status
    ds.ErrorComment = comment if len(comment) <= 64 else comment[:61] + "..."
    return ds


def _peer(event) -> tuple[str, str]:
    """The calling AE title and IP address (read from the A-ASSOCIATE-RQ: set before negotiation)."""
    requestor = event.assoc.requestor
    return str(requestor.primitive.calling_ae_title).strip(), str(requestor.address)


def handle_requested(event) -> None:
    """EVT_REQUESTED: refuse (A-ASSOCIATE-RJ) and audit a calling AE not on the allow-list."""
    ae_title, host = _peer(event)
    close_old_connections()
    try:
        if (ae_title, host) in allowed_peers():
            return
    except Exception:  # the database is down: refuse, as for an unknown peer
        log.exception("could not read the DICOM peers")
    finally:
        connections.close_all()
    log.warning("refused a DICOM association from AE %r at %s: not on the allow-list", ae_title, host)
    close_old_connections()
    try:  # audited before the answer goes out, so the peer never sees a refusal that is not on record
        record_event(
            action=actions.DICOM_ASSOCIATION_REJECTED, ip_address=host, detail={"calling_ae": ae_title, "host": host}
        )
    except Exception:  # the refusal stands even when the audit database is down
        log.exception("could not audit a refused DICOM association")
    finally:
        connections.close_all()  # the association thread ends here
    event.assoc.acse.send_reject(*_REJECT_CALLING_AE)
    event.assoc.kill()


def handle_echo(event) -> int:
    return SUCCESS


def _dataset_sop_class(fh) -> str | None:
    """The SOP Class UID the dataset itself declares ("" when it has none), read from its header only;
    None when the header cannot be read, which ingest then refuses with its own reason."""
    try:
        return str(dcmread(fh, stop_before_pixels=True, specific_tags=["SOPClassUID"]).get("SOPClassUID", ""))
    except Exception:
        return None
    finally:
        fh.seek(0)


class _HashingWriter:
    """Writes to a file and hashes what it writes: the instance is read once, not once more for its digest."""

    def __init__(self, target):
        self.target, self.digest = target, hashlib.sha256()

    def write(self, data) -> int:
        self.digest.update(data)
        return self.target.write(data)

    def tell(self) -> int:
        return self.target.tell()


class _ReceivedFile(UploadedFile):
    """The DICOM file pynetdicom wrote as the instance arrived (STORE_RECV_CHUNKED_DATASET), as an upload
    that local storage moves into place (pynetdicom's clean-up then finds nothing to delete)."""

    def __init__(self, path: Path):
        super().__init__(path.open("rb"), "c-store.dcm", "application/dicom", path.stat().st_size, None)
        self.path = path
        digest = hashlib.sha256()
        while chunk := self.file.read(1 << 20):
            digest.update(chunk)
        self.sha256 = digest.hexdigest()
        self.file.seek(0)

    def temporary_file_path(self) -> str:
        return str(self.path)


def _received_file(event) -> UploadedFile:
    """The instance as a DICOM file (preamble, file meta, the dataset as sent) in a named temporary
    file that local storage moves into place, with its SHA-256. The receiver has pynetdicom write it
    while it arrives (`start`); an event without that file (a handler called directly) has it written here."""
    try:
        return _ReceivedFile(Path(event.dataset_path))
    except (AttributeError, TypeError):
        pass
    tmp = TemporaryUploadedFile("c-store.dcm", "application/dicom", 0, None)
    try:
        writer = _HashingWriter(tmp)
        writer.write(b"\x00" * 128 + b"DICM")
        write_file_meta_info(writer, event.file_meta, enforce_standard=True)
        writer.write(event.request.DataSet.getbuffer())
        tmp.flush()
        tmp.size = tmp.tell()
        tmp.sha256 = writer.digest.hexdigest()
        tmp.seek(0)
    except BaseException:
        tmp.close()
        raise
    return tmp


def _own_sr(event) -> Dataset | int:
    """An SR C-STORE: one of the portal's own SRs (a PACS forwarding a study it holds) is held already;
    another SR is refused, with the reason."""
    uid = str(event.request.AffectedSOPInstanceUID)
    close_old_connections()
    try:
        held = DicomExport.objects.filter(sop_instance_uid=uid).exclude(sr_file="").exists()
    finally:
        connections.close_all()
    if held:
        return SUCCESS
    ae_title, host = _peer(event)
    log.warning("refused an SR from AE %r at %s: not one of the portal's own SRs", ae_title, host)
    return answer(DATASET_DOES_NOT_MATCH_SOP_CLASS, "the portal stores mammograms and its own SRs only")


def handle_store(event) -> Dataset | int:
    """EVT_C_STORE: the instance, as sent, through ingest; the answer is a C-STORE status (a failure
    with its Error Comment)."""
    if str(event.request.AffectedSOPClassUID) == Comprehensive3DSRStorage:
        return _own_sr(event)
    ae_title, host = _peer(event)
    close_old_connections()
    try:
        with _received_file(event) as tmp:
            declared, requested = _dataset_sop_class(tmp), str(event.request.AffectedSOPClassUID)
            if declared is not None and declared != requested:
                log.warning(
                    "refused a DICOM instance from AE %r at %s with status 0x%04X: its SOP class is not the one "
                    "of its C-STORE request (sop_class_mismatch)",
                    ae_title,
                    host,
                    DATASET_DOES_NOT_MATCH_SOP_CLASS,
                )
                return answer(DATASET_DOES_NOT_MATCH_SOP_CLASS, "SOP class differs from the C-STORE request's")
            with dispatch.off_the_callers_thread():  # embedded mode: render and predict after the answer
                result = ingest_file(
                    file=tmp,
                    filename="c-store.dcm",
                    user=None,
                    ip_address=host,
                    via="dicom",
                    site=peer_site(ae_title, host),
                )
    except PortalError as exc:
        status = failure_status(exc)
        # The code and message only: ingest's messages never echo header values.
        log.warning(
            "refused a DICOM instance from AE %r at %s with status 0x%04X: %s (%s)",
            ae_title,
            host,
            status,
            exc.message,
            exc.code,
        )
        comment = "SOPInstanceUID already held with other content" if exc.code == RESEND_CONFLICT else exc.message
        return answer(status, comment)
    except OSError as exc:
        status = failure_status(exc)
        log.error(
            "could not store a DICOM instance from AE %r at %s: status 0x%04X (%s)",
            ae_title,
            host,
            status,
            errno.errorcode.get(exc.errno or 0, type(exc).__name__),
        )
        return answer(status, "storage is full" if status == OUT_OF_RESOURCES else "the instance could not be stored")
    except Exception as exc:  # never crash the receiver; the type only, its text may quote the data
        log.error("could not ingest a DICOM instance from AE %r at %s: %s", ae_title, host, type(exc).__name__)
        return answer(CANNOT_UNDERSTAND, "the instance could not be ingested")
    finally:
        close_old_connections()
    log.info(
        "received DICOM %s %s (%s) from AE %r at %s",
        "image" if result.image is not None else "CAD SR",
        result.image.pk if result.image is not None else result.cad_report.pk,
        "new" if result.created else "already held",
        ae_title,
        host,
    )
    return SUCCESS


def handle_closed(event) -> None:
    """EVT_RELEASED / EVT_ABORTED: the association thread ends, so does its database connection."""
    connections.close_all()


# The largest P-DATA PDU the receiver accepts. pynetdicom's default (16 KB) makes a 27 MB mammogram 1,700
# PDUs, each through its state machine in Python: 1 MiB ones cut the receive time of an instance by about
# a third (bench/dicom_receive.py). Senders may send smaller ones.
MAX_PDU = 1 << 20


def make_ae(ae_title: str) -> AE:
    ae = AE(ae_title=ae_title)
    ae.require_called_aet = True
    ae.maximum_pdu_size = MAX_PDU
    # Storage both ways: a peer stores (C-STORE), or takes the SCP role for a C-GET (role selection).
    for sop_class in MG_SOP_CLASSES:
        ae.add_supported_context(sop_class, TRANSFER_SYNTAXES, scu_role=True, scp_role=True)
    ae.add_supported_context(Comprehensive3DSRStorage, SR_TRANSFER_SYNTAXES, scu_role=True, scp_role=True)
    # A vendor's Mammography CAD SR: kept with its study, its marks a layer of the viewer (ingest_file).
    ae.add_supported_context(MAMMOGRAPHY_CAD_SR, SR_TRANSFER_SYNTAXES, scu_role=True, scp_role=True)
    ae.add_supported_context(Verification, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    qr.add_contexts(ae)
    return ae


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certfile=cert, keyfile=key)
    return context


def start(
    *, port: int, ae_title: str, host: str = "0.0.0.0", ssl_context: ssl.SSLContext | None = None, block: bool = True
) -> ThreadedAssociationServer | None:
    """Serve until stopped (block=True), or return the running server (block=False; call .shutdown()).

    pynetdicom writes each received instance to a temporary DICOM file as its fragments arrive, instead of
    gathering it in memory for the handler to write out again (`_received_file` moves that file into place).
    """
    _config.STORE_RECV_CHUNKED_DATASET = True
    handlers = [
        (evt.EVT_REQUESTED, handle_requested),
        (evt.EVT_C_ECHO, handle_echo),
        (evt.EVT_C_STORE, handle_store),
        *qr.HANDLERS,
        (evt.EVT_RELEASED, handle_closed),
        (evt.EVT_ABORTED, handle_closed),
    ]
    return make_ae(ae_title).start_server((host, port), block=block, ssl_context=ssl_context, evt_handlers=handlers)
