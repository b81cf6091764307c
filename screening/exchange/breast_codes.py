"""The ACR BI-RADS lexicon (screening.reading.lexicon) as codes, for the decision SR and the HL7 result.

Plain data: (code value, coding scheme, code meaning), every meaning within the 64 characters of a DICOM
Code Meaning. The values come from PS3.16's breast imaging context groups, in their BI-RADS flavour
(CID 6005 shape, 6007 margin, 6009 density, 6011 calcification type, 6013 calcification distribution,
6015 and 6017 findings, 6019 clockface or region, 6021 quadrant, 6025 depth, 6056 associated findings),
and the concept names from the Mammography CAD and Breast Imaging Report templates (TID 4006, TID 4206).

Every term has a standard code. The 5th edition's global asymmetry is the 4th's "asymmetric breast tissue"
(CID 6017), and a developing asymmetry is a focal one that is new or larger than on the prior ("focal
asymmetric breast tissue"): the SR's tracking label and the HL7 text keep the lexicon word ("global
asymmetry", "developing asymmetry"). A private scheme (PRIVATE_SCHEME, declared in the SR's Coding Scheme
Identification Sequence when used) was tried for those two, but dciodvfy warns on any designator it does not
know, and a PACS administrator reads such a warning as a defect.
Rim calcifications are the 5th edition's name for the 4th's eggshell (or lucent-centred) ones: the
eggshell code; its "fine linear or fine-linear branching" is CID 6011's fine linear, branching (casting).
"""

from __future__ import annotations

Term = tuple[str, str, str]  # (value, scheme designator, meaning)

PRIVATE_SCHEME = "99SCRNLEX"  # "99" + up to 14 characters: a private coding scheme (PS3.16 8.2)
PRIVATE_SCHEME_NAME = "Breast screening portal: ACR BI-RADS lexicon terms without a standard code"

# Concept names: what a content item of a finding says
FINDING: Term = ("121071", "DCM", "Finding")
SHAPE: Term = ("300842002", "SCT", "Shape")
MARGINS: Term = ("111037", "DCM", "Margins")
LESION_DENSITY: Term = ("111035", "DCM", "Lesion Density")
CALCIFICATION_TYPE: Term = ("111009", "DCM", "Calcification Type")
CALCIFICATION_DISTRIBUTION: Term = ("111008", "DCM", "Calcification Distribution")
ASSOCIATED_FINDING: Term = ("246090004", "SCT", "Associated finding")
CLOCKFACE_OR_REGION: Term = ("111014", "DCM", "Clockface or region")
QUADRANT_LOCATION: Term = ("111048", "DCM", "Quadrant location")
DEPTH: Term = ("111020", "DCM", "Depth")
DISTANCE_FROM_NIPPLE: Term = ("121242", "DCM", "Distance from nipple")
CENTIMETRE: Term = ("cm", "UCUM", "centimeter")

# The finding itself, by lexicon type (the asymmetry by its kind: see ASYMMETRY_KINDS)
TYPES: dict[str, Term] = {
    "mass": ("129788004", "SCT", "Mammographic breast mass"),
    "calcifications": ("309587003", "SCT", "Calcification of breast"),
    "asymmetry": ("129790003", "SCT", "Asymmetric breast tissue"),
    "distortion": ("129792006", "SCT", "Architectural distortion of breast"),
    "associated": ("246090004", "SCT", "Associated finding"),
}
ASYMMETRY_KINDS: dict[str, Term] = {
    "asymmetry": ("129790003", "SCT", "Asymmetric breast tissue"),
    "focal": ("129789007", "SCT", "Focal asymmetric breast tissue"),
    "global": ("129790003", "SCT", "Asymmetric breast tissue"),
    "developing": ("129789007", "SCT", "Focal asymmetric breast tissue"),
}

