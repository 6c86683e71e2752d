"""The web console over the Flask test client: sign-in and its cookie, CSRF on every form, scopes, another
tenant's objects, bad input, and the pages' content. The browser tests (test_console_browser.py) drive the same
pages in chromium with a real worker."""

from __future__ import annotations

import re
import uuid

import pytest

from aos.db.models import DeadLetter
from aos.db.session import session_scope
from aos.services import runs as run_service
from aos.services import workflows as workflow_service
from aos.services.tenancy import revoke_api_key
from tests.web.api_helpers import TRANSFORM_PLAN, new_tenant, one_step_plan

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    match = CSRF.search(html)
    assert match, "the page has no form with a CSRF token"
    return match.group(1)


def sign_in(client, key: str) -> str:
    """Sign in through the form; returns the session's CSRF token."""
    token = csrf_of(client.get("/console/sign-in").get_data(as_text=True))
    res = client.post("/console/sign-in", data={"credential": key, "csrf_token": token})
    assert res.status_code == 302, res.get_data(as_text=True)
    return csrf_of(client.get("/console/runs").get_data(as_text=True))


def code_of(res) -> str:
    match = re.search(r"<code>([A-Z][A-Z0-9_]+)</code>", res.get_data(as_text=True))
    assert match, res.get_data(as_text=True)[:2000]
    return match.group(1)


def queued_run(ctx, plan=None) -> str:
    """A run that stays queued: stored, never published (no publisher)."""
    return str(run_service.submit_run(ctx, plan or one_step_plan(), None))


@pytest.fixture
def console(app):
    """A fresh browser-like client (its own cookie jar)."""
    return app.test_client()


# --- sign-in and the session cookie --------------------------------------------------------------------------------


def test_signed_out_pages_go_to_sign_in_and_come_back_after(console, aos_env):
    ctx, key = new_tenant()
    run_id = queued_run(ctx)
    for part in (f"/console/runs/{run_id}/live", f"/console/runs/{run_id}/events"):  # fetched by a page's script
        res = console.get(part)
        assert res.status_code == 401 and code_of(res) == "AUTH_MISSING", part
    res = console.get("/console/runs?status=failed")
    assert res.status_code == 302 and res.location.startswith("/console/sign-in?next=")
    sign_page = console.get(res.location)
    token = csrf_of(sign_page.get_data(as_text=True))
    assert 'value="/console/runs?status=failed"' in sign_page.get_data(as_text=True)
    back = console.post("/console/sign-in", data={"credential": key, "csrf_token": token,
                                                  "next": "/console/runs?status=failed"})
    assert back.status_code == 302 and back.location == "/console/runs?status=failed"


def test_the_session_cookie_is_httponly_strict_scoped_and_holds_no_key(console, aos_env):
    _, key = new_tenant()
    token = csrf_of(console.get("/console/sign-in").get_data(as_text=True))
    res = console.post("/console/sign-in", data={"credential": key, "csrf_token": token})
    cookie = res.headers["Set-Cookie"]
    assert cookie.startswith("aos_console=")
    for flag in ("HttpOnly", "SameSite=Strict", "Path=/console"):
        assert flag in cookie, cookie
    assert "Secure" not in cookie  # AOS_ENV=test: plain http, like development
    secret = key.split("_", 2)[2]
    from itsdangerous import base64_decode

    raw = cookie.split("=", 1)[1].split(";", 1)[0].lstrip(".").split(".")[0]
    assert secret not in base64_decode(raw).decode(errors="replace") and secret not in cookie


def test_the_cookie_is_secure_outside_development(settings_env):
    from flask import Flask

    from aos.web.console.session import configure_cookie

    app = Flask("probe")
    settings_env(AOS_ENV="production", AOS_SECRET_KEY="k" + uuid.uuid4().hex + uuid.uuid4().hex)
    configure_cookie(app)
    assert app.config["SESSION_COOKIE_SECURE"] is True
    assert app.config["SESSION_COOKIE_SAMESITE"] == "Strict" and app.config["SESSION_COOKIE_HTTPONLY"] is True
    settings_env(AOS_ENV="development")
    configure_cookie(app)
    assert app.config["SESSION_COOKIE_SECURE"] is False


@pytest.mark.parametrize(("credential", "code"), [
    ("", "AUTH_MISSING"), ("aos_000000000000_nope", "AUTH_INVALID"), ("not a key", "AUTH_INVALID"),
    ("a.b.c", "AUTH_INVALID"),
])
def test_a_bad_credential_is_refused_with_its_code(console, aos_env, credential, code):
    token = csrf_of(console.get("/console/sign-in").get_data(as_text=True))
    res = console.post("/console/sign-in", data={"credential": credential, "csrf_token": token})
    assert res.status_code == 401 and code_of(res) == code
    assert console.get("/console/runs").status_code == 302  # still signed out


