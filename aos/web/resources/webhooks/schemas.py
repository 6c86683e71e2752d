"""Schemas of the webhook resource (admin scope)."""

from __future__ import annotations

import marshmallow as ma

from aos.services.webhooks import URL_MAX_CHARS, URL_PATTERN
from aos.web.schemas import BodySchema, FullMatch


class WebhookSchema(ma.Schema):
    """The tenant's webhook endpoint. ``secret`` appears only in the answer that generated it."""

    url = ma.fields.String(required=True, allow_none=True, metadata={"description": "Where events are POSTed."})
    secret_set = ma.fields.Boolean(required=True)
    events = ma.fields.List(ma.fields.String(), required=True,
                            metadata={"description": "Events delivered: run.succeeded, run.failed, budget.warning."})
    secret = ma.fields.String(metadata={
        "description": "The signing secret, shown once when generated: verify AOS-Signature with it "
                       "(docs/webhooks.md)."})


class WebhookUpdateSchema(BodySchema):
    url = ma.fields.String(required=True, allow_none=True, validate=[
        ma.validate.Length(min=1, max=URL_MAX_CHARS), FullMatch(URL_PATTERN, error="expected http(s)://host[:port][/path]")],
        metadata={"description": "An http(s) URL (its host is checked by the SSRF guard, and must resolve); "
                                 "null turns webhooks off."})
