"""The drift measure and the subgroup figures, against values computed by hand."""

from __future__ import annotations

import math

import pytest

from screening.monitoring.drift import MISSING, measure, psi, reference_of
from screening.monitoring.subgroups import Case, age_band, by_subgroup, figures, sensitivity_below


def test_psi_of_two_distributions_is_the_hand_computed_sum():
    # (0.5-0.25)ln(0.5/0.25) + (0.5-0.75)ln(0.5/0.75)
    expected = 0.25 * math.log(2) + (-0.25) * math.log(0.5 / 0.75)
    assert psi([0.25, 0.75], [0.5, 0.5]) == pytest.approx(expected)
    assert psi([0.3, 0.7], [0.3, 0.7]) == 0.0


def test_a_category_never_seen_in_the_reference_counts_as_a_large_shift():
    ref = reference_of("manufacturer", ["A"] * 100)
    result = measure(ref, ["A"] * 50 + ["B"] * 50, min_n=10)
    # A: (0.5-1)ln(0.5/1); B: reference share floored at 1e-4
    expected = (0.5 - 1) * math.log(0.5) + (0.5 - 1e-4) * math.log(0.5 / 1e-4)
    assert result.value == pytest.approx(expected)
    assert result.drifted(0.25)
    assert [b[0] for b in result.bins] == ["A", "B"]


def test_numeric_features_are_binned_at_the_reference_quintiles_with_a_missing_bin():
    ref = reference_of("score", [i / 100 for i in range(100)] + [None] * 0)
    assert ref.edges == pytest.approx([0.198, 0.396, 0.594, 0.792])
    assert ref.shares == pytest.approx([0.2, 0.2, 0.2, 0.2, 0.2, 0.0])
    assert ref.labels[-1] == MISSING
    same = measure(ref, [i / 100 for i in range(100)], min_n=10)
    assert same.value == pytest.approx(0.0)
    shifted = measure(ref, [0.9] * 100, min_n=10)
    assert shifted.drifted(0.25)


def test_too_few_images_gives_no_measure_and_no_drift():
    ref = reference_of("manufacturer", ["A"] * 100)
    result = measure(ref, ["B"] * 5, min_n=30)
    assert result.value is None
    assert not result.drifted(0.25)
    assert result.n == 5


def _case(score, flag, truth, **kw):
    base = dict(
        truth_source="outcome",
        woman=str(kw.pop("woman", score)),
        age_band="50-59",
        density="B",
        manufacturer="A",
        site="north",
        round="first",
    )
    base.update(kw)
    return Case(score=score, flag=flag, truth=truth, **base)


def test_subgroup_figures_equal_hand_computed_values():
    # 4 cancers (3 flagged), 6 clear (1 flagged); scores chosen so 22 of 24 pairs rank correctly
    cancers = [_case(0.9, True, True), _case(0.8, True, True), _case(0.7, True, True), _case(0.3, False, True)]
    clear = [_case(0.6, True, False)] + [_case(s, False, False) for s in (0.5, 0.4, 0.2, 0.1, 0.05)]
    result = figures(cancers + clear, min_cases=3, n_boot=200)
    assert result["n"] == 10 and result["cancers"] == 4
    assert result["sensitivity"]["k"] == 3 and result["sensitivity"]["n"] == 4
    assert result["sensitivity"]["value"] == pytest.approx(0.75)
    assert result["specificity"]["value"] == pytest.approx(5 / 6)
    assert result["recall_rate"]["value"] == pytest.approx(0.4)
    # pairs (cancer, clear) where the cancer scores higher: 0.9,0.8,0.7 beat all 6 (18); 0.3 beats 0.2,0.1,0.05 (3)
    assert result["auc"]["value"] == pytest.approx(21 / 24)
    assert result["auc"]["low"] <= result["auc"]["value"] <= result["auc"]["high"]
    # Wilson interval of 3/4 (z = 1.96): centre (0.75 + 1.92/4)/(1 + 3.84/4)
    z = 1.959963984540054
    centre = (0.75 + z * z / 8) / (1 + z * z / 4)
    half = z * math.sqrt(0.75 * 0.25 / 4 + z * z / 64) / (1 + z * z / 4)
    assert result["sensitivity"]["low"] == pytest.approx(centre - half)
    assert result["sensitivity"]["high"] == pytest.approx(centre + half)
    assert result["too_few"] is False


def test_a_small_subgroup_is_marked_too_few_and_raises_no_sensitivity_alert():
    cases = [_case(0.1, False, True), _case(0.2, False, True), _case(0.9, True, False)]
    result = figures(cases, min_cases=10, n_boot=50)
    assert result["too_few"] is True
    assert result["sensitivity"]["value"] == 0.0
    assert not sensitivity_below(result, validated=0.9)


def test_subgroup_sensitivity_significantly_below_the_validated_figure_is_flagged():
    cases = [_case(0.1 + i / 100, i < 5, True, woman=f"w{i}") for i in range(30)]
    cases += [_case(0.01, False, False, woman=f"c{i}") for i in range(30)]
    result = figures(cases, min_cases=10, n_boot=50)
    assert result["sensitivity"]["value"] == pytest.approx(5 / 30)
    assert sensitivity_below(result, validated=0.9)
    assert not sensitivity_below(result, validated=0.2)  # 5/30 is within noise of 0.2


def test_cases_are_split_along_every_dimension():
    cases = [
        _case(0.9, True, True, site="north"),
        _case(0.1, False, False, site="south", density="D", round="subsequent"),
    ]
    result = by_subgroup(cases, min_cases=1, n_boot=20)
    assert set(result["groups"]["site"]) == {"north", "south"}
    assert result["groups"]["density"]["D"]["n"] == 1
    assert result["groups"]["round"]["subsequent"]["n"] == 1
    assert result["all"]["n"] == 2


@pytest.mark.parametrize(
    ("age", "band"), [(None, "unknown"), (49, "under 50"), (50, "50-59"), (69, "60-69"), (71, "70 and over")]
)
def test_age_bands(age, band):
    assert age_band(age) == band