def test_sign_in_goes_nowhere_but_the_console(console, aos_env):
    _, key = new_tenant()
    for target in ("//evil.example/console/runs", "https://evil.example/", "/api/v1/runs", "/console\\@evil"):
        token = csrf_of(console.get("/console/sign-in").get_data(as_text=True))
        res = console.post("/console/sign-in", data={"credential": key, "csrf_token": token, "next": target})
        assert res.location == "/console/runs", target
        console.post("/console/sign-out", data={"csrf_token": csrf_of(console.get("/console/runs").get_data(
            as_text=True))})


def test_signing_out_and_revoking_the_key_end_the_session(console, aos_env):
    ctx, key = new_tenant()
    token = sign_in(console, key)
    assert console.post("/console/sign-out", data={"csrf_token": token}).status_code == 302
    assert console.get("/console/runs").status_code == 302
    sign_in(console, key)
    assert console.get("/console/runs").status_code == 200
    with session_scope() as s:
        revoke_api_key(s, ctx.tenant_id, key.split("_")[1])
    assert console.get("/console/runs").status_code == 302


# --- CSRF ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("forged", [None, "", "forged-token"])
def test_a_form_without_the_sessions_csrf_token_changes_nothing(console, aos_env, forged):
    ctx, key = new_tenant()
    token = sign_in(console, key)
    run_id = queued_run(ctx)
    data = {} if forged is None else {"csrf_token": forged}
    res = console.post(f"/console/runs/{run_id}/cancel", data=data)
    assert res.status_code == 403 and code_of(res) == "CSRF_INVALID"
    assert "nothing was changed" in res.get_data(as_text=True)
    assert run_service.get_run(ctx, run_id)["status"] == "queued"
    # another session's token is forged too
    other = console.application.test_client()
    other_token = sign_in(other, key)
    assert other_token != token
    res = console.post(f"/console/runs/{run_id}/cancel", data={"csrf_token": other_token})
    assert res.status_code == 403 and code_of(res) == "CSRF_INVALID"
    assert run_service.get_run(ctx, run_id)["status"] == "queued"
    ok = console.post(f"/console/runs/{run_id}/cancel", data={"csrf_token": token})
    assert ok.status_code == 302
    assert run_service.get_run(ctx, run_id)["status"] == "cancelled"


def test_a_forged_sign_in_or_sign_out_is_refused(console, aos_env):
    _, key = new_tenant()
    res = console.post("/console/sign-in", data={"credential": key, "csrf_token": "x"})
    assert res.status_code == 403 and code_of(res) == "CSRF_INVALID"
    sign_in(console, key)
    assert console.post("/console/sign-out", data={"csrf_token": "x"}).status_code == 403
    assert console.get("/console/runs").status_code == 200  # still signed in


def test_forged_dead_letter_and_schedule_forms_change_nothing(console, aos_env):
    ctx, key = new_tenant()
    sign_in(console, key)
    dl_id = _dead_letter(ctx)
    for path in (f"/console/dead-letters/{dl_id}/replay", f"/console/dead-letters/{dl_id}/discard"):
        res = console.post(path, data={"csrf_token": "forged"})
        assert res.status_code == 403 and code_of(res) == "CSRF_INVALID"
    with session_scope() as s:
        assert s.get(DeadLetter, dl_id).status == "open"


# --- scopes and tenants ----------------------------------------------------------------------------------------------


def test_another_tenants_run_is_a_404_on_every_page_and_form(console, aos_env):
    ctx, _ = new_tenant()
    _, other_key = new_tenant()
    run_id = queued_run(ctx)
    token = sign_in(console, other_key)
    for path in (f"/console/runs/{run_id}", f"/console/runs/{run_id}/live", f"/console/runs/{run_id}/events",
                 f"/console/runs/{run_id}/steps/pick"):
        res = console.get(path)
        assert res.status_code == 404 and code_of(res) == "NOT_FOUND", path
    for action in ("cancel", "resume", "signal"):
        res = console.post(f"/console/runs/{run_id}/{action}", data={"csrf_token": token, "name": "approval"})
        assert res.status_code == 404 and code_of(res) in ("NOT_FOUND", "RUN_NOT_FOUND"), action
    assert run_service.get_run(ctx, run_id)["status"] == "queued"


