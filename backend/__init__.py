"""CGGM Monitor backend: run store (SQLAlchemy), metric ingest and queries, job queue for workers.

Entry point: `backend.app:create_app(settings)`; `cggm serve` builds the settings and runs uvicorn.
"""
