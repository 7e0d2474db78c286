"""The id alphabet: one rule for every id a client, a token or a service hands us.

Ids end up inside NATS subjects (`rt.user.<id>`, `rt.room.<id>`), Redis keys and log
lines. NATS gives `.`, `*`, `>` and whitespace a meaning in subjects, so an id such as
`"*"` or `">"` would address every user at once; the alphabet below has none of them.
128 characters leaves room for any id scheme we or an identity provider use (ours are
2-character prefix + 32 hex digits).
"""

from __future__ import annotations

import re
from typing import Annotated, Final, TypeGuard

from msgspec import Meta

from chat_contracts import limits

#: Letters, digits, `_` and `-`: URL-safe base64 and every id we generate fit in it.
#: The end is "no character follows" rather than `$`, which in Python also matches
#: before a trailing newline (msgspec searches with Python's `re`; `\Z` would be read
#: as a literal `Z` by the JavaScript regexes of the generated JSON schema).
ID_PATTERN: Final = rf"^[A-Za-z0-9_-]{{1,{limits.MAX_ID_LENGTH}}}(?![\s\S])"
_ID = re.compile(ID_PATTERN)

#: A string field holding an id: msgspec refuses anything outside the alphabet while
#: decoding, with an error that names the field.
Id = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=limits.MAX_ID_LENGTH,
        pattern=ID_PATTERN,
        description="letters, digits, '_' and '-'; 1 to 128 characters",
    ),
]

#: Prefixes of the ids services generate; a chat id names its kind by its prefix.
CONVERSATION_PREFIX: Final = "c_"
GROUP_PREFIX: Final = "g_"
MESSAGE_PREFIX: Final = "m_"


def is_valid_id(value: object) -> TypeGuard[str]:
    """Whether `value` is a string in the id alphabet (e.g. a token's `sub`)."""
    return isinstance(value, str) and _ID.match(value) is not None


def check_id(value: str, what: str = "id") -> str:
    """`value` itself when it is a valid id; else `ValueError` naming `what`."""
    if not is_valid_id(value):
        raise ValueError(f"{what} {value[:160]!r} is not a valid id (letters, digits, _ and -)")
    return value


def is_group(chat_id: str) -> bool:
    """Whether a chat id names a group (else a DM conversation)."""
    return chat_id.startswith(GROUP_PREFIX)


def is_conversation(chat_id: str) -> bool:
    """Whether a chat id names a DM conversation."""
    return chat_id.startswith(CONVERSATION_PREFIX)
