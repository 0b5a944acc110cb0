"""Platform-wide settings the domain needs, handed to services through the session."""

from dataclasses import dataclass

from .crypto import SecretBox


@dataclass(frozen=True)
class Platform:
    realm: str
    sip_server: str
    box: SecretBox
