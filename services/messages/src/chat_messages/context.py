"""What every handler works with, and the one way to render a stored message."""

from __future__ import annotations

from dataclasses import dataclass, field

from chat_contracts.server import SocketMessage
from chat_messages import domain
from chat_messages.blocks import BlockGuard
from chat_messages.domain import StoredMessage
from chat_messages.groups import GroupDirectory
from chat_messages.media import MediaGate
from chat_messages.push import PushBatcher
from chat_messages.rules import Rules
from chat_messages.store import MessageStore
from chat_runtime.bus import Publisher
from chat_runtime.clock import Clock, IdGenerator


@dataclass(frozen=True)
class Deps:
    """What every handler of the service works with (all injected)."""

    store: MessageStore
    groups: GroupDirectory
    publisher: Publisher
    clock: Clock
    ids: IdGenerator
    rules: Rules
    #: DMs across a block are refused (blocks.py); None only in tests that need no users.
    blocks: BlockGuard | None = None
    #: The durable push event of each new message (push.py); None: no pushes.
    pushes: PushBatcher | None = None
    #: Vets a new message's `mediaUrl` (`cmd.media.claim`); without the media service
    #: no `mediaUrl` is valid.
    media: MediaGate = field(default_factory=lambda: MediaGate(None))


async def view(store: MessageStore, message: StoredMessage) -> SocketMessage:
    """The current client view of one stored message (with its reply context and
    reactions)."""
    page = await store.page_of([message.id])
    views = domain.page_view(page)
    return views[0] if views else domain.to_socket_message(message, None)
