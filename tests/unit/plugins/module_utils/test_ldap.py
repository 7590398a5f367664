# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""AdConnection against a mocked ldap3 Connection: bind paths (simple, NTLM incl. NT hash), transport (LDAPS,
StartTLS, plain), DC discovery through DNS SRV and the DC certificate check."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import socket

import pytest

ldap3 = pytest.importorskip('ldap3')

from ansible_collections.adcs.enrollment.plugins.module_utils import _ldap
from ansible_collections.adcs.enrollment.tests.unit.plugins.support.ldap import (
    BASE, CONFIG, CERTS, tls_certificate, FakeConnection, FakeServer, make, SRV, FakeResolver, discovered,
)


@pytest.fixture(autouse=True)
def _reset():
    FakeConnection.instances = []
    yield


# ------------------------------------------------------------------------------------------------------------
# binds
# ------------------------------------------------------------------------------------------------------------

def test_ntlm_bind_with_password():
    conn = make(auth='ntlm', username='LAB\\enroller', password='password').connect()
    fake = FakeConnection.instances[0]
    assert fake.kwargs['authentication'] == ldap3.NTLM
    assert fake.kwargs['user'] == 'LAB\\enroller'
    # the password goes to ldap3 as its NT hash (ldap3's own MD4 needs hashlib md4, missing with OpenSSL 3)
    assert fake.kwargs['password'] == 'aad3b435b51404eeaad3b435b51404ee:8846f7eaee8fb117ad06bdd830b7586c'
    assert fake.calls[:2] == ['open', 'bind']
    assert conn.default_nc == BASE and conn.configuration_nc == CONFIG
    assert fake.server.kwargs['use_ssl'] is True and fake.server.kwargs['port'] == 636


def test_ntlm_bind_with_nt_hash_uses_ldap3_hash_form():
    make(auth='ntlm', username='enroller@lab.adcs.test', nt_hash='0123456789ABCDEF0123456789abcdef').connect()
    fake = FakeConnection.instances[0]
    assert fake.kwargs['user'] == 'LAB\\enroller'
    assert fake.kwargs['password'] == 'aad3b435b51404eeaad3b435b51404ee:0123456789abcdef0123456789abcdef'


def test_ntlm_hash_form_is_what_ldap3_ntlm_client_accepts():
    """ldap3's NTLM client must take our 'LM:NT' string as a hash, not as a password."""
    from ldap3.utils.ntlm import NtlmClient
    nt = '8846f7eaee8fb117ad06bdd830b7586c'  # NT hash of 'password'
    client = NtlmClient('LAB', 'enroller', 'aad3b435b51404eeaad3b435b51404ee:' + nt)
    client.user_domain = 'LAB'
    by_hash = client.ntowf_v2()
    import hashlib
    import hmac
    expected = hmac.new(bytes.fromhex(nt), 'ENROLLERLAB'.encode('utf-16-le'), digestmod=hashlib.md5).digest()
    assert by_hash == expected  # NTOWFv2 (MS-NLMP 3.3.2) computed from the hash


def test_nt_hash_of():
    assert _ldap.nt_hash_of('password') == '8846f7eaee8fb117ad06bdd830b7586c'


def test_ntlm_bare_username_takes_domain_option():
    make(auth='ntlm', username='enroller', password='x', domain='lab.adcs.test').connect()
    assert FakeConnection.instances[0].kwargs['user'] == 'LAB\\enroller'


@pytest.mark.parametrize('kwargs,message', [
    (dict(auth='ntlm', username='LAB\\enroller'), 'password or nt_hash'),
    (dict(auth='ntlm', username='LAB\\enroller', nt_hash='xyz'), '32 hexadecimal'),
    (dict(auth='ntlm', username='enroller', password='x', domain=None, domain_controller='dc'), 'needs a domain'),
    (dict(auth='password', username='enroller'), 'needs username and password'),
])
def test_bind_option_errors(kwargs, message):
    with pytest.raises(_ldap.LdapError) as exc:
        make(**kwargs).connect()
    assert message in str(exc.value)


