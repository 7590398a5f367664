# -*- coding: utf-8 -*-
# Copyright (c) the adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bounded HTTP(S) retrieval: one job, getting the bytes at an http/https URL within fixed bounds.

HTTP/1.1 as MS-WCCE 1.4 describes CRL retrieval: port 80 unless the URL is https (443) or names a port; one
persistent connection per (scheme, host, port [, proxy]) reused for every CRL of that host; bounded redirects, never
from https to http; proxies from ``http_proxy``/``https_proxy``/``no_proxy`` (unless ``use_proxy=False``, like
ansible.builtin.uri); TLS verified by default (optional CA bundle); an optional static name -> address map (like
curl ``--resolve``).

The bounds, shared with the other CRL sources (``_crl_fetch``): ``FetchError`` (a source that did not deliver),
``Deadline`` (``timeout`` seconds in total for connecting, TLS, redirects and every read together) and ``Watchdog``
(shuts the socket down at the deadline, so a server dripping bytes cannot hold it); at most ``max_body`` bytes.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import os
import socket
import ssl
import threading
import time

from ansible_collections.adcs.enrollment.plugins.module_utils._errors import AdcsError

try:
    import http.client as http_client
    from urllib.parse import unquote, urljoin, urlsplit
    from urllib.request import getproxies_environment, proxy_bypass_environment
except ImportError:  # pragma: no cover - Python 2 is not supported by the collection
    http_client = None

MAX_BODY = 20 * 1024 * 1024
DEFAULT_PORTS = {'http': 80, 'https': 443}
REDIRECT_CODES = (301, 302, 303, 307, 308)
USER_AGENT = 'adcs.enrollment-wcce_crl'


class FetchError(AdcsError):
    """A URL that did not deliver (network, HTTP status, LDAP, DCOM); message for the user."""


def url_port(parts):
    """MS-WCCE 1.4 port rule: the URL's explicit port, else 443 for https, else 80."""
    try:
        port = parts.port
    except ValueError:
        raise FetchError('invalid port in URL')
    return port or DEFAULT_PORTS.get(parts.scheme.lower(), 80)


def redact(url):
    """The URL without user:password."""
    parts = urlsplit(url)
    if parts.password is None and parts.username is None:
        return url
    host = parts.hostname or ''
    if parts.port:
        host = '%s:%d' % (host, parts.port)
    return parts._replace(netloc=host).geturl()


class Deadline(object):
    """The total time budget of one fetch (``seconds`` from creation)."""

    def __init__(self, seconds, clock=time.monotonic):
        self.seconds = seconds
        self._clock = clock
        self.end = clock() + seconds

    def remaining(self):
        return self.end - self._clock()

    def expired(self):
        return self.remaining() <= 0

    def timeout(self, per_operation):
        """The socket timeout for the next operation: the per-operation one, but never past the deadline."""
        return max(min(per_operation, self.remaining()), 0.001)

    def error(self):
        return FetchError('no complete answer within %s s (timeout: the total for connecting, redirects and reading)'
                          % _seconds(self.seconds))


def _seconds(value):
    return ('%d' % value) if float(value).is_integer() else ('%.1f' % value)


class Watchdog(object):
    """Shuts down the sockets ``sockets()`` returns when ``deadline`` passes: a blocked read or handshake ends.

    A context manager; ``fired`` tells whether it had to.
    """

    def __init__(self, deadline, sockets):
        self.deadline = deadline
        self.sockets = sockets
        self.fired = False
        self._timer = None

    def _fire(self):
        self.fired = True
        for sock in self.sockets():
            if sock is None:
                continue
            try:
                # the plain socket's shutdown, also under a TLS socket: SSLSocket.shutdown would drop its TLS state
                # under the reading thread's feet
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
            except (OSError, ValueError, TypeError):
                pass

    def __enter__(self):
        self._timer = threading.Timer(max(self.deadline.remaining(), 0), self._fire)
        self._timer.daemon = True
        self._timer.start()
        return self

    def __exit__(self, *args):
        self._timer.cancel()
        return False


# ---------------------------------------------------------------------------------------------------------------
# proxies, TLS, request lines and bodies
# ---------------------------------------------------------------------------------------------------------------
def _proxies_from(environ):
    """Like urllib's getproxies_environment, but from the given mapping."""
    if environ is os.environ:
        return getproxies_environment()
    proxies = {}
    for name, value in environ.items():
        lower = name.lower()
        if value and lower.endswith('_proxy'):
            proxies[lower[:-6]] = value
    for name, value in environ.items():
        if value and name.endswith('_proxy') and name.islower():
            proxies[name[:-6]] = value
    return proxies


def _bypass(host, proxies):
    try:
        return bool(proxy_bypass_environment(host, proxies))
    except Exception:
        return False


