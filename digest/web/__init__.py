"""`digest serve`: the public web endpoints (app.py), their pages (pages.py) and the archive
and staff preview of issues (archive.py)."""
