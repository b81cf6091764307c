"""Keyset (cursor) pagination for the long lists: images and predictions; a capped count for the worklists.

A page is read from an index (`-id`, with the list's filters) with LIMIT, never an
OFFSET or a COUNT over hundreds of thousands of rows, so the 1,000th page costs what
the first does. The answer is `{"next", "previous", "results"}`: follow `next` (an
opaque `cursor`). Backward compatible: a request that names `page` (or an `ordering`,
which a cursor on `-id` cannot honour) gets the former page-number answer with `count`.
"""

from __future__ import annotations

from django.core.paginator import Paginator
from django.utils.functional import cached_property
from rest_framework.exceptions import NotFound
from rest_framework.pagination import CursorPagination, PageNumberPagination


class KeysetPagination(CursorPagination):
    ordering = "-id"  # newest first; the primary key and the (status, -id) indexes serve it
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200

    def decode_cursor(self, request):
        """DRF's cursor, its position checked: a crafted cursor (nan, inf, a number past the id range) is a 404
        like any other invalid cursor, not a 500 from the database."""
        cursor = super().decode_cursor(request)
        position = cursor.position if cursor is not None else None
        if position is not None and not (position.isdigit() and int(position) < 2**63):
            raise NotFound(self.invalid_cursor_message)
        return cursor

    def _legacy(self, request) -> bool:
        return "page" in request.query_params or "ordering" in request.query_params

    def paginate_queryset(self, queryset, request, view=None):
        if self._legacy(request):
            self._page_numbers = FormerPageNumbers()
            return self._page_numbers.paginate_queryset(queryset, request, view)
        self._page_numbers = None
        return super().paginate_queryset(queryset, request, view)

    def get_paginated_response(self, data):
        if self._page_numbers is not None:
            return self._page_numbers.get_paginated_response(data)
        return super().get_paginated_response(data)


class CappedPaginator(Paginator):
    """Page numbers over a work list whose length matters only up to a point: it counts at most CAP + 1 rows
    (`SELECT COUNT(*) FROM (... LIMIT CAP + 1)`), not the tens of thousands of cases a programme may have
    waiting. `capped` says the real number is larger than `count`."""

    CAP = 1000

    def __init__(self, *args, cap: int | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        if cap is not None:
            self.CAP = cap

    @cached_property
    def count(self) -> int:
        rows = self.object_list
        if hasattr(rows, "values"):  # a QuerySet: count keys only, not the page's annotations (subqueries per row)
            rows = rows.values("pk")
        return rows[: self.CAP + 1].count()

    @property
    def capped(self) -> bool:
        return self.count > self.CAP

    def page(self, number):
        """As Django's, but a page is never cut at a capped count (there are more rows than it)."""
        number = self.validate_number(number)
        bottom = (number - 1) * self.per_page
        top = bottom + self.per_page
        if not self.capped and top + self.orphans >= self.count:
            top = self.count
        return self._get_page(self.object_list[bottom:top], number, self)

    @property
    def shown_count(self) -> int:
        """What to tell people: the count, or CAP when there are more ("1000+")."""
        return min(self.count, self.CAP)


class WorkListPagination(PageNumberPagination):
    """The reading and arbitration worklists: page numbers, `count` exact up to 1,000 and `count_capped`
    true when more cases wait than that (the reader reads from the top; nobody pages to the 1,001st)."""

    django_paginator_class = CappedPaginator
    page_size = 50

    def get_paginated_response(self, data):
        response = super().get_paginated_response(data)
        response.data["count"] = self.page.paginator.shown_count
        response.data["count_capped"] = self.page.paginator.capped
        return response

    def get_paginated_response_schema(self, schema):
        schema = super().get_paginated_response_schema(schema)
        schema["properties"]["count_capped"] = {"type": "boolean", "description": "more than `count` cases wait"}
        return schema


class FormerPageNumbers(WorkListPagination):
    """The former page-number answer of the image and prediction lists, for clients that still name `page`:
    its pages reach the newest 10,000 rows (`count` exact up to there, `count_capped` beyond). Deeper pages
    are the cursor's: an OFFSET and a COUNT over 400,000 rows took 400 ms (2 s with eight clients)."""

    CAP = 10_000
    invalid_page_message = "page numbers reach the first 10,000 rows; follow the cursor (`next` without `page`)"

    def django_paginator_class(self, *args, **kwargs):
        return CappedPaginator(*args, cap=self.CAP, **kwargs)
