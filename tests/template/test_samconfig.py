"""samconfig.toml: one config env per stage, overrides that the template accepts."""

import re
import shlex
import tomllib

import pytest
from samcli.cli.types import CfnParameterOverridesType
from template_helpers import SAMCONFIG

CONFIG = tomllib.loads(SAMCONFIG.read_text())
# config env -> stack, suffix, deletion protection, instance class, alert e-mail, RDS Proxy, scheduled switchover
STAGES = {
    "default": ("hapg-dev", "dev", "false", "db.r6g.large", None, "false", "false"),
    "dev": ("hapg-dev", "dev", "false", "db.r6g.large", None, "false", "false"),
    "staging": ("hapg-staging", "staging", "true", "db.r6g.large", "ops-oncall@example.com", "true", "true"),
    "prod": ("hapg-prod", "prod", "true", "db.r6g.xlarge", "ops-oncall@example.com", "true", "false"),
}


def overrides(env: str) -> dict:
    """parameter_overrides as `sam deploy` reads them (SAM CLI's own parser: quoting, spaces)."""
    raw = CONFIG[env]["deploy"]["parameters"]["parameter_overrides"]
    parsed = CfnParameterOverridesType().convert(raw, None, None)
    assert parsed == dict(item.split("=", 1) for item in shlex.split(raw)), "quoting differs from the shell's"
    return parsed


def test_version_and_environments():
    assert CONFIG["version"] == 0.1
    assert set(CONFIG) - {"version"} == set(STAGES)


def test_default_is_dev():
    """A plain `sam deploy` deploys exactly what `--config-env dev` deploys."""
    assert CONFIG["default"] == CONFIG["dev"]


@pytest.mark.parametrize("env", STAGES)
def test_build_and_validate(env):
    assert CONFIG[env]["build"]["parameters"] == {"cached": True, "parallel": True}
    assert CONFIG[env]["validate"]["parameters"]["lint"] is True


@pytest.mark.parametrize(("env", "expected"), STAGES.items())
def test_deploy(env, expected):
    stack, suffix, protection, instance_class, email, proxy, schedule = expected
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
    assert o.get("AlertEmail") == email
    # stated explicitly in every stage, so a changed template default changes no environment
    assert (o["EnableRdsProxy"], o["EnableScheduledSwitchover"]) == (proxy, schedule)
    tags = dict(item.split("=", 1) for item in shlex.split(deploy["tags"]))
    assert tags == {"Project": "HA-PostgreSQL-Database", "ManagedBy": "SAM", "Environment": suffix}


@pytest.mark.parametrize("env", ["staging", "prod"])
def test_shared_stages_page_someone_and_keep_their_data(env):
    o = overrides(env)
    assert "@" in o["AlertEmail"]
    assert o["DeletionProtection"] == "true"


def test_staging_runs_what_prod_runs():
    """Staging proves the proxy path before prod: same proxy setting, same reader count."""
    assert overrides("staging")["EnableRdsProxy"] == overrides("prod")["EnableRdsProxy"]
    assert overrides("staging").get("ReaderCount", "2") == overrides("prod").get("ReaderCount", "2")


def test_staging_drills_weekly_on_the_default_quiet_window(sam):
    o = overrides("staging")
    assert o["EnableScheduledSwitchover"] == "true"
    assert o["ScheduledSwitchoverCron"] == sam["Parameters"]["ScheduledSwitchoverCron"]["Default"]


@pytest.mark.parametrize("env", STAGES)
def test_overrides_satisfy_the_template(sam, env):
    params = sam["Parameters"]
    for key, value in overrides(env).items():
        assert key in params, key
        if "AllowedPattern" in params[key]:
            assert re.fullmatch(params[key]["AllowedPattern"], value), (key, value)
        if "AllowedValues" in params[key]:
            assert value in [str(v) for v in params[key]["AllowedValues"]], (key, value)
