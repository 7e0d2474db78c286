"""The registry turns socket and membership changes into exactly the NATS interest needed."""

from __future__ import annotations

from dataclasses import dataclass

from chat_contracts.bus import Actor
from chat_gateway.conn import OutFrame
from chat_gateway.registry import Registry


@dataclass
class Conn:
    """A connection that only has an id (the registry never sends)."""

    sid: str
    peer: str = ""

    def send(self, frame: OutFrame) -> None:
        raise AssertionError("the registry must not send")

    def close(self) -> None:
        raise AssertionError("the registry must not close")

    def strike(self) -> None:
        raise AssertionError("the registry must not count refusals")


ALICE = Actor(user_id="alice", name="Alice")
BOB = Actor(user_id="bob", name="Bob")


def test_first_socket_of_a_user_subscribes_the_user_subject_and_last_drops_it() -> None:
    reg = Registry()
    assert reg.add_socket(Conn("s1"), ALICE).subscribe == ["rt.user.alice"]
    assert reg.add_socket(Conn("s2"), ALICE).subscribe == []
    _, interest = reg.remove_socket("s1")
    assert not interest
    sock, interest = reg.remove_socket("s2")
    assert sock is not None
    assert interest.unsubscribe == ["rt.user.alice"]


def test_rooms_are_subscribed_while_any_local_member_is_in_them() -> None:
    reg = Registry()
    reg.add_socket(Conn("s1"), ALICE)
    reg.add_socket(Conn("s2"), BOB)
    assert reg.join_user("alice", ["g_1", "c_1"]).subscribe == ["rt.room.g_1", "rt.room.c_1"]
    assert reg.join_user("bob", ["g_1"]).subscribe == []
    assert set(reg.by_room["g_1"]) == {"s1", "s2"}
    assert reg.in_room("alice", "c_1")
    assert not reg.in_room("bob", "c_1")

    assert reg.leave_user("alice", ["g_1"]).unsubscribe == []
    assert set(reg.by_room["g_1"]) == {"s2"}
    assert not reg.in_room("alice", "g_1")
    _, interest = reg.remove_socket("s2")
    assert interest.unsubscribe == ["rt.room.g_1", "rt.user.bob"]


def test_join_applies_to_every_socket_of_the_user_and_new_sockets_join_explicitly() -> None:
    reg = Registry()
    reg.add_socket(Conn("s1"), ALICE)
    reg.add_socket(Conn("s2"), ALICE)
    reg.join_user("alice", ["g_1"])
    assert set(reg.by_room["g_1"]) == {"s1", "s2"}
    assert reg.rooms_of("alice") == {"g_1"}
    assert sorted(reg.by_user["alice"]) == ["s1", "s2"]


def test_close_room_removes_every_local_member() -> None:
    reg = Registry()
    reg.add_socket(Conn("s1"), ALICE)
    reg.add_socket(Conn("s2"), BOB)
    reg.join_user("alice", ["g_1"])
    reg.join_user("bob", ["g_1"])
    assert reg.close_room("g_1").unsubscribe == ["rt.room.g_1"]
    assert "g_1" not in reg.by_room
    assert not reg.in_room("alice", "g_1")
    assert not reg.in_room("bob", "g_1")


def test_membership_of_a_user_without_local_sockets_is_ignored() -> None:
    reg = Registry()
    assert not reg.join_user("ghost", ["g_1"])
    assert reg.rooms_of("ghost") == set()
