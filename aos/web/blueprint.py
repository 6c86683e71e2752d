"""The blueprint every API resource uses: request bodies parsed by aos.web.json_body."""

from __future__ import annotations

from flask_smorest import Blueprint

from aos.web.json_body import BodyParser


class ApiBlueprint(Blueprint):
    """flask-smorest's Blueprint whose ``@blp.arguments`` read JSON with AOS's limits."""

    ARGUMENTS_PARSER = BodyParser()
