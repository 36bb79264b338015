"""What a key may do: one pure function of the key's record, the action and its target.

    action           admin  deployer  invoker
    keys.manage        x
    tenants.manage     x
    models.deploy      x       x
    models.traffic     x       x
    models.read        x       x         x      (invoker: the models it may invoke)
    models.invoke      x       x         x
    jobs.read_all      x       x                (all jobs of the tenant)
    jobs.read_own      x       x         x      (jobs the key submitted)
    metrics.read       x       x
    audit.read         x       x

Scope, on top of the table:

- Tenant: an admin key operates the platform (it creates tenants and their keys), so it may act
  on any tenant. Deployer and invoker keys act only on their own tenant. The gateway answers a
  refusal on another tenant's resource with 404, not 403, so names do not leak (issue 6).
- Models: a deployer or invoker key created with `models=[...]` may deploy, change traffic,
  read and invoke only those models (admin keys cannot be limited to models).
- With no model given, a model action asks "may this key use models at all"; a listing then
  filters each model with `allowed(record, "models.read", model=name)`.
- Whether the key is revoked or expired is `KeyStore.authenticate`'s concern, not this one's.
"""

from __future__ import annotations

from typing import Literal, get_args

from zeroserve.security.keys import KeyRecord, Role

__all__ = ["ACTIONS", "Action", "allowed"]

Action = Literal[
    "keys.manage",
    "tenants.manage",
    "models.deploy",
    "models.traffic",
    "models.read",
    "models.invoke",
    "jobs.read_all",
    "jobs.read_own",
    "metrics.read",
    "audit.read",
]
ACTIONS: frozenset[str] = frozenset(get_args(Action))

_DEPLOYER = ACTIONS - {"keys.manage", "tenants.manage"}
_INVOKER = frozenset({"models.read", "models.invoke", "jobs.read_own"})
_BY_ROLE: dict[Role, frozenset[str]] = {
    Role.ADMIN: ACTIONS,
    Role.DEPLOYER: _DEPLOYER,
    Role.INVOKER: _INVOKER,
}
_MODEL_ACTIONS = frozenset({"models.deploy", "models.traffic", "models.read", "models.invoke"})


def allowed(
    record: KeyRecord, action: str, *, model: str | None = None, tenant: str | None = None
) -> bool:
    """May `record`'s key do `action` (on `model` of `tenant`, when given)?

    An unknown action raises ValueError: a typo in a route must fail its test, not deny quietly.
    """
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}; expected one of {sorted(ACTIONS)}")
    if action not in _BY_ROLE[record.role]:
        return False
    if record.role is Role.ADMIN:
        return True
    if tenant is not None and tenant != record.tenant:
        return False
    if model is not None and action in _MODEL_ACTIONS and record.models is not None:
        return model in record.models
    return True
