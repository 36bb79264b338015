"""Tenants, API keys, permissions, rate limits, encrypted secrets and the audit log (issue 6).

Pure or SQLite-backed building blocks; the gateway and CLI wire them in.
"""

from zeroserve.security.audit import (
    AuditEntry,
    AuditHead,
    AuditLog,
    VerifyResult,
    invocation_detail,
)
from zeroserve.security.keys import KeyRecord, KeyStore, KeyStoreError, Role, parse_duration
from zeroserve.security.permissions import Action, allowed
from zeroserve.security.ratelimit import (
    DailyQuota,
    Decision,
    Limits,
    RateLimiter,
    Scope,
    TokenBucket,
    headers,
)
from zeroserve.security.secrets import (
    KeySource,
    SecretsError,
    SecretStore,
    SecretValue,
    generate_key_file,
    key_source,
    validate_secret_name,
)
from zeroserve.security.tenants import validate_tenant

__all__ = [
    "Action",
    "AuditEntry",
    "AuditHead",
    "AuditLog",
    "DailyQuota",
    "Decision",
    "KeyRecord",
    "KeySource",
    "KeyStore",
    "KeyStoreError",
    "Limits",
    "RateLimiter",
    "Role",
    "Scope",
    "SecretStore",
    "SecretValue",
    "SecretsError",
    "TokenBucket",
    "VerifyResult",
    "allowed",
    "generate_key_file",
    "headers",
    "invocation_detail",
    "key_source",
    "parse_duration",
    "validate_secret_name",
    "validate_tenant",
]
