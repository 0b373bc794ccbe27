"""The send policy, pure (no database, no SMTP): what a reply means for a delivery."""

from __future__ import annotations

from datetime import timedelta

BACKOFF_CAP = timedelta(hours=1)