def test_another_tenants_dead_letter_is_a_404_and_stays_open(console, aos_env):
    ctx, _ = new_tenant()
    _, other_key = new_tenant()
    dl_id = _dead_letter(ctx)
    token = sign_in(console, other_key)
    for action in ("replay", "discard"):
        res = console.post(f"/console/dead-letters/{dl_id}/{action}", data={"csrf_token": token})
        assert res.status_code == 404 and code_of(res) == "DEAD_LETTER_NOT_FOUND"
    assert f"dl-{dl_id}" not in console.get("/console/dead-letters?status=").get_data(as_text=True)
    with session_scope() as s:
        assert s.get(DeadLetter, dl_id).status == "open"


def test_a_read_only_key_reads_but_cannot_act(console, aos_env):
    ctx, _ = new_tenant()
    from aos.db.models import Tenant
    from aos.services.tenancy import authenticate, create_api_key

    with session_scope() as s:
        key, _ = create_api_key(s, s.get(Tenant, ctx.tenant_id), "ro", ("runs:read",))
        authenticate(s, key)
    run_id = queued_run(ctx)
    token = sign_in(console, key)
    page = console.get(f"/console/runs/{run_id}").get_data(as_text=True)
    assert "Cancel run" not in page and "Dead letters" not in page
    res = console.post(f"/console/runs/{run_id}/cancel", data={"csrf_token": token})
    assert res.status_code == 403 and code_of(res) == "FORBIDDEN_SCOPE"
    assert console.get("/console/dead-letters").status_code == 403
    assert run_service.get_run(ctx, run_id)["status"] == "queued"


# --- bad input ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "status", "code"), [
    ("/console/runs?status=lost", 422, "VALIDATION_ERROR"),
    ("/console/runs?cursor=forged", 400, "CURSOR_INVALID"),
    ("/console/runs?name=" + "x" * 201, 422, "VALIDATION_ERROR"),
    ("/console/runs/not-a-uuid", 404, "NOT_FOUND"),
    (f"/console/runs/{uuid.uuid4()}", 404, "NOT_FOUND"),
    ("/console/dead-letters?kind=rocket", 422, "VALIDATION_ERROR"),
    ("/console/dead-letters?cursor=%00", 400, "CURSOR_INVALID"),
    ("/console/workflows/no%20such", 404, "NOT_FOUND"),
    ("/console/agents/12", 404, "NOT_FOUND"),
    ("/console/no-such-page", 404, "NOT_FOUND"),
])
def test_bad_input_gets_a_page_with_its_code(console, aos_env, path, status, code):
    _, key = new_tenant()
    sign_in(console, key)
    res = console.get(path)
    assert res.status_code == status, res.get_data(as_text=True)[:1500]
    assert res.mimetype == "text/html" and code_of(res) == code


def test_bad_actions_get_a_page_with_their_code_and_change_nothing(console, aos_env):
    ctx, key = new_tenant()
    token = sign_in(console, key)
    run_id = queued_run(ctx)
    res = console.post(f"/console/runs/{run_id}/resume", data={"csrf_token": token})
    assert res.status_code == 409 and code_of(res) == "CONFLICT"
    res = console.post("/console/dead-letters/abc/replay", data={"csrf_token": token})
    assert res.status_code == 404 and code_of(res) == "DEAD_LETTER_NOT_FOUND"
    res = console.post(f"/console/schedules/{uuid.uuid4()}/pause", data={"csrf_token": token})
    assert res.status_code == 404 and code_of(res) == "NOT_FOUND"
    assert run_service.get_run(ctx, run_id)["status"] == "queued"


def test_a_signal_to_a_run_that_does_not_wait_is_refused_and_changes_nothing(console, aos_env):
    ctx, key = new_tenant()
    token = sign_in(console, key)
    run_id = queued_run(ctx)
    page = console.get(f"/console/runs/{run_id}").get_data(as_text=True)
    assert "Send signal" not in page  # the form shows only on a waiting run
    for payload in ('{"approved": true}', "{not json"):
        res = console.post(f"/console/runs/{run_id}/signal",
                           data={"csrf_token": token, "name": "approval", "payload": payload, "key": "k1"})
        assert 400 <= res.status_code < 600
        assert re.search(r"<code>[A-Z][A-Z0-9_]+</code>", res.get_data(as_text=True))
        assert run_service.get_run(ctx, run_id)["status"] == "queued"


# --- pages -----------------------------------------------------------------------------------------------------------


