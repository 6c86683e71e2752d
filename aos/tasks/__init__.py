"""Celery entry points: thin tasks named aos.<area>.<verb> that call services."""
