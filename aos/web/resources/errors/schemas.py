"""Schemas of the error catalog resource."""

from __future__ import annotations

import marshmallow as ma


class CatalogEntrySchema(ma.Schema):
    code = ma.fields.String(required=True)
    category = ma.fields.String(required=True)
    retryable = ma.fields.Boolean(required=True)
    recovery_mode = ma.fields.String(required=True)
    http_status = ma.fields.Integer(required=True, metadata={"description": "Status of the code in the API."})
    description = ma.fields.String(required=True)
    suggestion = ma.fields.String(required=True, metadata={"description": "What to do next, in one line."})


class CatalogSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(CatalogEntrySchema), required=True)