def test_runs_filter_by_status_and_name_and_page_by_keyset(console, aos_env):
    ctx, key = new_tenant()
    sign_in(console, key)
    ids = [queued_run(ctx, one_step_plan(name=f"nightly-report-{i}")) for i in range(27)]
    queued_run(ctx, one_step_plan(name="50%_off"))
    other = queued_run(ctx, one_step_plan(name="cleanup"))
    run_service.cancel_run(ctx, other, None)
    first = console.get("/console/runs?name=REPORT").get_data(as_text=True)
    on_first = [i for i in ids if i in first]
    assert len(on_first) == 25 and other not in first and ids[-1] in first  # newest first
    older = re.search(r'href="(\?[^"]*cursor=[^"]+)" rel="next"', first).group(1).replace("&amp;", "&")
    second = console.get("/console/runs" + older).get_data(as_text=True)
    assert sorted(i for i in ids if i in second) == sorted(set(ids) - set(on_first))
    assert 'rel="next"' not in second
    cancelled = console.get("/console/runs?status=cancelled").get_data(as_text=True)
    assert other in cancelled and ids[0] not in cancelled
    literal = console.get("/console/runs?name=0%25_").get_data(as_text=True)  # % and _ are literal characters
    assert "50%_off" in literal and ids[0] not in literal


def test_the_run_page_shows_steps_budget_error_and_timeline(console, worker, aos_env):
    from tests.support.worker import wait_for_run
    from tests.web.api_helpers import FAILING_PLAN

    ctx, key = new_tenant()
    sign_in(console, key)
    from aos.tasks.publisher import CeleryPublisher

    good = run_service.submit_run(ctx, TRANSFORM_PLAN, CeleryPublisher())
    bad = run_service.submit_run(ctx, FAILING_PLAN, CeleryPublisher())
    wait_for_run(good), wait_for_run(bad)
    page = console.get(f"/console/runs/{good}").get_data(as_text=True)
    for text in ("transform-chain", "s-succeeded", "items", "qtys", "total", "json.transform", "Budget used",
                 "steps.total.output", "run.succeeded", "step.succeeded", "3 / 3"):
        assert text in page, text
    assert "data-live-run" not in page  # final: nothing to follow
    failed = console.get(f"/console/runs/{bad}").get_data(as_text=True)
    assert "JSON_SCHEMA_MISMATCH" in failed and "What to do" in failed and "Resume run" in failed
    step = console.get(f"/console/runs/{bad}/steps/check").get_data(as_text=True)
    assert "Attempt 1" in step and "raise_on_invalid" in step


def test_the_run_page_shows_its_amendments_and_applied_suggestions(console, aos_env):
    from aos.services import recovery
    from tests.services.recovery.helpers import failed_run, set_suggestion, word

    ctx, key = new_tenant()
    sign_in(console, key)
    amended = failed_run(ctx, "HTTP_TIMEOUT", f"{word()} timed out", timeout_s=5)
    sug = recovery.suggest_for_run(amended)
    set_suggestion(sug["id"], "RETRY", {"timeout_s": 60})
    recovery.apply_suggestion(ctx, amended, sug["id"], None)  # no publisher: the run stays queued
    section = _recovery_section(console.get(f"/console/runs/{amended}").get_data(as_text=True))
    assert f"step 0 (fetch) amended by suggestion {sug['id']}: timeout_s 5→60" in section
    assert '<th scope="row"><code>timeout_s</code></th><td class="mono small">5</td> <td class="mono small">60' \
        in section
    assert "Applied by person on " in section
    assert f'suggestion <span class="mono">{sug["id"]}</span> (RETRY) <span class="badge s-applied">applied</span>' \
        in section
    # the live part, which the page swaps in as events arrive, shows the same
    assert section == _recovery_section(console.get(f"/console/runs/{amended}/live").get_data(as_text=True))

    delayed = failed_run(ctx, "RATE_LIMITED", f"{word()} returned 429")
    sug = recovery.suggest_for_run(delayed)
    set_suggestion(sug["id"], "RETRY_AFTER", {"delay_s": 30})
    recovery.apply_suggestion(ctx, delayed, sug["id"], None)
    page = console.get(f"/console/runs/{delayed}").get_data(as_text=True)
    section = _recovery_section(page)
    assert "Amended steps" not in section
    assert f'Suggestion <span class="mono small">{sug["id"]}</span> (RETRY_AFTER, wait 30 s) for step ' \
           '<code>fetch</code>, applied by person' in section
    assert '<span class="badge s-retrying">retrying</span><div class="muted small">next try ' in page  # waits

    plain = queued_run(ctx)
    assert 'id="recovery"' not in console.get(f"/console/runs/{plain}").get_data(as_text=True)


