# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""wcce_template_info end to end against an in-memory directory behind a fake ldap3 Connection (the real
AdConnection, discovery, decoding and SD evaluation code runs; only the socket is replaced)."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import json

import pytest

ldap3 = pytest.importorskip('ldap3')
pytest.importorskip('cryptography')

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


from ansible_collections.adcs.enrollment.plugins.module_utils import _deps
from ansible_collections.adcs.enrollment.plugins.module_utils import _security as s
from ansible_collections.adcs.enrollment.plugins.module_utils import _template_report
from ansible_collections.adcs.enrollment.tests.unit.plugins.support.templates import encode_period
from ansible_collections.adcs.enrollment.tests.unit.plugins.support import security as sd_build
from ansible_collections.adcs.enrollment.plugins.modules import wcce_template_info
from ansible_collections.adcs.enrollment.tests.unit.plugins.support.module_harness import run_module  # noqa: E402
from ansible_collections.adcs.enrollment.tests.unit.plugins.support.ldap_directory import (
    BASE, CONFIG, Directory, DirectoryConnection, install_directory,
)

PKS = 'CN=Public Key Services,CN=Services,' + CONFIG
TEMPLATES = 'CN=Certificate Templates,' + PKS
SERVICES = 'CN=Enrollment Services,' + PKS
DOM = 'S-1-5-21-100-200-300'
SIDS = {'enroller': DOM + '-1103', 'denied': DOM + '-1104', 'groupmember': DOM + '-1105', 'group': DOM + '-1107',
        'admins': DOM + '-512', 'users': DOM + '-513'}


def ca_certificate():
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.DOMAIN_COMPONENT, 'test'), x509.NameAttribute(NameOID.COMMON_NAME, 'LAB-CA')])
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key()).serial_number(0x1234)
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True).sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.DER)


CA_DER = ca_certificate()


def template_sd(extra=None):
    aces = [
        sd_build.build_ace(s.ACCESS_DENIED_OBJECT_ACE_TYPE, SIDS['denied'], s.ADS_RIGHT_DS_CONTROL_ACCESS, s.ENROLL),
        sd_build.build_ace(s.ACCESS_ALLOWED_ACE_TYPE, SIDS['admins'], s.DS_FULL_CONTROL),
        sd_build.build_ace(s.ACCESS_ALLOWED_OBJECT_ACE_TYPE, SIDS['enroller'], s.ADS_RIGHT_DS_CONTROL_ACCESS, s.ENROLL),
        sd_build.build_ace(s.ACCESS_ALLOWED_OBJECT_ACE_TYPE, SIDS['group'], s.ADS_RIGHT_DS_CONTROL_ACCESS, s.ENROLL),
        sd_build.build_ace(s.ACCESS_ALLOWED_ACE_TYPE, 'S-1-5-11', 0x20094),
    ] + (extra or [])
    return sd_build.build_security_descriptor(aces, owner=SIDS['admins'], group=SIDS['admins'])


