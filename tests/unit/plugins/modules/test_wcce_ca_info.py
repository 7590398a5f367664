# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""wcce_ca_info end to end against an in-memory directory behind a fake ldap3 Connection (the real AdConnection,
discovery and CA report code runs; only the socket is replaced)."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import hashlib

import pytest

ldap3 = pytest.importorskip('ldap3')
pytest.importorskip('cryptography')

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ansible_collections.adcs.enrollment.plugins.module_utils import _ca_report, _deps
from ansible_collections.adcs.enrollment.plugins.modules import wcce_ca_info
from ansible_collections.adcs.enrollment.tests.unit.plugins.support.ldap_directory import (
    CONFIG, Directory, DirectoryConnection, install_directory,
)
from ansible_collections.adcs.enrollment.tests.unit.plugins.support.module_harness import run_module  # noqa: E402

SERVICES = 'CN=Enrollment Services,CN=Public Key Services,CN=Services,' + CONFIG
CONN = {'domain': 'lab.adcs.test', 'domain_controller': 'dc1.lab.adcs.test', 'username': 'enroller', 'password': 'pw'}
START = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(cn, key, days, issuer=None, issuer_key=None, ca=True, serial=1):
    builder = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(issuer or cn))
               .public_key(key.public_key()).serial_number(serial).not_valid_before(START)
               .not_valid_after(START + datetime.timedelta(days=days)))
    if ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    return builder.sign(issuer_key or key, hashes.SHA256())


ROOT_KEY = ec.generate_private_key(ec.SECP256R1())
ROOT_OLD = _cert('LAB-CA', ROOT_KEY, 1000, serial=1)
ROOT_NEW = _cert('LAB-CA', ROOT_KEY, 3000, serial=2)
SUB = _cert('SUB-CA', ec.generate_private_key(ec.SECP256R1()), 2000, issuer='LAB-CA', issuer_key=ROOT_KEY, serial=3)


def der(cert):
    return cert.public_bytes(serialization.Encoding.DER)


def pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM).decode('ascii')


@pytest.fixture
def directory(monkeypatch):
    d = Directory()
    d.add('CN=LAB-CA,' + SERVICES, objectClass=['top', 'pKIEnrollmentService'], cn='LAB-CA', displayName='Lab CA',
          dNSHostName='ca1.lab.adcs.test', cACertificate=[der(ROOT_OLD), der(ROOT_NEW), b'not a certificate'],
          cACertificateDN='CN=LAB-CA', certificateTemplates=['WebServer', 'User'])
    d.add('CN=SUB-CA,' + SERVICES, objectClass=['top', 'pKIEnrollmentService'], cn='SUB-CA',
          dNSHostName='ca2.lab.adcs.test', cACertificate=[der(SUB)], certificateTemplates=['Machine'])
    return install_directory(monkeypatch, d)


def run(args, check_mode=False):
    return run_module(wcce_ca_info.main, args, check_mode=check_mode)


def test_all_cas_with_their_certificates(directory):
    out = run(CONN)
    assert not out.failed, out.result
    r = out.result
    assert r['changed'] is False and r['missing'] == []
    assert r['domain_controller'] == 'dc1.lab.adcs.test' and r['configuration_naming_context'] == CONFIG
    lab, sub = r['certificate_authorities']
    assert (lab['name'], lab['display_name'], lab['dns_host_name'], lab['config']) == (
        'LAB-CA', 'Lab CA', 'ca1.lab.adcs.test', 'ca1.lab.adcs.test\\LAB-CA')
    assert lab['templates'] == ['User', 'WebServer'] and lab['distinguished_name'] == 'CN=LAB-CA,' + SERVICES
    # the damaged value is skipped; both CA certificates, the later-expiring one current
    assert [(c['serial_number'], c['current'], c['self_signed'], c['is_ca']) for c in lab['certificates']] == [
        ('1', False, True, True), ('2', True, True, True)]
    current = lab['certificates'][1]
    assert current['pem'] == pem(ROOT_NEW)
    assert current['fingerprint_sha256'].replace(':', '').lower() == hashlib.sha256(der(ROOT_NEW)).hexdigest()
    assert current['subject'] == 'CN=LAB-CA' and current['not_after'] == '2034-03-20T00:00:00Z'
    # an issuing CA: a CA certificate that is not self-signed
    assert sub['display_name'] == 'SUB-CA'
    assert [(c['issuer'], c['self_signed'], c['is_ca'], c['current']) for c in sub['certificates']] == [
        ('CN=LAB-CA', False, True, True)]


def test_names_filter_missing_and_no_pem(directory):
    r = run(dict(CONN, names=['sub-ca', 'NOPE'], include_pem=False)).result
    assert [c['name'] for c in r['certificate_authorities']] == ['SUB-CA']
    assert r['missing'] == ['NOPE']
    assert 'pem' not in r['certificate_authorities'][0]['certificates'][0]


def test_connection_ca_filters(directory):
    r = run(dict(CONN, ca_host='CA1.lab.adcs.test.')).result
    assert [c['name'] for c in r['certificate_authorities']] == ['LAB-CA']
    r = run(dict(CONN, ca_name='SUB-CA', ca_names=['LAB-CA'])).result
    assert r['certificate_authorities'] == [] and r['missing'] == ['LAB-CA']


def test_check_mode_gives_the_same_answer(directory):
    assert run(CONN, check_mode=True).result == run(CONN).result


def test_connection_error_is_clean(monkeypatch, directory):
    def refuse(self):
        raise ldap3.core.exceptions.LDAPSocketOpenError('connection refused')
    monkeypatch.setattr(DirectoryConnection, 'open', refuse)
    out = run(CONN)
    assert out.failed and 'exception' not in out.result
    assert out.result['msg'] == ('could not connect to a domain controller: dc1.lab.adcs.test: '
                                 'cannot connect to dc1.lab.adcs.test:636: connection refused')


def test_unexpected_error_is_reported_without_crash(monkeypatch, directory):
    def boom(*args, **kwargs):
        raise RuntimeError('kaboom')
    monkeypatch.setattr(_ca_report, 'read_enrollment_services', boom)
    out = run(CONN)
    assert out.failed and out.result['msg'] == 'unexpected error reading the enrollment services: kaboom'


@pytest.mark.parametrize('args,text', [
    ({'domain': 'lab.adcs.test', 'username': 'enroller'}, 'password'),
    ({'username': 'u', 'password': 'p'}, 'domain'),
])
def test_argument_validation(directory, args, text):
    out = run(args)
    assert out.failed and text in out.result['msg']


def test_missing_libraries(monkeypatch, directory):
    monkeypatch.setitem(_deps._STATUS, 'ldap3', (False, 'Traceback'))
    out = run(CONN)
    assert out.failed and 'ldap3' in out.result['msg']
    monkeypatch.setitem(_deps._STATUS, 'ldap3', (True, None))
    monkeypatch.setitem(_deps._STATUS, 'cryptography', (False, 'Traceback'))
    out = run(CONN)
    assert out.failed and 'cryptography' in out.result['msg']
    monkeypatch.setitem(_deps._STATUS, 'cryptography', (True, None))
    monkeypatch.setitem(_deps._STATUS, 'gssapi', (False, 'Traceback'))
    out = run({'domain': 'lab.adcs.test', 'auth': 'kerberos'})
    assert out.failed and 'gssapi' in out.result['msg']
