"""SIP messages: parse bytes into immutable values, build values back into bytes (RFC 3261).

Sans-IO: nothing here reads a socket or the clock. ``parse_message`` takes one datagram (or
one message cut out of a stream by ``StreamFramer``) and returns a ``Request`` or a
``Response``; anything it cannot accept raises ``ParseError``, carrying the header fields it
could read so that the edge can still answer 400 (RFC 3261 §21.4.1).

The parser follows the §7 / §25 grammar the way robust servers apply it: liberal where RFC
4475 asks elements to accept (folding, LWS around separators, compact and odd-cased names,
escapes kept as given), strict where a wrong guess would change what the message means
(start line, Request-URI, framing, the mandatory header fields).

Header values are kept as text. Bytes that are not UTF-8 are decoded with
``surrogateescape``, so they never crash the parser and ``to_bytes`` writes them back as
they came.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass, field
from typing import Iterable, Iterator, NamedTuple, Union

__all__ = [
    "KEEPALIVE",
    "MAX_HEADERS",
    "MAX_LINE_LENGTH",
    "MAX_MESSAGE_SIZE",
    "PONG",
    "Headers",
    "NameAddr",
    "ParseError",
    "Parts",
    "Request",
    "Response",
    "SipUri",
    "StreamFramer",
    "Via",
    "RequestView",
    "copied_fields",
    "list_elements",
    "make_response",
    "read_request_view",
    "parse_auth_params",
    "parse_contact",
    "parse_cseq",
    "parse_message",
    "parse_name_addr",
    "parse_uri",
    "parse_via",
    "split_list",
    "unescape",
]

# Limits against memory and CPU exhaustion. UDP cannot carry more than 64 KiB anyway, and no
# REGISTER from a real phone comes near any of these.
MAX_MESSAGE_SIZE = 64 * 1024
MAX_HEADERS = 256
MAX_LINE_LENGTH = 8 * 1024

# RFC 3261 §8.1.1.5: the CSeq sequence number is a 32-bit unsigned integer.
_MAX_CSEQ = 2**32 - 1


class ParseError(ValueError):
    """Input that is not an acceptable SIP message or value.

    ``headers`` holds the header fields parsed before the error (or None), so that the edge
    can answer a malformed request with 400 when Via/From/To/Call-ID/CSeq are usable.
    """

    def __init__(self, message: str, headers: Headers | None = None):
        super().__init__(message)
        self.headers = headers


# ---------------------------------------------------------------------------------------
# Lexical helpers (RFC 3261 §25.1)

_TOKEN_CHARS = "A-Za-z0-9\\-.!%*_+`'~"
_TOKEN_RE = re.compile(f"[{_TOKEN_CHARS}]+")
# display-name = *(token LWS) / quoted-string; RFC 4475 §3.1.1.6 (lwsdisp): no LWS is
# needed before "<".
_DISPLAY_TOKENS_RE = re.compile(f"[{_TOKEN_CHARS}]+(?:[ \\t]+[{_TOKEN_CHARS}]+)*")
# gen-value = token / host / quoted-string (the quoted form is checked separately). Kept
# liberal: anything but separators, whitespace and controls.
_GEN_VALUE_RE = re.compile('[^\\x00-\\x20\\x7f";,<>]+')
_DIGITS_RE = re.compile("[0-9]+")
_HEADER_END_RE = re.compile(rb"\r?\n\r?\n")


def _built(cls, **fields):
    """A frozen dataclass instance from values the parser has checked, every field given:
    set in its __dict__ at once (the generated __init__ sets each field through
    object.__setattr__, several times slower, on the hot path of every message)."""
    obj = object.__new__(cls)
    obj.__dict__.update(fields)
    return obj


def _is_token(text: str) -> bool:
    return _TOKEN_RE.fullmatch(text) is not None


def _scan_quoted(text: str, start: int) -> int:
    """Index just past the quoted-string opening at ``start`` (RFC 3261 §25.1 quoted-pair)."""
    i, n = start + 1, len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2
        elif c == '"':
            return i + 1
        else:
            i += 1
    raise ParseError("unterminated quoted string")


_QUOTED_PAIR_RE = re.compile(r"\\(.)", re.S)


def _unquote(inner: str) -> str:
    return _QUOTED_PAIR_RE.sub(r"\1", inner)


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _split_top(text: str, sep: str) -> list[str]:
    """Split on ``sep`` outside quoted strings and <...> (RFC 3261 §7.3.1, §20).

    Never raises: an unterminated quote or bracket swallows the rest, and the value parser
    of that element reports the error.
    """
    if '"' not in text and "<" not in text:
        return text.split(sep)
    parts: list[str] = []
    start = 0
    i, n = 0, len(text)
    angle = False
    while i < n:
        c = text[i]
        if c == '"':
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
        elif c == "<":
            angle = True
        elif c == ">":
            angle = False
        elif c == sep and not angle:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    parts.append(text[start:])
    return parts


def split_list(value: str) -> list[str]:
    """The elements of a comma-separated header value, commas in quotes and <> kept."""
    return [element.strip(" \t") for element in _split_top(value, ",")]


def list_elements(values: Iterable[str]) -> list[str]:
    """The elements of the fields of a comma-separated list header, in order, empty ones
    skipped (RFC 3261 §7.3.1)."""
    elements = []
    for value in values:
        if "," not in value:  # one element: nothing to split
            value = value.strip(" \t")
            if value:
                elements.append(value)
            continue
        for element in _split_top(value, ","):
            element = element.strip(" \t")
            if element:
                elements.append(element)
    return elements


def _find_unquoted(text: str, char: str) -> int:
    """Index of the first ``char`` outside quoted strings, or -1."""
    if '"' not in text:
        return text.find(char)
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == '"':
            i = _scan_quoted(text, i)
            continue
        if c == char:
            return i
        i += 1
    return -1


def _parse_params(segments: Iterable[str]) -> dict[str, str]:
    """generic-param list (RFC 3261 §25.1): ``name [EQUAL gen-value]`` per segment.

    Names are case-insensitive, so they are lower-cased; values are kept as given (a quoted
    value keeps its quotes, so that it can be echoed back unchanged). A parameter without a
    value maps to "". The first occurrence of a repeated name wins.
    """
    params: dict[str, str] = {}
    for segment in segments:
        segment = segment.strip(" \t")
        if not segment:
            raise ParseError("empty parameter")
        name, eq, value = segment.partition("=")
        name = name.rstrip(" \t")
        if not _is_token(name):
            raise ParseError("bad parameter name")
        if eq:
            # EQUAL = SWS "=" SWS
            value = value.strip(" \t")
            if not value:
                raise ParseError("parameter without value after '='")
            if value[0] == '"':
                if _scan_quoted(value, 0) != len(value):
                    raise ParseError("text after quoted parameter value")
            elif _GEN_VALUE_RE.fullmatch(value) is None:
                raise ParseError("bad parameter value")
        params.setdefault(name.lower(), value)
    return params


def _format_params(params: dict[str, str]) -> str:
    return "".join(f";{k}={v}" if v else f";{k}" for k, v in params.items())


def unescape(text: str) -> str:
    """Decode %HH escapes once (RFC 3261 §19.1.4: compare URIs with escapes decoded).

    Never recursive: "v%61lue%25%34%31" becomes "value%41" (RFC 4475 §3.1.1.3).
    """
    if "%" not in text:
        return text
    raw = text.encode("utf-8", "surrogateescape")
    decoded = re.sub(rb"%([0-9A-Fa-f]{2})", lambda m: bytes([int(m.group(1), 16)]), raw)
    return decoded.decode("utf-8", "surrogateescape")


# ---------------------------------------------------------------------------------------
# Header names

# RFC 3261 §7.3.3 and §20, plus the extensions' compact forms the edge meets.
_COMPACT_FORMS = {
    "i": "Call-ID",
    "m": "Contact",
    "f": "From",
    "t": "To",
    "v": "Via",
    "l": "Content-Length",
    "c": "Content-Type",
    "k": "Supported",
    "s": "Subject",
    "e": "Content-Encoding",
    "o": "Event",
    "r": "Refer-To",
    "u": "Allow-Events",
    "x": "Session-Expires",
    "b": "Referred-By",
}

_KNOWN_NAMES = {
    name.lower(): name
    for name in (
        "Accept", "Accept-Encoding", "Accept-Language", "Alert-Info", "Allow",
        "Allow-Events", "Authentication-Info", "Authorization", "CSeq", "Call-ID",
        "Call-Info", "Contact", "Content-Disposition", "Content-Encoding",
        "Content-Language", "Content-Length", "Content-Type", "Date", "Error-Info",
        "Event", "Expires", "From", "Identity", "In-Reply-To", "MIME-Version",
        "Max-Forwards", "Min-Expires", "Organization", "Path", "Priority",
        "Proxy-Authenticate", "Proxy-Authorization", "Proxy-Require", "RAck", "RSeq",
        "Reason", "Record-Route", "Refer-To", "Referred-By", "Reply-To", "Require",
        "Retry-After", "Route", "Server", "Service-Route", "Session-Expires", "Subject",
        "Subscription-State", "Supported", "Timestamp", "To", "Unsupported", "User-Agent",
        "Via", "WWW-Authenticate", "Warning",
    )
}

# Header fields whose grammar is a comma-separated list (RFC 3261 §7.3.1 allows them to be
# combined into one field). Every other field is one value, commas and all: the
# authentication headers (their params are comma-separated), Date, and unknown headers,
# whose syntax the edge cannot know (RFC 4475 §3.1.1.1).
_LIST_HEADERS = frozenset(
    name.lower()
    for name in (
        "Accept", "Accept-Encoding", "Accept-Language", "Alert-Info", "Allow",
        "Allow-Events", "Call-Info", "Contact", "Content-Encoding", "Content-Language",
        "Error-Info", "In-Reply-To", "Path", "Proxy-Require", "Reason", "Record-Route",
        "Require", "Route", "Service-Route", "Supported", "Unsupported", "Via", "Warning",
    )
)


# The spellings met on the wire almost always: answered by one dict lookup.
_CANONICAL_SPELLINGS = {
    **{name: name for name in _KNOWN_NAMES.values()},
    **{name.lower(): name for name in _KNOWN_NAMES.values()},
    **_COMPACT_FORMS,
    **{letter.upper(): name for letter, name in _COMPACT_FORMS.items()},
}


# Spelling -> the key fields are looked up by (the canonical name, lower-cased).
_LOOKUP_KEYS = {spelling: name.lower() for spelling, name in _CANONICAL_SPELLINGS.items()}


def _canonical_name(name: str) -> str:
    canonical = _CANONICAL_SPELLINGS.get(name)
    if canonical is not None:
        return canonical
    low = name.lower()
    return _COMPACT_FORMS.get(low) or _KNOWN_NAMES.get(low) or name


class Headers:
    """An immutable, ordered multi-map of header fields.

    Names are looked up case-insensitively; compact forms and known names are stored in
    their full canonical spelling (RFC 3261 §7.3.3), unknown names as given. Iteration
    yields the (name, value) fields in order; ``get_all`` splits comma-separated list
    headers into their elements.
    """

    __slots__ = ("_fields", "_lookup")

    def __init__(self, fields: Iterable[tuple[str, str]] = ()):
        checked = []
        for name, value in fields:
            if not isinstance(name, str) or not _is_token(name):
                raise ValueError(f"bad header name {name!r}")
            if not isinstance(value, str) or "\r" in value or "\n" in value:
                # CR or LF in a value would let it inject header fields on the wire.
                raise ValueError(f"bad value for header {name}")
            checked.append((_canonical_name(name), value))
        self._set(tuple(checked))

    @classmethod
    def _trusted(cls, fields: Iterable[tuple[str, str]]) -> Headers:
        """Fields already checked and canonicalized by the parser."""
        headers = cls.__new__(cls)
        headers._set(tuple(fields))
        return headers

    def _set(self, fields: tuple[tuple[str, str], ...]) -> None:
        object.__setattr__(self, "_fields", fields)
        object.__setattr__(self, "_lookup", None)

    @property
    def _keys(self) -> tuple[str, ...]:
        return tuple([name.lower() for name, _ in self._fields])

    @property
    def _index(self) -> dict[str, list[str]]:
        """Lower-cased name -> values in order, made at the first lookup (the headers of
        a response being sent are never looked up)."""
        index = self._lookup
        if index is None:
            index = {}
            for name, value in self._fields:
                key = name.lower()
                values = index.get(key)
                if values is None:
                    index[key] = [value]
                else:
                    values.append(value)
            object.__setattr__(self, "_lookup", index)
        return index

    def __setattr__(self, name, value):
        raise AttributeError("Headers is immutable")

    def __reduce__(self):
        # copy, deepcopy and pickle would otherwise restore the slots through __setattr__.
        return Headers._trusted, (self._fields,)

    @staticmethod
    def _key(name: str) -> str:
        key = _LOOKUP_KEYS.get(name)
        return key if key is not None else _canonical_name(name).lower()

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value (for a list header, its first element: the top Via)."""
        key = self._key(name)
        values = self._index.get(key)
        if not values:
            return default
        if key not in _LIST_HEADERS:
            return values[0]
        elements = self.get_all(name)
        return elements[0] if elements else default

    def get_all(self, name: str) -> list[str]:
        key = self._key(name)
        values = self._index.get(key)
        if not values:
            return []
        if key not in _LIST_HEADERS:
            return list(values)
        return list_elements(values)

    def count(self, name: str) -> int:
        """How many fields (lines) carry this name."""
        return len(self._index.get(self._key(name), ()))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._key(name) in self._index

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def with_header(self, name: str, value: str) -> Headers:
        """A copy with one more field at the end."""
        return Headers._trusted((*self._fields, Headers(((name, value),))._fields[0]))

    def without(self, name: str) -> Headers:
        """A copy without any field of that name."""
        key = self._key(name)
        return Headers._trusted(f for k, f in zip(self._keys, self._fields) if k != key)

    def replace(self, name: str, value: str) -> Headers:
        """A copy where one field replaces every field of that name, at the first's place."""
        key = self._key(name)
        new = Headers(((name, value),))._fields[0]
        fields, placed = [], False
        for k, f in zip(self._keys, self._fields):
            if k != key:
                fields.append(f)
            elif not placed:
                fields.append(new)
                placed = True
        if not placed:
            fields.append(new)
        return Headers._trusted(fields)

    def _comparable(self) -> tuple[tuple[str, str], ...]:
        return tuple(zip(self._keys, (v for _, v in self._fields)))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return self._comparable() == other._comparable()

    def __hash__(self) -> int:
        return hash(self._comparable())

    def __repr__(self) -> str:
        return f"Headers({list(self._fields)!r})"


