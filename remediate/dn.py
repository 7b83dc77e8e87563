"""What a Genesys DN name may be.

DN numbers are usually digits (`5001`) but trunk and routing DNs carry names such as
`AsteriskTrunk_webRTC`, so letters, digits, `_`, `-`, `.` and a leading `+` are accepted.
Anything that could break out of a PowerShell string, a shell word, a SIP header or a file name
(quotes, `;`, whitespace, control characters, slashes, `$`, ...) is refused.
"""

from __future__ import annotations

import re

from remediate.errors import InputError

MAX_DN_LENGTH = 64
_DN_PATTERN = re.compile(r"\+?[A-Za-z0-9][A-Za-z0-9_.\-]*")


def validate_dn(value: str) -> str:
    """Return `value` if it can be a DN name, else raise `InputError` saying why."""
    if value == "":
        raise InputError(
            "the DN is empty",
            reference="bad-dn",
            hint="give a DN number such as --dn 5001",
        )
    if len(value) > MAX_DN_LENGTH:
        raise InputError(
            f"the DN is {len(value)} characters long (at most {MAX_DN_LENGTH})",
            reference="bad-dn",
            hint="give a DN number such as --dn 5001",
        )
    if _DN_PATTERN.fullmatch(value) is None:
        raise InputError(
            f"{value!r} cannot be a DN: only letters, digits, '_', '-', '.' and a leading '+' "
            "are allowed",
            reference="bad-dn",
            hint="give a DN number such as --dn 5001, or a trunk name such as AsteriskTrunk_webRTC",
        )
    return value
