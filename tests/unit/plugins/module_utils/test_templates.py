# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import struct

import pytest

from ansible_collections.adcs.enrollment.plugins.module_utils import _templates as t
from ansible_collections.adcs.enrollment.tests.unit.plugins.support.templates import encode_period


# ------------------------------------------------------------------------------------------------------------
# flag bits: every bit of every table (values from MS-CRTD 2.4, 2.26, 2.27, 2.28)
# ------------------------------------------------------------------------------------------------------------

EXPECTED_GENERAL = {
    0x2: 'CT_FLAG_ADD_EMAIL', 0x8: 'CT_FLAG_PUBLISH_TO_DS', 0x10: 'CT_FLAG_EXPORTABLE_KEY', 0x20: 'CT_FLAG_AUTO_ENROLLMENT',
    0x40: 'CT_FLAG_MACHINE_TYPE', 0x80: 'CT_FLAG_IS_CA', 0x200: 'CT_FLAG_ADD_TEMPLATE_NAME', 0x800: 'CT_FLAG_IS_CROSS_CA',
    0x1000: 'CT_FLAG_DONOTPERSISTINDB', 0x10000: 'CT_FLAG_IS_DEFAULT', 0x20000: 'CT_FLAG_IS_MODIFIED',
}
EXPECTED_ENROLLMENT = {
    0x1: 'CT_FLAG_INCLUDE_SYMMETRIC_ALGORITHMS', 0x2: 'CT_FLAG_PEND_ALL_REQUESTS', 0x4: 'CT_FLAG_PUBLISH_TO_KRA_CONTAINER',
    0x8: 'CT_FLAG_PUBLISH_TO_DS', 0x10: 'CT_FLAG_AUTO_ENROLLMENT_CHECK_USER_DS_CERTIFICATE', 0x20: 'CT_FLAG_AUTO_ENROLLMENT',
    0x40: 'CT_FLAG_PREVIOUS_APPROVAL_VALIDATE_REENROLLMENT', 0x100: 'CT_FLAG_USER_INTERACTION_REQUIRED',
    0x400: 'CT_FLAG_REMOVE_INVALID_CERTIFICATE_FROM_PERSONAL_STORE', 0x800: 'CT_FLAG_ALLOW_ENROLL_ON_BEHALF_OF',
    0x1000: 'CT_FLAG_ADD_OCSP_NOCHECK', 0x2000: 'CT_FLAG_ENABLE_KEY_REUSE_ON_NT_TOKEN_KEYSET_STORAGE_FULL',
    0x4000: 'CT_FLAG_NOREVOCATIONINFOINISSUEDCERTS', 0x8000: 'CT_FLAG_INCLUDE_BASIC_CONSTRAINTS_FOR_EE_CERTS',
    0x10000: 'CT_FLAG_ALLOW_PREVIOUS_APPROVAL_KEYBASEDRENEWAL_VALIDATE_REENROLLMENT',
    0x20000: 'CT_FLAG_ISSUANCE_POLICIES_FROM_REQUEST', 0x40000: 'CT_FLAG_SKIP_AUTO_RENEWAL',
    0x80000: 'CT_FLAG_NO_SECURITY_EXTENSION',
}
EXPECTED_PRIVATE_KEY = {
    0x1: 'CT_FLAG_REQUIRE_PRIVATE_KEY_ARCHIVAL', 0x10: 'CT_FLAG_EXPORTABLE_KEY', 0x20: 'CT_FLAG_STRONG_KEY_PROTECTION_REQUIRED',
    0x40: 'CT_FLAG_REQUIRE_ALTERNATE_SIGNATURE_ALGORITHM', 0x80: 'CT_FLAG_REQUIRE_SAME_KEY_RENEWAL',
    0x100: 'CT_FLAG_USE_LEGACY_PROVIDER', 0x200: 'CT_FLAG_EK_TRUST_ON_USE', 0x400: 'CT_FLAG_EK_VALIDATE_CERT',
    0x800: 'CT_FLAG_EK_VALIDATE_KEY', 0x1000: 'CT_FLAG_ATTEST_PREFERRED', 0x2000: 'CT_FLAG_ATTEST_REQUIRED',
    0x4000: 'CT_FLAG_ATTESTATION_WITHOUT_POLICY', 0x100000: 'CT_FLAG_HELLO_KSP_KEY', 0x200000: 'CT_FLAG_HELLO_LOGON_KEY',
}
EXPECTED_NAME = {
    0x1: 'CT_FLAG_ENROLLEE_SUPPLIES_SUBJECT', 0x8: 'CT_FLAG_OLD_CERT_SUPPLIES_SUBJECT_AND_ALT_NAME',
    0x10000: 'CT_FLAG_ENROLLEE_SUPPLIES_SUBJECT_ALT_NAME', 0x400000: 'CT_FLAG_SUBJECT_ALT_REQUIRE_DOMAIN_DNS',
    0x800000: 'CT_FLAG_SUBJECT_ALT_REQUIRE_SPN', 0x1000000: 'CT_FLAG_SUBJECT_ALT_REQUIRE_DIRECTORY_GUID',
    0x2000000: 'CT_FLAG_SUBJECT_ALT_REQUIRE_UPN', 0x4000000: 'CT_FLAG_SUBJECT_ALT_REQUIRE_EMAIL',
    0x8000000: 'CT_FLAG_SUBJECT_ALT_REQUIRE_DNS', 0x10000000: 'CT_FLAG_SUBJECT_REQUIRE_DNS_AS_CN',
    0x20000000: 'CT_FLAG_SUBJECT_REQUIRE_EMAIL', 0x40000000: 'CT_FLAG_SUBJECT_REQUIRE_COMMON_NAME',
    0x80000000: 'CT_FLAG_SUBJECT_REQUIRE_DIRECTORY_PATH',
}

