# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""LDAP transport hygiene against the lab DC and a hostile DNS server (issue 12, item 8).

- ldap_scheme=ldap with a password is refused before anything is sent, with our message;
- ldap_allow_plaintext=true lets it through with a warning (the lab's Samba then refuses the simple bind itself);
- DC discovery: a forged SRV answer naming hosts outside the domain is refused; a DC inside the domain is used;
  an in-domain SRV target whose certificate does not name the domain (a member server, on 127.0.0.141:636) gets
  no bind.
  The hostile DNS server listens on 127.0.0.140:53; the module runs in a private mount namespace whose
  /etc/resolv.conf points there (unshare -m, we are root in the test container).
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import threading

import pytest
from conftest import AnsibleRunner

pytestmark = pytest.mark.lab

PYTHON = os.environ.get('ADCS_PYTHON', sys.executable)
DNS_ADDRESS = '127.0.0.140'


def run_module(args, extra_env=None):
    return AnsibleRunner(PYTHON).module('adcs.enrollment.wcce_template_info', args, extra_env=extra_env)


def login(lab, **extra):
    acct = lab['accounts']['enroller']
    args = {'domain': lab['domain'], 'domain_controller': lab['dc']['address'], 'ca_bundle': lab['ca_bundle'],
            'username': '%s@%s' % (acct['username'], lab['domain']), 'password': acct['password'],
            'names': ['WebServer']}
    args.update(extra)
    return args


def test_simple_bind_over_plain_ldap_is_refused(lab):
    args = login(lab, ldap_scheme='ldap')
    rc, result = run_module(args)
    assert rc != 0 and result['failed']
    assert result['msg'] == (
        'refusing plain LDAP: a simple bind over ldap_scheme=ldap sends the password of enroller@lab.adcs.test in '
        'clear text; use ldap_scheme=ldaps or ldap_scheme=starttls (with auth=password, ntlm or kerberos), or set '
        'ldap_allow_plaintext=true to accept the risk')
    assert lab['accounts']['enroller']['password'] not in repr(result)


def test_plain_ldap_opt_in_warns(lab):
    """With the opt-in the bind is sent, with a warning; the lab's Samba (ldap server require strong auth) refuses
    the simple bind over plain LDAP, so this also shows the server's answer surfaces in our words."""
    rc, result = run_module(login(lab, ldap_scheme='ldap', ldap_allow_plaintext=True))
    assert ('ldap_allow_plaintext=true: a simple bind over ldap_scheme=ldap sends the password of '
            'enroller@lab.adcs.test in clear text') in result.get('warnings', [])
    assert rc != 0, result
    assert 'strongerAuthRequired' in result['msg'], result['msg']
    assert 'the DC requires a signed or encrypted connection: use ldap_scheme=ldaps or starttls' in result['msg']


def test_validate_certs_false_warns(lab):
    rc, result = run_module(login(lab, validate_certs=False))
    assert rc == 0, result
    assert ('validate_certs=false: the TLS certificate of the domain controller is not verified, so anyone on the '
            'network path can read the bind credentials and change the replies') in result.get('warnings', [])


class HostileDns(object):
    """A tiny authoritative DNS server (dnspython messages over UDP) answering from a table; records the queries."""

    def __init__(self, address, srv, a_records):
        import dns.message  # noqa: F401 (dnspython is a test requirement through the collection)
        self.srv, self.a_records, self.queries = srv, a_records, []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((address, 53))
        self.sock.settimeout(0.2)
        self.stopped = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        import dns.message
        import dns.rcode
        import dns.rdataclass
        import dns.rdatatype
        import dns.rrset
        while not self.stopped:
            try:
                data, peer = self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            query = dns.message.from_wire(data)
            question = query.question[0]
            name = question.name.to_text().rstrip('.').lower()
            rdtype = dns.rdatatype.to_text(question.rdtype)
            self.queries.append((name, rdtype))
            response = dns.message.make_response(query)
            if rdtype == 'SRV' and name in self.srv:
                response.answer.append(dns.rrset.from_text_list(question.name, 60, 'IN', 'SRV', self.srv[name]))
            elif rdtype == 'A' and name in self.a_records:
                response.answer.append(dns.rrset.from_text_list(question.name, 60, 'IN', 'A', [self.a_records[name]]))
            elif rdtype != 'AAAA' or name not in self.a_records:
                response.set_rcode(dns.rcode.NXDOMAIN)
            self.sock.sendto(response.to_wire(), peer)

    def close(self):
        self.stopped = True
        self.thread.join(2)
        self.sock.close()


def run_with_resolver(tmp_path, args):
    """Run the module in a mount namespace whose /etc/resolv.conf names the hostile DNS server."""
    if os.geteuid() != 0 or not shutil.which('unshare'):
        pytest.fail('the hostile DNS test needs root and unshare (the test container has both)')
    resolv = tmp_path / 'resolv.conf'
    resolv.write_text('nameserver %s\noptions timeout:2 attempts:1\n' % DNS_ADDRESS)
    runner = AnsibleRunner(PYTHON)
    import json
    argv = ['unshare', '-m', 'sh', '-c', 'mount --bind "$0" /etc/resolv.conf && exec "$@"', str(resolv),
            os.path.join(runner.bindir, 'ansible'), 'localhost', '-i', 'localhost,', '-c', 'local',
            '-m', 'adcs.enrollment.wcce_template_info', '-a', json.dumps(args)]
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=runner.env(),
                          timeout=300, check=False)
    out = proc.stdout.decode('utf-8', 'replace')
    try:
        data = json.loads(out[out.index('{'):])
    except ValueError:
        raise AssertionError('no JSON: %s %s' % (out, proc.stderr.decode('utf-8', 'replace')))
    return proc.returncode, data['plays'][0]['tasks'][0]['hosts']['localhost']


