# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""_ca_report: the enrollment services with their CA certificates, classified (the module test runs it through
wcce_ca_info against an in-memory directory)."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest
from cryptography.hazmat.primitives import serialization

from ansible_collections.adcs.enrollment.plugins.module_utils import _ca_report

from ansible_collections.adcs.enrollment.tests.unit.plugins.support import wcce_pki

DER = serialization.Encoding.DER


class FakeConn(object):
    configuration_nc = 'CN=Configuration,DC=lab'
    host = 'dc1.lab'

    def __init__(self, entries):
        self.entries = entries
        self.searches = []

    def search(self, base, flt, attributes, scope='SUBTREE'):
        self.searches.append((base, flt, scope))
        return self.entries


def service(cn, host, *certs):
    return {'dn': 'CN=%s,CN=Enrollment Services' % cn,
            'attributes': {'cn': [cn.encode()], 'dNSHostName': [host.encode()] if host else [],
                           'cACertificate': [c.public_bytes(DER) if hasattr(c, 'public_bytes') else c for c in certs],
                           'certificateTemplates': [b'WebServer']}}


@pytest.fixture
def conn():
    pki = wcce_pki.pki()
    return FakeConn([service('SUB-CA', 'ca1.lab', pki.ca, b'garbage'), service('ROOT', None, pki.root)])


def test_services_sorted_with_config_and_certificates(conn):
    services = _ca_report.read_enrollment_services(conn)
    assert conn.searches == [('CN=Enrollment Services,CN=Public Key Services,CN=Services,CN=Configuration,DC=lab',
                              '(objectClass=pKIEnrollmentService)', 'LEVEL')]
    assert [s.name for s in services] == ['ROOT', 'SUB-CA']
    assert [s.summary['config'] for s in services] == ['ROOT', 'ca1.lab\\SUB-CA']
    assert [len(s.certificates) for s in services] == [1, 1]  # the damaged value is skipped


def test_select_services_by_names_and_connection_filters(conn):
    services = _ca_report.read_enrollment_services(conn)
    assert [s.name for s in _ca_report.select_services(services, ['sub-ca'])] == ['SUB-CA']
    assert [s.name for s in _ca_report.select_services(services, [], ca_host='CA1.lab.')] == ['SUB-CA']
    assert _ca_report.select_services(services, ['ROOT'], ca_name='SUB-CA') == []


def test_certificate_classification_and_report(conn):
    pki = wcce_pki.pki()
    report = _ca_report.ca_report(conn, {'names': ['ROOT', 'SUB-CA', 'OTHER'], 'include_pem': False})
    assert report['missing'] == ['OTHER'] and report['domain_controller'] == 'dc1.lab'
    root, sub = report['certificate_authorities']
    assert [(c['is_ca'], c['self_signed'], c['current']) for c in root['certificates']] == [(True, True, True)]
    assert [(c['is_ca'], c['self_signed'], c['current']) for c in sub['certificates']] == [(True, False, True)]
    assert 'pem' not in sub['certificates'][0]
    entry = _ca_report.certificate_entry(pki.ca)
    assert entry['pem'] == pki.ca.public_bytes(serialization.Encoding.PEM).decode('ascii')
    assert entry['current'] is False and entry['subject'] == 'CN=LAB-CA'


def test_renewed_ca_reports_each_certificate_with_its_index():
    """A renewed CA holds several certificates in cACertificate: each is reported with its certificate and key
    index (CA Version extension); the current one is the highest index, even when an older one expires later."""
    import datetime
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from ansible_collections.adcs.enrollment.tests.unit.plugins.support.crl_pki import ca_version_ext

    pki = wcce_pki.pki()
    base = wcce_pki.make_cert('LAB-CA', pki.ca_key, issuer=pki.root, issuer_key=pki.root_key, ca=True, serial=40,
                              days=5000)
    renewed = (x509.CertificateBuilder().subject_name(base.subject).issuer_name(base.issuer)
               .public_key(wcce_pki.ec_key('renewed-ca').public_key()).serial_number(41)
               .not_valid_before(wcce_pki.NOW).not_valid_after(wcce_pki.NOW + datetime.timedelta(days=3000))
               .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
               .add_extension(ca_version_ext(1, 1), critical=False)
               .sign(pki.root_key, hashes.SHA256()))
    report = _ca_report.ca_report(FakeConn([service('LAB-CA', 'ca1.lab', base, renewed)]), {'include_pem': False})
    certs = report['certificate_authorities'][0]['certificates']
    assert [(c['ca_cert_index'], c['ca_key_index'], c['current']) for c in certs] == [(None, None, False),
                                                                                      (1, 1, True)]
    assert _ca_report.current_certificate([]) is None
