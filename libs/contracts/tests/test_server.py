"""Server payloads encode to exactly the shapes of PROTOCOL.md."""

from __future__ import annotations

import msgspec

from chat_contracts import server as s


def test_socket_message_always_carries_flags_and_omits_unset_options() -> None:
    msg = s.SocketMessage(
        id="m", seq=1, sender_id="u", sender_name="U", type="TEXT", created_at="t",
        is_edited=False, is_deleted=False, reactions=[], pinned=False, group_id="g",
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
    }


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
