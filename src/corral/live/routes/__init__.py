"""The live API, one router per resource; server.py composes them."""