def proxy_for(environ, scheme, host, port):
    """(host, port, authorization header or None) of the proxy ``environ`` names for this target, or None."""
    proxies = _proxies_from(environ)
    proxy = proxies.get(scheme)
    if not proxy:
        return None
    no_proxy = dict((k, v) for k, v in proxies.items() if k == 'no')
    if no_proxy and (_bypass(host, no_proxy) or _bypass('%s:%d' % (host, port), no_proxy)):
        return None
    if '://' not in proxy:
        proxy = 'http://' + proxy
    parts = urlsplit(proxy)
    if parts.scheme.lower() not in ('http',):
        raise FetchError('unsupported proxy %s (only http:// proxies)' % redact(proxy))
    auth = None
    if parts.username is not None:
        token = '%s:%s' % (unquote(parts.username), unquote(parts.password or ''))
        auth = 'Basic ' + base64.b64encode(token.encode('utf-8')).decode('ascii')
    return parts.hostname, parts.port or 80, auth


def ssl_context(validate_certs=True, ca_bundle=None):
    """The TLS context for https URLs: verified against ``ca_bundle`` (or the system store), or not at all."""
    if validate_certs:
        try:
            return ssl.create_default_context(cafile=ca_bundle) if ca_bundle else ssl.create_default_context()
        except (IOError, OSError, ssl.SSLError) as exc:
            raise FetchError('cannot load the CA bundle %s: %s' % (ca_bundle, exc))
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def request_line(scheme, host, port, path, proxy):
    """(request target, headers) of a GET of ``path`` at host:port, directly or through an http ``proxy``."""
    headers = {'User-Agent': USER_AGENT, 'Accept': '*/*', 'Connection': 'keep-alive'}
    default_port = DEFAULT_PORTS.get(scheme)
    headers['Host'] = host if port == default_port else '%s:%d' % (host, port)
    if ':' in host and not host.startswith('['):
        headers['Host'] = '[%s]' % host if port == default_port else '[%s]:%d' % (host, port)
    target = path
    if proxy and scheme == 'http':
        target = '%s://%s%s' % (scheme, headers['Host'], path)
        if proxy[2]:
            headers['Proxy-Authorization'] = proxy[2]
    return target, headers


