# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""_crl_http: HTTP/1.1 retrieval (port rules, one persistent connection per host, redirects, timeouts, proxies, host
mapping) against local servers on 127.0.0.7x, and its bounds against hostile peers (issue 12 item 5): size cap,
total deadline against slow-drip servers (also over TLS), no https -> http redirect."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest

pytest.importorskip('cryptography')

from ansible_collections.adcs.enrollment.plugins.module_utils import _crl_http  # noqa: E402
from ansible_collections.adcs.enrollment.tests.unit.plugins.support import crl_pki as P  # noqa: E402
from ansible_collections.adcs.enrollment.tests.unit.plugins.support.crl_web import (  # noqa: E402
    http_client as client,
    HTTP_ADDR as ADDR,
    RAW_ADDR,
    RawServer,
    Server,
)

PROXY_ADDR = '127.0.0.72'
SEC_CA = P.Ca('SEC-CA', key_name='sec')


@pytest.fixture
def proxy():
    s = Server(PROXY_ADDR, proxy=True)
    yield s
    s.close()


@pytest.fixture
def raw():
    servers = []

    def start(serve):
        server = RawServer(serve)
        servers.append(server)
        return server
    yield start
    for server in servers:
        server.close()


@pytest.fixture
def server():
    with Server() as s:
        yield s


# ------------------------------------------------------------------------------------------------------------
# HTTP
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize('url, port', [('http://ca1.example.com/x.crl', 80), ('https://ca1.example.com/x.crl', 443),
                                       ('http://ca1.example.com:8080/x.crl', 8080),
                                       ('https://ca1.example.com:8443/x.crl', 8443),
                                       ('HTTP://ca1.example.com/x.crl', 80)])
def test_ms_wcce_port_rules(url, port):
    assert _crl_http.url_port(urlsplit(url)) == port


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
    with pytest.raises(_crl_http.FetchError, match='more than 1 redirects'):
        client(max_redirects=1).get(server.url('/old.crl'))
    server.routes['/loop.crl'] = (307, {'Location': '/loop.crl'}, b'')
    with pytest.raises(_crl_http.FetchError, match='more than 3 redirects'):
        client().get(server.url('/loop.crl'))
    server.routes['/ftp.crl'] = (302, {'Location': 'ftp://x/y'}, b'')
    with pytest.raises(_crl_http.FetchError, match='unsupported URL'):
        client().get(server.url('/ftp.crl'))


def test_http_error_status(server):
    with pytest.raises(_crl_http.FetchError, match='HTTP 404'):
        client().get(server.url('/missing.crl'))


def test_body_size_limit(server):
    server.routes['/big.crl'] = (200, {}, b'x' * 2000)
    with pytest.raises(_crl_http.FetchError, match=r'larger than max_size \(1000 bytes\)'):
        client(max_body=1000).get(server.url('/big.crl'))


def test_timeout(server):
    server.routes['/slow.crl'] = (200, {}, lambda: time.sleep(3) or b'late')
    started = time.time()
    with pytest.raises(_crl_http.FetchError, match=r'no complete answer within 1 s \(timeout'):
        client(timeout=1).get(server.url('/slow.crl'))
    assert time.time() - started < 2.5


def test_connection_refused():
    sock = socket.socket()
    sock.bind((ADDR, 0))
    port = sock.getsockname()[1]
    sock.close()
    with pytest.raises(_crl_http.FetchError, match='cannot get it from 127.0.0.71:%d' % port):
        client().get('http://%s:%d/x.crl' % (ADDR, port))


def test_unresolvable_name_suggests_host_addresses():
    with pytest.raises(_crl_http.FetchError, match='host_addresses'):
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
    with pytest.raises(_crl_http.FetchError, match='TLS|cannot get it'):
        client().get('https://%s:%d/x.crl' % (ADDR, server.port))


def test_bad_ca_bundle(tmp_path):
    bundle = tmp_path / 'bundle.pem'
    bundle.write_text('garbage')
    with pytest.raises(_crl_http.FetchError, match='cannot load the CA bundle'):
        client(ca_bundle=str(bundle)).ssl_context()