TABLES = [
    (t.GENERAL_FLAGS, EXPECTED_GENERAL),
    (t.ENROLLMENT_FLAGS, EXPECTED_ENROLLMENT),
    (t.PRIVATE_KEY_FLAGS, EXPECTED_PRIVATE_KEY),
    (t.NAME_FLAGS, EXPECTED_NAME),
]


@pytest.mark.parametrize('table,expected', TABLES)
def test_tables_match_the_spec(table, expected):
    assert dict(table) == expected


@pytest.mark.parametrize('table,expected,bit', [(tb, ex, bit) for tb, ex in TABLES for bit in sorted(ex)])
def test_every_flag_bit_decodes_alone(table, expected, bit):
    assert t.decode_flags(bit, table) == [expected[bit]]


@pytest.mark.parametrize('table,expected', TABLES)
def test_all_bits_together_in_bit_order(table, expected):
    value = 0
    for bit in expected:
        value |= bit
    assert t.decode_flags(value, table) == [expected[b] for b in sorted(expected)]


def test_unknown_bits_are_reported_in_hex():
    assert t.decode_flags(0x40 | 0x4 | 0x100000, t.GENERAL_FLAGS) == ['CT_FLAG_MACHINE_TYPE', '0x00000004', '0x00100000']


def test_signed_ldap_integers_are_unsigned_before_decoding():
    # msPKI-Certificate-Name-Flag of the Windows "User" template: 0xA6000000 comes back as a negative INTEGER
    assert t.to_uint32(-1509949440) == 0xA6000000
    assert t.decode_flags(b'-1509949440', t.NAME_FLAGS) == [
        'CT_FLAG_SUBJECT_ALT_REQUIRE_UPN', 'CT_FLAG_SUBJECT_ALT_REQUIRE_EMAIL',
        'CT_FLAG_SUBJECT_REQUIRE_EMAIL', 'CT_FLAG_SUBJECT_REQUIRE_DIRECTORY_PATH']
    assert t.decode_flags(None, t.NAME_FLAGS) == []


def test_private_key_flag_fields():
    # Windows Server 2016 v4 template: client version 6, server version 5, attestation required + exportable
    value = (6 << 24) | (5 << 16) | 0x2000 | 0x10 | 0x4000
    decoded = t.decode_private_key_flag(value)
    assert decoded['client_version'] == 6
    assert decoded['server_version'] == 5
    assert decoded['attestation'] == 'required'
    assert decoded['flags'] == ['CT_FLAG_EXPORTABLE_KEY', 'CT_FLAG_ATTEST_REQUIRED', 'CT_FLAG_ATTESTATION_WITHOUT_POLICY']
    assert t.decode_private_key_flag(0x1000)['attestation'] == 'preferred'
    assert t.decode_private_key_flag(0)['attestation'] == 'none'
    # version fields never show up as unknown bits
    assert t.decode_private_key_flag(0x0F0F0000)['flags'] == []


