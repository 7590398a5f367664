# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""_crl_fetch: LDAP URLs (the host a certificate names is never contacted, only PKI attributes), the CA fetcher, local
files (only from options, regular files only, bounded), URL fallback, and the sources built from the module's
connection options."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import socket
import time

import pytest

pytest.importorskip('cryptography')

from ansible_collections.adcs.enrollment.plugins.module_utils import _crl_fetch  # noqa: E402
from ansible_collections.adcs.enrollment.plugins.module_utils import _crl_http  # noqa: E402
from ansible_collections.adcs.enrollment.plugins.module_utils import _crl_validate as v  # noqa: E402
from ansible_collections.adcs.enrollment.plugins.module_utils import _ldap  # noqa: E402
from ansible_collections.adcs.enrollment.plugins.module_utils._errors import InvalidInput  # noqa: E402
from ansible_collections.adcs.enrollment.tests.unit.plugins.support import crl_pki as P  # noqa: E402
from ansible_collections.adcs.enrollment.tests.unit.plugins.support.crl_web import (  # noqa: E402
    FakeCaClient,
    Server,
    http_client as client,
)

CA = P.Ca()
SEC_CA = P.Ca('SEC-CA', key_name='sec')


@pytest.fixture
def server():
    with Server() as s:
        yield s


# ------------------------------------------------------------------------------------------------------------
# LDAP
# ------------------------------------------------------------------------------------------------------------


AD_URL = ('ldap:///CN=LAB-CA,CN=CA1,CN=CDP,CN=Public%20Key%20Services,CN=Services,CN=Configuration,DC=lab,'
          'DC=adcs,DC=test?certificateRevocationList?base?objectClass=cRLDistributionPoint')


def test_ldap_url_parsing():
    url = _crl_fetch.LdapUrl(AD_URL)
    assert url.host is None
    assert url.dn == 'CN=LAB-CA,CN=CA1,CN=CDP,CN=Public Key Services,CN=Services,CN=Configuration,DC=lab,DC=adcs,DC=test'
    assert url.attributes == ['certificateRevocationList'] and url.scope == 'BASE'
    assert url.filter == '(objectClass=cRLDistributionPoint)'
    other = _crl_fetch.LdapUrl('ldap://dc2.example.com:3268/CN=X,DC=example?deltaRevocationList;binary?one')
    assert (other.host, other.port, other.attributes, other.scope, other.filter) == \
        ('dc2.example.com', 3268, ['deltaRevocationList;binary'], 'LEVEL', '(objectClass=*)')
    with pytest.raises(_crl_http.FetchError):
        _crl_fetch.LdapUrl('ldap:///?x')
    with pytest.raises(_crl_http.FetchError, match='scope'):
        _crl_fetch.LdapUrl('ldap:///CN=X?a?weird')


class FakeDirectory(object):
    def __init__(self, objects):
        self.objects = objects
        self.searches = []
        self.closed = False

    def search(self, base, flt, attributes, scope='SUBTREE', paged=True):
        self.searches.append((base, flt, tuple(attributes), scope, paged))
        attrs = self.objects.get(base.lower())
        return [] if attrs is None else [{'dn': base, 'attributes': attrs}]

    def close(self):
        self.closed = True


def test_ldap_fetcher_reads_attribute_over_one_connection_per_host():
    dn = _crl_fetch.LdapUrl(AD_URL).dn
    directory = FakeDirectory({dn.lower(): {'certificateRevocationList': [b'BASE'], 'deltaRevocationList': [b'D']}})
    hosts = []

    def connect(host):
        hosts.append(host)
        return directory

    fetcher = _crl_fetch.LdapFetcher(connect)
    assert fetcher.get(AD_URL) == b'BASE'
    assert fetcher.get(AD_URL.replace('certificateRevocationList', 'deltaRevocationList;binary')) == b'D'
    assert hosts == [None]
    assert directory.searches[0] == (dn, '(objectClass=cRLDistributionPoint)', ('certificateRevocationList',),
                                     'BASE', False)
    fetcher.close()
    assert directory.closed


def test_ldap_fetcher_errors():
    dn = _crl_fetch.LdapUrl(AD_URL).dn
    fetcher = _crl_fetch.LdapFetcher(lambda host: FakeDirectory({dn.lower(): {'certificateRevocationList': []}}))
    with pytest.raises(_crl_http.FetchError, match='not published yet'):
        fetcher.get(AD_URL)
    with pytest.raises(_crl_http.FetchError, match='no object'):
        fetcher.get(AD_URL.replace('LAB-CA', 'OTHER'))

    def refuse(host):
        raise _crl_http.FetchError('could not connect to a domain controller')
    with pytest.raises(_crl_http.FetchError, match='could not connect'):
        _crl_fetch.LdapFetcher(refuse).get(AD_URL)


