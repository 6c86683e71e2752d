"""The body of a golden file, built from a run and its checkpoints; per-step hashes; the sealed document.

A body holds the pinned plan (as amended, when a person amended a step: ``amendments``
then says what changed, after which attempt; ``plan_hash`` stays the submitted plan's),
the inputs, the pinned skill versions and, per step,
every attempt: the call the engine made (skill, resolved args, outcome) and, when
the step's fallback answered, the fallback call. Calls of non-deterministic skills
(``http.request``, ``llm.complete``, ``postgres.query``) keep the skill's raw
response: a replay answers from it. Outcomes lose their ``timing``; no timestamp,
duration, worker or checkpoint id enters a body (the seeds' P0-3).

Step hash: SHA-256 of the canonical step without its ``hash`` field. Body hash:
SHA-256 of the canonical body (step hashes included). The signature covers the
body hash (``aos.golden.sign``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from aos.golden import FORMAT
from aos.golden.canonical import sha256_hex
from aos.golden.sign import KeyRing, signature

# skill ref -> (the ref it resolves to, deterministic?)
SkillInfo = Callable[[str], tuple[str, bool]]


@dataclass(frozen=True)
class RunFacts:
    """What a recording needs of a run row."""

    id: str
    identity: str  # the run skills saw: the run itself, or for a replay run the run it replays
    name: str | None
    status: str
    error_code: str | None
    plan: dict[str, Any]
    plan_hash: str
    inputs: dict[str, Any]
    skill_versions: dict[str, Any]
    # steps a person amended after submission (``amendment``), oldest first; ``plan`` is the plan as amended
    amendments: tuple[dict[str, Any], ...] = ()


def amendment(step_index: int, step_id: str, after_attempt: int, changes: dict[str, Any], step_hash_before: str,
              step_hash_after: str) -> dict[str, Any]:
    """An amendment as a body holds it: what changed of which step after which attempt, and the step's hashes;
    no id, time or person (recording the run twice gives the same bytes)."""
    return {"step_index": step_index, "step_id": step_id, "after_attempt": after_attempt, "changes": changes,
            "step_hash_before": step_hash_before, "step_hash_after": step_hash_after}


@dataclass(frozen=True)
class AttemptFacts:
    """What a recording needs of a checkpoint row (one attempt of one step)."""

    step_index: int
    attempt: int
    status: str
    skill: str
    args: Any
    outcome: dict[str, Any] | None
    raw: Any = None
    # the primary call's {"args", "outcome"} when the step's fallback produced this checkpoint
    fallback_from: dict[str, Any] | None = None


def timeless(outcome: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """An outcome without its timing: the only form a recording (and so a hash) sees."""
    if outcome is None:
        return None
    return {k: v for k, v in outcome.items() if k != "timing"}


def _call(ref: str, deterministic: bool, args: Any, outcome: Mapping[str, Any] | None, raw: Any) -> dict[str, Any]:
    call: dict[str, Any] = {"skill": ref, "deterministic": deterministic, "args": args,
                            "outcome": timeless(outcome)}
    if not deterministic:
        call["raw"] = raw  # what a replay answers from
    return call


def build_step(index: int, plan_step: Mapping[str, Any], pinned_ref: str, attempts: Iterable[AttemptFacts],
               skill_info: SkillInfo) -> dict[str, Any]:
    step_id = str(plan_step.get("id"))
    ref, deterministic = skill_info(pinned_ref)
    fallback_spec = (plan_step.get("on_error") or {}).get("fallback") or {}
    recorded: list[dict[str, Any]] = []
    for a in attempts:
        call_ref, call_det = skill_info(a.skill)
        fb: dict[str, Any] | None = None
        if a.fallback_from is not None:
            fb_ref, fb_det = skill_info(str(fallback_spec.get("skill") or ""))
            fb = _call(fb_ref, fb_det, a.args, a.outcome, a.raw)
            call = _call(call_ref, call_det, a.fallback_from.get("args"), a.fallback_from.get("outcome"), None)
        else:
            call = _call(call_ref, call_det, a.args, a.outcome, a.raw)
        recorded.append({"attempt": a.attempt, "status": a.status, "call": call, "fallback": fb})
    last = recorded[-1] if recorded else None
    step: dict[str, Any] = {
        "index": index,
        "id": step_id,
        "skill": ref,
        "deterministic": deterministic,
        "status": last["status"] if last else "not_run",
        "args": last["call"]["args"] if last else None,
        "outcome": ((last["fallback"] or last["call"])["outcome"]) if last else None,
        "attempts": recorded,
    }
    step["hash"] = step_hash(step)
    return step


def step_hash(step: Mapping[str, Any]) -> str:
    return sha256_hex({k: v for k, v in step.items() if k != "hash"})


def build_body(run: RunFacts, attempts: Iterable[AttemptFacts], skill_info: SkillInfo) -> dict[str, Any]:
    by_step: dict[int, list[AttemptFacts]] = {}
    for a in sorted(attempts, key=lambda a: (a.step_index, a.attempt)):
        by_step.setdefault(a.step_index, []).append(a)
    steps = []
    for i, plan_step in enumerate(run.plan.get("steps") or []):
        pinned = str(run.skill_versions.get(plan_step.get("id"), plan_step.get("skill")))
        steps.append(build_step(i, plan_step, pinned, by_step.get(i, []), skill_info))
    body = {
        "source": {"run_id": run.id, "identity": run.identity, "name": run.name, "status": run.status,
                   "error_code": run.error_code},
        "plan": run.plan,
        "plan_hash": run.plan_hash,
        "inputs": run.inputs,
        "skill_versions": run.skill_versions,
        "steps": steps,
    }
    if run.amendments:  # only then: the bodies (and hashes) of runs never amended stay as they were
        body["amendments"] = list(run.amendments)
    return body


def seal(body: dict[str, Any], keys: KeyRing) -> dict[str, Any]:
    """The signed document of ``body``: format, key id, body hash, signature."""
    secret = keys.signing_secret()
    body_sha = sha256_hex(body)
    return {"format": FORMAT, "key_id": keys.signing_key_id, "hash": body_sha,
            "signature": signature(secret, keys.signing_key_id, body_sha), "body": body}