# ------------------------------------------------------------------------------------------------------------
# periods
# ------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('hexbytes,days,text', [
    ('0080720e5dc2fdff', 730, '2 years'),    # WebServer validity as stored by Windows
    ('0080a60affdeffff', 42, '6 weeks'),     # default renewal period
    ('004039872ee1feff', 365, '1 year'),
    ('00c01bd77ffaffff', 7, '1 week'),
    ('00809b076de8ffff', 30, '1 month'),
    ('000064a7b3b6e0ff', None, None),
])
def test_windows_period_bytes(hexbytes, days, text):
    raw = bytes.fromhex(hexbytes)
    seconds = -struct.unpack('<q', raw)[0] // 10 ** 7
    decoded = t.decode_period(raw)
    assert decoded['seconds'] == seconds
    if days is not None:
        assert decoded['days'] == days
        assert decoded['text'] == text


@pytest.mark.parametrize('days,hours,text', [
    (365, 0, '1 year'), (730, 0, '2 years'), (60, 0, '2 months'), (14, 0, '2 weeks'), (1, 0, '1 day'),
    (3, 0, '3 days'), (0, 8, '8 hours'), (0, 1, '1 hour'), (0, 0, '0 seconds'), (400, 0, '400 days'),
])
def test_period_round_trip_and_text(days, hours, text):
    raw = encode_period(days=days, hours=hours)
    assert len(raw) == 8
    assert struct.unpack('<q', raw)[0] <= 0, 'Windows stores periods as negative intervals'
    decoded = t.decode_period(raw)
    assert decoded['seconds'] == days * 86400 + hours * 3600
    assert decoded['text'] == text
    if hours:
        assert decoded['days'] == round(hours / 24.0, 4)
    else:
        assert decoded['days'] == days


def test_period_bytes_are_little_endian_100ns_units():
    assert encode_period(days=1) == struct.pack('<q', -864000000000)


def test_period_wrong_length_and_absent():
    with pytest.raises(t.TemplateDecodeError):
        t.decode_period(b'\x00' * 7)
    assert t.decode_period(None) is None
    assert t.period_text(90) == '90 seconds'
    assert t.period_text(120) == '2 minutes'


# ------------------------------------------------------------------------------------------------------------
# other attributes
# ------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('raw,names', [
    (b'\xa0\x00', ['digital_signature', 'key_encipherment']),          # WebServer
    (b'\x86\x00', ['digital_signature', 'key_cert_sign', 'crl_sign']),   # SubCA
    (b'\x20', ['key_encipherment']),                                       # EFS, one byte
    (b'\x80\x00', ['digital_signature']),
    (b'\x40', ['non_repudiation']),
    (b'\x10', ['data_encipherment']),
    (b'\x08', ['key_agreement']),
    (b'\x01\x80', ['encipher_only', 'decipher_only']),
    (b'\x00\x00', []),
])
def test_key_usage(raw, names):
    assert t.decode_key_usage(raw) == names


def test_key_usage_absent():
    assert t.decode_key_usage(None) is None


def test_csps_sorted_by_priority():
    values = [b'2,Microsoft DH SChannel Cryptographic Provider', b'1,Microsoft RSA SChannel Cryptographic Provider', b'odd']
    assert t.decode_csps(values) == [
        {'priority': 1, 'name': 'Microsoft RSA SChannel Cryptographic Provider'},
        {'priority': 2, 'name': 'Microsoft DH SChannel Cryptographic Provider'},
        {'priority': None, 'name': 'odd'},
    ]


def test_ra_application_policies_v2_is_oid_list():
    oids, props = t.decode_ra_application_policies([b'1.3.6.1.4.1.311.20.2.1'], 2, 0)
    assert oids == ['1.3.6.1.4.1.311.20.2.1']
    assert props == {}


def test_ra_application_policies_v4_triplets():
    value = ('msPKI-Asymmetric-Algorithm`PZPWSTR`RSA`msPKI-Hash-Algorithm`PZPWSTR`SHA256`msPKI-Key-Usage`DWORD`16777215`'
             'msPKI-Symmetric-Algorithm`PZPWSTR`3DES`msPKI-Symmetric-Key-Length`DWORD`168`'
             'msPKI-RA-Application-Policies`PZPWSTR`1.3.6.1.4.1.311.20.2.1,1.3.6.1.5.5.7.3.2`').encode()
    oids, props = t.decode_ra_application_policies([value], 4, 0)
    assert oids == ['1.3.6.1.4.1.311.20.2.1', '1.3.6.1.5.5.7.3.2']
    assert props['asymmetric_algorithm'] == 'RSA'
    assert props['hash_algorithm'] == 'SHA256'
    assert props['key_usage_property'] == 16777215
    assert props['symmetric_key_length'] == 168


