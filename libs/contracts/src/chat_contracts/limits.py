"""Numeric limits of the protocol (PROTOCOL.md); configurable rules read their defaults here."""

from __future__ import annotations

from typing import Final

MAX_ID_LENGTH: Final = 128
MAX_CONTENT_LENGTH: Final = 5_000
DEFAULT_HISTORY_LIMIT: Final = 50
MAX_HISTORY_LIMIT: Final = 200
#: `sync` sends at most this many messages per `message:batch` ...
SYNC_BATCH_SIZE: Final = 200
#: ... and at most this many per chat; past it the last batch says `limited: true`.
SYNC_MAX_PER_CHAT: Final = 1_000
MAX_SYNC_CURSORS: Final = 10_000
MAX_READ_IDS: Final = 500
MAX_GROUP_MEMBERS: Final = 1_024
MAX_GROUP_NAME: Final = 100
MAX_GROUP_DESCRIPTION: Final = 1_000
DEFAULT_PRESENCE_PAGE: Final = 100
MAX_PRESENCE_PAGE: Final = 500
MAX_BROADCAST_TARGETS: Final = 50
MAX_SDP_LENGTH: Final = 100_000
#: An ICE candidate line (RFC 8839) is under 300 characters in practice; 2 KiB is generous.
MAX_ICE_CANDIDATE_LENGTH: Final = 2_048
#: `sdpMid` and `usernameFragment` (a mid is a short token; a ufrag at most 256 chars).
MAX_ICE_FIELD_LENGTH: Final = 256
DEFAULT_CALLS_HISTORY_LIMIT: Final = 20
MAX_CALLS_HISTORY_LIMIT: Final = 100
#: Typing: a start not renewed expires after this long (ms) ...
TYPING_EXPIRY_MS: Final = 10_000
#: ... at most one relayed start per user per chat per this long (ms) ...
TYPING_THROTTLE_MS: Final = 2_000
#: ... and groups above this size get no typing events.
TYPING_MAX_GROUP_SIZE: Final = 100
#: Offline is announced only after this long with no socket (ms).
PRESENCE_GRACE_MS: Final = 10_000
#: Reply context shows at most this many characters of the quoted message.
REPLY_PREVIEW_LENGTH: Final = 200
#: Reactions: at most this many `userIds` listed per emoji.
REACTION_USER_IDS_SHOWN: Final = 20

# --- gateway defaults (PROTOCOL.md); each is a `CHAT_*` setting of the gateway ----------
#: How long a command may wait for its worker pool before the ack says retry (ms).
ACK_TIMEOUT_MS: Final = 5_000
#: A gateway's presence entries in Redis expire this long after it stops refreshing (ms).
PRESENCE_LEASE_MS: Final = 60_000
#: Rate limits per user (token buckets): `message:send` ...
RATE_SEND_PER_S: Final = 5.0
RATE_SEND_BURST: Final = 10
#: ... `typing:*` ...
RATE_TYPING_PER_S: Final = 5.0
#: ... and every other command ...
RATE_OTHER_PER_MIN: Final = 60.0
#: ... except the two whose cost grows with a size: `group:create` (up to 1,024 members,
#: a 134 KB request, 1,024² `group:member:added` frames to sockets) ...
RATE_GROUP_CREATE_PER_MIN: Final = 10.0
#: ... and `sync` (up to 10,000 cursors, 1,000 messages per chat read back).
RATE_SYNC_PER_MIN: Final = 30.0
#: Engine.IO heartbeat: a ping every interval, answered within the timeout (ms).
PING_INTERVAL_MS: Final = 25_000
PING_TIMEOUT_MS: Final = 20_000
#: permessage-deflate only for WebSocket frames above this size (bytes).
DEFLATE_THRESHOLD: Final = 1_024
#: Message lifecycle defaults (PROTOCOL.md rules; the windows and the pin policy are
#: configurable in the messages service).
EDIT_WINDOW_S: Final = 15 * 60
DELETE_WINDOW_S: Final = 60 * 60
MAX_PINS_PER_CHAT: Final = 50
MAX_REACTION_EMOJIS: Final = 50
MAX_REACTIONS_PER_USER: Final = 20
#: Search: query length (characters) and page size.
MAX_SEARCH_QUERY: Final = 256
DEFAULT_SEARCH_LIMIT: Final = 20
MAX_SEARCH_LIMIT: Final = 100
#: Presence and custom status are pushed on a group's room only up to this many members;
#: past it members page online users with `presence:query` (README, Presence).
PRESENCE_FANOUT_MAX_GROUP: Final = 100
#: Push: at most this many registered devices per user (the oldest is dropped).
MAX_PUSH_DEVICES: Final = 25