# ---------------------------------------------------------------------------------------
# URIs (RFC 3261 §19.1, §25.1)

# user / password: unreserved / escaped / user-unreserved. Characters that never belong in
# them are refused; the others are kept as given, escapes included (RFC 4475 §3.1.1.3).
_USERINFO_BAD_RE = re.compile('[\\x00-\\x20\\x7f<>"@\\[\\]\\\\]|%(?![0-9A-Fa-f]{2})')
# uri-parameter: param-unreserved includes "&" (RFC 3261 §25.1); only headers split on it.
_URI_PARAM_RE = re.compile('[^\\x00-\\x20\\x7f<>"@;?=\\\\]+')
_URI_HEADER_RE = re.compile('[^\\x00-\\x20\\x7f<>"@;&=\\\\]*')
_URI_BAD_RE = re.compile('[\\x00-\\x20\\x7f<>"]')
_HOSTNAME_RE = re.compile("[A-Za-z0-9_.\\-]+")
_SCHEME_RE = re.compile("[A-Za-z][A-Za-z0-9+.\\-]*:")


def _check_host(host: str) -> None:
    if host.startswith("["):
        # IPv6reference = "[" IPv6address "]"
        if not host.endswith("]"):
            raise ParseError("bad IPv6 reference")
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise ParseError("bad IPv6 reference") from None
    elif _HOSTNAME_RE.fullmatch(host) is None:
        raise ParseError("bad host")


