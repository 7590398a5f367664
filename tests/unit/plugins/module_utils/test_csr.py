# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""CSRs (_csr): subject, SANs as GeneralNames, PKCS#10 extensions, request attributes."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtensionOID, NameOID
from pyasn1.codec.der import decoder as der_decoder

from ansible_collections.adcs.enrollment.plugins.module_utils import _csr
from ansible_collections.adcs.enrollment.plugins.module_utils import _x509
from ansible_collections.adcs.enrollment.plugins.module_utils._errors import InvalidInput
from ansible_collections.adcs.enrollment.tests.unit.plugins.support import csr as support_csr
from ansible_collections.adcs.enrollment.tests.unit.plugins.support import wcce_pki


# ---------------------------------------------------------------- subject / SANs
@pytest.mark.parametrize('subject', [
    {'CN': 'host.lab.adcs.test', 'O': 'Lab', 'C': 'DE'},
    'CN=host.lab.adcs.test,O=Lab,C=DE',
    '/C=DE/O=Lab/CN=host.lab.adcs.test',
    [('C', 'DE'), ('O', 'Lab'), ('CN', 'host.lab.adcs.test')],
])
def test_parse_subject_forms(subject):
    n = _csr.parse_subject(subject)
    assert n.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == 'host.lab.adcs.test'
    assert n.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == 'Lab'
    assert n.get_attributes_for_oid(NameOID.COUNTRY_NAME)[0].value == 'DE'


def test_parse_subject_string_order_and_escape():
    n = _csr.parse_subject('CN=a\\,b,OU=x,DC=lab,DC=test')
    assert n.rfc4514_string() == 'CN=a\\,b,OU=x,DC=lab,DC=test'
    assert _csr.parse_subject('/DC=test/DC=lab/OU=x/CN=a\\/b').rfc4514_string() == 'CN=a/b,OU=x,DC=lab,DC=test'
    assert _csr.parse_subject(None) == x509.Name([])
    assert _csr.parse_subject('2.5.4.3=oidcn').get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == 'oidcn'


@pytest.mark.parametrize('bad', ['CN', 'XX=1', {'C': 'Germany'}, {'CN': ''}, 42])
def test_parse_subject_errors(bad):
    with pytest.raises(InvalidInput):
        _csr.parse_subject(bad)


def test_upn_other_name_is_utf8string():
    on = _csr.upn_other_name(u'j\u00fcrgen@lab.adcs.test')
    assert on.type_id.dotted_string == '1.3.6.1.4.1.311.20.2.3'
    decoded, rest = der_decoder.decode(on.value)
    assert rest == b'' and on.value[0] == 0x0C
    assert bytes(decoded).decode('utf-8') == u'j\u00fcrgen@lab.adcs.test'


# ---------------------------------------------------------------- PKCS#10
def test_build_csr_full():
    key = wcce_pki.rsa_key()
    der = _csr.build_csr(key, {'CN': 'host.lab.adcs.test'},
                         ['DNS:host.lab.adcs.test', 'IP:127.0.0.5', 'UPN:u@lab.adcs.test', 'email:u@lab.adcs.test',
                          'URI:spiffe://lab/host'],
                         key_usage=['digitalSignature', 'keyEncipherment'],
                         extended_key_usage=['serverAuth', '1.2.3.4'],
                         template_name='WebServer', template_oid='1.3.6.1.4.1.311.21.8.1.2.3',
                         template_major_version=100, template_minor_version=5, hash_name='sha384')
    csr = x509.load_der_x509_csr(der)
    assert csr.is_signature_valid
    assert isinstance(csr.signature_hash_algorithm, hashes.SHA384)
    san = csr.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
    assert san.get_values_for_type(x509.DNSName) == ['host.lab.adcs.test']
    assert [str(i) for i in san.get_values_for_type(x509.IPAddress)] == ['127.0.0.5']
    other = san.get_values_for_type(x509.OtherName)[0]
    assert other.type_id.dotted_string == _x509.OID_UPN and other.value == b'\x0c\x0fu@lab.adcs.test'
    ku = csr.extensions.get_extension_for_oid(ExtensionOID.KEY_USAGE)
    assert ku.critical and ku.value.digital_signature and ku.value.key_encipherment and not ku.value.crl_sign
    eku = csr.extensions.get_extension_for_oid(ExtensionOID.EXTENDED_KEY_USAGE).value
    assert [o.dotted_string for o in eku] == ['1.3.6.1.5.5.7.3.1', '1.2.3.4']
    exts = dict((ext.oid.dotted_string, ext.value) for ext in csr.extensions)
    name_ext = exts[_x509.OID_ENROLL_CERTTYPE]
    raw = name_ext.value
    assert raw[0] == 0x1E and raw[2:].decode('utf-16-be') == 'WebServer'
    tmpl = exts[_x509.OID_CERTIFICATE_TEMPLATE]
    assert tmpl.template_id.dotted_string == '1.3.6.1.4.1.311.21.8.1.2.3'
    assert (tmpl.major_version, tmpl.minor_version) == (100, 5)


def test_build_csr_ec_minimal():
    key = wcce_pki.ec_key()
    csr = x509.load_der_x509_csr(_csr.build_csr(key))
    assert csr.is_signature_valid and len(csr.subject) == 0
    assert len(csr.extensions) == 0


def test_unknown_usage_names():
    with pytest.raises(InvalidInput):
        _csr.key_usage_extension(['signEverything'])
    with pytest.raises(InvalidInput):
        _csr.eku_oid('superAuth')
    with pytest.raises(InvalidInput):
        _csr.template_oid_extension_value('not-an-oid')


def test_template_oid_extension_der_matches_pyasn1():
    raw = _csr.template_oid_extension_value('1.3.6.1.4.1.311.21.8.99999.128', 100, 300)
    val, rest = der_decoder.decode(raw)
    assert rest == b''
    assert str(val[0]) == '1.3.6.1.4.1.311.21.8.99999.128'
    assert int(val[1]) == 100 and int(val[2]) == 300


# ---------------------------------------------------------------- attributes
def test_request_attributes():
    text = _csr.build_request_attributes('WebServer', ['DNS:b.example', 'UPN:u@x.example', 'DNS:a.example'],
                                         [('ApplicationPolicies', '1.3.6.1.5.5.7.3.1')])
    assert text == ('CertificateTemplate:WebServer\nSAN:dns=a.example&dns=b.example&upn=u@x.example\n'
                    'ApplicationPolicies:1.3.6.1.5.5.7.3.1')
    assert support_csr.parse_request_attributes(text)[0] == ('CertificateTemplate', 'WebServer')
    assert _csr.build_request_attributes() == ''
    with pytest.raises(InvalidInput):
        _csr.build_request_attributes('Web\nServer')
    with pytest.raises(InvalidInput):
        _csr.build_request_attributes(extra={'a:b': 'c'})
