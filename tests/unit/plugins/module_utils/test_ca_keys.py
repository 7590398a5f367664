# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""_ca_keys: the CA Version extension and which signing certificate / key index of a renewed CA a certificate
belongs to (the CaFetcher tests in test_crl_fetch run it through from_ca)."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

pytest.importorskip('cryptography')

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes  # noqa: E402

from ansible_collections.adcs.enrollment.plugins.module_utils import _ca_keys  # noqa: E402
from ansible_collections.adcs.enrollment.plugins.module_utils._crl_http import FetchError  # noqa: E402
from ansible_collections.adcs.enrollment.tests.unit.plugins.support import crl_pki as P  # noqa: E402
from ansible_collections.adcs.enrollment.tests.unit.plugins.support.crl_web import FakeCaClient  # noqa: E402

CA = P.Ca()


def _with_extension(value):
    cert = CA.cert
    builder = x509.CertificateBuilder().subject_name(cert.subject).issuer_name(cert.issuer) \
        .public_key(cert.public_key()).serial_number(1).not_valid_before(cert.not_valid_before_utc) \
        .not_valid_after(cert.not_valid_after_utc) \
        .add_extension(x509.UnrecognizedExtension(x509.ObjectIdentifier(_ca_keys.OID_CA_VERSION), value), False)
    return builder.sign(P.key('ca'), hashes.SHA256())


def test_ca_version():
    assert _ca_keys.ca_version(CA.cert) is None
    assert _ca_keys.ca_version(P.renewed(CA, 1, 0).cert) == (1, 0)
    assert _ca_keys.ca_version(P.renewed(CA, 5, 4, key_name='k4').cert) == (5, 4)
    assert _ca_keys.ca_version(P.renewed(CA, 0x8000, 0x8000, key_name='k4').cert) == (0x8000, 0x8000)
    for bad in (b'\x04\x01\x01', b'\x02\x05\x01', b'\x02', b'\x02\x06\x00\x00\x00\x00\x00\x01'):
        assert _ca_keys.ca_version(_with_extension(bad)) is None, bad


def test_signing_certs_count_and_key_index_fallbacks():
    renewed = P.renewed(CA, 2, 1, key_name='k1')
    certs = _ca_keys.SigningCerts(FakeCaClient({0x0B: RuntimeError('E_INVALIDARG'), 0x0C: {0: CA.der}}))
    assert certs.count() == 1 and certs.select() == (0, 0, CA.cert)
    certs = _ca_keys.SigningCerts(FakeCaClient({0x0B: 0}))
    assert certs.count() == 1
    certs = _ca_keys.SigningCerts(FakeCaClient({0x0B: 3, 0x0C: {2: renewed.der}, 0x27: {2: 0x00010002}}))
    assert certs.select()[:2] == (2, 1)  # CR_PROP_CACERTVERSION
    certs = _ca_keys.SigningCerts(FakeCaClient({0x0B: 3, 0x0C: {2: renewed.der}}))
    assert certs.select()[:2] == (2, 1)  # the CA Version extension
    certs = _ca_keys.SigningCerts(FakeCaClient({0x0B: 3, 0x0C: {2: CA.der}}))
    assert certs.select()[:2] == (2, 2)  # neither: the certificate index itself
    with pytest.raises(FetchError, match='the CA returned no CA signing certificate 1'):
        _ca_keys.SigningCerts(FakeCaClient({0x0B: 2, 0x0C: {1: b''}})).select()