@pytest.fixture
def directory(monkeypatch):
    d = Directory()
    d.add(TEMPLATES + '', cn='Certificate Templates')
    d.add('CN=WebServer,' + TEMPLATES, objectClass=['top', 'pKICertificateTemplate'], cn='WebServer', displayName='Web Server',
          distinguishedName='CN=WebServer,' + TEMPLATES, flags=66113, revision=4, pKIDefaultKeySpec=1,
          pKIExpirationPeriod=encode_period(days=730), pKIOverlapPeriod=encode_period(days=42),
          pKIExtendedKeyUsage='1.3.6.1.5.5.7.3.1', pKIKeyUsage=b'\xa0\x00', pKIMaxIssuingDepth=0,
          pKICriticalExtensions='2.5.29.15', pKIDefaultCSPs=['1,Microsoft RSA SChannel Cryptographic Provider'],
          msPKI_Template_Schema_Version=1, msPKI_Template_Minor_Revision=1, msPKI_Cert_Template_OID='1.2.3.4.1.16',
          msPKI_Enrollment_Flag=0, msPKI_Private_Key_Flag=0, msPKI_Certificate_Name_Flag=1, msPKI_Minimal_Key_Size=2048,
          msPKI_RA_Signature=0, nTSecurityDescriptor=template_sd())
    d.add('CN=WebServerApproval,' + TEMPLATES, objectClass=['top', 'pKICertificateTemplate'], cn='WebServerApproval',
          displayName='Web Server (CA manager approval)', flags=0x20240, revision=100,
          pKIExpirationPeriod=encode_period(days=365), pKIOverlapPeriod=encode_period(days=42),
          msPKI_Template_Schema_Version=2, msPKI_Cert_Template_OID='1.2.3.4.1.100', msPKI_Enrollment_Flag=2,
          msPKI_Private_Key_Flag=0x01010010 - 0x01010000, msPKI_Certificate_Name_Flag=1, msPKI_Minimal_Key_Size=2048,
          msPKI_Certificate_Application_Policy='1.3.6.1.5.5.7.3.1', msPKI_Supersede_Templates='WebServer',
          nTSecurityDescriptor=template_sd([sd_build.build_ace(s.ACCESS_ALLOWED_OBJECT_ACE_TYPE, SIDS['group'],
                                                               s.ADS_RIGHT_DS_CONTROL_ACCESS, s.AUTOENROLL)]))
    d.add('CN=User,' + TEMPLATES, objectClass=['top', 'pKICertificateTemplate'], cn='User', displayName='User', flags=66106,
          pKIExpirationPeriod=encode_period(days=365), pKIOverlapPeriod=encode_period(days=42),
          msPKI_Template_Schema_Version=1, msPKI_Cert_Template_OID='1.2.3.4.1.1', msPKI_Certificate_Name_Flag=-1509949440,
          pKIExtendedKeyUsage=['1.3.6.1.4.1.311.10.3.4', '1.3.6.1.5.5.7.3.4', '1.3.6.1.5.5.7.3.2'],
          nTSecurityDescriptor=sd_build.build_security_descriptor(
              [sd_build.build_ace(s.ACCESS_ALLOWED_ACE_TYPE, SIDS['admins'], s.DS_FULL_CONTROL)], owner=SIDS['admins']))
    d.add('CN=Unpublished,' + TEMPLATES, objectClass=['top', 'pKICertificateTemplate'], cn='Unpublished',
          msPKI_Template_Schema_Version=2, nTSecurityDescriptor=template_sd())
    d.add('CN=LAB-CA,' + SERVICES, objectClass=['top', 'pKIEnrollmentService'], cn='LAB-CA', displayName='LAB-CA',
          dNSHostName='ca1.lab.adcs.test', cACertificate=CA_DER, cACertificateDN='CN=LAB-CA, DC=test',
          certificateTemplates=['WebServer', 'WebServerApproval', 'User'])
    d.add('CN=Web Server,CN=OID,' + PKS, objectClass=['msPKI-Enterprise-Oid'], displayName='Web Server OID',
          msPKI_Cert_Template_OID='1.2.3.4.1.16')
    for sam in ('enroller', 'denied', 'groupmember'):
        groups = [SIDS['users']] + ([SIDS['group']] if sam == 'groupmember' else [])
        d.add('CN=%s,CN=Users,%s' % (sam, BASE), objectClass=['top', 'person', 'user'], sAMAccountName=sam,
              userPrincipalName='%s@lab.adcs.test' % sam, objectSid=s.sid_to_bytes(SIDS[sam]),
              tokenGroups=[s.sid_to_bytes(g) for g in groups])
    d.add('CN=ADCS-Enrollers,CN=Users,' + BASE, objectClass=['top', 'group'], sAMAccountName='ADCS-Enrollers',
          objectSid=s.sid_to_bytes(SIDS['group']))
    return install_directory(monkeypatch, d)


# ------------------------------------------------------------------------------------------------------------
# module harness
# ------------------------------------------------------------------------------------------------------------

def run(args, check_mode=False):
    return run_module(wcce_template_info.main, args, check_mode=check_mode)


CONN = {'domain': 'lab.adcs.test', 'domain_controller': 'dc1.lab.adcs.test', 'username': 'enroller', 'password': 'pw'}


def by_name(result):
    return dict((t['name'], t) for t in result['templates'])


