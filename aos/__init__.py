"""AOS, the Agent Operating System: a durable, deterministic runtime for LLM-agent workflows."""

__version__ = "0.1.0"