def test_redact():
    assert _crl_http.redact('http://u:p@h:81/x') == 'http://h:81/x'
    assert _crl_http.redact('http://h/x') == 'http://h/x'


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
        with pytest.raises(_crl_http.FetchError, match='403'):
            client(environ=env).get('https://ca1.lab.test/x.crl')
        assert seen == [('ca1.lab.test:443', 'Basic dTpw')]
    finally:
        httpd.shutdown()
        httpd.server_close()


# ------------------------------------------------------------------------------------------------------------
# size cap and total deadline
# ------------------------------------------------------------------------------------------------------------


def endless_body(server, conn):
    conn.sendall(b'HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n')
    chunk = b'\0' * 65536
    while not server.stop.is_set():
        conn.sendall(chunk)
        server.sent += len(chunk)


def test_endless_body_is_cut_at_max_size(raw):
    server = raw(endless_body)
    started = time.monotonic()
    with pytest.raises(_crl_http.FetchError) as err:
        client(max_body=1024 * 1024).get(server.url())
    assert str(err.value) == 'the response is larger than max_size (1048576 bytes)'
    assert time.monotonic() - started < 5


def test_announced_length_over_max_size_is_refused_before_reading(raw):
    def big(server, conn):
        conn.sendall(b'HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\nxx')
    with pytest.raises(_crl_http.FetchError, match=r'^the response is larger than max_size \(1000 bytes\)$'):
        client(max_body=1000).get(raw(big).url())


def slow_drip(server, conn):
    """Headers and body one byte at a time, each well within the per-read timeout: forever."""
    data = b'HTTP/1.1 200 OK\r\nX-Pad: ' + b'a' * 100000
    for index in range(len(data)):
        if server.stop.is_set():
            return
        conn.sendall(data[index:index + 1])
        server.sent += 1
        time.sleep(0.05)


def test_slow_drip_server_hits_the_total_deadline(raw):
    server = raw(slow_drip)
    started = time.monotonic()
    with pytest.raises(_crl_http.FetchError) as err:
        client(timeout=1.5).get(server.url())
    elapsed = time.monotonic() - started
    assert str(err.value) == ('no complete answer within 1.5 s (timeout: the total for connecting, redirects and '
                              'reading)')
    assert 1.4 < elapsed < 3, elapsed
    assert server.sent > 10         # it did keep dripping: only the deadline ended it


def test_slow_body_drip_hits_the_total_deadline(raw):
    def drip_body(server, conn):
        conn.sendall(b'HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n')
        while not server.stop.is_set():
            conn.sendall(b'x')
            time.sleep(0.05)
    started = time.monotonic()
    with pytest.raises(_crl_http.FetchError, match=r'^no complete answer within 1 s'):
        client(timeout=1).get(raw(drip_body).url())
    assert time.monotonic() - started < 2.5


def test_redirect_chain_shares_one_deadline(raw):
    """Each hop answers in 0.6 s (under the 1 s timeout), but the chain as a whole does not."""
    def hop(server, conn):
        time.sleep(0.6)
        conn.sendall(('HTTP/1.1 302 Found\r\nLocation: %s\r\nContent-Length: 0\r\n\r\n' % server.url('/next'))
                     .encode())
    started = time.monotonic()
    with pytest.raises(_crl_http.FetchError, match=r'^no complete answer within 1 s'):
        client(timeout=1, max_redirects=5).get(raw(hop).url())
    assert time.monotonic() - started < 2


def test_deadline_object():
    clock = [100.0]
    deadline = _crl_http.Deadline(10, clock=lambda: clock[0])
    assert deadline.timeout(30) == 10 and deadline.timeout(4) == 4 and not deadline.expired()
    clock[0] = 111
    assert deadline.expired() and deadline.timeout(30) == 0.001
    assert str(deadline.error()).startswith('no complete answer within 10 s')


