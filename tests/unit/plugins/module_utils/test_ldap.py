# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""AdConnection against a mocked ldap3 Connection: bind paths (simple, NTLM incl. NT hash, Kerberos/GSSAPI),
transport (LDAPS, StartTLS, plain), DC discovery through DNS SRV, paged searches, SD flags, token reading."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

ldap3 = pytest.importorskip('ldap3')

from ansible_collections.adcs.enrollment.plugins.module_utils import _ldap
from ansible_collections.adcs.enrollment.plugins.module_utils._security import sid_to_bytes

BASE = 'DC=lab,DC=adcs,DC=test'
CONFIG = 'CN=Configuration,' + BASE
DOMAIN_SID = 'S-1-5-21-1-2-3'


_CERTS = {}


def tls_certificate(*dns_names):
    """DER of a certificate for dns_names, signed by a test CA (built once per name list)."""
    if dns_names not in _CERTS:
        import datetime
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
        if 'ca' not in _CERTS:
            ca_key = ec.generate_private_key(ec.SECP256R1())
            ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, 'Test Enterprise CA')])
            now = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=5)
            ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
                  .public_key(ca_key.public_key()).serial_number(1).not_valid_before(now)
                  .not_valid_after(now + datetime.timedelta(days=2))
                  .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                  .sign(ca_key, hashes.SHA256()))
            _CERTS['ca'] = (ca, ca_key)
        ca, ca_key = _CERTS['ca']
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=5)
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_names[0])]))
                .issuer_name(ca.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in dns_names]), critical=False)
                .sign(ca_key, hashes.SHA256()))
        _CERTS[dns_names] = (cert.public_bytes(serialization.Encoding.DER), cert, key)
    return _CERTS[dns_names][0]


class FakeTlsSocket(object):
    """The TLS socket of a connection: the certificate the server presented."""

    def __init__(self, der):
        self.der = der

    def getpeercert(self, binary_form=False):
        assert binary_form
        return self.der


class FakeConnection(object):
    """Records how it was built and answers searches from a script."""

    peer = ('dc1.lab.adcs.test', 'lab.adcs.test', 'LAB')   # a Kerberos Authentication DC certificate

    instances = []

    def __init__(self, server, **kwargs):
        self.server = server
        self.kwargs = kwargs
        self.calls = []
        self.closed = True
        self.result = {}
        self.response = []
        self.last_error = None
        self.bind_ok = True
        self.bind_result = {'result': 0, 'description': 'success'}
        self.pages = {}
        self.entries = {}
        self.socket = FakeTlsSocket(tls_certificate(*FakeConnection.peer))
        FakeConnection.instances.append(self)
        self.extend = type('E', (), {'standard': type('S', (), {'who_am_i': staticmethod(lambda: 'u:LAB\\enroller')})()})()

    def open(self):
        self.calls.append('open')
        self.closed = False

    def start_tls(self):
        self.calls.append('start_tls')
        return True

    def bind(self):
        self.calls.append('bind')
        self.result = self.bind_result
        return self.bind_ok

    def unbind(self):
        self.calls.append('unbind')
        self.closed = True

    def search(self, search_base, search_filter, search_scope, attributes, controls=None, paged_size=None, paged_cookie=None):
        self.calls.append(('search', search_base, search_filter, search_scope, tuple(attributes), controls, paged_size, paged_cookie))
        if search_base == '':
            self.response = [{'type': 'searchResEntry', 'dn': '', 'raw_attributes': {
                'defaultNamingContext': [BASE.encode()], 'configurationNamingContext': [CONFIG.encode()],
                'rootDomainNamingContext': [BASE.encode()], 'dnsHostName': [b'dc1.lab.adcs.test']}}]
            self.result = {'result': 0, 'description': 'success'}
            return True
        key = (search_base, paged_cookie)
        if key in self.pages:
            entries, next_cookie = self.pages[key]
            self.response = [{'type': 'searchResEntry', 'dn': dn, 'raw_attributes': attrs} for dn, attrs in entries]
            self.response.append({'type': 'searchResRef', 'uri': ['ldap://elsewhere']})
            controls_out = {_ldap.PAGED_RESULTS_OID: {'value': {'size': 0, 'cookie': next_cookie}}} if paged_size else {}
            self.result = {'result': 0, 'description': 'success', 'controls': controls_out}
            return True
        if search_base in self.entries:
            self.response = [{'type': 'searchResEntry', 'dn': search_base, 'raw_attributes': self.entries[search_base]}]
            self.result = {'result': 0, 'description': 'success'}
            return True
        self.response = []
        self.result = {'result': 32, 'description': 'noSuchObject', 'message': ''}
        return False


