"""Digest authentication for the registrar (RFC 3261 §22, RFC 7616, RFC 8760), sans-IO.

Nothing here reads the clock or touches the network: the edge passes ``now`` (wall-clock
seconds, so that nonces stay verifiable across a restart and on every edge sharing the
secret) and gets strings and booleans back.

How the edge core is meant to use it for a REGISTER for SIP user ID ``uid``:

1. No Authorization header: 401 with one WWW-Authenticate per value of
   ``challenge(realm, nonces.issue(now, realm))``.
2. ``creds = parse_credentials(value)``; a DigestError is a malformed request.
3. ``creds.username`` must be ``uid`` and ``creds.realm`` the edge's realm (issue 5 item 2);
   the nonce is bound to the realm, the HA1 to both, but only the caller knows ``uid``.
4. ``status, issued_at = nonces.verify(creds.nonce, now, realm)``; "invalid" gets a fresh
   challenge.
5. ``verify(creds, identity.ha1 if identity else None, method)``, for unknown and known
   user IDs alike, so both take the same path and get the same answer.
6. A wrong response is an authentication failure. A right one on a "stale" nonce gets a
   fresh challenge with ``stale=True`` (RFC 7616 §3.3 sets stale only when the digest
   itself was valid).
7. Only then ``counts.accept(creds.nonce, creds.nc, issued_at)``: a refusal is a replay.
   Counting after verifying means that someone without the password cannot push a nonce's
   count up and lock the phone out of its own nonce.
"""

import binascii
import functools
import hashlib
import hmac
import math
import os
import re
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

# RFC 8760 §2.3: one challenge per algorithm, the most preferred first.
ALGORITHMS = ("SHA-256", "MD5")
_HASHES = {"SHA-256": hashlib.sha256, "MD5": hashlib.md5}
_HEX_LENGTH = {"SHA-256": 64, "MD5": 32}

MAX_HEADER_BYTES = 4096

NonceStatus = Literal["valid", "stale", "invalid"]


class DigestError(ValueError):
    """Credentials that cannot be checked: malformed, or outside what the edge accepts."""


# --- nonces ---------------------------------------------------------------------------

_NONCE_LABEL = b"trunkline sipedge nonce v1\x00"  # domain separation for the HMAC key use
_TIMESTAMP_BYTES = 8  # milliseconds since the epoch, big-endian
_RANDOM_BYTES = 8
_TAG_BYTES = 16  # HMAC-SHA256 truncated to 128 bits: forging still takes 2**128 tries
_NONCE_BYTES = _TIMESTAMP_BYTES + _RANDOM_BYTES + _TAG_BYTES
_NONCE_CHARS = math.ceil(_NONCE_BYTES * 4 / 3)  # base64url without padding
_B64URL = re.compile(r"[A-Za-z0-9_-]+")


_TO_URLSAFE = bytes.maketrans(b"+/", b"-_")
_FROM_URLSAFE = bytes.maketrans(b"-_", b"+/")


def _b64encode(raw):
    """base64url without padding (RFC 4648 §5)."""
    return binascii.b2a_base64(raw, newline=False).translate(_TO_URLSAFE).rstrip(b"=").decode(
        "ascii")


def _b64decode(text):
    """The bytes of base64url text (checked against _B64URL by the caller)."""
    return binascii.a2b_base64(
        text.encode("ascii").translate(_FROM_URLSAFE) + b"=" * (-len(text) % 4))


