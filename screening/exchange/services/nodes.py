"""Nodes the admin manages: DICOM peers (who may send and query), DICOM destinations (where SRs go) and HL7
destinations (where the results go to a RIS).

Every add, change and deletion is written here, in one transaction with its audit event; the admin calls
these and has no write of its own.
"""

from __future__ import annotations

from django.db import transaction

from screening.audit import actions
from screening.audit.services import record_event
from screening.models import DicomDestination, DicomPeer, Hl7Destination

DicomNode = DicomPeer | DicomDestination | Hl7Destination


def _detail(node: DicomNode) -> dict:
    if isinstance(node, DicomPeer):
        return {
            "ae_title": node.ae_title,
            "host": node.host,
            "enabled": node.enabled,
            "site": node.site,
            "query_user": node.query_user.get_username() if node.query_user else "",
        }
    if isinstance(node, Hl7Destination):
        return {
            "name": node.name,
            "host": node.host,
            "port": node.port,
            "msh": [
                node.sending_application,
                node.sending_facility,
                node.receiving_application,
                node.receiving_facility,
            ],
            "send_identity": node.send_identity,
            "enabled": node.enabled,
        }
    return {"destination": str(node), "enabled": node.enabled}


# (add, change, delete) per kind of node
_ACTIONS = {
    DicomPeer: (actions.DICOM_PEER_ADD, actions.DICOM_PEER_CHANGE, actions.DICOM_PEER_DELETE),
    DicomDestination: (
        actions.DICOM_DESTINATION_ADD,
        actions.DICOM_DESTINATION_CHANGE,
        actions.DICOM_DESTINATION_DELETE,
    ),
    Hl7Destination: (actions.HL7_DESTINATION_ADD, actions.HL7_DESTINATION_CHANGE, actions.HL7_DESTINATION_DELETE),
}


@transaction.atomic
def save_node(node: DicomNode, *, created: bool, user=None, ip_address: str | None = None) -> DicomNode:
    """Add or change a peer or a destination (audited `dicom_peer_add`/`_change`, `dicom_destination_...`)."""
    node.save()
    record_event(
        action=_ACTIONS[type(node)][0 if created else 1],
        user=user,
        obj=node,
        ip_address=ip_address,
        detail=_detail(node),
    )
    return node


@transaction.atomic
def delete_node(node: DicomNode, *, user=None, ip_address: str | None = None) -> None:
    """Remove a peer or a destination; the audit event keeps what it was."""
    record_event(action=_ACTIONS[type(node)][2], user=user, obj=node, ip_address=ip_address, detail=_detail(node))
    node.delete()
