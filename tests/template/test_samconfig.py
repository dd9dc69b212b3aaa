"""samconfig.toml: one config env per stage, overrides that the template accepts."""

import re
import shlex
import tomllib

import pytest
from template_helpers import SAMCONFIG

CONFIG = tomllib.loads(SAMCONFIG.read_text())
STAGES = {  # config env -> (stack, suffix, deletion protection, instance class)
    "default": ("hapg-dev", "dev", "false", "db.r6g.large"),
    "staging": ("hapg-staging", "staging", "true", "db.r6g.large"),
    "prod": ("hapg-prod", "prod", "true", "db.r6g.xlarge"),
}


def overrides(env: str) -> dict:
    return dict(item.split("=", 1) for item in shlex.split(CONFIG[env]["deploy"]["parameters"]["parameter_overrides"]))


def test_version():
    assert CONFIG["version"] == 0.1


@pytest.mark.parametrize("env", STAGES)
def test_build_and_validate(env):
    assert CONFIG[env]["build"]["parameters"] == {"cached": True, "parallel": True}
    assert CONFIG[env]["validate"]["parameters"]["lint"] is True


@pytest.mark.parametrize(("env", "expected"), STAGES.items())
def test_deploy(env, expected):
    stack, suffix, protection, instance_class = expected
    deploy = CONFIG[env]["deploy"]["parameters"]
    assert deploy["stack_name"] == stack
    assert deploy["capabilities"] == "CAPABILITY_IAM"
    assert deploy["confirm_changeset"] is True
    assert deploy["resolve_s3"] is True
    assert deploy["region"] == "us-east-1"
    o = overrides(env)
    assert (o["EnvironmentSuffix"], o["DeletionProtection"], o["InstanceClass"]) == (
        suffix,
        protection,
        instance_class,
    )
    tags = dict(item.split("=", 1) for item in shlex.split(deploy["tags"]))
    assert tags["Project"] == "HA-PostgreSQL-Database"
    assert tags["Environment"] == suffix


@pytest.mark.parametrize("env", ["staging", "prod"])
def test_shared_stages_page_someone(env):
    assert "@" in overrides(env)["AlertEmail"]


@pytest.mark.parametrize("env", STAGES)
def test_overrides_satisfy_the_template(sam, env):
    params = sam["Parameters"]
    for key, value in overrides(env).items():
        assert key in params, key
        if "AllowedPattern" in params[key]:
            assert re.fullmatch(params[key]["AllowedPattern"], value), (key, value)
        if "AllowedValues" in params[key]:
            assert value in [str(v) for v in params[key]["AllowedValues"]], (key, value)
