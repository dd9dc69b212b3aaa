import pytest
from hapg import config
from hapg.errors import ConfigError
from hapg.names import Env

BASE = {
    Env.CLUSTER_ID: "c1",
    Env.DB_SECRET_ARN: "arn:aws:secretsmanager:us-east-1:1:secret:x",
    Env.DB_WRITER_ENDPOINT: "c1.cluster-abc.us-east-1.rds.amazonaws.com",
    Env.DB_READER_ENDPOINT: "c1.cluster-ro-abc.us-east-1.rds.amazonaws.com",
    Env.DB_PORT: "5432",
}


def test_defaults_are_safe():
    s = config.load(BASE)
    assert s.db.sslmode == "verify-full"
    assert s.db.sslrootcert == config.CA_BUNDLE
    assert s.db.dbname == "financialdb"
    assert s.db.writer.port == 5432 and s.db.writer.host.startswith("c1.cluster-abc")
    assert s.db.connect_timeout_s == 5 and s.db.statement_timeout_ms == 5000
    assert s.db.proxy is None


def test_host_port_and_multi_host_endpoints_parse():
    s = config.load(
        {
            **BASE,
            Env.DB_WRITER_ENDPOINT: "127.0.0.1,127.0.0.1:5433,5434",
            Env.DB_READER_ENDPOINT: "127.0.0.1:6000",
        }
    )
    assert (s.db.writer.host, s.db.writer.port) == ("127.0.0.1,127.0.0.1", "5433,5434")
    assert s.db.reader.port == 6000


@pytest.mark.parametrize("missing", [Env.CLUSTER_ID, Env.DB_SECRET_ARN, Env.DB_WRITER_ENDPOINT])
def test_missing_required_variable_is_named(missing):
    env = {k: v for k, v in BASE.items() if k != missing}
    with pytest.raises(ConfigError, match=missing):
        config.load(env)


@pytest.mark.parametrize(
    ("key", "value"), [(Env.MAX_LAG_MS, "fast"), (Env.DRAIN_GRACE_S, "-1"), (Env.DB_SSLMODE, "prefer")]
)
def test_bad_values_are_refused(key, value):
    with pytest.raises(ConfigError, match=key):
        config.load({**BASE, key: value})