class FakeServer(object):
    def __init__(self, host, **kwargs):
        self.host = host
        self.kwargs = kwargs


@pytest.fixture(autouse=True)
def _reset():
    FakeConnection.instances = []
    yield


def make(**settings):
    settings.setdefault('domain', 'lab.adcs.test')
    settings.setdefault('domain_controller', 'dc1.lab.adcs.test')
    return _ldap.AdConnection(_ldap.LdapSettings(**settings), connection_factory=FakeConnection, server_factory=FakeServer)


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


class FakeGssapi(object):
    class NameType(object):
        kerberos_principal = 'krb5-principal'

    created = []

    class Name(object):
        def __init__(self, value, name_type):
            self.value = value
            self.name_type = name_type

    class Credentials(object):
        def __init__(self, name=None, usage=None, store=None):
            FakeGssapi.created.append({'name': name.value if name else None, 'usage': usage, 'store': store})


def test_kerberos_bind_with_keytab(monkeypatch):
    monkeypatch.setattr(_ldap, 'HAS_GSSAPI', True)
    monkeypatch.setattr(_ldap, 'gssapi', FakeGssapi)
    FakeGssapi.created = []
    make(auth='kerberos', username='enroller', kerberos_keytab='/etc/enroller.keytab').connect()
    fake = FakeConnection.instances[0]
    assert fake.kwargs['authentication'] == ldap3.SASL
    assert fake.kwargs['sasl_mechanism'] == ldap3.KERBEROS
    target, authz, creds = fake.sasl_credentials
    assert target == 'dc1.lab.adcs.test' and authz is None
    assert isinstance(creds, FakeGssapi.Credentials)
    assert FakeGssapi.created[-1] == {'name': 'enroller@LAB.ADCS.TEST', 'usage': 'initiate',
                                      'store': {'client_keytab': '/etc/enroller.keytab', 'ccache': 'MEMORY:adcs-enrollment'}}
    assert fake.calls[:2] == ['open', 'bind']


def test_kerberos_spn_host_from_root_dse_when_dc_is_an_address(monkeypatch):
    monkeypatch.setattr(_ldap, 'HAS_GSSAPI', True)
    monkeypatch.setattr(_ldap, 'gssapi', FakeGssapi)

    def no_reverse(addr):
        raise OSError('no PTR')
    monkeypatch.setattr(_ldap.socket, 'gethostbyaddr', no_reverse)
    make(auth='kerberos', username='LAB\\enroller', domain_controller='127.0.0.11').connect()
    fake = FakeConnection.instances[0]
    assert fake.sasl_credentials[0] == 'dc1.lab.adcs.test'  # the rootDSE's dnsHostName, read before the bind
    first_search = [c for c in fake.calls if c[0] == 'search'][0]
    assert fake.calls.index(first_search) < fake.calls.index('bind')
    assert FakeGssapi.created[-1]['name'] == 'enroller@LAB.ADCS.TEST'