def _recovery_section(page: str) -> str:
    """The run page's recovery section, its white space collapsed."""
    start = page.index('id="recovery"')
    return re.sub(r"\s+", " ", page[start:page.index("</section>", start)])


# --- acting on a recovery suggestion ----------------------------------------------------------------------------------


def _offered(ctx, code: str = "RATE_LIMITED", *, mode: str | None = None, parameters: dict | None = None,
             **run) -> tuple[str, dict]:
    """A failed run (written to Postgres) and its offered suggestion, made as the worker's task makes it; with
    ``mode`` the suggestion says what a model writer might (the offline one only suggests timing)."""
    from aos.services import recovery
    from tests.services.recovery.helpers import failed_run, set_suggestion, word

    run_id = failed_run(ctx, code, f"{word()} failed with {code}", **run)
    sug = recovery.suggest_for_run(run_id)
    if mode:
        set_suggestion(sug["id"], mode, parameters or {})
    return str(run_id), sug


def _flashes(page: str) -> list[str]:
    return [re.sub(r"\s+", " ", m) for m in re.findall(r'<p class="flash [a-z]*">(.*?)</p>', page, re.S)]


def _stored(run_id: str) -> tuple:
    from sqlalchemy import text

    with session_scope() as s:
        return s.execute(text("SELECT plan, plan_revision, status, version, (SELECT array_agg(status::text) FROM "
                              "recovery_suggestions sg WHERE sg.run_id = r.id) FROM runs r WHERE id = :r"),
                         {"r": run_id}).one()


def test_a_retry_applied_from_the_console_resumes_the_run_through_the_worker(console, worker, aos_env):
    from aos.services import recovery
    from tests.services.recovery.helpers import drain_until_final

    ctx, key = new_tenant()
    token = sign_in(console, key)
    # a step that succeeds once it runs again: the run failed (as written) on a rate limit
    run_id, sug = _offered(ctx, skill="json.transform", args={"input": {"a": 1}, "expr": "a"},
                           mode="RETRY", parameters={"delay_s": 0.2})
    page = console.get(f"/console/runs/{run_id}").get_data(as_text=True)
    will = re.sub(r"\s+", " ", page[page.index(f'id="will-{sug["id"]}"'):])
    assert "resume the run from step <code>fetch</code> after 0.2 s" in will and "amend step" not in will
    assert f'action="/console/runs/{run_id}/recovery/{sug["id"]}/apply"' in page
    assert 'data-confirm="Apply this suggestion? The run resumes from step fetch after 0.2 s."' in page
    res = console.post(f"/console/runs/{run_id}/recovery/{sug['id']}/apply", data={"csrf_token": token})
    assert res.status_code == 302 and res.location == f"/console/runs/{run_id}"
    after = console.get(res.location).get_data(as_text=True)
    assert _flashes(after) == ["Suggestion applied (RETRY): the run resumes from step fetch after 0.2 s."]
    assert 'id="suggestions"' not in after and "Apply suggestion" not in after  # nothing offered any more
    assert recovery.list_for_run(ctx, run_id)[0]["status"] == "applied"
    # the delayed resume is published by the outbox drain (beat's job) once the delay has passed
    assert drain_until_final(run_id, console.application.extensions["aos.publisher"]) == "succeeded", worker.tail()
    # the form sent again changes nothing and says so
    again = console.post(f"/console/runs/{run_id}/recovery/{sug['id']}/apply", data={"csrf_token": token})
    assert "was already applied by person" in _flashes(console.get(again.location).get_data(as_text=True))[0]


def test_a_plan_change_is_previewed_then_applied_as_an_amendment(console, aos_env):
    ctx, key = new_tenant()
    token = sign_in(console, key)
    run_id, sug = _offered(ctx, "HTTP_TIMEOUT", timeout_s=5, mode="RETRY", parameters={"timeout_s": 10})
    page = console.get(f"/console/runs/{run_id}").get_data(as_text=True)
    will = re.sub(r"\s+", " ", page[page.index(f'id="will-{sug["id"]}"'):page.index("</form>",
                                                                                        page.index("id=\"will-"))])
    assert "amend step <code>fetch</code> of this run" in will
    assert '<th scope="row"><code>timeout_s</code></th><td class="mono small">5</td> <td class="mono small">10' in will
    assert "resume the run from step <code>fetch</code> at once" in will
    assert "Step fetch of this run is amended (timeout_s 5 → 10), then the run resumes from step fetch at once." \
        in page
    assert _stored(run_id)[1] == 0  # previewing wrote nothing
    res = console.post(f"/console/runs/{run_id}/recovery/{sug['id']}/apply", data={"csrf_token": token})
    after = console.get(res.location).get_data(as_text=True)
    assert _flashes(after) == ["Suggestion applied (RETRY, amending the step): the run resumes from step fetch."]
    section = _recovery_section(after)
    assert f"step 0 (fetch) amended by suggestion {sug['id']}: timeout_s 5→10" in section
    plan, revision, _, _, statuses = _stored(run_id)  # requeued: a session's worker may be running it already
    assert (plan["steps"][0]["timeout_s"], revision, statuses) == (10, 1, ["applied"])


