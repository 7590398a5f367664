# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""_crl against hostile peers and planted certificates (issue 12 item 5): size cap, total deadline against a
slow-drip server, no https -> http redirect, LDAP URL hosts from certificates ignored, no local files from
certificate contents (while still allowed from options), CRL-number rollback."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import socket
import sys
import threading
import time

import pytest

pytest.importorskip('cryptography')

sys.path.insert(0, os.path.dirname(__file__))
import crl_pki as P  # noqa: E402

from ansible_collections.adcs.enrollment.plugins.module_utils import _crl  # noqa: E402
from ansible_collections.adcs.enrollment.plugins.module_utils import _crl_validate as v  # noqa: E402

ADDR = '127.0.0.119'
CA = P.Ca('SEC-CA', key_name='sec')
AD_DN = 'CN=SEC-CA,CN=CA1,CN=CDP,CN=Public Key Services,CN=Services,CN=Configuration,DC=test'


def _close_listener(sock):
    """Close a listening socket another thread is accept()ing on: shutdown wakes it (close alone does not on Linux,
    and the port would stay bound)."""
    import socket as socket_module
    try:
        sock.shutdown(socket_module.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


class RawServer(object):
    """A TCP server on ADDR whose ``serve(conn)`` does whatever the test wants; counts connections."""

    def __init__(self, serve):
        self.serve = serve
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((ADDR, 0))
        self.sock.listen(5)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.sent = 0
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self):
        while not self.stop.is_set():
            try:
                conn, _addr = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn):
        try:
            conn.recv(65536)
            self.serve(self, conn)
        except OSError:
            pass
        finally:
            conn.close()

    def url(self, path='/x.crl'):
        return 'http://%s:%d%s' % (ADDR, self.port, path)

    def close(self):
        self.stop.set()
        _close_listener(self.sock)


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


def client(**kwargs):
    kwargs.setdefault('environ', {})
    kwargs.setdefault('timeout', 5)
    return _crl.HttpClient(**kwargs)


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
    with pytest.raises(_crl.FetchError) as err:
        client(max_body=1024 * 1024).get(server.url())
    assert str(err.value) == 'the response is larger than max_size (1048576 bytes)'
    assert time.monotonic() - started < 5


def test_announced_length_over_max_size_is_refused_before_reading(raw):
    def big(server, conn):
        conn.sendall(b'HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\nxx')
    with pytest.raises(_crl.FetchError, match=r'^the response is larger than max_size \(1000 bytes\)$'):
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
    with pytest.raises(_crl.FetchError) as err:
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
    with pytest.raises(_crl.FetchError, match=r'^no complete answer within 1 s'):
        client(timeout=1).get(raw(drip_body).url())
    assert time.monotonic() - started < 2.5


def test_redirect_chain_shares_one_deadline(raw):
    """Each hop answers in 0.6 s (under the 1 s timeout), but the chain as a whole does not."""
    def hop(server, conn):
        time.sleep(0.6)
        conn.sendall(('HTTP/1.1 302 Found\r\nLocation: %s\r\nContent-Length: 0\r\n\r\n' % server.url('/next'))
                     .encode())
    started = time.monotonic()
    with pytest.raises(_crl.FetchError, match=r'^no complete answer within 1 s'):
        client(timeout=1, max_redirects=5).get(raw(hop).url())
    assert time.monotonic() - started < 2


def test_deadline_object():
    clock = [100.0]
    deadline = _crl.Deadline(10, clock=lambda: clock[0])
    assert deadline.timeout(30) == 10 and deadline.timeout(4) == 4 and not deadline.expired()
    clock[0] = 111
    assert deadline.expired() and deadline.timeout(30) == 0.001
    assert str(deadline.error()).startswith('no complete answer within 10 s')