def read_body(response, max_body, deadline):
    """The body, read in pieces: at most ``max_body`` bytes, never past the deadline."""
    length = response.getheader('Content-Length')
    if length and length.strip().isdigit() and int(length) > max_body:
        raise FetchError('the response is larger than max_size (%d bytes)' % max_body)
    chunks = []
    total = 0
    while True:
        if deadline.expired():
            raise deadline.error()
        chunk = response.read(min(64 * 1024, max_body + 1 - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
        if total > max_body:
            raise FetchError('the response is larger than max_size (%d bytes)' % max_body)
    return b''.join(chunks)


def transport_error(exc, host, port, proxy, deadline):
    """The FetchError for what the socket, TLS or http.client raised during one request."""
    if isinstance(exc, socket.timeout):
        # every socket timeout is cut to the deadline, which is at most ``timeout`` away
        return deadline.error()
    if isinstance(exc, ssl.SSLCertVerificationError):
        return FetchError('TLS certificate of %s could not be verified (%s); set ca_bundle to the CA that issued the '
                          'web server certificate, or validate_certs=false for tests only'
                          % (host, getattr(exc, 'verify_message', None) or exc))
    if isinstance(exc, ssl.SSLError):
        return FetchError('TLS error with %s: %s' % (host, exc))
    if isinstance(exc, socket.gaierror):
        return FetchError('cannot resolve %s: %s (map it with host_addresses or use an address)'
                          % (proxy[0] if proxy else host, exc.strerror or exc))
    text = getattr(exc, 'strerror', None) or str(exc) or type(exc).__name__
    where = 'proxy %s:%d' % (proxy[0], proxy[1]) if proxy else '%s:%d' % (host, port)
    return FetchError('cannot get it from %s: %s' % (where, text))


def _next_location(seen, status, response, max_redirects):
    """The URL a redirect leads to; FetchError when it may not be followed."""
    location = response.getheader('Location')
    if not location:
        raise FetchError('HTTP %d redirect without a Location' % status)
    if len(seen) > max_redirects:
        chain = ' -> '.join(redact(u) for u in seen)
        raise FetchError('more than %d redirects (%s)' % (max_redirects, chain))
    current = urljoin(seen[-1], location)
    if urlsplit(current).scheme.lower() not in ('http', 'https'):
        raise FetchError('redirect to an unsupported URL %s' % redact(current))
    if urlsplit(seen[-1]).scheme.lower() == 'https' and urlsplit(current).scheme.lower() == 'http':
        raise FetchError('refused the redirect from https to http (%s -> %s)' % (redact(seen[-1]), redact(current)))
    return current


# ---------------------------------------------------------------------------------------------------------------
# the client
# ---------------------------------------------------------------------------------------------------------------
_CLOSED_MEANWHILE = (http_client.RemoteDisconnected, BrokenPipeError, ConnectionResetError,
                     http_client.BadStatusLine) if http_client else ()


class HttpClient(object):
    """HTTP/1.1 GET with one persistent connection per (scheme, host, port [, proxy])."""

    def __init__(self, timeout=30, validate_certs=True, ca_bundle=None, use_proxy=True, max_redirects=3,
                 host_addresses=None, environ=None, max_body=MAX_BODY):
        self.timeout = timeout
        self.validate_certs = validate_certs
        self.ca_bundle = ca_bundle
        self.use_proxy = use_proxy
        self.max_redirects = max_redirects
        self.host_addresses = dict((k.lower(), v) for k, v in (host_addresses or {}).items())
        self.environ = os.environ if environ is None else environ
        self.max_body = max_body
        self._connections = {}
        self._context = None
        self._raw_socket = None
        self.connections_opened = 0
        self.requests_sent = 0

    def ssl_context(self):
        if self._context is None:
            self._context = ssl_context(self.validate_certs, self.ca_bundle)
        return self._context

    # ---- connections ----
    def _creator(self, target_host):
        mapped = self.host_addresses.get((target_host or '').lower())

        def create_connection(address, timeout=None, source_address=None):
            host, port = address[0], address[1]
            if mapped and host.lower() == target_host.lower():
                host = mapped
            self.connections_opened += 1
            sock = socket.create_connection((host, port), timeout, source_address)
            self._raw_socket = sock
            return sock
        return create_connection

    def _connection(self, scheme, host, port):
        proxy = proxy_for(self.environ, scheme, host, port) if self.use_proxy else None
        key = (scheme, host.lower(), port, proxy[:2] if proxy else None)
        conn = self._connections.get(key)
        if conn is not None:
            return key, conn, proxy
        peer, peer_port = (proxy[0], proxy[1]) if proxy else (host, port)
        if scheme == 'https':
            conn = http_client.HTTPSConnection(peer, peer_port, timeout=self.timeout, context=self.ssl_context())
            if proxy:
                conn.set_tunnel(host, port, headers={'Proxy-Authorization': proxy[2]} if proxy[2] else None)
        else:
            conn = http_client.HTTPConnection(peer, peer_port, timeout=self.timeout)
        conn._create_connection = self._creator(peer)  # pylint: disable=protected-access
        self._connections[key] = conn
        return key, conn, proxy

    def _drop(self, key):
        conn = self._connections.pop(key, None)
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass

    def close(self):
        for key in list(self._connections):
            self._drop(key)

    # ---- requests ----
    def _exchange(self, key, conn, target, headers, deadline):
        """Send the GET and read the answer: (status, reason, response, body)."""
        if deadline.expired():
            raise socket.timeout()
        conn.timeout = deadline.timeout(self.timeout)
        if conn.sock is not None:
            conn.sock.settimeout(conn.timeout)
        conn.request('GET', target, headers=headers)
        self.requests_sent += 1
        if conn.sock is not None:
            conn.sock.settimeout(deadline.timeout(self.timeout))
        response = conn.getresponse()
        try:
            body = read_body(response, self.max_body, deadline)
        except FetchError:
            self._drop(key)
            raise
        if response.will_close:
            self._drop(key)
        return response.status, response.reason, response, body

    def _once(self, url, deadline=None):
        """One GET; returns (status, reason, response, body)."""
        deadline = deadline or Deadline(self.timeout)
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        host = parts.hostname
        if not host:
            raise FetchError('no host name in the URL')
        port = url_port(parts)
        path = (parts.path or '/') + ('?' + parts.query if parts.query else '')
        key, conn, proxy = self._connection(scheme, host, port)
        target, headers = request_line(scheme, host, port, path, proxy)
        reused = conn.sock is not None
        while True:
            try:
                return self._exchange(key, conn, target, headers, deadline)
            except _CLOSED_MEANWHILE as exc:
                # a kept-alive connection the server closed meanwhile: retry once on a new one
                self._drop(key)
                if not reused or deadline.expired():
                    raise FetchError('the server closed the connection: %s' % (exc or type(exc).__name__))
                key, conn, proxy = self._connection(scheme, host, port)
                reused = False
            except (OSError, http_client.HTTPException) as exc:
                self._drop(key)
                raise transport_error(exc, host, port, proxy, deadline)

    def _sockets(self):
        socks = [conn.sock for conn in list(self._connections.values())]
        return socks + [self._raw_socket]

    def get(self, url, deadline=None):
        """GET ``url`` following up to max_redirects redirects, all within one deadline (default ``timeout``
        seconds from now); returns (body bytes, final URL). An https URL never redirects to http."""
        deadline = deadline or Deadline(self.timeout)
        with Watchdog(deadline, self._sockets) as watchdog:
            try:
                return self._get(url, deadline)
            except Exception:  # whatever a socket shut down mid-read raises
                if watchdog.fired or deadline.expired():
                    self.close()
                    raise deadline.error()
                raise

    def _get(self, url, deadline):
        seen = [url]
        while True:
            status, reason, response, body = self._once(seen[-1], deadline)
            if status in REDIRECT_CODES:
                seen.append(_next_location(seen, status, response, self.max_redirects))
                continue
            if status != 200:
                raise FetchError('HTTP %d %s' % (status, reason))
            return body, seen[-1]

    def stats(self):
        return {'connections': self.connections_opened, 'requests': self.requests_sent}
