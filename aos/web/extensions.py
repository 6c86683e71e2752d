"""Extensions live unbound here; create_app binds them."""

from __future__ import annotations

from flask_smorest import Api

from aos.web.errors import problem_from_http_exception


class AosApi(Api):
    """flask-smorest's Api with every HTTP error rendered as problem+json carrying a catalog code.

    No catch-all ``default`` response: aos.web.openapi documents each error status an operation
    can answer."""

    DEFAULT_ERROR_RESPONSE_NAME = None

    def handle_http_exception(self, error):  # noqa: ANN001, ANN201
        return problem_from_http_exception(error)


api = AosApi()
