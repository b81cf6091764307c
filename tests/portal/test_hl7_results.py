"""Final decisions to a RIS as HL7 v2.5.1 ORU^R01 over MLLP (issue 24), against a real local MLLP listener:
the framing, the segments, the acknowledgement (AA, AE, AR, none), retries, corrections, pseudonyms, and
nothing for a preliminary or blinded read."""

from __future__ import annotations

import io

import pytest
from django.urls import reverse
from pydicom.uid import generate_uid

from screening.audit import actions
from screening.exchange import hl7
from screening.exchange.services import hl7_export
from screening.intake.services.ingest import ingest_file
from screening.models import AuditEvent, Hl7Destination, Hl7Export, Image, Patient, Study
from screening.reading.services.findings import FindingInput, ReportedFindingInput
from screening.reading.services.reviews import review_submit
from tests.dicom_factory import mg_dataset, to_bytes
from tests.eager import tasks_in_process
from tests.portal.mllp_listener import END, START, Ris

pytestmark = pytest.mark.django_db


@pytest.fixture
def ris():
    listener = Ris()
    yield listener
    listener.stop()


@pytest.fixture
def eager():
    with tasks_in_process("screening.tasks.send_hl7_result") as runs:
        yield runs


def destination(ris: Ris, **fields) -> Hl7Destination:
    defaults = {
        "name": "RIS",
        "host": "127.0.0.1",
        "port": ris.port,
        "sending_application": "SCREENING",
        "sending_facility": "UNIT1",
        "receiving_application": "RIS",
        "receiving_facility": "HOSPITAL",
    }
    return Hl7Destination.objects.create(**{**defaults, **fields})


def a_study(patient_name: str = "") -> Study:
    study_uid = generate_uid()
    for laterality in ("L", "R"):
        ds = mg_dataset(laterality=laterality, study_uid=study_uid)
        if patient_name:
            ds.SpecificCharacterSet, ds.PatientName = "ISO_IR 192", patient_name
        ingest_file(file=io.BytesIO(to_bytes(ds)), filename="x.dcm")
    return Study.objects.get(study_uid=study_uid)


def decide(study: Study, radiologist, **kwargs):
    left = Image.objects.get(study=study, laterality="L")
    arguments = {
        "breasts": {"R": ("normal", 1), "L": ("abnormal", 4)},
        "density": "C",
        "note": "Spiculated mass, left breast.\nRecall for spot views.",
        "findings": [FindingInput(left.pk, "mass", 10, 10, 20, 20)],
        "reported": [
            ReportedFindingInput(
                type="mass", marks=(0,), descriptors={"shape": "irregular", "margin": "spiculated"}, clock=2
            )
        ],
        **kwargs,
    }
    return review_submit(study=study, radiologist=radiologist, **arguments)


def segments(message: bytes) -> list[list[str]]:
    return [segment.split("|") for segment in message.decode("utf-8").split("\r") if segment]


def unescape(value: str) -> str:
    """HL7 escapes back to text (the listener's own reading, independent of screening.exchange.hl7)."""
    out, i = [], 0
    names = {"F": "|", "S": "^", "T": "&", "R": "~", "E": "\\"}
    while i < len(value):
        if value[i] == "\\":
            end = value.index("\\", i + 1)
            token = value[i + 1 : end]
            out.append(names[token] if token in names else chr(int(token[1:], 16)))
            i = end + 1
        else:
            out.append(value[i])
            i += 1
    return "".join(out)


def obx(message: bytes) -> list[list[str]]:
    return [s for s in segments(message) if s[0] == "OBX"]


# --- the message and its framing --------------------------------------------------------------------------


