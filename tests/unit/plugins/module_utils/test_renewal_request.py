# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Renewal requests (_renewal_request): CMS around the renewal PKCS#10, signed with the old key."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import shutil
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding
from pyasn1.codec.der import decoder as der_decoder
from pyasn1.type import univ

from ansible_collections.adcs.enrollment.plugins.module_utils import _csr
from ansible_collections.adcs.enrollment.plugins.module_utils import _renewal_request
from ansible_collections.adcs.enrollment.plugins.module_utils._errors import InvalidInput
from ansible_collections.adcs.enrollment.tests.unit.plugins.support import csr as support_csr
from ansible_collections.adcs.enrollment.tests.unit.plugins.support import wcce_pki


# ---------------------------------------------------------------- renewal
def _old_cert(key):
    p = wcce_pki.pki()
    return p.issue('host.lab.adcs.test', key, serial=0x77, template_name='WebServer')


@pytest.mark.parametrize('old_kind', ['rsa', 'ec'])
def test_renewal_request_verifies_with_old_key(old_kind):
    old_key = wcce_pki.rsa_key('old') if old_kind == 'rsa' else wcce_pki.ec_key('old')
    old = _old_cert(old_key)
    new_key = wcce_pki.rsa_key('new')
    csr_der = _csr.build_csr(new_key, 'CN=host.lab.adcs.test', ['DNS:host.lab.adcs.test'], renewal_certificate=old)
    csr = x509.load_der_x509_csr(csr_der)
    assert csr.is_signature_valid  # still signed by the NEW key after adding the attribute
    old_der = old.public_bytes(serialization.Encoding.DER)
    assert _csr.csr_attributes(csr_der)[_csr.OID_RENEWAL_CERTIFICATE] == [old_der]

    cms = _renewal_request.build_renewal_request(csr_der, old, old_key)
    parts = support_csr.parse_renewal_request(cms)
    assert parts['econtent_type'] == _renewal_request.OID_PKCS7_DATA
    assert parts['csr_der'] == csr_der
    assert parts['certificates'] == [old_der]
    assert parts['signer_serial'] == 0x77
    assert parts['signer_issuer_der'] == old.issuer.public_bytes()
    attrs = parts['signed_attrs']
    assert attrs[_csr.OID_RENEWAL_CERTIFICATE] == [old_der]
    assert attrs[_renewal_request.OID_CONTENT_TYPE] == [bytes(univ_oid_der(_renewal_request.OID_PKCS7_DATA))]
    digest = hashes.Hash(hashes.SHA256())
    digest.update(csr_der)
    md, _rest = der_decoder.decode(attrs[_renewal_request.OID_MESSAGE_DIGEST][0])
    assert bytes(md) == digest.finalize()
    pub = old_key.public_key()
    if old_kind == 'rsa':
        pub.verify(parts['signature'], parts['to_be_signed'], padding.PKCS1v15(), hashes.SHA256())
        assert parts['signature_oid'] == _renewal_request.OID_RSA_ENCRYPTION
    else:
        pub.verify(parts['signature'], parts['to_be_signed'], ec.ECDSA(hashes.SHA256()))
        assert parts['signature_oid'] == '1.2.840.10045.4.3.2'
    # the new key cannot have produced this signature
    with pytest.raises(Exception):
        new_key.public_key().verify(parts['signature'], parts['to_be_signed'], padding.PKCS1v15(), hashes.SHA256())


def univ_oid_der(oid):
    from pyasn1.codec.der import encoder
    return encoder.encode(univ.ObjectIdentifier(oid))


def test_renewal_rejects_foreign_key():
    old = _old_cert(wcce_pki.rsa_key('old'))
    csr_der = _csr.build_csr(wcce_pki.rsa_key('new'), 'CN=x', renewal_certificate=old)
    with pytest.raises(InvalidInput):
        _renewal_request.build_renewal_request(csr_der, old, wcce_pki.rsa_key('new'))


@pytest.mark.skipif(not shutil.which('openssl'), reason='openssl CLI not installed')
def test_renewal_cms_accepted_by_openssl(tmp_path):
    old_key = wcce_pki.rsa_key('old')
    p = wcce_pki.pki()
    old = _old_cert(old_key)
    csr_der = _csr.build_csr(wcce_pki.ec_key('new'), 'CN=host', renewal_certificate=old)
    cms = tmp_path / 'renew.p7b'
    cms.write_bytes(_renewal_request.build_renewal_request(csr_der, old, old_key))
    ca_file = tmp_path / 'ca.pem'
    ca_file.write_bytes(b''.join(c.public_bytes(serialization.Encoding.PEM) for c in (p.root, p.ca)))
    out = tmp_path / 'content.der'
    res = subprocess.run(['openssl', 'cms', '-verify', '-inform', 'DER', '-in', str(cms), '-CAfile', str(ca_file),
                          '-binary', '-purpose', 'any', '-attime', str(int(wcce_pki.NOW.timestamp())),
                          '-out', str(out)], capture_output=True, check=False)
    assert res.returncode == 0, res.stderr
    assert out.read_bytes() == csr_der
