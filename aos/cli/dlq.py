"""`aos dlq …`, `aos outbox …` and `aos tenants webhook …`: operator commands on the database itself.

Like `aos tenants`, these talk to Postgres (AOS_DATABASE_URL), not to the API: an operator sees every
tenant's dead letters, including those of periodic jobs, which belong to no tenant.
"""

from __future__ import annotations

import uuid
from typing import Any

import click
from rich.text import Text

from aos.cli.base import console, emit_json, json_option, print_table
from aos.db.vocabulary import DEAD_LETTER_KINDS, DEAD_LETTER_STATUSES

_tenant_option = click.option("--tenant", "tenant_name", default=None,
                              help="Only this tenant's (by name); default: every tenant's.")


def _tenant_id(name: str | None) -> uuid.UUID | None:
    if name is None:
        return None
    from aos.services.listings import tenant_id_by_name

    return tenant_id_by_name(name)


def _publisher() -> Any:
    from aos.tasks.publisher import CeleryPublisher

    return CeleryPublisher()


def _short(text: str | None, n: int = 60) -> str:
    text = (text or "").replace("\n", " ")
    return text if len(text) <= n else text[: n - 1] + "…"


# --- aos dlq ---------------------------------------------------------------------------------------------


@click.group()
def dlq() -> None:
    """Dead letters: steps, webhook deliveries and tasks that ran out of retries."""


@dlq.command("list")
@click.option("--status", type=click.Choice(DEAD_LETTER_STATUSES), default="open", show_default=True,
              help="Only dead letters with this status.")
