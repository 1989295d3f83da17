"""Requests the admin pages refuse before they reach the database.

* PostgreSQL text cannot hold a NUL character: a NUL in a search, a filter, a form field or
  an object id in the URL would fail the query (a server error) instead of finding nothing.
  Every view of a django_jobs ModelAdmin answers such a request with 400 Bad Request.
  Browsers do not send NUL; a hand-made URL (``?q=%00``) does.
* Django's change lists take any lookup on any field from the URL (``?worker__regex=(``,
  which reaches the database as an invalid pattern, or a slow one). Ours take only their
  filters' parameters and the lookups an admin class lists in ``url_lookups``; others are
  refused with 400 (Django's DisallowedModelAdminLookup).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.core.exceptions import BadRequest
from django.http import HttpRequest, HttpResponse


def _holds_nul(request: HttpRequest, kwargs: dict[str, Any]) -> bool:
    if any("\x00" in str(value) for value in kwargs.values()):
        return True
    data = [request.GET]
    if request.method == "POST":
        data.append(request.POST)
    return any("\x00" in key or any("\x00" in value for value in values)
               for query in data for key, values in query.lists())


def refuse_nul(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """``view``, answering 400 to a request whose query, form or URL arguments hold NUL."""

    @functools.wraps(view)
    def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if any("\x00" in str(value) for value in args) or _holds_nul(request, kwargs):
            raise BadRequest("The request holds a NUL character (\\x00), which no job, "
                             "queue or search can contain.")
        return view(request, *args, **kwargs)

    return guarded


#: The lookups Django's own list filters of a field put in the URL.
FIELD_FILTER_LOOKUPS = ("", "__exact", "__isnull", "__in")


class GuardedAdmin:
    """ModelAdmin mixin: every URL of the admin class refuses NUL, and its change list the
    lookups it does not offer (see the module)."""

    #: Field lookups the change list takes from its URL besides its filters' parameters.
    url_lookups: frozenset[str] = frozenset()

    def lookup_allowed(self, lookup: str, value: Any, request: Any = None) -> bool:
        allowed = set(self.url_lookups)
        for spec in self.list_filter:
            if isinstance(spec, type):  # a SimpleListFilter: its own parameter
                allowed.add(spec.parameter_name)
            else:  # a field, or (field, FieldListFilter class)
                field = spec[0] if isinstance(spec, (list, tuple)) else spec
                allowed.update(f"{field}{suffix}" for suffix in FIELD_FILTER_LOOKUPS)
        return lookup in allowed

    def get_urls(self):
        urls = super().get_urls()
        for pattern in urls:
            pattern.callback = refuse_nul(pattern.callback)
        return urls