def test_a_final_decision_reaches_the_ris_framed_as_an_oru_r01_and_is_marked_sent(
    ris, eager, radiologist, django_capture_on_commit_callbacks
):
    radiologist.first_name, radiologist.last_name = "Ada", "Reader"
    radiologist.save()
    dest = destination(ris)
    study = a_study()
    with django_capture_on_commit_callbacks(execute=True):
        review = decide(study, radiologist)

    [raw] = ris.received
    assert raw[:1] == START and raw.endswith(END) and raw.count(b"\x1c") == 1 and raw.count(b"\x0b") == 1
    [message] = ris.messages()
    parsed = segments(message)
    assert [s[0] for s in parsed[:4]] == ["MSH", "PID", "ORC", "OBR"] and {s[0] for s in parsed[4:]} == {"OBX"}
    msh, pid, orc, obr = parsed[:4]
    assert msh[1] == "^~\\&" and msh[2:6] == ["SCREENING", "UNIT1", "RIS", "HOSPITAL"]
    assert msh[8] == "ORU^R01^ORU_R01" and msh[10] == "P" and msh[11] == "2.5.1" and msh[17] == "UNICODE UTF-8"
    export = Hl7Export.objects.get(review=review)
    assert msh[9] == export.control_id
    assert pid[3] == "PAT-0001^^^^MR" and pid[5] == "Test^Patient" and pid[7] == "19600102" and pid[8] == "F"
    assert orc[1] == "RE" and orc[3] == "ACC1"
    assert obr[3] == "ACC1" and obr[18] == "ACC1" and obr[4] == "24623002^Screening mammography^SCT"
    assert obr[7] == "20260301" and obr[24] == "MG" and obr[25] == "F"
    assert obr[32] == "rad&Reader&Ada"
    lines = {(s[3].split("^")[2], s[3].split("^")[0], s[4]): s[5] for s in obx(message)}
    assert all(s[11] == "F" for s in obx(message))
    assert lines[("DCM", "111005", "")] == "397144001^Suspicious^SCT^4^BI-RADS 4^L"  # the exam's BI-RADS
    assert lines[("DCM", "121402", "")] == "263654008^Abnormal^SCT^RECALL^Recall^L"  # recall
    assert lines[("DCM", "111006", "")] == "129718006^Heterogeneously dense^SCT^C^ACR C^L"
    assert lines[("SCT", "363698007", "1")] == "73056007^Right breast^SCT"
    assert lines[("DCM", "111005", "1")] == "397140005^Negative^SCT^1^BI-RADS 1^L"
    assert lines[("DCM", "121402", "1")] == "17621005^Normal^SCT^NORECALL^No recall^L"
    assert lines[("SCT", "363698007", "2")] == "80248007^Left breast^SCT"
    assert lines[("DCM", "121402", "2")] == "263654008^Abnormal^SCT^RECALL^Recall^L"
    assert lines[("SCT", "363698007", "3")] == "80248007^Left breast^SCT"  # finding 1's breast
    words = [s[5] for s in obx(message) if s[2] == "TX" and s[4] == "3"]
    assert words == ["Finding 1: Mass: irregular, spiculated; left breast, 2 o'clock"]
    assert lines[("DCM", "121106", "")] == "Spiculated mass, left breast.~Recall for spot views."
    assert lines[("DCM", "110180", "")] == study.study_uid
    assert [int(s[1]) for s in obx(message)] == list(range(1, len(obx(message)) + 1))

    export.refresh_from_db()
    assert (export.status, export.ack_code, export.attempts, export.result_status) == ("sent", "AA", 1, "F")
    assert export.destination == dest
    event = AuditEvent.objects.get(action=actions.HL7_RESULT_SENT)
    assert event.study_id == study.pk and event.detail["control_id"] == export.control_id
    assert event.detail["result_status"] == "F"


def test_a_correction_goes_as_a_corrected_result_with_status_c(
    ris, eager, radiologist, django_capture_on_commit_callbacks
):
    destination(ris)
    study = a_study()
    with django_capture_on_commit_callbacks(execute=True):
        first = decide(study, radiologist)
    with django_capture_on_commit_callbacks(execute=True):
        correction = decide(
            study, radiologist, breasts={"R": ("normal", 1), "L": ("normal", 2)}, findings=[], reported=[]
        )
    statuses = dict(Hl7Export.objects.values_list("review_id", "result_status"))
    assert statuses == {first.pk: "F", correction.pk: "C"}
    original, corrected = ris.messages()
    assert segments(original)[3][25] == "F"
    obr = segments(corrected)[3]
    assert obr[25] == "C" and all(s[11] == "C" for s in obx(corrected))
    assert segments(corrected)[0][9] != segments(original)[0][9]  # a message of its own
    assert "397141009^Benign^SCT^2^BI-RADS 2^L" in corrected.decode()