def test_ntlm_bind_failure_message():
    conn = make(auth='ntlm', username='LAB\\enroller', password='bad')

    def factory(server, **kwargs):
        fake = FakeConnection(server, **kwargs)
        fake.bind_ok = False
        fake.bind_result = {'result': 49, 'description': 'invalidCredentials', 'message': '80090308: LdapErr: DSID-0C09044E'}
        return fake
    conn._connection_factory = factory
    with pytest.raises(_ldap.LdapError) as exc:
        conn.connect()
    assert 'ntlm bind as LAB\\enroller failed: invalidCredentials' in str(exc.value)
    assert FakeConnection.instances[-1].closed


@pytest.mark.parametrize('username,expected', [
    ('enroller', 'enroller@lab.adcs.test'),
    ('enroller@lab.adcs.test', 'enroller@lab.adcs.test'),
    ('LAB\\enroller', 'LAB\\enroller'),
    ('CN=enroller,CN=Users,' + BASE, 'CN=enroller,CN=Users,' + BASE),
])
def test_simple_bind_user_forms(username, expected):
    make(username=username, password='pw').connect()
    fake = FakeConnection.instances[0]
    assert fake.kwargs['authentication'] == ldap3.SIMPLE
    assert fake.kwargs['user'] == expected


def test_stronger_auth_required_hint():
    conn = make(username='enroller', password='pw', ldap_scheme='ldap', ldap_allow_plaintext=True)

    def factory(server, **kwargs):
        fake = FakeConnection(server, **kwargs)
        fake.bind_ok = False
        fake.bind_result = {'result': 8, 'description': 'strongerAuthRequired', 'message': 'BindSimple: Transport encryption required.'}
        return fake
    conn._connection_factory = factory
    with pytest.raises(_ldap.LdapError) as exc:
        conn.connect()
    assert 'use ldap_scheme=ldaps or starttls' in str(exc.value)


@pytest.mark.parametrize('scheme', ['ldaps', 'starttls', 'ldap'])
def test_socket_has_no_delay(scheme):
    # ldap3 writes a bind in several sends: with Nagle on, each exchange waits for the server's delayed ACK
    make(username='enroller', password='pw', ldap_scheme=scheme, ldap_allow_plaintext=True).connect()
    assert FakeConnection.instances[0].socket.options == {(socket.IPPROTO_TCP, socket.TCP_NODELAY): 1}


def test_starttls_and_plain_transport():
    make(username='enroller', password='pw', ldap_scheme='starttls').connect()
    fake = FakeConnection.instances[0]
    assert fake.calls[:3] == ['open', 'start_tls', 'bind']
    assert fake.server.kwargs['use_ssl'] is False and fake.server.kwargs['port'] == 389
    assert fake.server.kwargs['tls'] is not None
    make(username='enroller', password='pw', ldap_scheme='ldap', ldap_port=3389, ldap_allow_plaintext=True).connect()
    fake = FakeConnection.instances[-1]
    assert 'start_tls' not in fake.calls
    assert fake.server.kwargs['tls'] is None and fake.server.kwargs['port'] == 3389


def test_tls_validation_settings(tmp_path):
    import ssl
    bundle = tmp_path / 'ca.pem'
    bundle.write_text('x')
    make(username='u', password='p', ca_bundle=str(bundle)).connect()
    tls = FakeConnection.instances[0].server.kwargs['tls']
    assert tls.validate == ssl.CERT_REQUIRED and tls.ca_certs_file == str(bundle)
    make(username='u', password='p', validate_certs=False).connect()
    assert FakeConnection.instances[-1].server.kwargs['tls'].validate == ssl.CERT_NONE


