"""Print a development JWT that the stack of `./taskw up` accepts (`./taskw token`).

    python scripts/dev_token.py <userId> [displayName] [pictureUrl]

HS256, signed with CHAT_JWT_SECRET or the secret `./taskw up` keeps in .data/jwt-secret
(made here if missing); claims sub, name, picture (if given), aud, iss, iat, exp (24 h).

Not named token.py: that would shadow the standard library's `token` module for every
script run from this folder.
"""

from __future__ import annotations

import os
import sys
import time

import jwt
from devstack import DEV_ENV, jwt_secret

LIFETIME = 24 * 3600


def main(argv: list[str]) -> int:
    if not argv or len(argv) > 3 or argv[0] in ("-h", "--help"):
        print("usage: ./taskw token <userId> [displayName] [pictureUrl]", file=sys.stderr)
        return 2
    user_id = argv[0]
    name = argv[1] if len(argv) > 1 else user_id
    if os.environ.get("CHAT_JWT_PUBLIC_KEY"):
        print(
            "token: CHAT_JWT_PUBLIC_KEY is set, so the stack expects tokens from your "
            "identity provider; this tool signs only HS256 development tokens",
            file=sys.stderr,
        )
        return 2
    now = int(time.time())
    claims: dict[str, object] = {
        "sub": user_id,
        "name": name,
        "aud": os.environ.get("CHAT_JWT_AUDIENCE") or DEV_ENV["CHAT_JWT_AUDIENCE"],
        "iss": os.environ.get("CHAT_JWT_ISSUER") or DEV_ENV["CHAT_JWT_ISSUER"],
        "iat": now,
        "exp": now + LIFETIME,
    }
    if len(argv) > 2:
        claims["picture"] = argv[2]
    print(jwt.encode(claims, jwt_secret(), algorithm="HS256"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
