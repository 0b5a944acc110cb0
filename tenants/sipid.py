"""SIP user IDs: trunk number + extension number, with `r` for the remote endpoint.

The trunk number always has five digits, so the split is unambiguous whatever the length
of the extension number.
"""

import re
from dataclasses import dataclass

from .models import Endpoint

_SIP_USER_ID = re.compile(r"(?P<trunk>[1-9][0-9]{4})(?P<number>[0-9]{2,6})(?P<remote>r?)")


@dataclass(frozen=True)
class SipIdentity:
    trunk_number: str
    extension_number: str
    endpoint: Endpoint


def parse_sip_user_id(user_id):
    """The identity a SIP user ID names, or None when it cannot name one.

    Only a lowercase `r` marks the remote endpoint (the seed's wording, and phones send the
    user part verbatim); anything else after the digits is garbage.
    """
    if not isinstance(user_id, str):
        return None
    match = _SIP_USER_ID.fullmatch(user_id)
    if match is None:
        return None
    return SipIdentity(
        trunk_number=match["trunk"],
        extension_number=match["number"],
        endpoint=Endpoint.REMOTE if match["remote"] else Endpoint.HOME,
    )


def sip_user_id(trunk_number, extension_number, endpoint=Endpoint.HOME):
    suffix = "r" if endpoint == Endpoint.REMOTE else ""
    return f"{trunk_number}{extension_number}{suffix}"