AD_DN = 'CN=SEC-CA,CN=CA1,CN=CDP,CN=Public Key Services,CN=Services,CN=Configuration,DC=test'


class Directory(object):
    def __init__(self, value=b'CRL'):
        self.value = value
        self.searches = []

    def search(self, base, flt, attributes, scope='SUBTREE', paged=True):
        self.searches.append(base)
        return [{'dn': base, 'attributes': {'certificateRevocationList': [self.value]}}]

    def close(self):
        pass


def test_ldap_host_from_a_certificate_is_ignored():
    hosts = []
    directory = Directory()

    def connect(host):
        hosts.append(host)
        return directory
    fetcher = _crl_fetch.LdapFetcher(connect)
    evil = 'ldaps://evil.attacker.test:636/%s?certificateRevocationList' % AD_DN
    assert fetcher.get(evil) == b'CRL'
    assert hosts == [None]                      # the configured directory, never evil.attacker.test
    assert directory.searches == [AD_DN]
    # a URL the user wrote in the options may name its server
    assert fetcher.get('ldap://dc2.test/%s' % AD_DN, trusted=True) == b'CRL'
    assert hosts == [None, 'dc2.test']


def test_retriever_passes_trust_to_ldap_only_for_option_urls():
    hosts = []

    def connect(host):
        hosts.append(host)
        return Directory(P.der(SEC_CA.crl(number=2)))
    retriever = _crl_fetch.Retriever(client(), _crl_fetch.LdapFetcher(connect))
    from_cert = 'ldap://evil.test/%s' % AD_DN
    from_options = 'ldap://dc1.test/%s' % AD_DN

    def accept(data, _url):
        return v.crl_number(v.load_crl(data))
    assert retriever.first([from_cert], accept) == (2, from_cert)
    assert retriever.first([from_options], accept, trusted=[from_options]) == (2, from_options)
    assert hosts == [None, 'dc1.test']


def test_ldap_value_over_max_size_is_refused():
    fetcher = _crl_fetch.LdapFetcher(lambda host: Directory(b'x' * 2000), max_size=1000)
    with pytest.raises(_crl_http.FetchError) as err:
        fetcher.get('ldap:///%s?certificateRevocationList' % AD_DN)
    assert str(err.value) == 'the certificateRevocationList value is larger than max_size (1000 bytes)'


def test_ldap_search_that_never_answers_hits_the_deadline():
    class Stuck(Directory):
        def __init__(self):
            Directory.__init__(self)
            self.conn = self
            a, b = socket.socketpair()
            self.socket, self.peer = a, b

        def search(self, base, flt, attributes, scope='SUBTREE', paged=True):
            data = self.socket.recv(10)          # blocks until the watchdog shuts the socket down
            raise RuntimeError('socket closed: %r' % data)
    stuck = Stuck()
    started = time.monotonic()
    with pytest.raises(_crl_http.FetchError, match='^no complete answer within 1 s'):
        _crl_fetch.LdapFetcher(lambda host: stuck, timeout=1).get('ldap:///%s' % AD_DN)
    assert time.monotonic() - started < 2.5
    stuck.peer.close()


def test_ldap_url_from_a_certificate_reads_only_pki_attributes():
    directory = Directory()
    fetcher = _crl_fetch.LdapFetcher(lambda host: directory)
    with pytest.raises(_crl_http.FetchError) as err:
        fetcher.get('ldap:///CN=Administrator,CN=Users,DC=test?unicodePwd,userPassword')
    assert str(err.value) == ('an LDAP URL from a certificate or CRL may read only CRL and CA certificate attributes, '
                              'not unicodePwd')
    assert directory.searches == []
    assert fetcher.get('ldap:///%s?certificateRevocationList;binary' % AD_DN) == b'CRL'
    with pytest.raises(_crl_http.FetchError, match='has no value in userCertificate'):     # the user's own URL: asked
        fetcher.get('ldap:///CN=X,DC=test?userCertificate', trusted=True)
    assert directory.searches == [AD_DN, 'CN=X,DC=test']


# ------------------------------------------------------------------------------------------------------------
# the CA over DCOM
# ------------------------------------------------------------------------------------------------------------


