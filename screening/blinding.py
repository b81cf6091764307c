"""Blinding to the AI: whose AI result a user may see. One rule, applied where AI data leaves.

The AI result of a study is its exam score and flag, its breast scores, the model that gave them, its
images' predictions (probability, logit, regions, heatmap) and the AI-result SR. The rule, for one case
(`screening.reading.rules.may_see_ai`): a radiologist or arbitrator sees it, at a site whose reading policy blinds
the AI, only once the case has its final decision, once they have read the case themselves, or when they
arbitrate it. Admins who do not read and API clients see it (`roles.reads_blind`).

Here the same rule is a database condition on studies, so that every face applies it where the rows are
read rather than view by view:

- querysets: `visible_predictions` drops the predictions a user may not see (list, detail, heatmap: the
  server refuses, whatever the id), `annotate` marks each study or image row with `ai_shown`;
- serializers and pages: `shows(row)` reads that mark, or asks the database for an unmarked row (a new
  endpoint that forgets the mark gets a slower answer, never the hidden result), `mask` empties a study;
- filters and orderings by the AI (`refuse_query`): refused to a user from whom any AI is hidden, because an
  order or a filter answers questions about the very rows it hides.

tests/portal/test_blinding_matrix.py holds every face against every role.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import BooleanField, ExpressionWrapper, Q, QuerySet

from screening.accounts.roles import is_arbitrator, reads_blind
from screening.errors import PortalError
from screening.models import Review, Study
from screening.reading.rules import current_policies

# What a study holds of the AI (the predictions of its images aside).
AI_STUDY_FIELDS = ("exam_score", "exam_flag", "score_left", "score_right", "exam_model")
HIDDEN_MESSAGE = "the reading policy hides the AI result from readers until they have read the case"


@dataclass(frozen=True)
class AIVisibility:
    """Which studies' AI result one user may see (computed once per request or serializer)."""

    user_id: int | None
    blinded_sites: frozenset[str]  # sites whose policy hides the AI from this user; empty: nothing hidden
    arbitrator: bool

    @property
    def hides_any(self) -> bool:
        return bool(self.blinded_sites)

    def condition(self, path: str = "") -> Q:
        """The studies (reached from the queried model through `path`, e.g. "image__study") whose AI result
        this user may see: the site does not blind it, or the case is final, read by them, or theirs to
        arbitrate. Nothing hidden: Q(), which matches every row in a filter but vanishes in an OR (ask
        `hides_any` before combining it)."""
        if not self.blinded_sites:
            return Q()

        def reviewed(**where) -> Q:
            # An uncorrelated subquery: PostgreSQL hashes it once, where a correlated EXISTS would be probed
            # for each of the (possibly hundreds of thousands of) rows a filtered list scans.
            return Q(**{f"{path or 'pk'}__in": Review.objects.filter(**where).values("study_id")})

        shown = ~Q(**{f"{path}__site__in" if path else "site__in": sorted(self.blinded_sites)})
        shown |= reviewed(is_final=True) | reviewed(radiologist_id=self.user_id)
        if self.arbitrator:
            shown |= reviewed(slot="second")  # awaiting arbitration (final cases are shown anyway)
        return shown

    def annotate(self, queryset: QuerySet, path: str = "") -> QuerySet:
        """Rows marked `ai_shown` (only when something is hidden: other users' lists stay as they were)."""
        if not self.blinded_sites:
            return queryset
        return queryset.annotate(ai_shown=ExpressionWrapper(self.condition(path), output_field=BooleanField()))

    def shows(self, row) -> bool:
        """May this user see the AI result of this study (or of the study of this image)?"""
        if not self.blinded_sites:
            return True
        marked = getattr(row, "ai_shown", None)
        if marked is not None:
            return bool(marked)
        study_id = row.pk if isinstance(row, Study) else row.study_id
        return Study.objects.filter(pk=study_id).filter(self.condition()).exists()

    def mask(self, study: Study) -> Study:
        """Empty the study's AI fields in memory when this user may not see them (pages print what is left)."""
        if not self.shows(study):
            for name in AI_STUDY_FIELDS:
                setattr(study, name, None)
            study.ai_hidden = True
        return study

    def refuse_query(self, what: str, field: str) -> None:
        """A filter or an ordering by the AI result, refused while any AI result is hidden from this user."""
        if self.blinded_sites:
            raise PortalError(f"{what} is not available: {HIDDEN_MESSAGE}", code="blinded", field=field)


def ai_visibility(user) -> AIVisibility:
    """The blinding of one user now (reads the sites' current policies: compute it once per request)."""
    blinded = frozenset()
    if reads_blind(user):
        blinded = frozenset(policy.site for policy in current_policies() if policy.blind_ai)
    return AIVisibility(user_id=getattr(user, "pk", None), blinded_sites=blinded, arbitrator=is_arbitrator(user))
