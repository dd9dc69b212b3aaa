"""The rules of a rotation, as pure functions over Secrets Manager metadata and secret values.

The strategy follows from WHICH secret is rotated, never from what a secret says. A secret whose
host/port/dbname do not name this cluster is refused, and a pending value may differ from the
current one only in its password (and, alternating, in the username, which must be the current
one's alternate): whoever can edit a secret must not be able to point a rotation elsewhere.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from hapg import errors
from hapg.config import DbSettings
from hapg.names import Rotation, SecretStage

CURRENT, PENDING, PREVIOUS = SecretStage.CURRENT, SecretStage.PENDING, SecretStage.PREVIOUS
ENGINES = ("postgres", "aurora-postgresql")
MIN_PASSWORD = 16
MAX_PASSWORD = 128  # RDS's limit for master passwords
_ROLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_RESERVED = re.compile(r"^(pg_|rds_|rdsadmin$|rdsrepladmin$|public$)", re.IGNORECASE)


class Step:
    CREATE = "createSecret"
    SET = "setSecret"
    TEST = "testSecret"
    FINISH = "finishSecret"
    ALL = (CREATE, SET, TEST, FINISH)


class Strategy:
    SINGLE_USER = "single-user"  # the master secret
    ALTERNATING = "alternating-users"  # the app secret


def nonempty(value: Any) -> bool:
    return isinstance(value, str) and bool(value)


def strategy_for(arn: str, master_arn: str, app_arn: str | None) -> str:
    """Which strategy rotates the secret with this ARN; refuses any other secret."""
    if arn == master_arn:
        return Strategy.SINGLE_USER
    if app_arn and arn == app_arn:
        return Strategy.ALTERNATING
    raise errors.RotationError(
        f"secret {arn} is neither the master secret nor the application secret this function rotates"
    )


def already_current(metadata: Mapping[str, Any], token: str) -> bool:
    """True when the token is AWSCURRENT (nothing to do); raises when this rotation must not run."""
    name = metadata.get("Name") or metadata.get("ARN")
    if metadata.get("RotationEnabled") is not True:
        raise errors.RotationError(f"rotation is not enabled on secret {name}")
    stages = (metadata.get("VersionIdsToStages") or {}).get(token)
    if stages is None:
        raise errors.RotationError(f"version {token} of secret {name} has no stage for rotation")
    if CURRENT in stages:
        return True
    if PENDING not in stages:
        raise errors.RotationError(
            f"version {token} of secret {name} is not staged {PENDING} (stages: {', '.join(stages) or '-'})"
        )
    return False


def current_version(metadata: Mapping[str, Any]) -> str | None:
    return next((v for v, stages in (metadata.get("VersionIdsToStages") or {}).items() if CURRENT in stages), None)


def alternate(username: str) -> str:
    """hapg_app <-> hapg_app_clone."""
    suffix = Rotation.CLONE_SUFFIX
    return username[: -len(suffix)] if username.endswith(suffix) else username + suffix


def group_role(username: str) -> str:
    """The NOLOGIN role holding the app privileges: <base user>_rw for both alternates."""
    return username.removesuffix(Rotation.CLONE_SUFFIX) + Rotation.GROUP_SUFFIX


def _port(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 < value < 65536 else None
    if isinstance(value, str) and value.isdigit():
        return _port(int(value))
    return None


def secret_problems(value: Any, strategy: str) -> list[str]:
    """What is missing or invalid in a secret value (never quotes the password)."""
    if not isinstance(value, Mapping):
        return ["the value is not a JSON object"]
    problems = []
    user = value.get("username")
    if not isinstance(user, str) or not _ROLE.fullmatch(user):
        problems.append("username is missing or not a plain PostgreSQL role name")
    elif _RESERVED.match(user):
        problems.append(f"username {user!r} is reserved")
    elif strategy == Strategy.ALTERNATING and not _ROLE.fullmatch(alternate(user) + Rotation.GROUP_SUFFIX):
        problems.append(f"username {user!r} is too long for its alternate and group role")
    if not nonempty(value.get("password")):
        problems.append("password is missing or empty")
    host = value.get("host")
    if not nonempty(host) or any(c.isspace() or c == "," for c in host):
        problems.append("host is missing or not a single host name")
    if value.get("engine") not in ENGINES:
        problems.append(f"engine must be one of {', '.join(ENGINES)}")
    if "port" in value and _port(value["port"]) is None:
        problems.append("port is not a TCP port number")
    if "dbname" in value and not nonempty(value["dbname"]):
        problems.append("dbname is not a non-empty string")
    master = value.get("masterarn")
    if strategy == Strategy.ALTERNATING:
        if not (nonempty(master) and master.startswith("arn:") and ":secretsmanager:" in master):
            problems.append("masterarn is missing or not a Secrets Manager ARN")
    elif "masterarn" in value:
        problems.append("a single-user secret must not name a masterarn")
    return problems


def password_problems(password: Any) -> list[str]:
    """Rules for a NEW password (the current one is whatever it is)."""
    if not isinstance(password, str):
        return ["password is not a string"]
    problems = []
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        problems.append(f"password length must be {MIN_PASSWORD}-{MAX_PASSWORD}")
    if any(not (0x21 <= ord(c) <= 0x7E) for c in password):
        problems.append("password must be printable ASCII without spaces")
    if set(password) & set(Rotation.EXCLUDE_CHARACTERS):
        problems.append("password contains characters that break connection strings")
    return problems


def pending_problems(current: Mapping[str, Any], pending: Any, strategy: str, step: str) -> list[str]:
    """Is the pending value valid, and consistent with the current one?

    Only the password may differ (and, alternating, the username, which must be the current
    user's alternate). testSecret also accepts the current value itself: when rotation is turned
    on without rotating, Secrets Manager stages a copy of the current value and runs testSecret."""
    if step == Step.TEST and isinstance(pending, Mapping) and dict(pending) == dict(current):
        return []
    problems = secret_problems(pending, strategy)
    if problems:
        return problems
    problems += password_problems(pending["password"])
    if pending["password"] == current.get("password"):
        problems.append("the pending password equals the current one")
    want = alternate(current["username"]) if strategy == Strategy.ALTERNATING else current.get("username")
    if pending["username"] != want:
        problems.append(f"username {pending['username']!r} differs from {want!r}")
    shown = {"host", "port", "dbname", "engine", "masterarn"}
    for key in sorted((set(current) | set(pending)) - {"username", "password"}):
        if current.get(key) != pending.get(key):
            values = f" ({current.get(key)!r} vs {pending.get(key)!r})" if key in shown else ""
            problems.append(f"{key} differs from the current value{values}")
    return problems


def target_problems(value: Mapping[str, Any], db: DbSettings) -> list[str]:
    """Does the secret name this cluster (writer/reader/proxy endpoint, port, database)?"""
    endpoints = [db.writer, db.reader, *([db.proxy] if db.proxy else [])]
    hosts = {e.host.lower() for e in endpoints}
    problems = []
    if str(value.get("host", "")).lower() not in hosts:
        problems.append(f"host {value.get('host')!r} is not an endpoint of this cluster ({', '.join(sorted(hosts))})")
    if "port" in value and _port(value["port"]) != _port(db.writer.port):
        problems.append(f"port {value['port']!r} is not the cluster's port {db.writer.port}")
    if "dbname" in value and value["dbname"] != db.dbname:
        problems.append(f"dbname {value['dbname']!r} is not this stack's database {db.dbname!r}")
    return problems


def new_pending(current: Mapping[str, Any], password: str, strategy: str) -> dict[str, Any]:
    """The next value: the current one with a new password (and, alternating, the other user)."""
    value = {**current, "password": password}
    if strategy == Strategy.ALTERNATING:
        value["username"] = alternate(current["username"])
    return value


def refuse(what: str, problems: Iterable[str]) -> None:
    problems = list(problems)
    if problems:
        raise errors.RotationError(f"{what}: {'; '.join(problems)}")
