# -*- coding: utf-8 -*-
# Copyright (c) the adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""DCOM transport: one job, an authenticated DCOM session to a CA's CCertRequestD object.

Over impacket's ``DCOMConnection``: connect to port 135 with a timeout, activate CLSID CCertRequestD
(D99E6E74-FC88-11D0-B498-00A0C90312F3) for ICertRequestD, force RPC_C_AUTHN_LEVEL_PKT_PRIVACY on every
connection (the CA refuses less: IF_ENFORCEENCRYPTICERTREQUEST, KB5004442), QueryInterface (RemQueryInterface)
for further IIDs with the per-interface HRESULT checked, and release everything (RemRelease of each interface
pointer, then disconnect of the object and resolver connections) from ``close()`` / the context manager. One
session serves many calls. Every impacket/socket exception is turned into an ``_errors`` exception with an
actionable message (``translate_exception``).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import re
import socket
import struct
import time

from ansible_collections.adcs.enrollment.plugins.module_utils._deps import HAS_IMPACKET
from ansible_collections.adcs.enrollment.plugins.module_utils import _errors
from ansible_collections.adcs.enrollment.plugins.module_utils import _kdc
from ansible_collections.adcs.enrollment.plugins.module_utils import _ndr
from ansible_collections.adcs.enrollment.plugins.module_utils import _rpc_auth
from ansible_collections.adcs.enrollment.plugins.module_utils import _rpc_conn
from ansible_collections.adcs.enrollment.plugins.module_utils import _rpc_verify
from ansible_collections.adcs.enrollment.plugins.module_utils._rpc_stats import WIRE_STATS
from ansible_collections.adcs.enrollment.plugins.module_utils._errors import (
    AuthenticationError,
    CaUnavailable,
    TransportError,
    WcceError,
)

if HAS_IMPACKET:
    from impacket import hresult_errors as _imp_hresults
    from impacket.dcerpc.v5 import dcomrt
    from impacket.dcerpc.v5.dcomrt import DCOMConnection, IRemUnknown2, INTERFACE, IID_IRemUnknown
    from threading import current_thread
    from impacket.dcerpc.v5.rpcrt import (
        DCERPCException,
        RPC_C_AUTHN_LEVEL_PKT_PRIVACY,
        rpc_status_codes,
    )
else:
    DCOMConnection = object
    DCERPCException = _ndr.DCERPCException
    rpc_status_codes = {}
    _imp_hresults = None
    RPC_C_AUTHN_LEVEL_PKT_PRIVACY = 6

DEFAULT_TIMEOUT = 30
DEFAULT_PACKAGE = 'negotiate'
PING_PERIOD = 120           # MS-DCOM 3.2.4.2: a client pings its objects every 120 s; they die after 3 missed pings
E_NOINTERFACE = 0x80004002

_FAULT_HEX = re.compile(r'fault status code: ([0-9a-fA-F]{8})')


def _status_name_map():
    out = {}
    for code, name in rpc_status_codes.items():
        out.setdefault(str(name), code)
    return out


def code_from_exception(exc):
    """Best effort: the numeric status/HRESULT an impacket exception carries (in its fields or only its text)."""
    code = None
    getter = getattr(exc, 'get_error_code', None) or getattr(exc, 'getErrorCode', None)
    if getter is not None:
        try:
            code = getter()
        except Exception:
            code = None
    if code is None:
        code = getattr(exc, 'error_code', None)
    if code is not None:
        return int(code) & 0xFFFFFFFF
    text = str(getattr(exc, 'error_string', None) or exc)
    match = _FAULT_HEX.search(text)
    if match:
        return int(match.group(1), 16)
    names = _status_name_map()
    token = text.strip().split(' ', 1)[0] if text.strip() else ''
    if token in names:
        return names[token]
    if _imp_hresults is not None:
        short = text.split(' - ', 1)[0].strip()
        for hcode, (hname, _msg) in _imp_hresults.ERROR_MESSAGES.items():
            if hname == short:
                return hcode
    return None