def test_no_message_goes_out_for_a_preliminary_or_blinded_read_only_for_the_final_one(
    ris, eager, radiologist, second_radiologist, arbitrator, double_reading, django_capture_on_commit_callbacks
):
    """Double reading: the first read and a discordant second read are not final (the other readers are
    blinded to them); the arbitration is, and it alone reaches the RIS."""
    destination(ris)
    study = a_study()
    with django_capture_on_commit_callbacks(execute=True):
        first = decide(study, radiologist)
    with django_capture_on_commit_callbacks(execute=True):
        second = decide(
            study, second_radiologist, breasts={"R": ("normal", 1), "L": ("normal", 1)}, findings=[], reported=[]
        )
    assert not first.is_final and not second.is_final
    assert ris.received == [] and not Hl7Export.objects.exists()
    with django_capture_on_commit_callbacks(execute=True):
        final = decide(study, arbitrator)
    assert final.is_final
    assert list(Hl7Export.objects.values_list("review_id", "result_status", "status")) == [(final.pk, "F", "sent")]
    assert len(ris.messages()) == 1


def test_a_disabled_destination_gets_nothing(ris, eager, radiologist, django_capture_on_commit_callbacks):
    destination(ris, enabled=False)
    with django_capture_on_commit_callbacks(execute=True):
        decide(a_study(), radiologist)
    assert ris.received == [] and not Hl7Export.objects.exists()


# --- acknowledgements, retries and failures --------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ("AE", "AE: Unknown order; Unknown order"),
        ("AR", "AR: Unknown order; Unknown order"),
        ("silent", "no acknowledgement within 1 s"),
        ("close", "closed the connection after no MLLP block"),
        ("garbage", "closed the connection after no MLLP block"),
        ("framed-garbage", "not an HL7 message"),
        ("other", "names another message"),
        ("trickle", "no acknowledgement within 1 s"),  # the wait is one deadline, not one per byte
        ("flood", "without an MLLP block"),
    ],
)
def test_a_send_the_ris_does_not_acknowledge_stays_pending_then_fails_audited(
    settings, radiologist, answer, reason, django_capture_on_commit_callbacks
):
    settings.PORTAL_HL7_ACK_TIMEOUT = 1
    settings.PORTAL_DICOM_EXPORT_MAX_ATTEMPTS = 2
    ris = Ris(answer)
    try:
        destination(ris)
        with django_capture_on_commit_callbacks(execute=False):  # sent by hand below, not by the task
            review = decide(a_study(), radiologist)
        export = Hl7Export.objects.get(review=review)
        with pytest.raises(hl7_export.TryAgain):
            hl7_export.send_result(export.pk)
        export.refresh_from_db()
        assert export.status == "pending" and export.attempts == 1 and reason in export.error
        assert export.ack_code == (answer if answer in ("AE", "AR") else "")
        assert hl7_export.send_result(export.pk) == "failed"
        export.refresh_from_db()
        assert (
            export.status == "failed" and export.error.startswith("gave up after 2 attempts") and reason in export.error
        )
        assert hl7_export.send_result(export.pk) == "failed"  # a failed export is left alone
        assert len(ris.received) == 2
        [event] = AuditEvent.objects.filter(action=actions.HL7_RESULT_FAILED)
        assert event.detail["attempts"] == 2 and "Test" not in str(event.detail)
        control_ids = {segments(m)[0][9] for m in ris.messages()}
        assert control_ids <= {export.control_id}  # every attempt is the same message
    finally:
        ris.stop()