def test_an_invalid_amendment_is_flashed_with_its_code_and_changes_nothing(console, aos_env):
    ctx, key = new_tenant()
    token = sign_in(console, key)
    run_id, sug = _offered(ctx, "HTTP_BAD_REQUEST", mode="RETRY", parameters={"args": {"method": "FETCH"}})
    before = _stored(run_id)
    res = console.post(f"/console/runs/{run_id}/recovery/{sug['id']}/apply", data={"csrf_token": token})
    assert res.status_code == 302 and res.location == f"/console/runs/{run_id}"
    [flashed] = _flashes(console.get(res.location).get_data(as_text=True))
    assert flashed.startswith("Not applied, nothing was changed: AMENDMENT_INVALID: the amended step &#39;fetch&#39;")
    assert flashed.endswith("(at $.steps[0].args.method)")
    assert _stored(run_id) == before  # plan, revision, status, version; the suggestion still offered


def test_a_suggestion_aos_does_not_carry_out_says_what_to_do_instead(console, aos_env):
    ctx, key = new_tenant()
    token = sign_in(console, key)
    run_id, sug = _offered(ctx, "HTTP_NOT_FOUND")
    assert sug["mode"] == "ABORT"
    page = console.get(f"/console/runs/{run_id}").get_data(as_text=True)
    will = re.sub(r"\s+", " ", page[page.index(f'id="will-{sug["id"]}"'):])
    assert "Not applied from here:</strong> this suggestion is ABORT, which AOS does not carry out by itself: the step " \
           "cannot succeed as written: fix the plan and submit it as a new run." in will
    assert "<code>SUGGESTION_NOT_APPLICABLE</code>" in will and "Apply suggestion" not in page
    res = console.post(f"/console/runs/{run_id}/recovery/{sug['id']}/apply", data={"csrf_token": token})
    [flashed] = _flashes(console.get(res.location).get_data(as_text=True))
    assert flashed.startswith("Not applied, nothing was changed: SUGGESTION_NOT_APPLICABLE: this suggestion is ABORT")
    for forged in (uuid.uuid4(), "not-a-uuid"):  # a suggestion of no such id: flashed on the run's page too
        res = console.post(f"/console/runs/{run_id}/recovery/{forged}/apply", data={"csrf_token": token})
        assert res.status_code == 302
        assert "SUGGESTION_NOT_FOUND" in _flashes(console.get(res.location).get_data(as_text=True))[0]
    assert _stored(run_id)[2:] == ("failed", _stored(run_id)[3], ["offered"])


@pytest.mark.parametrize("forged", [None, "forged-token", "other-session"])
def test_apply_and_feedback_without_the_sessions_csrf_token_change_nothing(console, aos_env, forged):
    ctx, key = new_tenant()
    sign_in(console, key)
    run_id, sug = _offered(ctx)
    if forged == "other-session":
        forged = sign_in(console.application.test_client(), key)
    before = _stored(run_id)
    data = {} if forged is None else {"csrf_token": forged}
    for action, extra in (("apply", {}), ("feedback", {"helpful": "no"})):
        res = console.post(f"/console/runs/{run_id}/recovery/{sug['id']}/{action}", data={**data, **extra})
        assert res.status_code == 403 and code_of(res) == "CSRF_INVALID", action
        assert "nothing was changed" in res.get_data(as_text=True)
    assert _stored(run_id) == before
    from aos.services import recovery

    assert recovery.list_for_run(ctx, run_id)[0]["helpful"] is None