def translate_exception(exc, action, host=None, timeout=None, during_auth=False):
    """Map any exception raised by impacket/sockets to a WcceError subclass (already-translated ones pass)."""
    if isinstance(exc, WcceError):
        return exc
    if _kdc.is_krb_error(exc):
        return _kdc.failure_from_krb_error(exc, action, target=host)
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
    if 'Could not connect' in text:
        if 'timed out' in text:
            return CaUnavailable('%s timed out after %s s%s' % (action, timeout, where), hresult=0x800706BA)
        return CaUnavailable('%s failed%s' % (action, where), hresult=0x800706BA, detail=text)
    if "Can't find a valid stringBinding" in text:
        return TransportError('%s failed: the CA announced no binding reachable at the address used%s'
                              % (action, where),
                              remedy='Connect to the CA by the name or address it announces in its DCOM '
                                     'bindings (set the CA host accordingly).')
    if isinstance(exc, ConnectionResetError) or 'Connection reset by peer' in text:
        # a TCP reset (RST), as from a CA that refuses connections or a firewall; an orderly close is below
        return CaUnavailable('%s failed: the CA reset the connection%s' % (action, where), hresult=0x800706BA)
    if 'Connection closed by remote host' in text or isinstance(exc, BrokenPipeError):
        if during_auth:
            return TransportError('%s failed: the CA closed the connection%s' % (action, where),
                                  remedy='Packet privacy or the authentication may have been refused; check the '
                                         'credentials and the CA logs.')
        return TransportError('%s failed: the CA closed the connection%s' % (action, where),
                              remedy='The connection was lost during the call: run the task again. A request may '
                                     'have been processed (check the CA log and issued requests).')
    if isinstance(exc, OSError) and not isinstance(exc, DCERPCException):
        return CaUnavailable('%s failed%s' % (action, where), detail=text)
    if isinstance(exc, (struct.error, IndexError)):
        # impacket decoding a verified reply (e.g. the activation properties) that is malformed or truncated
        return _errors.ProtocolError('%s failed: the reply from the CA%s could not be decoded; nothing was written'
                                     % (action, where), detail=_rpc_verify.exception_name(exc),
                                     remedy=_rpc_verify.REMEDY)
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
    if 'Bind context rejected' in text:
        return TransportError('%s failed: bind rejected%s' % (action, where), detail=text)
    if 'SessionError' in type(exc).__name__ or 'Kerberos' in type(exc).__name__:
        return AuthenticationError('%s failed%s' % (action, where), detail=text)
    return TransportError('%s failed%s' % (action, where), detail='%s: %s' % (type(exc).__name__, text))


if HAS_IMPACKET:
    class _TimedDCOMConnection(DCOMConnection):
        """DCOMConnection whose resolver connection (port 135) is our ``_rpc_conn.RpcConnection``: the caller's
        timeout, IPv4/IPv6, the chosen RPC authentication package, every reply verified."""

        def __init__(self, *args, **kwargs):
            self._adcs_timeout = kwargs.pop('timeout', DEFAULT_TIMEOUT)
            self._adcs_package = kwargs.pop('package', DEFAULT_PACKAGE)
            self._adcs_creds = dict(kwargs)
            DCOMConnection.__init__(self, *args, **kwargs)

        def initConnection(self):
            target = self._DCOMConnection__target
            address = self._DCOMConnection__remoteHost or target
            portmap = _rpc_conn.RpcConnection(address, 135, self._adcs_creds, self._adcs_package,
                                              timeout=self._adcs_timeout, remote_name=target)
            portmap.connect()
            self._DCOMConnection__portmap = portmap
            DCOMConnection.PORTMAPS[target] = portmap
else:  # pragma: no cover
    _TimedDCOMConnection = None