def test_certificate_error_is_explained():
    conn = make(username='u', password='p')

    def factory(server, **kwargs):
        fake = FakeConnection(server, **kwargs)

        def boom():
            raise ldap3.core.exceptions.LDAPSocketOpenError('socket ssl wrapping error: [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed')
        fake.open = boom
        return fake
    conn._connection_factory = factory
    with pytest.raises(_ldap.LdapError) as exc:
        conn.connect()
    assert 'set ca_bundle' in str(exc.value)


def test_invalid_settings():
    with pytest.raises(_ldap.LdapError):
        _ldap.LdapSettings(ldap_scheme='ftp')
    with pytest.raises(_ldap.LdapError):
        _ldap.LdapSettings(auth='basic')
    with pytest.raises(_ldap.LdapError):
        make(domain=None, domain_controller=None, username='u', password='p').connect()


def test_connect_tries_discovered_dcs_in_order():
    resolver = FakeResolver([SRV(0, 100, 389, 'dc1.lab.adcs.test.'), SRV(1, 100, 389, 'dc2.lab.adcs.test.')])
    conn = _ldap.AdConnection(_ldap.LdapSettings(domain='lab.adcs.test', username='u', password='p'),
                              connection_factory=FakeConnection, server_factory=FakeServer, resolver=resolver)

    def factory(server, **kwargs):
        fake = FakeConnection(server, **kwargs)
        if server.host == 'dc1.lab.adcs.test':
            def down():
                raise ldap3.core.exceptions.LDAPSocketOpenError('connection refused')
            fake.open = down
        return fake
    conn._connection_factory = factory
    conn.connect()
    assert conn.host == 'dc2.lab.adcs.test'
    assert [f.server.host for f in FakeConnection.instances] == ['dc1.lab.adcs.test', 'dc2.lab.adcs.test']


def test_ntlm_session_terminated_hint():
    """Samba ends the connection on ldap3's Sicily NTLM bind: say so instead of a bare socket error."""
    conn = make(auth='ntlm', username='LAB\\enroller', password='pw')

    def factory(server, **kwargs):
        fake = FakeConnection(server, **kwargs)

        def terminated():
            raise ldap3.core.exceptions.LDAPSessionTerminatedByServerError('session terminated by server')
        fake.bind = terminated
        return fake
    conn._connection_factory = factory
    with pytest.raises(_ldap.LdapError) as exc:
        conn.connect()
    assert 'session terminated by server' in str(exc.value)
    assert 'NTLM (Sicily)' in str(exc.value)


# ------------------------------------------------------------------------------------------------------------
# transport hygiene: plain LDAP refused, SRV targets inside the domain, bounded paging
# ------------------------------------------------------------------------------------------------------------

@pytest.fixture
def warnings(monkeypatch):
    seen = []
    monkeypatch.setattr(_ldap, '_ansible_warn', seen.append)
    monkeypatch.setattr(_ldap, 'get_warning_messages', lambda: tuple(seen))
    return seen


def test_simple_bind_over_plain_ldap_is_refused_before_any_traffic(warnings):
    conn = make(username='enroller', password='S3cr3t-Unit', ldap_scheme='ldap')
    with pytest.raises(_ldap.LdapError) as exc:
        conn.connect()
    text = str(exc.value)
    assert text == ('refusing plain LDAP: a simple bind over ldap_scheme=ldap sends the password of enroller in '
                    'clear text; use ldap_scheme=ldaps or ldap_scheme=starttls (with auth=password, ntlm or '
                    'kerberos), or set ldap_allow_plaintext=true to accept the risk')
    assert 'S3cr3t-Unit' not in text
    assert FakeConnection.instances == []  # nothing was sent, not even a connection opened


@pytest.mark.parametrize('auth,extra', [('ntlm', {'username': 'LAB\\u', 'password': 'p'}),
                                        ('kerberos', {'kerberos_ccache': '/nonexistent'})])
