"""The alembic migration chain, shipped inside the package as ``aos.migrations`` (aos/migrations links here)."""