def test_ra_application_policies_v4_legacy_provider_is_oid_list():
    oids, props = t.decode_ra_application_policies([b'1.3.6.1.4.1.311.20.2.1'], 4, 0x100)
    assert oids == ['1.3.6.1.4.1.311.20.2.1'] and props == {}


def test_ra_application_policies_bad_triplets():
    with pytest.raises(t.TemplateDecodeError):
        t.decode_ra_application_policies([b'msPKI-Hash-Algorithm`PZPWSTR`'], 3, 0)
    with pytest.raises(t.TemplateDecodeError):
        t.decode_ra_application_policies([b'msPKI-Key-Usage`DWORD`abc`'], 3, 0)


def test_oid_names():
    assert t.oid_name('1.3.6.1.5.5.7.3.1') == 'Server Authentication'
    assert t.oid_name('1.2.3.4') == '1.2.3.4'
    assert t.describe_oids([b'1.2.3.4'], {'1.2.3.4': 'Custom policy'}) == [{'oid': '1.2.3.4', 'name': 'Custom policy'}]


# ------------------------------------------------------------------------------------------------------------
# whole templates
# ------------------------------------------------------------------------------------------------------------

def webserver_v1():
    return {
        'cn': [b'WebServer'], 'displayName': [b'Web Server'],
        'distinguishedName': [b'CN=WebServer,CN=Certificate Templates,CN=Public Key Services,CN=Services,CN=Configuration,DC=lab'],
        'objectGUID': [bytes(range(16))],
        'flags': [b'66113'], 'revision': [b'4'], 'pKIDefaultKeySpec': [b'1'], 'pKIMaxIssuingDepth': [b'0'],
        'pKICriticalExtensions': [b'2.5.29.15'],
        'pKIDefaultCSPs': [b'2,Microsoft DH SChannel Cryptographic Provider', b'1,Microsoft RSA SChannel Cryptographic Provider'],
        'pKIExpirationPeriod': [bytes.fromhex('0080720e5dc2fdff')],
        'pKIOverlapPeriod': [bytes.fromhex('0080a60affdeffff')],
        'pKIExtendedKeyUsage': [b'1.3.6.1.5.5.7.3.1'], 'pKIKeyUsage': [b'\xa0\x00'],
        'msPKI-Template-Schema-Version': [b'1'], 'msPKI-Template-Minor-Revision': [b'1'],
        'msPKI-Cert-Template-OID': [b'1.3.6.1.4.1.311.21.8.1.2.3.1.16'],
        'msPKI-Enrollment-Flag': [b'0'], 'msPKI-Private-Key-Flag': [b'0'], 'msPKI-Certificate-Name-Flag': [b'1'],
        'msPKI-Minimal-Key-Size': [b'2048'], 'msPKI-RA-Signature': [b'0'],
    }


def test_decode_webserver():
    d = t.decode_template(webserver_v1())
    assert d['name'] == 'WebServer'
    assert d['display_name'] == 'Web Server'
    assert d['object_guid'] == '03020100-0504-0706-0809-0a0b0c0d0e0f'
    assert d['schema_version'] == 1
    assert d['oid'] == '1.3.6.1.4.1.311.21.8.1.2.3.1.16'
    assert d['revision'] == 4 and d['minor_revision'] == 1
    assert d['validity_period'] == {'days': 730, 'seconds': 63072000, 'text': '2 years'}
    assert d['renewal_period']['text'] == '6 weeks'
    # 66113 = 0x10241 = IS_DEFAULT | ADD_TEMPLATE_NAME | MACHINE_TYPE | 0x1 (bit 0 is not defined by MS-CRTD)
    assert d['flags']['value'] == 66113
    assert d['flags']['names'] == ['CT_FLAG_MACHINE_TYPE', 'CT_FLAG_ADD_TEMPLATE_NAME', 'CT_FLAG_IS_DEFAULT', '0x00000001']
    assert d['certificate_name_flag']['names'] == ['CT_FLAG_ENROLLEE_SUPPLIES_SUBJECT']
    assert d['key_usage'] == ['digital_signature', 'key_encipherment']
    assert d['extended_key_usage'] == [{'oid': '1.3.6.1.5.5.7.3.1', 'name': 'Server Authentication'}]
    assert d['critical_extensions'] == [{'oid': '2.5.29.15', 'name': 'Key Usage'}]
    assert d['csps'][0]['name'] == 'Microsoft RSA SChannel Cryptographic Provider'
    assert d['key_spec'] == 'AT_KEYEXCHANGE'
    assert d['minimum_key_size'] == 2048
    assert d['ra_signatures'] == 0
    assert d['superseded_templates'] == []
    r = d['requirements']
    assert r['enrollee_supplies_subject'] is True
    assert r['subject_from_ad'] == [] and r['subject_alt_names_from_ad'] == []
    assert r['manager_approval'] is False and r['key_archival'] is False and r['smime'] is False
    assert r['request_attribute'] == 'CertificateTemplate:WebServer'
    assert r['minimum_key_size'] == 2048


