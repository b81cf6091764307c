"""HL7 v2.5.1 ORU^R01: a final decision as a RIS reads it, and the RIS's acknowledgement (plain Python).

The message is a pure function of a `Result` (screening.exchange.services.hl7_export gathers it from the
database): MSH, PID, ORC, OBR (the accession number as the filler order number and placer field 1, the
result status F or C in OBR-25), then OBX lines: the exam's BI-RADS assessment and recall, the breast
composition, each breast's finding site, BI-RADS and recall (observation sub-ID 1 right, 2 left), each
reported finding's code, breast and lexicon words (sub-ID 3, 4, ...), the reader's note and the Study
Instance UID. Codes are the SR's (DCM, SCT; ACR BI-RADS terms through screening.exchange.breast_codes),
with the BI-RADS category, the recall and the density letter as the local alternate code.

Free text is escaped (HL7 2.5.1 2.7: \\F\\ \\S\\ \\T\\ \\R\\ \\E\\, control characters as \\Xhh\\), so no
value can end a field, a segment or the MLLP frame; a note's lines are TX repetitions. Encoded in UTF-8,
said in MSH-18 ("UNICODE UTF-8").
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from screening.exchange import breast_codes

VERSION = "2.5.1"
CHARSET = "UNICODE UTF-8"
ENCODING = "utf-8"
SEGMENT_END = "\r"
TX_MAX = 65536  # characters in one TX repetition (HL7 2.5.1)

Code = tuple[str, str, str]  # (value, coding system, text), as breast_codes.Term
ASSESSMENT: Code = ("111005", "DCM", "Assessment Category")
NORMALITY: Code = ("121402", "DCM", "Normality")
COMPOSITION: Code = ("111006", "DCM", "Breast composition")
FINDING_SITE: Code = ("363698007", "SCT", "Finding Site")
COMMENT: Code = ("121106", "DCM", "Comment")
STUDY_UID: Code = ("110180", "DCM", "Study Instance UID")
PROCEDURE: Code = ("24623002", "SCT", "Screening mammography")
BREASTS: dict[str, Code] = {"R": ("73056007", "SCT", "Right breast"), "L": ("80248007", "SCT", "Left breast")}
BIRADS: dict[int, Code] = {
    0: ("397138000", "SCT", "Incomplete - Need additional imaging evaluation"),
    1: ("397140005", "SCT", "Negative"),
    2: ("397141009", "SCT", "Benign"),
    3: ("397143007", "SCT", "Probably Benign"),
    4: ("397144001", "SCT", "Suspicious"),
    5: ("397145000", "SCT", "Highly suggestive of malignancy"),
    6: ("111125", "DCM", "Known biopsy proven malignancy"),
}
RECALL: dict[str, tuple[Code, Code]] = {  # the decision: (standard code, local alternate)
    "normal": (("17621005", "SCT", "Normal"), ("NORECALL", "L", "No recall")),
    "abnormal": (("263654008", "SCT", "Abnormal"), ("RECALL", "L", "Recall")),
}
DENSITY: dict[str, Code] = {
    "A": ("129716005", "SCT", "Almost entirely fat"),
    "B": ("129717001", "SCT", "Scattered fibroglandular densities"),
    "C": ("129718006", "SCT", "Heterogeneously dense"),
    "D": ("129719003", "SCT", "Extremely dense"),
}
SEX = {"F": "F", "M": "M", "O": "O"}  # else U (unknown)

_ESCAPES = {"\\": "\\E\\", "|": "\\F\\", "^": "\\S\\", "&": "\\T\\", "~": "\\R\\"}


def escape(text: str) -> str:
    """A value as HL7 text: the delimiters escaped, control characters (CR, LF, the MLLP bytes) as \\Xhh\\."""
    out = []
    for char in text:
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\X{ord(char):02X}\\")
        else:
            out.append(char)
    return "".join(out)


def _cwe(code: Code, alternate: Code | None = None) -> str:
    parts = [escape(code[0]), escape(code[2]), code[1]]
    if alternate is not None:
        parts += [escape(alternate[0]), escape(alternate[2]), alternate[1]]
    return "^".join(parts)


def _timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%d%H%M%S+0000")


def _date(day: date | None) -> str:
    return day.strftime("%Y%m%d") if day else ""


def text_lines(text: str) -> list[str]:
    """A note as TX repetitions: one per line, a line longer than TX_MAX characters in several."""
    lines = re.split(r"\r\n|\r|\n", text.strip("\r\n"))
    return [line[i : i + TX_MAX] for line in lines for i in range(0, max(len(line), 1), TX_MAX)]


@dataclass(frozen=True)
class Identity:
    """PID's content: the woman's own, or the destination's pseudonym (name and birth date left out)."""

    patient_id: str
    name: str = ""  # DICOM PN: family^given^middle^prefix^suffix (the first, alphabetic group)
    birth_date: date | None = None
    sex: str = ""
    pseudonymous: bool = False


@dataclass(frozen=True)
class Finding:
    number: int
    laterality: str  # "R" or "L"
    code: Code
    words: str  # screening.reading.lexicon.describe


@dataclass(frozen=True)
class Result:
    control_id: str
    created: datetime  # MSH-7
    sending_application: str
    sending_facility: str
    receiving_application: str
    receiving_facility: str
    identity: Identity
    accession_number: str
    study_uid: str
    study_date: date | None
    reported: datetime  # when the decision was made (OBR-22)
    result_status: str  # "F" final, "C" corrected
    reader: tuple[str, str, str]  # (login, family name, given name)
    decision: str
    birads: int
    breasts: dict[str, tuple[str, int]]  # "R"/"L" -> (decision, BI-RADS)
    density: str = ""
    findings: list[Finding] = field(default_factory=list)
    note: str = ""