@pytest.fixture
def dns_server(lab):
    servers = []

    def start(srv):
        server = HostileDns(DNS_ADDRESS, srv, {lab['dc']['hostname']: lab['dc']['address'],
                                               'dc.attacker.example': lab['dc']['address']})
        servers.append(server)
        return server
    yield start
    for server in servers:
        server.close()


def test_forged_srv_outside_the_domain_is_refused(lab, tmp_path, dns_server):
    domain = lab['domain']
    server = dns_server({'_ldap._tcp.dc._msdcs.%s' % domain: [
        '0 100 636 dc.attacker.example.', '1 100 636 %s.attacker.example.' % domain]})
    args = login(lab)
    del args['domain_controller']
    rc, result = run_with_resolver(tmp_path, args)
    assert rc != 0 and result['failed']
    assert result['msg'] == (
        'no domain controller found: the SRV record _ldap._tcp.dc._msdcs.%s names only hosts outside the domain %s '
        '(dc.attacker.example, %s.attacker.example); DNS answers are not authenticated, so these are refused: set '
        'domain_controller' % (domain, domain, domain))
    assert ('_ldap._tcp.dc._msdcs.%s' % domain, 'SRV') in server.queries
    assert not [q for q in server.queries if q[0] == 'dc.attacker.example']  # never even resolved


def test_srv_in_domain_target_is_used_and_verified(lab, tmp_path, dns_server):
    """A forged out-of-domain target first in priority is skipped; the lab DC, inside the domain, is used and its
    certificate verified for its DNS name (lab['dc']['hostname']) and found to name the domain (the lab's DC
    certificate carries the domain's DNS and NetBIOS names, as a Kerberos Authentication DC certificate does)."""
    domain = lab['domain']
    server = dns_server({'_ldap._tcp.dc._msdcs.%s' % domain: [
        '0 100 636 dc.attacker.example.', '10 100 636 %s.' % lab['dc']['hostname']]})
    args = login(lab)
    del args['domain_controller']
    rc, result = run_with_resolver(tmp_path, args)
    assert rc == 0, result
    assert result['domain_controller'] == lab['dc']['hostname']
    assert not [q for q in server.queries if q[0] == 'dc.attacker.example']


IMPOSTOR_ADDRESS = '127.0.0.141'


