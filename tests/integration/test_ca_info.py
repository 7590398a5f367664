# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""adcs.enrollment.wcce_ca_info against the lab AD (Samba): the enrollment service the lab CA registered, with its
CA certificate, compared with the lab CA's own files."""

import hashlib
import json
import os
import ssl
import sys

import pytest
from conftest import AnsibleRunner

pytestmark = pytest.mark.lab

PYTHON = os.environ.get('ADCS_PYTHON', sys.executable)


def run_module(args, check=False):
    """`ansible localhost -m adcs.enrollment.wcce_ca_info -a JSON`; (rc, result)."""
    return AnsibleRunner(PYTHON).module('adcs.enrollment.wcce_ca_info', args, check=check)


@pytest.fixture(scope='module')
def conn(lab):
    enroller = lab['accounts']['enroller']
    return {'domain': lab['domain'], 'domain_controller': lab['dc']['address'], 'ca_bundle': lab['ca_bundle'],
            'username': enroller['username'], 'password': enroller['password']}


def _der(path):
    with open(path) as handle:
        return ssl.PEM_cert_to_DER_cert(handle.read())


def test_the_lab_ca_and_its_certificate(lab, conn):
    rc, result = run_module(conn)
    assert rc == 0, result
    assert result['changed'] is False and result['missing'] == []
    assert result['configuration_naming_context'] == lab['config_dn']
    cas = result['certificate_authorities']
    assert [c['name'] for c in cas] == [lab['ca']['name']]
    ca = cas[0]
    assert ca['dns_host_name'] == lab['ca']['hostname']
    assert ca['config'] == '%s\\%s' % (lab['ca']['hostname'], lab['ca']['name'])
    assert sorted(ca['templates']) == sorted(lab['published_templates'])
    assert ca['distinguished_name'].lower().endswith(lab['enrollment_services_dn'].lower())
    current = [c for c in ca['certificates'] if c['current']]
    assert len(current) == 1
    cert = current[0]
    der = _der(lab['ca']['cert'])
    assert cert['fingerprint_sha256'].replace(':', '').lower() == hashlib.sha256(der).hexdigest()
    assert ssl.PEM_cert_to_DER_cert(cert['pem']) == der
    assert cert['subject'].startswith('CN=LAB-CA') and cert['not_after'].endswith('Z')
    # the lab CA is an issuing CA under the lab root: a CA certificate, not self-signed
    assert cert['is_ca'] is True and cert['self_signed'] is (_der(lab['ca']['root_cert']) == der)


def test_names_include_pem_and_check_mode(lab, conn):
    rc, result = run_module(dict(conn, names=[lab['ca']['name'].lower(), 'NO-SUCH-CA'], include_pem=False),
                            check=True)
    assert rc == 0, result
    assert [c['name'] for c in result['certificate_authorities']] == [lab['ca']['name']]
    assert result['missing'] == ['NO-SUCH-CA']
    assert all('pem' not in c for c in result['certificate_authorities'][0]['certificates'])


def test_untrusted_dc_certificate_fails_cleanly(lab, conn):
    args = dict(conn)
    del args['ca_bundle']  # the system trust store does not know the lab CA
    rc, result = run_module(args)
    assert rc != 0
    assert 'could not be verified' in result['msg'] and 'set ca_bundle' in result['msg']
    assert 'Traceback' not in json.dumps(result)