def test_decode_machine_style_template_requirements():
    attrs = {
        'cn': [b'Machine'], 'msPKI-Template-Schema-Version': [b'2'], 'flags': [str(0x40).encode()],
        'msPKI-Certificate-Name-Flag': [str(0x08000000 | 0x10000000 - 2 ** 32 + 2 ** 32).encode()],
        'msPKI-Enrollment-Flag': [str(0x2 | 0x1 | 0x20).encode()], 'msPKI-Private-Key-Flag': [str(0x1 | 0x10 | 0x80).encode()],
        'msPKI-RA-Signature': [b'1'], 'msPKI-RA-Policies': [b'1.2.3.4'], 'msPKI-RA-Application-Policies': [b'1.3.6.1.4.1.311.20.2.1'],
        'msPKI-Supersede-Templates': [b'OldMachine', b'Older'], 'msPKI-Certificate-Policy': [b'1.2.3.4'],
        'msPKI-Certificate-Application-Policy': [b'1.3.6.1.5.5.7.3.2', b'1.3.6.1.5.5.7.3.1'],
    }
    d = t.decode_template(attrs, {'1.2.3.4': 'Lab policy'})
    r = d['requirements']
    assert r['enrollee_supplies_subject'] is False
    assert r['subject_from_ad'] == ['dns_as_cn']
    assert r['subject_alt_names_from_ad'] == ['dns']
    assert r['manager_approval'] is True
    assert r['smime'] is True
    assert r['key_archival'] is True and r['exportable_key'] is True and r['same_key_renewal'] is True
    assert r['machine'] is True
    assert r['ra_signatures'] == 1 and r['ra_issuance_policies'] == ['1.2.3.4']
    assert r['ra_application_policies'] == ['1.3.6.1.4.1.311.20.2.1']
    assert d['issuance_policies'] == [{'oid': '1.2.3.4', 'name': 'Lab policy'}]
    assert [p['name'] for p in d['application_policies']] == ['Client Authentication', 'Server Authentication']
    assert d['superseded_templates'] == ['OldMachine', 'Older']
    assert d['enrollment_flag']['names'] == ['CT_FLAG_INCLUDE_SYMMETRIC_ALGORITHMS', 'CT_FLAG_PEND_ALL_REQUESTS', 'CT_FLAG_AUTO_ENROLLMENT']
    assert any('pending' in n for n in r['notes'])
    assert any('archived' in n for n in r['notes'])


def test_user_template_subject_from_directory():
    d = t.decode_template({'cn': [b'User'], 'msPKI-Certificate-Name-Flag': [b'-1509949440']})
    assert d['requirements']['subject_from_ad'] == ['directory_path', 'email']
    assert d['requirements']['subject_alt_names_from_ad'] == ['upn', 'email']
    assert d['schema_version'] == 1  # absent attribute = version 1 template


def test_template_matches():
    d = t.decode_template(webserver_v1())
    assert t.template_matches(d, 'webserver')
    assert t.template_matches(d, 'Web Server')
    assert t.template_matches(d, '1.3.6.1.4.1.311.21.8.1.2.3.1.16')
    assert not t.template_matches(d, 'Web')


def test_raw_attributes_are_json_safe():
    raw = t.raw_attributes(webserver_v1())
    assert raw['cn'] == ['WebServer']
    assert raw['pKIExpirationPeriod'] == [{'base64': 'AIByDl3C/f8='}]
    assert raw['pKIKeyUsage'] == [{'base64': 'oAA='}]