def test_all_templates_and_cas(directory):
    out = run(CONN)
    assert not out.failed, out.result
    r = out.result
    assert r['changed'] is False
    assert [t['name'] for t in r['templates']] == ['Unpublished', 'User', 'WebServer', 'WebServerApproval']
    assert r['missing'] == []
    ca = r['certificate_authorities'][0]
    assert ca['name'] == 'LAB-CA' and ca['dns_host_name'] == 'ca1.lab.adcs.test'
    assert ca['certificate_subject'] == 'CN=LAB-CA,DC=test'
    assert ca['certificate_not_after'] == '2035-12-30T00:00:00Z'
    assert ca['templates'] == ['User', 'WebServer', 'WebServerApproval']
    import hashlib
    assert ca['certificate_sha256_fingerprint'].replace(':', '').lower() == hashlib.sha256(CA_DER).hexdigest()
    # the one certificate facts schema (as wcce_request's certificate); the flat names are deprecated aliases
    assert ca['certificate']['fingerprint_sha256'] == ca['certificate_sha256_fingerprint']
    assert ca['certificate']['fingerprint_sha1'] == ca['certificate_sha1_fingerprint']
    assert ca['certificate']['serial_number'].lower() == ca['certificate_serial_number']
    assert ca['certificate']['subject'] == ca['certificate_subject'] and ca['certificate']['is_ca'] is True
    assert 'pem' not in ca['certificate'] and ca['certificate_pem'].startswith('-----BEGIN CERTIFICATE-----')
    t = by_name(r)
    assert t['WebServer']['cas'][0]['config'] == 'ca1.lab.adcs.test\\LAB-CA'
    assert t['WebServer']['cas'][0]['certificate_fingerprint_sha256'] == ca['certificate']['fingerprint_sha256'] == \
        t['WebServer']['cas'][0]['certificate_sha256_fingerprint']
    assert t['WebServer']['published'] is True and t['Unpublished']['published'] is False
    assert t['WebServer']['oid_name'] == 'Web Server OID'
    assert t['WebServer']['validity_period']['text'] == '2 years'
    assert t['WebServerApproval']['requirements']['manager_approval'] is True
    assert t['WebServerApproval']['superseded_templates'] == ['WebServer']
    assert t['User']['requirements']['subject_alt_names_from_ad'] == ['upn', 'email']
    assert [e['name'] for e in t['User']['extended_key_usage']] == ['Encrypting File System', 'Secure Email', 'Client Authentication']
    assert t['WebServer']['raw']['cn'] == ['WebServer']
    # simple bind as enroller@domain
    assert DirectoryConnection.binds[0]['user'] == 'enroller@lab.adcs.test'


def test_bind_account_access_and_rights(directory):
    r = run(dict(CONN, names=['WebServer'])).result
    assert r['principal']['name'] == 'enroller' and r['principal']['source'] == 'bind'
    assert r['principal']['token_sids'] == [SIDS['enroller'], SIDS['users'], 'S-1-1-0', 'S-1-5-2', 'S-1-5-11', 'S-1-5-15']
    web = r['templates'][0]
    assert web['access']['can_enroll'] is True
    assert 'enroller' in web['access']['reason']
    assert web['access']['can_autoenroll'] is False
    assert web['owner'] == SIDS['admins']
    denied = web['rights']['enroll']['denied']
    assert denied == [{'sid': SIDS['denied'], 'name': 'denied', 'via': 'extended_right', 'ace': 0}]
    allowed = dict((a['sid'], a) for a in web['rights']['enroll']['allowed'])
    assert allowed[SIDS['group']]['name'] == 'ADCS-Enrollers'
    assert allowed[SIDS['admins']]['name'] == 'Domain Admins' and allowed[SIDS['admins']]['via'] == 'full_control'


@pytest.mark.parametrize('principal,expected,text', [
    ('denied', False, 'denies Enroll to denied'),
    ('LAB\\groupmember', True, 'ADCS-Enrollers'),
    ('groupmember@lab.adcs.test', True, 'ADCS-Enrollers'),
    (SIDS['enroller'], True, 'enroller'),
])
def test_principal_option(directory, principal, expected, text):
    r = run(dict(CONN, names=['Web Server'], principal=principal)).result
    web = r['templates'][0]
    assert r['principal']['source'] == 'principal'
    assert web['access']['can_enroll'] is expected
    assert text in web['access']['reason']


def test_groupmember_autoenroll_via_group(directory):
    r = run(dict(CONN, names=['WebServerApproval'], principal='groupmember')).result
    access = r['templates'][0]['access']
    assert access['can_enroll'] is True and access['can_autoenroll'] is True


