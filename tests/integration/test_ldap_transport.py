# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""LDAP transport hygiene against the lab DC and a hostile DNS server (issue 12, item 8).

- ldap_scheme=ldap with a password is refused before anything is sent, with our message;
- ldap_allow_plaintext=true lets it through with a warning (the lab's Samba then refuses the simple bind itself);
- DC discovery: a forged SRV answer naming hosts outside the domain is refused; a DC inside the domain is used.
  The hostile DNS server listens on 127.0.0.140:53; the module runs in a private mount namespace whose
  /etc/resolv.conf points there (unshare -m, we are root in the test container).
"""

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
    if rc == 0:
        assert result['templates'][0]['name'] == 'WebServer'
    else:
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
    certificate verified for its DNS name (lab['dc']['hostname'])."""
    domain = lab['domain']
    server = dns_server({'_ldap._tcp.dc._msdcs.%s' % domain: [
        '0 100 636 dc.attacker.example.', '10 100 636 %s.' % lab['dc']['hostname']]})
    args = login(lab)
    del args['domain_controller']
    rc, result = run_with_resolver(tmp_path, args)
    assert rc == 0, result
    assert result['domain_controller'] == lab['dc']['hostname']
    assert not [q for q in server.queries if q[0] == 'dc.attacker.example']