# ------------------------------------------------------------------------------------------------------------
# https -> http
# ------------------------------------------------------------------------------------------------------------
class Scripted(_crl.HttpClient):
    """HttpClient whose wire is a dict URL -> (status, Location)."""

    def __init__(self, replies, **kwargs):
        _crl.HttpClient.__init__(self, environ={}, **kwargs)
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
    with pytest.raises(_crl.FetchError) as err:
        http.get('https://pki.test/a.crl')
    assert str(err.value) == 'refused the redirect from https to http (https://pki.test/a.crl -> http://pki.test/a.crl)'
    assert http.asked == ['https://pki.test/a.crl']
    # https -> https and http -> https are fine
    http = Scripted({'https://pki.test/a.crl': (301, 'https://pki2.test/a.crl'),
                     'https://pki2.test/a.crl': (200, None),
                     'http://pki.test/b.crl': (302, 'https://pki.test/a.crl')})
    assert http.get('https://pki.test/a.crl') == (b'BODY', 'https://pki2.test/a.crl')
    assert http.get('http://pki.test/b.crl')[0] == b'BODY'


# ------------------------------------------------------------------------------------------------------------
# LDAP: the host a certificate names is never contacted
# ------------------------------------------------------------------------------------------------------------
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
    fetcher = _crl.LdapFetcher(connect)
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
        return Directory(P.der(CA.crl(number=2)))
    retriever = _crl.Retriever(client(), _crl.LdapFetcher(connect))
    from_cert = 'ldap://evil.test/%s' % AD_DN
    from_options = 'ldap://dc1.test/%s' % AD_DN

    def accept(data, _url):
        return v.crl_number(v.load_crl(data))
    assert retriever.first([from_cert], accept) == (2, from_cert)
    assert retriever.first([from_options], accept, trusted=[from_options]) == (2, from_options)
    assert hosts == [None, 'dc1.test']


def test_ldap_value_over_max_size_is_refused():
    fetcher = _crl.LdapFetcher(lambda host: Directory(b'x' * 2000), max_size=1000)
    with pytest.raises(_crl.FetchError) as err:
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
    with pytest.raises(_crl.FetchError, match='^no complete answer within 1 s'):
        _crl.LdapFetcher(lambda host: stuck, timeout=1).get('ldap:///%s' % AD_DN)
    assert time.monotonic() - started < 2.5
    stuck.peer.close()


# ------------------------------------------------------------------------------------------------------------
# local files: only from options, regular files only, bounded
# ------------------------------------------------------------------------------------------------------------
LOCAL_REFUSED = ('a local file named by a certificate or CRL is never read (file URLs and paths are taken only from '
                 'the urls and delta_urls options)')


@pytest.mark.parametrize('url', ['file:///dev/zero', '/dev/zero', 'file:///etc/passwd', 'relative/path.crl'])
def test_local_urls_from_certificates_are_refused(url):
    with pytest.raises(_crl.FetchError) as err:
        _crl.Retriever(client()).get(url)
    assert str(err.value) == LOCAL_REFUSED


def test_local_files_from_options_are_read_bounded_and_regular_only(tmp_path):
    retriever = _crl.Retriever(client(max_body=1000))
    good = tmp_path / 'ok.crl'
    good.write_bytes(b'x' * 1000)
    assert retriever.get('file://%s' % good, trusted=True) == b'x' * 1000
    big = tmp_path / 'big.crl'
    big.write_bytes(b'x' * 1001)
    with pytest.raises(_crl.FetchError, match=r'big.crl is larger than max_size \(1000 bytes\)$'):
        retriever.get(str(big), trusted=True)
    with pytest.raises(_crl.FetchError, match='^/dev/zero is not a regular file$'):
        retriever.get('file:///dev/zero', trusted=True)
    fifo = tmp_path / 'fifo'
    os.mkfifo(str(fifo))
    started = time.monotonic()
    with pytest.raises(_crl.FetchError, match='fifo is not a regular file$'):
        retriever.get(str(fifo), trusted=True)      # no writer: a plain open() would block forever
    assert time.monotonic() - started < 1
    with pytest.raises(_crl.FetchError, match='cannot read .*none.crl: No such file'):
        retriever.get(str(tmp_path / 'none.crl'), trusted=True)


class Wire(_crl.Retriever):
    """A Retriever whose HTTP is a dict; local files and LDAP go through the real code."""

    def __init__(self, web):
        _crl.Retriever.__init__(self, client())
        self.web = web

    def get(self, url, trusted=False):
        if url.startswith('http'):
            if url not in self.web:
                raise _crl.FetchError('HTTP 404')
            return self.web[url]
        return _crl.Retriever.get(self, url, trusted)


