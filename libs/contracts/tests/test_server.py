"""Server payloads encode to exactly the shapes of PROTOCOL.md."""

from __future__ import annotations

import msgspec

from chat_contracts import server as s


def test_socket_message_always_carries_flags_and_omits_unset_options() -> None:
    msg = s.SocketMessage(
        id="m", seq=1, sender_id="u", sender_name="U", type="TEXT", created_at="t",
        is_edited=False, is_deleted=False, reactions=[], pinned=False, group_id="g", rev=3,
    )  # fmt: skip
    assert msgspec.json.decode(msgspec.json.encode(msg)) == {
        "id": "m",
        "seq": 1,
        "senderId": "u",
        "senderName": "U",
        "type": "TEXT",
        "createdAt": "t",
        "groupId": "g",
        "isEdited": False,
        "isDeleted": False,
        "reactions": [],
        "pinned": False,
        "rev": 3,
    }


def test_sync_ack_muted_until_absent_null_or_a_time() -> None:
    def encoded(**kw: object) -> dict[str, object]:
        state = s.ChatState(last_seq=2, last_rev=5, unread=0, group_id="g", **kw)  # type: ignore[arg-type]
        decoded: dict[str, object] = msgspec.json.decode(msgspec.json.encode(state))
        return decoded

    assert "mutedUntil" not in encoded()
    assert encoded(muted_until=None)["mutedUntil"] is None
    assert encoded(muted_until="2026-01-01T00:00:00.000Z")["mutedUntil"] == (
        "2026-01-01T00:00:00.000Z"
    )
    assert encoded()["lastRev"] == 5


def test_group_events_use_the_request_list_field_names() -> None:
    added = s.GroupMemberAdded(group_id="g", user_id="u", added_by="a", role="ADMIN")
    assert msgspec.json.decode(msgspec.json.encode(added)) == {
        "groupId": "g",
        "userId": "u",
        "addedBy": "a",
        "role": "ADMIN",
    }
    changed = s.GroupMemberRoleChanged(group_id="g", user_id="u", role="MEMBER", changed_by="a")
    assert set(msgspec.to_builtins(changed)) == {"groupId", "userId", "role", "changedBy"}
