# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""adcs.enrollment.wcce_crl against the lab CA: HTTP(S) on 127.0.0.12, the CDP object in the lab AD, DCOM, and
tampered / stale / unreachable sources served from 127.0.0.74-76."""

import datetime
import http.client
import json
import os
import shutil
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ansible_collections.adcs.enrollment.tests.unit.plugins.support.crl_web import RawServer, close_listener

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
    args = dict(names(lab), certificate_path=path, check_certificate=True, ca_bundle=lab['ca_bundle'])
    rc, result = run(ansible, args)
    assert rc == 0, result
    assert result['revoked'] is False
    assert result['issuer_certificate_source'] == lab_url(lab, lab['ca']['aia_file'])

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
    rc, result = run(ansible, dict(names(lab), certificate_path=path, check_certificate=True,
                                   ca_bundle=lab['ca_bundle']))
    assert rc == 0, result
    stats = lab_stats(lab)       # this request came over a connection of its own
    by_path = stats['by_path']
    assert by_path.get('/CertEnroll/' + lab['ca']['aia_file']) == 1
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
    assert 'TLS certificate of %s could not be verified' % lab['ca']['hostname'] in result['msg']
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
    return 'CN=LAB-CA,%s' % lab['ca']['cdp_container']


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


def test_pipe_mode_returns_the_crl_and_writes_nothing(lab, ansible, tmp_path):
    args = dict(names(lab), urls=[ip_url(lab, 'LAB-CA.crl')], issuer_certificate_path=lab['ca']['cert'],
                return_content=True)
    rc, result = run(ansible, args)
    assert rc == 0 and result['changed'] is True, result
    crl = x509.load_pem_x509_crl(result['crl'].encode('ascii'))
    assert crl.issuer.rfc4514_string() == 'CN=LAB-CA,DC=lab,DC=adcs,DC=test'
    assert list(tmp_path.iterdir()) == []
    rc, again = run(ansible, dict(args, current_crl=result['crl']))
    assert rc == 0 and again['changed'] is False and again['crl'] == result['crl']
    rc, result = run(ansible, dict(args, dest=str(tmp_path / 'x.crl')))
    assert rc != 0 and not (tmp_path / 'x.crl').exists()
    assert result['msg'] == 'return_content returns the CRL instead of writing it: it excludes dest and delta_dest'


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


def test_crl_from_the_ca_with_kerberos_keytab_and_ccache(lab, ansible, tmp_path):
    """Issue 13 drift: from_ca ignored kerberos_keytab, kerberos_ccache and domain_controller. The machine keytab
    (principal from the option or, without username, <HOST>$ of the keytab's account) and a ccache made by kinit
    both get the CRL; the CA is named by its DNS name (service ticket) and reached at its address."""
    comp = lab['accounts']['computer']
    base = {'from_ca': True, 'ca_host': lab['ca']['hostname'], 'ca_name': lab['ca']['name'], 'auth': 'kerberos',
            'domain': lab['domain'], 'domain_controller': lab['dc']['address'], 'delta': False,
            'host_addresses': {lab['ca']['hostname']: lab['ca']['address']}}
    label = 'dcom://%s/%s (base CRL)' % (lab['ca']['hostname'], lab['ca']['name'])
    rc, result = run(ansible, dict(base, username='%s@%s' % (comp['username'], lab['domain']),
                                   kerberos_keytab=comp['keytab']))
    assert rc == 0, result
    assert result['served_by'] == label and result['issuer'] == 'CN=LAB-CA,DC=lab,DC=adcs,DC=test'
    if not shutil.which('kinit'):
        pytest.skip('no kinit')
    acct = lab['accounts']['enroller']
    cc = str(tmp_path / 'krb5cc')
    env = dict(os.environ, KRB5_CONFIG=lab['dc']['krb5_conf'])
    subprocess.run(['kinit', '-c', 'FILE:' + cc, '%s@%s' % (acct['username'], lab['realm'])],
                   input=acct['password'] + '\n', env=env, check=True, capture_output=True, text=True, timeout=30)
    rc, result = run(ansible, dict(base, kerberos_ccache=cc))       # the principal is the ccache's own
    assert rc == 0, result
    assert result['served_by'] == label


def test_dcom_bad_password_is_a_clean_error(lab, ansible):
    rc, result = run(ansible, {'from_ca': True, 'ca_host': lab['ca']['address'], 'ca_name': lab['ca']['name'],
                               'domain': lab['domain'], 'username': 'enroller', 'password': 'wrong', 'timeout': 10})
    assert rc != 0
    assert result['msg'].startswith('cannot get the CA certificate from dcom://%s/LAB-CA: ' % lab['ca']['address'])
    assert 'GetCAProperty' in result['msg'] or 'refused' in result['msg'] or 'denied' in result['msg'].lower()
    assert 'Traceback' not in result['msg']


# ------------------------------------------------------------------------------------------------------------
# hostile certificates and servers (issue 12 item 5), on 127.0.0.110-119
# ------------------------------------------------------------------------------------------------------------
LDAP_TRAP_ADDR = '127.0.0.110'
DOWNGRADE_ADDR = '127.0.0.111'
ENDLESS_ADDR = '127.0.0.112'
DRIP_ADDR = '127.0.0.113'
ROLLBACK_ADDR = '127.0.0.114'
LOCAL_REFUSED = ('a local file named by a certificate or CRL is never read (file URLs and paths are taken only from '
                 'the urls and delta_urls options)')


def _lab_ca_cert(lab):
    with open(lab['ca']['cert'], 'rb') as handle:
        return x509.load_pem_x509_certificate(handle.read())


def hostile_certificate(lab, ca, tmp_path, cn, cdp=(), aia=(), signer=None, issuer=None):
    """A leaf naming the lab CA as issuer (signed by its key unless ``signer``), with the CDP/AIA URLs we want."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import AuthorityInformationAccessOID, NameOID
    issuer = issuer or _lab_ca_cert(lab)
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
               .issuer_name(issuer.subject).public_key(ec.generate_private_key(ec.SECP256R1()).public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.public_key()),
                              critical=False))
    if cdp:
        builder = builder.add_extension(x509.CRLDistributionPoints([x509.DistributionPoint(
            full_name=[x509.UniformResourceIdentifier(u) for u in cdp], relative_name=None, reasons=None,
            crl_issuer=None)]), critical=False)
    if aia:
        builder = builder.add_extension(x509.AuthorityInformationAccess([
            x509.AccessDescription(AuthorityInformationAccessOID.CA_ISSUERS, x509.UniformResourceIdentifier(u))
            for u in aia]), critical=False)
    cert = builder.sign(signer or ca.ca_key, hashes.SHA256())
    path = tmp_path / ('%s.pem' % cn)
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return str(path)