@click.option("--all-statuses", is_flag=True, help="Every status (overrides --status).")
@click.option("--kind", type=click.Choice(DEAD_LETTER_KINDS), default=None, help="Only this kind.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 200), help="Rows per page.")
@click.option("--cursor", default=None, help="Continue from the cursor a previous page printed.")
@_tenant_option
@json_option
def dlq_list(status: str, all_statuses: bool, kind: str | None, limit: int, cursor: str | None,
             tenant_name: str | None, as_json: bool) -> None:
    """List dead letters, newest first."""
    from aos.services.listings import dead_letters

    page = dead_letters(_tenant_id(tenant_name), status=None if all_statuses else status, kind=kind,
                             limit=limit, cursor=cursor)
    if as_json:
        emit_json(page)
        return
    if not page["items"]:
        console.print("no dead letters" + ("" if all_statuses else f" with status {status}"))
        return
    # the run id and the code whole (`aos runs show`, `aos errors show` take them); the rest as room allows
    print_table(["id", "kind", "code", "run", "step", "status", "attempts", "created", "message"],
                [[str(d["id"]), d["kind"], d["error"]["code"], d["run_id"] or "-", Text(d["step_id"] or ""),
                  d["status"], str(d["attempts"]), d["created_at"][:19].replace("T", " "),
                  Text(_short(d["error"]["message"]))] for d in page["items"]],
                keep=("id", "kind", "code", "run"), drop=("message", "created", "attempts", "status", "step"))
    if page["next_cursor"]:
        console.print(f"more: aos dlq list --cursor {page['next_cursor']}", style="dim", markup=False)


@dlq.command("show")
@click.argument("dead_letter_id")
@json_option
def dlq_show(dead_letter_id: str, as_json: bool) -> None:
    """Show one dead letter: its error, payload and replay."""
    from aos.services.dead_letters import get_dead_letter

    d = get_dead_letter(None, dead_letter_id)
    if as_json:
        emit_json(d)
        return
    console.print(f"dead letter {d['id']}  {d['kind']}  {d['status']}", markup=False)
    if d["run_id"]:
        console.print(f"  run      {d['run_id']}" + (f"  step {d['step_id']}" if d["step_id"] else ""), markup=False)
    err = d["error"]
    console.print(f"  error    {err['code']} ({err['category']}, "
                  f"{'retryable' if err['retryable'] else 'not retryable'}): {err['message'] or ''}", markup=False)
    console.print(f"  attempts {d['attempts']}   created {d['created_at']}", markup=False)
    if d["replay"]:
        console.print(f"  replay   {d['replay']['result']} at {d['replay']['replayed_at']}", markup=False)
    elif d["status"] == "open":
        console.print(f"  next: aos dlq replay {d['id']}   (or: aos dlq discard {d['id']})", style="dim",
                      markup=False)


@dlq.command("replay")
@click.argument("dead_letter_id")
@json_option
def dlq_replay(dead_letter_id: str, as_json: bool) -> None:
    """Re-drive a dead letter's work, once (asking again replays nothing more)."""
    from aos.services.dead_letters import replay

    out = replay(dead_letter_id, publisher=_publisher())
    if as_json:
        emit_json(out)
        return
    d = out["dead_letter"]
    if not out["replayed_now"]:
        console.print(f"dead letter {d['id']} was already replayed ({out['result']}); nothing done", markup=False)
    elif out["result"] == "superseded":
        console.print(f"dead letter {d['id']}: nothing left to replay (the work moved on); marked resolved",
                      markup=False)
    elif d["kind"] == "outbox":
        console.print(f"dead letter {d['id']}: webhook {d['payload'].get('outbox_id')} queued for delivery again "
                      "(same AOS-Webhook-Id)", markup=False)
    else:
        console.print(f"dead letter {d['id']}: run {d['run_id']} re-queued from its first unfinished step",
                      markup=False)


@dlq.command("discard")
@click.argument("dead_letter_id")
@json_option
def dlq_discard(dead_letter_id: str, as_json: bool) -> None:
    """Close a dead letter without re-running its work."""
    from aos.services.dead_letters import discard

    d = discard(dead_letter_id)
    emit_json(d) if as_json else console.print(f"dead letter {d['id']} {d['status']}", markup=False)


@dlq.command("reconcile")
@json_option
def dlq_reconcile(as_json: bool) -> None:
    """Run reconciliation now (what beat's aos.dlq.reconcile does): resolve, re-drive, archive."""
    from aos.services.dead_letters import reconcile
    from aos.services.locks import singleton

    with singleton("aos.dlq.reconcile") as lease:
        if lease is None:
            from aos.errors import AosError

            raise AosError("LEASE_HELD", "another process is reconciling dead letters right now; try again shortly")
        counts = reconcile(_publisher(), fence=lease.fence)
    if as_json:
        emit_json(counts)
    else:
        console.print(f"resolved {counts['resolved']}, re-driven {counts['redriven']}, "
                      f"archived {counts['archived']}")


# --- aos outbox ---------------------------------------------------------------------------------------------


@click.group()
def outbox() -> None:
    """The outbox: run enqueues and webhooks waiting to be delivered."""


@outbox.command("status")
@_tenant_option
@json_option
def outbox_status_cmd(tenant_name: str | None, as_json: bool) -> None:
    """Rows by status and topic, how many are due now, and the oldest pending row's age."""
    from aos.services.listings import outbox_status

    st = outbox_status(_tenant_id(tenant_name))
    if as_json:
        emit_json(st)
        return
    age = st["oldest_pending_age_s"]
    console.print(f"pending {st['pending']} (due now {st['due']}), delivered {st['delivered']}, dead {st['dead']}; "
                  f"oldest pending: {'-' if age is None else f'{age:.1f}s'}", markup=False)
    if st["by_topic"]:
        print_table(["topic", "pending", "delivered", "dead"],
                    [[topic, str(n.get("pending", 0)), str(n.get("delivered", 0)), str(n.get("dead", 0))]
                     for topic, n in sorted(st["by_topic"].items())], keep=("topic", "pending", "delivered", "dead"))
    if st["dead"]:
        console.print("dead rows are dead letters: aos dlq list --kind outbox", style="dim", markup=False)


@outbox.command("drain")
@json_option
def outbox_drain_cmd(as_json: bool) -> None:
    """Deliver due rows now (what beat's aos.outbox.drain does every few seconds)."""
    from aos.services.outbox import drain_outbox

    n = drain_outbox(_publisher())
    emit_json({"delivered": n}) if as_json else console.print(f"delivered {n}")


# --- aos tenants webhook -----------------------------------------------------------------------------------------


@click.group()
def webhook() -> None:
    """A tenant's webhook endpoint and signing secret."""


def _print_webhook(name: str, view: dict[str, Any], as_json: bool) -> None:
    if as_json:
        emit_json({"tenant": name, **view})
        return
    console.print(f"tenant {name}: webhooks {'to ' + view['url'] if view['url'] else 'off'} "
                  f"({', '.join(view['events'])})", markup=False)
    if "secret" in view:
        click.echo(view["secret"])
        console.print("(the signing secret: store it now, it is not shown again; docs/webhooks.md says how to "
                      "verify AOS-Signature)", style="dim")


def _with_tenant(name: str, fn: Any) -> dict[str, Any]:
    from aos.db.session import session_scope
    from aos.services.tenancy import get_tenant_by_name

    with session_scope() as s:
        return fn(s, get_tenant_by_name(s, name).id)


@webhook.command("set")
@click.argument("name")
@click.option("--url", required=True, help="An http(s) URL; the SSRF guard applies (AOS_HTTP_ALLOW_HOSTS).")
@json_option
def webhook_set(name: str, url: str, as_json: bool) -> None:
    """Send tenant NAME's events to URL (a secret is generated and printed the first time)."""
    from aos.services.webhooks import set_webhook

    _print_webhook(name, _with_tenant(name, lambda s, t: set_webhook(s, t, url)), as_json)


@webhook.command("show")
@click.argument("name")
@json_option
def webhook_show(name: str, as_json: bool) -> None:
    """Show tenant NAME's webhook endpoint."""
    from aos.services.webhooks import get_webhook

    _print_webhook(name, _with_tenant(name, get_webhook), as_json)


@webhook.command("clear")
@click.argument("name")
@json_option
def webhook_clear(name: str, as_json: bool) -> None:
    """Stop sending tenant NAME's webhooks (the secret is kept)."""
    from aos.services.webhooks import set_webhook

    _print_webhook(name, _with_tenant(name, lambda s, t: set_webhook(s, t, None)), as_json)


@webhook.command("rotate-secret")
@click.argument("name")
@json_option
def webhook_rotate(name: str, as_json: bool) -> None:
    """Replace tenant NAME's signing secret now and print the new one."""
    from aos.services.webhooks import rotate_secret

    _print_webhook(name, _with_tenant(name, rotate_secret), as_json)
