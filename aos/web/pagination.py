"""Cursor pagination on the web side: the ``limit``/``cursor`` query and the ``{items, next_cursor}`` page.

The cursor itself is made and checked by ``aos.services.pagination`` (keyset on
``(created_at, id)``, newest first); a cursor this API did not write is a 400
``CURSOR_INVALID``.
"""

from __future__ import annotations

import marshmallow as ma

from aos.services.pagination import DEFAULT_LIMIT, MAX_CURSOR_CHARS, MAX_LIMIT


class PageArgsSchema(ma.Schema):
    limit = ma.fields.Integer(load_default=DEFAULT_LIMIT, validate=ma.validate.Range(min=1, max=MAX_LIMIT),
                              metadata={"description": f"Items per page (1 to {MAX_LIMIT})."})
    # the pattern is documented, not validated here: any cursor this API did not write is a 400 CURSOR_INVALID
    cursor = ma.fields.String(load_default="", metadata={
        "description": "`next_cursor` of the previous page, unchanged; omit it (or leave it empty) for the first "
                       "page.",
        "pattern": f"^[A-Za-z0-9_-]{{0,{MAX_CURSOR_CHARS}}}$"})


def page_of(item_schema: type[ma.Schema], name: str) -> type[ma.Schema]:
    """A page schema named ``name`` (its OpenAPI component): ``{"items": [item], "next_cursor"}``."""
    return type(name, (ma.Schema,), {
        "items": ma.fields.List(ma.fields.Nested(item_schema), required=True),
        "next_cursor": ma.fields.String(required=True, allow_none=True, metadata={
            "description": "Pass as `cursor` to get the next page; null on the last page."}),
        "__doc__": f"A page of {item_schema.__name__.removesuffix('Schema')} items, newest first.",
    })