def _tls_context(tmp_path, dns_name='pki.sec.test'):
    """A TLS server context with a certificate for ``dns_name`` issued by CA; returns (context, CA bundle path)."""
    import datetime
    import ssl
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    server_key = P.key('tls')
    cert = (x509.CertificateBuilder().subject_name(P.name(dns_name)).issuer_name(SEC_CA.name)
            .public_key(server_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=1))
            .not_valid_after(datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(dns_name)]), critical=False)
            .sign(SEC_CA.key, hashes.SHA256()))
    cert_path, key_path, ca_path = tmp_path / 'tls.pem', tmp_path / 'tls.key', tmp_path / 'ca.pem'
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(server_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))
    ca_path.write_bytes(SEC_CA.pem)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert_path), str(key_path))
    return context, str(ca_path)


def test_slow_drip_over_tls_hits_the_total_deadline(raw, tmp_path):
    context, ca_path = _tls_context(tmp_path)

    def drip_tls(server, conn):
        tls = context.wrap_socket(conn, server_side=True)
        tls.recv(65536)
        tls.sendall(b'HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n')
        while not server.stop.is_set():
            tls.sendall(b'x')
            server.sent += 1
            time.sleep(0.05)

    class TlsRaw(RawServer):
        def _one(self, conn):               # the TLS handshake comes before any request bytes
            try:
                self.serve(self, conn)
            except (OSError, ValueError):
                pass
            finally:
                conn.close()
    server = TlsRaw(drip_tls)
    try:
        http = client(timeout=1, ca_bundle=ca_path, host_addresses={'pki.sec.test': RAW_ADDR})
        started = time.monotonic()
        with pytest.raises(_crl_http.FetchError) as err:
            http.get('https://pki.sec.test:%d/x.crl' % server.port)
        assert str(err.value).startswith('no complete answer within 1 s')
        assert time.monotonic() - started < 2.5 and server.sent > 5
    finally:
        server.close()


def test_tls_handshake_that_never_completes_hits_the_deadline(raw, tmp_path):
    _context, ca_path = _tls_context(tmp_path)

    def silent(server, conn):                  # accepts, reads the ClientHello, never answers
        while not server.stop.is_set():
            time.sleep(0.05)
    server = raw(silent)
    http = client(timeout=1, ca_bundle=ca_path, host_addresses={'pki.sec.test': RAW_ADDR})
    started = time.monotonic()
    with pytest.raises(_crl_http.FetchError, match='^no complete answer within 1 s'):
        http.get('https://pki.sec.test:%d/x.crl' % server.port)
    assert time.monotonic() - started < 2.5


# ------------------------------------------------------------------------------------------------------------
# https -> http
# ------------------------------------------------------------------------------------------------------------


class Scripted(_crl_http.HttpClient):
    """HttpClient whose wire is a dict URL -> (status, Location)."""

    def __init__(self, replies, **kwargs):
        _crl_http.HttpClient.__init__(self, environ={}, **kwargs)
        self.replies = replies
        self.asked = []

    def _once(self, url, deadline=None):
        self.asked.append(url)
        status, location = self.replies[url]

        class Response(object):
            def getheader(self, name):
                return location
        return status, 'x', Response(), b'' if status != 200 else b'BODY'


def test_https_to_http_redirect_is_refused():
    http = Scripted({'https://pki.test/a.crl': (302, 'http://pki.test/a.crl'),
                     'http://pki.test/a.crl': (200, None)})
    with pytest.raises(_crl_http.FetchError) as err:
        http.get('https://pki.test/a.crl')
    assert str(err.value) == 'refused the redirect from https to http (https://pki.test/a.crl -> http://pki.test/a.crl)'
    assert http.asked == ['https://pki.test/a.crl']
    # https -> https and http -> https are fine
    http = Scripted({'https://pki.test/a.crl': (301, 'https://pki2.test/a.crl'),
                     'https://pki2.test/a.crl': (200, None),
                     'http://pki.test/b.crl': (302, 'https://pki.test/a.crl')})
    assert http.get('https://pki.test/a.crl') == (b'BODY', 'https://pki2.test/a.crl')
    assert http.get('http://pki.test/b.crl')[0] == b'BODY'
