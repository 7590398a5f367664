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

import re
import socket
import struct

from ansible_collections.adcs.enrollment.plugins.module_utils._deps import HAS_IMPACKET
from ansible_collections.adcs.enrollment.plugins.module_utils import _errors
from ansible_collections.adcs.enrollment.plugins.module_utils import _kdc
from ansible_collections.adcs.enrollment.plugins.module_utils import _ndr
from ansible_collections.adcs.enrollment.plugins.module_utils import _rpc_verify
from ansible_collections.adcs.enrollment.plugins.module_utils._errors import (
    AuthenticationError,
    CaUnavailable,
    TransportError,
    WcceError,
)

if HAS_IMPACKET:
    from impacket import hresult_errors as _imp_hresults
    from impacket.dcerpc.v5 import dcomrt, transport
    from impacket.dcerpc.v5.dcomrt import DCOMConnection, IRemUnknown2, INTERFACE, IID_IRemUnknown
    from threading import current_thread
    from impacket.dcerpc.v5.rpcrt import (
        DCERPCException,
        RPC_C_AUTHN_GSS_NEGOTIATE,
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
        """DCOMConnection whose resolver connection uses our connect/read timeout."""

        def __init__(self, *args, **kwargs):
            self._adcs_timeout = kwargs.pop('timeout', DEFAULT_TIMEOUT)
            DCOMConnection.__init__(self, *args, **kwargs)

        def initConnection(self):
            target = self._DCOMConnection__target
            string_binding = r'ncacn_ip_tcp:%s' % target
            rpctransport = transport.DCERPCTransportFactory(string_binding)
            rpctransport.set_connect_timeout(self._adcs_timeout)
            remote_host = self._DCOMConnection__remoteHost
            if remote_host:
                rpctransport.setRemoteHost(remote_host)
                rpctransport.setRemoteName(target)
            rpctransport.set_credentials(self._DCOMConnection__userName, self._DCOMConnection__password,
                                         self._DCOMConnection__domain, self._DCOMConnection__lmhash,
                                         self._DCOMConnection__nthash, self._DCOMConnection__aesKey,
                                         self._DCOMConnection__TGT, self._DCOMConnection__TGS)
            rpctransport.set_kerberos(self._DCOMConnection__doKerberos, self._DCOMConnection__kdcHost)
            portmap = _rpc_verify.VerifyingDCERPC_v5(rpctransport)
            portmap.set_auth_level(RPC_C_AUTHN_LEVEL_PKT_PRIVACY)
            if self._DCOMConnection__doKerberos:
                portmap.set_auth_type(RPC_C_AUTHN_GSS_NEGOTIATE)
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


class InterfaceRef(object):
    """A DCOM interface pointer held by a session: impacket INTERFACE plus the IID it was obtained for."""

    def __init__(self, interface, iid, name):
        self.interface = interface
        self.iid = iid
        self.name = name
        self.released = False

    @property
    def ipid(self):
        return self.interface.get_iPid()

    def __repr__(self):
        return 'InterfaceRef(%s)' % self.name


class DcomSession(object):
    """An authenticated DCOM session to one CA host.

    ``DcomSession(host, auth, timeout=30, remote_host=None)``; ``open()`` connects and activates CCertRequestD
    (``self.base`` is the ICertRequestD pointer); ``query_interface(iid, name)`` returns another InterfaceRef or
    raises (E_NOINTERFACE as TransportError with that HRESULT); ``call(ref, request)`` sends one call and returns
    the decoded reply; ``close()`` releases and disconnects (idempotent). Use ``with DcomSession(...) as s:``.
    """

    clsid = _ndr.CLSID_CCertRequestD
    base_iid = _ndr.IID_ICertRequestD

    def __init__(self, host, auth, timeout=DEFAULT_TIMEOUT, remote_host=None):
        if not HAS_IMPACKET:
            raise TransportError('The Python library "impacket" is required',
                                 remedy='Install impacket (>= 0.12) on the node that runs the module.')
        self.host = host
        self.auth = auth
        self.timeout = timeout
        self.remote_host = remote_host
        self._dcom = None
        self.base = None
        self._refs = []

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
                                              **self.auth.transport_kwargs())
        except Exception as exc:
            self._dcom = None
            raise translate_exception(exc, 'Connecting to the CA endpoint mapper (port 135)', self.host,
                                      self.timeout, during_auth=True)
        try:
            iface = self._dcom.CoCreateInstanceEx(self.clsid, self.base_iid)
            # The SCM's authnHint may ask for less; the CA requires packet privacy, so always use it.
            iface.get_cinstance().set_auth_level(RPC_C_AUTHN_LEVEL_PKT_PRIVACY)
            self.base = InterfaceRef(iface, self.base_iid, 'ICertRequestD')
            self._refs.append(self.base)
        except Exception as exc:
            err = translate_exception(exc, 'Activating CCertRequestD on the CA', self.host, self.timeout,
                                      during_auth=True)
            self.close()
            raise err
        return self

    def _ensure_exporter(self, iface, iid):
        """Open the object exporter connection for iface's OXID (once): to the address used for port 135, at the
        port the CA announced, with every reply verified (``_rpc_verify``). impacket's ``INTERFACE.connect`` then
        finds it in its connection table (and alters the context for other IIDs on the same, verified, class)."""
        target = iface.get_target()
        oxid = iface.get_oxid()
        table = INTERFACE.CONNECTIONS.setdefault(target, {}).setdefault(current_thread().name, {})
        if oxid in table:
            return
        portmap = DCOMConnection.PORTMAPS[target]
        port_transport = portmap.get_rpc_transport()
        address = port_transport.getRemoteHost() or target
        port = exporter_port(iface.get_cinstance().get_string_bindings(), address)
        rpctransport = transport.DCERPCTransportFactory('ncacn_ip_tcp:%s[%d]' % (address, port))
        rpctransport.set_connect_timeout(self.timeout)
        rpctransport.setRemoteHost(address)
        rpctransport.setRemoteName(port_transport.getRemoteName())   # Kerberos: the SPN names the CA's DNS name
        rpctransport.set_credentials(*portmap.get_credentials())
        rpctransport.set_kerberos(port_transport.get_kerberos(), port_transport.get_kdcHost())
        dce = _rpc_verify.VerifyingDCERPC_v5(rpctransport)
        dce.set_auth_level(RPC_C_AUTHN_LEVEL_PKT_PRIVACY)
        dce.set_auth_type(iface.get_cinstance().get_auth_type())
        dce.connect()
        try:
            dce.bind(iid)
        except Exception:
            try:
                dce.disconnect()
            except Exception:
                pass
            raise
        table[oxid] = {'dce': dce, 'currentBinding': iid}

    def _connect_interface(self, ref):
        """Open (or alter) the object connection for ref and apply the timeout to its socket."""
        self._ensure_exporter(ref.interface, ref.iid)
        ref.interface.connect(ref.iid)
        try:
            sock = ref.interface.get_dce_rpc().get_rpc_transport().get_socket()
            if sock:
                sock.settimeout(self.timeout)
        except Exception:
            pass

    def query_interface(self, iid, name):
        """RemQueryInterface on the base object's IRemUnknown; returns a new InterfaceRef."""
        if self.base is None:
            self.open()
        base = self.base.interface
        try:
            req = dcomrt.RemQueryInterface()
            req['ORPCthis'] = base.get_cinstance().get_ORPCthis()
            req['ORPCthis']['flags'] = 0
            req['ripid'] = base.get_iPid()
            req['cRefs'] = 1
            req['cIids'] = 1
            _iid = dcomrt.IID()
            _iid['Data'] = iid
            req['iids'].append(_iid)
            self._ensure_exporter(base, IID_IRemUnknown)
            remunk = IRemUnknown2(base)
            resp = remunk.request(req, IID_IRemUnknown, base.get_ipidRemUnknown())
        except Exception as exc:
            raise translate_exception(exc, 'QueryInterface for %s' % name, self.host, self.timeout)
        result = resp['ppQIResults']
        hresult = result['hResult'] & 0xFFFFFFFF if result['hResult'] is not None else 0
        if hresult != 0:
            raise _errors.exception_for_hresult(hresult, summary='QueryInterface for %s failed' % name,
                                                default_class=TransportError)
        std = result['std']
        new = INTERFACE(base.get_cinstance(), None, base.get_ipidRemUnknown(), std['ipid'], oxid=std['oxid'],
                        oid=std['oid'], target=base.get_target())
        ref = InterfaceRef(new, iid, name)
        self._refs.append(ref)
        return ref

    def call(self, ref, request, action=None):
        """Send ``request`` (an _ndr call object) on interface ``ref``; return the decoded reply.

        A nonzero HRESULT in the reply raises the matching _errors exception, with the HRESULT.
        """
        action = action or '%s.%s' % (ref.name, type(request).__name__)
        try:
            self._connect_interface(ref)
            return ref.interface.request(request, iid=ref.iid, uuid=ref.ipid)
        except Exception as exc:
            raise translate_exception(exc, action, self.host, self.timeout)

    def release(self, ref):
        if ref.released:
            return
        ref.released = True
        try:
            IRemUnknown2(ref.interface).RemRelease()
        except Exception:
            pass  # best effort: the object is dropped when the connection closes anyway

    def close(self):
        for ref in reversed(self._refs):
            if self._dcom is not None:
                self.release(ref)
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
        self._refs = []
        self.base = None
        if self._dcom is not None:
            try:
                self._dcom.disconnect()
            except Exception:
                pass
            self._dcom = None
