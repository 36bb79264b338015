"""Role table, tenant scope and model allow-lists of `allowed`."""

from __future__ import annotations

import pytest

from zeroserve.security import KeyRecord, Role, allowed
from zeroserve.security.permissions import ACTIONS

# The table of the permissions module's docstring, row by row.
TABLE = {
    "keys.manage": {Role.ADMIN},
    "tenants.manage": {Role.ADMIN},
    "models.deploy": {Role.ADMIN, Role.DEPLOYER},
    "models.traffic": {Role.ADMIN, Role.DEPLOYER},
    "models.read": {Role.ADMIN, Role.DEPLOYER, Role.INVOKER},
    "models.invoke": {Role.ADMIN, Role.DEPLOYER, Role.INVOKER},
    "jobs.read_all": {Role.ADMIN, Role.DEPLOYER},
    "jobs.read_own": {Role.ADMIN, Role.DEPLOYER, Role.INVOKER},
    "metrics.read": {Role.ADMIN, Role.DEPLOYER},
    "audit.read": {Role.ADMIN, Role.DEPLOYER},
}


def key(role: Role, tenant: str = "acme", models: tuple[str, ...] | None = None) -> KeyRecord:
    return KeyRecord(
        prefix="abcd1234", tenant=tenant, role=role, models=models, created_at=0.0,
        expires_at=None, revoked_at=None, last_used_at=None, description="",
    )  # fmt: skip


def test_the_table_names_every_action() -> None:
    assert set(TABLE) == ACTIONS


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize("action", sorted(TABLE))
def test_role_table(role: Role, action: str) -> None:
    expected = role in TABLE[action]
    assert allowed(key(role), action) is expected
    assert allowed(key(role), action, tenant="acme", model="iris") is expected


@pytest.mark.parametrize("action", sorted(TABLE))
def test_other_tenants_are_out_of_reach_except_for_admin(action: str) -> None:
    assert allowed(key(Role.ADMIN), action, tenant="other") is True
    assert allowed(key(Role.DEPLOYER), action, tenant="other") is False
    assert allowed(key(Role.INVOKER), action, tenant="other") is False
    assert allowed(key(Role.INVOKER), action, tenant="other", model="iris") is False


@pytest.mark.parametrize("role", [Role.DEPLOYER, Role.INVOKER])
def test_a_model_allow_list_limits_every_model_action(role: Role) -> None:
    record = key(role, models=("iris",))
    for action in ("models.read", "models.invoke"):
        assert allowed(record, action, model="iris")
        assert not allowed(record, action, model="minilm")
        assert not allowed(record, action, model="minilm", tenant="acme")
        assert allowed(record, action)  # "any model at all": a listing filters per model
    deploy = role is Role.DEPLOYER
    assert allowed(record, "models.deploy", model="iris") is deploy
    assert not allowed(record, "models.deploy", model="minilm")
    assert not allowed(record, "models.traffic", model="minilm")
    # Jobs and metrics are not model actions: the allow-list does not apply to them.
    assert allowed(record, "jobs.read_own", model="minilm")


def test_no_allow_list_means_all_of_the_tenants_models() -> None:
    assert allowed(key(Role.INVOKER), "models.invoke", model="anything", tenant="acme")


def test_an_unknown_action_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match=r"unknown action 'models\.delete'"):
        allowed(key(Role.ADMIN), "models.delete")
