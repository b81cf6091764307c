"""Every ACR BI-RADS lexicon term has a code for the SR and the HL7 result (screening.exchange.breast_codes)."""

from __future__ import annotations

from types import SimpleNamespace

from pydicom.sr._concepts_dict import concepts

from screening.exchange import breast_codes
from screening.reading import lexicon


def _finding(**fields):
    base = {"type": "mass", "descriptors": {}, "clock": None, "quadrant": "", "depth": "", "distance_cm": None}
    return SimpleNamespace(**{**base, **fields})


def _known(term) -> bool:
    """The code is in pydicom's copy of PS3.16 with this meaning (or is the portal's own)."""
    value, scheme, meaning = term
    if scheme == breast_codes.PRIVATE_SCHEME or scheme == "UCUM":
        return True
    found = [m for codes in concepts.get(scheme, {}).values() for v, (m, _) in codes.items() if v == value]
    return meaning in found or any(meaning.lower() == m.lower().split(" (")[0] for m in found)


def test_every_descriptor_value_type_clock_quadrant_and_depth_has_a_code_of_at_most_64_characters():
    for type_, descriptors in lexicon.DESCRIPTORS.items():
        for name, values in descriptors.items():
            for value in values:
                finding = _finding(type=type_, descriptors={name: value})
                terms = [breast_codes.finding_code(finding), *(v for _, v in breast_codes.properties(finding))]
                assert all(len(t[2]) <= 64 for t in terms)
                assert all(_known(t) for t in terms), terms
                if type_ not in ("asymmetry", "associated"):
                    assert len(breast_codes.properties(finding)) == 1, (type_, name)
    for quadrant in lexicon.QUADRANTS:
        [(name, value)] = breast_codes.properties(_finding(quadrant=quadrant))
        assert _known(name) and _known(value)
    for depth in lexicon.DEPTHS:
        [(name, value)] = breast_codes.properties(_finding(depth=depth))
        assert name == breast_codes.DEPTH and _known(value)
    for hour in range(1, 13):
        [(name, value)] = breast_codes.properties(_finding(clock=hour))
        assert value[2] == f"{hour} o'clock position" and _known(value)


def test_no_lexicon_term_needs_a_private_scheme():
    private = [
        (type_, value)
        for type_, descriptors in lexicon.DESCRIPTORS.items()
        for name, values in descriptors.items()
        for value in values
        if breast_codes.uses_private_scheme(_finding(type=type_, descriptors={name: value}))
    ]
    assert private == []  # dciodvfy warns on every private designator: the asymmetries use CID 6017's codes
