# -*- coding: utf-8 -*-
# Copyright (c) the adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""DCOM transport: one job, an authenticated DCOM session to a CA's CCertRequestD object.

Over our own DCE/RPC connections (``_rpc_conn``: the caller's timeout, IPv4/IPv6, the chosen RPC authentication
package at RPC_C_AUTHN_LEVEL_PKT_PRIVACY, which the CA demands (IF_ENFORCEENCRYPTICERTREQUEST, KB5004442), every
reply verified): connect to port 135, activate CLSID CCertRequestD (D99E6E74-FC88-11D0-B498-00A0C90312F3) for
ICertRequestD2 (ICertRequestD when the CA lacks D2) with IRemoteSCMActivator::RemoteCreateInstance
(``_activation``), open the object exporter connection at the port the CA announced but at the address used for
port 135, QueryInterface (IRemUnknown::RemQueryInterface, ``_orpc``) for further IIDs with the per-interface
HRESULT checked, and release everything (one RemRelease of every interface pointer, then both connections closed)
from ``close()`` / the context manager. One session serves many calls: two connections, two handshakes. Every
socket/RPC exception is turned into an ``_errors`` exception with an actionable message (``translate_exception``).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import socket
import struct
import sys
import time

from ansible_collections.adcs.enrollment.plugins.module_utils import _activation
from ansible_collections.adcs.enrollment.plugins.module_utils import _deps
from ansible_collections.adcs.enrollment.plugins.module_utils import _errors
from ansible_collections.adcs.enrollment.plugins.module_utils import _ndr
from ansible_collections.adcs.enrollment.plugins.module_utils import _orpc
from ansible_collections.adcs.enrollment.plugins.module_utils import _rpc_auth
from ansible_collections.adcs.enrollment.plugins.module_utils import _rpc_conn
from ansible_collections.adcs.enrollment.plugins.module_utils import _rpc_verify
from ansible_collections.adcs.enrollment.plugins.module_utils import _wcce_ndr
from ansible_collections.adcs.enrollment.plugins.module_utils._rpc_stats import WIRE_STATS
from ansible_collections.adcs.enrollment.plugins.module_utils._errors import (
    AuthenticationError,
    CaUnavailable,
    TransportError,
    WcceError,
)

DEFAULT_TIMEOUT = 30
DEFAULT_PACKAGE = 'negotiate'
PING_PERIOD = 120           # MS-DCOM 3.2.4.2: a client pings its objects every 120 s; they die after 3 missed pings
E_NOINTERFACE = 0x80004002
RESOLVER_PORT = 135


def code_from_exception(exc):
    """The numeric status/HRESULT an exception carries (``_errors.RpcFault`` and the like), else None."""
    code = getattr(exc, 'error_code', None)
    if code is None:
        getter = getattr(exc, 'get_error_code', None) or getattr(exc, 'getErrorCode', None)
        try:
            code = getter() if getter is not None else None
        except Exception:
            code = None
    return None if code is None else int(code) & 0xFFFFFFFF


def _kerberos_failure(exc, action, host):
    """The KerberosFailure for impacket's KerberosError (only possible once impacket's Kerberos was imported)."""
    if 'impacket.krb5.kerberosv5' not in sys.modules:
        return None
    from ansible_collections.adcs.enrollment.plugins.module_utils import _kdc
    return _kdc.failure_from_krb_error(exc, action, target=host) if _kdc.is_krb_error(exc) else None


