"""The synthetic demonstration cases, as data: who they are, and the fixed UIDs that name them.

Reads of them are neither training labels nor performance figures (`demo_study_uids`); drawing and adding
them is `screening.intake.services.demo`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date

from screening.models import Study

UID_SOURCE = "breast-screening-portal synthetic demonstration case v1"


@dataclass(frozen=True)
class DemoCase:
    key: str
    patient_id: str
    name: str
    birth_date: date
    accession: str
    study_date: date
    density: float  # 0 (almost entirely fatty) .. 1 (extremely dense)
    finding: tuple[str, str] | None = None  # (laterality, "mass" | "calcifications"), seen on CC and MLO
    seed: int = 0


_ONE = ("DEMO-0001", "SYNTHETIC^DEMO ONE", date(1966, 4, 2))
CASES = (
    DemoCase("w1-prior", *_ONE, "DEMO1A", date(2024, 2, 12), 0.35),
    DemoCase("w1", *_ONE, "DEMO1B", date(2026, 2, 10), 0.35, ("L", "mass")),
    DemoCase("w2", "DEMO-0002", "SYNTHETIC^DEMO TWO", date(1958, 9, 20), "DEMO2A", date(2026, 2, 11), 0.15, seed=2),
    DemoCase(
        "w3", "DEMO-0003", "SYNTHETIC^DEMO THREE", date(1971, 1, 30), "DEMO3A", date(2026, 2, 12), 0.7,
        ("R", "calcifications"), seed=3,
    ),
)  # fmt: skip


def demo_uid(*parts: str) -> str:
    """A fixed UID under 2.25 (a name-based UUID of the parts): the same case always has the same UIDs."""
    return f"2.25.{uuid.uuid5(uuid.NAMESPACE_URL, '/'.join([UID_SOURCE, *parts])).int}"


def demo_study_uids() -> list[str]:
    return [demo_uid(case.key, "study") for case in CASES]


def is_demo_study(study: Study) -> bool:
    return study.study_uid in demo_study_uids()
