"""The ACR BI-RADS mammography lexicon (5th edition): finding types, their descriptors and locations.

Plain data and one validation function, no Django: the API, the reading page (through the study's
page data) and the SR read the same terms. A finding is what the reader describes once (a mass, a group
of calcifications); the marks on the images (screening.models.Finding) show where, on one view or both.
"""

from __future__ import annotations

from collections.abc import Mapping

TYPES = {
    "mass": "Mass",
    "calcifications": "Calcifications",
    "asymmetry": "Asymmetry",
    "distortion": "Architectural distortion",
    "associated": "Associated features",
}
# The type of a finding's marks (models.Finding.Type), which predates the lexicon.
MARK_TYPE = {
    "mass": "mass",
    "calcifications": "calcification",
    "asymmetry": "asymmetry",
    "distortion": "distortion",
    "associated": "other",
}

DESCRIPTORS: dict[str, dict[str, dict[str, str]]] = {
    "mass": {
        "shape": {"oval": "Oval", "round": "Round", "irregular": "Irregular"},
        "margin": {
            "circumscribed": "Circumscribed",
            "obscured": "Obscured",
            "microlobulated": "Microlobulated",
            "indistinct": "Indistinct",
            "spiculated": "Spiculated",
        },
        "density": {"high": "High density", "equal": "Equal density", "low": "Low density", "fat": "Fat-containing"},
    },
    "calcifications": {
        "morphology": {
            "skin": "Skin (typically benign)",
            "vascular": "Vascular (typically benign)",
            "coarse_popcorn": "Coarse or popcorn-like (typically benign)",
            "large_rod": "Large rod-like (typically benign)",
            "round": "Round (typically benign)",
            "rim": "Rim (typically benign)",
            "dystrophic": "Dystrophic (typically benign)",
            "milk_of_calcium": "Milk of calcium (typically benign)",
            "suture": "Suture (typically benign)",
            "amorphous": "Amorphous",
            "coarse_heterogeneous": "Coarse heterogeneous",
            "fine_pleomorphic": "Fine pleomorphic",
            "fine_linear": "Fine linear or fine-linear branching",
        },
        "distribution": {
            "diffuse": "Diffuse",
            "regional": "Regional",
            "grouped": "Grouped",
            "linear": "Linear",
            "segmental": "Segmental",
        },
    },
    "asymmetry": {
        "kind": {
            "asymmetry": "Asymmetry",
            "global": "Global asymmetry",
            "focal": "Focal asymmetry",
            "developing": "Developing asymmetry",
        },
    },
    "distortion": {},
    "associated": {
        "feature": {
            "skin_retraction": "Skin retraction",
            "nipple_retraction": "Nipple retraction",
            "skin_thickening": "Skin thickening",
            "trabecular_thickening": "Trabecular thickening",
            "axillary_adenopathy": "Axillary adenopathy",
        },
    },
}

QUADRANTS = {
    "UOQ": "Upper outer quadrant",
    "UIQ": "Upper inner quadrant",
    "LOQ": "Lower outer quadrant",
    "LIQ": "Lower inner quadrant",
    "central": "Central",
    "subareolar": "Retroareolar",
    "axillary_tail": "Axillary tail",
}
DEPTHS = {"anterior": "Anterior third", "middle": "Middle third", "posterior": "Posterior third"}
MAX_DISTANCE_CM = 30.0  # from the nipple; further is not a breast


class LexiconError(ValueError):
    """A description outside the lexicon: `field` names the part (e.g. "descriptors.margin")."""

    def __init__(self, message: str, field: str):
        super().__init__(message)
        self.field = field


def _one_of(value, allowed: Mapping[str, str], field: str, what: str) -> None:
    if value not in allowed:
        raise LexiconError(f"{what} must be one of {', '.join(allowed)} (got {value!r})", field)


def check(
    *,
    type: str,
    descriptors: Mapping[str, str],
    clock: int | None = None,
    quadrant: str = "",
    depth: str = "",
    distance_cm: float | None = None,
) -> None:
    """Raise LexiconError for a finding the lexicon cannot say: an unknown type, a descriptor of another
    type or an unknown value, a clock position outside 1-12, an unknown quadrant or depth, a distance
    from the nipple outside 0-30 cm."""
    _one_of(type, TYPES, "type", "the finding type")
    allowed = DESCRIPTORS[type]
    for name, value in descriptors.items():
        if name not in allowed:
            names = ", ".join(allowed) or "none"
            raise LexiconError(f"{TYPES[type].lower()} has no descriptor {name!r} (it has: {names})", "descriptors")
        _one_of(value, allowed[name], f"descriptors.{name}", f"the {name} of a {TYPES[type].lower()}")
    if clock is not None and (isinstance(clock, bool) or not isinstance(clock, int) or not 1 <= clock <= 12):
        raise LexiconError("the clock position must be a whole hour from 1 to 12", "clock")
    if quadrant:
        _one_of(quadrant, QUADRANTS, "quadrant", "the quadrant")
    if depth:
        _one_of(depth, DEPTHS, "depth", "the depth")
    if distance_cm is not None and not 0 <= distance_cm <= MAX_DISTANCE_CM:
        raise LexiconError(f"the distance from the nipple must be 0 to {MAX_DISTANCE_CM:g} cm", "distance_cm")


def describe(finding) -> str:
    """One line of plain words for a finding (report page, SR text), e.g.
    "Mass: irregular, spiculated, high density; left breast, 2 o'clock, middle third, 4.5 cm from the nipple"."""
    terms = [
        labels[finding.descriptors[name]]
        for name, labels in DESCRIPTORS[finding.type].items()  # in the lexicon's order: shape, margin, density
        if name in finding.descriptors
    ]
    side = {"R": "right breast", "L": "left breast"}.get(finding.laterality, "breast")
    where = [side]
    if finding.clock:
        where.append(f"{finding.clock} o'clock")
    if finding.quadrant:
        where.append(QUADRANTS[finding.quadrant].lower())
    if finding.depth:
        where.append(DEPTHS[finding.depth].lower())
    if finding.distance_cm is not None:
        where.append(f"{finding.distance_cm:g} cm from the nipple")
    head = TYPES[finding.type] + (": " + ", ".join(t.lower() for t in terms) if terms else "")
    return f"{head}; {', '.join(where)}"


def as_data() -> dict:
    """The whole lexicon for the reading page's form."""
    return {"types": TYPES, "descriptors": DESCRIPTORS, "quadrants": QUADRANTS, "depths": DEPTHS}