def test_kerberos_spn_host_by_reverse_dns(monkeypatch):
    monkeypatch.setattr(_ldap, 'HAS_GSSAPI', True)
    monkeypatch.setattr(_ldap, 'gssapi', FakeGssapi)
    monkeypatch.setattr(_ldap.socket, 'gethostbyaddr', lambda addr: ('dc7.lab.adcs.test', [], [addr]))
    make(auth='kerberos', domain_controller='10.0.0.7').connect()
    assert FakeConnection.instances[0].sasl_credentials[0] == 'dc7.lab.adcs.test'


def test_kerberos_bind_with_ccache(monkeypatch):
    monkeypatch.setattr(_ldap, 'HAS_GSSAPI', True)
    monkeypatch.setattr(_ldap, 'gssapi', FakeGssapi)
    FakeGssapi.created = []
    make(auth='kerberos', kerberos_ccache='/tmp/krb5cc_0').connect()
    assert FakeGssapi.created[-1] == {'name': None, 'usage': 'initiate', 'store': {'ccache': 'FILE:/tmp/krb5cc_0'}}


def test_kerberos_without_gssapi(monkeypatch):
    monkeypatch.setattr(_ldap, 'HAS_GSSAPI', False)
    with pytest.raises(_ldap.LdapError) as exc:
        make(auth='kerberos').connect()
    assert 'gssapi' in str(exc.value)


def test_kerberos_env():
    settings = _ldap.LdapSettings(domain='x', kerberos_ccache='/tmp/cc', kerberos_keytab='/k')
    env = {}
    _ldap.apply_kerberos_env(settings, env)
    assert env == {'KRB5CCNAME': '/tmp/cc', 'KRB5_CLIENT_KTNAME': '/k'}


def test_invalid_settings():
    with pytest.raises(_ldap.LdapError):
        _ldap.LdapSettings(ldap_scheme='ftp')
    with pytest.raises(_ldap.LdapError):
        _ldap.LdapSettings(auth='basic')
    with pytest.raises(_ldap.LdapError):
        make(domain=None, domain_controller=None, username='u', password='p').connect()


# ------------------------------------------------------------------------------------------------------------
# DC discovery
# ------------------------------------------------------------------------------------------------------------

class SRV(object):
    def __init__(self, priority, weight, port, target):
        self.priority, self.weight, self.port, self.target = priority, weight, port, target


class FakeResolver(object):
    def __init__(self, records=None, error=None):
        self.records = records or []
        self.error = error
        self.asked = []

    def resolve(self, name, rdtype):
        self.asked.append((name, rdtype))
        if self.error:
            raise self.error
        return self.records


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


# ------------------------------------------------------------------------------------------------------------
# searches
# ------------------------------------------------------------------------------------------------------------

def test_paged_search_follows_cookies_and_sends_sd_flags():
    conn = make(username='u', password='p').connect()
    fake = FakeConnection.instances[0]
    base = 'CN=Certificate Templates,' + CONFIG
    fake.pages[(base, None)] = ([('CN=A,' + base, {'cn': [b'A'], 'NTSECURITYDESCRIPTOR': [b'\x01']})], b'page2')
    fake.pages[(base, b'page2')] = ([('CN=B,' + base, {'cn': [b'B']})], b'')
    found = conn.search(base, '(objectClass=pKICertificateTemplate)', ['cn', 'nTSecurityDescriptor'], scope='LEVEL',
                        sd_flags=0x07, page_size=1)
    assert [e['dn'] for e in found] == ['CN=A,' + base, 'CN=B,' + base]
    assert found[0]['attributes'] == {'cn': [b'A'], 'nTSecurityDescriptor': [b'\x01']}  # names in the case asked for
    searches = [c for c in fake.calls if c[0] == 'search' and c[1] == base]
    assert [c[7] for c in searches] == [None, b'page2']
    assert all(c[6] == 1 for c in searches)
    assert searches[0][3] == ldap3.LEVEL
    control = searches[0][5][0]
    assert str(control['controlType']) == '1.2.840.113556.1.4.801'
    assert bool(control['criticality']) is True
    assert bytes(control['controlValue']) == b'\x30\x03\x02\x01\x07'  # BER SEQUENCE { INTEGER 7 } (OWNER|GROUP|DACL)