def exporter_port(string_bindings, address):
    """The TCP port of the object exporter from the DUALSTRINGARRAY bindings (tower 7, ``addr[port]``).

    Windows announces its NetBIOS name and IP addresses (never the FQDN), so the client connects to the address it
    used for port 135 and takes only the port: the one of the binding naming that address, else the first one.
    """
    ports = []
    for binding in string_bindings:
        if binding['wTowerId'] != 7:
            continue
        addr, sep, rest = str(binding['aNetworkAddr']).rstrip('\x00').partition('[')
        port = rest.rstrip(']')
        if not sep or not port.isdigit() or not 0 < int(port) < 65536:
            continue
        if address and addr.upper() == str(address).upper():
            return int(port)
        ports.append(int(port))
    if not ports:
        raise TransportError('The CA announced no TCP port for its DCOM object exporter',
                             remedy='Check that the host is an AD CS enterprise CA reachable over TCP.')
    return ports[0]


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


def _orpc_request(call, base):
    req = call()
    req['ORPCthis'] = base.get_cinstance().get_ORPCthis()
    req['ORPCthis']['flags'] = 0
    return req


def rem_query_interface(base, iid, name):
    """IRemUnknown::RemQueryInterface for one IID on the object of ``base``; the new impacket INTERFACE, or the
    per-interface HRESULT raised (E_NOINTERFACE as TransportError)."""
    req = _orpc_request(dcomrt.RemQueryInterface, base)
    req['ripid'] = base.get_iPid()
    req['cRefs'] = 1
    req['cIids'] = 1
    _iid = dcomrt.IID()
    _iid['Data'] = iid
    req['iids'].append(_iid)
    resp = IRemUnknown2(base).request(req, IID_IRemUnknown, base.get_ipidRemUnknown())
    result = resp['ppQIResults']
    hresult = result['hResult'] & 0xFFFFFFFF if result['hResult'] is not None else 0
    if hresult != 0:
        raise _errors.exception_for_hresult(hresult, summary='QueryInterface for %s failed' % name,
                                            default_class=TransportError)
    std = result['std']
    return INTERFACE(base.get_cinstance(), None, base.get_ipidRemUnknown(), std['ipid'], oxid=std['oxid'],
                     oid=std['oid'], target=base.get_target())


def rem_release(base, ipids):
    """IRemUnknown::RemRelease of one public reference of each IPID, in one call."""
    req = _orpc_request(dcomrt.RemRelease, base)
    req['cInterfaceRefs'] = len(ipids)
    for ipid in ipids:
        entry = dcomrt.REMINTERFACEREF()
        entry['ipid'] = ipid
        entry['cPublicRefs'] = 1
        entry['cPrivateRefs'] = 0
        req['InterfaceRefs'].append(entry)
    IRemUnknown2(base).request(req, IID_IRemUnknown, base.get_ipidRemUnknown())