def translate_exception(exc, action, host=None, timeout=None, during_auth=False):
    """Map any exception raised by the RPC layer/sockets to a WcceError subclass (already-translated ones pass)."""
    if isinstance(exc, WcceError):
        return exc
    kerberos = _kerberos_failure(exc, action, host)
    if kerberos is not None:
        return kerberos
    where = (' (%s)' % host) if host else ''
    if isinstance(exc, _rpc_auth.Rejected):
        return AuthenticationError('%s failed: the CA refused the authentication%s (%s)' % (action, where, exc),
                                   remedy='Check the account and its password or keys, and rpc_auth_package.')
    if isinstance(exc, _rpc_auth.Unsupported):
        return TransportError('%s failed: %s is not supported by this client%s' % (action, exc, where),
                              remedy='Enable AES Kerberos encryption types for the CA\'s computer account (Windows '
                                     'default since Server 2008), or use NTLM.')
    if isinstance(exc, socket.timeout):
        return CaUnavailable('%s timed out after %s s%s' % (action, timeout, where),
                             remedy='Check that the CA host is reachable on TCP 135 and the dynamic RPC ports, '
                                    'or raise the timeout.')
    if isinstance(exc, socket.gaierror):
        return CaUnavailable('%s failed: cannot resolve the CA host name%s' % (action, where), detail=str(exc),
                             remedy='Check the CA host name and DNS, or give the address.')
    if isinstance(exc, ConnectionRefusedError):
        return CaUnavailable('%s failed: connection refused%s' % (action, where), hresult=0x800706BA)
    text = str(exc)
    if isinstance(exc, ConnectionResetError):
        # a TCP reset (RST), as from a CA that refuses connections or a firewall; an orderly close is below
        return CaUnavailable('%s failed: the CA reset the connection%s' % (action, where), hresult=0x800706BA)
    if isinstance(exc, (_rpc_conn.ConnectionClosed, BrokenPipeError)):
        if during_auth:
            return TransportError('%s failed: the CA closed the connection%s' % (action, where),
                                  remedy='Packet privacy or the authentication may have been refused; check the '
                                         'credentials and the CA logs.')
        return TransportError('%s failed: the CA closed the connection%s' % (action, where),
                              remedy='The connection was lost during the call: run the task again. A request may '
                                     'have been processed (check the CA log and issued requests).')
    if isinstance(exc, OSError):
        return CaUnavailable('%s failed%s' % (action, where), detail=text)
    if isinstance(exc, (struct.error, IndexError, _orpc.MalformedReply)):
        # a verified reply (e.g. the activation properties) that is malformed or truncated
        return _errors.ProtocolError('%s failed: the reply from the CA%s could not be decoded; nothing was written'
                                     % (action, where), remedy=_rpc_verify.REMEDY,
                                     detail=text if isinstance(exc, _orpc.MalformedReply)
                                     else _rpc_verify.exception_name(exc))
    code = code_from_exception(exc)
    if code is not None:
        if during_auth and code in (5, 0x80070005, 0x721, 0x80070721, 0x8009030C, 0x1C010003):
            if code in (5, 0x80070005):
                return AuthenticationError(
                    '%s was refused%s' % (action, where), hresult=code,
                    remedy='Check user name, domain and password/NT hash; if they are right the account lacks '
                           'DCOM access to the CA ("Certificate Service DCOM Access") or the Request '
                           'Certificates permission.')
            if code == 0x1C010003:
                return TransportError('%s failed: the server does not offer the interface%s' % (action, where),
                                      hresult=code, remedy='Check that the host is an AD CS enterprise CA.')
            return AuthenticationError('%s failed%s' % (action, where), hresult=code)
        return _errors.exception_for_hresult(code, summary='%s failed%s' % (action, where),
                                             default_class=TransportError)
    if 'SessionError' in type(exc).__name__ or 'Kerberos' in type(exc).__name__:
        return AuthenticationError('%s failed%s' % (action, where), detail=text)
    return TransportError('%s failed%s' % (action, where), detail='%s: %s' % (type(exc).__name__, text))


PACKAGE_NEEDS = {'negotiate': None, 'ntlm': (('password', 'nt_hash'), 'auth=password or auth=ntlm'),
                 'kerberos': (('kerberos',), 'auth=kerberos')}


def check_package(package, kind):
    """InvalidInput unless ``package`` (rpc_auth_package) is known and fits the authentication kind."""
    if package not in PACKAGE_NEEDS:
        raise _errors.InvalidInput('rpc_auth_package must be one of %s, not %r' % (', '.join(sorted(PACKAGE_NEEDS)),
                                                                                   package))
    needs = PACKAGE_NEEDS[package]
    if needs and kind not in needs[0]:
        raise _errors.InvalidInput('rpc_auth_package=%s needs %s' % (package, needs[1]),
                                   remedy='Leave rpc_auth_package at negotiate (the default: SPNEGO chooses Kerberos '
                                          'or NTLM from the credentials), or choose the one that fits auth.')


class InterfaceRef(object):
    """A DCOM interface pointer held by a session: the IID it was obtained for and its STDOBJREF (``_orpc``)."""

    def __init__(self, iid, name, std):
        self.iid, self.name, self.std = iid, name, std
        self.released = False

    @property
    def ipid(self):
        return self.std.ipid

    @property
    def oxid(self):
        return self.std.oxid

    def __repr__(self):
        return 'InterfaceRef(%s)' % self.name