def test_job_refuses_local_cdp_of_a_certificate_but_reads_option_paths(tmp_path):
    crl = P.der(CA.crl(number=7))
    local = tmp_path / 'sec.crl'
    local.write_bytes(crl)
    leaf = CA.leaf(cdp=['file://%s' % local, str(local), 'http://pki/sec.crl'])
    job = _crl.CrlJob(Wire({'http://pki/sec.crl': crl}), cert=leaf, issuer_cert=CA.cert, now=P.NOW).run()
    assert job.base_served_by == 'http://pki/sec.crl'
    assert [t['error'] for t in job.tried[:2]] == [LOCAL_REFUSED, LOCAL_REFUSED]
    # without the HTTP URL nothing is left
    leaf = CA.leaf(cdp=['file:///dev/zero'])
    with pytest.raises(_crl.JobError, match='no usable CRL: file:///dev/zero: a local file named by a certificate'):
        _crl.CrlJob(Wire({}), cert=leaf, issuer_cert=CA.cert, now=P.NOW).run()
    # the same path in urls: read
    job = _crl.CrlJob(Wire({}), cert=leaf, issuer_cert=CA.cert, urls=[str(local)], now=P.NOW).run()
    assert job.base_served_by == str(local) and v.crl_number(job.base) == 7
    # a delta pointer of the CRL to a local file is refused too; delta_urls may name one
    delta = P.der(CA.crl(number=8, delta_of=7))
    delta_file = tmp_path / 'sec+.crl'
    delta_file.write_bytes(delta)
    base = P.der(CA.crl(number=7, freshest=['file://%s' % delta_file]))
    web = {'http://pki/sec.crl': base}
    leaf = CA.leaf(cdp=['http://pki/sec.crl'])
    with pytest.raises(_crl.JobError, match='points to a delta CRL but none could be used .*never read'):
        _crl.CrlJob(Wire(web), cert=leaf, issuer_cert=CA.cert, now=P.NOW).run()
    job = _crl.CrlJob(Wire(web), cert=leaf, issuer_cert=CA.cert, delta_urls=[str(delta_file)], now=P.NOW).run()
    assert v.crl_number(job.delta) == 8


def test_aia_file_url_of_a_certificate_is_refused():
    leaf = CA.leaf(cdp=['http://pki/sec.crl'], aia=['file:///dev/zero'])
    with pytest.raises(_crl.JobError, match='could not be obtained from its AIA'):
        _crl.CrlJob(Wire({'http://pki/sec.crl': P.der(CA.crl())}), cert=leaf, now=P.NOW).run()


# ------------------------------------------------------------------------------------------------------------
# CRL-number rollback
# ------------------------------------------------------------------------------------------------------------
def test_older_crl_of_the_same_issuer_and_key_is_refused():
    newer, older = CA.crl(number=20), CA.crl(number=19)
    with pytest.raises(v.CrlError) as err:
        v.check_not_rolled_back(newer, older, CA.cert)
    assert str(err.value) == ('the fetched CRL (CRL number 19) is older than the one already there (CRL number 20, '
                              'same issuer and key)')
    v.check_not_rolled_back(older, newer, CA.cert)         # forward: fine
    v.check_not_rolled_back(newer, CA.crl(number=20), CA.cert)   # same number: fine


def test_rollback_check_only_compares_the_same_issuer_and_key():
    newer = CA.crl(number=20)
    other_ca = P.Ca('OTHER-CA', key_name='other')
    v.check_not_rolled_back(other_ca.crl(number=50), newer, CA.cert)
    # the same name, another key (renewed CA): its numbers are another sequence
    renewed = P.Ca('SEC-CA', key_name='sec-renewed')
    v.check_not_rolled_back(renewed.crl(number=50), newer, CA.cert)
    # a CRL on disk with the right name and AKI but not signed by the CA is no evidence (a planted file cannot
    # block updates)
    forged = CA.crl(number=10 ** 6, signer=P.key('forger'))
    v.check_not_rolled_back(forged, newer, CA.cert)
    with pytest.raises(v.CrlError):
        v.check_not_rolled_back(forged, newer)        # without the CA certificate the number counts