def _parse_port(text: str) -> int:
    if _DIGITS_RE.fullmatch(text) is None or len(text) > 5 or int(text) > 65535:
        raise ParseError("bad port")
    return int(text)


@dataclass(frozen=True)
class SipUri:
    """A sip: or sips: URI. ``host`` keeps the brackets of an IPv6 reference; user and
    password keep their %HH escapes (see ``unescape``); parameter names are lower-cased."""

    scheme: str
    user: str
    password: str
    host: str
    port: int | None
    params: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        text = f"{self.scheme}:"
        if self.user:
            text += self.user
            if self.password:
                text += ":" + self.password
            text += "@"
        text += self.host
        if self.port is not None:
            text += f":{self.port}"
        text += _format_params(self.params)
        if self.headers:
            text += "?" + "&".join(f"{k}={v}" for k, v in self.headers.items())
        return text


# The shape nearly every URI on the wire has, answered by one match: sip:user@host:port;params
# with a plain user part (no password, escapes, ";" or "?") and a hostname or IPv4 host.
# Whatever it accepts, the full parser below accepts with the same result (the tests check
# both on generated URIs); anything else goes to the full parser.
_PLAIN_URI_RE = re.compile(
    "([Ss][Ii][Pp][Ss]?):(?:([A-Za-z0-9\\-_.!~*'()&=+$,]+)@)?([A-Za-z0-9_.\\-]+)"
    "(?::([0-9]{1,5}))?((?:;[^\\x00-\\x20\\x7f<>\"@;?=\\\\]+(?:=[^\\x00-\\x20\\x7f<>\"@;?=\\\\]+)?)*)"
)


def parse_uri(text: str) -> SipUri:
    """Parse a SIP-URI or SIPS-URI (RFC 3261 §19.1.1). No whitespace is allowed inside."""
    plain = _plain_uri(text)
    if plain is not None:
        scheme, user, host, port, param_text = plain
        return _built(SipUri, scheme=scheme.lower(), user=user or "", password="", host=host,
                      port=port, params=_plain_params(param_text), headers={})
    return _parse_uri_in_full(text)


@functools.lru_cache(maxsize=4096)  # a phone names the same URIs in every request
def _plain_uri(text: str) -> tuple | None:
    """(scheme, user or None, host, port or None, parameters' text) of a URI in the plain
    shape, else None."""
    m = _PLAIN_URI_RE.fullmatch(text)
    if m is None:
        return None
    scheme, user, host, port_text, param_text = m.groups()
    if port_text is None:
        return scheme, user, host, None, param_text
    port = int(port_text)
    return (scheme, user, host, port, param_text) if port <= 65535 else None


def _plain_params(text: str) -> dict[str, str]:
    """The parameters of a shortcut's match (";name=value;name"), names lower-cased, the
    first of a repeated name kept."""
    params: dict[str, str] = {}
    if text:
        for param in text[1:].split(";"):
            name, _, value = param.partition("=")
            params.setdefault(name.lower(), value)
    return params


def _parse_uri_in_full(text: str) -> SipUri:
    scheme, colon, rest = text.partition(":")
    scheme = scheme.lower()
    if not colon or scheme not in ("sip", "sips"):
        raise ParseError("not a sip: or sips: URI")
    if not rest or _URI_BAD_RE.search(rest):
        raise ParseError("bad character in URI")
    # The user part may hold "?" and ";" (user-unreserved, RFC 4475 §3.1.1.2) but never an
    # unescaped "@", and nothing after the userinfo may hold one: the first "@" ends it.
    user = password = ""
    userinfo, at, hostpart = rest.partition("@")
    if at:
        user, _, password = userinfo.partition(":")
        if not user:
            raise ParseError("empty user part")
        if _USERINFO_BAD_RE.search(userinfo):
            raise ParseError("bad character in user part")
    else:
        hostpart = rest
    hostpart, question, header_text = hostpart.partition("?")
    hostport, *param_texts = hostpart.split(";")
    if hostport.startswith("["):
        host, bracket, port_text = hostport.partition("]")
        host += bracket
        if port_text:
            if not port_text.startswith(":"):
                raise ParseError("bad host")
            port_text = port_text[1:]
        else:
            port_text = None
    else:
        host, colon, port_text = hostport.partition(":")
        port_text = port_text if colon else None
    _check_host(host)
    port = _parse_port(port_text) if port_text is not None else None

    params: dict[str, str] = {}
    for param in param_texts:
        name, eq, value = param.partition("=")
        if _URI_PARAM_RE.fullmatch(name) is None or (eq and _URI_PARAM_RE.fullmatch(value) is None):
            raise ParseError("bad URI parameter")
        params.setdefault(name.lower(), value)

    headers: dict[str, str] = {}
    if question:
        for header in header_text.split("&"):
            name, eq, value = header.partition("=")
            if not (eq and name and _URI_HEADER_RE.fullmatch(name) and _URI_HEADER_RE.fullmatch(value)):
                raise ParseError("bad URI header")
            headers.setdefault(name, value)
    return SipUri(scheme, user, password, host, port, params, headers)