def test_ntlm_and_kerberos_over_plain_ldap_are_refused_too(auth, extra):
    """ldap3 negotiates no SASL security layer (and NTLM binds are not sealed): the replies are unprotected."""
    conn = make(auth=auth, ldap_scheme='ldap', **extra)
    with pytest.raises(_ldap.LdapError) as exc:
        conn.connect()
    assert str(exc.value) == (
        'refusing plain LDAP: ldap_scheme=ldap with auth=%s has no signing or sealing (ldap3 negotiates no SASL '
        "security layer), so the directory's replies could be changed on the network path; use ldap_scheme=ldaps "
        'or ldap_scheme=starttls (with auth=password, ntlm or kerberos), or set ldap_allow_plaintext=true to accept '
        'the risk' % auth)
    assert FakeConnection.instances == []


def test_plain_ldap_opt_in_warns_and_binds(warnings):
    make(username='enroller', password='pw', ldap_scheme='ldap', ldap_allow_plaintext=True).connect()
    fake = FakeConnection.instances[0]
    assert fake.calls[:2] == ['open', 'bind']
    assert warnings == ['ldap_allow_plaintext=true: a simple bind over ldap_scheme=ldap sends the password of '
                        'enroller in clear text']
    make(username='enroller', password='pw', ldap_scheme='ldap', ldap_allow_plaintext=True).connect()
    assert len(warnings) == 1  # once per module run


def test_tls_transports_need_no_opt_in_and_warn_without_validation(warnings):
    make(username='enroller', password='pw', ldap_scheme='starttls').connect()
    make(username='enroller', password='pw').connect()
    assert warnings == []
    make(username='enroller', password='pw', validate_certs=False).connect()
    assert warnings == ['validate_certs=false: the TLS certificate of the domain controller is not verified, so '
                        'anyone on the network path can read the bind credentials and change the replies']


def test_discovered_dc_is_verified_under_its_in_domain_name():
    """The TLS name is the SRV target, which is inside the domain; chain and host name are verified."""
    resolver = FakeResolver([SRV(0, 100, 636, 'evil.example.'), SRV(1, 100, 636, 'dc1.lab.adcs.test.')])
    conn = _ldap.AdConnection(_ldap.LdapSettings(domain='lab.adcs.test', username='u', password='p'),
                              connection_factory=FakeConnection, server_factory=FakeServer, resolver=resolver)
    conn.connect()
    server = FakeConnection.instances[0].server
    assert [f.server.host for f in FakeConnection.instances] == ['dc1.lab.adcs.test']
    assert isinstance(server.kwargs['tls'], _ldap.VerifyingTls)
    assert server.kwargs['tls'].validate == _ldap.ssl.CERT_REQUIRED


# ------------------------------------------------------------------------------------------------------------
# security review: a DC found through SRV must show a certificate naming the domain (Kerberos Authentication)
# ------------------------------------------------------------------------------------------------------------


def test_srv_target_with_a_member_server_certificate_gets_no_credentials(monkeypatch):
    """Forged SRV -> web01.<domain>, which has a valid certificate from the enterprise CA for its own name only:
    refused after the handshake, before the bind (the simple-bind password never leaves)."""
    monkeypatch.setattr(FakeConnection, 'peer', ('web01.lab.adcs.test', 'www.lab.adcs.test'))
    with pytest.raises(_ldap.LdapError) as exc:
        discovered().connect()
    assert str(exc.value) == (
        'could not connect to a domain controller: web01.lab.adcs.test: the TLS certificate of web01.lab.adcs.test, '
        'found through DNS SRV, does not name the domain lab.adcs.test in its subject alternative names (it has '
        'DNS:web01.lab.adcs.test, DNS:www.lab.adcs.test), as a domain controller certificate from the Kerberos '
        'Authentication template does; DNS answers are not authenticated, so any host of the domain with a '
        'certificate from the CA could answer: nothing was sent to it. Set domain_controller to the DC you trust '
        '(its certificate is then verified for that name), or give the DCs a certificate from the Kerberos '
        'Authentication template')
    [fake] = FakeConnection.instances
    assert fake.calls == ['open'], 'dropped without a bind, not even an unbind'