# ------------------------------------------------------------------------------------------------------------
# an issuer from AIA comes from the party being verified: it must chain to a trust anchor
# ------------------------------------------------------------------------------------------------------------
def _intermediate(root, cn='SEC-SUB-CA', key_name='sec-sub', ca=True):
    """A CA (or, with ca=False, a non-CA) certificate issued by ``root``."""
    import datetime
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    sub = P.Ca(cn, key_name=key_name)
    builder = (x509.CertificateBuilder().subject_name(sub.name).issuer_name(root.name)
               .public_key(sub.key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(P.NOW - datetime.timedelta(days=1))
               .not_valid_after(P.NOW + datetime.timedelta(days=365))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
               .add_extension(root.aki(), critical=False))
    sub.cert = builder.sign(root.key, hashes.SHA256())
    return sub


def _planted(web_ca, cdp='http://evil/fake.crl', aia='http://evil/ca.crt'):
    return web_ca.leaf(cdp=[cdp], aia=[aia])


def test_planted_certificate_with_its_own_aia_and_crl_is_not_good():
    """An attacker's CA named like the real one signs a leaf whose AIA and CDP point to the attacker's server."""
    fake = P.Ca('SEC-CA', key_name='attacker')          # same name as the real CA, another key
    planted = _planted(fake)
    wire = Wire({'http://evil/ca.crt': fake.der, 'http://evil/fake.crl': P.der(fake.crl(number=99))})
    job = _crl.CrlJob(wire, cert=planted, anchors=[CA.cert], now=P.NOW)
    with pytest.raises(_crl.JobError) as err:
        job.run()
    assert str(err.value) == (
        'the issuing CA certificate of "CN=SEC-CA,DC=test" could not be obtained from its AIA (http://evil/ca.crt: '
        'the CA certificate "CN=SEC-CA,DC=test" is not trusted: it neither is nor was issued by a CA certificate of '
        'ca_bundle (or, without ca_bundle, of the system trust store)): set issuer_certificate, or ca_bundle to the '
        'CA certificates it must chain to')
    assert [t['url'] for t in job.tried] == ['http://evil/ca.crt']      # no CRL was even fetched
    # without anchors an AIA issuer is never used
    with pytest.raises(_crl.JobError, match='is not trusted'):
        _crl.CrlJob(wire, cert=planted, now=P.NOW).run()
    # the real CA as issuer_certificate: the planted CRL is refused (another key)
    with pytest.raises(_crl.JobError, match='no usable CRL: http://evil/fake.crl: the CRL authority key identifier'):
        _crl.CrlJob(wire, cert=planted, issuer_cert=CA.cert, now=P.NOW).run()


def test_aia_issuer_that_is_an_anchor_or_issued_by_one_is_used():
    leaf = CA.leaf(cdp=['http://pki/sec.crl'], aia=['http://pki/ca.crt'])
    wire = Wire({'http://pki/ca.crt': CA.der, 'http://pki/sec.crl': P.der(CA.crl(number=3))})
    job = _crl.CrlJob(wire, cert=leaf, anchors=lambda: [P.Ca('X-CA', key_name='x').cert, CA.cert], now=P.NOW).run()
    assert job.issuer_source == 'http://pki/ca.crt' and v.crl_number(job.base) == 3
    # an issuing CA certified by the anchored root
    sub = _intermediate(CA)
    leaf = sub.leaf(cdp=['http://pki/sub.crl'], aia=['http://pki/sub.crt'])
    wire = Wire({'http://pki/sub.crt': sub.der, 'http://pki/sub.crl': P.der(sub.crl(number=4))})
    job = _crl.CrlJob(wire, cert=leaf, anchors=[CA.cert], now=P.NOW).run()
    assert job.issuer_source == 'http://pki/sub.crt' and v.crl_number(job.base) == 4


def test_check_anchored():
    sub = _intermediate(CA)
    v.check_anchored(CA.cert, [CA.cert])
    v.check_anchored(sub.cert, [CA.cert])
    with pytest.raises(v.CrlError, match='is not trusted'):
        v.check_anchored(sub.cert, [])
    # a root that is not a CA certificate cannot vouch for anything
    not_ca_root = _intermediate(CA, 'NOT-A-CA', 'not-ca', ca=False)
    grandchild = _intermediate(not_ca_root, 'GRANDCHILD', 'grandchild')
    with pytest.raises(v.CrlError, match='"CN=GRANDCHILD,DC=test" is not trusted'):
        v.check_anchored(grandchild.cert, [not_ca_root.cert])
    # a certificate the anchor issued but that is no CA
    with pytest.raises(v.CrlError) as err:
        v.check_anchored(not_ca_root.cert, [CA.cert])
    assert str(err.value) == '"CN=NOT-A-CA,DC=test" is not a CA certificate'
    # the anchor's name on a certificate another key signed
    forged = _intermediate(P.Ca('SEC-CA', key_name='attacker'), 'SEC-SUB-CA', 'sec-sub-forged')
    with pytest.raises(v.CrlError, match='is not trusted'):
        v.check_anchored(forged.cert, [CA.cert])


def test_trust_anchors_from_ca_bundle_or_the_system_store(tmp_path):
    import ssl
    bundle = tmp_path / 'bundle.pem'
    other = P.Ca('OTHER-CA', key_name='other')
    bundle.write_bytes(CA.pem + other.pem)
    assert [c.subject for c in v.trust_anchors(str(bundle))] == [CA.cert.subject, other.cert.subject]
    with pytest.raises(v.CrlError, match=r'^cannot read the CA bundle .*none.pem: No such file or directory$'):
        v.trust_anchors(str(tmp_path / 'none.pem'))
    junk = tmp_path / 'junk.pem'
    junk.write_bytes(b'junk')
    with pytest.raises(v.CrlError, match=r'^the CA bundle .*junk.pem: not a certificate'):
        v.trust_anchors(str(junk))
    system = v.trust_anchors()
    assert len(system) == len(ssl.create_default_context().get_ca_certs(binary_form=True))


def _tls_context(tmp_path, dns_name='pki.sec.test'):
    """A TLS server context with a certificate for ``dns_name`` issued by CA; returns (context, CA bundle path)."""
    import datetime
    import ssl
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    server_key = P.key('tls')
    cert = (x509.CertificateBuilder().subject_name(P.name(dns_name)).issuer_name(CA.name)
            .public_key(server_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=1))
            .not_valid_after(datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(dns_name)]), critical=False)
            .sign(CA.key, hashes.SHA256()))
    cert_path, key_path, ca_path = tmp_path / 'tls.pem', tmp_path / 'tls.key', tmp_path / 'ca.pem'
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(server_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))
    ca_path.write_bytes(CA.pem)
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
        http = client(timeout=1, ca_bundle=ca_path, host_addresses={'pki.sec.test': ADDR})
        started = time.monotonic()
        with pytest.raises(_crl.FetchError) as err:
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
    http = client(timeout=1, ca_bundle=ca_path, host_addresses={'pki.sec.test': ADDR})
    started = time.monotonic()
    with pytest.raises(_crl.FetchError, match='^no complete answer within 1 s'):
        http.get('https://pki.sec.test:%d/x.crl' % server.port)
    assert time.monotonic() - started < 2.5


def test_ldap_url_from_a_certificate_reads_only_pki_attributes():
    directory = Directory()
    fetcher = _crl.LdapFetcher(lambda host: directory)
    with pytest.raises(_crl.FetchError) as err:
        fetcher.get('ldap:///CN=Administrator,CN=Users,DC=test?unicodePwd,userPassword')
    assert str(err.value) == ('an LDAP URL from a certificate or CRL may read only CRL and CA certificate attributes, '
                              'not unicodePwd')
    assert directory.searches == []
    assert fetcher.get('ldap:///%s?certificateRevocationList;binary' % AD_DN) == b'CRL'
    with pytest.raises(_crl.FetchError, match='has no value in userCertificate'):     # the user's own URL: asked
        fetcher.get('ldap:///CN=X,DC=test?userCertificate', trusted=True)
    assert directory.searches == [AD_DN, 'CN=X,DC=test']
