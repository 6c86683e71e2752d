"""The failure catalog: every error code AOS can produce, in one place.

Each entry has a category, a retryable flag, a recovery mode, the HTTP status
it surfaces with in the API, a description, and matching rules. ``CATALOG.match``
classifies any failure (an exception, an HTTP status, a message) into an entry;
every failure gets a real code, never ``unknown``.

Rules name exception classes by string (bare ``ConnectTimeout`` or qualified
``httpx.ConnectTimeout``) and are matched along the exception's MRO, so this
module imports none of the libraries whose errors it knows: it stays cheap to
import from the web layer, the CLI and every worker.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum


class Category(StrEnum):
    REQUEST = "request"          # the caller sent something wrong
    AUTH = "auth"
    PLAN = "plan"
    POLICY = "policy"            # capability / budget / quota
    TRANSIENT = "transient"      # network blips, timeouts, overload
    RATE_LIMIT = "rate_limit"
    PERMANENT = "permanent"      # the remote said no and will keep saying no
    RESOURCE = "resource"
    SYSTEM = "system"            # our own infrastructure
    DATA = "data"                # a step got or produced data it cannot use as is
    DETERMINISM = "determinism"  # golden files and replay


class RecoveryMode(StrEnum):
    RETRY = "RETRY"
    RETRY_AFTER = "RETRY_AFTER"
    FALLBACK = "FALLBACK"
    SKIP = "SKIP"
    ABORT = "ABORT"
    ESCALATE = "ESCALATE"
    CIRCUIT_OPEN = "CIRCUIT_OPEN"


@dataclass(frozen=True)
class MatchRule:
    """A failure matches when every given part matches."""

    exception: str | None = None          # qualified or bare class name, matched along the MRO
    http_status: int | None = None
    message: str | None = None            # regex, case-insensitive


@dataclass(frozen=True)
class CatalogEntry:
    code: str
    category: Category
    retryable: bool
    recovery: RecoveryMode
    http_status: int
    description: str
    rules: tuple[MatchRule, ...] = field(default_factory=tuple)


CODE_PATTERN = re.compile(r"^[A-Z][A-Z0-9_]+$")
CLIENT_ERROR_CODE = "HTTP_CLIENT_ERROR"
SERVER_ERROR_CODE = "HTTP_SERVER_ERROR"


class FailureCatalog:
    def __init__(self, entries: Iterable[CatalogEntry], fallback: str) -> None:
        self._entries: dict[str, CatalogEntry] = {}
        for e in entries:
            if e.code in self._entries:
                raise ValueError(f"duplicate catalog code {e.code}")
            if not CODE_PATTERN.match(e.code):
                raise ValueError(f"catalog code {e.code!r} is not UPPER_SNAKE_CASE")
            if not 400 <= e.http_status <= 599:
                raise ValueError(f"catalog code {e.code} has HTTP status {e.http_status}, not an error status")
            self._entries[e.code] = e
        self._fallback = self._entries[fallback]
        # A rule that names only a status is how a raw upstream status is classified.
        self._by_status: dict[int, CatalogEntry] = {}
        for e in self._entries.values():
            for rule in e.rules:
                if rule.http_status is not None and rule.exception is None and rule.message is None:
                    self._by_status.setdefault(rule.http_status, e)

    def __contains__(self, code: object) -> bool:
        return code in self._entries

    def __iter__(self) -> Iterator[CatalogEntry]:
        return iter(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def fallback(self) -> CatalogEntry:
        """The entry of a failure nothing else matches (a real, documented code)."""
        return self._fallback

    def codes(self) -> list[str]:
        return list(self._entries)

    def get(self, code: str) -> CatalogEntry:
        """The entry for ``code``; KeyError for a code the catalog does not have."""
        return self._entries[code]

    def for_http_status(self, status: int) -> CatalogEntry:
        """The entry of an upstream HTTP error status: its own code, else the generic 4xx or 5xx one."""
        if status in self._by_status:
            return self._by_status[status]
        if 400 <= status <= 499 and CLIENT_ERROR_CODE in self._entries:
            return self._entries[CLIENT_ERROR_CODE]
        if 500 <= status <= 599 and SERVER_ERROR_CODE in self._entries:
            return self._entries[SERVER_ERROR_CODE]
        raise ValueError(f"HTTP status {status} is not an error status")

    def match(self, error: BaseException | None = None, *, http_status: int | None = None,
              message: str | None = None) -> CatalogEntry:
        """Classify a failure. Most specific rule wins; the fallback is a real, documented code.

        An error that names a catalog code itself (``SkillError``, ``AosError``)
        keeps it. Otherwise every rule is scored: an exception class nearer the
        concrete class beats one further up its MRO, and a rule that also pins
        a status or a message beats one that does not.
        """
        code = getattr(error, "code", None)
        if isinstance(code, str) and code in self._entries:
            return self._entries[code]
        if http_status is None:
            http_status = _status_of(error)
        msg = message if message is not None else (str(error) if error is not None else "")
        names = _class_names(error)
        best: tuple[int, CatalogEntry] | None = None
        for entry in self._entries.values():
            for rule in entry.rules:
                score = _score(rule, names, http_status, msg)
                if score is not None and (best is None or score > best[0]):
                    best = (score, entry)
        if best is not None:
            return best[1]
        if http_status is not None and 400 <= http_status <= 599:
            return self.for_http_status(http_status)
        return self._fallback


def _status_of(error: BaseException | None) -> int | None:
    """The HTTP status an exception carries (SDK status errors, ``httpx.HTTPStatusError``)."""
    if error is None:
        return None
    status = getattr(error, "status_code", None)
    if status is None:
        status = getattr(getattr(error, "response", None), "status_code", None)
    return status if isinstance(status, int) else None


def _class_names(error: BaseException | None) -> dict[str, tuple[int, bool]]:
    """Every name a rule may use for the error's classes: name -> (MRO depth, is qualified).

    A class is known by its bare name, its full dotted name and its top-level
    package plus name (``psycopg.errors.SyntaxError`` is also ``psycopg.SyntaxError``),
    so a rule survives a library moving a class between its private modules.
    """
    names: dict[str, tuple[int, bool]] = {}
    if error is None:
        return names
    for depth, cls in enumerate(type(error).__mro__):
        module = cls.__module__
        names.setdefault(cls.__name__, (depth, False))
        names.setdefault(f"{module}.{cls.__qualname__}", (depth, True))
        names.setdefault(f"{module.split('.')[0]}.{cls.__qualname__}", (depth, True))
    return names


_EXCEPTION_BASE = 200   # minus 2 per MRO step away from the concrete class
_STATUS_BONUS = 100     # a rule pinning a status is more specific than any bare class rule
_MESSAGE_BONUS = 50


def _score(rule: MatchRule, names: dict[str, tuple[int, bool]], http_status: int | None,
           msg: str) -> int | None:
    score = 0
    if rule.exception is not None:
        hit = names.get(rule.exception)
        if hit is None:
            return None
        depth, qualified = hit
        # nearer the concrete class is more specific; so is a qualified name over a bare
        # one at the same depth (redis.exceptions.ConnectionError vs builtins.ConnectionError)
        score += _EXCEPTION_BASE - 2 * depth + (1 if qualified else 0)
    if rule.http_status is not None:
        if rule.http_status != http_status:
            return None
        score += _STATUS_BONUS
    if rule.message is not None:
        if not re.search(rule.message, msg, re.IGNORECASE):
            return None
        score += _MESSAGE_BONUS
    return score if score > 0 else None


def _e(code: str, category: Category, retryable: bool, recovery: RecoveryMode, http_status: int,
       description: str, *rules: MatchRule) -> CatalogEntry:
    return CatalogEntry(code, category, retryable, recovery, http_status, description, tuple(rules))


def _exc(*names: str) -> tuple[MatchRule, ...]:
    return tuple(MatchRule(exception=n) for n in names)


def _httpx(*names: str, message: str | None = None) -> tuple[MatchRule, ...]:
    """The same rule for httpx and httpx2 (its successor, which the LLM SDKs are built on)."""
    return tuple(MatchRule(exception=f"{pkg}.{n}", message=message) for pkg in ("httpx", "httpx2") for n in names)


def _llm(*names: str, message: str | None = None, http_status: int | None = None) -> tuple[MatchRule, ...]:
    """The same rule for both LLM SDKs, whose exception classes share their names."""
    return tuple(MatchRule(exception=f"{sdk}.{n}", message=message, http_status=http_status)
                 for sdk in ("anthropic", "openai") for n in names)


C, R = Category, RecoveryMode
_CONTEXT_TOO_LONG = r"context[_ ]length|context window|too long|max(imum)?[_ ]tokens|too many tokens"
_CONTENT_FILTERED = r"content[_ ]?(filter|policy|management)|safety system|flagged"
_DISK_OR_FDS = r"\[Errno (23|24|28|122)\]|no space left|too many open files|disk quota"
_TLS = r"\bSSL\b|\bTLS\b|certificate|CERTIFICATE_VERIFY_FAILED|WRONG_VERSION_NUMBER"
_DNS = r"name or service not known|nodename nor servname|name resolution|getaddrinfo failed|no address"

ENTRIES: list[CatalogEntry] = [
    # --- request / API ---
    _e("BODY_MALFORMED", C.REQUEST, False, R.ABORT, 400,
       "The request body is not valid JSON; fix the body (and its Content-Type) and send it again."),
    _e("JSON_NUMBER_TOO_LARGE", C.REQUEST, False, R.ABORT, 422,
       "An integer in the request body has more digits than AOS accepts (4,300: no JSON library can print "
       "one longer); the `problems` name its path. Send such a number as a string."),
    _e("JSON_TOO_DEEP", C.REQUEST, False, R.ABORT, 422,
       "A JSON value nests deeper than AOS accepts (a plan's inputs and step args, a step's data, a request "
       "body: the limits are in docs/security.md); the `problems` or the message name its path. Flatten it."),
    _e("VALIDATION_ERROR", C.REQUEST, False, R.ABORT, 422,
       "The request does not match the operation's schema (a missing or unknown field, a wrong type); "
       "fix the fields named in `problems` and send it again."),
    _e("CURSOR_INVALID", C.REQUEST, False, R.ABORT, 400,
       "The pagination cursor was not returned by this API (or was altered); pass `next_cursor` from the "
       "previous page unchanged, or omit it to start from the first page."),
    _e("NOT_FOUND", C.REQUEST, False, R.ABORT, 404,
       "No such object for this tenant; check the id and the API key's tenant."),
    _e("METHOD_NOT_ALLOWED", C.REQUEST, False, R.ABORT, 405,
       "The resource does not support this HTTP method; see the `Allow` header or the OpenAPI document."),
    _e("REQUEST_TOO_LARGE", C.REQUEST, False, R.ABORT, 413,
       "The request body exceeds AOS_MAX_REQUEST_BYTES; send less (large inputs by reference) or raise the limit."),
    _e("CONFLICT", C.REQUEST, False, R.ABORT, 409,
       "The object changed or is in a state that does not allow this operation; fetch it again and decide anew.",
       *_exc("sqlalchemy.exc.IntegrityError")),
    _e("RATE_LIMITED", C.RATE_LIMIT, True, R.RETRY_AFTER, 429,
       "Too many requests (to AOS, or a 429 from an upstream API); wait for the `Retry-After` hint, then retry.",
       MatchRule(http_status=429)),
    _e("QUOTA_EXCEEDED", C.POLICY, False, R.ESCALATE, 429,
       "A daily quota of the tenant (requests, runs, tokens, embeddings) is used up; `details.quota` names it "
       "and `details.resets_at` says when it resets (`Retry-After` too); wait, or ask an operator to raise it "
       "(GET /api/v1/quotas shows limits and usage)."),
    # --- auth ---
    _e("AUTH_MISSING", C.AUTH, False, R.ABORT, 401,
       "No `Authorization: Bearer <api key>` header; send an API key (`aos keys create`)."),
    _e("AUTH_INVALID", C.AUTH, False, R.ABORT, 401,
       "The API key or bearer token is unknown, malformed, revoked or fails a check (signature, issuer, "
       "audience, not yet valid, unknown tenant); create a new key with `aos keys` or get a new token."),
    _e("AUTH_EXPIRED", C.AUTH, False, R.ABORT, 401,
       "The bearer token (JWT) has expired; get a new one from your identity provider."),
    _e("FORBIDDEN_SCOPE", C.AUTH, False, R.ABORT, 403,
       "The API key lacks the scope this operation needs; use a key that has it."),
    _e("CSRF_INVALID", C.AUTH, False, R.ABORT, 403,
       "A console form arrived without this session's CSRF token (forged by another site, or a page left open "
       "across a sign-in); nothing was changed: reload the page and submit the form again."),
    # --- objects of the API ---
    _e("TENANT_NOT_FOUND", C.REQUEST, False, R.ABORT, 404,
       "No such tenant; list tenants with `aos tenants list` and check the id."),
    _e("AGENT_NOT_FOUND", C.REQUEST, False, R.ABORT, 404,
       "No such agent for this tenant; check the agent id or create the agent first."),
    _e("WORKFLOW_NOT_FOUND", C.REQUEST, False, R.ABORT, 404,
       "No such stored workflow (or version) for this tenant; check its name and version."),
    _e("RUN_NOT_FOUND", C.REQUEST, False, R.ABORT, 404,
       "No such run for this tenant; check the run id and the API key's tenant."),
    _e("STEP_NOT_FOUND", C.REQUEST, False, R.ABORT, 404,
       "The run has no step with this id; the plan's step ids are listed in the run's JSON."),
    _e("DEAD_LETTER_NOT_FOUND", C.REQUEST, False, R.ABORT, 404,
       "No such dead letter (it may have been replayed, discarded or archived); list them with `aos dlq list`."),
    _e("DEAD_LETTER_NOT_REPLAYABLE", C.REQUEST, False, R.ABORT, 409,
       "This dead letter cannot be replayed (it was discarded or resolved, or its work is a periodic job or is "
       "gone); discard it, or fix the cause and start the work anew."),
    _e("SUGGESTION_NOT_FOUND", C.REQUEST, False, R.ABORT, 404,
       "No such recovery suggestion for this run and tenant; list them with `GET /api/v1/runs/{id}/recovery`."),
    _e("SUGGESTION_NOT_APPLICABLE", C.REQUEST, False, R.ABORT, 409,
       "This suggestion cannot be applied to the run as it is: the run is no longer failed at that step, or its "
       "mode is not one AOS can carry out (ABORT, SKIP, ESCALATE: the message says what to do instead); read the "
       "run and its latest suggestion again."),
    _e("AMENDMENT_INVALID", C.PLAN, False, R.ABORT, 422,
       "The suggestion's change to the failed step would make a plan that submission refuses (args against the "
       "skill's schema, an unknown fallback skill, a timeout or attempt count out of range, the agent's "
       "capability policy); `problems` names each. Nothing was changed: fix the plan and submit it as a new run."),
    _e("RUN_NOT_RESUMABLE", C.REQUEST, False, R.ABORT, 409,
       "Only a failed or dead-lettered run can be resumed; check the run's status before resuming it."),
    _e("RUN_ALREADY_FINISHED", C.REQUEST, False, R.ABORT, 409,
       "The run already finished (succeeded, failed or cancelled), so it cannot be cancelled or signalled; "
       "submit a new run instead."),
    # --- plans ---
    _e("PLAN_INVALID", C.PLAN, False, R.ABORT, 422,
       "The plan does not match the plan schema; fix the steps named in `problems` and submit it again."),
    _e("SKILL_NOT_FOUND", C.PLAN, False, R.ABORT, 422,
       "A step names a skill the registry does not have; see `aos skills list` for the names and versions."),
    _e("REF_UNRESOLVED", C.PLAN, False, R.ABORT, 422,
       "A reference names an input or step output that does not exist (or not yet); reference only inputs "
       "and earlier steps."),
    _e("EXPR_INVALID", C.PLAN, False, R.ABORT, 422,
       "A JMESPath expression does not parse or cannot be applied to its data; fix the expression.",
       *_exc("jmespath.ParseError", "jmespath.LexerError", "jmespath.JMESPathError")),
    _e("EXPR_TOO_COMPLEX", C.PLAN, False, R.ABORT, 422,
       "A JMESPath expression nests deeper or runs longer than AOS evaluates safely (docs/security.md); the "
       "problem names its path. Split it into several json.transform steps."),
    _e("SKILL_ARGS_INVALID", C.PLAN, False, R.ABORT, 422,
       "A step's resolved args do not match its skill's input schema; fix the args named in `problems`.",
       *_exc("jsonschema.exceptions.SchemaError")),
    _e("JSON_SCHEMA_MISMATCH", C.PLAN, False, R.ABORT, 422,
       "A JSON value does not match the schema it must follow; the details give each path and the rule it broke.",
       *_exc("jsonschema.exceptions.ValidationError")),
    _e("SCHEDULE_INVALID", C.PLAN, False, R.ABORT, 422,
       "The schedule's cron expression does not parse; use five fields such as `*/15 * * * *`.",
       *_exc("croniter.CroniterError", "croniter.CroniterBadCronError")),
    # --- policy ---
    _e("BUDGET_EXCEEDED", C.POLICY, False, R.ESCALATE, 402,
       "The step would exceed the run's or the tenant's budget, so it did not start; raise the budget and "
       "resume the run, or simplify the plan."),
    _e("CAPABILITY_DENIED", C.POLICY, False, R.ABORT, 403,
       "The agent's capability policy does not allow this skill, host or connection; change the policy or the plan."),
    # --- execution ---
    _e("STEP_TIMEOUT", C.TRANSIENT, True, R.RETRY, 504,
       "The step exceeded its timeout and was stopped; it is retried with backoff, raise `timeout_s` if it "
       "is simply slow.",
       *_exc("SoftTimeLimitExceeded", "TimeLimitExceeded", "celery.exceptions.TimeoutError", "TimeoutError")),
    _e("WORKER_LOST", C.TRANSIENT, True, R.RETRY, 503,
       "The worker running the step died before it finished; the step is redelivered from its last checkpoint.",
       *_exc("WorkerLostError")),
    _e("STEP_POISONED", C.SYSTEM, False, R.ESCALATE, 500,
       "The step's deliveries died AOS_POISON_DELIVERIES times in a row (the worker was killed or timed out, or "
       "the step path raised), so it was quarantined: the run failed and the step is a dead letter. Look at the "
       "worker logs for the delivery's pid, fix the plan or the skill, then `aos dlq replay` it."),
    _e("OUTPUT_TOO_LARGE", C.DATA, False, R.ABORT, 422,
       "The step's output (or the raw response kept for golden replay) is larger than "
       "AOS_MAX_STEP_OUTPUT_BYTES, so it was not stored; select less with a narrower expression or request, "
       "or raise the limit."),
    _e("ARGS_TOO_LARGE", C.DATA, False, R.ABORT, 422,
       "The step's resolved args are larger than AOS_MAX_STEP_ARGS_BYTES, so the skill was not called; "
       "reference a smaller part of the earlier outputs, or raise the limit."),
    _e("DATA_NOT_STORABLE", C.DATA, False, R.ABORT, 422,
       "The step's args or output cannot be stored as JSON (NaN or infinity, a NUL character, nesting too "
       "deep); change the step so that it produces plain JSON."),
    _e("RUN_CANCELLED", C.REQUEST, False, R.ABORT, 409,
       "The run was cancelled, so no further step runs; submit or resume a run to continue the work.",
       *_exc("celery.exceptions.TaskRevokedError")),
    _e("SIGNAL_TIMEOUT", C.PERMANENT, False, R.ESCALATE, 409,
       "The step waited for a signal (e.g. an approval) past its deadline; its on_error decides what follows. "
       "Resume the run to wait again, or raise the step's timeout_s."),
    _e("CIRCUIT_OPEN", C.TRANSIENT, True, R.RETRY_AFTER, 503,
       "Calls to this upstream (host or provider) are paused because it kept failing: the step did not call "
       "it, spent no attempt, and retries when the breaker's cool-down ends (one probe goes first)."),
    _e("APPROVAL_REJECTED", C.PERMANENT, False, R.ABORT, 409,
       "A person answered a human.approve step with approved=false; the step failed, and its on_error decides "
       "what follows (SKIP goes on without the approval)."),
    _e("RUN_NOT_WAITING", C.REQUEST, False, R.ABORT, 409,
       "The run does not wait for a signal now (it runs, finished, or was never parked); nothing was changed. "
       "`GET /runs/{id}` shows its status and what it waits for, if anything."),
    _e("SIGNAL_NOT_AWAITED", C.REQUEST, False, R.ABORT, 409,
       "The run waits for another signal than the one sent; nothing was changed. The run's `waiting.signal` "
       "names the one it waits for."),
    _e("SIGNAL_PAYLOAD_INVALID", C.REQUEST, False, R.ABORT, 422,
       "The signal's payload does not match the JSON Schema the waiting step gave; nothing was changed. Fix "
       "the fields named in `problems` and send it again (`waiting.schema` shows the schema)."),
    _e("IDEMPOTENCY_KEY_REUSED", C.REQUEST, False, R.ABORT, 409,
       "This idempotency key was already used for another signal or payload on this run; nothing was changed. "
       "Send a new key for a new delivery, or the same payload to get the first answer again."),
    _e("SKILL_CRASHED", C.SYSTEM, False, R.ESCALATE, 500,
       "A skill raised an unexpected exception (a bug in the skill); the message names its type, the logs "
       "have the stack trace."),
    _e("INTERNAL_ERROR", C.SYSTEM, False, R.ESCALATE, 500,
       "An unexpected error inside AOS; it was logged with its stack trace, report it with the request id."),
    _e("NOT_IMPLEMENTED", C.SYSTEM, False, R.ABORT, 501,
       "The skill or operation does not implement this feature (yet); use another skill or option.",
       *_exc("NotImplementedError", "HTTPNotImplementedError")),
    # --- our infrastructure ---
    _e("SERVICE_UNAVAILABLE", C.SYSTEM, True, R.RETRY, 503,
       "A dependency of AOS is unreachable; retry later and see `aos doctor` for which one."),
    _e("DB_UNAVAILABLE", C.SYSTEM, True, R.RETRY, 503,
       "AOS's database is unreachable or refused the connection; the work is retried, check AOS_DATABASE_URL "
       "and `aos doctor`.",
       *_exc("sqlalchemy.exc.OperationalError", "sqlalchemy.exc.InterfaceError", "sqlalchemy.exc.TimeoutError")),
    _e("BROKER_UNAVAILABLE", C.SYSTEM, True, R.RETRY, 503,
       "The Celery broker is unreachable; accepted runs stay in the outbox until it is back, check AOS_BROKER_URL.",
       *_exc("kombu.exceptions.OperationalError", "redis.exceptions.ConnectionError",
             "redis.exceptions.TimeoutError")),
    _e("DB_CONFLICT", C.TRANSIENT, True, R.RETRY, 409,
       "Another worker changed the same row first (optimistic-lock version, serialization failure or "
       "deadlock); the operation is retried on fresh state.",
       *_exc("sqlalchemy.orm.exc.StaleDataError", "psycopg.errors.SerializationFailure",
             "psycopg.errors.DeadlockDetected", "psycopg.errors.LockNotAvailable")),
    _e("LEASE_HELD", C.TRANSIENT, True, R.RETRY, 409,
       "Another process holds the lease (lock or leadership) on this resource; wait for it to expire or be released."),
    _e("CONFIG_INVALID", C.SYSTEM, False, R.ABORT, 500,
       "An AOS_* setting is missing or has a value AOS cannot use; fix the setting the message names "
       "and restart.",
       *_exc("aos.config.ConfigError", "aos.skills.llm.pricing.PricingError")),
    _e("OUT_OF_MEMORY", C.RESOURCE, False, R.ESCALATE, 503,
       "The worker ran out of memory on this step; cap the data it handles (row cap, response cap) or give "
       "workers more memory, then resume.",
       *_exc("MemoryError")),
    _e("RESOURCE_EXHAUSTED", C.RESOURCE, True, R.RETRY, 503,
       "The machine ran out of disk space or file descriptors; it is retried later, free space or raise "
       "`ulimit -n` meanwhile.",
       MatchRule(exception="OSError", message=_DISK_OR_FDS)),
    _e("PERMISSION_DENIED", C.SYSTEM, False, R.ESCALATE, 500,
       "The operating system refused access to a file or resource; fix its permissions or the worker's user, "
       "then resume.",
       *_exc("PermissionError")),
    _e("FILE_NOT_FOUND", C.SYSTEM, False, R.ABORT, 500,
       "A file or directory the step needs does not exist; check the path and the worker's data directory.",
       *_exc("FileNotFoundError", "NotADirectoryError", "IsADirectoryError")),
    _e("IO_ERROR", C.SYSTEM, True, R.RETRY, 503,
       "An operating-system call failed (I/O error, device busy); it is retried, check the worker's disks "
       "if it persists.",
       *_exc("OSError")),
    _e("NETWORK_ERROR", C.TRANSIENT, True, R.RETRY, 502,
       "A network connection was refused, reset or broken; it is retried with backoff.",
       *_exc("ConnectionError")),
    # --- golden files and replay ---
    _e("GOLDEN_SIGNATURE_INVALID", C.DETERMINISM, False, R.ABORT, 422,
       "The golden file's HMAC signature does not verify: it was altered or signed with another key; "
       "re-record it or use the right AOS_GOLDEN_SECRET."),
    _e("GOLDEN_HASH_MISMATCH", C.DETERMINISM, False, R.ABORT, 422,
       "A step's recorded hash does not match its recorded content, so the file is corrupt; re-record it."),
    _e("GOLDEN_DIVERGED", C.DETERMINISM, False, R.ESCALATE, 409,
       "Replay produced a different result than the recording at the step named in the details; find what "
       "made that step non-deterministic."),
    _e("GOLDEN_FORMAT_INVALID", C.DETERMINISM, False, R.ABORT, 422,
       "The file is not a golden file of a format version AOS reads; re-record it with `aos golden record`."),
    _e("GOLDEN_SECRET_MISSING", C.DETERMINISM, False, R.ABORT, 503,
       "Golden files cannot be signed or verified because the server has no golden key: set AOS_GOLDEN_SECRET "
       "(a long random string; `aos dev` generates one in its data directory) and restart the API."),
    _e("GOLDEN_KEY_UNKNOWN", C.DETERMINISM, False, R.ABORT, 422,
       "The golden file was signed with a key id this AOS does not know; add that key's secret to "
       "AOS_GOLDEN_KEYS (key rotation keeps old keys there) or re-record the run."),
    _e("GOLDEN_REPLAY_MISSING", C.DETERMINISM, False, R.ABORT, 409,
       "A replay needed a response of a non-deterministic skill that the recording does not have (the replay "
       "took another path, e.g. one more attempt); a replay never calls out, so the step fails: see the "
       "divergence the replay reports."),
    _e("GOLDEN_REPLAY_TIMEOUT", C.DETERMINISM, False, R.ABORT, 504,
       "The replay run did not finish within AOS_GOLDEN_REPLAY_TIMEOUT_S; it goes on: check that workers are "
       "running and follow the run named in the details."),
    # --- data a skill handles ---
    _e("ENCODING_ERROR", C.DATA, False, R.ABORT, 422,
       "Text could not be encoded or decoded in the expected charset; check the input's or the upstream "
       "response's encoding.",
       *_exc("UnicodeError")),
    _e("JSON_DECODE_ERROR", C.DATA, False, R.ABORT, 502,
       "A payload the skill expected to be JSON is not valid JSON (often an HTML error page); check what "
       "the upstream actually returned.",
       *_exc("json.decoder.JSONDecodeError")),
    _e("DATA_TYPE_ERROR", C.DATA, False, R.ESCALATE, 500,
       "A skill got a value of a type it does not handle (TypeError/AttributeError); check the step's input "
       "shape or fix the skill.",
       *_exc("TypeError", "AttributeError")),
    _e("DATA_KEY_MISSING", C.DATA, False, R.ESCALATE, 500,
       "A skill looked up a key or index its data does not have (KeyError/IndexError); check the step's "
       "input shape or fix the skill.",
       *_exc("KeyError", "IndexError")),
    _e("DATA_VALUE_ERROR", C.DATA, False, R.ESCALATE, 500,
       "A skill got a value it cannot use (ValueError); check the step's input or fix the skill.",
       *_exc("ValueError")),
    _e("ARITHMETIC_ERROR", C.DATA, False, R.ESCALATE, 500,
       "A skill's arithmetic failed (division by zero, overflow); check the numbers in the step's input or "
       "fix the skill.",
       *_exc("ArithmeticError", "ZeroDivisionError", "OverflowError")),
    # --- http.request ---
    _e("HTTP_INVALID_URL", C.REQUEST, False, R.ABORT, 422,
       "The URL is malformed or uses a scheme other than http/https; fix the step's `url`.",
       *_httpx("InvalidURL", "UnsupportedProtocol")),
    _e("HTTP_CONNECT_ERROR", C.TRANSIENT, True, R.RETRY, 502,
       "Could not connect to the host, or the connection dropped mid-request; it is retried with backoff.",
       *_httpx("ConnectError", "NetworkError", "ProxyError", "TransportError")),
    _e("HTTP_DNS_ERROR", C.TRANSIENT, True, R.RETRY, 502,
       "The host name does not resolve; it is retried in case the resolver blipped, check the host name if it "
       "persists.",
       *_exc("socket.gaierror"), *_httpx("ConnectError", message=_DNS)),
    _e("HTTP_TLS_ERROR", C.PERMANENT, False, R.ABORT, 502,
       "The TLS handshake failed (untrusted or expired certificate, wrong host name, not a TLS port); fix "
       "the server's certificate or the URL.",
       *_exc("ssl.SSLError"), *_httpx("ConnectError", message=_TLS)),
    _e("HTTP_TIMEOUT", C.TRANSIENT, True, R.RETRY, 504,
       "The upstream did not connect or answer within the step's timeout; it is retried with backoff.",
       *_httpx("TimeoutException", "ConnectTimeout", "ReadTimeout", "WriteTimeout", "PoolTimeout")),
    _e("HTTP_SSRF_BLOCKED", C.POLICY, False, R.ABORT, 403,
       "The URL's host resolves to a private, loopback, link-local or metadata address; add it to "
       "AOS_HTTP_ALLOW_HOSTS if it is meant to be reached."),
    _e("HTTP_TOO_MANY_REDIRECTS", C.PERMANENT, False, R.ABORT, 502,
       "The upstream redirected more than AOS_HTTP_MAX_REDIRECTS times (likely a loop); call the final URL "
       "directly.",
       *_httpx("TooManyRedirects")),
    _e("HTTP_RESPONSE_TOO_LARGE", C.RESOURCE, False, R.ABORT, 502,
       "The response body exceeds AOS_HTTP_MAX_RESPONSE_BYTES and was not read; ask for less (a filter, a "
       "page) or raise the cap."),
    _e("HTTP_PROTOCOL_ERROR", C.TRANSIENT, True, R.RETRY, 502,
       "The upstream broke the HTTP protocol (a malformed or truncated response); it is retried, report it "
       "to the API's owner if it persists.",
       *_httpx("ProtocolError", "RemoteProtocolError", "LocalProtocolError", "DecodingError")),
    _e("HTTP_BAD_REQUEST", C.PERMANENT, False, R.ABORT, 502,
       "The upstream answered 400 Bad Request; fix the step's request (body, query, headers).",
       MatchRule(http_status=400)),
    _e("HTTP_UNAUTHORIZED", C.PERMANENT, False, R.ABORT, 502,
       "The upstream answered 401 Unauthorized; send valid credentials in the step's headers.",
       MatchRule(http_status=401)),
    _e("HTTP_FORBIDDEN", C.PERMANENT, False, R.ABORT, 502,
       "The upstream answered 403 Forbidden; the credentials used lack access to this resource.",
       MatchRule(http_status=403)),
    _e("HTTP_NOT_FOUND", C.PERMANENT, False, R.ABORT, 502,
       "The upstream answered 404 Not Found; check the step's URL.",
       MatchRule(http_status=404)),
    _e("HTTP_CONFLICT", C.PERMANENT, False, R.ABORT, 502,
       "The upstream answered 409 Conflict; its resource is in a state that refuses this request.",
       MatchRule(http_status=409)),
    _e("HTTP_UNPROCESSABLE", C.PERMANENT, False, R.ABORT, 502,
       "The upstream answered 422 Unprocessable; the request is well formed but its content is refused, "
       "fix the step's body.",
       MatchRule(http_status=422)),
    _e("HTTP_CLIENT_ERROR", C.PERMANENT, False, R.ABORT, 502,
       "The upstream answered with a 4xx status not listed on its own; the status is in the details, fix "
       "the step's request."),
    _e("HTTP_SERVER_ERROR", C.TRANSIENT, True, R.RETRY, 502,
       "The upstream answered with a 5xx status (500 or one not listed on its own); it is retried with backoff.",
       MatchRule(http_status=500)),
    _e("HTTP_BAD_GATEWAY", C.TRANSIENT, True, R.RETRY, 502,
       "The upstream's gateway answered 502 Bad Gateway; it is retried with backoff.",
       MatchRule(http_status=502)),
    _e("HTTP_SERVICE_UNAVAILABLE", C.TRANSIENT, True, R.RETRY_AFTER, 503,
       "The upstream answered 503 Service Unavailable; it is retried after its `Retry-After` hint or with backoff.",
       MatchRule(http_status=503)),
    _e("HTTP_GATEWAY_TIMEOUT", C.TRANSIENT, True, R.RETRY, 504,
       "The upstream's gateway answered 504 Gateway Timeout; it is retried with backoff.",
       MatchRule(http_status=504)),
    # --- llm.complete ---
    _e("LLM_NOT_CONFIGURED", C.SYSTEM, False, R.ABORT, 503,
       "No LLM provider is configured; set AOS_ANTHROPIC_API_KEY or AOS_OPENAI_API_KEY (or use the offline "
       "provider)."),
    _e("LLM_AUTH_FAILED", C.PERMANENT, False, R.ESCALATE, 502,
       "The LLM provider rejected AOS's API key or account (invalid key, no access, billing); an operator "
       "must fix the key, then resume.",
       *_llm("AuthenticationError", "PermissionDeniedError", "PaymentRequiredError")),
    _e("LLM_RATE_LIMITED", C.RATE_LIMIT, True, R.RETRY_AFTER, 503,
       "The LLM provider rate-limited AOS's key; retried after the provider's `retry-after` hint.",
       *_llm("RateLimitError")),
    _e("LLM_OVERLOADED", C.TRANSIENT, True, R.RETRY_AFTER, 503,
       "The LLM provider is overloaded (529 or 503); retried after its hint or with backoff.",
       *_llm("OverloadedError", "ServiceUnavailableError"),
       *_llm("APIStatusError", http_status=529), *_llm("APIStatusError", message=r"overloaded")),
    _e("LLM_CONTEXT_TOO_LONG", C.REQUEST, False, R.FALLBACK, 422,
       "The prompt plus max_tokens exceeds the model's context window; shorten the input or fall back to a "
       "model with a larger window.",
       *_llm("ContentTooLargeError", "RequestTooLargeError"),
       *_llm("BadRequestError", message=_CONTEXT_TOO_LONG)),
    _e("LLM_OUTPUT_TRUNCATED", C.DATA, False, R.FALLBACK, 502,
       "The model stopped at max_tokens before finishing its answer; raise max_tokens or ask for a shorter answer.",
       *_llm("LengthFinishReasonError")),
    _e("LLM_INVALID_REQUEST", C.REQUEST, False, R.ABORT, 422,
       "The LLM provider refused the request as invalid (a parameter, a message shape); fix the step's args.",
       *_llm("BadRequestError", "UnprocessableEntityError", "ConflictError")),
    _e("LLM_MODEL_NOT_FOUND", C.REQUEST, False, R.FALLBACK, 422,
       "The provider does not know the model, or the key may not use it; fix the model name or fall back to "
       "another model.",
       *_llm("NotFoundError")),
    _e("LLM_CONTENT_FILTERED", C.PERMANENT, False, R.FALLBACK, 422,
       "The provider's safety system refused the prompt or the answer; rephrase the prompt or fall back to "
       "another step.",
       *_llm("ContentFilterFinishReasonError"), *_llm("BadRequestError", message=_CONTENT_FILTERED)),
    _e("LLM_PROVIDER_ERROR", C.TRANSIENT, True, R.RETRY, 502,
       "The LLM provider failed on its side (a 5xx or an unexpected answer); it is retried with backoff.",
       *_llm("InternalServerError", "APIStatusError", "APIError", "APIResponseValidationError")),
    _e("LLM_TIMEOUT", C.TRANSIENT, True, R.RETRY, 504,
       "The LLM provider did not answer within the step's timeout; it is retried, or raise `timeout_s` for "
       "long answers.",
       *_llm("APITimeoutError", "GatewayTimeoutError", "RequestTimeoutError")),
    _e("LLM_CONNECTION_ERROR", C.TRANSIENT, True, R.RETRY, 502,
       "Could not reach the LLM provider (connection refused or dropped); it is retried with backoff.",
       *_llm("APIConnectionError")),
    _e("LLM_OUTPUT_INVALID_JSON", C.DATA, True, R.RETRY, 502,
       "The model was asked for JSON but answered something else; it is retried, tighten the prompt or the "
       "schema if it persists."),
    # --- calendar.* ---
    _e("ICS_PARSE_ERROR", C.DATA, False, R.ABORT, 422,
       "The iCalendar (RFC 5545) data does not parse; check the ICS text the step received."),
    _e("TIMEZONE_UNKNOWN", C.DATA, False, R.ABORT, 422,
       "The time zone is not an IANA zone name; use a name such as `Europe/Paris`.",
       *_exc("ZoneInfoNotFoundError", "UnknownTimeZoneError")),
    _e("CALENDAR_RANGE_INVALID", C.DATA, False, R.ABORT, 422,
       "The date range is empty or reversed (end before start), or the working hours are; fix the step's args."),
    # --- postgres.query ---
    _e("PG_CONNECTION_UNKNOWN", C.PLAN, False, R.ABORT, 422,
       "The step names a database connection this tenant (and agent) may not use, or none by that name; the "
       "details list the ones it may use. An operator scopes connections in AOS_PG_CONNECTIONS."),
    _e("PG_ROLE_TOO_POWERFUL", C.POLICY, False, R.ABORT, 403,
       "The connection's role is a superuser, or is (or may become) pg_read_server_files, pg_write_server_files "
       "or pg_execute_server_program: a read-only transaction does not stop it reading files or running programs. "
       "Give the connection a least-privilege role (docs/security.md); `aos doctor` checks every connection."),
    _e("PG_CONNECTION_FAILED", C.TRANSIENT, True, R.RETRY, 502,
       "Could not connect to the tenant's database, or the connection dropped; it is retried with backoff.",
       *_exc("psycopg.OperationalError")),
    _e("PG_QUERY_TIMEOUT", C.TRANSIENT, True, R.RETRY, 504,
       "The query ran past AOS_PG_QUERY_TIMEOUT_MS and was cancelled; it is retried, make the query cheaper "
       "if it persists.",
       *_exc("psycopg.errors.QueryCanceled")),
    _e("PG_READ_ONLY_VIOLATION", C.POLICY, False, R.ABORT, 403,
       "The query tried to write, but postgres.query runs in a READ ONLY transaction; use a SELECT.",
       *_exc("psycopg.errors.ReadOnlySqlTransaction")),
    _e("PG_SYNTAX_ERROR", C.REQUEST, False, R.ABORT, 422,
       "The SQL does not parse; fix the query (the details give the position).",
       *_exc("psycopg.errors.SyntaxError")),
    _e("PG_QUERY_ERROR", C.PERMANENT, False, R.ABORT, 422,
       "The database refused the query (unknown table or column, bad parameter type, ...); the details carry "
       "its SQLSTATE, fix the query.",
       *_exc("psycopg.Error")),
]

CATALOG = FailureCatalog(ENTRIES, fallback="SKILL_CRASHED")