# ---------------------------------------------------------------------------------------
# name-addr / addr-spec (From, To, Contact, Route...: RFC 3261 §20.10, §25.1)


@dataclass(frozen=True)
class NameAddr:
    """``display`` is unquoted ("" when absent); ``params`` are the header parameters
    (tag, expires, q...), lower-cased names, values as given (quoted ones with quotes)."""

    display: str
    uri: SipUri
    params: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        display = _quote(self.display) + " " if self.display else ""
        return f"{display}<{self.uri}>{_format_params(self.params)}"


def _parse_trailing_params(text: str) -> dict[str, str]:
    text = text.strip(" \t")
    if not text:
        return {}
    if text[0] != ";":
        raise ParseError("unexpected text after address")
    return _parse_params(_split_top(text[1:], ";"))


# The shape of nearly every From, To and Contact: an optional quoted display name without
# escapes, <URI>, and parameters without spaces or quotes. One match; the URI itself goes to
# parse_uri. Anything else (and everything this refuses) goes to the full parser.
_PLAIN_NAME_ADDR_RE = re.compile(
    f'(?:"([^"\\\\\\x00-\\x1f]*)" ?)?<([^<>]*)>((?:;[{_TOKEN_CHARS}]+(?:=[^\\x00-\\x20\\x7f";,<>]+)?)*)'
)


def parse_name_addr(text: str) -> NameAddr:
    """Parse ``"Name" <sip:...>;params``, ``Name <sip:...>`` or bare ``sip:...;params``."""
    m = _PLAIN_NAME_ADDR_RE.fullmatch(text)
    if m is not None:
        display, uri_text, param_text = m.groups()
        return _built(NameAddr, display=display or "", uri=parse_uri(uri_text),
                      params=_plain_params(param_text))
    return _parse_name_addr_in_full(text)


def _parse_name_addr_in_full(text: str) -> NameAddr:
    text = text.strip(" \t")
    if not text:
        raise ParseError("empty address")
    lt = _find_unquoted(text, "<")
    if lt >= 0:
        display_text = text[:lt].strip(" \t")
        if display_text.startswith('"'):
            if _scan_quoted(display_text, 0) != len(display_text):
                raise ParseError("text between display name and '<'")
            display = _unquote(display_text[1:-1])
        elif not display_text or _DISPLAY_TOKENS_RE.fullmatch(display_text):
            display = display_text
        else:
            # RFC 4475 §3.1.2.15 (baddn): an unquoted display name with non-token
            # characters is refused rather than guessed at.
            raise ParseError("display name must be quoted")
        gt = text.find(">", lt + 1)
        if gt < 0:
            raise ParseError("missing '>'")
        uri = parse_uri(text[lt + 1 : gt])
        return NameAddr(display, uri, _parse_trailing_params(text[gt + 1 :]))
    # addr-spec form. RFC 3261 §20.10: a URI holding a comma, question mark or semicolon
    # must be enclosed in <>, so here the first ";" starts the header parameters and a
    # "?" is an error (RFC 4475 §3.1.2.13, regbadct).
    semi = text.find(";")
    uri_text = (text if semi < 0 else text[:semi]).rstrip(" \t")
    if "?" in uri_text:
        raise ParseError("URI with headers must be enclosed in <>")
    uri = parse_uri(uri_text)
    params = _parse_trailing_params(text[semi:]) if semi >= 0 else {}
    return NameAddr("", uri, params)


def parse_contact(value: str) -> NameAddr | str:
    """One Contact element: a NameAddr, or the string "*" (RFC 3261 §10.2.2, unregister
    all)."""
    if value.strip(" \t") == "*":
        return "*"
    return parse_name_addr(value)


# ---------------------------------------------------------------------------------------
# Via (RFC 3261 §20.42, RFC 3581)

# sent-protocol = protocol-name SLASH protocol-version SLASH transport, SLASH = SWS "/" SWS
# (RFC 4475 §3.1.1.1 folds lines in the middle of it).
_SENT_PROTOCOL_RE = re.compile(
    f"([{_TOKEN_CHARS}]+)[ \\t]*/[ \\t]*([{_TOKEN_CHARS}]+)[ \\t]*/[ \\t]*([{_TOKEN_CHARS}]+)[ \\t]+(.*)",
    re.S,
)
_SENT_BY_RE = re.compile("(\\[[^\\]]*\\]|[^:\\[\\] \\t]+)(?:[ \\t]*:[ \\t]*([^ \\t]*))?")


@dataclass(frozen=True)
class Via:
    """One Via element. ``protocol`` is "SIP/2.0" (or whatever version the sender wrote)."""

    transport: str
    host: str
    port: int | None
    params: dict[str, str] = field(default_factory=dict)
    protocol: str = "SIP/2.0"

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def received(self) -> str | None:
        return self.params.get("received")

    @property
    def rport(self) -> int | str | None:
        """RFC 3581: None when absent, "" when asked for (no value), else the port."""
        value = self.params.get("rport")
        if value is None or value == "":
            return value
        return int(value)

    def __str__(self) -> str:
        port = f":{self.port}" if self.port is not None else ""
        return f"{self.protocol}/{self.transport} {self.host}{port}{_format_params(self.params)}"


# SIP/2.0/UDP host:port;params, the Via of nearly every message, in one match (a hostname
# or IPv4 host, parameters without spaces or quotes); anything else goes to the full parser.
_PLAIN_VIA_RE = re.compile(
    f"SIP/2\\.0/([A-Za-z]+) ([A-Za-z0-9_.\\-]+)(?::([0-9]{{1,5}}))?"
    f'((?:;[{_TOKEN_CHARS}]+(?:=[^\\x00-\\x20\\x7f";,<>]+)?)*)'
)


def parse_via(value: str) -> Via:
    """Parse one Via element (split a combined field with ``Headers.get_all``)."""
    return _plain_via(value) or _parse_via_in_full(value)


def _plain_via(value: str) -> Via | None:
    """The Via of the plain shape, else None."""
    m = _PLAIN_VIA_RE.fullmatch(value)
    if m is None:
        return None
    transport, host, port_text, param_text = m.groups()
    port = int(port_text) if port_text is not None else None
    params = _plain_params(param_text)
    rport = params.get("rport")
    if (port is None or port <= 65535) and (
            not rport or (rport.isascii() and rport.isdigit() and len(rport) <= 5
                          and int(rport) <= 65535)):
        return _built(Via, transport=transport.upper(), host=host, port=port, params=params,
                      protocol="SIP/2.0")
    return None


def _parse_via_in_full(value: str) -> Via:
    m = _SENT_PROTOCOL_RE.fullmatch(value.strip(" \t"))
    if m is None:
        raise ParseError("bad Via sent-protocol")
    name, version, transport, rest = m.groups()
    sent_by, *param_texts = _split_top(rest, ";")
    sb = _SENT_BY_RE.fullmatch(sent_by.strip(" \t"))
    if sb is None:
        raise ParseError("bad Via sent-by")
    host, port_text = sb.groups()
    _check_host(host)
    port = _parse_port(port_text) if port_text is not None else None
    params = _parse_params(param_texts)
    rport = params.get("rport")
    if rport:
        _parse_port(rport)
    return Via(transport.upper(), host, port, params, f"{name.upper()}/{version}")