class ThrowawayPki(object):
    """A CA of the test's own and TLS server certificates it issues (for hostile TLS servers)."""

    def __init__(self, directory):
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
        self.dir = directory
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        self.name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, 'Throwaway Test CA')])
        self.cert = (x509.CertificateBuilder().subject_name(self.name).issuer_name(self.name)
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(now - datetime.timedelta(days=1))
                     .not_valid_after(now + datetime.timedelta(days=30))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                     .sign(self.key, hashes.SHA256()))
        self.ca_path = str(directory / 'throwaway-ca.pem')
        with open(self.ca_path, 'wb') as handle:
            handle.write(self.cert.public_bytes(serialization.Encoding.PEM))

    def server_context(self, dns_name):
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_name)]))
                .issuer_name(self.name).public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(dns_name)]), critical=False)
                .sign(self.key, hashes.SHA256()))
        cert_path, key_path = str(self.dir / ('%s.pem' % dns_name)), str(self.dir / ('%s.key' % dns_name))
        with open(cert_path, 'wb') as handle:
            handle.write(cert.public_bytes(serialization.Encoding.PEM))
        with open(key_path, 'wb') as handle:
            handle.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_path, key_path)
        return context


class LdapTrap(object):
    """A fake LDAP server (389 plain, 636 TLS) that answers binds with success and records every connection and every
    bind with its credentials: what a server named in a planted certificate's CDP would harvest."""

    def __init__(self, address, tls_context):
        import socket
        self.connections = 0
        self.binds = []
        self.socks = []
        for port, context in ((389, None), (636, tls_context)):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((address, port))
            sock.listen(5)
            self.socks.append(sock)
            threading.Thread(target=self._accept, args=(sock, context), daemon=True).start()

    def _accept(self, sock, context):
        while True:
            try:
                conn, _addr = sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn, context), daemon=True).start()

    @staticmethod
    def _length(data, index):
        first = data[index]
        if first < 0x80:
            return first, index + 1
        count = first & 0x7F
        return int.from_bytes(data[index + 1:index + 1 + count], 'big'), index + 1 + count

    def _serve(self, conn, context):
        try:
            if context is not None:
                conn = context.wrap_socket(conn, server_side=True)
            buf = b''
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
                while len(buf) > 2:
                    length, start = self._length(buf, 1)
                    if len(buf) < start + length:
                        break
                    message, buf = buf[start:start + length], buf[start + length:]
                    if not self._answer(conn, message):
                        return
        except (OSError, IndexError, ValueError):
            return
        finally:
            conn.close()

    def _answer(self, conn, message):
        id_len, index = self._length(message, 1)
        msgid = message[index:index + id_len]
        index += id_len
        tag = message[index]
        op_len, op_start = self._length(message, index + 1)
        op = message[op_start:op_start + op_len]
        head = b'\x02' + bytes([len(msgid)]) + msgid
        if tag == 0x60:                                 # BindRequest: version, name, authentication
            ver_len, at = self._length(op, 1)
            at += ver_len
            name_len, name_at = self._length(op, at + 1)
            name = op[name_at:name_at + name_len]
            auth_tag = op[name_at + name_len]
            secret_len, secret_at = self._length(op, name_at + name_len + 1)
            self.binds.append((name.decode('utf-8', 'replace'), auth_tag, op[secret_at:secret_at + secret_len]))
            body = head + b'\x61\x07\x0a\x01\x00\x04\x00\x04\x00'      # bindResponse success
        elif tag == 0x63:                               # SearchRequest: noSuchObject
            body = head + b'\x65\x07\x0a\x01\x20\x04\x00\x04\x00'
        else:                                           # unbind, StartTLS, anything else: hang up
            return False
        conn.sendall(b'\x30' + bytes([len(body)]) + body)
        return True

    def close(self):
        for sock in self.socks:
            close_listener(sock)


