"""Email address validation and normalisation (email-validator, no DNS); loopback hosts."""

from __future__ import annotations

import ipaddress

from email_validator import EmailNotValidError, validate_email

# Special-use names (RFC 6761, RFC 6762, RFC 7686; `internal`: ICANN 2024) that no public mail
# reaches. Refused unless the setting allow_special_use_domains says this is an intranet or a
# staging set-up.
SPECIAL_USE_DOMAINS = ("local", "localhost", "test", "internal", "invalid", "onion", "arpa")
# A placeholder public suffix to validate the rest of an allowed special-use address with
# (email-validator refuses special-use names itself and cannot be told otherwise).
_STAND_IN = ".special-use.example.org"


def special_use_suffix(domain: str) -> str | None:
    """The special-use name `domain` is or ends in (e.g. 'local'), or None."""
    domain = domain.lower().rstrip(".")
    for name in SPECIAL_USE_DOMAINS:
        if domain == name or domain.endswith("." + name):
            return name
    return None


def normalise_address(address: str, *, allow_special_use: bool = False) -> str:
    """The normalised form of `address`; ValueError with the reason when it is not valid."""
    address = address.strip()
    if not address:
        raise ValueError("the address is empty")
    if "\0" in address:
        raise ValueError("the address contains a NUL character (a damaged file?)")
    if any(ch in address for ch in "\r\n"):
        raise ValueError("the address contains a line break")
    if any(not ch.isprintable() for ch in address):
        raise ValueError("the address contains a control character")
    local, at, domain = address.rpartition("@")
    special = special_use_suffix(domain) if at else None
    if special and not allow_special_use:
        raise ValueError(
            f"{domain} is a special-use name (.{special}) that public mail cannot reach; "
            "set allow_special_use_domains = true for an intranet or a staging set-up"
        )
    checked = f"{local}@{domain}{_STAND_IN}" if special else address
    try:
        # SMTPUTF8 (non-ASCII before the @) is not accepted: many relays refuse it.
        result = validate_email(checked, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from None
    # International domain names are kept in their ASCII (xn--) form, which every relay takes.
    normalised = result.ascii_email or result.normalized
    return normalised.removesuffix(_STAND_IN) if special else normalised


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