class NonceManager:
    """Issues nonces that any edge holding the secret can verify without storing them.

    A nonce is base64url(timestamp | random | HMAC(secret, timestamp | random | realm)),
    so its age and realm are known from the nonce alone (RFC 7616 §3.3 leaves the nonce's
    construction to the server and suggests a timestamp and a private key).

    ``NonceManager(secret)`` or ``NonceManager(secrets=[new, old])``: the first secret
    issues, every one verifies, so an operator can roll a new secret in without failing
    the nonces phones already hold, then drop the old one after a lifetime.
    """

    def __init__(self, secret: bytes | Sequence[bytes] | None = None, lifetime: float = 300.0,
                 *, secrets: Sequence[bytes] | None = None, skew: float = 2.0):
        if secret is not None and secrets is not None:
            raise TypeError("give either secret or secrets, not both")
        if secret is None and secrets is None:
            raise TypeError("a secret is needed")
        if secrets is None:
            secrets = [secret] if isinstance(secret, (bytes, bytearray)) else secret
        keys = list(secrets)
        if not keys or not all(isinstance(k, (bytes, bytearray)) and k for k in keys):
            raise ValueError("secrets must be a non-empty list of non-empty bytes")
        if not (math.isfinite(lifetime) and lifetime > 0):
            raise ValueError("lifetime must be a positive number of seconds")
        if not (math.isfinite(skew) and skew >= 0):
            raise ValueError("skew must be a non-negative number of seconds")
        self._keys = [_HmacSha256(bytes(k)) for k in keys]
        self.lifetime = float(lifetime)
        # Edges' clocks differ a little; a nonce issued by an edge slightly ahead is not
        # forged, but one far in the future would outlive its lifetime, so it is stale.
        self.skew = float(skew)
        self._pool, self._pool_at = b"", 0

    def issue(self, now: float, realm: str, *, bound: str = "") -> str:
        """A nonce for `realm`; `bound` (the source address asking) ties it to that
        source, so that answers to it from anywhere else are not even checked: nobody can
        spend failures in another address's name with a nonce obtained elsewhere."""
        issued_ms = math.floor(_finite(now) * 1000)
        if not 0 <= issued_ms < 2 ** (8 * _TIMESTAMP_BYTES):
            raise ValueError("now must be seconds since the epoch")
        body = issued_ms.to_bytes(_TIMESTAMP_BYTES, "big") + self._random()
        return _b64encode(body + self._tag(self._keys[0], body, _scope(realm, bound)))

    def _random(self):
        # Unique, not secret (the tag is what cannot be forged): taken from a buffer of
        # the OS's randomness, one system call per 512 nonces instead of one each.
        at = self._pool_at
        if at + _RANDOM_BYTES > len(self._pool):
            self._pool, at = os.urandom(_RANDOM_BYTES * 512), 0
        self._pool_at = at + _RANDOM_BYTES
        return self._pool[at:at + _RANDOM_BYTES]

    def check(self, nonce: str, now: float, realm: str, *, bound: str = "") -> NonceStatus:
        return self.verify(nonce, now, realm, bound=bound)[0]

    def verify(self, nonce: str, now: float, realm: str, *,
               bound: str = "") -> tuple[NonceStatus, float | None]:
        """``check``, and when the nonce is this edge's ("valid" or "stale") when it was
        issued (seconds), else None."""
        now = _finite(now)
        if not isinstance(nonce, str) or len(nonce) != _NONCE_CHARS \
                or not _B64URL.fullmatch(nonce):
            return "invalid", None
        raw = _b64decode(nonce)
        # The last character has spare bits: several spellings decode to the same bytes.
        # Only the canonical one is accepted, or each spelling would get its own fresh
        # nonce-count in NonceCounts and a captured request could be replayed.
        if _b64encode(raw) != nonce:
            return "invalid", None
        body, tag = raw[:-_TAG_BYTES], raw[-_TAG_BYTES:]
        # Every key is tried, without stopping at the first match, so the time taken
        # does not tell which key a forged tag came close to.
        matched = False
        scope = _scope(realm, bound)
        for key in self._keys:
            matched |= hmac.compare_digest(self._tag(key, body, scope), tag)
        if not matched:
            return "invalid", None
        issued_ms = int.from_bytes(body[:_TIMESTAMP_BYTES], "big")
        age_ms = now * 1000 - issued_ms
        # RFC 7616 §3.3: a nonce the server made but no longer accepts is "stale", so the
        # client retries with a fresh one without asking the user for the password.
        if age_ms > self.lifetime * 1000 or age_ms < -self.skew * 1000:
            return "stale", issued_ms / 1000
        return "valid", issued_ms / 1000

    @staticmethod
    def _tag(key, body, realm):
        return key.digest(_NONCE_LABEL + body + realm.encode("utf-8"))[:_TAG_BYTES]


