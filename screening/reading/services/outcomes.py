"""What was found after screening, per breast: biopsy result or no cancer after follow-up.

Outcomes are append-only (a correction is a newer row; the latest per breast wins) and
audited. They feed the performance figures and override reader decisions as training labels.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date

from django.db import transaction

from screening.audit import actions
from screening.audit.services import record_event
from screening.errors import PortalError
from screening.models import Outcome, Study

CSV_COLUMNS = ("study_uid", "laterality", "result", "cancer_type", "diagnosed_on")
CSV_MAX_ROWS = 10_000
CSV_MAX_BYTES = 2 * 1024 * 1024


@dataclass(frozen=True)
class OutcomeInput:
    study: Study
    laterality: str
    result: str
    cancer_type: str = ""
    diagnosed_on: date | None = None


def _check(item: OutcomeInput) -> None:
    if item.laterality not in ("L", "R"):
        raise PortalError("laterality must be L or R (outcomes are per breast)", field="laterality")
    if item.result not in Outcome.Result.values:
        raise PortalError(f"result must be one of {', '.join(Outcome.Result.values)}", field="result")
    if item.result == Outcome.Result.MALIGNANT:
        if item.cancer_type not in ("invasive", "dcis", "other"):
            raise PortalError("a malignant result needs its type: invasive, dcis or other", field="cancer_type")
    elif item.cancer_type:
        raise PortalError("only a malignant result has a cancer type", field="cancer_type")


def _create(item: OutcomeInput, *, user, source: str, ip_address: str | None) -> Outcome:
    outcome = Outcome.objects.create(
        study=item.study,
        laterality=item.laterality,
        result=item.result,
        cancer_type=item.cancer_type,
        diagnosed_on=item.diagnosed_on,
        source=source,
        recorded_by=user,
    )
    record_event(
        action=actions.OUTCOME_RECORD,
        user=user,
        study=item.study,
        obj=outcome,
        ip_address=ip_address,
        detail={"laterality": item.laterality, "result": item.result, "cancer_type": item.cancer_type, "via": source},
    )
    return outcome


@transaction.atomic
def record_outcome(*, item: OutcomeInput, user, source: str = "form", ip_address: str | None = None) -> Outcome:
    _check(item)
    return _create(item, user=user, source=source, ip_address=ip_address)


def _parse_date(text: str, line: int) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise PortalError(f"line {line}: diagnosed_on must be a date as YYYY-MM-DD", field="file") from None


@transaction.atomic
def import_csv(*, data: bytes, user, ip_address: str | None = None) -> int:
    """Import outcomes from CSV (columns: study_uid, laterality, result, cancer_type, diagnosed_on).

    All or nothing: every line is checked first, and one bad line (named by its number)
    leaves nothing behind. Studies are named by StudyInstanceUID, never by patient; a study
    the user may not see is reported as unknown, like one that does not exist.
    """
    if len(data) > CSV_MAX_BYTES:
        raise PortalError(f"the file is larger than {CSV_MAX_BYTES // 1024} KiB: split it", field="file")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise PortalError("the file must be UTF-8 text (CSV)", field="file") from None
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in CSV_COLUMNS[:3] if c not in (reader.fieldnames or [])]
    if missing:
        raise PortalError(f"the CSV lacks the column(s) {', '.join(missing)}", field="file")
    rows = list(reader)
    if not rows:
        raise PortalError("the CSV has no outcome lines", field="file")
    if len(rows) > CSV_MAX_ROWS:
        raise PortalError(f"at most {CSV_MAX_ROWS} lines per file", field="file")
    from screening.intake.selectors import studies_visible_to

    uids = [(r.get("study_uid") or "").strip() for r in rows]
    studies = studies_visible_to(user).in_bulk(uids, field_name="study_uid")
    items = []
    for line, row in enumerate(rows, start=2):
        uid = (row.get("study_uid") or "").strip()
        if uid not in studies:
            raise PortalError(f"line {line}: no study with this StudyInstanceUID", field="file")
        item = OutcomeInput(
            study=studies[uid],
            laterality=(row.get("laterality") or "").strip().upper(),
            result=(row.get("result") or "").strip().lower(),
            cancer_type=(row.get("cancer_type") or "").strip().lower(),
            diagnosed_on=_parse_date((row.get("diagnosed_on") or "").strip(), line),
        )
        try:
            _check(item)
        except PortalError as exc:
            raise PortalError(f"line {line}: {exc.message}", field="file") from None
        items.append(item)
    for item in items:
        _create(item, user=user, source="csv", ip_address=ip_address)
    record_event(action=actions.OUTCOME_IMPORT, user=user, ip_address=ip_address, detail={"lines": len(items)})
    return len(items)
