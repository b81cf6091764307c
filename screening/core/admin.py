"""The Django admin under blinding: the same rule as every other face (screening.blinding)."""

from __future__ import annotations

from screening.blinding import ai_visibility


class AIBlindingMixin:
    """Blinding holds in the admin too (screening.blinding): a staff user who reads blind (a radiologist or
    arbitrator granted view permissions) gets no AI column or filter in lists, and no AI field of a case whose
    AI result the reading policy hides from them; `ai_rows_only` drops such rows altogether."""

    ai_fields: tuple[str, ...] = ()
    ai_study_path = ""  # from this model to its study; with ai_rows_only, rows of hidden cases are left out
    ai_rows_only = False

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if self.ai_rows_only:
            return queryset.filter(ai_visibility(request.user).condition(self.ai_study_path))
        return queryset

    def _hidden(self, request, obj=None) -> bool:
        if not self.ai_fields:
            return False
        visibility = ai_visibility(request.user)
        return visibility.hides_any and (obj is None or not visibility.shows(obj))

    def lookup_allowed(self, lookup, value, request=None):
        # The admin allows a lookup on any local field (`?exam_flag__exact=1`): a count of what the AI hid.
        if request is not None and lookup.split("__")[0] in self.ai_fields and self._hidden(request):
            return False
        return super().lookup_allowed(lookup, value, request)

    def get_list_display(self, request):
        shown = super().get_list_display(request)
        return [f for f in shown if f not in self.ai_fields] if self._hidden(request) else shown

    def get_list_filter(self, request):
        shown = super().get_list_filter(request)
        return [f for f in shown if f not in self.ai_fields] if self._hidden(request) else shown

    def get_fields(self, request, obj=None):
        shown = super().get_fields(request, obj)
        return [f for f in shown if f not in self.ai_fields] if self._hidden(request, obj) else shown

    def get_readonly_fields(self, request, obj=None):
        shown = super().get_readonly_fields(request, obj)
        return [f for f in shown if f not in self.ai_fields] if self._hidden(request, obj) else shown
