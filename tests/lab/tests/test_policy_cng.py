"""The lab CA's key checks for CNG (schema v3/v4) templates against the running lab AD, in process (no wire):
the template's msPKI-Asymmetric-Algorithm and msPKI-Minimal-Key-Size are enforced; legacy CSP templates keep
refusing EC keys (bit length below msPKI-Minimal-Key-Size); ECDSA P-256/P-384 certificates are issued with the
template's key usage (digitalSignature, no keyEncipherment).

The CA runs on a private copy of the lab state, as in test_policy_backend.
"""

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from adcslab import seed
from adcslab.ca import CertificationAuthority
from adcslab.ca import errors
from adcslab.ca import templates as tpl
from adcslab.ca import testing as T

from test_policy_backend import copy_state, submit

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def ca(lab, tmp_path_factory):
    authority = CertificationAuthority.open(copy_state(lab, str(tmp_path_factory.mktemp("cng-state"))))
    assert authority.template_source_kind == "ldap"
    yield authority
    authority.close()
    from test_policy_wire import restore_lab_cdp
    restore_lab_cdp(lab)


@pytest.fixture(scope="module")
def keys():
    return {"p256": ec.generate_private_key(ec.SECP256R1()), "p384": ec.generate_private_key(ec.SECP384R1()),
            "rsa2048": T.rsa_key(2048), "rsa3072": T.rsa_key(3072)}


def _issued(response):
    assert response.disposition == 3, "0x%08x %s" % (response.disposition, response.disposition_message)
    return x509.load_der_x509_certificate(response.cert_der)


def test_templates_read_from_ad_carry_the_cng_properties(ca):
    ecc, ecc384, ksp = (ca.templates.get(name) for name in ("WebServerECC", "WebServerECC384", "WebServerKSP"))
    assert (ecc.schema_version, ecc.asymmetric_algorithm, ecc.hash_algorithm, ecc.min_key_size) == \
        (3, "ECDSA_P256", "SHA256", 256)
    assert (ecc384.schema_version, ecc384.asymmetric_algorithm, ecc384.hash_algorithm, ecc384.min_key_size) == \
        (4, "ECDSA_P384", "SHA384", 384)
    assert (ksp.schema_version, ksp.asymmetric_algorithm, ksp.min_key_size) == (3, "RSA", 3072)
    assert ca.templates.get("WebServer").asymmetric_algorithm is None  # legacy CSP template


@pytest.mark.parametrize("template,key,hash_algorithm,curve", [
    ("WebServerECC", "p256", hashes.SHA256(), "secp256r1"),
    ("WebServerECC384", "p384", hashes.SHA384(), "secp384r1"),
])
def test_ecdsa_certificates_issued_with_signature_key_usage(ca, lab, keys, template, key, hash_algorithm, curve):
    csr = T.make_csr(keys[key], "ecc.lab.adcs.test", hash_algorithm=hash_algorithm)
    cert = _issued(submit(ca, lab, "enroller", template, csr))
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey) and cert.public_key().curve.name == curve
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature
    assert not usage.value.key_encipherment and not usage.value.key_agreement and not usage.value.data_encipherment
    cert.verify_directly_issued_by(ca.ca_cert)  # the RSA CA signs the EC end-entity certificate correctly
    template_ext = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier("1.3.6.1.4.1.311.21.7")).value
    assert template_ext.template_id.dotted_string == seed.template_oid(
        next(t for t in seed.TEMPLATES if t["cn"] == template))


def test_rsa_ksp_template_issues_rsa_3072(ca, lab, keys):
    cert = _issued(submit(ca, lab, "enroller", "WebServerKSP", T.make_csr(keys["rsa3072"], "ksp.lab.adcs.test")))
    assert isinstance(cert.public_key(), rsa.RSAPublicKey) and cert.public_key().key_size == 3072
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and usage.key_encipherment


@pytest.mark.parametrize("template,key,code", [
    ("WebServerECC", "rsa2048", errors.NTE_BAD_ALGID),        # RSA key on an ECDSA_P256 template
    ("WebServerECC", "p384", errors.NTE_BAD_ALGID),           # another curve
    ("WebServerECC384", "p256", errors.NTE_BAD_ALGID),
    ("WebServerKSP", "p256", errors.NTE_BAD_ALGID),           # EC key on an RSA CNG template
    ("WebServerKSP", "rsa2048", errors.CERTSRV_E_KEY_LENGTH),  # right algorithm, below msPKI-Minimal-Key-Size
    ("WebServer", "p256", errors.CERTSRV_E_KEY_LENGTH),       # legacy CSP template: 256 bits < 2048
    ("WebServer4096", "p384", errors.CERTSRV_E_KEY_LENGTH),
])
def test_key_refusals(ca, lab, keys, template, key, code):
    response = submit(ca, lab, "enroller", template, T.make_csr(keys[key], "refused.lab.adcs.test"))
    assert response.disposition == code, "0x%08x %s" % (response.disposition, response.disposition_message)
    assert response.disposition_message.startswith("Denied by Policy Module  0x%08x" % code)


def test_key_refusal_rules_without_directory():
    """key_refusal on hand-made templates: ECDH names an EC key on the same curve; an unknown algorithm refuses
    every key; a legacy template compares only the bit length."""
    base = tpl.BUILTIN_TEMPLATES[2]  # WebServer (legacy, min 2048)
    p256 = ec.generate_private_key(ec.SECP256R1()).public_key()
    rsa2048 = T.rsa_key(2048).public_key()
    assert tpl.key_refusal(base, rsa2048) is None
    assert tpl.key_refusal(base, p256) == errors.CERTSRV_E_KEY_LENGTH
    from dataclasses import replace
    ecdh = replace(base, schema_version=3, asymmetric_algorithm="ECDH_P256", min_key_size=256)
    assert tpl.key_refusal(ecdh, p256) is None
    assert tpl.key_refusal(replace(ecdh, asymmetric_algorithm="DH"), p256) == errors.NTE_BAD_ALGID
    assert tpl.cng_properties(["msPKI-Asymmetric-Algorithm`PZPWSTR`ECDSA_P256`"], 4, 0x100) == {}  # legacy v4
    assert tpl.cng_properties([seed.cng_properties("RSA", "SHA512", 2)], 3, 0) == {
        "msPKI-Asymmetric-Algorithm": "RSA", "msPKI-Hash-Algorithm": "SHA512", "msPKI-Key-Usage": "2",
        "msPKI-Symmetric-Algorithm": "3DES", "msPKI-Symmetric-Key-Length": "168"}
