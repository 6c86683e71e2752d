"""The HTTP API: a Flask app factory and flask-smorest resources, thin doors onto aos.services."""