class TlsImpostor(object):
    """A host of the domain with a valid certificate from the lab CA for its own name only (web01.<domain>, not a
    DC): accepts one TLS connection on 636 and records every byte sent after the handshake (a bind would be)."""

    def __init__(self, lab, tmp_path, name):
        import ssl
        from cryptography.hazmat.primitives import serialization
        from adcslab import pki
        lab_pki = pki.ensure_pki(lab['state_dir'])   # loads the lab's PKI (created by the lab, never replaced)
        cert, key = pki._tls_certificate(name, IMPOSTOR_ADDRESS, lab_pki.ca_cert, lab_pki.ca_key)
        chain = tmp_path / 'impostor.pem'
        chain.write_bytes(cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(str(chain))
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((IMPOSTOR_ADDRESS, 636))
        self.sock.listen(5)
        self.sock.settimeout(60)
        self.handshakes, self.received = 0, b''
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        import ssl
        try:
            raw, _peer = self.sock.accept()
        except OSError:
            return
        raw.settimeout(20)
        try:
            with self.context.wrap_socket(raw, server_side=True) as tls:
                self.handshakes += 1
                while True:
                    data = tls.recv(4096)
                    if not data:
                        return
                    self.received += data
        except (OSError, ssl.SSLError):
            return

    def close(self):
        self.sock.close()
        self.thread.join(25)


def test_srv_target_in_the_domain_without_a_dc_certificate_gets_no_password(lab, tmp_path):
    """Security review item 4: a forged SRV answer names web01.<domain>, a member server with a valid certificate
    from the enterprise CA for its own name. The TLS handshake succeeds (chain and host name are fine), but the
    certificate does not name the domain as a DC's does: the module stops before the simple bind."""
    domain = lab['domain']
    web01 = 'web01.%s' % domain
    impostor = TlsImpostor(lab, tmp_path, web01)
    dns_server = HostileDns(DNS_ADDRESS, {'_ldap._tcp.dc._msdcs.%s' % domain: ['0 100 636 %s.' % web01]},
                            {web01: IMPOSTOR_ADDRESS})
    try:
        args = login(lab)
        del args['domain_controller']
        rc, result = run_with_resolver(tmp_path, args)
    finally:
        dns_server.close()
        impostor.close()
    assert rc != 0 and result['failed'], result
    assert (
        '%s: the TLS certificate of %s, found through DNS SRV, does not name the domain %s in its subject alternative '
        'names (it has DNS:%s), as a domain controller certificate from the Kerberos Authentication template does; '
        'DNS answers are not authenticated, so any host of the domain with a certificate from the CA could answer: '
        'nothing was sent to it. Set domain_controller to the DC you trust (its certificate is then verified for '
        'that name), or give the DCs a certificate from the Kerberos Authentication template'
        % (web01, web01, domain, web01)) in result['msg'], result['msg']
    assert impostor.handshakes == 1, 'the handshake with the impostor completed (its certificate chain is valid)'
    assert impostor.received == b'', 'no LDAP message (no bind, no password) reached the impostor'
    assert lab['accounts']['enroller']['password'] not in json.dumps(result)


# ------------------------------------------------------------------------------------------------------------
# Every auth method against the DC that requires strong auth, with no krb5.conf (issue 14 item 7)
# ------------------------------------------------------------------------------------------------------------
NO_KRB5_CONF = {'KRB5_CONFIG': '/nonexistent/krb5.conf'}


def _kinit(lab, tmp_path):
    """A FILE ccache of enroller made by kinit (kinit itself needs the lab's krb5.conf; the module does not)."""
    if not shutil.which('kinit'):
        pytest.fail('kinit is missing (the test container has MIT krb5-user)')
    acct = lab['accounts']['enroller']
    cache = str(tmp_path / 'krb5cc')
    subprocess.run(['kinit', '-c', 'FILE:' + cache, '%s@%s' % (acct['username'], lab['realm'])],
                   input=acct['password'] + '\n', env=dict(os.environ, KRB5_CONFIG=lab['dc']['krb5_conf']),
                   check=True, capture_output=True, text=True, timeout=30)
    return cache


@pytest.mark.parametrize('method', ['password-ldaps', 'password-starttls', 'kerberos-password', 'kerberos-nt-hash',
                                    'kerberos-keytab', 'kerberos-keytab-starttls', 'kerberos-ccache'])
def test_every_auth_method_binds_with_strong_auth_and_no_krb5_conf(lab, tmp_path, method):
    """The lab DC refuses simple binds in clear text (strong auth); each auth method of the collection binds over
    TLS, and Kerberos (password, NT hash, keytab, ccache) gets its tickets from the DC itself: KRB5_CONFIG names a
    file that does not exist (before, a keytab failed with "Cannot find KDC for realm")."""
    enroller, computer = lab['accounts']['enroller'], lab['accounts']['computer']
    args = {'domain': lab['domain'], 'domain_controller': lab['dc']['address'], 'ca_bundle': lab['ca_bundle'],
            'names': ['WebServer'], 'include_raw': False}
    who = enroller
    upn = '%s@%s' % (enroller['username'], lab['domain'])
    if method.startswith('password'):
        args.update(username=upn, password=enroller['password'], ldap_scheme=method.split('-')[1])
    elif method == 'kerberos-password':
        args.update(auth='kerberos', username=upn, password=enroller['password'])
    elif method == 'kerberos-nt-hash':
        args.update(auth='kerberos', username=upn, nt_hash=enroller['nt_hash'])
    elif method.startswith('kerberos-keytab'):
        who = computer
        args.update(auth='kerberos', username=computer['username'], kerberos_keytab=computer['keytab'])
        if method.endswith('starttls'):
            args['ldap_scheme'] = 'starttls'
    else:
        args.update(auth='kerberos', kerberos_ccache=_kinit(lab, tmp_path))    # the principal is the ccache's
    rc, result = run_module(args, extra_env=NO_KRB5_CONF)
    assert rc == 0, result
    assert result['principal']['sid'] == who['sid'], result['principal']
    assert result['templates'][0]['name'] == 'WebServer'
    assert who['password'] not in json.dumps(result) and who['nt_hash'] not in json.dumps(result)


def test_kerberos_keytab_without_the_principal_is_reported(lab):
    """A keytab that has no key for the principal asked for: our message (no KDC lookup through krb5.conf)."""
    computer = lab['accounts']['computer']
    args = {'domain': lab['domain'], 'domain_controller': lab['dc']['address'], 'ca_bundle': lab['ca_bundle'],
            'names': ['WebServer'], 'auth': 'kerberos', 'username': 'enroller', 'kerberos_keytab': computer['keytab']}
    rc, result = run_module(args, extra_env=NO_KRB5_CONF)
    assert rc != 0, result
    assert ('Kerberos for LDAP failed: The keytab %s has no key for enroller@LAB.ADCS.TEST' % computer['keytab']
            in result['msg']), result['msg']
    assert 'Cannot find KDC' not in result['msg'] and 'Traceback' not in result['msg']