_CSEQ_RE = re.compile(f"([0-9]+)[ \\t]+([{_TOKEN_CHARS}]+)")


def parse_cseq(value: str) -> tuple[int, str]:
    """CSeq = 1*DIGIT LWS Method (RFC 3261 §20.16); the number fits 32 bits (§8.1.1.5)."""
    m = _CSEQ_RE.fullmatch(value.strip(" \t"))
    if m is None:
        raise ParseError("bad CSeq")
    number, method = m.groups()
    # RFC 4475 §3.1.2.4 (scalar02): refuse rather than wrap or truncate a huge number.
    if len(number.lstrip("0")) > 10 or int(number) > _MAX_CSEQ:
        raise ParseError("CSeq number out of range")
    return int(number), method


# ---------------------------------------------------------------------------------------
# Authorization / WWW-Authenticate (RFC 3261 §20.7, §20.44; RFC 7235 §2.1; RFC 7616)

_AUTH_VALUE_RE = re.compile('[^ \\t",]+')


def parse_auth_params(value: str) -> tuple[str, dict[str, str]]:
    """``scheme auth-param *(COMMA auth-param)`` -> (scheme, {lower-cased name: value}).

    Quoted values are unquoted. A repeated parameter is refused: which of two "response"
    values to check is not a question a verifier should have to answer.
    """
    text = value.strip(" \t")
    scheme_match = _TOKEN_RE.match(text)
    if scheme_match is None:
        raise ParseError("missing authentication scheme")
    scheme = scheme_match.group()
    i, n = scheme_match.end(), len(text)
    if i < n and text[i] not in " \t":
        raise ParseError("bad authentication scheme")
    params: dict[str, str] = {}
    while True:
        # RFC 7235 §2.1 / RFC 7230 §7: empty list elements are ignored.
        while i < n and text[i] in " \t,":
            i += 1
        if i >= n:
            return scheme, params
        m = _TOKEN_RE.match(text, i)
        if m is None:
            raise ParseError("bad auth-param name")
        name = m.group().lower()
        i = m.end()
        while i < n and text[i] in " \t":
            i += 1
        if i >= n or text[i] != "=":
            raise ParseError("auth-param without '='")
        i += 1
        while i < n and text[i] in " \t":
            i += 1
        if i < n and text[i] == '"':
            end = _scan_quoted(text, i)
            param_value = _unquote(text[i + 1 : end - 1])
            i = end
        else:
            m = _AUTH_VALUE_RE.match(text, i)
            if m is None:
                raise ParseError("auth-param without value")
            param_value = m.group()
            i = m.end()
        if name in params:
            raise ParseError(f"repeated auth-param {name}")
        params[name] = param_value
        while i < n and text[i] in " \t":
            i += 1
        if i < n and text[i] != ",":
            raise ParseError("missing ',' between auth-params")


# ---------------------------------------------------------------------------------------
# Messages


_CONTROL_OR_SPACE_RE = re.compile("[\\x00-\\x20\\x7f]")


def _check_start_line_part(text: str, what: str) -> None:
    if not text or _CONTROL_OR_SPACE_RE.search(text):
        raise ValueError(f"bad {what} {text!r}")


def _serialize(start_line: str, headers: Iterable[tuple[str, str]], body: bytes) -> bytes:
    # Content-Length is always written from the body (RFC 3261 §20.14), in place of the
    # first one given (or last), so a stale value can never mis-frame a stream.
    length = f"Content-Length: {len(body)}"
    lines = [start_line]
    for name, value in headers:
        if name != "Content-Length":
            lines.append(f"{name}: {value}")
        elif length:
            lines.append(length)
            length = ""
    if length:
        lines.append(length)
    head = "\r\n".join(lines) + "\r\n\r\n"
    return head.encode("utf-8", "surrogateescape") + body


def _check_status_line(status: int, reason: str) -> None:
    if not isinstance(status, int) or not 100 <= status <= 699:
        raise ValueError(f"bad status code {status!r}")
    if "\r" in reason or "\n" in reason:
        raise ValueError("bad reason phrase")


def _coerce_common(message) -> None:
    if not isinstance(message.headers, Headers):
        object.__setattr__(message, "headers", Headers(message.headers))
    if not isinstance(message.body, bytes):
        object.__setattr__(message, "body", bytes(message.body))
    _check_start_line_part(message.version, "version")


@dataclass(frozen=True)
class Parts:
    """The mandatory fields as ``parse_message`` checked them (RFC 3261 §8.1.1), kept so
    that nothing downstream parses them again: every Via element, From, To, CSeq, and the
    Request-URI when it is a sip: or sips: URI."""

    vias: tuple[Via, ...]
    from_: NameAddr
    to: NameAddr
    cseq: tuple[int, str]
    uri: SipUri | None = None


@dataclass(frozen=True)
class Request:
    method: str
    uri: str
    headers: Headers
    body: bytes = b""
    version: str = "SIP/2.0"
    # Set by parse_message; None for a Request built in code. Not part of the value.
    parts: Parts | None = field(default=None, compare=False, repr=False)

    def __post_init__(self):
        if isinstance(self.uri, SipUri):
            object.__setattr__(self, "uri", str(self.uri))
        if not _is_token(self.method):
            raise ValueError(f"bad method {self.method!r}")
        _check_start_line_part(self.uri, "Request-URI")
        _coerce_common(self)

    def to_bytes(self) -> bytes:
        return _serialize(f"{self.method} {self.uri} {self.version}", self.headers, self.body)


@dataclass(frozen=True)
class Response:
    status: int
    reason: str
    headers: Headers
    body: bytes = b""
    version: str = "SIP/2.0"
    parts: Parts | None = field(default=None, compare=False, repr=False)

    def __post_init__(self):
        _check_status_line(self.status, self.reason)
        _coerce_common(self)

    def to_bytes(self) -> bytes:
        # Status-Line = SIP-Version SP Status-Code SP Reason-Phrase: the second SP stays
        # even when the phrase is empty (RFC 4475 §3.1.1.13).
        return _serialize(f"{self.version} {self.status} {self.reason}", self.headers, self.body)


Message = Union[Request, Response]

_REQUEST_LINE_RE = re.compile(
    f"([{_TOKEN_CHARS}]+) ([^\\x00-\\x20\\x7f]+) ([Ss][Ii][Pp]/[0-9]{{1,3}}\\.[0-9]{{1,3}})"
)
_STATUS_LINE_RE = re.compile("([Ss][Ii][Pp]/[0-9]{1,3}\\.[0-9]{1,3}) ([1-6][0-9][0-9])(?: (.*))?", re.S)
_CALL_ID_RE = re.compile("[^\\x00-\\x20\\x7f]+")


