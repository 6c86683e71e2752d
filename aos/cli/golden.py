"""`aos golden record|verify|replay`: signed recordings of runs, checked and replayed.

record and replay talk to the API (the server reads the run, signs with its
AOS_GOLDEN_SECRET, and replays on its workers); record writes the file here,
atomically. verify is local: it needs only the file and the key (AOS_GOLDEN_SECRET,
AOS_GOLDEN_KEYS for older key ids), no server.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import click

from aos.cli.base import api_options, console, emit_json, json_option, load_json_object
from aos.config import get_settings
from aos.errors import AosError
from aos.golden.files import read_bytes, write_atomic
from aos.golden.verify import encode, parse, verify_document


@click.group()
def golden() -> None:
    """Record runs as signed golden files, verify them, replay them through the engine."""


def _client(url: str, api_key: str, timeout: float) -> Any:
    from aos.sdk import Client

    try:
        client = Client(url, api_key, timeout=timeout)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--url") from None
    click.get_current_context().call_on_close(client.close)
    return client


@golden.command("record")
@click.argument("run_id")
@click.option("-o", "--output", "output", required=True, type=click.Path(dir_okay=False),
              help="The golden file to write (replaced atomically if it exists).")
@api_options
@json_option
def golden_record(run_id: str, output: str, url: str, api_key: str, as_json: bool) -> None:
    """Record finished run RUN_ID as a signed golden file.

    The file is canonical JSON (sorted keys, no whitespace, stable numbers) of the pinned
    plan, inputs, each step's resolved args and outcome without timings, the raw responses
    of HTTP/LLM/SQL calls, per-step SHA-256 hashes and an HMAC-SHA256 signature. It is
    written to a temporary file in the same directory, fsynced, renamed over OUTPUT and the
    directory fsynced: a reader never sees a partial file."""
    doc = _client(url, api_key, 60.0).request("POST", f"/runs/{run_id}/golden")
    write_atomic(output, encode(doc))
    if as_json:
        emit_json({"file": output, "run_id": run_id, "hash": doc["hash"], "key_id": doc["key_id"],
                   "steps": len(doc["body"]["steps"])})
        return
    console.print(f"recorded run {run_id}: {len(doc['body']['steps'])} steps, hash {doc['hash'][:16]}…, "
                  f"key {doc['key_id']} -> {output}", markup=False)


@golden.command("verify")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--tenant", "tenant", default=None,
              help="The tenant that recorded FILE (name or id): files are signed with a key derived for their "
                   "tenant (key id tenant:<id>). Needs the database to look a name up.")
@json_option
def golden_verify(file: str, tenant: str | None, as_json: bool) -> None:
    """Verify FILE: its signature, every step hash, the body hash and its canonical bytes.

    Local: needs AOS_GOLDEN_SECRET (and AOS_GOLDEN_KEYS for files signed with an older key id),
    not a server. A changed byte fails with a message naming what changed."""
    from aos.golden.sign import TENANT_PREFIX, KeyRing

    data = read_bytes(file)
    doc = parse(data)
    settings = get_settings()
    ring = KeyRing.from_settings(settings)
    if tenant is not None:
        ring = ring.for_tenant(_tenant_id(tenant), accept_deployment_keys=settings.golden_accept_deployment_keys)
    elif isinstance(doc, dict) and str(doc.get("key_id", "")).startswith(TENANT_PREFIX):
        raise AosError("VALIDATION_ERROR", f"{file} is signed for its tenant (key id {doc['key_id']}); pass "
                       "--tenant NAME (or id)")
    verified = verify_document(doc, ring, data=data)
    if as_json:
        emit_json({"file": file, "valid": True, "key_id": verified.key_id, "hash": verified.hash,
                   "source_run_id": verified.source_run_id, "steps": verified.steps})
        return
    console.print(f"{file}: valid (key {verified.key_id}, {verified.steps} steps, hash {verified.hash[:16]}…, "
                  f"run {verified.source_run_id})", markup=False)


def _tenant_id(tenant: str) -> str:
    """A tenant's id from its id or its name (looked up in the database)."""
    import uuid

    try:
        return str(uuid.UUID(tenant))
    except ValueError:
        pass
    from aos.db.session import session_scope
    from aos.services.tenancy import get_tenant_by_name

    with session_scope() as s:
        return str(get_tenant_by_name(s, tenant).id)


def _value(v: Any) -> str:
    text = json.dumps(v, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= 500 else text[:500] + "…"


@golden.command("replay")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--plan", "plan_file", type=click.Path(dir_okay=False),
              help="Replay this plan (JSON) instead of the recorded one, against the same recording.")
@click.option("--timeout", type=float, default=None,
              help="Seconds to wait for the replay run's report (default 600); the server answers each request "
                   "within 60 s and the command polls until then.")
@api_options
@json_option
def golden_replay(file: str, plan_file: str | None, timeout: float | None, url: str, api_key: str,
                  as_json: bool) -> None:
    """Replay FILE through the engine; exit 1 on divergence, naming the step, path and both values.

    The workers re-run the recorded plan: deterministic skills for real, HTTP/LLM/SQL answered
    from the recording (nothing external is called). Every step hash is compared."""
    doc = parse(read_bytes(file))
    body: dict[str, Any] = {"document": doc}
    if plan_file:
        body["plan"] = load_json_object(plan_file, "a plan")
    total = timeout if timeout is not None else 600.0
    body["timeout_s"] = min(total, 60.0)  # the server holds a request at most 60 s, then answers 202
    client = _client(url, api_key, body["timeout_s"] + 30.0)
    report = client.request("POST", "/golden/replay", json=body)
    deadline = time.monotonic() + total
    while "identical" not in report:  # 202: the replay run goes on; its report comes when it is final
        if time.monotonic() > deadline:
            raise AosError("GOLDEN_REPLAY_TIMEOUT", f"replay run {report['run_id']} is still {report['status']} "
                           f"after {total:.0f}s; follow it with `aos runs show {report['run_id']}`")
        time.sleep(1.0)
        report = client.request("POST", f"/golden/replay/{report['run_id']}/report", json={"document": doc})
    if as_json:
        emit_json(report)
        sys.exit(0 if report["identical"] else 1)
    steps = report["steps"]
    if report["identical"]:
        console.print(f"identical: {len(steps)} steps, every hash matches (replay run {report['run_id']})",
                      markup=False)
        return
    d = report["divergence"]
    if d is None:  # not identical without a divergence cannot happen; say so rather than print nothing
        raise AosError("INTERNAL_ERROR", "the replay was not identical but named no divergence")
    same = sum(1 for s in steps if s["identical"])
    console.print(f"DIVERGED at step {d['step_index']} ({d['step_id']}), path {d['path'] or '$'}", markup=False)
    console.print(f"  recorded: {_value(d['recorded'])}", markup=False, soft_wrap=True)
    console.print(f"  replayed: {_value(d['replayed'])}", markup=False, soft_wrap=True)
    console.print(f"{same}/{len(steps)} steps identical; replay run {report['run_id']} ({report['status']})",
                  markup=False)
    sys.exit(1)
