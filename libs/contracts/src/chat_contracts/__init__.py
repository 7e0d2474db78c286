"""The single source of truth for the chat protocol: payloads, envelopes, subjects, codes."""

from chat_contracts.errors import DomainError, ErrorCode, RetryableError

__all__ = ["DomainError", "ErrorCode", "RetryableError"]
