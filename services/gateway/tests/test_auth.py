"""Token verification: pinned algorithm, required claims, what the actor carries."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from chat_gateway.auth import Session, TokenVerifier, Unauthorized
from chat_gateway.settings import GatewaySettings

SECRET = "s" * 32


def settings(**kw: Any) -> GatewaySettings:
    base: dict[str, Any] = {"jwt_secret": SECRET, "jwt_audience": "chat", "jwt_issuer": "iss"}
    base.update(kw)
    return GatewaySettings(**base)


def claims(**kw: Any) -> dict[str, Any]:
    now = int(time.time())
    body = {"sub": "alice", "name": "Alice", "aud": "chat", "iss": "iss", "exp": now + 60}
    body.update(kw)
    return body


def test_valid_token_names_the_actor() -> None:
    token = jwt.encode(claims(picture="https://a/p.png"), SECRET, algorithm="HS256")
    actor = TokenVerifier(settings()).verify(token)
    assert (actor.user_id, actor.name, actor.avatar) == ("alice", "Alice", "https://a/p.png")


def test_name_falls_back_to_the_user_id() -> None:
    token = jwt.encode(claims(name=None), SECRET, algorithm="HS256")
    assert TokenVerifier(settings()).verify(token).name == "alice"


@pytest.mark.parametrize(
    "token",
    [
        None,
        "",
        "not-a-jwt",
        jwt.encode(claims(), "other-secret" * 3, algorithm="HS256"),
        jwt.encode(claims(exp=int(time.time()) - 600), SECRET, algorithm="HS256"),
        jwt.encode(claims(aud="else"), SECRET, algorithm="HS256"),
        jwt.encode(claims(iss="else"), SECRET, algorithm="HS256"),
        jwt.encode({k: v for k, v in claims().items() if k != "exp"}, SECRET, algorithm="HS256"),
        jwt.encode({k: v for k, v in claims().items() if k != "sub"}, SECRET, algorithm="HS256"),
        jwt.encode(claims(), SECRET, algorithm="HS512"),  # not the pinned algorithm
    ],
)
def test_bad_tokens_are_unauthorized(token: Any) -> None:
    with pytest.raises(Unauthorized):
        TokenVerifier(settings()).verify(token)


def test_es256_public_key_pinned() -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    public_pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    verifier = TokenVerifier(
        settings(jwt_secret="", jwt_public_key=public_pem, jwt_algorithm="ES256")
    )
    assert verifier.verify(jwt.encode(claims(), private, algorithm="ES256")).user_id == "alice"
    # An HS256 token "signed" with the public key text is the classic confusion attack.
    with pytest.raises(Unauthorized):
        verifier.verify(jwt.encode(claims(), SECRET, algorithm="HS256"))


@pytest.mark.parametrize("sub", [">", "*", "bob x", "a.b", "bob\n", "x" * 129])
def test_a_sub_outside_the_id_alphabet_is_unauthorized(sub: Any) -> None:
    # The review's reproduction: a `sub` of ">" subscribed a gateway to every user.
    token = jwt.encode(claims(sub=sub), SECRET, algorithm="HS256")
    with pytest.raises(Unauthorized, match="sub"):
        TokenVerifier(settings()).verify(token)


def test_session_expires_at_exp_plus_the_configured_leeway() -> None:
    exp = int(time.time()) + 120
    token = jwt.encode(claims(exp=exp), SECRET, algorithm="HS256")
    assert TokenVerifier(settings()).session(token).expires_at == exp + 30
    assert TokenVerifier(settings(jwt_leeway_s=0)).session(token).expires_at == exp


class _Clock:
    def __init__(self) -> None:
        self.t = time.time()

    def __call__(self) -> float:
        return self.t


def test_a_verified_token_is_remembered_until_it_expires() -> None:
    clock = _Clock()
    verifier = TokenVerifier(settings(), now=clock)
    decoded: list[str] = []
    decode = verifier._decode

    def counting(token: str) -> Session:
        decoded.append(token)
        return decode(token)

    verifier._decode = counting  # type: ignore[method-assign]
    exp = int(clock.t) + 60
    token = jwt.encode(claims(exp=exp), SECRET, algorithm="HS256")
    first = verifier.verify(token)
    assert verifier.verify(token) is first
    assert decoded == [token]  # the second connect skipped the signature check
    # A different signature on the same claims is another token: checked, refused.
    forged = token.rsplit(".", 1)[0] + ".AAAA"
    with pytest.raises(Unauthorized):
        verifier.verify(forged)
    # Past exp + leeway the entry is dropped and the token is checked again.
    clock.t = exp + 30  # the default leeway
    verifier.verify(token)
    assert decoded == [token, forged, token]


def test_the_cache_is_bounded() -> None:
    verifier = TokenVerifier(settings(), cache_size=3)
    tokens = [jwt.encode(claims(sub=f"u{i}"), SECRET, algorithm="HS256") for i in range(5)]
    assert [verifier.verify(t).user_id for t in tokens] == [f"u{i}" for i in range(5)]
    assert len(verifier._verified) == 3
