"""Dash dashboard for CGGM Monitor: runs, new run, live run view, compare.

It speaks HTTP to the backend only (`dashboard.api`), never to the database. Start it with
`cggm dashboard --api URL` or `dashboard.app:create_app(api_url)`.
"""
