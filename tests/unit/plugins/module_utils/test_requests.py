# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import shutil
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtensionOID, NameOID
from pyasn1.codec.der import decoder as der_decoder
from pyasn1.type import univ

from ansible_collections.adcs.enrollment.plugins.module_utils import _requests as r
from ansible_collections.adcs.enrollment.plugins.module_utils._errors import InvalidInput

import wcce_pki


# ---------------------------------------------------------------- keys
def test_generate_rsa_and_ec():
    key = r.generate_private_key('rsa', 2048)
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 2048
    for curve, name in (('P-256', 'secp256r1'), ('secp384r1', 'secp384r1'), ('p-521', 'secp521r1')):
        key = r.generate_private_key('ecdsa', curve=curve)
        assert key.curve.name == name


@pytest.mark.parametrize('size', [1024, 2047, 8200, 'abc'])
def test_rsa_size_rejected(size):
    with pytest.raises(InvalidInput):
        r.generate_private_key('rsa', size)


def test_bad_key_type_and_curve():
    with pytest.raises(InvalidInput):
        r.generate_private_key('dsa')
    with pytest.raises(InvalidInput):
        r.generate_private_key('ecdsa', curve='secp192r1')


def test_validate_private_key():
    rkey = wcce_pki.rsa_key()
    ekey = wcce_pki.ec_key()
    assert r.validate_private_key(rkey, 'rsa', 2048) is None
    assert 'wanted' in r.validate_private_key(rkey, 'rsa', 4096)
    assert 'ecdsa is wanted' in r.validate_private_key(rkey, 'ecdsa')
    assert 'template minimum' in r.validate_private_key(rkey, min_size=3072)
    assert r.validate_private_key(ekey, 'ecdsa', curve='P-256') is None
    assert 'secp384r1' in r.validate_private_key(ekey, 'ecdsa', curve='secp384r1') or \
        'P-384' in r.validate_private_key(ekey, 'ecdsa', curve='P-384')


def test_load_and_serialize_key_roundtrip():
    key = wcce_pki.ec_key()
    pem = r.private_key_bytes(key, 'pem', passphrase='s3cret')
    assert b'ENCRYPTED' in pem
    loaded = r.load_private_key(pem, 's3cret')
    assert r.public_key_der(loaded.public_key()) == r.public_key_der(key.public_key())
    with pytest.raises(InvalidInput):
        r.load_private_key(pem, 'wrong')
    der = r.private_key_bytes(key, 'der')
    assert r.public_key_der(r.load_private_key(der).public_key()) == r.public_key_der(key.public_key())


# ---------------------------------------------------------------- subject / SANs
@pytest.mark.parametrize('subject', [
    {'CN': 'host.lab.adcs.test', 'O': 'Lab', 'C': 'DE'},
    'CN=host.lab.adcs.test,O=Lab,C=DE',
    '/C=DE/O=Lab/CN=host.lab.adcs.test',
    [('C', 'DE'), ('O', 'Lab'), ('CN', 'host.lab.adcs.test')],
])
def test_parse_subject_forms(subject):
    n = r.parse_subject(subject)
    assert n.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == 'host.lab.adcs.test'
    assert n.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == 'Lab'
    assert n.get_attributes_for_oid(NameOID.COUNTRY_NAME)[0].value == 'DE'


def test_parse_subject_string_order_and_escape():
    n = r.parse_subject('CN=a\\,b,OU=x,DC=lab,DC=test')
    assert n.rfc4514_string() == 'CN=a\\,b,OU=x,DC=lab,DC=test'
    assert r.parse_subject('/DC=test/DC=lab/OU=x/CN=a\\/b').rfc4514_string() == 'CN=a/b,OU=x,DC=lab,DC=test'
    assert r.parse_subject(None) == x509.Name([])
    assert r.parse_subject('2.5.4.3=oidcn').get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == 'oidcn'


@pytest.mark.parametrize('bad', ['CN', 'XX=1', {'C': 'Germany'}, {'CN': ''}, 42])
def test_parse_subject_errors(bad):
    with pytest.raises(InvalidInput):
        r.parse_subject(bad)


