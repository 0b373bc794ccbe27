"""Small words for messages: counts with their noun."""

from __future__ import annotations


def plural(count: int, noun: str, many: str | None = None) -> str:
    """'1 item', '3 items'; `many` for irregular plurals ('2 deliveries')."""
    return f"{count} {noun if count == 1 else (many or noun + 's')}"