# ------------------------------------------------------------------------------------------------------------
# CNG (schema v3/v4) templates: the key rule
# ------------------------------------------------------------------------------------------------------------

def cng_template(schema=3, private_key_flag=0x02020000, algorithm='ECDSA_P256', hash_name='SHA256', key_usage=2,
                 minimum=256, name='WebServerECC'):
    attrs = webserver_v1()
    value = ('msPKI-Asymmetric-Algorithm`PZPWSTR`%s`msPKI-Hash-Algorithm`PZPWSTR`%s`msPKI-Key-Usage`DWORD`%d`'
             'msPKI-Symmetric-Algorithm`PZPWSTR`3DES`msPKI-Symmetric-Key-Length`DWORD`168`'
             % (algorithm, hash_name, key_usage))
    attrs.update({'cn': [name.encode()], 'msPKI-Template-Schema-Version': [str(schema).encode()],
                  'msPKI-Private-Key-Flag': [str(private_key_flag).encode()],
                  'msPKI-Minimal-Key-Size': [str(minimum).encode()],
                  'pKIDefaultCSPs': [b'1,Microsoft Software Key Storage Provider'],
                  'msPKI-RA-Application-Policies': [value.encode()]})
    return attrs


def test_key_rule_of_a_v3_ecdsa_template():
    d = t.decode_template(cng_template())
    assert d['requirements']['key'] == {
        'template': 'WebServerECC', 'provider': 'cng', 'algorithm': 'ECDSA_P256', 'key_type': 'ecdsa',
        'curve': 'secp256r1', 'minimum_size': 256, 'hash_algorithm': 'sha256', 'key_usage': ['signing'],
        'providers': ['Microsoft Software Key Storage Provider']}
    assert d['requirements']['asymmetric_algorithm'] == 'ECDSA_P256'
    notes = d['requirements']['notes']
    assert 'the key must be an ECDSA P-256 key (msPKI-Asymmetric-Algorithm ECDSA_P256)' in notes
    assert 'the request is signed with SHA256 (msPKI-Hash-Algorithm)' in notes


def test_key_rule_of_v4_and_rsa_templates():
    key = t.decode_template(cng_template(4, 0x04040000, 'ECDSA_P384', 'SHA384', minimum=384))['requirements']['key']
    assert (key['provider'], key['curve'], key['hash_algorithm']) == ('cng', 'secp384r1', 'sha384')
    d = t.decode_template(cng_template(algorithm='RSA', key_usage=0xFFFFFF, minimum=3072, name='WebServerKSP'))
    key = d['requirements']['key']
    assert (key['key_type'], key['curve'], key['minimum_size'], key['key_usage']) == ('rsa', None, 3072, ['all'])
    assert 'the key must be an RSA key (msPKI-Asymmetric-Algorithm RSA) of at least 3072 bits' in \
        d['requirements']['notes']


def test_key_rule_of_legacy_templates():
    # v4 with CT_FLAG_USE_LEGACY_PROVIDER: msPKI-RA-Application-Policies holds OIDs, the CSPs decide
    attrs = cng_template(4, 0x04040100)
    attrs['msPKI-RA-Application-Policies'] = [b'1.3.6.1.4.1.311.20.2.1']
    key = t.decode_template(attrs)['requirements']['key']
    assert (key['provider'], key['algorithm'], key['key_type'], key['hash_algorithm']) == ('legacy', None, None, None)
    key = t.decode_template(webserver_v1())['requirements']['key']
    assert key == {'template': 'WebServer', 'provider': 'legacy', 'algorithm': None, 'key_type': None, 'curve': None,
                   'minimum_size': 2048, 'hash_algorithm': None, 'key_usage': None,
                   'providers': ['Microsoft RSA SChannel Cryptographic Provider',
                                 'Microsoft DH SChannel Cryptographic Provider']}


def test_key_rule_unknown_algorithm_and_key_usage_bits():
    d = t.decode_template(cng_template(algorithm='DH', key_usage=0x15))
    key = d['requirements']['key']
    assert (key['algorithm'], key['key_type'], key['key_usage']) == ('DH', None, ['decrypt', 'key_agreement', '0x10'])
    assert 'the key must be a Diffie-Hellman key (msPKI-Asymmetric-Algorithm DH)' in d['requirements']['notes']
    assert t.decode_ncrypt_key_usage(None) is None