def test_normalize_sans():
    got = r.normalize_sans(['DNS:Host.Lab.ADCS.test.', 'IP:10.0.0.01'.replace('01', '1'), 'UPN:User@LAB.ADCS.TEST',
                            'email:a@B.example', 'URI:https://x.example/p', 'ip:::1', ('dns', 'host.lab.adcs.test')])
    assert got == sorted([('dns', 'host.lab.adcs.test'), ('ip', '10.0.0.1'), ('upn', 'User@LAB.ADCS.TEST'),
                          ('email', 'a@b.example'), ('uri', 'https://x.example/p'), ('ip', '::1')])
    assert r.normalize_sans({'dns': ['b.example', 'a.example']}) == [('dns', 'a.example'), ('dns', 'b.example')]
    assert r.normalize_sans(None) == []


@pytest.mark.parametrize('bad', [['host'], ['XYZ:1'], ['DNS:bad host'], ['IP:300.1.1.1'], ['UPN:nouser'],
                                 ['DNS:a&b'], ['URI:noscheme'], ['email:'], [object()]])
def test_normalize_sans_errors(bad):
    with pytest.raises(InvalidInput):
        r.normalize_sans(bad)


def test_upn_other_name_is_utf8string():
    on = r.upn_other_name(u'j\u00fcrgen@lab.adcs.test')
    assert on.type_id.dotted_string == '1.3.6.1.4.1.311.20.2.3'
    decoded, rest = der_decoder.decode(on.value)
    assert rest == b'' and on.value[0] == 0x0C
    assert bytes(decoded).decode('utf-8') == u'j\u00fcrgen@lab.adcs.test'


# ---------------------------------------------------------------- PKCS#10
def test_build_csr_full():
    key = wcce_pki.rsa_key()
    der = r.build_csr(key, {'CN': 'host.lab.adcs.test'},
                      ['DNS:host.lab.adcs.test', 'IP:127.0.0.5', 'UPN:u@lab.adcs.test', 'email:u@lab.adcs.test',
                       'URI:spiffe://lab/host'],
                      key_usage=['digitalSignature', 'keyEncipherment'], extended_key_usage=['serverAuth', '1.2.3.4'],
                      template_name='WebServer', template_oid='1.3.6.1.4.1.311.21.8.1.2.3',
                      template_major_version=100, template_minor_version=5, hash_name='sha384')
    csr = x509.load_der_x509_csr(der)
    assert csr.is_signature_valid
    assert isinstance(csr.signature_hash_algorithm, hashes.SHA384)
    san = csr.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
    assert san.get_values_for_type(x509.DNSName) == ['host.lab.adcs.test']
    assert [str(i) for i in san.get_values_for_type(x509.IPAddress)] == ['127.0.0.5']
    other = san.get_values_for_type(x509.OtherName)[0]
    assert other.type_id.dotted_string == r.OID_UPN and other.value == b'\x0c\x0fu@lab.adcs.test'
    ku = csr.extensions.get_extension_for_oid(ExtensionOID.KEY_USAGE)
    assert ku.critical and ku.value.digital_signature and ku.value.key_encipherment and not ku.value.crl_sign
    eku = csr.extensions.get_extension_for_oid(ExtensionOID.EXTENDED_KEY_USAGE).value
    assert [o.dotted_string for o in eku] == ['1.3.6.1.5.5.7.3.1', '1.2.3.4']
    exts = dict((ext.oid.dotted_string, ext.value) for ext in csr.extensions)
    name_ext = exts[r.OID_ENROLL_CERTTYPE]
    raw = name_ext.value
    assert raw[0] == 0x1E and raw[2:].decode('utf-16-be') == 'WebServer'
    tmpl = exts[r.OID_CERTIFICATE_TEMPLATE]
    assert tmpl.template_id.dotted_string == '1.3.6.1.4.1.311.21.8.1.2.3'
    assert (tmpl.major_version, tmpl.minor_version) == (100, 5)


def test_build_csr_ec_minimal():
    key = wcce_pki.ec_key()
    csr = x509.load_der_x509_csr(r.build_csr(key))
    assert csr.is_signature_valid and len(csr.subject) == 0
    assert len(csr.extensions) == 0


def test_unknown_usage_names():
    with pytest.raises(InvalidInput):
        r.key_usage_extension(['signEverything'])
    with pytest.raises(InvalidInput):
        r.eku_oid('superAuth')
    with pytest.raises(InvalidInput):
        r.template_oid_extension_value('not-an-oid')


def test_template_oid_extension_der_matches_pyasn1():
    raw = r.template_oid_extension_value('1.3.6.1.4.1.311.21.8.99999.128', 100, 300)
    val, rest = der_decoder.decode(raw)
    assert rest == b''
    assert str(val[0]) == '1.3.6.1.4.1.311.21.8.99999.128'
    assert int(val[1]) == 100 and int(val[2]) == 300


