"""Audit actions come from one registry (screening.audit.actions): an unknown name is refused, no free strings."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from screening.audit import actions
from screening.audit.services import record_event
from screening.models import AuditEvent

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.django_db
def test_an_unknown_audit_action_is_refused_and_nothing_is_written():
    before = AuditEvent.objects.count()
    with pytest.raises(actions.UnknownAction, match="study_deleted"):
        record_event(action="study_deleted", detail={"reason": "a typo of study_delete"})
    assert AuditEvent.objects.count() == before


@pytest.mark.django_db
def test_a_registered_action_is_written_under_its_name():
    event = record_event(action=actions.STUDY_DELETE, detail={"reason": "test"})
    assert AuditEvent.objects.get(pk=event.pk).action == "study_delete"


def test_every_action_says_what_it_records_under_its_own_name():
    constants = {name: value for name, value in vars(actions).items() if name.isupper() and isinstance(value, str)}
    assert set(constants.values()) == set(actions.REGISTRY)
    assert all(name == value.upper() for name, value in constants.items())
    assert all(entry.records for entry in actions.REGISTRY.values())


def _literal_actions(path: Path) -> list[str]:
    """String literals given as an audit action (record_event(action="..."), a filter on action="...")."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        is_argparse = isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument"
        if isinstance(node, ast.Call) and not is_argparse:  # argparse's action="store_true" is no audit action
            for keyword in node.keywords:
                value = keyword.value
                if keyword.arg in ("action", "action__in") and isinstance(value, ast.Constant):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} {value.value!r}")
    return found


def test_no_code_names_an_audit_action_by_a_free_string():
    sources = [
        path
        for folder in ("screening", "portal")
        for path in (ROOT / folder).rglob("*.py")
        if "migrations" not in path.parts and path.name != "actions.py"
    ]
    free = [hit for path in sources for hit in _literal_actions(path)]
    assert free == []