def test_search_error_is_reported():
    conn = make(username='u', password='p').connect()
    fake = FakeConnection.instances[0]

    def failing(**kwargs):
        fake.result = {'result': 50, 'description': 'insufficientAccessRights', 'message': 'no'}
        fake.response = []
    fake.search = failing
    with pytest.raises(_ldap.LdapError) as exc:
        conn.search(BASE, '(x=y)', ['cn'])
    assert 'insufficientAccessRights' in str(exc.value)


def test_search_without_connection():
    with pytest.raises(_ldap.LdapError):
        make(username='u', password='p').search(BASE, '(x=y)', ['cn'])


def test_whoami_forms():
    conn = make(username='u', password='p').connect()
    assert conn.whoami() == 'LAB\\enroller'
    fake = FakeConnection.instances[0]
    fake.extend.standard.who_am_i = lambda: b'dn:CN=x,' + BASE.encode()
    assert conn.whoami() == 'CN=x,' + BASE

    def unsupported():
        raise ldap3.core.exceptions.LDAPExtensionError('not supported')
    fake.extend.standard.who_am_i = unsupported
    assert conn.whoami() is None


def test_find_account_and_token():
    conn = make(username='u', password='p').connect()
    fake = FakeConnection.instances[0]
    user_dn = 'CN=enroller,CN=Users,' + BASE
    user_sid = DOMAIN_SID + '-1105'
    fake.pages[(BASE, None)] = ([(user_dn, {'sAMAccountName': [b'enroller'], 'objectSid': [sid_to_bytes(user_sid)]})], b'')
    fake.entries[user_dn] = {'objectSid': [sid_to_bytes(user_sid)],
                             'tokenGroups': [sid_to_bytes(DOMAIN_SID + '-513'), sid_to_bytes(DOMAIN_SID + '-1108')]}
    entry = conn.find_account('LAB\\enroller')
    assert entry['dn'] == user_dn
    flt = [c for c in fake.calls if c[0] == 'search' and c[1] == BASE][-1][2]
    assert '(sAMAccountName=enroller)' in flt
    sids, groups = conn.account_token(entry)
    assert sids == [user_sid, DOMAIN_SID + '-513', DOMAIN_SID + '-1108', 'S-1-1-0', 'S-1-5-11']
    assert groups == [DOMAIN_SID + '-513', DOMAIN_SID + '-1108']
    conn.find_account(user_sid)
    flt = [c for c in fake.calls if c[0] == 'search' and c[1] == BASE][-1][2]
    assert '(objectSid=\\01\\05\\00\\00\\00\\00\\00\\05\\15\\00' in flt
    conn.find_account('WEB01')
    flt = [c for c in fake.calls if c[0] == 'search' and c[1] == BASE][-1][2]
    assert '(sAMAccountName=WEB01$)' in flt
    conn.find_account('enroller@lab.adcs.test')
    flt = [c for c in fake.calls if c[0] == 'search' and c[1] == BASE][-1][2]
    assert '(userPrincipalName=enroller@lab.adcs.test)' in flt
    assert conn.find_account(user_dn)['dn'] == user_dn


def test_resolve_sids():
    conn = make(username='u', password='p').connect()
    fake = FakeConnection.instances[0]
    group_sid = DOMAIN_SID + '-1108'
    fake.pages[(BASE, None)] = ([('CN=ADCS-Enrollers,CN=Users,' + BASE,
                                  {'objectSid': [sid_to_bytes(group_sid)], 'sAMAccountName': [b'ADCS-Enrollers']})], b'')
    names = conn.resolve_sids([group_sid, 'S-1-5-11', None])
    assert names == {group_sid: 'ADCS-Enrollers'}
    flt = [c for c in fake.calls if c[0] == 'search' and c[1] == BASE][-1][2]
    assert flt.startswith('(|(objectSid=') and 'S-1-5-11' not in flt


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


