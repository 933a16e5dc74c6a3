# SPDX-License-Identifier: Apache-2.0
"""Email addresses as account names: validated and normalized to one canonical form.

Bastion accepts ASCII addresses only. Internationalized addresses are where look-alike tricks
live (a Cyrillic "a" in "paypal.com", a fullwidth "@", zero-width joiners, mixed scripts), and two
strings that render the same must never be two accounts; an internationalized domain can still be
registered in its IDNA ("xn--") form. The whole address is lowercased, so ``Alice@Example.COM``
and ``alice@example.com`` are one account (no mail provider Bastion targets treats local-part case
as significant).
"""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email

MAX_EMAIL_LENGTH = 254


class InvalidEmail(ValueError):
    pass


def normalize_email(raw: str) -> str:
    """The canonical form of ``raw``, or ``InvalidEmail`` with a message safe to show."""
    if len(raw) > MAX_EMAIL_LENGTH:
        raise InvalidEmail(f"an email address is at most {MAX_EMAIL_LENGTH} characters")
    if raw != raw.strip():
        raise InvalidEmail("remove the spaces around the email address")
    if not raw.isascii() or not raw.isprintable():
        raise InvalidEmail("use a plain ASCII email address (internationalized domains in xn-- form)")
    try:
        result = validate_email(raw, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as exc:
        raise InvalidEmail("not a valid email address") from exc
    normalized = (result.ascii_email or result.normalized).lower()
    if not normalized.isascii():
        raise InvalidEmail("use a plain ASCII email address (internationalized domains in xn-- form)")
    return normalized
