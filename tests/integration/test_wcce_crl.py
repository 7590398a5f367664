# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""adcs.enrollment.wcce_crl against the lab CA: HTTP(S) on 127.0.0.12, the CDP object in the lab AD, DCOM, and
tampered / stale / unreachable sources served from 127.0.0.74-76."""

import datetime
import http.client
import json
import os
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa

pytestmark = pytest.mark.lab

MODULE = 'adcs.enrollment.wcce_crl'
TAMPER_ADDR = '127.0.0.74'
DEAD_ADDR = '127.0.0.75'


# ------------------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------------------
def names(lab):
    return {'host_addresses': {lab['ca']['hostname']: lab['ca']['address']}, 'use_proxy': False}


def lab_url(lab, name, scheme='http'):
    return '%s://%s/CertEnroll/%s' % (scheme, lab['ca']['hostname'], name)


def ip_url(lab, name):
    return 'http://%s/CertEnroll/%s' % (lab['ca']['address'], name)


def lab_stats(lab, reset=False):
    conn = http.client.HTTPConnection(lab['ca']['address'], lab['ca']['http_port'], timeout=10)
    try:
        if reset:
            conn.request('POST', '/_lab/stats/reset', body=b'')
        else:
            conn.request('GET', '/_lab/stats')
        return json.loads(conn.getresponse().read() or b'{}')
    finally:
        conn.close()


def ldap_login(lab, name='enroller'):
    acct = lab['accounts'][name]
    return {'domain': lab['domain'], 'domain_controller': lab['dc']['address'], 'ca_bundle': lab['ca_bundle'],
            'username': acct['username'], 'password': acct['password']}


@pytest.fixture(scope='module')
def ca(lab):
    from adcslab.ca import CertificationAuthority
    authority = CertificationAuthority.open(lab['state_dir'])
    yield authority
    authority.close()


@pytest.fixture(scope='module')
def issued(lab, ca, tmp_path_factory):
    """A WebServer certificate issued by the lab CA (CDP/AIA pointing at the lab), PEM file path + cert."""
    from adcslab.ca import Requester
    from adcslab.ca import testing as T
    acct = lab['accounts']['enroller']
    requester = Requester(user=acct['username'], domain=lab['netbios_domain'], sid=acct['sid'],
                          group_sids=acct['group_sids'])

    def issue(cn):
        csr = T.make_csr(T.rsa_key(), cn)
        response = ca.submit(0x100, 'CertificateTemplate:WebServer', csr, requester)
        assert response.disposition == 3, response.disposition_message
        cert = x509.load_der_x509_certificate(response.cert_der)
        path = tmp_path_factory.mktemp('crl') / ('%s.pem' % cn)
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return str(path), cert
    return issue


class StaticServer(object):
    """HTTP/1.1 server on one of our addresses, port 80, serving {path: bytes}."""

    def __init__(self, address, files):
        self.files = files

        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = 'HTTP/1.1'

            def log_message(self, *args):
                pass

            def do_GET(self):  # noqa: N802
                body = owner.files.get(self.path)
                self.send_response(200 if body is not None else 404)
                body = b'not found' if body is None else body
                self.send_header('Content-Length', str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer((address, 80), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def static(request):
    servers = []

    def start(address, files):
        server = StaticServer(address, files)
        servers.append(server)
        return server
    yield start
    for server in servers:
        server.close()


def run(ansible, args, check=False):
    return ansible.module(MODULE, args, check=check)


# ------------------------------------------------------------------------------------------------------------
# HTTP
# ------------------------------------------------------------------------------------------------------------
def test_lab_crl_by_address_with_delta(lab, ansible):
    rc, result = run(ansible, dict(names(lab), urls=[ip_url(lab, 'LAB-CA.crl')], issuer_certificate_path=lab['ca']['cert'],
                                   include_entries=True))
    assert rc == 0, result
    assert result['issuer'] == 'CN=LAB-CA,DC=lab,DC=adcs,DC=test'
    assert result['served_by'] == ip_url(lab, 'LAB-CA.crl')
    assert result['revoked_count'] == len(result['entries'])
    delta = result['delta']
    assert delta['base_crl_number'] <= result['crl_number'] < delta['crl_number']
    assert delta['served_by'] == lab_url(lab, 'LAB-CA+.crl')   # freshest-CRL pointer of the base CRL, name mapped


def test_revoked_certificate_found_with_reason(lab, ansible, ca, issued):
    path, cert = issued('crl-revoked.lab.adcs.test')
    args = dict(names(lab), certificate_path=path, check_certificate=True)
    rc, result = run(ansible, args)
    assert rc == 0, result
    assert result['revoked'] is False
    assert result['issuer_certificate_source'] == lab_url(lab, 'ca1.lab.adcs.test_LAB-CA.crt')

    ca.revoke('%x' % cert.serial_number, 1)        # keyCompromise; the lab CA publishes a delta CRL
    rc, result = run(ansible, args)
    assert rc == 0, result
    status = result['certificate_status']
    assert result['revoked'] is True
    assert status['reason'] == 'keyCompromise' and status['reason_code'] == 1
    assert status['source'] == 'delta' and status['serial_number'] == '%X' % cert.serial_number
    revoked_at = datetime.datetime.strptime(status['revocation_date'], '%Y-%m-%dT%H:%M:%SZ')
    assert abs((datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) - revoked_at).total_seconds()) < 600
    # the certificate's CDP lists the LDAP URL first: without directory options it fails and HTTP serves
    kinds = [(t['kind'], t['url'].split(':', 1)[0], t['ok']) for t in result['urls_tried']]
    assert ('base', 'ldap', False) in kinds and ('base', 'http', True) in kinds

    ca.publish_crls()                               # now in the base CRL as well
    rc, result = run(ansible, args)
    assert rc == 0, result
    assert result['revoked'] is True and result['certificate_status']['source'] in ('base', 'delta')
    base_only = dict(args, delta=False)
    rc, result = run(ansible, base_only)
    assert rc == 0 and result['certificate_status']['source'] == 'base'
    assert result['certificate_status']['reason'] == 'keyCompromise' and result['delta'] is None


def test_several_crls_over_one_connection(lab, ansible, issued):
    path, _cert = issued('crl-conn.lab.adcs.test')
    lab_stats(lab, reset=True)
    rc, result = run(ansible, dict(names(lab), certificate_path=path, check_certificate=True))
    assert rc == 0, result
    stats = lab_stats(lab)       # this request came over a connection of its own
    by_path = stats['by_path']
    assert by_path.get('/CertEnroll/ca1.lab.adcs.test_LAB-CA.crt') == 1
    assert by_path.get('/CertEnroll/LAB-CA.crl') == 1 and by_path.get('/CertEnroll/LAB-CA+.crl') == 1
    assert stats['requests'] == 4
    assert stats['connections'] == 2, stats     # the module's one connection + ours


def test_https_with_lab_tls_certificate(lab, ansible):
    url = lab_url(lab, 'LAB-CA.crl', 'https')
    args = dict(names(lab), urls=[url], issuer_certificate_path=lab['ca']['cert'], delta=False)
    rc, result = run(ansible, dict(args, ca_bundle=lab['ca_bundle']))
    assert rc == 0, result
    assert result['served_by'] == url
    rc, result = run(ansible, args)                # system trust store: the lab CA is unknown
    assert rc != 0
    assert 'TLS certificate of ca1.lab.adcs.test could not be verified' in result['msg']
    rc, result = run(ansible, dict(args, validate_certs=False))
    assert rc == 0, result
    # the host name is verified too: another name mapped to the same server is refused
    other = dict(names(lab), urls=['https://other.lab.adcs.test/CertEnroll/LAB-CA.crl'],
                 issuer_certificate_path=lab['ca']['cert'], delta=False, ca_bundle=lab['ca_bundle'])
    other['host_addresses']['other.lab.adcs.test'] = lab['ca']['address']
    rc, result = run(ansible, other)
    assert rc != 0 and 'could not be verified' in result['msg'] and 'other.lab.adcs.test' in result['msg']


def test_unreachable_url_falls_back(lab, ansible):
    dead = 'http://%s/CertEnroll/LAB-CA.crl' % DEAD_ADDR        # nothing listens there
    rc, result = run(ansible, dict(names(lab), urls=[dead, ip_url(lab, 'LAB-CA.crl')], timeout=5,
                                   issuer_certificate_path=lab['ca']['cert']))
    assert rc == 0, result
    assert result['served_by'] == ip_url(lab, 'LAB-CA.crl')
    first = result['urls_tried'][0]
    assert first['url'] == dead and first['ok'] is False and 'refused' in first['error'].lower()
    rc, result = run(ansible, dict(names(lab), urls=[dead], timeout=5, issuer_certificate_path=lab['ca']['cert']))
    assert rc != 0 and result['msg'].startswith('no usable CRL: %s' % dead)


def _lab_crl(lab):
    with open(os.path.join(lab['state_dir'], 'ca', 'CertEnroll', 'LAB-CA.crl'), 'rb') as handle:
        return handle.read()


def test_tampered_crl_rejected_and_never_written(lab, ansible, static, tmp_path):
    good = _lab_crl(lab)
    crl = x509.load_der_x509_crl(good)
    tampered = bytearray(good)
    tampered[len(tampered) - 10] ^= 0xFF            # inside the signature value
    # a CRL with the lab CA's name signed by another key
    impostor_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    impostor = (x509.CertificateRevocationListBuilder().issuer_name(crl.issuer)
                .last_update(datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=5))
                .next_update(datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1))
                .add_extension(x509.CRLNumber(10 ** 6), critical=False)
                .sign(impostor_key, hashes.SHA256()).public_bytes(serialization.Encoding.DER))
    static(TAMPER_ADDR, {'/tampered.crl': bytes(tampered), '/impostor.crl': impostor})
    dest = tmp_path / 'lab.crl'
    args = dict(names(lab), issuer_certificate_path=lab['ca']['cert'], dest=str(dest), delta=False)
    for name in ('tampered.crl', 'impostor.crl'):
        rc, result = run(ansible, dict(args, urls=['http://%s/%s' % (TAMPER_ADDR, name)]))
        assert rc != 0
        assert 'signature is invalid' in result['msg'], result['msg']
        assert not dest.exists()
    rc, result = run(ansible, dict(args, urls=['http://%s/tampered.crl' % TAMPER_ADDR, ip_url(lab, 'LAB-CA.crl')]))
    assert rc == 0, result
    assert result['changed'] is True and result['served_by'] == ip_url(lab, 'LAB-CA.crl')
    assert 'signature' in result['urls_tried'][0]['error']
    assert x509.load_pem_x509_crl(dest.read_bytes()).public_bytes(serialization.Encoding.DER) == \
        x509.load_der_x509_crl(_lab_crl(lab)).public_bytes(serialization.Encoding.DER)


def test_stale_crl_fails_or_warns(lab, ansible, ca, static):
    now = datetime.datetime.now(datetime.timezone.utc)
    current = x509.load_der_x509_crl(_lab_crl(lab))
    stale = (x509.CertificateRevocationListBuilder().issuer_name(current.issuer)
             .last_update(now - datetime.timedelta(days=9)).next_update(now - datetime.timedelta(days=2))
             .add_extension(x509.CRLNumber(1), critical=False)
             .sign(ca.ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.DER))
    static(TAMPER_ADDR, {'/stale.crl': stale})
    args = dict(names(lab), urls=['http://%s/stale.crl' % TAMPER_ADDR], issuer_certificate_path=lab['ca']['cert'])
    rc, result = run(ansible, args)
    assert rc != 0 and 'stale' in result['msg'] and 'has passed' in result['msg']
    rc, result = run(ansible, dict(args, freshness='warn'))
    assert rc == 0, result
    assert result['crl_number'] == 1 and any('stale' in w for w in result.get('warnings', []))
    # stale first, fresh second: the fresh one serves
    rc, result = run(ansible, dict(args, urls=args['urls'] + [ip_url(lab, 'LAB-CA.crl')]))
    assert rc == 0 and result['served_by'] == ip_url(lab, 'LAB-CA.crl')


def test_dest_written_only_when_the_crl_number_changes(lab, ansible, ca, tmp_path):
    dest = tmp_path / 'lab.crl'
    args = dict(names(lab), urls=[ip_url(lab, 'LAB-CA.crl')], issuer_certificate_path=lab['ca']['cert'],
                dest=str(dest), format='der', mode='0640')
    rc, result = run(ansible, args, check=True)
    assert rc == 0 and result['changed'] is True and not dest.exists()
    rc, result = run(ansible, args)
    assert rc == 0 and result['changed'] is True
    assert oct(os.stat(str(dest)).st_mode & 0o777) == '0o640'
    number = x509.load_der_x509_crl(dest.read_bytes())
    rc, result = run(ansible, args)
    assert rc == 0 and result['changed'] is False
    ca.publish_crls()
    rc, result = run(ansible, args, check=True)
    assert rc == 0 and result['changed'] is True
    assert x509.load_der_x509_crl(dest.read_bytes()).public_bytes(serialization.Encoding.DER) == \
        number.public_bytes(serialization.Encoding.DER)
    rc, result = run(ansible, args)
    assert rc == 0 and result['changed'] is True and result['crl_number'] > \
        number.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number


# ------------------------------------------------------------------------------------------------------------
# LDAP and DCOM
# ------------------------------------------------------------------------------------------------------------
def _cdp_dn(lab):
    return 'CN=LAB-CA,CN=CA1,CN=CDP,CN=Public Key Services,CN=Services,%s' % lab['config_dn']


def _publish_to_ldap_if_missing(lab):
    """The CDP object with the current CRLs (the lab publishes there itself once helper "policy" lands that)."""
    import ldap3
    acct = lab['accounts']['admin']
    tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=lab['ca_bundle'], valid_names=[lab['dc']['tls_name']])
    server = ldap3.Server(lab['dc']['address'], port=lab['dc']['ldaps_port'], use_ssl=True, tls=tls)
    conn = ldap3.Connection(server, user=acct['upn'], password=acct['password'], auto_bind=True)
    try:
        dn = _cdp_dn(lab)
        conn.search(dn, '(objectClass=cRLDistributionPoint)', search_scope=ldap3.BASE,
                    attributes=['certificateRevocationList', 'deltaRevocationList'])
        entries = [e for e in conn.response if e.get('type') == 'searchResEntry']
        if entries and entries[0]['raw_attributes'].get('certificateRevocationList'):
            return False
        base = _lab_crl(lab)
        with open(os.path.join(lab['state_dir'], 'ca', 'CertEnroll', 'LAB-CA+.crl'), 'rb') as handle:
            delta = handle.read()
        if not entries:
            assert conn.add(dn, ['top', 'cRLDistributionPoint'],
                            {'certificateRevocationList': [base], 'deltaRevocationList': [delta]}), conn.result
        else:
            assert conn.modify(dn, {'certificateRevocationList': [(ldap3.MODIFY_REPLACE, [base])],
                                    'deltaRevocationList': [(ldap3.MODIFY_REPLACE, [delta])]}), conn.result
        return True
    finally:
        conn.unbind()


def test_crl_from_the_cdp_object_in_ldap(lab, ansible):
    _publish_to_ldap_if_missing(lab)
    url = ('ldap:///%s?certificateRevocationList?base?objectClass=cRLDistributionPoint'
           % _cdp_dn(lab).replace(' ', '%20'))
    delta_url = url.replace('certificateRevocationList', 'deltaRevocationList')
    args = dict(names(lab), urls=[url], delta_urls=[delta_url], issuer_certificate_path=lab['ca']['cert'],
                freshness='warn', **ldap_login(lab))
    rc, result = run(ansible, args)
    assert rc == 0, result
    assert result['served_by'] == url and result['issuer'] == 'CN=LAB-CA,DC=lab,DC=adcs,DC=test'
    if result['delta'] is not None:
        assert result['delta']['served_by'] == delta_url
    # wrong password: the LDAP URL fails, the HTTP one serves
    bad = dict(args, password='wrong', urls=[url, ip_url(lab, 'LAB-CA.crl')], delta=False)
    rc, result = run(ansible, bad)
    assert rc == 0, result
    assert result['served_by'] == ip_url(lab, 'LAB-CA.crl')
    assert 'bind' in result['urls_tried'][0]['error'] or 'invalid' in result['urls_tried'][0]['error'].lower()


def test_crl_from_the_ca_over_dcom(lab, ansible, issued):
    path, _cert = issued('crl-dcom.lab.adcs.test')
    acct = lab['accounts']['enroller']
    rc, result = run(ansible, {'from_ca': True, 'ca_host': lab['ca']['address'], 'ca_name': lab['ca']['name'],
                               'domain': lab['domain'], 'username': acct['username'], 'password': acct['password'],
                               'certificate_path': path, 'check_certificate': True})
    assert rc == 0, result
    label = 'dcom://%s/%s' % (lab['ca']['address'], lab['ca']['name'])
    assert result['served_by'] == label + ' (base CRL)'
    assert result['issuer_certificate_source'] == label
    assert result['delta']['served_by'] == label + ' (delta CRL)'
    assert result['revoked'] is False
    # the same CRL as on the web server
    web = x509.load_der_x509_crl(_lab_crl(lab))
    assert result['crl_number'] == web.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number


def test_dcom_bad_password_is_a_clean_error(lab, ansible):
    rc, result = run(ansible, {'from_ca': True, 'ca_host': lab['ca']['address'], 'ca_name': lab['ca']['name'],
                               'domain': lab['domain'], 'username': 'enroller', 'password': 'wrong', 'timeout': 10})
    assert rc != 0
    assert result['msg'].startswith('cannot get the CA certificate from dcom://%s/LAB-CA: ' % lab['ca']['address'])
    assert 'GetCAProperty' in result['msg'] or 'refused' in result['msg'] or 'denied' in result['msg'].lower()
    assert 'Traceback' not in result['msg']