# ---------------------------------------------------------------- attributes
def test_request_attributes():
    text = r.build_request_attributes('WebServer', ['DNS:b.example', 'UPN:u@x.example', 'DNS:a.example'],
                                      [('ApplicationPolicies', '1.3.6.1.5.5.7.3.1')])
    assert text == ('CertificateTemplate:WebServer\nSAN:dns=a.example&dns=b.example&upn=u@x.example\n'
                    'ApplicationPolicies:1.3.6.1.5.5.7.3.1')
    assert r.parse_request_attributes(text)[0] == ('CertificateTemplate', 'WebServer')
    assert r.build_request_attributes() == ''
    with pytest.raises(InvalidInput):
        r.build_request_attributes('Web\nServer')
    with pytest.raises(InvalidInput):
        r.build_request_attributes(extra={'a:b': 'c'})


# ---------------------------------------------------------------- renewal
def _old_cert(key):
    p = wcce_pki.pki()
    return p.issue('host.lab.adcs.test', key, serial=0x77, template_name='WebServer')


@pytest.mark.parametrize('old_kind', ['rsa', 'ec'])
def test_renewal_request_verifies_with_old_key(old_kind):
    old_key = wcce_pki.rsa_key('old') if old_kind == 'rsa' else wcce_pki.ec_key('old')
    old = _old_cert(old_key)
    new_key = wcce_pki.rsa_key('new')
    csr_der = r.build_csr(new_key, 'CN=host.lab.adcs.test', ['DNS:host.lab.adcs.test'], renewal_certificate=old)
    csr = x509.load_der_x509_csr(csr_der)
    assert csr.is_signature_valid  # still signed by the NEW key after adding the attribute
    old_der = old.public_bytes(serialization.Encoding.DER)
    assert r.csr_attributes(csr_der)[r.OID_RENEWAL_CERTIFICATE] == [old_der]

    cms = r.build_renewal_request(csr_der, old, old_key)
    parts = r.parse_renewal_request(cms)
    assert parts['econtent_type'] == r.OID_PKCS7_DATA
    assert parts['csr_der'] == csr_der
    assert parts['certificates'] == [old_der]
    assert parts['signer_serial'] == 0x77
    assert parts['signer_issuer_der'] == old.issuer.public_bytes()
    attrs = parts['signed_attrs']
    assert attrs[r.OID_RENEWAL_CERTIFICATE] == [old_der]
    assert attrs[r.OID_CONTENT_TYPE] == [bytes(univ_oid_der(r.OID_PKCS7_DATA))]
    digest = hashes.Hash(hashes.SHA256())
    digest.update(csr_der)
    md, _rest = der_decoder.decode(attrs[r.OID_MESSAGE_DIGEST][0])
    assert bytes(md) == digest.finalize()
    pub = old_key.public_key()
    if old_kind == 'rsa':
        pub.verify(parts['signature'], parts['to_be_signed'], padding.PKCS1v15(), hashes.SHA256())
        assert parts['signature_oid'] == r.OID_RSA_ENCRYPTION
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
    csr_der = r.build_csr(wcce_pki.rsa_key('new'), 'CN=x', renewal_certificate=old)
    with pytest.raises(InvalidInput):
        r.build_renewal_request(csr_der, old, wcce_pki.rsa_key('new'))


@pytest.mark.skipif(not shutil.which('openssl'), reason='openssl CLI not installed')
def test_renewal_cms_accepted_by_openssl(tmp_path):
    old_key = wcce_pki.rsa_key('old')
    p = wcce_pki.pki()
    old = _old_cert(old_key)
    csr_der = r.build_csr(wcce_pki.ec_key('new'), 'CN=host', renewal_certificate=old)
    cms = tmp_path / 'renew.p7b'
    cms.write_bytes(r.build_renewal_request(csr_der, old, old_key))
    ca_file = tmp_path / 'ca.pem'
    ca_file.write_bytes(b''.join(c.public_bytes(serialization.Encoding.PEM) for c in (p.root, p.ca)))
    out = tmp_path / 'content.der'
    res = subprocess.run(['openssl', 'cms', '-verify', '-inform', 'DER', '-in', str(cms), '-CAfile', str(ca_file),
                          '-binary', '-purpose', 'any', '-attime', str(int(wcce_pki.NOW.timestamp())),
                          '-out', str(out)], capture_output=True, check=False)
    assert res.returncode == 0, res.stderr
    assert out.read_bytes() == csr_der