class DcomSession(object):
    """An authenticated DCOM session to one CA host.

    ``DcomSession(host, auth, timeout=30, remote_host=None)``; ``open()`` connects and activates CCertRequestD for
    ICertRequestD2 (ICertRequestD only when the CA lacks D2; ``self.base`` is the activated pointer, D2 derives
    from D); ``query_interface(iid, name)`` returns the held pointer or another InterfaceRef, or raises
    (E_NOINTERFACE as TransportError with that HRESULT); ``call(ref, request)`` sends one call and returns the
    decoded reply; ``close()`` releases every pointer in one RemRelease and disconnects (idempotent).

    The RPC authentication package is ``auth.rpc_package`` (negotiate|ntlm|kerberos, default negotiate). Idle
    sessions (MS-DCOM ping): this client does not ping; a session idle for ``PING_PERIOD`` seconds or more is
    reopened before its next call (the CA may have released its objects after three missed pings), and the
    pointers held by callers are renewed in place.
    """

    clsid = _ndr.CLSID_CCertRequestD
    base_iid = _ndr.IID_ICertRequestD
    clock = staticmethod(time.monotonic)

    def __init__(self, host, auth, timeout=DEFAULT_TIMEOUT, remote_host=None):
        if not _deps.HAS_IMPACKET:
            raise TransportError('The Python library "impacket" is required',
                                 remedy='Install impacket (>= 0.12) on the node that runs the module.')
        self.host = host
        self.auth = auth
        self.timeout = timeout
        self.remote_host = remote_host
        self.package = getattr(auth, 'rpc_package', None) or DEFAULT_PACKAGE
        check_package(self.package, getattr(auth, 'kind', None))
        self._resolver = None           # the port 135 connection (IRemoteSCMActivator)
        self._exporters = {}            # OXID -> connection to the object exporter
        self._cid = self._ipid_rem_unknown = None
        self._bindings = []
        self.base = None
        self._refs = []
        self._last_used = None

    def __repr__(self):
        return 'DcomSession(host=%r, auth=%r, open=%s)' % (self.host, self.auth, self.is_open)

    def __enter__(self):
        self.open()
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close()
        return False

    @property
    def is_open(self):
        return self._resolver is not None

    def open(self):
        if self._resolver is not None:
            return self
        if hasattr(self.auth, 'set_ca_host'):
            self.auth.set_ca_host(self.host)    # Kerberos: the service ticket is for HOST/<this name>
        try:
            resolver = _rpc_conn.RpcConnection(self.remote_host or self.host, RESOLVER_PORT,
                                               self.auth.transport_kwargs(), self.package, timeout=self.timeout,
                                               remote_name=self.host)
            resolver.connect()
        except Exception as exc:
            raise translate_exception(exc, 'Connecting to the CA endpoint mapper (port 135)', self.host,
                                      self.timeout, during_auth=True)
        self._resolver = resolver
        try:
            self.base = self._activate()
            self._refs.append(self.base)
        except Exception as exc:
            err = translate_exception(exc, 'Activating CCertRequestD on the CA', self.host, self.timeout,
                                      during_auth=True)
            self.close()
            raise err
        self._last_used = self.clock()
        return self

    def _activate(self):
        """CCertRequestD for ICertRequestD2; for ICertRequestD only when the CA has no D2 (MS-WCCE 3.1.1.4)."""
        d2 = _ndr.IID_ICertRequestD2
        try:
            return InterfaceRef(d2, 'ICertRequestD2', self._create_instance(d2))
        except Exception as exc:
            if code_from_exception(exc) != E_NOINTERFACE:
                raise
        return InterfaceRef(self.base_iid, 'ICertRequestD', self._create_instance(self.base_iid))

    def _create_instance(self, iid):
        """RemoteCreateInstance on the port 135 connection (bound to IRemoteSCMActivator once, with the
        handshake); keeps the causality ID and the exporter's bindings for the later calls; the STDOBJREF."""
        cid = os.urandom(16)
        self._resolver.alter_ctx(_activation.IID_IRemoteSCMActivator)
        resp = self._resolver.request(_activation.remote_create_instance(self.clsid, iid, cid))
        activated = _activation.parse_properties_out(_activation.pointer_data(resp))
        if activated.hresult:
            raise _errors.RpcFault(activated.hresult)
        self._cid, self._ipid_rem_unknown = cid, activated.ipid_rem_unknown
        self._bindings = activated.string_bindings
        return activated.std

    def connection(self, ref, iid=None):
        """The object exporter connection of ``ref``'s OXID, opened once (first bound to ``iid``, default the
        ref's): to the address used for port 135 at the port the CA announced, same package and timeout; further
        interfaces are added with an alter_context under the same security context (no new handshake)."""
        conn = self._exporters.get(ref.oxid)
        if conn is None:
            port = _activation.exporter_port(self._bindings, self._resolver.address)
            conn = _rpc_conn.RpcConnection(self._resolver.address, port, self._resolver.creds, self.package,
                                           timeout=self.timeout, remote_name=self._resolver.remote_name)
            try:
                conn.bind(iid or ref.iid)
            except Exception:
                conn.disconnect()
                raise
            self._exporters[ref.oxid] = conn
        return conn

    def _send(self, ref, request, iid, ipid):
        """``request`` on ``ref``'s exporter connection, context ``iid``, object ``ipid``, with the session's
        ORPCTHIS (the activation's causality ID, as impacket's client sends it)."""
        conn = self.connection(ref, iid)
        conn.alter_ctx(iid)
        # the hot calls (_wcce_ndr: Request, Request2) take the header as packed bytes
        request['ORPCthis'] = _wcce_ndr.orpcthis(self._cid) if isinstance(request, _wcce_ndr.Call) else \
            _orpc.new_orpcthis(self._cid)
        return conn.request(request, uuid=ipid)

    def query_interface(self, iid, name):
        """The held pointer for ``iid``, else RemQueryInterface on the base object's IRemUnknown."""
        if self.base is None:
            self.open()
        for ref in self._refs:
            if ref.iid == iid and not ref.released:
                return ref
        ref = InterfaceRef(iid, name, self._query(iid, name))
        self._refs.append(ref)
        return ref

    def _query(self, iid, name):
        try:
            req = _orpc.rem_query_interface(None, self.base.ipid, iid)
            resp = self._send(self.base, req, _orpc.IID_IRemUnknown, self._ipid_rem_unknown)
        except Exception as exc:
            raise translate_exception(exc, 'QueryInterface for %s' % name, self.host, self.timeout)
        hresult, std = _orpc.qi_result(resp)
        if hresult:
            raise _errors.exception_for_hresult(hresult, summary='QueryInterface for %s failed' % name,
                                                default_class=TransportError)
        return std

    def _revive_if_idle(self):
        """Reopen a session idle for PING_PERIOD or more and renew the pointers callers hold (see the class)."""
        if self._last_used is None or self.clock() - self._last_used < PING_PERIOD:
            return
        refs = [ref for ref in self._refs if not ref.released]
        self._disconnect()
        WIRE_STATS.add('reconnects')
        self.open()
        fresh = self.base
        for ref in refs:
            ref.std = fresh.std if ref.iid == fresh.iid else self._query(ref.iid, ref.name)
        if refs:
            self._refs, self.base = refs, refs[0]

    def call(self, ref, request, action=None):
        """Send ``request`` (an _ndr call object) on interface ``ref``; return the decoded reply.

        A nonzero HRESULT in the reply raises the matching _errors exception, with the HRESULT.
        """
        action = action or '%s.%s' % (ref.name, type(request).__name__)
        try:
            self._revive_if_idle()
            resp = self._send(ref, request, ref.iid, ref.ipid)
        except Exception as exc:
            raise translate_exception(exc, action, self.host, self.timeout)
        self._last_used = self.clock()
        return resp

    def release(self, ref):
        self.release_all([ref])

    def release_all(self, refs=None):
        """RemRelease of the given (default: all held) pointers in one call (best effort: the CA drops them when
        the connection closes anyway)."""
        refs = [ref for ref in (self._refs if refs is None else refs) if not ref.released]
        if not refs or self._resolver is None:
            return
        for ref in refs:
            ref.released = True
        try:
            req = _orpc.rem_release(None, [ref.ipid for ref in refs])
            self._send(refs[0], req, _orpc.IID_IRemUnknown, self._ipid_rem_unknown)
        except Exception:
            pass

    def _disconnect(self):
        for conn in list(self._exporters.values()) + ([self._resolver] if self._resolver is not None else []):
            try:
                conn.disconnect()
            except OSError:
                pass        # best effort: the session is being torn down
        self._exporters = {}
        self._refs = []
        self.base = self._resolver = None

    def close(self):
        self.release_all()
        self._disconnect()