def test_a_viewer_without_runs_write_sees_the_suggestion_but_cannot_act(console, aos_env):
    from aos.db.models import Tenant
    from aos.services import recovery
    from aos.services.tenancy import authenticate, create_api_key

    ctx, _ = new_tenant()
    with session_scope() as s:
        key, _ = create_api_key(s, s.get(Tenant, ctx.tenant_id), "ro", ("runs:read",))
        authenticate(s, key)
    run_id, sug = _offered(ctx)
    token = sign_in(console, key)
    page = console.get(f"/console/runs/{run_id}").get_data(as_text=True)
    assert sug["explanation"] in page.replace("&#39;", "'") and "resume the run from step" in page
    assert "Apply suggestion" not in page and "Helpful" not in page and "needs a key with the" in page
    before = _stored(run_id)
    for action in ("apply", "feedback"):
        res = console.post(f"/console/runs/{run_id}/recovery/{sug['id']}/{action}",
                           data={"csrf_token": token, "helpful": "yes"})
        assert res.status_code == 403 and code_of(res) == "FORBIDDEN_SCOPE", action
    assert _stored(run_id) == before and recovery.list_for_run(ctx, run_id)[0]["helpful"] is None
    # another tenant's run: the 404 page, as for cancel
    _, other_key = new_tenant()
    other = console.application.test_client()
    other_token = sign_in(other, other_key)
    res = other.post(f"/console/runs/{run_id}/recovery/{sug['id']}/apply", data={"csrf_token": other_token})
    assert res.status_code == 404 and code_of(res) == "NOT_FOUND"
    assert _stored(run_id) == before


def test_feedback_is_recorded_and_shown(console, aos_env):
    from aos.services import recovery

    ctx, key = new_tenant()
    token = sign_in(console, key)
    run_id, sug = _offered(ctx)
    url = f"/console/runs/{run_id}/recovery/{sug['id']}/feedback"
    page = console.get(f"/console/runs/{run_id}").get_data(as_text=True)
    assert "Did this suggestion help?" in page and f'id="verdict-{sug["id"]}"' not in page
    res = console.post(url, data={"csrf_token": token, "helpful": "no"})
    page = console.get(res.location).get_data(as_text=True)
    assert _flashes(page) == ["Thank you: recorded as not helpful."]
    assert f'<span class="small" id="verdict-{sug["id"]}">You said: <strong>not helpful</strong>.</span>' in page
    assert f'id="not-helpful-{sug["id"]}" aria-pressed="true"' in page
    assert recovery.list_for_run(ctx, run_id)[0]["helpful"] is False
    res = console.post(url, data={"csrf_token": token, "helpful": "maybe"})
    assert "VALIDATION_ERROR" in _flashes(console.get(res.location).get_data(as_text=True))[0]
    console.post(url, data={"csrf_token": token, "helpful": "yes"})
    assert "You said: <strong>helpful</strong>." in console.get(f"/console/runs/{run_id}").get_data(as_text=True)
    assert recovery.list_for_run(ctx, run_id)[0]["helpful"] is True


def test_live_parts_stream_and_swap(console, aos_env):
    ctx, key = new_tenant()
    sign_in(console, key)
    run_id = queued_run(ctx)
    page = console.get(f"/console/runs/{run_id}").get_data(as_text=True)
    assert "data-live-run" in page and f"/console/runs/{run_id}/events" in page
    assert "run.queued" in console.get(f"/console/runs/{run_id}/live").get_data(as_text=True)
    run_service.cancel_run(ctx, run_id, None)
    res = console.get(f"/console/runs/{run_id}/events")
    assert res.mimetype == "text/event-stream"
    body = res.get_data(as_text=True)
    assert "event: run.queued" in body and "event: run.cancelled" in body and "event: end" in body


def test_workflows_agents_schedules_and_dead_letters_pages(console, aos_env):
    ctx, key = new_tenant()
    token = sign_in(console, key)
    workflow_service.save_workflow(ctx, "invoices", one_step_plan())
    workflow_service.save_workflow(ctx, "invoices", TRANSFORM_PLAN)
    from aos.services.agents import create_agent
    from aos.services.schedules import create_schedule

    agent = create_agent(ctx, "billing-bot", {"allowed_skills": ["json.transform"]})
    sc = create_schedule(ctx, "invoices", "0 9 * * 1-5", timezone="Europe/Paris")
    assert "invoices" in console.get("/console/workflows").get_data(as_text=True)
    wf = console.get("/console/workflows/invoices").get_data(as_text=True)
    assert "Version 1" in wf and "transform-chain" in wf
    assert "billing-bot" in console.get("/console/agents").get_data(as_text=True)
    assert "json.transform" in console.get(f"/console/agents/{agent['id']}").get_data(as_text=True)
    schedules = console.get("/console/schedules").get_data(as_text=True)
    assert "0 9 * * 1-5" in schedules and "Europe/Paris" in schedules
    assert console.post(f"/console/schedules/{sc['id']}/pause", data={"csrf_token": token}).status_code == 302
    assert "paused" in console.get("/console/schedules").get_data(as_text=True)
    dl_id = _dead_letter(ctx)
    assert f"dl-{dl_id}" in console.get("/console/dead-letters").get_data(as_text=True)
    res = console.post(f"/console/dead-letters/{dl_id}/discard", data={"csrf_token": token, "back": "?status="})
    assert res.status_code == 302 and res.location == "/console/dead-letters?status="
    with session_scope() as s:
        assert s.get(DeadLetter, dl_id).status == "discarded"


