"""Plans: the JSON contract of SPEC §3, its validation and the references between steps."""

from aos.plan.model import Budget, OnError, Plan, Step, parse_plan

__all__ = ["Budget", "OnError", "Plan", "Step", "parse_plan"]
