"""The one list of services: adding one is a row here (and its package under services/).

The dev stack (`scripts/devstack.py`), the test stack (`chat_testkit.stack`) and the
gateway's `CHAT_OPTIONAL_SERVICES` check read it. Each worker runs as
`python -m chat_<name>` and serves `cmd.<name>.*` in the queue group `<name>`.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from typing import Final, NamedTuple

from chat_contracts import subjects


class Service(NamedTuple):
    """One worker service."""

    #: Its domain: the queue group, the `cmd.<name>.*` subjects, the package suffix.
    name: str
    #: A component a deployment may leave out; the gateway then answers its events
    #: with NOT_IMPLEMENTED (see the gateway's `CHAT_OPTIONAL_SERVICES`).
    optional: bool = False

    @property
    def package(self) -> str:
        """The Python package (`python -m <package>` runs the worker)."""
        return f"chat_{self.name}"

    @property
    def runnable(self) -> bool:
        """Whether this checkout has its worker (`<package>.__main__`) yet."""
        try:
            return importlib.util.find_spec(f"{self.package}.__main__") is not None
        except ModuleNotFoundError:
            return False
        except Exception:  # noqa: BLE001 - a broken package: start it, so it shows its traceback
            return True


#: Worker services, in start order.
SERVICES: Final[tuple[Service, ...]] = (
    Service(subjects.MESSAGES),
    Service(subjects.GROUPS),
    Service(subjects.USERS),
    Service(subjects.CALLS, optional=True),
    Service(subjects.MEDIA, optional=True),
)

BY_NAME: Final = {service.name: service for service in SERVICES}
OPTIONAL: Final = frozenset(service.name for service in SERVICES if service.optional)


def optional_setting(started: Iterable[Service]) -> str:
    """`CHAT_OPTIONAL_SERVICES` for gateways in front of `started` workers."""
    return ",".join(service.name for service in started if service.optional)
