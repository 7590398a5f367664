# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""_crl: HTTP/1.1 retrieval (port rules, one persistent connection per host, redirects, timeouts, proxies, host
mapping) against local servers on 127.0.0.7x, LDAP URLs, the CA fetcher, URL fallback and the CRL job."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import os
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest

pytest.importorskip('cryptography')

from cryptography import x509  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
import crl_pki as P  # noqa: E402

from ansible_collections.adcs.enrollment.plugins.module_utils import _crl  # noqa: E402
from ansible_collections.adcs.enrollment.plugins.module_utils import _crl_validate as v  # noqa: E402

ADDR = '127.0.0.71'
PROXY_ADDR = '127.0.0.72'
CA = P.Ca()
NOW = P.NOW


# ------------------------------------------------------------------------------------------------------------
# servers
# ------------------------------------------------------------------------------------------------------------
class Server(object):
    """HTTP/1.1 keep-alive server: routes {path: (status, headers, body)}; counts connections and requests."""

    def __init__(self, address=ADDR, proxy=False):
        self.routes = {}
        self.connections = 0
        self.requests = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = 'HTTP/1.1'

            def setup(self):
                BaseHTTPRequestHandler.setup(self)
                owner.connections += 1

            def log_message(self, *args):
                pass

            def do_GET(self):  # noqa: N802
                owner.requests.append((self.path, dict(self.headers)))
                path = urlsplit(self.path).path if proxy else self.path
                status, headers, body = owner.routes.get(path, (404, {}, b'not found'))
                if callable(body):
                    body = body()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header('Content-Length', str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                if headers.get('Connection') == 'close':
                    self.close_connection = True

        self.httpd = ThreadingHTTPServer((address, 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path, host=ADDR):
        return 'http://%s:%d%s' % (host, self.port, path)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


@pytest.fixture
def proxy():
    s = Server(PROXY_ADDR, proxy=True)
    yield s
    s.close()


def client(**kwargs):
    kwargs.setdefault('environ', {})
    kwargs.setdefault('timeout', 5)
    return _crl.HttpClient(**kwargs)


# ------------------------------------------------------------------------------------------------------------
# HTTP
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('url, port', [('http://ca1.example.com/x.crl', 80), ('https://ca1.example.com/x.crl', 443),
                                       ('http://ca1.example.com:8080/x.crl', 8080),
                                       ('https://ca1.example.com:8443/x.crl', 8443),
                                       ('HTTP://ca1.example.com/x.crl', 80)])
def test_ms_wcce_port_rules(url, port):
    assert _crl.url_port(urlsplit(url)) == port


def test_one_persistent_connection_for_several_crls(server):
    server.routes['/a.crl'] = (200, {}, b'A')
    server.routes['/b.crl'] = (200, {}, b'B')
    http = client()
    assert http.get(server.url('/a.crl')) == (b'A', server.url('/a.crl'))
    assert http.get(server.url('/b.crl'))[0] == b'B'
    assert http.get(server.url('/a.crl'))[0] == b'A'
    http.close()
    assert server.connections == 1 and len(server.requests) == 3
    headers = server.requests[0][1]
    assert headers['Host'] == '%s:%d' % (ADDR, server.port)
    assert http.stats() == {'connections': 1, 'requests': 3}


def test_server_closing_the_connection_is_handled(server):
    server.routes['/a.crl'] = (200, {'Connection': 'close'}, b'A')
    http = client()
    assert http.get(server.url('/a.crl'))[0] == b'A'
    assert http.get(server.url('/a.crl'))[0] == b'A'
    assert server.connections == 2


def test_kept_alive_connection_closed_meanwhile_is_retried(server):
    server.routes['/a.crl'] = (200, {}, b'A')
    http = client()
    assert http.get(server.url('/a.crl'))[0] == b'A'
    # the server forgets the idle connection (as IIS does after its keep-alive timeout)
    for conn in http._connections.values():
        conn.sock.shutdown(socket.SHUT_RDWR)
    assert http.get(server.url('/a.crl'))[0] == b'A'
    assert server.connections == 2


def test_redirects_followed_and_bounded(server):
    server.routes['/old.crl'] = (301, {'Location': '/mid.crl'}, b'')
    server.routes['/mid.crl'] = (302, {'Location': server.url('/new.crl')}, b'')
    server.routes['/new.crl'] = (200, {}, b'NEW')
    body, final = client(max_redirects=2).get(server.url('/old.crl'))
    assert body == b'NEW' and final == server.url('/new.crl')
    with pytest.raises(_crl.FetchError, match='more than 1 redirects'):
        client(max_redirects=1).get(server.url('/old.crl'))
    server.routes['/loop.crl'] = (307, {'Location': '/loop.crl'}, b'')
    with pytest.raises(_crl.FetchError, match='more than 3 redirects'):
        client().get(server.url('/loop.crl'))
    server.routes['/ftp.crl'] = (302, {'Location': 'ftp://x/y'}, b'')
    with pytest.raises(_crl.FetchError, match='unsupported URL'):
        client().get(server.url('/ftp.crl'))


def test_http_error_status(server):
    with pytest.raises(_crl.FetchError, match='HTTP 404'):
        client().get(server.url('/missing.crl'))


def test_body_size_limit(server):
    server.routes['/big.crl'] = (200, {}, b'x' * 2000)
    with pytest.raises(_crl.FetchError, match=r'larger than max_size \(1000 bytes\)'):
        client(max_body=1000).get(server.url('/big.crl'))


def test_timeout(server):
    server.routes['/slow.crl'] = (200, {}, lambda: time.sleep(3) or b'late')
    started = time.time()
    with pytest.raises(_crl.FetchError, match=r'no complete answer within 1 s \(timeout'):
        client(timeout=1).get(server.url('/slow.crl'))
    assert time.time() - started < 2.5


def test_connection_refused():
    sock = socket.socket()
    sock.bind((ADDR, 0))
    port = sock.getsockname()[1]
    sock.close()
    with pytest.raises(_crl.FetchError, match='cannot get it from 127.0.0.71:%d' % port):
        client().get('http://%s:%d/x.crl' % (ADDR, port))


def test_unresolvable_name_suggests_host_addresses():
    with pytest.raises(_crl.FetchError, match='host_addresses'):
        client().get('http://no-such-host.invalid/x.crl')


def test_host_addresses_map_a_name_and_keep_the_host_header(server):
    server.routes['/x.crl'] = (200, {}, b'X')
    http = client(host_addresses={'CA1.Lab.Test': ADDR})
    assert http.get('http://ca1.lab.test:%d/x.crl' % server.port)[0] == b'X'
    assert server.requests[0][1]['Host'] == 'ca1.lab.test:%d' % server.port


def test_proxy_from_environment(server, proxy):
    proxy.routes['/x.crl'] = (200, {}, b'VIA-PROXY')
    env = {'http_proxy': 'http://user:secret@%s:%d' % (PROXY_ADDR, proxy.port)}
    http = client(environ=env)
    assert http.get('http://ca1.lab.test/x.crl')[0] == b'VIA-PROXY'
    path, headers = proxy.requests[0]
    assert path == 'http://ca1.lab.test/x.crl'            # absolute URI, port 80 implied
    assert headers['Host'] == 'ca1.lab.test'
    assert headers['Proxy-Authorization'] == 'Basic dXNlcjpzZWNyZXQ='
    assert server.requests == []


def test_no_proxy_and_use_proxy_false(server, proxy):
    server.routes['/x.crl'] = (200, {}, b'DIRECT')
    env = {'HTTP_PROXY': 'http://%s:%d' % (PROXY_ADDR, proxy.port), 'no_proxy': 'localhost,%s' % ADDR}
    assert client(environ=env).get(server.url('/x.crl'))[0] == b'DIRECT'
    env = {'http_proxy': 'http://%s:%d' % (PROXY_ADDR, proxy.port)}
    assert client(environ=env, use_proxy=False).get(server.url('/x.crl'))[0] == b'DIRECT'
    assert proxy.requests == []
    https_only = {'https_proxy': 'http://%s:%d' % (PROXY_ADDR, proxy.port)}
    assert client(environ=https_only).get(server.url('/x.crl'))[0] == b'DIRECT'


def test_https_verification_failure_is_explained(server):
    # a plain HTTP server on an https URL: a TLS error, reported cleanly
    with pytest.raises(_crl.FetchError, match='TLS|cannot get it'):
        client().get('https://%s:%d/x.crl' % (ADDR, server.port))


def test_bad_ca_bundle(tmp_path):
    bundle = tmp_path / 'bundle.pem'
    bundle.write_text('garbage')
    with pytest.raises(_crl.FetchError, match='cannot load the CA bundle'):
        client(ca_bundle=str(bundle)).ssl_context()


def test_redact():
    assert _crl.redact('http://u:p@h:81/x') == 'http://h:81/x'
    assert _crl.redact('http://h/x') == 'http://h/x'


# ------------------------------------------------------------------------------------------------------------
# LDAP
# ------------------------------------------------------------------------------------------------------------
AD_URL = ('ldap:///CN=LAB-CA,CN=CA1,CN=CDP,CN=Public%20Key%20Services,CN=Services,CN=Configuration,DC=lab,'
          'DC=adcs,DC=test?certificateRevocationList?base?objectClass=cRLDistributionPoint')


def test_ldap_url_parsing():
    url = _crl.LdapUrl(AD_URL)
    assert url.host is None
    assert url.dn == 'CN=LAB-CA,CN=CA1,CN=CDP,CN=Public Key Services,CN=Services,CN=Configuration,DC=lab,DC=adcs,DC=test'
    assert url.attributes == ['certificateRevocationList'] and url.scope == 'BASE'
    assert url.filter == '(objectClass=cRLDistributionPoint)'
    other = _crl.LdapUrl('ldap://dc2.example.com:3268/CN=X,DC=example?deltaRevocationList;binary?one')
    assert (other.host, other.port, other.attributes, other.scope, other.filter) == \
        ('dc2.example.com', 3268, ['deltaRevocationList;binary'], 'LEVEL', '(objectClass=*)')
    with pytest.raises(_crl.FetchError):
        _crl.LdapUrl('ldap:///?x')
    with pytest.raises(_crl.FetchError, match='scope'):
        _crl.LdapUrl('ldap:///CN=X?a?weird')


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
    dn = _crl.LdapUrl(AD_URL).dn
    directory = FakeDirectory({dn.lower(): {'certificateRevocationList': [b'BASE'], 'deltaRevocationList': [b'D']}})
    hosts = []

    def connect(host):
        hosts.append(host)
        return directory

    fetcher = _crl.LdapFetcher(connect)
    assert fetcher.get(AD_URL) == b'BASE'
    assert fetcher.get(AD_URL.replace('certificateRevocationList', 'deltaRevocationList;binary')) == b'D'
    assert hosts == [None]
    assert directory.searches[0] == (dn, '(objectClass=cRLDistributionPoint)', ('certificateRevocationList',),
                                     'BASE', False)
    fetcher.close()
    assert directory.closed


def test_ldap_fetcher_errors():
    dn = _crl.LdapUrl(AD_URL).dn
    fetcher = _crl.LdapFetcher(lambda host: FakeDirectory({dn.lower(): {'certificateRevocationList': []}}))
    with pytest.raises(_crl.FetchError, match='not published yet'):
        fetcher.get(AD_URL)
    with pytest.raises(_crl.FetchError, match='no object'):
        fetcher.get(AD_URL.replace('LAB-CA', 'OTHER'))

    def refuse(host):
        raise _crl.FetchError('could not connect to a domain controller')
    with pytest.raises(_crl.FetchError, match='could not connect'):
        _crl.LdapFetcher(refuse).get(AD_URL)


# ------------------------------------------------------------------------------------------------------------
# the CA over DCOM
# ------------------------------------------------------------------------------------------------------------
class FakeCaClient(object):
    def __init__(self, props):
        self.props = props
        self.calls = []

    def get_ca_property(self, prop_id, index=0, prop_type=None):
        self.calls.append((prop_id, index, prop_type))
        value = self.props[prop_id]
        if isinstance(value, Exception):
            raise value
        return value


def test_ca_fetcher_uses_current_key_index():
    client_ = FakeCaClient({0x0B: 2, 0x11: b'BASE', 0x12: b'DELTA', 0x0C: b'CERT'})
    ca = _crl.CaFetcher(client_, 'dcom://ca/LAB-CA')
    assert (ca.base_crl(), ca.delta_crl(), ca.ca_certificate()) == (b'BASE', b'DELTA', b'CERT')
    assert client_.calls == [(0x0B, 0, 1), (0x11, 1, 3), (0x12, 1, 3), (0x0C, 1, 3)]


def test_ca_fetcher_errors():
    ca = _crl.CaFetcher(FakeCaClient({0x0B: ValueError('x'), 0x11: b'', 0x12: RuntimeError('PROPERTY_EMPTY')}), 'ca')
    with pytest.raises(_crl.FetchError, match='returned no base CRL'):
        ca.base_crl()
    with pytest.raises(_crl.FetchError, match='PROPERTY_EMPTY'):
        ca.delta_crl()


# ------------------------------------------------------------------------------------------------------------
# URL fallback and the job
# ------------------------------------------------------------------------------------------------------------
def test_retriever_tries_urls_in_order(server, tmp_path):
    server.routes['/bad.crl'] = (200, {}, b'<html>')
    server.routes['/good.crl'] = (200, {}, P.der(CA.crl(number=3)))
    retriever = _crl.Retriever(client())
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


class MapRetriever(_crl.Retriever):
    """Retriever over a dict of URL -> bytes (or exception)."""

    def __init__(self, data):
        _crl.Retriever.__init__(self, client())
        self.data = data
        self.asked = []

    def get(self, url, trusted=False):
        self.asked.append(url)
        value = self.data.get(url)
        if value is None:
            raise _crl.FetchError('unreachable')
        return value


BASE_URLS = ['ldap:///CN=T?certificateRevocationList', 'http://pki/t.crl']
DELTA_URLS = ['http://pki/t+.crl']


def _leaf(serial=0x77):
    return CA.leaf(serial=serial, cdp=BASE_URLS, aia=['http://pki/ca.crt'])


def test_job_from_certificate_with_aia_and_delta():
    base = CA.crl(number=5, freshest=DELTA_URLS, revoked=[(0x10, None, None)])
    revoked_at = NOW - datetime.timedelta(hours=3)
    delta = CA.crl(number=6, delta_of=5, revoked=[(0x77, x509.ReasonFlags.superseded, revoked_at)])
    retriever = MapRetriever({'http://pki/t.crl': P.der(base), 'http://pki/t+.crl': P.der(delta),
                              'http://pki/ca.crt': CA.der})
    job = _crl.CrlJob(retriever, cert=_leaf(), now=NOW, anchors=[CA.cert]).run()
    assert job.issuer_source == 'http://pki/ca.crt'
    assert v.crl_number(job.base) == 5 and job.base_served_by == 'http://pki/t.crl'
    assert v.crl_number(job.delta) == 6 and job.delta_served_by == 'http://pki/t+.crl'
    assert [(t['kind'], t['url'], t['ok']) for t in job.tried] == [
        ('issuer', 'http://pki/ca.crt', True), ('base', BASE_URLS[0], False), ('base', BASE_URLS[1], True),
        ('delta', DELTA_URLS[0], True)]
    status = job.status()
    assert status['revoked'] and status['reason'] == 'superseded' and status['source'] == 'delta'


def test_job_tampered_first_url_falls_back():
    good = P.der(CA.crl(number=5))
    tampered = bytearray(good)
    tampered[-5] ^= 0xFF
    retriever = MapRetriever({'http://a/t.crl': bytes(tampered), 'http://b/t.crl': good})
    job = _crl.CrlJob(retriever, issuer_cert=CA.cert, urls=['http://a/t.crl', 'http://b/t.crl'], now=NOW).run()
    assert job.base_served_by == 'http://b/t.crl'
    assert 'signature' in job.tried[0]['error']


def test_job_all_urls_fail():
    stale = CA.crl(number=5, next_update=NOW - datetime.timedelta(days=1), this_update=NOW - datetime.timedelta(days=8))
    retriever = MapRetriever({'http://a/t.crl': P.der(stale)})
    with pytest.raises(_crl.JobError, match='no usable CRL: http://a/t.crl: the CRL is stale') as exc:
        _crl.CrlJob(retriever, issuer_cert=CA.cert, urls=['http://a/t.crl'], now=NOW).run()
    assert len(exc.value.tried) == 1
    job = _crl.CrlJob(retriever, issuer_cert=CA.cert, urls=['http://a/t.crl'], now=NOW, freshness='warn').run()
    assert len(job.warnings) == 1 and 'stale' in job.warnings[0]


def test_job_missing_delta_fails_or_warns():
    base = P.der(CA.crl(number=5, freshest=DELTA_URLS))
    retriever = MapRetriever({'http://pki/t.crl': base})
    with pytest.raises(_crl.JobError, match='points to a delta CRL but none could be used'):
        _crl.CrlJob(retriever, issuer_cert=CA.cert, urls=['http://pki/t.crl'], now=NOW).run()
    job = _crl.CrlJob(retriever, issuer_cert=CA.cert, urls=['http://pki/t.crl'], now=NOW, freshness='warn').run()
    assert job.delta is None and 'delta' in job.warnings[0]
    job = _crl.CrlJob(retriever, issuer_cert=CA.cert, urls=['http://pki/t.crl'], now=NOW, delta=False).run()
    assert job.delta is None and job.warnings == []


def test_job_delta_for_a_newer_base_is_rejected():
    base = P.der(CA.crl(number=5, freshest=DELTA_URLS))
    delta = P.der(CA.crl(number=9, delta_of=8))
    retriever = MapRetriever({'http://pki/t.crl': base, DELTA_URLS[0]: delta})
    with pytest.raises(_crl.JobError, match='needs base CRL number 8 or later'):
        _crl.CrlJob(retriever, issuer_cert=CA.cert, urls=['http://pki/t.crl'], now=NOW).run()


def test_job_needs_an_issuer():
    with pytest.raises(_crl.JobError, match='set issuer_certificate'):
        _crl.CrlJob(MapRetriever({}), urls=['http://a/t.crl'], now=NOW).run()
    with pytest.raises(_crl.JobError, match='could not be obtained from its AIA'):
        _crl.CrlJob(MapRetriever({'http://pki/ca.crt': P.Ca('OTHER', key_name='other').der}), cert=_leaf(),
                    now=NOW).run()


def test_job_without_cdp():
    with pytest.raises(_crl.JobError, match='no CRL distribution point'):
        _crl.CrlJob(MapRetriever({}), cert=CA.leaf(), issuer_cert=CA.cert, now=NOW).run()


def test_job_from_ca():
    base, delta = CA.crl(number=5), CA.crl(number=6, delta_of=5)
    ca = _crl.CaFetcher(FakeCaClient({0x0B: 1, 0x11: P.der(base), 0x12: P.der(delta), 0x0C: CA.der}), 'dcom://ca/T')
    job = _crl.CrlJob(MapRetriever({}), ca=ca, now=NOW).run()
    assert job.issuer_source == 'dcom://ca/T'
    assert job.base_served_by == 'dcom://ca/T (base CRL)' and job.delta_served_by == 'dcom://ca/T (delta CRL)'
    # a CA without delta CRLs
    ca = _crl.CaFetcher(FakeCaClient({0x0B: 1, 0x11: P.der(base), 0x12: RuntimeError('CERTSRV_E_PROPERTY_EMPTY'),
                                      0x0C: CA.der}), 'dcom://ca/T')
    job = _crl.CrlJob(MapRetriever({}), ca=ca, now=NOW).run()
    assert job.delta is None and job.tried[-1]['kind'] == 'delta' and not job.tried[-1]['ok']


def test_ca_fetcher_reports_a_refused_session_first():
    class Refused(Exception):
        def to_message(self):
            return 'Activating CCertRequestD on the CA was refused; HRESULT 0x00000005 (E_ACCESSDENIED)'

    class Session(object):
        opened = 0

        def open(self):
            Session.opened += 1
            raise Refused()

    ca = _crl.CaFetcher(FakeCaClient({}), 'dcom://ca/T', session=Session())
    with pytest.raises(_crl.FetchError, match='refused; HRESULT 0x00000005'):
        ca.ca_certificate()
    job = _crl.CrlJob(MapRetriever({}), ca=_crl.CaFetcher(FakeCaClient({}), 'dcom://ca/T', session=Session()),
                      now=NOW)
    with pytest.raises(_crl.JobError, match='cannot get the CA certificate from dcom://ca/T: Activating'):
        job.run()


def test_https_through_a_proxy_uses_connect():
    seen = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = 'HTTP/1.1'

        def log_message(self, *args):
            pass

        def do_CONNECT(self):  # noqa: N802
            seen.append((self.path, self.headers.get('Proxy-Authorization')))
            self.send_response(403)
            self.send_header('Content-Length', '0')
            self.end_headers()

    httpd = ThreadingHTTPServer((PROXY_ADDR, 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        env = {'https_proxy': 'http://u:p@%s:%d' % (PROXY_ADDR, httpd.server_address[1])}
        with pytest.raises(_crl.FetchError, match='403'):
            client(environ=env).get('https://ca1.lab.test/x.crl')
        assert seen == [('ca1.lab.test:443', 'Basic dTpw')]
    finally:
        httpd.shutdown()
        httpd.server_close()
