"""Email address validation and normalisation (email-validator, no DNS); loopback hosts."""

from __future__ import annotations

import ipaddress

from email_validator import EmailNotValidError, validate_email


def normalise_address(address: str) -> str:
    """The normalised form of `address`; ValueError with the reason when it is not valid."""
    address = address.strip()
    if not address:
        raise ValueError("the address is empty")
    if any(ch in address for ch in "\r\n\0"):
        raise ValueError("the address contains a line break")
    try:
        # SMTPUTF8 (non-ASCII before the @) is not accepted: many relays refuse it.
        result = validate_email(address, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from None
    # International domain names are kept in their ASCII (xn--) form, which every relay takes.
    return result.ascii_email or result.normalized


def address_key(address: str) -> str:
    """The case-insensitive key that makes one subscriber per mailbox."""
    return address.casefold()


def is_loopback(host: str) -> bool:
    """Whether `host` is this machine (localhost, 127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
