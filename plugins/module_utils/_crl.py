# -*- coding: utf-8 -*-
# Copyright (c) the adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""CRL retrieval: one job, getting CRL (and CA certificate) bytes from where a PKI publishes them.

- ``http``/``https`` (MS-WCCE 1.4: HTTP/1.1, port 80 unless the URL is https (443) or names a port): one persistent
  connection per (scheme, host, port) reused for every CRL of that host, bounded redirects, timeouts, proxies from
  ``http_proxy``/``https_proxy``/``no_proxy`` (unless ``use_proxy=False``, like ansible.builtin.uri), TLS verified
  by default (optional CA bundle), optional static name -> address map (like curl ``--resolve``)
- ``ldap`` URLs of AD CDP/AIA objects (``ldap:///CN=...?certificateRevocationList?base?objectClass=...``) through
  one ``_ldap.AdConnection`` (the shared connection options), opened on first use; the host a URL from a certificate
  or CRL names is ignored: credentials only ever go to the configured (or SRV-discovered) domain controller
- ``file`` URLs and plain paths, regular files only, and only from the module options: a URL found in a certificate or
  CRL (CDP, freshest CRL, AIA) is never read from local disk
- the CA itself over DCOM: ``ICertRequestD2::GetCAProperty`` CR_PROP_BASECRL (0x11) / CR_PROP_DELTACRL (0x12), with
  the CA signing certificate (CR_PROP_CASIGCERT, 0x0C) of the same key index

Every fetch is bounded: at most ``max_size`` bytes and ``timeout`` seconds in total (connect, TLS, redirects and
every read together: a watchdog shuts the socket down at the deadline, so a server dripping bytes cannot hold it);
an https URL never redirects to http.

``Retriever.first(urls, accept)`` tries URLs in order until one yields bytes that ``accept`` takes, and records
every attempt (``urls_tried``) and which URL served.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import os
import socket
import ssl
import stat
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


def read_local(path, max_size):
    """Bytes of the regular file ``path``, at most ``max_size`` of them; never blocks on a FIFO or device."""
    flags = os.O_RDONLY | getattr(os, 'O_NONBLOCK', 0) | getattr(os, 'O_NOCTTY', 0)
    try:
        fd = os.open(path, flags)
    except (IOError, OSError) as exc:
        raise FetchError('cannot read %s: %s' % (path, exc.strerror or exc))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise FetchError('%s is not a regular file' % path)
        if info.st_size > max_size:
            raise FetchError('%s is larger than max_size (%d bytes)' % (path, max_size))
        handle = os.fdopen(fd, 'rb')
        fd = None
        with handle:
            data = handle.read(max_size + 1)
    except (IOError, OSError) as exc:
        raise FetchError('cannot read %s: %s' % (path, exc.strerror or exc))
    finally:
        if fd is not None:
            os.close(fd)
    if len(data) > max_size:
        raise FetchError('%s is larger than max_size (%d bytes)' % (path, max_size))
    return data


# ---------------------------------------------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------------------------------------------
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

    # ---- TLS and proxies ----
    def ssl_context(self):
        if self._context is None:
            if self.validate_certs:
                try:
                    context = ssl.create_default_context(cafile=self.ca_bundle) if self.ca_bundle else \
                        ssl.create_default_context()
                except (IOError, OSError, ssl.SSLError) as exc:
                    raise FetchError('cannot load the CA bundle %s: %s' % (self.ca_bundle, exc))
            else:
                context = ssl.create_default_context()
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            self._context = context
        return self._context

    def proxy_for(self, scheme, host, port):
        """(host, port, authorization header or None) of the proxy for this target, or None."""
        if not self.use_proxy:
            return None
        proxies = _proxies_from(self.environ)
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
        proxy = self.proxy_for(scheme, host, port)
        key = (scheme, host.lower(), port, proxy[:2] if proxy else None)
        conn = self._connections.get(key)
        if conn is not None:
            return key, conn, proxy
        if proxy:
            phost, pport, pauth = proxy
            if scheme == 'https':
                conn = http_client.HTTPSConnection(phost, pport, timeout=self.timeout, context=self.ssl_context())
                conn.set_tunnel(host, port, headers={'Proxy-Authorization': pauth} if pauth else None)
            else:
                conn = http_client.HTTPConnection(phost, pport, timeout=self.timeout)
            conn._create_connection = self._creator(phost)  # pylint: disable=protected-access
        else:
            if scheme == 'https':
                conn = http_client.HTTPSConnection(host, port, timeout=self.timeout, context=self.ssl_context())
            else:
                conn = http_client.HTTPConnection(host, port, timeout=self.timeout)
            conn._create_connection = self._creator(host)  # pylint: disable=protected-access
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
    def _read_body(self, key, response, deadline):
        """The body, read in pieces: at most max_body bytes, never past the deadline."""
        length = response.getheader('Content-Length')
        if length and length.strip().isdigit() and int(length) > self.max_body:
            self._drop(key)
            raise FetchError('the response is larger than max_size (%d bytes)' % self.max_body)
        chunks = []
        total = 0
        while True:
            if deadline.expired():
                self._drop(key)
                raise deadline.error()
            chunk = response.read(min(64 * 1024, self.max_body + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > self.max_body:
                self._drop(key)
                raise FetchError('the response is larger than max_size (%d bytes)' % self.max_body)
        return b''.join(chunks)

    def _once(self, url, deadline=None):
        """One GET; returns (status, reason, response, body)."""
        deadline = deadline or Deadline(self.timeout)
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        host = parts.hostname
        if not host:
            raise FetchError('no host name in the URL')
        port = url_port(parts)
        path = parts.path or '/'
        if parts.query:
            path += '?' + parts.query
        key, conn, proxy = self._connection(scheme, host, port)
        target = path
        headers = {'User-Agent': USER_AGENT, 'Accept': '*/*', 'Connection': 'keep-alive'}
        default_port = DEFAULT_PORTS.get(scheme)
        headers['Host'] = host if port == default_port else '%s:%d' % (host, port)
        if ':' in host and not host.startswith('['):
            headers['Host'] = '[%s]' % host if port == default_port else '[%s]:%d' % (host, port)
        if proxy and scheme == 'http':
            target = '%s://%s%s' % (scheme, headers['Host'], path)
            if proxy[2]:
                headers['Proxy-Authorization'] = proxy[2]
        reused = conn.sock is not None
        for attempt in (1, 2):
            try:
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
                body = self._read_body(key, response, deadline)
                if response.will_close:
                    self._drop(key)
                return response.status, response.reason, response, body
            except (http_client.RemoteDisconnected, BrokenPipeError, ConnectionResetError,
                    http_client.BadStatusLine) as exc:
                # a kept-alive connection the server closed meanwhile: retry once on a new one
                self._drop(key)
                if attempt == 1 and reused and not deadline.expired():
                    key, conn, proxy = self._connection(scheme, host, port)
                    reused = False
                    continue
                raise FetchError('the server closed the connection: %s' % (exc or type(exc).__name__))
            except socket.timeout:
                # every socket timeout is cut to the deadline, which is at most ``timeout`` away
                self._drop(key)
                raise deadline.error()
            except ssl.SSLCertVerificationError as exc:
                self._drop(key)
                raise FetchError('TLS certificate of %s could not be verified (%s); set ca_bundle to the CA that '
                                 'issued the web server certificate, or validate_certs=false for tests only'
                                 % (host, getattr(exc, 'verify_message', None) or exc))
            except ssl.SSLError as exc:
                self._drop(key)
                raise FetchError('TLS error with %s: %s' % (host, exc))
            except socket.gaierror as exc:
                self._drop(key)
                raise FetchError('cannot resolve %s: %s (map it with host_addresses or use an address)'
                                 % (proxy[0] if proxy else host, exc.strerror or exc))
            except (OSError, http_client.HTTPException) as exc:
                self._drop(key)
                text = getattr(exc, 'strerror', None) or str(exc) or type(exc).__name__
                where = 'proxy %s:%d' % (proxy[0], proxy[1]) if proxy else '%s:%d' % (host, port)
                raise FetchError('cannot get it from %s: %s' % (where, text))
        raise FetchError('no response')  # pragma: no cover

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
        current = url
        while True:
            status, reason, response, body = self._once(current, deadline)
            if status in REDIRECT_CODES:
                location = response.getheader('Location')
                if not location:
                    raise FetchError('HTTP %d redirect without a Location' % status)
                if len(seen) > self.max_redirects:
                    chain = ' -> '.join(redact(u) for u in seen)
                    raise FetchError('more than %d redirects (%s)' % (self.max_redirects, chain))
                current = urljoin(current, location)
                if urlsplit(current).scheme.lower() not in ('http', 'https'):
                    raise FetchError('redirect to an unsupported URL %s' % redact(current))
                if urlsplit(seen[-1]).scheme.lower() == 'https' and urlsplit(current).scheme.lower() == 'http':
                    raise FetchError('refused the redirect from https to http (%s -> %s)'
                                     % (redact(seen[-1]), redact(current)))
                seen.append(current)
                continue
            if status != 200:
                raise FetchError('HTTP %d %s' % (status, reason))
            return body, current

    def stats(self):
        return {'connections': self.connections_opened, 'requests': self.requests_sent}


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


# ---------------------------------------------------------------------------------------------------------------
# LDAP
# ---------------------------------------------------------------------------------------------------------------
class LdapUrl(object):
    """RFC 4516 ``ldap://[host[:port]]/dn?attributes?scope?filter``."""

    def __init__(self, url):
        parts = urlsplit(url)
        if parts.scheme.lower() not in ('ldap', 'ldaps'):
            raise FetchError('not an LDAP URL')
        self.scheme = parts.scheme.lower()
        self.host = parts.hostname or None
        try:
            self.port = parts.port
        except ValueError:
            raise FetchError('invalid port in LDAP URL')
        rest = url.split('://', 1)[1]
        rest = rest.split('/', 1)[1] if '/' in rest else ''
        fields = rest.split('?')
        self.dn = unquote(fields[0])
        if not self.dn:
            raise FetchError('the LDAP URL names no object (DN)')
        attrs = unquote(fields[1]) if len(fields) > 1 else ''
        self.attributes = [a.strip() for a in attrs.split(',') if a.strip()] or ['certificateRevocationList']
        scope = (unquote(fields[2]) if len(fields) > 2 else '').lower() or 'base'
        scopes = {'base': 'BASE', 'one': 'LEVEL', 'sub': 'SUBTREE'}
        if scope not in scopes:
            raise FetchError('unsupported LDAP scope %r' % scope)
        self.scope = scopes[scope]
        self.filter = (unquote(fields[3]) if len(fields) > 3 else '') or '(objectClass=*)'
        if not self.filter.startswith('('):
            self.filter = '(%s)' % self.filter


# what an LDAP URL from a certificate or CRL may read (RFC 4523 PKI attributes): nothing else of the directory
PKI_ATTRIBUTES = ('certificaterevocationlist', 'deltarevocationlist', 'authorityrevocationlist', 'cacertificate',
                  'crosscertificatepair')


class LdapFetcher(object):
    """Reads binary attributes named by LDAP URLs over connections made by ``connect(host_or_None)``.

    ``connect`` returns a connected object with ``search(base, filter, attributes, scope=..., paged=...)`` (an
    ``_ldap.AdConnection``); ``None`` means the configured directory (domain_controller, or a DC of domain found by
    SRV). Connections are kept per host and closed by ``close()``.

    Only a URL the user gave (``trusted``) may name the host to bind to; the host of a URL from a certificate or CRL
    is ignored, so the configured credentials never go to a server the certificate names.
    """

    def __init__(self, connect, max_size=MAX_BODY, timeout=30):
        self._connect = connect
        self._connections = {}
        self.max_size = max_size
        self.timeout = timeout

    def _conn(self, host):
        key = (host or '').lower()
        if key not in self._connections:
            self._connections[key] = self._connect(host)
        return self._connections[key]

    def get(self, url, trusted=False):
        parsed = LdapUrl(url)
        wanted = [a.split(';', 1)[0] for a in parsed.attributes]
        if not trusted:
            for name in wanted:
                if name.lower() not in PKI_ATTRIBUTES:
                    raise FetchError('an LDAP URL from a certificate or CRL may read only CRL and CA certificate '
                                     'attributes, not %s' % name)
        conn = self._conn(parsed.host if trusted else None)
        deadline = Deadline(self.timeout)

        def sockets():
            return [getattr(getattr(conn, 'conn', None), 'socket', None)]
        with Watchdog(deadline, sockets) as watchdog:
            try:
                entries = conn.search(parsed.dn, parsed.filter, wanted, scope=parsed.scope, paged=False)
            except Exception as exc:  # _ldap.LdapError and anything the library raises
                if watchdog.fired:
                    raise deadline.error()
                raise FetchError('LDAP search failed: %s' % exc)
        if not entries:
            raise FetchError('no object %s matching %s' % (parsed.dn, parsed.filter))
        for entry in entries:
            attrs = entry.get('attributes') or {}
            lowered = dict((k.lower().split(';', 1)[0], v) for k, v in attrs.items())
            for name in wanted:
                for value in lowered.get(name.lower()) or []:
                    if value and len(value) > self.max_size:
                        raise FetchError('the %s value is larger than max_size (%d bytes)' % (name, self.max_size))
                    if value:
                        return bytes(value)
        raise FetchError('%s has no value in %s (not published yet?)' % (parsed.dn, ', '.join(wanted)))

    def close(self):
        for conn in self._connections.values():
            try:
                conn.close()
            except Exception:
                pass
        self._connections = {}


# ---------------------------------------------------------------------------------------------------------------
# the CA over DCOM
# ---------------------------------------------------------------------------------------------------------------
CR_PROP_CASIGCERTCOUNT = 0x0B
CR_PROP_CASIGCERT = 0x0C
CR_PROP_BASECRL = 0x11
CR_PROP_DELTACRL = 0x12
PROPTYPE_LONG = 1
PROPTYPE_BINARY = 3


class CaFetcher(object):
    """Base/delta CRL and signing certificate from the CA (``client``: a _wcce.CertRequestClient or alike)."""

    def __init__(self, client, label, session=None):
        self.client = client
        self.label = label
        self.session = session
        self._index = None
        self._opened = False

    def _open(self):
        """Open the DCOM session first, so that a refused activation is reported as such."""
        if self._opened or self.session is None:
            return
        self._opened = True
        try:
            self.session.open()
        except Exception as exc:
            text = exc.to_message() if hasattr(exc, 'to_message') else str(exc)
            raise FetchError(text)

    def key_index(self):
        """Index of the CA's current key: CR_PROP_CASIGCERTCOUNT - 1."""
        if self._index is None:
            try:
                count = int(self.client.get_ca_property(CR_PROP_CASIGCERTCOUNT, 0, PROPTYPE_LONG))
            except Exception:
                count = 1
            self._index = max(count - 1, 0)
        return self._index

    def _prop(self, prop_id, what):
        self._open()
        try:
            value = self.client.get_ca_property(prop_id, self.key_index(), PROPTYPE_BINARY)
        except Exception as exc:
            text = exc.to_message() if hasattr(exc, 'to_message') else str(exc)
            raise FetchError('GetCAProperty(%s) failed: %s' % (what, text))
        if not value:
            raise FetchError('the CA returned no %s' % what)
        return bytes(value)

    def base_crl(self):
        return self._prop(CR_PROP_BASECRL, 'base CRL')

    def delta_crl(self):
        return self._prop(CR_PROP_DELTACRL, 'delta CRL')

    def ca_certificate(self):
        return self._prop(CR_PROP_CASIGCERT, 'CA signing certificate')


# ---------------------------------------------------------------------------------------------------------------
# trying URLs in order
# ---------------------------------------------------------------------------------------------------------------
class Retriever(object):
    """Dispatches URLs by scheme and tries lists of them in order.

    A URL is ``trusted`` when it comes from the module options; one from a certificate or CRL is not: it is never read
    from local disk, and its LDAP host is ignored (see LdapFetcher).
    """

    def __init__(self, http=None, ldap=None, max_size=None):
        self.http = http or HttpClient()
        self.ldap = ldap
        self.max_size = self.http.max_body if max_size is None else max_size

    def get(self, url, trusted=False):
        """Bytes at ``url`` (http, https, ldap, file or a path); raises FetchError."""
        scheme = urlsplit(url).scheme.lower() if '://' in url else ''
        if scheme in ('http', 'https'):
            return self.http.get(url)[0]
        if scheme in ('ldap', 'ldaps'):
            if self.ldap is None:
                raise FetchError('LDAP URLs need the directory connection options (domain or domain_controller '
                                 'and credentials)')
            return self.ldap.get(url, trusted=trusted)
        if scheme == 'file' or not scheme:
            if not trusted:
                raise FetchError('a local file named by a certificate or CRL is never read (file URLs and paths are '
                                 'taken only from the urls and delta_urls options)')
            path = unquote(urlsplit(url).path) if scheme == 'file' else url
            return read_local(path, self.max_size)
        raise FetchError('unsupported URL scheme %r' % scheme)

    def first(self, urls, accept, tried=None, trusted=()):
        """Try ``urls`` in order: the first whose bytes ``accept(data, url)`` returns a value for wins.

        ``accept`` raises to reject. Returns (value, url) or (None, None); ``tried`` (a list) receives one dict per
        attempt: {'url', 'ok', 'error'}. ``trusted``: the URLs among them that come from the module options.
        """
        tried = [] if tried is None else tried
        for url in urls:
            record = {'url': redact(url), 'ok': False, 'error': None}
            tried.append(record)
            try:
                data = self.get(url, trusted=url in trusted)
                value = accept(data, url)
            except Exception as exc:  # FetchError, CrlError and anything accept raises
                record['error'] = str(exc) or type(exc).__name__
                continue
            record['ok'] = True
            return value, url
        return None, None

    def close(self):
        if self.http is not None:
            self.http.close()
        if self.ldap is not None:
            self.ldap.close()


# ---------------------------------------------------------------------------------------------------------------
# the whole job: base CRL (+ delta), validated, optionally a certificate's status
# ---------------------------------------------------------------------------------------------------------------
class JobError(AdcsError):
    """The module cannot deliver; ``tried`` lists the attempts so far."""

    def __init__(self, msg, tried=None):
        super(JobError, self).__init__(msg)
        self.tried = tried or []


def _dedupe(urls):
    out = []
    for url in urls:
        if url and url not in out:
            out.append(url)
    return out


class CrlJob(object):
    """Fetch and validate the base CRL and, when pointed to, its delta CRL.

    ``retriever``: a Retriever (URLs); ``ca``: a CaFetcher (from_ca) or None; ``cert``: the certificate whose CDP /
    freshest CRL / AIA are used and whose status is checked; ``issuer_cert``: the CA certificate (or None: AIA or
    the CA); ``urls``/``delta_urls``: explicit lists; ``freshness``: fail, warn or ignore; ``anchors``: the trust
    anchors (a list of certificates, or a callable returning one) that a CA certificate from the certificate's AIA
    must be, or be issued by (none: AIA issuers are refused).
    """

    def __init__(self, retriever, ca=None, cert=None, issuer_cert=None, urls=None, delta_urls=None, delta=True,
                 freshness='fail', now=None, anchors=None):
        from ansible_collections.adcs.enrollment.plugins.module_utils import _crl_validate as v
        self.v = v
        self.retriever = retriever
        self.ca = ca
        self.cert = cert
        self.issuer_cert = issuer_cert
        self.issuer_source = 'given' if issuer_cert is not None else None
        self.urls = list(urls or [])
        self.delta_urls = list(delta_urls or [])
        self.want_delta = delta
        self.freshness = freshness
        self.now = now
        self._anchors = anchors
        self.tried = []
        self.warnings = []
        self.base = None
        self.base_data = None
        self.base_served_by = None
        self.delta = None
        self.delta_data = None
        self.delta_served_by = None

    # ---- issuer ----
    def anchors(self):
        if callable(self._anchors):
            self._anchors = self._anchors()
        return self._anchors or []

    def _issuer_from_aia(self):
        """The issuer from the certificate's AIA caIssuers URLs: it must have signed the certificate, and since it
        comes from the party being verified, it must also be (or be issued by) a trust anchor."""
        v = self.v
        urls = v.ca_issuers_urls(self.cert)
        if not urls:
            return None

        def accept(data, _url):
            for candidate in v.load_certificates(data):
                if candidate.subject != self.cert.issuer:
                    continue
                try:
                    self.cert.verify_directly_issued_by(candidate)
                except Exception as exc:  # InvalidSignature, ValueError, TypeError
                    raise v.CrlError('"%s" did not sign the certificate: %s'
                                     % (candidate.subject.rfc4514_string(), exc or type(exc).__name__))
                v.check_anchored(candidate, self.anchors())
                return candidate
            raise v.CrlError('no certificate for "%s" there' % self.cert.issuer.rfc4514_string())

        tried = []
        cert, url = self.retriever.first(urls, accept, tried)
        for item in tried:
            item['kind'] = 'issuer'
        self.tried.extend(tried)
        if cert is not None:
            self.issuer_source = redact(url)
        return cert

    def _ensure_issuer(self):
        if self.issuer_cert is not None:
            return
        if self.ca is not None:
            record = {'url': self.ca.label, 'ok': False, 'error': None, 'kind': 'issuer'}
            self.tried.append(record)
            try:
                self.issuer_cert = self.v.load_certificate(self.ca.ca_certificate())
                record['ok'] = True
                self.issuer_source = self.ca.label
                return
            except Exception as exc:
                record['error'] = str(exc)
                if self.cert is None:
                    raise JobError('cannot get the CA certificate from %s: %s' % (self.ca.label, exc), self.tried)
        if self.cert is not None:
            self.issuer_cert = self._issuer_from_aia()
        if self.issuer_cert is None:
            if self.cert is None:
                raise JobError('the issuing CA certificate is needed to validate the CRL: set issuer_certificate '
                               '(or certificate, whose AIA names it, or from_ca)', self.tried)
            errors = '; '.join('%s: %s' % (t['url'], t['error']) for t in self.tried
                               if t.get('kind') == 'issuer' and not t['ok'])
            raise JobError('the issuing CA certificate of "%s" could not be obtained from its AIA (%s): set '
                           'issuer_certificate, or ca_bundle to the CA certificates it must chain to'
                           % (self.cert.issuer.rfc4514_string(), errors or 'no URLs'), self.tried)

    # ---- CRLs ----
    def _acceptor(self, expect_delta):
        v = self.v

        def accept(data, _url):
            crl = v.load_crl(data)
            warnings = v.validate_crl(crl, self.issuer_cert, now=self.now, freshness=self.freshness,
                                      expect_delta=expect_delta)
            if expect_delta:
                v.check_delta_against_base(crl, self.base)
            return crl, data, warnings
        return accept

    def _from_ca(self, delta):
        what = 'delta' if delta else 'base'
        label = '%s (%s CRL)' % (self.ca.label, what)
        record = {'url': label, 'ok': False, 'error': None, 'kind': what}
        self.tried.append(record)
        try:
            data = self.ca.delta_crl() if delta else self.ca.base_crl()
            value = self._acceptor(delta)(data, label)
        except Exception as exc:
            record['error'] = str(exc)
            return None, None
        record['ok'] = True
        return value, label

    def _fetch(self, urls, delta):
        tried = []
        value, url = self.retriever.first(urls, self._acceptor(delta), tried,
                                          trusted=set(self.urls) | set(self.delta_urls))
        for item in tried:
            item['kind'] = 'delta' if delta else 'base'
        self.tried.extend(tried)
        return value, (redact(url) if url else None)

    def base_urls(self):
        if self.urls:
            return _dedupe(self.urls)
        if self.cert is not None:
            return _dedupe(self.v.cdp_urls(self.cert))
        return []

    def delta_candidate_urls(self):
        if self.delta_urls:
            return _dedupe(self.delta_urls)
        urls = []
        if self.cert is not None and not self.urls:
            urls.extend(self.v.freshest_urls(self.cert))
        if self.base is not None:
            urls.extend(self.v.freshest_urls(self.base))
        return _dedupe(urls)

    def run(self):
        self._ensure_issuer()
        if self.ca is not None:
            value, served = self._from_ca(False)
        else:
            urls = self.base_urls()
            if not urls:
                raise JobError('no CRL URL: the certificate has no CRL distribution point; set urls or from_ca')
            value, served = self._fetch(urls, False)
        if value is None:
            raise JobError('no usable CRL: %s' % '; '.join('%s: %s' % (t['url'], t['error'])
                                                           for t in self.tried if not t['ok']), self.tried)
        self.base, self.base_data, warnings = value
        self.base_served_by = served
        self.warnings.extend(warnings)
        if self.want_delta:
            self._run_delta()
        return self

    def _run_delta(self):
        if self.ca is not None:
            value, served = self._from_ca(True)
            if value is None:
                # a CA without delta CRLs answers CERTSRV_E_PROPERTY_EMPTY: not an error unless the base points
                # to a delta
                if self.v.freshest_urls(self.base):
                    self._delta_missing()
                return
        else:
            urls = self.delta_candidate_urls()
            if not urls:
                return
            value, served = self._fetch(urls, True)
            if value is None:
                self._delta_missing()
                return
        self.delta, self.delta_data, warnings = value
        self.delta_served_by = served
        self.warnings.extend(warnings)

    def _delta_missing(self):
        errors = '; '.join('%s: %s' % (t['url'], t['error']) for t in self.tried
                           if t.get('kind') == 'delta' and not t['ok'])
        text = 'the base CRL points to a delta CRL but none could be used (%s)' % errors
        if self.freshness == 'fail':
            raise JobError(text + '; set delta=false to use the base CRL alone', self.tried)
        self.warnings.append(text)

    def status(self):
        if self.cert is None:
            raise JobError('check_certificate needs certificate or certificate_path')
        try:
            return self.v.revocation_status(self.cert, self.base, self.delta, self.issuer_cert)
        except self.v.CrlError as exc:
            raise JobError(str(exc), self.tried)