class _HmacSha256:
    """HMAC-SHA256 under one key (RFC 2104), its padded key hashed once: each tag then
    costs two copies of those states instead of hmac.digest's setup of the key, which took
    more than twice as long (tests compare it with hmac.digest)."""

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes):
        if len(key) > 64:  # the block size of SHA-256
            key = hashlib.sha256(key).digest()
        key = key.ljust(64, b"\x00")
        self._inner = hashlib.sha256(key.translate(_IPAD))
        self._outer = hashlib.sha256(key.translate(_OPAD))

    def digest(self, message: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()


_IPAD = bytes(x ^ 0x36 for x in range(256))  # translate tables: each key byte XOR the pad
_OPAD = bytes(x ^ 0x5C for x in range(256))


def _scope(realm, bound):
    return realm if not bound else f"{realm}\x00{bound}"


def _finite(now):
    now = float(now)
    if not math.isfinite(now):
        raise ValueError("now must be a finite number of seconds")
    return now


class NonceCounts:
    """The highest nonce-count seen per nonce, for replay protection (RFC 7616 §3.4).

    Memory is bounded: beyond ``max_entries`` nonces the least recently used is forgotten,
    after which that nonce is treated as new. Size it above the number of nonces used
    within one nonce lifetime; the lifetime bounds the replay window in any case.
    """

    def __init__(self, max_entries: int = 100_000):
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self._highest = OrderedDict()  # nonce -> (highest nc, issued at)
        # Nonces issued up to this time may have had counts that are no longer known (from
        # before this process started, or forgotten for room): an unknown one of them
        # could be a replay, so it is refused (the phone then gets a fresh nonce).
        self.forgotten_before = None

    def forget_before(self, when: float) -> None:
        """Counts of nonces issued up to `when` are unknown (a process start)."""
        if self.forgotten_before is None or when > self.forgotten_before:
            self.forgotten_before = when

    def accept(self, nonce: str, nc: int, issued_at: float | None = None) -> bool:
        # RFC 7616 §3.4: nc counts the requests sent with this nonce, the current one
        # included, so it starts at 1 and must increase.
        if not isinstance(nc, int) or nc < 1:
            return False
        known = self._highest.get(nonce)
        if known is not None:
            self._highest.move_to_end(nonce)
            if nc <= known[0]:
                return False
        elif (issued_at is not None and self.forgotten_before is not None
              and issued_at < self.forgotten_before):
            return False
        self._highest[nonce] = (nc, issued_at)
        if len(self._highest) > self.max_entries:
            _, (_, evicted_at) = self._highest.popitem(last=False)
            if evicted_at is not None:
                self.forget_before(evicted_at)
        return True

    def __len__(self):
        return len(self._highest)


# --- credentials ----------------------------------------------------------------------


@dataclass(slots=True)  # not frozen: its __init__ would cost five times more
class Credentials:
    """The digest-response of an Authorization header (RFC 3261 §25.1, RFC 7616 §3.4)."""

    username: str
    realm: str
    nonce: str
    uri: str
    # Not in the repr: with the nonce and cnonce, a response allows an offline dictionary
    # attack on the password, so it must not end up in logs.
    response: str = field(repr=False)
    algorithm: str = "MD5"  # RFC 7616 §3.4: absent means MD5
    qop: str | None = None
    nc: int | None = None
    cnonce: str | None = None
    opaque: str | None = None


# RFC 3261 §25.1 token; quoted-string = DQUOTE *(qdtext / quoted-pair) DQUOTE with
# qdtext = LWS / %x21 / %x23-5B / %x5D-7E / UTF8-NONASCII and
# quoted-pair = "\" (%x00-09 / %x0B-0C / %x0E-7F). LWS is SP / HTAB here: the message
# parser unfolds header lines first (RFC 3261 §7.3.1), so CR and LF are always errors.
_TOKEN = r"[A-Za-z0-9\-.!%*_+`'~]+"
# qdtext is every character but controls (HTAB allowed), DQUOTE and backslash; runs of it
# are matched possessively (one step per run, not per character).
_QDTEXT = r'[^\x00-\x08\x0a-\x1f"\\\x7f]'
_QUOTED = rf'"(?:{_QDTEXT}++|\\[\x00-\x09\x0b\x0c\x0e-\x7f])*+"'
_SCHEME = re.compile(rf"[ \t]*({_TOKEN})[ \t]+")
_PARAM = re.compile(rf"[ \t]*({_TOKEN})[ \t]*=[ \t]*({_TOKEN}|{_QUOTED})[ \t]*")
# A whole value without quoted-pairs (every phone's) in one match, for the usual case: the
# scheme, then the parameters, which _PLAIN_PARAM.findall then takes apart (the same spans,
# as each is matched deterministically), each value without its quotes: a quoted one in the
# second group, a token in the third.
_PLAIN_PARAM = re.compile(rf'[ \t]*({_TOKEN})[ \t]*=[ \t]*(?:"({_QDTEXT}*+)"|({_TOKEN}))[ \t]*')
_PLAIN_PARAM_TEXT = rf'[ \t]*{_TOKEN}[ \t]*=[ \t]*(?:"{_QDTEXT}*+"|{_TOKEN})[ \t]*'
_PLAIN_WHOLE = re.compile(
    rf"[ \t]*({_TOKEN})[ \t]+({_PLAIN_PARAM_TEXT}(?:,{_PLAIN_PARAM_TEXT})*)")
_QUOTED_PAIR = re.compile(r"\\(.)", re.DOTALL)
_HEX = re.compile(r"[0-9a-fA-F]+")
_NC = re.compile(r"[0-9a-f]{8}")  # RFC 7616 §3.4: nc-value = 8LHEX

_REQUIRED = ("username", "realm", "nonce", "uri", "response")


def _split_auth_value(value):
    """(scheme, {lowercased name: unquoted value}) of a challenge or credentials value."""
    if not isinstance(value, str):
        raise TypeError("header value must be str")
    if len(value) > MAX_HEADER_BYTES:
        raise DigestError("header value too long")
    if not value.isascii():
        try:
            size = len(value.encode("utf-8"))
        except UnicodeEncodeError:  # lone surrogates: nothing a hash could be computed over
            raise DigestError("header value is not valid text") from None
        if size > MAX_HEADER_BYTES:
            raise DigestError("header value too long")
    plain = _PLAIN_WHOLE.fullmatch(value)
    if plain is not None:
        found = _PLAIN_PARAM.findall(plain.group(2))
        params = {name.lower(): quoted or token for name, quoted, token in found}
        if len(params) == len(found):  # else a duplicate: the loop below names it
            return plain.group(1), params
    return _split_stepwise(value)


def _split_stepwise(value):
    """_split_auth_value one parameter at a time: what its shortcut reads in one match,
    values with quoted-pairs, and the error of anything else (tests compare them)."""
    match = _SCHEME.match(value)
    if not match:
        raise DigestError("no authentication scheme")
    scheme, pos, params = match.group(1), match.end(), {}
    while True:
        match = _PARAM.match(value, pos)
        if not match:
            raise DigestError(f"malformed parameter at offset {pos}")
        # RFC 7616 §3.4 and RFC 7235 §2.1: parameter names are case-insensitive, and
        # each may appear once.
        name, raw = match.group(1).lower(), match.group(2)
        if name in params:
            raise DigestError(f"duplicate parameter {name}")
        if raw[0] == '"':
            raw = raw[1:-1]
            if "\\" in raw:
                raw = _QUOTED_PAIR.sub(r"\1", raw)
        params[name] = raw
        pos = match.end()
        if pos == len(value):
            return scheme, params
        if value[pos] != ",":
            raise DigestError(f"expected a comma at offset {pos}")
        pos += 1


def parse_credentials(header_value: str) -> Credentials:
    """The Digest credentials of an Authorization header value; DigestError otherwise.

    Values are accepted as token or quoted-string whichever the grammar asks for, since
    deployed clients differ (``algorithm="MD5"``, ``qop="auth"``); unknown parameters are
    ignored (RFC 3261 §25.1 auth-param).
    """
    scheme, params = _split_auth_value(header_value)
    # RFC 7235 §2.1: the scheme name is case-insensitive.
    if scheme.lower() != "digest":
        raise DigestError(f"unsupported scheme {scheme}")
    for name in _REQUIRED:
        if not params.get(name):
            raise DigestError(f"missing {name}")

    algorithm = params.get("algorithm", "MD5").upper()
    if algorithm not in _HASHES:  # the -sess variants are never offered, so never accepted
        raise DigestError(f"unsupported algorithm {params['algorithm']}")

    response = params["response"]
    if len(response) != _HEX_LENGTH[algorithm] or not _HEX.fullmatch(response):
        raise DigestError(f"response is not a {algorithm} digest")

    # RFC 7616 §3.4.4: with userhash the username is a hash we could not map to a user ID.
    userhash = params.get("userhash", "false").lower()
    if userhash != "false":
        raise DigestError("userhash is not supported")

    qop, nc, cnonce = params.get("qop"), params.get("nc"), params.get("cnonce")
    if qop is None:
        # RFC 7616 §3.4: cnonce and nc go with qop, and only with it.
        if nc is not None or cnonce is not None:
            raise DigestError("nc or cnonce without qop")
    else:
        if qop.lower() != "auth":  # only qop="auth" is offered (see challenge)
            raise DigestError(f"unsupported qop {qop}")
        if nc is None or not cnonce:
            raise DigestError("qop needs nc and cnonce")
        if not _NC.fullmatch(nc):
            raise DigestError("nc is not 8 lowercase hex digits")

    return Credentials(
        username=params["username"], realm=params["realm"], nonce=params["nonce"],
        uri=params["uri"], response=response.lower(), algorithm=algorithm, qop=qop,
        nc=None if nc is None else int(nc, 16), cnonce=cnonce, opaque=params.get("opaque"))


# --- challenges and responses ---------------------------------------------------------


_UNQUOTABLE = re.compile("[\x00-\x08\x0a-\x1f\x7f]")


def _quote(text):
    if _UNQUOTABLE.search(text):
        raise ValueError(f"cannot put {text!r} in a quoted-string")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def challenge(realm: str, nonce: str, *, stale: bool = False,
              opaque: str | None = None,
              algorithms: Sequence[str] = ALGORITHMS) -> list[str]:
    """The WWW-Authenticate values of a 401, one per algorithm, SHA-256 first.

    RFC 8760 §2.3: several challenges of one realm each use a different algorithm, in
    the order of the server's preference; a client takes the first it supports
    (RFC 7616 §3.7). RFC 7616 §3.3: qop-options is a quoted string, stale a token.
    """
    nonce = _quote(nonce)
    return [head + nonce + tail
            for head, tail in _challenge_around_nonce(realm, opaque, tuple(algorithms), stale)]


@functools.lru_cache(maxsize=64)  # an edge has one realm, a few sets of algorithms
def _challenge_around_nonce(realm, opaque, algorithms, stale):
    """(what comes before the quoted nonce, what comes after) of each challenge."""
    parts = []
    for algorithm in algorithms:
        if algorithm not in _HASHES:
            raise ValueError(f"unsupported algorithm {algorithm}")
        after = [f"opaque={_quote(opaque)}"] if opaque is not None else []
        after += [f"algorithm={algorithm}", 'qop="auth"']
        if stale:
            after.append("stale=true")
        parts.append((f"Digest realm={_quote(realm)}, nonce=", ", " + ", ".join(after)))
    return tuple(parts)


def _hash(algorithm, text):
    return _HASHES[algorithm](text.encode("utf-8")).hexdigest()


def expected_response(credentials: Credentials, ha1: str, method: str) -> str:
    """request-digest per RFC 7616 §3.4.1 with qop=auth, from the stored HA1.

    response = H(HA1:nonce:nc:cnonce:qop:H(method:uri)) (A1 per §3.4.2, A2 per §3.4.3).
    RFC 2069 responses (no qop; RFC 3261 §22.4 keeps them for backward compatibility) are
    refused: without cnonce and nonce-count a captured response replays for as long as its
    nonce lives.
    """
    algorithm = credentials.algorithm
    if algorithm not in _HASHES:
        raise DigestError(f"unsupported algorithm {algorithm}")
    if credentials.qop is None:
        raise DigestError("the edge requires qop=auth")
    if credentials.qop.lower() != "auth":
        raise DigestError(f"unsupported qop {credentials.qop}")
    nc = credentials.nc
    if not isinstance(nc, int) or not 0 <= nc <= 0xFFFFFFFF or not credentials.cnonce:
        raise DigestError("qop=auth needs nc and cnonce")
    # RFC 7616 §3.4.1 writes the hashes as lowercase hex; HA1 from elsewhere may not be.
    ha2 = _hash(algorithm, f"{method}:{credentials.uri}")
    return _hash(algorithm, f"{ha1.lower()}:{credentials.nonce}:{nc:08x}:"
                            f"{credentials.cnonce}:{credentials.qop}:{ha2}")


# An HA1 that no password produces: random per process, so nobody can compute a response
# for it. A constant written here would be a password-equivalent anyone could read.
_DUMMY_HA1 = {algorithm: os.urandom(_HEX_LENGTH[algorithm] // 2).hex() for algorithm in ALGORITHMS}


def dummy_ha1(algorithm: str) -> str:
    """The HA1 to check against when the user ID is unknown.

    Issue 5 item 2: an unknown user ID and a wrong password must get the same answer in
    the same time, so the edge does the same hashing and comparison for both.
    """
    try:
        return _DUMMY_HA1[algorithm.upper()]
    except KeyError:
        raise DigestError(f"unsupported algorithm {algorithm}") from None


def verify(credentials: Credentials, ha1_by_algorithm: Mapping[str, str] | None,
           method: str) -> bool:
    """Whether the response was made with the HA1 for the credentials' algorithm.

    ``ha1_by_algorithm`` maps "MD5" / "SHA-256" to hex HA1; ``None`` (unknown user ID) or
    a missing algorithm is checked against ``dummy_ha1`` and is always False, after the
    same work as a real check. Raises DigestError as expected_response does.
    """
    ha1 = (ha1_by_algorithm or {}).get(credentials.algorithm)
    known = ha1 is not None
    if not known:
        ha1 = dummy_ha1(credentials.algorithm)
    expected = expected_response(credentials, ha1, method)
    matches = hmac.compare_digest(expected.encode("utf-8"),
                                  credentials.response.lower().encode("utf-8"))
    return matches and known
