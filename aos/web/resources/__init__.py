"""One folder per API resource: routes.py (views) and schemas.py (marshmallow)."""
