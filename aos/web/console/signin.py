"""Console sign-in and sign-out pages."""

from __future__ import annotations

from flask import redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from aos.errors import AosError
from aos.services.failures import entry_for
from aos.web.console import session as console_session
from aos.web.console.blueprint import bp


@bp.route("/sign-in", methods=["GET", "POST"])
def sign_in() -> ResponseReturnValue:
    """Paste an API key (or a JWT where the server accepts them); the console keeps a session, not the key."""
    target = console_session.safe_next(request.values.get("next")) or url_for("console.runs")
    if request.method == "GET":
        if console_session.signed_in() is not None:
            return redirect(target)
        return render_template("console/sign_in.html", next=target, jwt=console_session.accepts_tokens())
    try:
        console_session.sign_in(request.form.get("credential", ""))
    except AosError as exc:
        if exc.code not in ("AUTH_MISSING", "AUTH_INVALID", "AUTH_EXPIRED"):
            raise
        return (render_template("console/sign_in.html", next=target, error=exc, jwt=console_session.accepts_tokens()),
                entry_for(exc.code).http_status)
    return redirect(target)


@bp.post("/sign-out")
def sign_out() -> ResponseReturnValue:
    console_session.sign_out()
    return redirect(url_for("console.sign_in"))


@bp.route("/<path:unknown>")
def unknown(unknown: str) -> ResponseReturnValue:
    raise AosError("NOT_FOUND", f"the console has no page /console/{unknown}")