def test_nothing_listening_is_a_retry_and_an_admins_send_again_starts_over(
    settings, radiologist, admin_user, django_capture_on_commit_callbacks
):
    settings.PORTAL_DICOM_EXPORT_MAX_ATTEMPTS = 1
    ris = Ris()
    port = ris.port
    ris.stop()  # nothing listens on that port any more
    Hl7Destination.objects.create(name="RIS", host="127.0.0.1", port=port)
    with django_capture_on_commit_callbacks(execute=False):
        review = decide(a_study(), radiologist)
    export = Hl7Export.objects.get(review=review)
    assert hl7_export.send_result(export.pk) == "failed"
    export.refresh_from_db()
    assert "could not connect" in export.error
    with django_capture_on_commit_callbacks(execute=False) as queued:
        assert hl7_export.send_again(Hl7Export.objects.all(), user=admin_user) == 1
    assert len(queued) == 1
    export.refresh_from_db()
    assert (export.status, export.attempts, export.error) == ("pending", 0, "")
    assert AuditEvent.objects.filter(action=actions.HL7_EXPORT_RESEND, user=admin_user).count() == 1


# --- what the message says, whatever the data --------------------------------------------------------------


def test_a_huge_note_special_characters_and_a_non_ascii_name_arrive_intact(
    ris, eager, radiologist, django_capture_on_commit_callbacks
):
    destination(ris)
    study = a_study("Øster-Müller^Zoë Ångström")  # a UTF-8 header (ISO_IR 192)
    assert Patient.objects.get(studies=study).name == "Øster-Müller Zoë Ångström"
    Study.objects.filter(pk=study.pk).update(accession_number="A|1^2&3~4\\5")
    tricky = "pipes | carets ^ amps & tildes ~ backslash \\ and the MLLP bytes \x0b \x1c end; é 漢字"
    note = "\n".join([tricky] + [f"line {i}: " + "x" * 200 for i in range(2000)])  # about 420 kB
    with django_capture_on_commit_callbacks(execute=True):
        decide(study, radiologist, note=note)
    [raw] = ris.received
    assert raw.count(b"\x1c") == 1 and raw.count(b"\x0b") == 1 and len(raw) > 400_000  # framing never broken
    [message] = ris.messages()
    parsed = segments(message)
    pid, obr = parsed[1], parsed[3]
    assert unescape(pid[5].split("^")[0]) == "Øster-Müller" and unescape(pid[5].split("^")[1]) == "Zoë Ångström"
    assert unescape(obr[3]) == "A|1^2&3~4\\5"
    [comment] = [s for s in obx(message) if s[3].startswith("121106^")]
    assert [unescape(line) for line in comment[5].split("~")] == note.split("\n")
    assert Hl7Export.objects.get().status == "sent"


def test_a_pseudonymising_destination_gets_no_identity(ris, eager, radiologist, django_capture_on_commit_callbacks):
    dest = destination(ris, send_identity=False)
    study = a_study()
    with django_capture_on_commit_callbacks(execute=True):
        decide(study, radiologist)
    [message] = ris.messages()
    pid = segments(message)[1]
    expected = hl7_export.pseudonym(dest, "PAT-0001")
    assert pid[3] == f"{expected}^^^^ANON" and pid[5] == "^^^^^^S" and pid[7] == ""
    text = message.decode()
    assert "PAT-0001" not in text and "Test" not in text and "19600102" not in text
    other = Hl7Destination.objects.create(name="Other", host="127.0.0.1", port=1, send_identity=False)
    assert hl7_export.pseudonym(other, "PAT-0001") != expected  # one destination cannot link another's


