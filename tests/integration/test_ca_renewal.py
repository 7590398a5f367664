# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The modules against a renewed CA, run by the real `ansible`: a private lab CA on 127.0.0.91 (the private-CA
harness of test_wcce_request_faults) whose certificate was renewed with a new key (``renew-ca --new-key``) after it
issued and revoked a certificate under its first key. wcce_request gets certificates chained to the new CA
certificate, ``wcce_crl from_ca`` gets the CRL of the key that issued the certificate being checked (key 0 or key 1,
checked with that key's CA certificate), wcce_trust_anchors keeps both CA certificates with their indexes.

The private CA reads templates and rights from the shared lab AD but writes nothing there: it publishes neither CRLs
(config publish_crls_to_directory=false) nor CA certificates (renew-ca --no-dspublish), so the shared lab looks
unchanged to other tests. Run under `flock /tmp/adcs-private-ca.lock` (one private CA on 127.0.0.91 at a time)."""

import json
import os
import subprocess
import sys

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

# the private-CA process of test_wcce_request_faults (same address, same lock)
from test_wcce_request_faults import ADDRESS, LAB_DIR, _PrivateCA, private_state, read

pytestmark = pytest.mark.lab

CA_NAME = 'LAB-CA'


def _ca_cli(state, *args):
    env = dict(os.environ, PYTHONPATH=LAB_DIR + os.pathsep + os.environ.get('PYTHONPATH', ''))
    result = subprocess.run([sys.executable, '-m', 'adcslab.ca', '--state-dir', state] + list(args), env=env,
                            capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


def _enroller(lab):
    from adcslab.ca import Requester
    acct = lab['accounts']['enroller']
    return Requester(user=acct['username'], domain=lab['netbios_domain'], sid=acct['sid'],
                     group_sids=acct['group_sids'])


@pytest.fixture(scope='module')
def renewed(lab, tmp_path_factory):
    """{'server', 'state', 'old_cert' (issued by key 0, revoked), 'old_ca', 'new_ca'}."""
    if os.geteuid() != 0:
        pytest.skip('the lab CA listens on port 135, which needs root (the lab runs as root)')
    from adcslab.ca import CertificationAuthority
    from adcslab.ca import testing as T

    state = private_state(lab, tmp_path_factory, 'renewal-state')
    os.makedirs(os.path.join(state, 'ca'), mode=0o700)
    with open(os.path.join(state, 'ca', 'config.json'), 'w') as handle:
        json.dump({'publish_crls_to_directory': False}, handle)   # never the shared CDP objects

    ca = CertificationAuthority.open(state)
    try:
        old_ca = ca.ca_cert
        cn = 'before-renewal.lab.adcs.test'
        response = ca.submit(0x100, 'CertificateTemplate:WebServer', T.make_csr(T.rsa_key(2048), cn, dns_names=[cn]),
                             _enroller(lab))
        assert response.disposition == 3, response.disposition_message
        old_cert = x509.load_der_x509_certificate(response.cert_der)
        ca.revoke(old_cert.serial_number, 1)
        # one more under key 0, kept (with its key) for a renewal after the CA renewal
        keep_key = T.rsa_key(2048)
        cn = 'renew-me.lab.adcs.test'
        response = ca.submit(0x100, 'CertificateTemplate:WebServer', T.make_csr(keep_key, cn, dns_names=[cn]),
                             _enroller(lab))
        assert response.disposition == 3, response.disposition_message
        kept = (x509.load_der_x509_certificate(response.cert_der), keep_key)
    finally:
        ca.close()
    out = json.loads(_ca_cli(state, 'renew-ca', '--new-key', '--no-dspublish'))
    assert (out['cert_index'], out['key_index'], out['crl']) == (1, 1, 'LAB-CA(1).crl')
    new_ca = x509.load_pem_x509_certificate(read(os.path.join(state, 'ca', 'lab-ca(1).pem')))
    server = _PrivateCA(state).start()
    yield {'server': server, 'state': state, 'old_cert': old_cert, 'old_ca': old_ca, 'new_ca': new_ca, 'kept': kept}
    rc = server.stop()
    assert rc == 0, 'private lab CA did not exit cleanly (rc %r)\n%s' % (rc, server.log())


def _login(lab):
    acct = lab['accounts']['enroller']
    return {'ca_host': ADDRESS, 'ca_name': CA_NAME, 'username': '%s@%s' % (acct['username'], lab['domain']),
            'password': acct['password'], 'timeout': 30}


def _crl_number(path):
    from cryptography.x509 import CRLNumber
    return x509.load_der_x509_crl(read(path)).extensions.get_extension_for_class(CRLNumber).value.crl_number


def _pem(path, cert):
    with open(path, 'wb') as handle:
        handle.write(cert.public_bytes(serialization.Encoding.PEM))
    return path


def test_wcce_request_chains_to_the_new_ca_certificate(lab, ansible, tmp_path, renewed):
    args = dict(_login(lab), ca_bundle=lab['ca_bundle'], template='WebServer', common_name='after.lab.adcs.test',
                subject_alt_name=['DNS:after.lab.adcs.test'], private_key_path=str(tmp_path / 'after.key'),
                certificate_path=str(tmp_path / 'after.crt'), chain_path=str(tmp_path / 'after-chain.pem'))
    rc, result = ansible.module('adcs.enrollment.wcce_request', args)
    assert rc == 0 and result['disposition'] == 'issued', result
    cert = x509.load_pem_x509_certificate(read(args['certificate_path']))
    cert.verify_directly_issued_by(renewed['new_ca'])
    chain = x509.load_pem_x509_certificates(read(args['chain_path']))
    assert renewed['new_ca'] in chain and renewed['old_ca'] not in chain


def test_crl_from_the_ca_is_the_crl_of_the_key_that_issued_the_certificate(lab, ansible, tmp_path, renewed):
    enroll = os.path.join(renewed['state'], 'ca', 'CertEnroll')
    label = 'dcom://%s/%s' % (ADDRESS, CA_NAME)
    base = dict(_login(lab), from_ca=True, check_certificate=True, delta=False)

    # issued (and revoked) under key 0 before the renewal: key 0's CRL, checked with the old CA certificate
    rc, result = ansible.module('adcs.enrollment.wcce_crl', dict(
        base, certificate_path=_pem(str(tmp_path / 'old.crt'), renewed['old_cert'])))
    assert rc == 0, result
    assert result['served_by'] == label + ' (base CRL)' and result['issuer_certificate_source'] == label
    assert result['crl_number'] == _crl_number(os.path.join(enroll, 'LAB-CA.crl'))
    assert result['revoked'] is True

    # issued under key 1 after the renewal: key 1's CRL (LAB-CA(1).crl)
    rc, result = ansible.module('adcs.enrollment.wcce_request', dict(
        _login(lab), ca_bundle=lab['ca_bundle'], template='WebServer', common_name='new.lab.adcs.test',
        subject_alt_name=['DNS:new.lab.adcs.test'], private_key_path=str(tmp_path / 'new.key'),
        certificate_path=str(tmp_path / 'new.crt')))
    assert rc == 0, result
    rc, result = ansible.module('adcs.enrollment.wcce_crl', dict(base, certificate_path=str(tmp_path / 'new.crt')))
    assert rc == 0, result
    assert result['crl_number'] == _crl_number(os.path.join(enroll, 'LAB-CA(1).crl'))
    assert result['revoked'] is False

    # without a certificate: the current key's CRL
    rc, result = ansible.module('adcs.enrollment.wcce_crl', dict(_login(lab), from_ca=True, delta=False))
    assert rc == 0, result
    assert result['crl_number'] == _crl_number(os.path.join(enroll, 'LAB-CA(1).crl'))

    # the old CA certificate given as the issuer: key 0's CRL again
    rc, result = ansible.module('adcs.enrollment.wcce_crl', dict(
        _login(lab), from_ca=True, delta=False,
        issuer_certificate_path=_pem(str(tmp_path / 'old-ca.crt'), renewed['old_ca'])))
    assert rc == 0, result
    assert result['crl_number'] == _crl_number(os.path.join(enroll, 'LAB-CA.crl'))


def test_trust_anchors_keep_every_certificate_of_the_renewed_ca(lab, ansible, renewed):
    enroll = os.path.join(renewed['state'], 'ca', 'CertEnroll')
    content = ''.join(x509.load_der_x509_certificate(read(os.path.join(enroll, name))).public_bytes(
        serialization.Encoding.PEM).decode() for name in (lab['ca']['hostname'] + '_LAB-CA.crt',
                                                          lab['ca']['hostname'] + '_LAB-CA(1).crt'))
    rc, result = ansible.module('adcs.enrollment.wcce_trust_anchors', {
        'ca_bundle': lab['ca_bundle'], 'host_certificates': [{'name': 'lab-ca', 'content': content}]})
    assert rc == 0, result
    assert result['refused'] == []
    assert [(c['subject'], c['ca_cert_index'], c['ca_key_index']) for c in result['intermediates']] == [
        ('CN=LAB-CA,DC=lab,DC=adcs,DC=test', None, None), ('CN=LAB-CA,DC=lab,DC=adcs,DC=test', 1, 1)]
    assert len(set(c['file'] for c in result['intermediates'])) == 2


def test_a_certificate_from_before_the_ca_renewal_renews_and_chains_to_the_new_ca_certificate(
        lab, ansible, tmp_path, renewed):
    """The end-entity certificate was issued under key 0; its renewal request (CMS signed with its key) is accepted
    because it chains through the old CA certificate, and the renewed certificate comes from the new key."""
    old, key = renewed['kept']
    key_path = str(tmp_path / 'renew-me.key')
    with open(key_path, 'wb') as handle:
        handle.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    os.chmod(key_path, 0o600)
    args = dict(_login(lab), ca_bundle=lab['ca_bundle'], template='WebServer', common_name='renew-me.lab.adcs.test',
                subject_alt_name=['DNS:renew-me.lab.adcs.test'], private_key_path=key_path,
                certificate_path=_pem(str(tmp_path / 'renew-me.crt'), old), renew_before=100000)
    rc, result = ansible.module('adcs.enrollment.wcce_request', args)
    assert rc == 0, result
    assert result['renewal'] is True and result['key_generated'] is False and result['disposition'] == 'issued'
    cert = x509.load_pem_x509_certificate(read(args['certificate_path']))
    assert cert.serial_number != old.serial_number
    cert.verify_directly_issued_by(renewed['new_ca'])