# Each descriptor (lexicon type, descriptor name) -> (concept name, {value: code}); the asymmetry's kind
# is the finding's own code instead (DESCRIPTOR_AS_FINDING).
DESCRIPTORS: dict[tuple[str, str], tuple[Term, dict[str, Term]]] = {
    ("mass", "shape"): (
        SHAPE,
        {
            "oval": ("84360004", "SCT", "Ovoid shape (Oval)"),
            "round": ("42700002", "SCT", "Round shape"),
            "irregular": ("49608001", "SCT", "Irregular"),
        },
    ),
    ("mass", "margin"): (
        MARGINS,
        {
            "circumscribed": ("129738007", "SCT", "Circumscribed lesion"),
            "obscured": ("129740002", "SCT", "Obscured lesion"),
            "microlobulated": ("129739004", "SCT", "Microlobulated lesion"),
            "indistinct": ("129741003", "SCT", "Indistinct lesion"),
            "spiculated": ("129742005", "SCT", "Spiculated lesion"),
        },
    ),
    ("mass", "density"): (
        LESION_DENSITY,
        {
            "high": ("129744006", "SCT", "High density lesion"),
            "equal": ("129745007", "SCT", "Equal density (isodense) lesion"),
            "low": ("129746008", "SCT", "Low density (not containing fat) lesion"),
            "fat": ("129747004", "SCT", "Fat containing (radiolucent) lesion"),
        },
    ),
    ("calcifications", "morphology"): (
        CALCIFICATION_TYPE,
        {
            "skin": ("129757003", "SCT", "Calcified skin of breast"),
            "vascular": ("129759000", "SCT", "Vascular calcification"),
            "coarse_popcorn": ("129749001", "SCT", "Coarse (popcorn-like) calcification"),
            "large_rod": ("129752009", "SCT", "Large rod-like calcification"),
            "round": ("129756007", "SCT", "Round shaped calcification"),
            "rim": ("129751002", "SCT", "Eggshell calcification"),
            "dystrophic": ("129750001", "SCT", "Dystrophic calcification"),
            "milk_of_calcium": ("129753004", "SCT", "Milk of calcium calcification"),
            "suture": ("129758008", "SCT", "Calcified suture material"),
            "amorphous": ("129760005", "SCT", "Amorphous calcification"),
            "coarse_heterogeneous": ("129763007", "SCT", "Heterogeneous calcification"),
            "fine_pleomorphic": ("111344", "DCM", "Fine pleomorphic calcification"),
            "fine_linear": ("129762002", "SCT", "Fine linear, branching (casting) calcification"),
        },
    ),
    ("calcifications", "distribution"): (
        CALCIFICATION_DISTRIBUTION,
        {
            "diffuse": ("129764001", "SCT", "Diffuse calcification distribution"),
            "regional": ("129767008", "SCT", "Regional calcification distribution"),
            "grouped": ("129766004", "SCT", "Grouped calcification distribution"),
            "linear": ("129765000", "SCT", "Linear calcification distribution"),
            "segmental": ("129768003", "SCT", "Segmental calcification distribution"),
        },
    ),
    ("associated", "feature"): (
        ASSOCIATED_FINDING,
        {
            "skin_retraction": ("129796009", "SCT", "Skin retraction of breast"),
            "nipple_retraction": ("271955004", "SCT", "Nipple retraction"),
            "skin_thickening": ("129797000", "SCT", "Skin thickening of breast"),
            "trabecular_thickening": ("129795008", "SCT", "Trabecular thickening of breast"),
            "axillary_adenopathy": ("127189005", "SCT", "Axillary adenopathy"),
        },
    ),
}
DESCRIPTOR_AS_FINDING = {("asymmetry", "kind"): ASYMMETRY_KINDS}

CLOCK: dict[int, Term] = {
    hour: (value, "SCT", f"{hour} o'clock position")
    for hour, value in {
        1: "129772004",
        2: "129773009",
        3: "129774003",
        4: "129775002",
        5: "129776001",
        6: "129777005",
        7: "129778000",
        8: "129779008",
        9: "129780006",
        10: "129781005",
        11: "129782003",
        12: "129783008",
    }.items()
}
# The lexicon's "quadrant" holds the four quadrants (CID 6021) and three regions (CID 6019, "Clockface or region")
QUADRANTS: dict[str, Term] = {
    "UOQ": ("76365002", "SCT", "Upper outer quadrant of breast"),
    "UIQ": ("77831004", "SCT", "Upper inner quadrant of breast"),
    "LOQ": ("33564002", "SCT", "Lower outer quadrant of breast"),
    "LIQ": ("19100000", "SCT", "Lower inner quadrant of breast"),
}
REGIONS: dict[str, Term] = {
    "central": ("129786000", "SCT", "Central region of breast"),
    "subareolar": ("129784002", "SCT", "Subareolar region"),
    "axillary_tail": ("129785001", "SCT", "Axillary tail region"),
}
DEPTHS: dict[str, Term] = {
    "anterior": ("255549009", "SCT", "Anterior"),
    "middle": ("C25569", "NCIt", "Middle"),
    "posterior": ("255551008", "SCT", "Posterior"),
}


def finding_code(finding) -> Term:
    """The code of a reported finding (models.ReportedFinding or anything with .type and .descriptors)."""
    if finding.type == "asymmetry" and finding.descriptors.get("kind") in ASYMMETRY_KINDS:
        return ASYMMETRY_KINDS[finding.descriptors["kind"]]
    if finding.type == "associated" and finding.descriptors.get("feature"):
        return DESCRIPTORS[("associated", "feature")][1][finding.descriptors["feature"]]
    return TYPES[finding.type]


def properties(finding) -> list[tuple[Term, Term]]:
    """(concept name, coded value) of each descriptor and location of a finding, in the lexicon's order:
    shape, margin, density (or morphology, distribution), then clockface, quadrant or region, depth.
    The distance from the nipple is a number (DISTANCE_FROM_NIPPLE in CENTIMETRE), not here."""
    out = []
    for (kind, name), (concept, values) in DESCRIPTORS.items():
        if kind == finding.type and name in finding.descriptors and kind != "associated":
            out.append((concept, values[finding.descriptors[name]]))
    if finding.clock:
        out.append((CLOCKFACE_OR_REGION, CLOCK[int(finding.clock)]))
    if finding.quadrant in QUADRANTS:
        out.append((QUADRANT_LOCATION, QUADRANTS[finding.quadrant]))
    elif finding.quadrant in REGIONS:
        out.append((CLOCKFACE_OR_REGION, REGIONS[finding.quadrant]))
    if finding.depth:
        out.append((DEPTH, DEPTHS[finding.depth]))
    return out


def uses_private_scheme(finding) -> bool:
    return any(term[1] == PRIVATE_SCHEME for term in [finding_code(finding), *(v for _, v in properties(finding))])
