"""Keyset (cursor) pagination for the long lists: images and predictions.

A page is read from an index (`-id`, with the list's filters) with LIMIT, never an
OFFSET or a COUNT over hundreds of thousands of rows, so the 1,000th page costs what
the first does. The answer is `{"next", "previous", "results"}`: follow `next` (an
opaque `cursor`). Backward compatible: a request that names `page` (or an `ordering`,
which a cursor on `-id` cannot honour) gets the former page-number answer with `count`.
"""

from __future__ import annotations

from rest_framework.pagination import CursorPagination, PageNumberPagination


class KeysetPagination(CursorPagination):
    ordering = "-id"  # newest first; the primary key and the (status, -id) indexes serve it
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200

    def _legacy(self, request) -> bool:
        return "page" in request.query_params or "ordering" in request.query_params

    def paginate_queryset(self, queryset, request, view=None):
        if self._legacy(request):
            self._page_numbers = PageNumberPagination()
            return self._page_numbers.paginate_queryset(queryset, request, view)
        self._page_numbers = None
        return super().paginate_queryset(queryset, request, view)

    def get_paginated_response(self, data):
        if self._page_numbers is not None:
            return self._page_numbers.get_paginated_response(data)
        return super().get_paginated_response(data)
