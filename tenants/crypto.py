"""Secrets of the platform: SIP passwords, digest HA1s, API key hashes, voicemail PINs.

- SIP passwords are encrypted at rest with Fernet (AES-128-CBC + HMAC-SHA256); MultiFernet
  lets operators add a new key, re-encrypt everything, then drop the old one.
- Edges get digest HA1 values, never the password (RFC 7616 §3.4.2: HA1 = H(user:realm:pass)).
- API keys and edge tokens are 256-bit random secrets, so a plain SHA-256 is a sufficient
  stored hash; they are compared in constant time.
- Voicemail PINs are short, so they get a slow salted hash (scrypt).
"""

import base64
import hashlib
import hmac
import secrets

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

# People type SIP passwords into phones: no 0/O/o, 1/l/I look-alikes.
PASSWORD_ALPHABET = "23456789abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ"
PASSWORD_LENGTH = 20


def generate_sip_password():
    return "".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(PASSWORD_LENGTH))


def ha1(algorithm, username, realm, password):
    digest = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}[algorithm]
    return digest(f"{username}:{realm}:{password}".encode()).hexdigest()


class SecretBox:
    """Encrypts with the first key, decrypts with any of them."""

    def __init__(self, keys):
        if not keys:
            raise ValueError("at least one secret key is needed")
        self._fernet = MultiFernet([Fernet(k) for k in keys])

    @staticmethod
    def generate_key():
        return Fernet.generate_key().decode()

    def encrypt(self, plaintext):
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, token):
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            raise ValueError("secret encrypted with a key the platform no longer has") from None

    def rotate(self, token):
        """Re-encrypt a token under the first (newest) key."""
        return self._fernet.rotate(token.encode()).decode()


def generate_token(prefix):
    """A credential of the form PREFIX_PUBLICID.SECRET; returns (token, public_id, secret_hash)."""
    public_id = secrets.token_hex(6)
    secret = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    return f"{prefix}_{public_id}.{secret}", public_id, hash_secret(secret)


def split_token(prefix, token):
    """(public_id, secret) of a well-formed token, else None."""
    head, sep, secret = token.partition(".")
    if not sep or not head.startswith(prefix + "_") or not secret:
        return None
    return head[len(prefix) + 1 :], secret


def hash_secret(secret):
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_matches(secret, stored_hash):
    return hmac.compare_digest(hash_secret(secret), stored_hash)


def hash_pin(pin):
    salt = secrets.token_bytes(16)
    derived = hashlib.scrypt(pin.encode(), salt=salt, n=2**14, r=8, p=1)
    return "scrypt$" + base64.b64encode(salt).decode() + "$" + base64.b64encode(derived).decode()


def pin_matches(pin, stored):
    try:
        _, salt, derived = stored.split("$")
        expected = base64.b64decode(derived)
        actual = hashlib.scrypt(pin.encode(), salt=base64.b64decode(salt), n=2**14, r=8, p=1)
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected)
