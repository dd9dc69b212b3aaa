"""The shipped RDS CA bundle parses and holds the 2024 roots that Aurora certificates chain to."""

import re

from cryptography import x509
from hapg.config import CA_BUNDLE


def certificates():
    with open(CA_BUNDLE) as fh:
        text = fh.read()
    blocks = re.findall(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", text, re.S)
    return [x509.load_pem_x509_certificate(b.encode()) for b in blocks]


def test_every_block_is_a_ca_certificate():
    certs = certificates()
    assert len(certs) >= 100
    for cert in certs:
        assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_current_rds_roots_are_present():
    names = {c.subject.rfc4514_string() for c in certificates()}
    for root in (
        "us-east-1 Root CA RSA2048 G1",
        "us-east-1 Root CA ECC384 G1",
        "eu-west-1 Root CA RSA4096 G1",
    ):
        assert any(f"Amazon RDS {root}" in n for n in names), root


def test_proxy_bundle_holds_the_amazon_trust_services_roots():
    from hapg.config import PROXY_CA_BUNDLE

    with open(PROXY_CA_BUNDLE) as fh:
        blocks = re.findall(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", fh.read(), re.S)
    names = {x509.load_pem_x509_certificate(b.encode()).subject.rfc4514_string() for b in blocks}
    for root in (
        "Amazon Root CA 1",
        "Amazon Root CA 2",
        "Amazon Root CA 3",
        "Amazon Root CA 4",
        "Starfield Services Root Certificate Authority - G2",
    ):
        assert any(f"CN={root}" in n for n in names), root