def _endless_pages(fake, base, cookie_of):
    """Every page answers one entry and the cookie cookie_of(page number)."""
    counter = {'n': 0}

    def search(search_base, search_filter, search_scope, attributes, controls=None, paged_size=None,
               paged_cookie=None):
        counter['n'] += 1
        n = counter['n']
        fake.response = [{'type': 'searchResEntry', 'dn': 'CN=%d,%s' % (n, base), 'raw_attributes': {'cn': [b'x']}}]
        fake.result = {'result': 0, 'description': 'success',
                       'controls': {_ldap.PAGED_RESULTS_OID: {'value': {'size': 0, 'cookie': cookie_of(n)}}}}
        return True
    fake.search = search
    return counter


def test_paging_is_bounded_in_pages():
    conn = make(username='u', password='p').connect()
    counter = _endless_pages(FakeConnection.instances[0], BASE, lambda n: b'c%d' % n)
    with pytest.raises(_ldap.LdapError) as exc:
        conn.search(BASE, '(cn=*)', ['cn'], max_pages=50)
    assert str(exc.value) == 'search of %s (cn=*) needs more than 50 pages: stopped' % BASE
    assert counter['n'] == 50
    counter = _endless_pages(FakeConnection.instances[0], BASE, lambda n: b'c%d' % n)
    with pytest.raises(_ldap.LdapError) as exc:
        conn.search(BASE, '(cn=*)', ['cn'])
    assert counter['n'] == _ldap.MAX_PAGES
    assert 'needs more than %d pages' % _ldap.MAX_PAGES in str(exc.value)


def test_paging_is_bounded_in_entries():
    conn = make(username='u', password='p').connect()
    _endless_pages(FakeConnection.instances[0], BASE, lambda n: b'c%d' % n)
    with pytest.raises(_ldap.LdapError) as exc:
        conn.search(BASE, '(cn=*)', ['cn'], max_entries=10)
    assert str(exc.value) == 'search of %s (cn=*) returned more than 10 entries: stopped' % BASE


def test_paging_cookie_size_is_bounded():
    conn = make(username='u', password='p').connect()
    _endless_pages(FakeConnection.instances[0], BASE, lambda n: b'x' * (_ldap.MAX_COOKIE_BYTES + 1))
    with pytest.raises(_ldap.LdapError) as exc:
        conn.search(BASE, '(cn=*)', ['cn'])
    assert str(exc.value) == ('search of %s (cn=*): the server sent a paging cookie of %d bytes (at most %d): stopped'
                              % (BASE, _ldap.MAX_COOKIE_BYTES + 1, _ldap.MAX_COOKIE_BYTES))


def test_paging_cookie_repeated_is_refused():
    conn = make(username='u', password='p').connect()
    counter = _endless_pages(FakeConnection.instances[0], BASE, lambda n: b'same')
    with pytest.raises(_ldap.LdapError) as exc:
        conn.search(BASE, '(cn=*)', ['cn'])
    assert str(exc.value) == 'search of %s (cn=*): the server sent the same paging cookie twice: stopped' % BASE
    assert counter['n'] == 2


# ------------------------------------------------------------------------------------------------------------
# security review: the default ccache of the Kerberos bind gets the DCOM path's ownership check
# ------------------------------------------------------------------------------------------------------------