@pytest.fixture
def throwaway(tmp_path):
    return ThrowawayPki(tmp_path)


@pytest.fixture
def ldap_trap(throwaway):
    trap = LdapTrap(LDAP_TRAP_ADDR, throwaway.server_context('dc.evil.test'))
    yield trap
    trap.close()


def _trap_urls(lab):
    query = '%s?certificateRevocationList?base?objectClass=cRLDistributionPoint' % _cdp_dn(lab).replace(' ', '%20')
    return ['ldap://%s/%s' % (LDAP_TRAP_ADDR, query), 'ldaps://%s:636/%s' % (LDAP_TRAP_ADDR, query)]


def test_ldap_trap_records_credentials(ldap_trap):
    """The trap works: a client that binds to it hands over its password (what wcce_crl did before)."""
    import ldap3
    conn = ldap3.Connection(ldap3.Server(LDAP_TRAP_ADDR, port=389), user='probe@lab.adcs.test',
                            password='Pr0be!secret')
    assert conn.bind()
    conn.unbind()
    assert ldap_trap.binds == [('probe@lab.adcs.test', 0x80, b'Pr0be!secret')]


def test_ldap_cdp_of_a_certificate_never_gets_the_credentials(lab, ansible, ca, ldap_trap, tmp_path):
    _publish_to_ldap_if_missing(lab)
    urls = _trap_urls(lab)
    path = hostile_certificate(lab, ca, tmp_path, 'ldap-trap.lab.adcs.test', cdp=urls)
    args = dict(names(lab), certificate_path=path, issuer_certificate_path=lab['ca']['cert'], check_certificate=True,
                freshness='warn', delta=False, **ldap_login(lab))
    rc, result = run(ansible, args)
    assert rc == 0, result
    # the object the URL names was read from the configured DC: the trap saw nothing at all
    assert result['served_by'] == urls[0] and result['revoked'] is False
    assert ldap_trap.connections == 0 and ldap_trap.binds == []
    # with a domain instead of a domain controller (DNS SRV), and over ldaps in the URL: the same
    args_srv = dict(args)
    args_srv.pop('domain_controller')
    ldaps_only = hostile_certificate(lab, ca, tmp_path, 'ldaps-trap.lab.adcs.test', cdp=urls[1:])
    rc, result = run(ansible, dict(args_srv, certificate_path=ldaps_only))
    # (the host's resolver does not know the lab's SRV records: the DC is looked up there, never taken from the URL)
    assert rc != 0 and result['urls_tried'][0]['error'].startswith(
        'no domain controller found: DNS SRV lookup of _ldap._tcp.dc._msdcs.%s failed' % lab['domain'])
    assert ldap_trap.connections == 0 and ldap_trap.binds == []
    # credentials but no directory configured: the URL's host is still not contacted, the failure says why
    login = ldap_login(lab)
    rc, result = run(ansible, dict(names(lab), certificate_path=path, issuer_certificate_path=lab['ca']['cert'],
                                   username=login['username'], password=login['password']))
    assert rc != 0
    assert result['msg'] == ('no usable CRL: %s: LDAP URLs are read from the configured directory: set domain or '
                             'domain_controller (a host named by a certificate or CRL is never contacted); %s: LDAP '
                             'URLs are read from the configured directory: set domain or domain_controller (a host '
                             'named by a certificate or CRL is never contacted)' % (urls[0], urls[1]))
    assert ldap_trap.connections == 0 and ldap_trap.binds == []