# Spelling on the wire -> (canonical name, lookup key), for the head parser's shortcut.
_SPELLING_KEYS = {spelling: (name, name.lower()) for spelling, name in _CANONICAL_SPELLINGS.items()}


def _parse_head(section: bytes) -> tuple[str, Headers]:
    """Start line and header fields of a message head (without the empty line).

    RFC 3261 §7.3.1: header names are case-insensitive, LWS around the colon is allowed,
    and a line starting with SP or HTAB continues the previous field (the line break and
    the leading whitespace count as one SP).
    """
    usual = _usual_head(section)
    if usual is not None:
        start_line, fields, index = usual
        headers = Headers._trusted(fields)
        object.__setattr__(headers, "_lookup", index)
        return start_line, headers
    return _parse_head_in_full(section)


def _usual_head(section: bytes) -> tuple[str, list, dict] | None:
    """(start line, fields, their index by lower-cased name) of the head nearly every
    message has, read in one pass: CRLF line ends only, no folding, well under the limits,
    every name a usual spelling right before its colon. None for anything else (including
    every error), which the full reading takes."""
    text = section.decode("utf-8", "surrogateescape")
    lines = text.split("\r\n")
    breaks = len(lines) - 1
    # As many LF and CR as CRLF: no bare one. A folded line starts with SP or HTAB, which
    # no usual spelling does, so it ends the shortcut below.
    if (len(section) > MAX_LINE_LENGTH or breaks > MAX_HEADERS
            or text.count("\n") != breaks or text.count("\r") != breaks):
        return None
    fields: list[tuple[str, str]] = []
    index: dict[str, list[str]] = {}
    spellings = _SPELLING_KEYS
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        known = spellings.get(name)
        if known is None or not colon:
            return None
        value = value.strip(" \t")
        fields.append((known[0], value))
        values = index.get(known[1])
        if values is None:
            index[known[1]] = [value]
        else:
            values.append(value)
    return lines[0], fields, index


def _parse_head_in_full(section: bytes) -> tuple[str, Headers]:
    fields: list[tuple[str, str]] = []
    start_line: str | None = None
    # Decoded once: a line break is never inside a UTF-8 sequence, so splitting the text
    # splits the same lines; lengths are measured in bytes only when a line could be long.
    short = len(section) <= MAX_LINE_LENGTH
    for line in section.decode("utf-8", "surrogateescape").split("\n"):
        if line[-1:] == "\r":
            line = line[:-1]
        if not short and len(line.encode("utf-8", "surrogateescape")) > MAX_LINE_LENGTH:
            raise ParseError("line too long", Headers._trusted(fields))
        if "\r" in line:
            # A bare CR is no line end in SIP and no character of any header grammar.
            raise ParseError("bare CR in message head", Headers._trusted(fields))
        if start_line is None:
            start_line = line
            continue
        if line[:1] in (" ", "\t"):
            if not fields:
                raise ParseError("continuation line before the first header", Headers._trusted(fields))
            name, value = fields[-1]
            continuation = line.strip(" \t")
            if continuation:
                value = f"{value} {continuation}" if value else continuation
                if len(value) > MAX_LINE_LENGTH:
                    raise ParseError("header too long", Headers._trusted(fields))
                fields[-1] = (name, value)
            continue
        name, colon, value = line.partition(":")
        name = name.rstrip(" \t")
        canonical = _CANONICAL_SPELLINGS.get(name)
        if canonical is None:
            if not colon or not _is_token(name):
                raise ParseError("malformed header line", Headers._trusted(fields))
            canonical = _canonical_name(name)
        elif not colon:
            raise ParseError("malformed header line", Headers._trusted(fields))
        if len(fields) >= MAX_HEADERS:
            raise ParseError("too many headers", Headers._trusted(fields))
        fields.append((canonical, value.strip(" \t")))
    return start_line or "", Headers._trusted(fields)


def _header_end(data: bytes, start: int) -> tuple[int, int] | None:
    """(end of the head, start of the body): the first empty line, CRLF or bare LF."""
    i = data.find(b"\r\n\r\n", start)
    # Every other way to end the head (LF LF, LF CRLF, CRLF LF) holds LF LF or LF CR LF;
    # when neither comes before the first CRLF CRLF, that is the end.
    if i >= 0 and data.find(b"\n\n", start, i + 1) < 0 and data.find(b"\n\r\n", start, i + 2) < 0:
        return i, i + 4
    m = _HEADER_END_RE.search(data, start)
    return None if m is None else (m.start(), m.end())


def _content_length(values: list[str]) -> int | None:
    """The Content-Length, or None when absent. Several fields must agree."""
    if not values:
        return None
    lengths = set()
    for value in values:
        value = value.strip(" \t")
        # RFC 4475 §3.1.2.3 (ncl): negative or non-numeric values are framing errors.
        if _DIGITS_RE.fullmatch(value) is None or len(value.lstrip("0")) > 10:
            raise ParseError("bad Content-Length")
        lengths.add(int(value))
    if len(lengths) > 1:
        raise ParseError("conflicting Content-Length values")
    return lengths.pop()


def _skip_empty_lines(data: bytes, i: int = 0) -> int:
    # RFC 3261 §7.5: CRLFs before the start line are ignored.
    n = len(data)
    while i < n:
        if data.startswith(b"\r\n", i):
            i += 2
        elif data[i] == 0x0A:
            i += 1
        else:
            break
    return i


def _check_request_uri(uri: str) -> SipUri | None:
    if _SCHEME_RE.match(uri) is None:
        # RFC 4475 §3.1.2.7 (ltgtruri): "<sip:...>" is no Request-URI.
        raise ParseError("bad Request-URI")
    if uri[:4].lower() == "sip:" or uri[:5].lower() == "sips:":
        # Other schemes are left for the element to refuse with 416 (RFC 3261 §8.2.2.1).
        parsed = _checked("Request-URI", parse_uri, uri)
        if parsed.headers:
            # RFC 3261 §19.1.1 table: headers are not allowed in a Request-URI
            # (RFC 4475 §3.1.2.11, escruri).
            raise ParseError("headers in Request-URI")
        return parsed
    return None


def _checked(name: str, parser, value: str):
    try:
        return parser(value)
    except ParseError as error:
        raise ParseError(f"bad {name}: {error}") from None


def _check_mandatory(message: Message, uri: SipUri | None = None) -> Parts:
    """RFC 3261 §8.1.1: To, From, CSeq, Call-ID and Via in every request (and in every
    response, which copies them, §8.2.6.2). Each must parse: the transaction layer matches
    on the top Via and CSeq, the registrar reads To and From. Returns what was parsed."""
    index = message.headers._index
    for name, key in (("Via", "via"), ("From", "from"), ("To", "to"), ("Call-ID", "call-id"),
                      ("CSeq", "cseq")):
        values = index.get(key)
        if values is None:
            raise ParseError(f"missing {name}")
        if len(values) > 1 and key != "via":
            raise ParseError(f"more than one {name}")
    vias = message.headers.get_all("Via")
    if not vias:
        raise ParseError("empty Via")
    parsed_vias = tuple([_checked("Via", parse_via, via) for via in vias])
    sender = _checked("From", parse_name_addr, index["from"][0])
    to = _checked("To", parse_name_addr, index["to"][0])
    if _CALL_ID_RE.fullmatch(index["call-id"][0]) is None:
        raise ParseError("bad Call-ID")
    cseq = _checked("CSeq", parse_cseq, index["cseq"][0])
    # RFC 4475 §3.1.2.17-18 (mismatch01/02): the CSeq method must be the request's.
    if isinstance(message, Request) and cseq[1] != message.method:
        raise ParseError("CSeq method does not match the request method")
    return _built(Parts, vias=parsed_vias, from_=sender, to=to, cseq=cseq, uri=uri)