class InterfaceRef(object):
    """A DCOM interface pointer held by a session: impacket INTERFACE plus the IID it was obtained for."""

    def __init__(self, interface, iid, name):
        self.interface, self.iid, self.name = interface, iid, name
        self.released = False

    @property
    def ipid(self):
        return self.interface.get_iPid()

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
        if not HAS_IMPACKET:
            raise TransportError('The Python library "impacket" is required',
                                 remedy='Install impacket (>= 0.12) on the node that runs the module.')
        self.host = host
        self.auth = auth
        self.timeout = timeout
        self.remote_host = remote_host
        self.package = getattr(auth, 'rpc_package', None) or DEFAULT_PACKAGE
        check_package(self.package, getattr(auth, 'kind', None))
        self._dcom = None
        self.base = None
        self._refs = []
        self._exporters = []
        self._last_used = None

    def __repr__(self):
        return 'DcomSession(host=%r, auth=%r, open=%s)' % (self.host, self.auth, self._dcom is not None)

    def __enter__(self):
        self.open()
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close()
        return False

    @property
    def is_open(self):
        return self._dcom is not None

    def open(self):
        if self._dcom is not None:
            return self
        if hasattr(self.auth, 'set_ca_host'):
            self.auth.set_ca_host(self.host)    # Kerberos: the service ticket is for HOST/<this name>
        try:
            self._dcom = _TimedDCOMConnection(self.host, timeout=self.timeout, remoteHost=self.remote_host,
                                              authLevel=RPC_C_AUTHN_LEVEL_PKT_PRIVACY, oxidResolver=False,
                                              package=self.package, **self.auth.transport_kwargs())
        except Exception as exc:
            self._dcom = None
            raise translate_exception(exc, 'Connecting to the CA endpoint mapper (port 135)', self.host,
                                      self.timeout, during_auth=True)
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
        try:
            iface = self._dcom.CoCreateInstanceEx(self.clsid, _ndr.IID_ICertRequestD2)
            return InterfaceRef(iface, _ndr.IID_ICertRequestD2, 'ICertRequestD2')
        except Exception as exc:
            if code_from_exception(exc) != E_NOINTERFACE:
                raise
        iface = self._dcom.CoCreateInstanceEx(self.clsid, self.base_iid)
        return InterfaceRef(iface, self.base_iid, 'ICertRequestD')

    def _ensure_exporter(self, iface, iid):
        """Open the object exporter connection for iface's OXID (once): to the address used for port 135, at the
        port the CA announced, same package and timeout, every reply verified (``_rpc_conn``). impacket's
        ``INTERFACE.connect`` then finds it in its connection table and alters the context for other IIDs on it
        (under the same security context: no new handshake)."""
        target = iface.get_target()
        oxid = iface.get_oxid()
        table = INTERFACE.CONNECTIONS.setdefault(target, {}).setdefault(current_thread().name, {})
        if oxid in table:
            return
        portmap = DCOMConnection.PORTMAPS[target]
        port = exporter_port(iface.get_cinstance().get_string_bindings(), portmap.address)
        conn = _rpc_conn.RpcConnection(portmap.address, port, portmap.creds, portmap.package, timeout=self.timeout,
                                       remote_name=portmap.remote_name)
        self._exporters.append(conn)
        conn.bind(iid)
        table[oxid] = {'dce': conn, 'currentBinding': iid}

    def _connect_interface(self, ref):
        self._ensure_exporter(ref.interface, ref.iid)
        ref.interface.connect(ref.iid)

    def query_interface(self, iid, name):
        """The held pointer for ``iid``, else RemQueryInterface on the base object's IRemUnknown."""
        if self.base is None:
            self.open()
        for ref in self._refs:
            if ref.iid == iid and not ref.released:
                return ref
        ref = InterfaceRef(self._query(iid, name), iid, name)
        self._refs.append(ref)
        return ref

    def _query(self, iid, name):
        try:
            self._ensure_exporter(self.base.interface, IID_IRemUnknown)     # our verified connection, not impacket's
            return rem_query_interface(self.base.interface, iid, name)
        except WcceError:
            raise
        except Exception as exc:
            raise translate_exception(exc, 'QueryInterface for %s' % name, self.host, self.timeout)

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
            ref.interface = fresh.interface if ref.iid == fresh.iid else self._query(ref.iid, ref.name)
        if refs:
            self._refs, self.base = refs, refs[0]

    def call(self, ref, request, action=None):
        """Send ``request`` (an _ndr call object) on interface ``ref``; return the decoded reply.

        A nonzero HRESULT in the reply raises the matching _errors exception, with the HRESULT.
        """
        action = action or '%s.%s' % (ref.name, type(request).__name__)
        try:
            self._revive_if_idle()
            self._connect_interface(ref)
            resp = ref.interface.request(request, iid=ref.iid, uuid=ref.ipid)
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
        if not refs or self._dcom is None:
            return
        for ref in refs:
            ref.released = True
        try:
            self._ensure_exporter(refs[0].interface, IID_IRemUnknown)
            rem_release(refs[0].interface, [ref.ipid for ref in refs])
        except Exception:
            pass

    def _disconnect(self):
        seen = set()
        for ref in self._refs:
            try:
                oxid = ref.interface.get_oxid()
                if oxid in seen:
                    continue
                seen.add(oxid)
                ref.interface.disconnect()
            except Exception:
                pass
        for conn in self._exporters:
            conn.disconnect()
        self._exporters = []
        self._refs = []
        self.base = None
        if self._dcom is not None:
            with contextlib.suppress(Exception):   # best effort: the session is being torn down
                self._dcom.disconnect()
            self._dcom = None

    def close(self):
        self.release_all()
        self._disconnect()
