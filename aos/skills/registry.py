"""The skill registry: built-in skills plus third-party ones from the ``aos.skills`` entry points."""

from __future__ import annotations

import logging
import re
from functools import lru_cache
from importlib.metadata import entry_points

from aos.errors import AosError
from aos.skills.base import Skill

log = logging.getLogger(__name__)

VERSION = re.compile(r"^[1-9][0-9]{0,8}$")

# Modules holding built-in skills; each exposes SKILLS: list[Skill].
BUILTIN_MODULES = (
    "aos.skills.json_skills",
    "aos.skills.http",
    "aos.skills.llm",
    "aos.skills.calendar",
    "aos.skills.postgres",
    "aos.skills.signals",
)


class SkillRegistry:
    def __init__(self) -> None:
        self._skills: dict[str, dict[int, Skill]] = {}

    def register(self, skill: Skill) -> None:
        versions = self._skills.setdefault(skill.name, {})
        if skill.version in versions:
            raise ValueError(f"skill {skill.ref} registered twice")
        versions[skill.version] = skill

    def resolve(self, ref: str) -> Skill:
        """``name`` (latest version) or ``name@version``; SKILL_NOT_FOUND otherwise."""
        name, _, ver = ref.partition("@")
        versions = self._skills.get(name)
        if not versions:
            raise AosError("SKILL_NOT_FOUND", f"no skill named {name!r}; `aos skills list` shows them")
        if not ver:
            return versions[max(versions)]
        # one spelling per version (`@2`, not `@02` or `@ 2`), so that a skill reference is an exact enum
        skill = versions.get(int(ver)) if VERSION.fullmatch(ver) else None
        if skill is None:
            raise AosError("SKILL_NOT_FOUND", f"skill {name!r} has no version {ver!r} "
                           f"(known: {sorted(versions)})")
        return skill

    def refs(self) -> list[str]:
        """Every way a plan may name a skill: ``name`` (its latest version) and ``name@version``."""
        out: list[str] = []
        for name, versions in sorted(self._skills.items()):
            out.append(name)
            out.extend(f"{name}@{v}" for v in sorted(versions))
        return out

    def has(self, ref: str) -> bool:
        try:
            self.resolve(ref)
        except AosError:
            return False
        return True

    def all(self) -> list[Skill]:
        return [s for versions in self._skills.values() for s in versions.values()]

    def warm_up(self) -> None:
        """Every skill's ``warm_up``; a skill whose warm-up fails is logged and loads on first use instead."""
        for skill in self.all():
            try:
                skill.warm_up()
            except Exception:  # noqa: BLE001 — a broken third-party skill must not stop the worker
                log.warning("skill %s: warm-up failed; it loads on its first call", skill.ref, exc_info=True)

    def recommended(self) -> list[Skill]:
        ranked = [s for s in self.all() if s.recommended is not None]
        return sorted(ranked, key=lambda s: (s.recommended, s.name))


def _load_builtins(registry: SkillRegistry) -> None:
    import importlib

    for mod_name in BUILTIN_MODULES:
        try:
            mod = importlib.import_module(mod_name)
        except ModuleNotFoundError as exc:
            if exc.name == mod_name:  # a built-in not written yet; the others still load
                continue
            raise
        for skill in getattr(mod, "SKILLS", []):
            registry.register(skill)


def _load_entry_points(registry: SkillRegistry) -> None:
    for ep in entry_points(group="aos.skills"):
        try:
            obj = ep.load()
            skills = obj() if callable(obj) and not isinstance(obj, Skill) else obj
            if isinstance(skills, Skill):
                skills = [skills]
            for skill in skills:
                registry.register(skill)
        except Exception:  # a broken plug-in must not take the built-ins down with it
            log.exception("could not load skills from entry point %s", ep.name)


@lru_cache(maxsize=1)
def default_registry() -> SkillRegistry:
    registry = SkillRegistry()
    _load_builtins(registry)
    _load_entry_points(registry)
    return registry