def test_unknown_principal(directory):
    r = run(dict(CONN, names=['WebServer'], principal='nobody')).result
    assert 'not found' in r['principal']['error']
    assert r['templates'][0]['access']['can_enroll'] is None
    assert 'not found' in r['templates'][0]['access']['reason']


def test_names_by_oid_and_missing(directory):
    r = run(dict(CONN, names=['1.2.3.4.1.100', 'webserver', 'NoSuchTemplate'])).result
    assert [t['name'] for t in r['templates']] == ['WebServer', 'WebServerApproval']
    assert r['missing'] == ['NoSuchTemplate']


def test_options_that_trim_output(directory):
    r = run(dict(CONN, check_rights=False, include_raw=False, published_only=True)).result
    assert [t['name'] for t in r['templates']] == ['User', 'WebServer', 'WebServerApproval']
    assert r['principal'] is None
    assert all('rights' not in t and 'access' not in t and 'raw' not in t for t in r['templates'])


def test_ca_name_filter(directory):
    r = run(dict(CONN, ca_name='OTHER-CA', names=['WebServer'])).result
    assert r['certificate_authorities'] == []
    assert r['templates'][0]['cas'] == [] and r['templates'][0]['published'] is False
    r = run(dict(CONN, ca_host='CA1.lab.adcs.test.', names=['WebServer'])).result
    assert r['templates'][0]['cas'][0]['name'] == 'LAB-CA'


def test_check_mode_gives_the_same_answer(directory):
    normal = run(dict(CONN, names=['WebServer'])).result
    check = run(dict(CONN, names=['WebServer']), check_mode=True).result
    assert check == normal


def test_ntlm_with_hash_reaches_ldap3(directory):
    args = dict(CONN, auth='ntlm', username='LAB\\enroller', nt_hash='44f908a8f25c8b0a923026e44eec2e16', names=['User'])
    del args['password']
    out = run(args)
    assert not out.failed, out.result
    assert DirectoryConnection.binds[0]['authentication'] == ldap3.NTLM
    assert DirectoryConnection.binds[0]['password'].endswith(':44f908a8f25c8b0a923026e44eec2e16')
    assert 'enroller' in json.dumps(out.result['principal'])


def test_connection_error_is_clean(monkeypatch, directory):
    def refuse(self):
        raise ldap3.core.exceptions.LDAPSocketOpenError('connection refused')
    monkeypatch.setattr(DirectoryConnection, 'open', refuse)
    out = run(CONN)
    assert out.failed
    assert out.result['msg'] == ('could not connect to a domain controller: dc1.lab.adcs.test: '
                                 'cannot connect to dc1.lab.adcs.test:636: connection refused')
    assert 'exception' not in out.result


def test_unexpected_error_is_reported_without_crash(monkeypatch, directory):
    def boom(*args, **kwargs):
        raise RuntimeError('kaboom')
    monkeypatch.setattr(_template_report, 'list_templates', boom)
    out = run(CONN)
    assert out.failed and 'kaboom' in out.result['msg']


@pytest.mark.parametrize('args,text', [
    ({'domain': 'lab.adcs.test', 'username': 'enroller'}, 'password'),
    ({'username': 'u', 'password': 'p'}, 'domain'),
    ({'domain': 'x', 'auth': 'ntlm', 'username': 'u'}, 'password'),
    ({'domain': 'x', 'username': 'u', 'password': 'p', 'nt_hash': 'h'}, 'mutually exclusive'),
])
def test_argument_validation(directory, args, text):
    out = run(args)
    assert out.failed and text in out.result['msg']


def test_missing_ldap3(monkeypatch, directory):
    monkeypatch.setitem(_deps._STATUS, 'ldap3', (False, 'Traceback'))
    out = run(CONN)
    assert out.failed and 'ldap3' in out.result['msg']


def test_missing_dnspython_only_matters_without_dc(monkeypatch, directory):
    monkeypatch.setitem(_deps._STATUS, 'dnspython', (False, 'Traceback'))
    args = dict(CONN)
    del args['domain_controller']
    out = run(args)
    assert out.failed and 'dnspython' in out.result['msg']
    assert not run(CONN).failed


def test_kerberos_without_gssapi(monkeypatch, directory):
    monkeypatch.setitem(_deps._STATUS, 'gssapi', (False, 'Traceback'))
    out = run({'domain': 'lab.adcs.test', 'auth': 'kerberos'})
    assert out.failed and 'gssapi' in out.result['msg']
