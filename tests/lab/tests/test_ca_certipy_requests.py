"""The lab CA backend fed with request blobs built by Certipy 5.1's own code (an independent client
implementation): plain PKCS#10 with Certipy's attributes, CMC key archival to the CA exchange certificate, and a
CMS renewal. No network: Certipy's functions run in .venv-certipy and hand the DER back."""

import json
import os
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from adcslab.ca import CAError, CertificationAuthority, Requester
from adcslab.ca import archival, errors
from adcslab.ca.reqparse import parse_request
from adcslab.ca import testing as T

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
CERTIPY_PYTHON = os.path.join(REPO, ".venv-certipy", "bin", "python")

pytestmark = [pytest.mark.certipy,
              pytest.mark.skipif(not os.path.exists(CERTIPY_PYTHON), reason=".venv-certipy is not installed")]

ENROLLER = Requester(user="enroller", domain="LAB", sid="S-1-5-21-1111-2222-3333-1104", group_sids=[],
                     authn_type=10, transport="icpr")

_SCRIPT = r"""
import json, sys
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from certipy.lib import certificate as c

args = json.loads(sys.argv[1])
out = {}
csr, key = c.create_csr("enroller", alt_dns=None, alt_upn=None, alt_sid=None, subject=None, key_size=2048,
                        application_policies=None, smime=None)
out["csr"] = c.csr_to_der(csr).hex()
out["attributes"] = c.create_csr_attributes("WebServer", alt_upn="administrator@lab.adcs.test")
out["key_n"] = str(key.public_key().public_numbers().n)
with open(args["xchg"], "rb") as h:
    xchg = x509.load_pem_x509_certificate(h.read())
out["archival"] = c.create_key_archival(csr, key, xchg).hex()
other_csr, other_key = c.create_csr("other", None, None, None, None, 2048, None, None)
out["archival_wrong_key"] = c.create_key_archival(csr, other_key, xchg).hex()
with open(args["old_cert"], "rb") as h:
    old_cert = x509.load_pem_x509_certificate(h.read())
with open(args["old_key"], "rb") as h:
    old_key = serialization.load_pem_private_key(h.read(), None)
out["renewal"] = c.create_renewal(c.csr_to_der(csr), old_cert, old_key).hex()
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    state = tmp_path_factory.mktemp("certipy-ca")
    ca = CertificationAuthority.open(str(state))
    old_key = T.rsa_key()
    old = ca.submit(0, "CertificateTemplate:WebServer", T.make_csr(old_key, "renew-me"), ENROLLER)
    files = {"xchg": state / "xchg-pub.pem", "old_cert": state / "old.pem", "old_key": state / "old.key"}
    files["xchg"].write_bytes(ca.xchg_cert.public_bytes(serialization.Encoding.PEM))
    files["old_cert"].write_bytes(x509.load_der_x509_certificate(old.cert_der).public_bytes(
        serialization.Encoding.PEM))
    files["old_key"].write_bytes(old_key.private_bytes(serialization.Encoding.PEM,
                                                       serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    result = subprocess.run([CERTIPY_PYTHON, "-c", _SCRIPT, json.dumps({k: str(v) for k, v in files.items()})],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    blobs = json.loads(result.stdout)
    yield ca, blobs, x509.load_der_x509_certificate(old.cert_der)
    ca.close()


def test_certipy_pkcs10_with_its_attributes(setup):
    ca, blobs, _ = setup
    attributes = "\n".join(blobs["attributes"])
    response = ca.submit(0, attributes, bytes.fromhex(blobs["csr"]), ENROLLER)
    assert response.disposition == 3, response.disposition_message
    cert = x509.load_der_x509_certificate(response.cert_der)
    assert cert.subject.rfc4514_string().lower() == "cn=enroller"  # Certipy capitalises the CN
    # SAN attribute ignored: EDITF_ATTRIBUTESUBJECTALTNAME2 is off by default
    with pytest.raises(x509.ExtensionNotFound):
        cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)


def test_certipy_key_archival_cmc(setup):
    ca, blobs, _ = setup
    response = ca.submit(0, "CertificateTemplate:WebServer", bytes.fromhex(blobs["archival"]), ENROLLER)
    assert response.disposition == 3, response.disposition_message
    cert = x509.load_der_x509_certificate(response.cert_der)
    assert str(cert.public_key().public_numbers().n) == blobs["key_n"]
    row = ca.get_request(response.request_id)
    assert row["request_type"] == "cmc" and row["archived_key"]


def test_certipy_key_archival_signed_with_another_key_fails(setup):
    # create_key_archival signs with the key it archives: here not the request's key -> bad signature
    ca, blobs, _ = setup
    response = ca.submit(0, "CertificateTemplate:WebServer", bytes.fromhex(blobs["archival_wrong_key"]), ENROLLER)
    assert response.disposition == errors.NTE_BAD_SIGNATURE, response.disposition_message
    assert response.cert_der is None


def test_archived_key_must_match_the_request_key(setup):
    ca, blobs, _ = setup
    parsed = parse_request(bytes.fromhex(blobs["archival"]), 0)
    blob = archival.decrypt_archived_key(parsed.archived_key, ca.xchg_key)
    assert archival.check_archived_key(blob, parsed.csr.public_key())
    with pytest.raises(CAError) as info:
        archival.check_archived_key(blob, T.rsa_key().public_key())
    assert info.value.hresult == errors.CERTSRV_E_BAD_REQUEST_KEY_ARCHIVAL
    with pytest.raises(CAError) as info:
        archival.decrypt_archived_key(parsed.archived_key, T.rsa_key())
    assert info.value.hresult == errors.CERTSRV_E_BAD_REQUEST_KEY_ARCHIVAL


def test_key_archival_not_configured(setup):
    ca, blobs, _ = setup
    ca.config["key_archival"] = False
    try:
        response = ca.submit(0, "CertificateTemplate:WebServer", bytes.fromhex(blobs["archival"]), ENROLLER)
    finally:
        ca.config["key_archival"] = True
    assert response.disposition == errors.CERTSRV_E_KEY_ARCHIVAL_NOT_CONFIGURED


def test_certipy_renewal_cms(setup):
    ca, blobs, old = setup
    response = ca.submit(0, "CertificateTemplate:WebServer", bytes.fromhex(blobs["renewal"]), ENROLLER)
    assert response.disposition == 3, response.disposition_message
    assert ca.get_request(response.request_id)["request_type"] == "cms"
