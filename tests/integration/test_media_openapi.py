"""The media API against its OpenAPI 3.1 document: served as built, and honoured.

schemathesis generates requests from the document (valid and invalid ones) and checks
each response against it: status codes, content types, headers and body schemas, and
that nothing answers 5xx.
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import schemathesis
from hypothesis import HealthCheck, settings

from chat_media.openapi import document
from chat_testkit.stack import Stack

#: The stack runs with the default limit (100 MiB).
LIMIT = 100 * 1024 * 1024
#: A request the document calls invalid may also be refused as too large (a size over
#: the limit is 413, as PROTOCOL.md's limit table has it), or 412 by tus, besides the
#: usual 4xx.
CONFIG = schemathesis.Config.from_dict(
    {
        "checks": {
            "negative_data_rejection": {
                "expected-statuses": [400, 401, 404, 409, 412, 413, 415, 416, 429]
            },
            # tus answers a missing Tus-Resumable with 412, as its specification says.
            "missing_required_header": {"expected-statuses": [400, 401, 412]},
        }
    }
)
# tus sends raw bytes as application/offset+octet-stream: serialized like octet-stream.
schemathesis.serializer.alias("application/offset+octet-stream", "application/octet-stream")
schema = schemathesis.openapi.from_dict(document(LIMIT), config=CONFIG)


def test_the_served_document_is_the_built_one(stack: Stack) -> None:
    with urllib.request.urlopen(f"{stack.media_url()}/v1/openapi.json", timeout=5) as resp:
        served: dict[str, Any] = json.load(resp)
    assert served == json.loads(json.dumps(document(LIMIT)))
    assert served["openapi"] == "3.1.0"


@schema.parametrize()
@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)
def test_the_api_honours_its_document(case: schemathesis.Case, stack: Stack) -> None:
    token = stack.token("schema-user")
    excluded = []
    if (case.method, case.path) == ("POST", "/v1/tus"):
        # All of this operation's input is headers, so schemathesis' "invalid" request
        # is a valid one plus an unknown header, which HTTP says to ignore (RFC 9110
        # §5.1): tus then rightly creates the upload.
        excluded.append(schemathesis.checks.negative_data_rejection)
    case.call_and_validate(
        base_url=stack.media_url(),
        headers={"Authorization": f"Bearer {token}"},
        excluded_checks=excluded,
    )
