"""Data access: keyword-only functions taking a Session; no HTTP here (errors from backend.errors)."""