def test_escape_and_ack_parsing():
    assert hl7.escape("a|b^c&d~e\\f\rg\x1ch") == "a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\f\\X0D\\g\\X1C\\h"
    assert hl7.text_lines("one\r\ntwo\rthree\nfour") == ["one", "two", "three", "four"]
    assert hl7.text_lines("y" * (hl7.TX_MAX + 5)) == ["y" * hl7.TX_MAX, "yyyyy"]
    ack = hl7.parse_ack(b"MSH|^~\\&|RIS||||||ACK|1|P|2.5.1\rMSA|AE|abc|bad^thing\rERR||||E||||no order\r")
    assert (ack.code, ack.control_id, ack.text, ack.accepted) == ("AE", "abc", "bad thing; no order", False)
    assert hl7.parse_ack(b"MSH#^~\\&#RIS\nMSA#CA#x\n").accepted  # another field separator, LF endings
    for garbage in (b"", b"\x00\xff", b"MSH|^~\\&|X\rPID|1\r", b"MSH|^~\\&|X\rMSA|OK|1\r"):
        with pytest.raises(hl7.NotAnAck):
            hl7.parse_ack(garbage)


# --- where it shows: the case and the admin ----------------------------------------------------------------


def test_the_case_shows_what_went_to_the_ris_and_an_admin_registers_a_destination_audited(
    ris, eager, radiologist, admin_user, client, django_capture_on_commit_callbacks
):
    client.force_login(admin_user)
    form = {
        "name": "Hospital RIS",
        "host": "127.0.0.1",
        "port": str(ris.port),
        "sending_application": "SCREENING",
        "sending_facility": "UNIT1",
        "receiving_application": "RIS",
        "receiving_facility": "HOSPITAL",
        "send_identity": "on",
        "enabled": "on",
    }
    refused = client.post(reverse("admin:screening_hl7destination_add"), {**form, "receiving_application": "R|S"})
    assert refused.status_code == 200 and not Hl7Destination.objects.exists()  # an HL7 delimiter in an MSH name
    assert client.post(reverse("admin:screening_hl7destination_add"), form).status_code == 302
    event = AuditEvent.objects.get(action=actions.HL7_DESTINATION_ADD)
    assert event.user == admin_user and event.detail["port"] == ris.port
    study = a_study()
    with django_capture_on_commit_callbacks(execute=True):
        decide(study, radiologist)
    listing = client.get(reverse("admin:screening_hl7export_changelist")).content.decode()
    assert Hl7Export.objects.get().control_id in listing and "AA" in listing
    client.force_login(radiologist)
    page = client.get(f"/studies/{study.pk}/").content.decode()
    assert "Sent to the RIS" in page and "Final result to Hospital RIS" in page and "<strong>Sent</strong>" in page


def test_bytes_before_the_acknowledgements_block_are_skipped(radiologist, django_capture_on_commit_callbacks):
    ris = Ris("prefixed")
    try:
        destination(ris)
        with django_capture_on_commit_callbacks(execute=False):
            review = decide(a_study(), radiologist)
        assert hl7_export.send_result(Hl7Export.objects.get(review=review).pk) == "sent"
    finally:
        ris.stop()


def test_a_removed_destination_fails_its_pending_export_at_once(ris, radiologist, django_capture_on_commit_callbacks):
    dest = destination(ris)
    with django_capture_on_commit_callbacks(execute=False):
        review = decide(a_study(), radiologist)
    export = Hl7Export.objects.get(review=review)
    dest.delete()
    assert hl7_export.send_result(export.pk) == "failed"
    export.refresh_from_db()
    assert export.destination is None and "removed" in export.error and export.destination_label.startswith("RIS")
    assert ris.received == []


def test_embedded_mode_retries_in_a_timer_never_in_the_request(
    monkeypatch, settings, eager, radiologist, django_capture_on_commit_callbacks
):
    """A refusing RIS: the task's first attempt runs after the commit; the retry is handed to a timer."""
    settings.PORTAL_HL7_ACK_TIMEOUT = 1
    timers = []
    monkeypatch.setattr(hl7_export, "retry_in_background", lambda pk, countdown: timers.append((pk, countdown)))
    ris = Ris("AE")
    try:
        destination(ris)
        with django_capture_on_commit_callbacks(execute=True):
            review = decide(a_study(), radiologist)
        export = Hl7Export.objects.get(review=review)
        assert (export.status, export.attempts, export.ack_code) == ("pending", 1, "AE")
        assert timers == [(export.pk, 5)]
    finally:
        ris.stop()
