"""fastapi-shop: a small FastAPI shop backend (see ../../README.md)."""