def parse_message(data: bytes) -> Message:
    """Parse one SIP message from a datagram (RFC 3261 §7, §18.3).

    The body is delimited by Content-Length: bytes beyond it are dropped, fewer than it
    announces is an error; without Content-Length the rest of the datagram is the body.
    """
    data = bytes(data)
    if len(data) > MAX_MESSAGE_SIZE:
        raise ParseError("message too large")
    start = _skip_empty_lines(data)
    if start == len(data):
        raise ParseError("empty message")
    end = _header_end(data, start)
    if end is None:
        start_line, headers = _parse_head(data[start:].rstrip(b"\r\n"))
        raise ParseError("no empty line after the header fields", headers)
    start_line, headers = _parse_head(data[start : end[0]])
    try:
        message, uri = _build(start_line, headers, data, end[1])
        object.__setattr__(message, "parts", _check_mandatory(message, uri))
    except ParseError as error:
        raise ParseError(str(error), headers) from None
    return message


def _build(start_line: str, headers: Headers, data: bytes,
           body_start: int) -> tuple[Message, SipUri | None]:
    length = _content_length(headers.get_all("Content-Length"))
    if length is None:
        body = data[body_start:]
    elif length > len(data) - body_start:
        # RFC 3261 §18.3: on a datagram a message shorter than its Content-Length is
        # discarded (or answered 400: RFC 4475 §3.1.2.2, clerr).
        raise ParseError("body shorter than Content-Length")
    else:
        # RFC 3261 §18.3: extra octets after the body are ignored (RFC 4475 §3.1.1.8).
        body = data[body_start : body_start + length]

    if start_line[:4].upper() == "SIP/":
        m = _STATUS_LINE_RE.fullmatch(start_line)
        if m is None:
            # RFC 4475 §3.1.2.19 (bigcode): status codes have three digits.
            raise ParseError("bad status line")
        version, status, reason = m.groups()
        return Response(int(status), reason or "", headers, body, version.upper()), None
    # Request-Line = Method SP Request-URI SP SIP-Version CRLF, single SPs: RFC 4475
    # §3.1.2.8-10 (lwsruri, lwsstart, trws) may be refused, and are.
    m = _REQUEST_LINE_RE.fullmatch(start_line)
    if m is None:
        raise ParseError("bad request line")
    method, uri, version = m.groups()
    parsed_uri = _check_request_uri(uri)
    return Request(method, uri, headers, body, version.upper()), parsed_uri


# ---------------------------------------------------------------------------------------
# Stream framing (RFC 3261 §18.3, RFC 5626 §4.4.1)


class _Keepalive:
    __slots__ = ()

    def __repr__(self) -> str:
        return "KEEPALIVE"

    def __reduce__(self):
        return "KEEPALIVE"


# A double-CRLF ping between messages on a stream (RFC 5626 §4.4.1).
KEEPALIVE = _Keepalive()
# What the server answers to a ping.
PONG = b"\r\n"

_FOLD_RE = re.compile(rb"\r?\n[ \t]+")


def _stream_content_length(head: bytes) -> int:
    unfolded = _FOLD_RE.sub(b" ", head)
    values = []
    for line in unfolded.split(b"\n")[1:]:
        name, colon, value = line.partition(b":")
        if colon and name.strip(b" \t").lower() in (b"content-length", b"l"):
            values.append(value.strip(b" \t\r").decode("ascii", "replace"))
    length = _content_length(values)
    if length is None:
        # RFC 3261 §18.3: on a stream Content-Length is mandatory, the only way to find
        # where the body ends.
        raise ParseError("missing Content-Length on a stream")
    return length


class StreamFramer:
    """Cut a byte stream (TCP, TLS) into messages. Bytes level only: each message is handed
    back as bytes for ``parse_message``.

    ``feed`` returns, in order, complete messages (bytes), ``KEEPALIVE`` for each ping, and
    a ``ParseError`` when the stream cannot be framed (no or bad Content-Length, oversize);
    the framer is then ``broken`` and the connection must be closed, since nothing tells
    where the next message would start.
    """

    def __init__(self, max_message_size: int = MAX_MESSAGE_SIZE):
        self.max_message_size = max_message_size
        self.broken = False
        self._buffer = bytearray()
        self._scanned = 0  # bytes of the buffer already searched for the empty line
        self._length: int | None = None  # total length of the message being read

    def feed(self, data: bytes) -> list[bytes | _Keepalive | ParseError]:
        if self.broken:
            return []
        buffer = self._buffer
        buffer += data
        items: list[bytes | _Keepalive | ParseError] = []
        while True:
            if self._length is None:
                if not self._between_messages(items):
                    break
                end = _HEADER_END_RE.search(buffer, max(0, self._scanned - 3))
                if end is None:
                    self._scanned = len(buffer)
                    if len(buffer) > self.max_message_size:
                        self._fail(items, ParseError("message head too large"))
                    break
                head = bytes(buffer[: end.start()])
                try:
                    length = end.end() + _stream_content_length(head)
                except ParseError as error:
                    self._fail(items, ParseError(str(error), _headers_of(head)))
                    break
                if length > self.max_message_size:
                    self._fail(items, ParseError("message too large", _headers_of(head)))
                    break
                self._length = length
            if len(buffer) < self._length:
                break
            items.append(bytes(buffer[: self._length]))
            del buffer[: self._length]
            self._length = None
            self._scanned = 0
        return items

    def _between_messages(self, items: list) -> bool:
        """Consume pings and stray line ends; False when more bytes are needed."""
        buffer = self._buffer
        while buffer:
            if buffer.startswith(b"\r\n\r\n"):
                items.append(KEEPALIVE)
                del buffer[:4]
            elif b"\r\n\r\n".startswith(buffer):
                return False  # maybe the start of a ping: wait
            elif buffer.startswith(b"\r\n"):
                del buffer[:2]  # RFC 3261 §7.5: a lone CRLF before a message is ignored
            elif buffer[0] == 0x0A:
                del buffer[:1]
            else:
                return True
        return False

    def _fail(self, items: list, error: ParseError) -> None:
        self.broken = True
        self._buffer.clear()
        items.append(error)


def _headers_of(head: bytes) -> Headers | None:
    try:
        return _parse_head(head)[1]
    except ParseError as error:
        return error.headers


# ---------------------------------------------------------------------------------------
# Responses (RFC 3261 §8.2.6)

