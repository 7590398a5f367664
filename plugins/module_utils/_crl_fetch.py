# -*- coding: utf-8 -*-
# Copyright (c) the adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""CRL fetch: one job, getting CRL (and CA certificate) bytes from where a PKI publishes them.

- ``http``/``https`` URLs through ``_crl_http.HttpClient`` (bounded: size, total deadline, redirects, proxies, TLS)
- ``ldap`` URLs of AD CDP/AIA objects (``ldap:///CN=...?certificateRevocationList?base?objectClass=...``) through
  one ``_ldap.AdConnection`` (the shared connection options), opened on first use; the host a URL from a certificate
  or CRL names is ignored: credentials only ever go to the configured (or SRV-discovered) domain controller
- ``file`` URLs and plain paths, regular files only, and only from the module options: a URL found in a certificate or
  CRL (CDP, freshest CRL, AIA) is never read from local disk
- the CA itself over DCOM: ``ICertRequestD2::GetCAProperty`` CR_PROP_BASECRL (0x11) / CR_PROP_DELTACRL (0x12) of the
  key index (CRL name ID) of the CA signing certificate (CR_PROP_CASIGCERT, 0x0C) that issued the certificate being
  checked, or of the current one (``_ca_keys.SigningCerts``; a renewed CA has one CRL per key)

Every fetch is bounded: at most ``max_size`` bytes and ``timeout`` seconds in total (``_crl_http.Deadline`` and
``Watchdog``). ``Retriever.first(urls, accept)`` tries URLs in order until one yields bytes that ``accept`` takes, and
records every attempt (``urls_tried``) and which URL served.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import stat

try:
    from urllib.parse import unquote, urlsplit
except ImportError:  # pragma: no cover - Python 2 is not supported by the collection
    pass

from ansible_collections.adcs.enrollment.plugins.module_utils import _auth
from ansible_collections.adcs.enrollment.plugins.module_utils import _deps
from ansible_collections.adcs.enrollment.plugins.module_utils._ca_keys import SigningCerts
from ansible_collections.adcs.enrollment.plugins.module_utils._ca_session import CaSession
from ansible_collections.adcs.enrollment.plugins.module_utils._crl_http import (
    MAX_BODY,
    Deadline,
    FetchError,
    HttpClient,
    Watchdog,
    redact,
)
from ansible_collections.adcs.enrollment.plugins.module_utils._errors import AdcsError
from ansible_collections.adcs.enrollment.plugins.module_utils._ndr import (
    CR_PROP_BASECRL,
    CR_PROP_DELTACRL,
    PROPTYPE_BINARY,
)


# ---------------------------------------------------------------------------------------------------------------
# local files (only from the options)
# ---------------------------------------------------------------------------------------------------------------
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
# the CA over DCOM (MS-WCCE constants from _ndr)
# ---------------------------------------------------------------------------------------------------------------
class CaFetcher(object):
    """Base/delta CRL and signing certificate from the CA: ``client`` (a _wcce.CertRequestClient or alike), or None
    for the client of ``session`` (a ``_ca_session.CaSession``, opened on first use)."""

    def __init__(self, client, label, session=None):
        self._client = client
        self.label = label
        self.session = session
        self._selected = None   # (certificate index, key index, CA certificate)
        self._target = (None, None)
        self._signing = None
        self._opened = False

    @property
    def client(self):
        return self._client if self._client is not None else self.session.client

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

    def target(self, cert=None, issuer=None):
        """The CRL to fetch is the one for ``cert`` (the key of the CA certificate that issued it) or for the key
        of ``issuer``; without either the current key's."""
        self._target = (cert, issuer)
        self._selected = None

    def selected(self):
        """(certificate index, key index, CA certificate) of the target (``_ca_keys.SigningCerts.select``)."""
        if self._selected is None:
            self._open()
            self._signing = SigningCerts(self.client)
            self._selected = self._signing.select(*self._target)
        return self._selected

    def key_index(self):
        """The key index (CRL name ID) whose CRLs are fetched."""
        return self.selected()[1]

    def _prop(self, prop_id, what):
        self._open()
        try:
            value = self.client.get_ca_property(prop_id, self.key_index(), PROPTYPE_BINARY)
        except FetchError:
            raise
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
        """DER of the CA certificate the CRLs are checked with (the selected signing certificate)."""
        index = self.selected()[0]
        return self._signing.der(index)


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
        for source in (self.http, self.ldap):
            if source is not None:
                source.close()


# ---------------------------------------------------------------------------------------------------------------
# the sources from the module's connection options
# ---------------------------------------------------------------------------------------------------------------
def ldap_connector(params):
    """connect(host) for LdapFetcher: ``_auth.ldap_connect`` with the shared options; ``host`` (only ever from a URL in
    the options) replaces domain_controller, None is the configured directory."""

    def connect(host):
        try:
            _deps.require('ldap3')
            if not host and not _auth.has_directory(params):
                raise FetchError('LDAP URLs are read from the configured directory: set domain or domain_controller '
                                 '(a host named by a certificate or CRL is never contacted)')
            return _auth.ldap_connect(params, host)
        except FetchError:
            raise
        except AdcsError as exc:     # MissingLibrary, LdapError
            raise FetchError(exc.to_message())
    return connect


def open_ca(params, host_addresses):
    """(CaFetcher, CA session) for from_ca: one ``_ca_session.CaSession`` (as for enrollment) authenticated by
    ``_auth.dcom_auth`` (every auth option: password, NT hash, Kerberos with password, keytab or ccache)."""
    _deps.require('impacket')
    host, name = params.get('ca_host'), params.get('ca_name')
    if not host or not name:
        raise FetchError('from_ca needs ca_host and ca_name')
    address = dict((k.lower(), val) for k, val in host_addresses.items()).get(host.lower(), host)
    session = CaSession(host, name, _auth.dcom_auth(params), timeout=params.get('timeout') or 30, address=address)
    return CaFetcher(None, 'dcom://%s/%s' % (host, name), session=session), session