def test_ca_fetcher_uses_current_key_index():
    renewed = P.renewed(CA, 1, 1, key_name='renewed')
    client_ = FakeCaClient({0x0B: 2, 0x0C: {1: renewed.der}, 0x27: {1: 0x00010001}, 0x11: b'BASE', 0x12: b'DELTA'})
    ca = _crl_fetch.CaFetcher(client_, 'dcom://ca/LAB-CA')
    assert (ca.base_crl(), ca.delta_crl(), ca.ca_certificate()) == (b'BASE', b'DELTA', renewed.der)
    assert client_.calls == [(0x0B, 0, 1), (0x0C, 1, 3), (0x27, 1, 1), (0x11, 1, 3), (0x12, 1, 3)]


def test_ca_fetcher_same_key_renewal_keeps_the_key_index():
    """Certificate 1 of a same-key renewal: its CRLs are still those of key 0 (CRL name ID 0)."""
    renewed = P.renewed(CA, 1, 0)
    client_ = FakeCaClient({0x0B: 2, 0x0C: {1: renewed.der}, 0x27: {1: 0x00000001}, 0x11: {0: b'BASE0'}})
    ca = _crl_fetch.CaFetcher(client_, 'dcom://ca/LAB-CA')
    assert ca.base_crl() == b'BASE0' and ca.selected()[:2] == (1, 0)


def test_ca_fetcher_picks_the_key_that_issued_the_certificate():
    """After a new-key renewal, a certificate issued by the old key is checked against key 0's CRL and CA
    certificate; one issued by the new key against key 1's."""
    renewed = P.renewed(CA, 1, 1, key_name='renewed')
    props = {0x0B: 2, 0x0C: {0: CA.der, 1: renewed.der}, 0x11: {0: b'BASE0', 1: b'BASE1'}}
    ca = _crl_fetch.CaFetcher(FakeCaClient(dict(props)), 'dcom://ca/LAB-CA')
    ca.target(CA.leaf())
    assert (ca.base_crl(), ca.ca_certificate()) == (b'BASE0', CA.der)
    ca.target(renewed.leaf())   # no CR_PROP_CACERTVERSION: the key index comes from the CA Version extension
    assert (ca.base_crl(), ca.ca_certificate(), ca.selected()[:2]) == (b'BASE1', renewed.der, (1, 1))
    ca.target(None, issuer=renewed.cert)
    assert ca.selected()[:2] == (1, 1)
    ca.target(P.Ca('OTHER-CA', key_name='other').leaf())
    with pytest.raises(_crl_http.FetchError, match=r'none of the 2 CA signing certificates of the CA has the issuer '
                                                   r'of "CN=host.test,DC=test"'):
        ca.base_crl()
    ca.target(None, issuer=P.Ca('OTHER-CA', key_name='other').cert)
    with pytest.raises(_crl_http.FetchError, match='has the key of "CN=OTHER-CA,DC=test"'):
        ca.base_crl()


def test_ca_fetcher_errors():
    client = FakeCaClient({0x0B: ValueError('x'), 0x0C: CA.der, 0x11: b'', 0x12: RuntimeError('PROPERTY_EMPTY')})
    ca = _crl_fetch.CaFetcher(client, 'ca')
    with pytest.raises(_crl_http.FetchError, match='returned no base CRL'):
        ca.base_crl()
    with pytest.raises(_crl_http.FetchError, match='PROPERTY_EMPTY'):
        ca.delta_crl()
    for value, message in ((b'', 'the CA returned no CA signing certificate 0'),
                           (RuntimeError('E_INVALIDARG'), r'GetCAProperty\(CA signing certificate 0\) failed: '
                                                          r'E_INVALIDARG'),
                           (b'junk', 'CA signing certificate 0 is not a certificate')):
        ca = _crl_fetch.CaFetcher(FakeCaClient({0x0B: 1, 0x0C: value}), 'ca')
        with pytest.raises(_crl_http.FetchError, match=message):
            ca.base_crl()


# ------------------------------------------------------------------------------------------------------------
# local files: only from options, regular files only, bounded; URL fallback
# ------------------------------------------------------------------------------------------------------------


LOCAL_REFUSED = ('a local file named by a certificate or CRL is never read (file URLs and paths are taken only from '
                 'the urls and delta_urls options)')


@pytest.mark.parametrize('url', ['file:///dev/zero', '/dev/zero', 'file:///etc/passwd', 'relative/path.crl'])
def test_local_urls_from_certificates_are_refused(url):
    with pytest.raises(_crl_http.FetchError) as err:
        _crl_fetch.Retriever(client()).get(url)
    assert str(err.value) == LOCAL_REFUSED