def test_kerberos_default_ccache_is_checked_and_pinned(monkeypatch, tmp_path):
    monkeypatch.setattr(_ldap, 'HAS_GSSAPI', True)
    monkeypatch.setattr(_ldap, 'gssapi', FakeGssapi)
    FakeGssapi.created = []
    cache = tmp_path / 'krb5cc'
    cache.write_bytes(b'\x05\x04')
    cache.chmod(0o600)
    monkeypatch.setenv('KRB5CCNAME', 'FILE:%s' % cache)
    make(auth='kerberos', username='enroller').connect()
    assert FakeGssapi.created[-1]['store'] == {'ccache': 'FILE:%s' % cache}


def test_kerberos_default_ccache_writable_by_others_is_refused(monkeypatch, tmp_path):
    monkeypatch.setattr(_ldap, 'HAS_GSSAPI', True)
    monkeypatch.setattr(_ldap, 'gssapi', FakeGssapi)
    FakeGssapi.created = []
    cache = tmp_path / 'krb5cc'
    cache.write_bytes(b'\x05\x04')
    cache.chmod(0o666)
    monkeypatch.setenv('KRB5CCNAME', str(cache))
    with pytest.raises(_ldap.LdapError) as exc:
        make(auth='kerberos', username='enroller').connect()
    assert str(exc.value) == (
        'could not connect to a domain controller: dc1.lab.adcs.test: '
        'auth=kerberos: The default credential cache %s is not used: it is writable by group or others (mode 0666). '
        'What to do: Remove it and run kinit again as this user, or name a credential cache explicitly '
        '(kerberos_ccache).' % cache)
    assert FakeGssapi.created == [] and FakeConnection.instances == [], 'refused before gssapi and any traffic'


def test_kerberos_default_ccache_of_another_user_is_refused(monkeypatch, tmp_path):
    monkeypatch.setattr(_ldap, 'HAS_GSSAPI', True)
    monkeypatch.setattr(_ldap, 'gssapi', FakeGssapi)
    cache = tmp_path / 'krb5cc'
    cache.write_bytes(b'\x05\x04')
    cache.chmod(0o600)
    monkeypatch.setenv('KRB5CCNAME', str(cache))
    monkeypatch.setattr(_ldap.os, 'geteuid', lambda: 4242)
    with pytest.raises(_ldap.LdapError) as exc:
        make(auth='kerberos', username='enroller').connect()
    assert 'is not used: it is owned by uid %d, not by the user running the module (uid 4242)' % _ldap.os.getuid() \
        in str(exc.value)


def test_kerberos_named_ccache_and_keyring_default_skip_the_file_check(monkeypatch, tmp_path):
    monkeypatch.setattr(_ldap, 'HAS_GSSAPI', True)
    monkeypatch.setattr(_ldap, 'gssapi', FakeGssapi)
    FakeGssapi.created = []
    monkeypatch.setenv('KRB5CCNAME', 'KEYRING:persistent:1000')
    make(auth='kerberos', username='enroller').connect()
    assert FakeGssapi.created[-1]['store'] is None      # gssapi's own default (a kernel keyring is the user's)
    cache = tmp_path / 'named'
    cache.write_bytes(b'')
    cache.chmod(0o666)                                  # named by the user: their choice, not checked
    make(auth='kerberos', username='enroller', kerberos_ccache=str(cache)).connect()
    assert FakeGssapi.created[-1]['store'] == {'ccache': 'FILE:%s' % cache}


# ------------------------------------------------------------------------------------------------------------
# security review: a DC found through SRV must show a certificate naming the domain (Kerberos Authentication)
# ------------------------------------------------------------------------------------------------------------


def discovered(target='web01.lab.adcs.test', **settings):
    resolver = FakeResolver([SRV(0, 100, 636, target + '.')])
    settings.setdefault('username', 'u')
    settings.setdefault('password', 'p')
    return _ldap.AdConnection(_ldap.LdapSettings(domain='lab.adcs.test', **settings),
                              connection_factory=FakeConnection, server_factory=FakeServer, resolver=resolver)


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
    _der, cert, key = _CERTS[('web01.lab.adcs.test',)]
    ca = _CERTS['ca'][0]
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
