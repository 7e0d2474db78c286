"""SDP and ICE candidate shape checks (what a browser sends passes; the rest is named)."""

from __future__ import annotations

import pytest

from chat_calls.sdp import check_candidate, check_sdp
from chat_contracts import DomainError, ErrorCode

#: An offer as Chrome 13x makes it (trimmed to one audio and one data section).
CHROME_OFFER = "\r\n".join(
    [
        "v=0",
        "o=- 4611731400430051336 2 IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        "a=group:BUNDLE 0 1",
        "a=extmap-allow-mixed",
        "a=msid-semantic: WMS",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126",
        "c=IN IP4 0.0.0.0",
        "a=rtcp:9 IN IP4 0.0.0.0",
        "a=ice-ufrag:ZbUS",
        "a=ice-pwd:VvS0OxW7L2Ac8V3yFfwWc+Zc",
        "a=ice-options:trickle",
        "a=fingerprint:sha-256 9A:7F:3B:6E:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:"
        "11:22:33:44:55:66:77:88:99:AA:BB",
        "a=setup:actpass",
        "a=mid:0",
        "a=sendrecv",
        "a=rtpmap:111 opus/48000/2",
        "m=application 9 UDP/DTLS/SCTP webrtc-datachannel",
        "c=IN IP4 0.0.0.0",
        "a=mid:1",
        "a=sctp-port:5000",
        "",
    ]
)


def test_a_browser_offer_passes() -> None:
    check_sdp(CHROME_OFFER, "offer.sdp")
    check_sdp(CHROME_OFFER.replace("\r\n", "\n"), "offer.sdp")


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "must start with v=0"),
        ("hello", "must start with v=0"),
        ("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n", "no media section"),
        ("v=0\r\ns=-\r\nt=0 0\r\nm=audio 9 RTP/AVP 0\r\n", "lacks the session line(s) o="),
        ("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio nine RTP/AVP 0\r\n", "m="),
        ("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nhello\r\n", "<type>=<value>"),
        ("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nx=1\r\nm=audio 9 RTP/AVP 0", "type"),
        ("v=0\r\no=bad\r\ns=-\r\nt=0 0\r\nm=audio 9 RTP/AVP 0", "o= line"),
        ("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 RTP/AVP 0\r\nt=0 0", "type"),
    ],
)
def test_what_is_not_sdp_is_named(text: str, why: str) -> None:
    with pytest.raises(DomainError) as exc:
        check_sdp(text, "offer.sdp")
    assert exc.value.code is ErrorCode.VALIDATION_ERROR
    assert exc.value.field == "offer.sdp"
    assert why in exc.value.message


@pytest.mark.parametrize(
    "candidate",
    [
        "",
        "candidate:842163049 1 udp 1677729535 203.0.113.7 56143 typ srflx raddr 0.0.0.0 rport 0"
        " generation 0 ufrag sXXX network-cost 999",
        "candidate:1 1 UDP 2130706431 3b0f3a64-1a4c-4a6b-9d0b-1b2a9f0a8c3e.local 54400 typ host",
        "a=candidate:7 1 tcp 1518280447 192.0.2.1 9 typ host tcptype active generation 0",
        "candidate:a1b2c3 1 udp 16777215 198.51.100.4 3478 typ relay raddr 0.0.0.0 rport 0",
    ],
)
def test_real_candidates_pass(candidate: str) -> None:
    check_candidate(candidate, "candidate.candidate")


@pytest.mark.parametrize(
    "candidate", ["hello", "candidate:1 1 udp 1 1.2.3.4 5 typ magic", "candidate:1 x"]
)
def test_malformed_candidates_are_refused(candidate: str) -> None:
    with pytest.raises(DomainError) as exc:
        check_candidate(candidate, "candidate.candidate")
    assert exc.value.code is ErrorCode.VALIDATION_ERROR
    assert exc.value.field == "candidate.candidate"
