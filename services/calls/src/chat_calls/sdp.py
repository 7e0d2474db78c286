"""Shape checks of relayed WebRTC signaling: SDP (RFC 8866) and ICE candidates (RFC 8839).

The server relays SDP untouched; it only refuses what cannot be a session description,
so that a client bug or an attack fails at the sender with `VALIDATION_ERROR` instead
of breaking the callee's `setRemoteDescription`. aiortc's parser
(`aiortc.sdp.SessionDescription.parse`) was tried first: it accepts `""` and `"hello"`
as valid (it skips unknown lines) and rejects with bare `assert`s (gone under `-O`), so
it cannot be this check. The grammar checked here is RFC 8866 §5's line structure,
which every browser's SDP satisfies.
"""

from __future__ import annotations

import re
from typing import Final

from chat_contracts import DomainError, ErrorCode

#: RFC 8866 §5: `<type>=<value>`, one lower-case letter type; these are all the types.
_SESSION_TYPES: Final = frozenset("vosiuepcbtrzkam")
_MEDIA_TYPES: Final = frozenset("icbka")
#: `m=<media> <port>[/<number of ports>] <proto> <fmt> ...` (RFC 8866 §5.14).
_MEDIA_LINE: Final = re.compile(r"^[a-z0-9_-]+ \d{1,5}(/\d+)? [A-Za-z0-9/_.-]+( \S+)+$")
_ORIGIN_LINE: Final = re.compile(r"^\S+ \d+ \d+ IN IP[46] \S+$")
#: RFC 8839 §5.1: `candidate:<foundation> <component> <transport> <priority> <address>
#: <port> typ <type> [...]` (the `a=` prefix is optional in `RTCIceCandidateInit`).
_CANDIDATE: Final = re.compile(
    r"^(a=)?candidate:[A-Za-z0-9+/]{1,32} \d{1,3} [A-Za-z]+ \d{1,10} \S+ \d{1,5} typ "
    r"(host|srflx|prflx|relay)( \S+ \S+)*$"
)
_REQUIRED_SESSION: Final = ("v", "o", "s", "t")


def _invalid(field: str, why: str) -> DomainError:
    return DomainError(ErrorCode.VALIDATION_ERROR, f"`{field}` {why}", field=field)


def check_sdp(sdp: str, field: str) -> None:
    """Raise VALIDATION_ERROR naming `field` unless `sdp` has SDP's line structure:
    `v=0` first, `o=`/`s=`/`t=` in the session part, at least one well-formed `m=`
    section, only known line types, no control characters."""
    lines = sdp.replace("\r\n", "\n").rstrip("\n").split("\n")
    if not lines or lines[0] != "v=0":
        raise _invalid(field, "is not an SDP session description (must start with v=0)")
    seen: set[str] = set()
    media = 0
    for number, line in enumerate(lines, start=1):
        if len(line) < 2 or line[1] != "=" or "\r" in line or "\x00" in line:
            raise _invalid(field, f"line {number} is not `<type>=<value>`")
        kind, value = line[0], line[2:]
        allowed = _MEDIA_TYPES | {"m"} if media else _SESSION_TYPES
        if kind not in allowed:
            raise _invalid(field, f"line {number} has an unknown or misplaced type {kind!r}")
        if kind == "m":
            if not _MEDIA_LINE.match(value):
                raise _invalid(field, f"line {number} is not a valid m= line")
            media += 1
        elif kind == "o" and not _ORIGIN_LINE.match(value):
            raise _invalid(field, f"line {number} is not a valid o= line")
        if not media:
            seen.add(kind)
    missing = [k for k in _REQUIRED_SESSION if k not in seen]
    if missing:
        raise _invalid(field, f"lacks the session line(s) {', '.join(k + '=' for k in missing)}")
    if not media:
        raise _invalid(field, "has no media section (m=)")


def check_candidate(candidate: str, field: str) -> None:
    """Raise VALIDATION_ERROR unless `candidate` is an ICE candidate attribute, or ""
    (end of candidates)."""
    if candidate and not _CANDIDATE.match(candidate):
        raise _invalid(field, "is not an ICE candidate (RFC 8839 candidate-attribute)")