def test_pages_load_nothing_from_elsewhere(console, aos_env):
    _, key = new_tenant()
    sign_in(console, key)
    res = console.get("/console/runs")
    csp = res.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "form-action 'self'" in csp
    html = res.get_data(as_text=True)
    assert not re.search(r'(src|href)="(https?:)?//', html)
    assets = re.findall(r'(?:src|href)="(/console/assets/[^"]+)"', html)
    assert len(assets) == 2 and all("?v=" in a for a in assets)
    for url in assets:
        asset = console.get(url)
        assert asset.status_code == 200 and "max-age=86400" in asset.headers["Cache-Control"]
    assert console.get("/console/assets/../../app.py").status_code == 404


def _dead_letter(ctx) -> int:
    with session_scope() as s:
        dl = DeadLetter(tenant_id=ctx.tenant_id, kind="outbox", payload={"outbox_id": 0},
                        error_code="HTTP_SERVER_ERROR", error_message="boom", attempts=3)
        s.add(dl)
        s.flush()
        return dl.id


def test_the_signal_form_template_of_a_waiting_run(app, aos_env):
    """Only the template (waiting runs are built elsewhere): a run view with status ``waiting`` shows what it waits
    for and a labelled form with the CSRF token and an idempotency key, when the server can deliver signals."""
    from flask import g, render_template

    ctx, _ = new_tenant()
    run_id = queued_run(ctx)
    view = run_service.get_run(ctx, run_id)
    view.update(status="waiting", waiting={"signal": "approval", "reason": "a person approves the refund",
                                           "deadline": "2026-12-07T09:00:00+00:00", "schema": {"type": "object"}})
    with app.test_request_context(f"/console/runs/{run_id}"):
        g.console_ctx = ctx
        html = render_template("console/_run_live.html", run=view, events=[], final=False, cancellable=True,
                               resumable=False, signals_available=True, signal_key="k-123")
        without = render_template("console/_run_live.html", run=view, events=[], final=False, cancellable=True,
                                  resumable=False, signals_available=False, signal_key="k-123")
    assert "Waiting for <code>approval</code>" in html and "a person approves the refund" in html
    assert "2026-12-07 09:00:00 UTC" in html
    assert f'action="/console/runs/{run_id}/signal"' in html and 'name="key" value="k-123"' in html
    assert '<label for="signal-name">' in html and '<label for="signal-payload">' in html
    assert 'id="signal-name" name="name" required value="approval"' in html
    assert CSRF.search(html.split("/signal")[1])
    assert "Send signal" not in without and "cannot deliver signals" in without


def _jwt_door() -> bool:
    from aos.web.console import session as console_session

    return console_session.accepts_tokens()


@pytest.mark.skipif(not _jwt_door(), reason="JWTs are built on the `tenancy` branch (issue 13); this test runs once "
                    "it is merged")
def test_a_jwt_signs_in_and_its_session_ends_with_the_token(console, settings_env, aos_env):
    import time

    from tests.support.jwt_issuer import AUDIENCE, HS_SECRET, ISSUER, claims, sign_hs

    settings_env(AOS_JWT_SECRET=HS_SECRET, AOS_JWT_ISSUER=ISSUER, AOS_JWT_AUDIENCE=AUDIENCE)
    ctx, _ = new_tenant()
    run_id = queued_run(ctx)
    token = csrf_of(console.get("/console/sign-in").get_data(as_text=True))
    expired = console.post("/console/sign-in", data={"credential": sign_hs(claims(ctx.tenant_name, ttl_s=-60)),
                                                     "csrf_token": token})
    assert expired.status_code == 401 and code_of(expired) in ("AUTH_EXPIRED", "AUTH_INVALID")
    short = sign_hs(claims(ctx.tenant_name, ttl_s=3))
    assert console.post("/console/sign-in", data={"credential": short, "csrf_token": token}).status_code == 302
    assert run_id in console.get("/console/runs").get_data(as_text=True)
    time.sleep(3.5)
    assert console.get("/console/runs").status_code == 302  # the token expired: so did the session