_TAG_RE = re.compile(r";[ \t]*tag[ \t]*=", re.I)


def _to_with_tag(value: str, tag: str | None, has_tag: bool | None = None) -> str:
    if tag is None:
        return value
    if not _is_token(tag):
        raise ValueError(f"bad tag {tag!r}")
    if has_tag is None:
        try:
            has_tag = "tag" in parse_name_addr(value).params
        except ParseError:
            has_tag = _TAG_RE.search(value) is not None
    # Appended as text so the rest of the field is echoed unchanged; in the addr-spec form
    # a parameter after the URI is a header parameter too (RFC 3261 §20).
    return value if has_tag else f"{value};tag={tag}"


def make_response(
    request: Request | Headers,
    status: int,
    reason: str,
    extra_headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
    to_tag: str | None = None,
    top_via: str | None = None,
) -> Response:
    """A response to ``request``: RFC 3261 §8.2.6.2 copies every Via (in order), From, To
    (with ``to_tag`` added unless it has a tag), Call-ID and CSeq.

    ``top_via``, when given, replaces the first Via element (the server's received and
    rport, RFC 3261 §18.2.1, RFC 3581). ``request`` may also be the ``headers`` of a
    ``ParseError``, to answer a malformed request with 400: whatever of those fields it
    holds is copied.
    """
    fields = _response_fields(request, status, reason, extra_headers, to_tag, top_via)
    # Checked as Response.__post_init__ would (the fields as Headers would).
    return _built(Response, status=status, reason=reason, headers=Headers._trusted(fields),
                  body=bytes(body), version="SIP/2.0", parts=None)


def _response_fields(request, status, reason, extra_headers, to_tag, top_via):
    if isinstance(request, Headers):
        headers, to_has_tag = request, None
    else:
        parts = request.parts
        headers, to_has_tag = request.headers, "tag" in parts.to.params if parts else None
    index = headers._index  # fields of a Headers are already checked and canonical
    fields = copied_fields(index, to_tag, top_via, to_has_tag)
    if status == 100:
        # RFC 3261 §8.2.6.1: a 100 (Trying) echoes the request's Timestamp.
        fields.extend(("Timestamp", value) for value in index.get("timestamp", ()))
    for name, value in extra_headers:
        canonical = _CANONICAL_SPELLINGS.get(name)
        if canonical is None:
            if not isinstance(name, str) or not _is_token(name):
                raise ValueError(f"bad header name {name!r}")
            canonical = _canonical_name(name)
        if not isinstance(value, str) or "\r" in value or "\n" in value:
            raise ValueError(f"bad value for header {name}")  # it would inject fields
        fields.append((canonical, value))
    _check_status_line(status, reason)
    return fields


def copied_fields(index: dict[str, list[str]], to_tag: str | None, top_via: str | None,
                  to_has_tag: bool | None = None) -> list[tuple[str, str]]:
    """The fields a response copies from its request's (a Headers index): every Via (the
    first element replaced by ``top_via`` when given), From, To (with ``to_tag`` unless
    it has a tag: ``to_has_tag``, or read from the text when None), Call-ID, CSeq."""
    fields = [("Via", value) for value in index.get("via", ())]
    if top_via is not None and fields:
        # The first element of the first Via field is the top Via (commas inside quoted
        # parameters do not separate elements).
        first = fields[0][1]
        rest = split_list(first)[1:] if "," in first else []
        fields[0] = ("Via", ", ".join([top_via, *rest]) if rest else top_via)
    for wanted, key in _COPIED:
        values = index.get(key)
        if values:
            value = values[0]
            if key == "to":
                value = _to_with_tag(value, to_tag, to_has_tag)
            fields.append((wanted, value))
    return fields


_COPIED = (("From", "from"), ("To", "to"), ("Call-ID", "call-id"), ("CSeq", "cseq"))


# ---------------------------------------------------------------------------------------
# What the edge reads of a request to answer it

class RequestView(NamedTuple):
    """The parts of a request the edge's core works from (sipedge/core.py).

    ``RequestView.of`` takes them from a parsed ``Request``; ``read_request_view`` reads
    them from the bytes of the usual request without making one.
    """

    method: str
    uri_host: str | None  # the Request-URI's host; None when not a sip: or sips: URI
    to_user: str  # the user part of the To URI, escapes kept
    to_has_tag: bool
    top: Via
    cseq: int
    index: dict[str, list[str]]  # as Headers._index: lower-cased name -> values in order

    @classmethod
    def of(cls, request: Request) -> RequestView:
        parts = request.parts
        return cls(request.method, None if parts.uri is None else parts.uri.host,
                   parts.to.uri.user, "tag" in parts.to.params, parts.vias[0], parts.cseq[0],
                   request.headers._index)


def read_request_view(data: bytes) -> RequestView | None:
    """The view of the request nearly every phone sends, read in one pass; None for
    anything else, which ``parse_message`` then reads.

    The usual shape: no empty line before the start line, SIP/2.0, CRLF line ends only,
    no folding, every header name a usual spelling right before its colon, one Via
    element, one each of From, To, Call-ID and CSeq, no Content-Length or 0, and the
    Request-URI, Via, From and To in the shapes their shortcuts read (sip: or sips: URIs,
    a hostname or IPv4 host, parameters without quotes). What it reads is what
    ``RequestView.of(parse_message(data))`` gives (the tests compare both); anything else,
    every error included, is left to ``parse_message``.
    """
    end = data.find(b"\r\n\r\n")
    if end <= 0 or data[0] in b"\r\n" or len(data) > MAX_MESSAGE_SIZE:
        return None
    usual = _usual_head(data[:end])
    if usual is None:
        return None
    start_line, _, index = usual
    start = _REQUEST_LINE_RE.fullmatch(start_line)
    if start is None:
        return None
    method, uri, version = start.groups()
    if version != "SIP/2.0":
        return None
    try:
        [via], [sender], [to], [call_id], [cseq] = (
            index["via"], index["from"], index["to"], index["call-id"], index["cseq"])
    except (KeyError, ValueError):  # missing, or more than one
        return None
    lengths = index.get("content-length")
    if lengths is not None and lengths != ["0"]:
        return None
    number, _, cseq_method = cseq.partition(" ")
    if (cseq_method != method or not number.isdigit() or not number.isascii()
            or len(number) > 10 or int(number) > _MAX_CSEQ
            or _CALL_ID_RE.fullmatch(call_id) is None):
        return None
    request_uri = _plain_uri(uri)
    to_match = _PLAIN_NAME_ADDR_RE.fullmatch(to)
    sender_match = _PLAIN_NAME_ADDR_RE.fullmatch(sender)
    top = _plain_via(via)
    if (request_uri is None or to_match is None or sender_match is None or top is None
            or _plain_uri(sender_match.group(2)) is None):
        return None
    to_uri = _plain_uri(to_match.group(2))
    if to_uri is None:
        return None
    return RequestView(method, request_uri[2], to_uri[1] or "",
                       "tag" in _plain_params(to_match.group(3)), top, int(number), index)