def _xpn(identity: Identity) -> str:
    if identity.pseudonymous:
        return "^^^^^^S"  # name type S: a coded pseudo-name, to assure anonymity (HL7 table 0200)
    family, given, middle, prefix, suffix = ([*identity.name.split("=")[0].split("^"), "", "", "", ""])[:5]
    return "^".join(escape(p.strip()) for p in (family, given, middle, suffix, prefix)).rstrip("^")


def _segment(name: str, fields: list[str]) -> str:
    while fields and fields[-1] == "":
        fields.pop()
    return "|".join([name, *fields])


def message(result: Result) -> str:
    """The ORU^R01 of one decision, segments separated by CR (no trailing MLLP framing)."""
    r = result
    msh = "MSH|^~\\&|" + "|".join(
        [
            escape(r.sending_application),
            escape(r.sending_facility),
            escape(r.receiving_application),
            escape(r.receiving_facility),
            _timestamp(r.created),
            "",
            "ORU^R01^ORU_R01",
            escape(r.control_id),
            "P",
            VERSION,
            "",
            "",
            "",
            "",
            "",
            CHARSET,
        ]
    )
    identity = r.identity
    pid = _segment(
        "PID",
        [
            "1",
            "",
            f"{escape(identity.patient_id)}^^^^{'ANON' if identity.pseudonymous else 'MR'}",
            "",
            _xpn(identity),
            "",
            "" if identity.pseudonymous else _date(identity.birth_date),
            SEX.get(identity.sex, "U"),
        ],
    )
    accession = escape(r.accession_number)
    orc = _segment("ORC", ["RE", "", accession, "", "CM"])
    login, family, given = r.reader
    obr = [""] * 32
    obr[0], obr[2], obr[3] = "1", accession, _cwe(PROCEDURE)
    obr[6] = _date(r.study_date)
    obr[17] = accession  # OBR-18, placer field 1: where IHE radiology carries the accession number
    obr[21] = _timestamp(r.reported)
    obr[23], obr[24] = "MG", r.result_status
    obr[31] = "&".join(escape(part) for part in (login, family, given)).rstrip("&")
    segments = [msh, pid, orc, _segment("OBR", obr)]

    def obx(value_type: str, name: Code, value: str, sub_id: str = "") -> None:
        number = len(segments) - 3
        fields = [str(number), value_type, _cwe(name), sub_id, value, "", "", "", "", "", r.result_status]
        segments.append(_segment("OBX", fields))

    def assessment(decision: str, birads: int, sub_id: str = "") -> None:
        obx("CWE", ASSESSMENT, _cwe(BIRADS[birads], (str(birads), "L", f"BI-RADS {birads}")), sub_id)
        obx("CWE", NORMALITY, _cwe(*RECALL[decision]), sub_id)

    assessment(r.decision, r.birads)
    if r.density:
        obx("CWE", COMPOSITION, _cwe(DENSITY[r.density], (r.density, "L", f"ACR {r.density}")))
    for sub_id, side in (("1", "R"), ("2", "L")):
        if side in r.breasts:
            obx("CWE", FINDING_SITE, _cwe(BREASTS[side]), sub_id)
            assessment(*r.breasts[side], sub_id=sub_id)
    for finding in r.findings:
        sub_id = str(finding.number + 2)
        obx("CWE", breast_codes.FINDING, _cwe(finding.code), sub_id)
        obx("CWE", FINDING_SITE, _cwe(BREASTS[finding.laterality]), sub_id)
        obx("TX", breast_codes.FINDING, escape(f"Finding {finding.number}: {finding.words}"), sub_id)
    if r.note.strip():
        obx("TX", COMMENT, "~".join(escape(line) for line in text_lines(r.note)))
    obx("ST", STUDY_UID, escape(r.study_uid))
    return SEGMENT_END.join(segments) + SEGMENT_END


# --- the acknowledgement ------------------------------------------------------------------------------------


class NotAnAck(ValueError):
    """The answer is not an HL7 acknowledgement (no MSH, no MSA)."""


@dataclass(frozen=True)
class Ack:
    code: str  # MSA-1: AA, AE, AR (or CA, CE, CR in enhanced mode)
    control_id: str  # MSA-2: the message it acknowledges
    text: str  # MSA-3 and ERR's diagnostic text, unescaped no further than needed to read them

    @property
    def accepted(self) -> bool:
        return self.code in ("AA", "CA")


def parse_ack(payload: bytes) -> Ack:
    """The MSA of an ACK (any encoding characters the RIS declares in its MSH)."""
    text = payload.decode(ENCODING, errors="replace")
    segments = [s for s in re.split(r"\r\n|\r|\n", text) if s]
    if not segments or not segments[0].startswith("MSH") or len(segments[0]) < 8:
        raise NotAnAck("the answer is not an HL7 message (no MSH segment)")
    separator = segments[0][3]
    component = segments[0][4]
    by_name = {}
    for segment in segments:
        by_name.setdefault(segment[:3], segment.split(separator))
    msa = by_name.get("MSA")
    if msa is None or len(msa) < 3:
        raise NotAnAck("the answer has no MSA segment: it acknowledges nothing")
    code = msa[1].strip().upper()
    if code not in ("AA", "AE", "AR", "CA", "CE", "CR"):
        raise NotAnAck(f"unknown acknowledgment code {code[:8]!r}")
    said = [msa[3]] if len(msa) > 3 and msa[3] else []
    err = by_name.get("ERR")
    if err is not None and len(err) > 8 and err[8]:
        said.append(err[8])  # ERR-8 user message
    readable = "; ".join(part.replace(component, " ") for part in said)
    return Ack(code=code, control_id=msa[2].split(component)[0], text=readable[:500])