def test_srv_target_with_starttls_is_checked_after_the_handshake(monkeypatch):
    monkeypatch.setattr(FakeConnection, 'peer', ('dc9.lab.adcs.test',))
    with pytest.raises(_ldap.LdapError) as exc:
        discovered('dc9.lab.adcs.test', ldap_scheme='starttls', auth='ntlm').connect()
    assert '(it has DNS:dc9.lab.adcs.test)' in str(exc.value)
    assert FakeConnection.instances[0].calls == ['open', 'start_tls']


def test_srv_target_with_a_dc_certificate_is_used(monkeypatch):
    monkeypatch.setattr(FakeConnection, 'peer', ('dc2.lab.adcs.test', 'LAB.ADCS.TEST.', 'LAB'))
    conn = discovered('dc2.lab.adcs.test').connect()
    assert conn.host == 'dc2.lab.adcs.test' and 'bind' in FakeConnection.instances[0].calls


def test_srv_target_without_a_certificate_or_san_is_refused():
    with pytest.raises(_ldap.LdapError) as exc:
        _ldap.check_dc_certificate(None, 'dc1.lab.adcs.test', 'lab.adcs.test')
    assert '(it has no DNS names)' in str(exc.value)
    with pytest.raises(_ldap.LdapError):
        _ldap.check_dc_certificate(b'not a certificate', 'dc1.lab.adcs.test', 'lab.adcs.test')
    # a name below the domain or one that only ends like it is not the domain
    for names in (('sub.lab.adcs.test',), ('xlab.adcs.test',), ('adcs.test',)):
        with pytest.raises(_ldap.LdapError):
            _ldap.check_dc_certificate(tls_certificate(*names), 'dc1.lab.adcs.test', 'lab.adcs.test')


def test_chosen_domain_controller_keeps_the_host_name_check_only(monkeypatch):
    """With domain_controller the user chose the host: its certificate is verified for that name (VerifyingTls),
    a certificate without the domain name is fine; validate_certs=false checks nothing (and warns)."""
    monkeypatch.setattr(FakeConnection, 'peer', ('dc1.lab.adcs.test',))
    make(username='u', password='p').connect()
    assert 'bind' in FakeConnection.instances[-1].calls
    discovered('web01.lab.adcs.test', validate_certs=False).connect()
    assert 'bind' in FakeConnection.instances[-1].calls


def test_dc_certificate_is_read_from_a_real_tls_handshake(tmp_path):
    """VerifyingTls wraps a real socket; the certificate the check reads is the one the server presented."""
    import socket
    import ssl
    import threading
    from cryptography.hazmat.primitives import serialization

    tls_certificate('web01.lab.adcs.test')
    _der, cert, key = CERTS[('web01.lab.adcs.test',)]
    ca = CERTS['ca'][0]
    (tmp_path / 'ca.pem').write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (tmp_path / 'srv.pem').write_bytes(cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(str(tmp_path / 'srv.pem'))
    client_sock, server_sock = socket.socketpair()

    def serve():
        try:
            with server_ctx.wrap_socket(server_sock, server_side=True) as tls:
                tls.recv(1)
        except (OSError, ssl.SSLError):
            pass
    thread = threading.Thread(target=serve)
    thread.start()

    class Conn(object):
        socket = client_sock
        server = type('S', (), {'host': 'web01.lab.adcs.test'})()
    conn = Conn()
    try:
        _ldap.VerifyingTls(validate=ssl.CERT_REQUIRED, ca_certs_file=str(tmp_path / 'ca.pem')).wrap_socket(
            conn, do_handshake=True)
        assert _ldap._peer_certificate(conn) == cert.public_bytes(serialization.Encoding.DER)
        with pytest.raises(_ldap.LdapError) as exc:
            _ldap.check_dc_certificate(_ldap._peer_certificate(conn), 'web01.lab.adcs.test', 'lab.adcs.test')
        assert '(it has DNS:web01.lab.adcs.test)' in str(exc.value)
    finally:
        conn.socket.close()
        thread.join(5)
