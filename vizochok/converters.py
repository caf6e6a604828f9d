"""URL path converters for the public ids the API hands out."""

from django.urls.converters import StringConverter


class PublicIdConverter(StringConverter):
    """A public id such as ``conv_3kX…`` or ``job_…``: a prefix, ``_`` and URL-safe base64.

    Anything else never reaches a view, so odd bytes such as NUL cannot reach a query.
    """

    regex = r"[a-z]{2,8}_[A-Za-z0-9_-]{1,64}"