def test_https_to_http_redirect_is_refused(lab, ansible, throwaway):
    context = throwaway.server_context('pki.evil.test')
    served = []

    class Redirect(BaseHTTPRequestHandler):
        protocol_version = 'HTTP/1.1'

        def log_message(self, *args):
            pass

        def do_GET(self):  # noqa: N802
            served.append(('https' if isinstance(self.connection, ssl.SSLSocket) else 'http', self.path))
            if isinstance(self.connection, ssl.SSLSocket):
                self.send_response(302)
                self.send_header('Location', 'http://%s/CertEnroll/LAB-CA.crl' % DOWNGRADE_ADDR)
                body = b''
            else:
                self.send_response(200)
                body = _lab_crl(lab)
            self.send_header('Content-Length', str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    servers = []
    for port, tls in ((443, True), (80, False)):
        httpd = ThreadingHTTPServer((DOWNGRADE_ADDR, port), Redirect)
        if tls:
            httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
        httpd.daemon_threads = True
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        servers.append(httpd)
    try:
        url = 'https://pki.evil.test/CertEnroll/LAB-CA.crl'
        args = dict(names(lab), urls=[url], ca_bundle=throwaway.ca_path, issuer_certificate_path=lab['ca']['cert'],
                    delta=False)
        args['host_addresses']['pki.evil.test'] = DOWNGRADE_ADDR
        rc, result = run(ansible, args)
        assert rc != 0
        error = ('refused the redirect from https to http (%s -> http://%s/CertEnroll/LAB-CA.crl)'
                 % (url, DOWNGRADE_ADDR))
        assert result['urls_tried'][0]['error'] == error
        assert result['msg'] == 'no usable CRL: %s: %s' % (url, error)
        assert served == [('https', '/CertEnroll/LAB-CA.crl')]        # the http URL was never asked
    finally:
        for httpd in servers:
            httpd.shutdown()
            httpd.server_close()


@pytest.fixture
def raw_http():
    servers = []

    def start(address, serve):
        server = RawServer(serve, address, 80)
        servers.append(server)
        return server
    yield start
    for server in servers:
        server.close()


def test_endless_body_is_cut_at_max_size(lab, ansible, raw_http):
    def endless(server, conn):
        conn.sendall(b'HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n')
        chunk = b'\0' * 65536
        while not server.stop.is_set():
            conn.sendall(chunk)
            server.sent += len(chunk)
    server = raw_http(ENDLESS_ADDR, endless)
    url = 'http://%s/endless.crl' % ENDLESS_ADDR
    args = dict(names(lab), urls=[url], issuer_certificate_path=lab['ca']['cert'])
    rc, result = run(ansible, args)
    assert rc != 0
    assert result['msg'] == 'no usable CRL: %s: the response is larger than max_size (20971520 bytes)' % url
    rc, result = run(ansible, dict(args, max_size=1048576))
    assert rc != 0 and result['urls_tried'][0]['error'] == 'the response is larger than max_size (1048576 bytes)'
    assert server.sent < 64 * 1048576            # it stopped reading: the server could not send much more


def test_slow_drip_server_hits_the_total_deadline(lab, ansible, raw_http):
    import time

    def drip(server, conn):
        conn.sendall(b'HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n')
        while not server.stop.is_set():
            conn.sendall(b'0')                     # one byte every 0.2 s: no single read ever times out
            server.sent += 1
            time.sleep(0.2)
    server = raw_http(DRIP_ADDR, drip)
    url = 'http://%s/drip.crl' % DRIP_ADDR
    started = time.monotonic()
    rc, result = run(ansible, dict(names(lab), urls=[url, ip_url(lab, 'LAB-CA.crl')], timeout=3, delta=False,
                                   issuer_certificate_path=lab['ca']['cert']))
    elapsed = time.monotonic() - started
    assert rc == 0, result
    assert result['urls_tried'][0]['error'] == ('no complete answer within 3 s (timeout: the total for connecting, '
                                                'redirects and reading)')
    assert result['served_by'] == ip_url(lab, 'LAB-CA.crl')          # and the next URL served
    assert server.sent >= 10
    assert elapsed < 3 + 20, elapsed


def test_local_cdp_of_a_certificate_is_never_read(lab, ansible, ca, tmp_path):
    import time
    fifo = tmp_path / 'crl.fifo'
    os.mkfifo(str(fifo))
    http_cdp = ip_url(lab, 'LAB-CA.crl')
    for local in ('file:///dev/zero', '/dev/zero', 'file://%s' % fifo, str(fifo)):
        path = hostile_certificate(lab, ca, tmp_path, 'local-cdp.lab.adcs.test', cdp=[local, http_cdp])
        started = time.monotonic()
        rc, result = run(ansible, dict(names(lab), certificate_path=path, issuer_certificate_path=lab['ca']['cert'],
                                       check_certificate=True, delta=False, timeout=10))
        assert rc == 0, result
        assert time.monotonic() - started < 30
        assert result['urls_tried'][0] == {'url': local, 'kind': 'base', 'ok': False, 'error': LOCAL_REFUSED}
        assert result['served_by'] == http_cdp and result['revoked'] is False
    path = hostile_certificate(lab, ca, tmp_path, 'zero-cdp.lab.adcs.test', cdp=['file:///dev/zero'])
    rc, result = run(ansible, dict(names(lab), certificate_path=path, issuer_certificate_path=lab['ca']['cert']))
    assert rc != 0 and result['msg'] == 'no usable CRL: file:///dev/zero: %s' % LOCAL_REFUSED
    # from the options: a regular file is read, a device or FIFO is refused without blocking
    local_crl = tmp_path / 'lab.crl'
    local_crl.write_bytes(_lab_crl(lab))
    rc, result = run(ansible, dict(names(lab), urls=['file://%s' % local_crl], delta=False,
                                   issuer_certificate_path=lab['ca']['cert']))
    assert rc == 0 and result['served_by'] == 'file://%s' % local_crl
    rc, result = run(ansible, dict(names(lab), urls=[str(fifo), '/dev/zero'], delta=False,
                                   issuer_certificate_path=lab['ca']['cert']))
    assert rc != 0
    assert result['msg'] == 'no usable CRL: %s: %s is not a regular file; /dev/zero: /dev/zero is not a regular file' \
        % (fifo, fifo)


def test_older_crl_does_not_replace_a_newer_one(lab, ansible, ca, static, tmp_path):
    dest = tmp_path / 'lab.crl'
    args = dict(names(lab), issuer_certificate_path=lab['ca']['cert'], dest=str(dest), delta=False)
    rc, result = run(ansible, dict(args, urls=[ip_url(lab, 'LAB-CA.crl')]))
    assert rc == 0 and result['changed'] is True, result
    current = x509.load_pem_x509_crl(dest.read_bytes())
    number = current.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    now = datetime.datetime.now(datetime.timezone.utc)
    older = (x509.CertificateRevocationListBuilder().issuer_name(current.issuer)
             .last_update(now - datetime.timedelta(hours=1)).next_update(now + datetime.timedelta(days=1))
             .add_extension(x509.CRLNumber(number - 1), critical=False)
             .add_extension(current.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value,
                            critical=False)
             .sign(ca.ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.DER))
    static(ROLLBACK_ADDR, {'/older.crl': older})
    before = dest.read_bytes()
    replay = dict(args, urls=['http://%s/older.crl' % ROLLBACK_ADDR])
    rc, result = run(ansible, replay)
    assert rc != 0
    assert result['msg'] == ('%s: the fetched CRL (CRL number %d) is older than the one already there (CRL number %d, '
                             'same issuer and key); the file is kept (force=true replaces it)'
                             % (dest, number - 1, number))
    assert dest.read_bytes() == before
    rc, result = run(ansible, dict(replay, force=True))
    assert rc == 0 and result['changed'] is True and result['crl_number'] == number - 1
    assert x509.load_pem_x509_crl(dest.read_bytes()).public_bytes(serialization.Encoding.DER) == older


PLANTED_ADDR = '127.0.0.115'


def test_planted_certificate_with_fake_aia_and_crl_is_not_good(lab, ansible, issued, static, tmp_path, ca):
    """Someone plants a certificate in the lab CA's name, signed by their own "LAB-CA", whose AIA and CDP point to
    their server: it must not come out as "not revoked"."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    real = _lab_ca_cert(lab)
    fake_key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    fake_ca = (x509.CertificateBuilder().subject_name(real.subject).issuer_name(real.subject)
               .public_key(fake_key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
               .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
               .sign(fake_key, hashes.SHA256()))
    fake_crl = (x509.CertificateRevocationListBuilder().issuer_name(real.subject)
                .last_update(now - datetime.timedelta(hours=1)).next_update(now + datetime.timedelta(days=1))
                .add_extension(x509.CRLNumber(10 ** 6), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(fake_key.public_key()),
                               critical=False)
                .sign(fake_key, hashes.SHA256()))
    static(PLANTED_ADDR, {'/ca.crt': fake_ca.public_bytes(serialization.Encoding.DER),
                          '/fake.crl': fake_crl.public_bytes(serialization.Encoding.DER)})
    path = hostile_certificate(lab, ca, tmp_path, 'planted.lab.adcs.test', cdp=['http://%s/fake.crl' % PLANTED_ADDR],
                               aia=['http://%s/ca.crt' % PLANTED_ADDR], signer=fake_key, issuer=fake_ca)
    untrusted = ('the issuing CA certificate of "CN=LAB-CA,DC=lab,DC=adcs,DC=test" could not be obtained from its AIA '
                 '(http://%s/ca.crt: the CA certificate "CN=LAB-CA,DC=lab,DC=adcs,DC=test" is not trusted: it neither '
                 'is nor was issued by a CA certificate of ca_bundle (or, without ca_bundle, of the system trust '
                 'store)): set issuer_certificate, or ca_bundle to the CA certificates it must chain to' % PLANTED_ADDR)
    for extra in ({'ca_bundle': lab['ca_bundle']}, {}):
        rc, result = run(ansible, dict(names(lab), certificate_path=path, check_certificate=True, **extra))
        assert rc != 0 and 'revoked' not in result
        assert result['msg'] == untrusted
    # with the real CA certificate the fake CRL is refused too
    rc, result = run(ansible, dict(names(lab), certificate_path=path, check_certificate=True,
                                   issuer_certificate_path=lab['ca']['cert']))
    assert rc != 0 and 'revoked' not in result
    assert result['msg'].startswith('no usable CRL: http://%s/fake.crl: the CRL authority key identifier' % PLANTED_ADDR)
    # a certificate the lab CA really issued, with its real AIA: the issuer chains to ca_bundle and is used
    real_path, _cert = issued('crl-anchored.lab.adcs.test')
    rc, result = run(ansible, dict(names(lab), certificate_path=real_path, check_certificate=True,
                                   ca_bundle=lab['ca_bundle']))
    assert rc == 0 and result['revoked'] is False, result
    assert result['issuer_certificate_source'] == lab_url(lab, lab['ca']['aia_file'])