def test_local_files_from_options_are_read_bounded_and_regular_only(tmp_path):
    retriever = _crl_fetch.Retriever(client(max_body=1000))
    good = tmp_path / 'ok.crl'
    good.write_bytes(b'x' * 1000)
    assert retriever.get('file://%s' % good, trusted=True) == b'x' * 1000
    big = tmp_path / 'big.crl'
    big.write_bytes(b'x' * 1001)
    with pytest.raises(_crl_http.FetchError, match=r'big.crl is larger than max_size \(1000 bytes\)$'):
        retriever.get(str(big), trusted=True)
    with pytest.raises(_crl_http.FetchError, match='^/dev/zero is not a regular file$'):
        retriever.get('file:///dev/zero', trusted=True)
    fifo = tmp_path / 'fifo'
    os.mkfifo(str(fifo))
    started = time.monotonic()
    with pytest.raises(_crl_http.FetchError, match='fifo is not a regular file$'):
        retriever.get(str(fifo), trusted=True)      # no writer: a plain open() would block forever
    assert time.monotonic() - started < 1
    with pytest.raises(_crl_http.FetchError, match='cannot read .*none.crl: No such file'):
        retriever.get(str(tmp_path / 'none.crl'), trusted=True)


def test_retriever_tries_urls_in_order(server, tmp_path):
    server.routes['/bad.crl'] = (200, {}, b'<html>')
    server.routes['/good.crl'] = (200, {}, P.der(CA.crl(number=3)))
    retriever = _crl_fetch.Retriever(client())
    tried = []

    def accept(data, url):
        return v.crl_number(v.load_crl(data))

    urls = [server.url('/missing.crl'), server.url('/bad.crl'), 'gopher://x/y', AD_URL, server.url('/good.crl'),
            server.url('/never.crl')]
    assert retriever.first(urls, accept, tried) == (3, server.url('/good.crl'))
    assert [t['ok'] for t in tried] == [False, False, False, False, True]
    assert 'HTTP 404' in tried[0]['error'] and 'not a CRL' in tried[1]['error']
    assert 'unsupported URL scheme' in tried[2]['error'] and 'LDAP URLs need' in tried[3]['error']
    local = tmp_path / 'ca.crl'
    local.write_bytes(P.pem(CA.crl(number=4)))
    local_urls = ['file://' + str(local), str(local), str(tmp_path / 'none')]
    assert retriever.first(local_urls[:1], accept, trusted=local_urls)[0] == 4
    assert retriever.first(local_urls[1:2], accept, trusted=local_urls)[0] == 4
    assert retriever.first(local_urls[2:], accept, trusted=local_urls) == (None, None)


# ------------------------------------------------------------------------------------------------------------
# the sources from the module's connection options
# ------------------------------------------------------------------------------------------------------------
class FakeConn(object):
    def __init__(self, settings):
        self.settings = settings

    def connect(self):
        return self


def test_ldap_connector_uses_the_connection_options(monkeypatch):
    monkeypatch.setattr(_ldap, 'AdConnection', FakeConn)
    connect = _crl_fetch.ldap_connector({'domain': 'unit.test', 'domain_controller': 'dc1.unit.test',
                                         'username': 'u', 'password': 'p'})
    assert connect(None).settings.domain_controller == 'dc1.unit.test'
    assert connect('dc9.unit.test').settings.domain_controller == 'dc9.unit.test'
    with pytest.raises(_crl_http.FetchError) as err:
        _crl_fetch.ldap_connector({'username': 'u', 'password': 'p'})(None)
    assert str(err.value) == ('LDAP URLs are read from the configured directory: set domain or domain_controller '
                              '(a host named by a certificate or CRL is never contacted)')


def test_open_ca_needs_host_name_and_credentials():
    with pytest.raises(_crl_http.FetchError, match='^from_ca needs ca_host and ca_name$'):
        _crl_fetch.open_ca({'ca_host': None, 'ca_name': 'X'}, {})
    with pytest.raises(InvalidInput, match='username'):
        _crl_fetch.open_ca({'ca_host': 'ca1.unit.test', 'ca_name': 'X', 'username': None}, {})
    params = {'ca_host': 'CA1.unit.test', 'ca_name': 'UNIT-CA', 'username': 'u', 'domain': 'unit.test',
              'nt_hash': 'a' * 32, 'auth': 'ntlm', 'timeout': 7}
    fetcher, session = _crl_fetch.open_ca(params, {'ca1.unit.test': '127.0.0.9'})
    assert session.auth.kind == 'nt_hash' and session.auth.domain == 'unit.test' and session.timeout == 7
    assert (session.target.host, session.target.address, session.target.name) == ('CA1.unit.test', '127.0.0.9',
                                                                                  'UNIT-CA')
    assert fetcher.label == 'dcom://CA1.unit.test/UNIT-CA' and fetcher.session is session
