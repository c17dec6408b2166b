"""Named targets (deployments/targets.py): how a target's overrides merge over the prefect file,
whose owner it deploys as, which server it reaches, and the errors that name what is wrong."""

from __future__ import annotations

import pytest

from deployments.targets import (
    TargetError,
    chosen,
    declared_targets,
    owner_name,
    server_environment,
    with_target,
)

WHERE = "prefect.yaml"


def declaration(targets: dict | None = None) -> dict:
    raw = {
        "name": "flows",
        "deployments": [
            {
                "name": "hello",
                "tags": ["managed-by:flows", "tutorial"],
                "parameters": {"name": "World"},
                "work_pool": {"job_variables": {"working_dir": "."}},
                "schedules": [
                    {"slug": "hourly", "interval": 3600, "active": True},
                    {"slug": "daily", "interval": 86400, "active": True},
                ],
            },
            {"name": "squares", "tags": ["managed-by:flows"], "parameters": {"numbers": [1]}},
        ],
        "work_pools": [{"name": "local", "type": "process", "concurrency_limit": None}],
    }
    if targets is not None:
        raw["targets"] = targets
    return raw


def test_the_first_target_is_the_default_and_keeps_the_projects_owner() -> None:
    raw = declaration({"dev": None, "prod": {"description": "production"}})
    target = chosen(raw, WHERE)
    assert target is not None and target.name == "dev" and target.default
    assert owner_name("flows", target) == "flows"
    assert with_target(raw, target, WHERE)["deployments"] == raw["deployments"]


def test_an_override_merges_named_objects_by_name_and_schedules_by_slug() -> None:
    raw = declaration(
        {
            "dev": {},
            "prod": {
                "overrides": {
                    "deployments": {
                        "hello": {
                            "parameters": {"name": "Production"},
                            "work_pool": {"name": "docker"},
                            "schedules": {"daily": {"active": False}},
                        }
                    },
                    "work_pools": {
                        "local": {"concurrency_limit": 8},
                        "docker": {"type": "docker"},
                    },
                }
            },
        }
    )
    merged = with_target(raw, chosen(raw, WHERE, "prod"), WHERE)
    hello, squares = merged["deployments"]
    assert hello["parameters"] == {"name": "Production"}
    assert hello["work_pool"] == {"job_variables": {"working_dir": "."}, "name": "docker"}
    assert [(s["slug"], s["active"]) for s in hello["schedules"]] == [
        ("hourly", True),
        ("daily", False),
    ]
    assert squares["parameters"] == {"numbers": [1]}
    assert merged["work_pools"] == [
        {"name": "local", "type": "process", "concurrency_limit": 8},
        {"name": "docker", "type": "docker"},  # not declared: added
    ]
    # the declaration itself is untouched
    assert raw["deployments"][0]["schedules"][1]["active"] is True


def test_another_target_owns_under_its_own_name_and_tag() -> None:
    raw = declaration({"dev": {}, "prod": {}})
    merged = with_target(raw, chosen(raw, WHERE, "prod"), WHERE)
    assert merged["name"] == "flows-prod"
    assert [d["tags"] for d in merged["deployments"]] == [
        ["managed-by:flows-prod", "tutorial"],
        ["managed-by:flows-prod"],
    ]


def test_a_list_without_named_objects_is_replaced_not_merged() -> None:
    raw = declaration({"dev": {"overrides": {"deployments": {"hello": {"tags": ["x"]}}}}})
    merged = with_target(raw, chosen(raw, WHERE), WHERE)
    assert merged["deployments"][0]["tags"] == ["x"]


@pytest.mark.parametrize(
    ("targets", "message"),
    [
        ([], "targets: expected a mapping"),
        ({"dev": {"overrides": {"name": "other"}}}, "may not change `name`"),
        ({"dev": {"server": {"host": "X"}}}, "targets.dev.server: expected"),
        ({"dev": {"colour": "blue"}}, "targets.dev: unknown field 'colour'"),
        ({"dev prod": {}}, "letters, digits and dashes"),
        ({"dev": {"overrides": {"deployments": {"hello": ["x"]}}}}, "hello: expected the object"),
    ],
)
def test_a_malformed_target_is_named(targets, message: str) -> None:
    raw = declaration(targets)
    with pytest.raises(TargetError, match=message):
        target = chosen(raw, WHERE, "dev")
        with_target(raw, target, WHERE)


def test_an_unknown_target_names_the_declared_ones() -> None:
    with pytest.raises(TargetError, match=r"no target 'staging' \(the file declares: dev, prod\)"):
        chosen(declaration({"dev": {}, "prod": {}}), WHERE, "staging")
    with pytest.raises(TargetError, match="declares no targets"):
        chosen(declaration(), WHERE, "prod")
    assert chosen(declaration(), WHERE) is None


def test_the_server_comes_from_the_variables_the_target_names(monkeypatch) -> None:
    raw = declaration(
        {"dev": {}, "prod": {"server": {"url": "PROD_URL", "auth_string": "PROD_AUTH"}}}
    )
    targets = declared_targets(raw, WHERE)
    assert server_environment(targets["dev"]) == {}  # Prefect's own variables, unchanged
    monkeypatch.delenv("PROD_URL", raising=False)
    with pytest.raises(TargetError, match="target 'prod': set PROD_URL to its server's API URL"):
        server_environment(targets["prod"])
    monkeypatch.setenv("PROD_URL", "https://prefect.example.com/api")
    monkeypatch.setenv("PROD_AUTH", "admin:secret")
    assert server_environment(targets["prod"]) == {
        "PREFECT_API_URL": "https://prefect.example.com/api",
        "PREFECT_API_AUTH_STRING": "admin:secret",
    }
