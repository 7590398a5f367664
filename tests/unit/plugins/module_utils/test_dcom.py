# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import socket
import subprocess
import sys

import pytest

from ansible_collections.adcs.enrollment.plugins.module_utils import _auth as a
from ansible_collections.adcs.enrollment.plugins.module_utils import _dcom as d
from ansible_collections.adcs.enrollment.plugins.module_utils import _errors as e
from ansible_collections.adcs.enrollment.plugins.module_utils import _ndr

NT = '8846f7eaee8fb117ad06bdd830b7586c'


# ---------------------------------------------------------------- exception mapping
def test_translate_socket_errors():
    exc = d.translate_exception(socket.timeout('timed out'), 'Connecting', 'ca1', 7)
    assert isinstance(exc, e.CaUnavailable) and '7 s' in str(exc) and 'ca1' in str(exc)
    exc = d.translate_exception(socket.gaierror(-2, 'Name or service not known'), 'Connecting', 'nohost')
    assert isinstance(exc, e.CaUnavailable) and 'resolve' in str(exc)
    exc = d.translate_exception(ConnectionRefusedError(111, 'refused'), 'Connecting', 'ca1')
    assert isinstance(exc, e.CaUnavailable) and exc.hresult == 0x800706BA
    exc = d.translate_exception(ConnectionResetError(104, 'reset'), 'X', 'ca1')
    assert isinstance(exc, e.CaUnavailable) and 'RPC_S_SERVER_UNAVAILABLE' in str(exc) and 'reset' in str(exc)
    exc = d.translate_exception(d._rpc_conn.ConnectionClosed('Connection closed by remote host'), 'X', 'ca1')
    assert exc.__class__ is e.TransportError and 'closed the connection' in str(exc)
    assert 'A request may have been processed' in exc.to_message()
    exc = d.translate_exception(BrokenPipeError(32, 'pipe'), 'X', 'ca1', during_auth=True)
    assert exc.__class__ is e.TransportError and 'Packet privacy or the authentication may' in exc.to_message()
    exc = d.translate_exception(OSError('Network is unreachable'), 'X', 'ca1')
    assert exc.__class__ is e.CaUnavailable and 'Network is unreachable' in exc.to_message()


def test_translate_rpc_faults():
    # _rpc_conn reports fault PDUs, refused binds and reply statuses by their code (RpcFault)
    exc = d.translate_exception(e.RpcFault(5), 'Activating', 'ca1', during_auth=True)
    assert isinstance(exc, e.AuthenticationError) and exc.hresult == 5
    assert 'Certificate Service DCOM Access' in str(exc)
    exc = d.translate_exception(e.RpcFault(5), 'Request', 'ca1')
    assert isinstance(exc, e.AccessDenied)
    exc = d.translate_exception(e.RpcFault(0x1C010003), 'Bind', 'ca1')
    assert exc.__class__ is e.TransportError and exc.hresult == 0x1C010003 and 'NCA_S_UNK_IF' in str(exc)
    exc = d.translate_exception(e.RpcFault(0x1C010003), 'Activating', 'ca1', during_auth=True)
    assert exc.to_message().startswith('Activating failed: the server does not offer the interface (ca1)')
    exc = d.translate_exception(e.RpcFault(0x80070005), 'Call', 'ca1')
    assert isinstance(exc, e.AccessDenied) and exc.hresult == 0x80070005
    exc = d.translate_exception(e.RpcFault(0x721), 'Bind', 'ca1', during_auth=True)
    assert isinstance(exc, e.AuthenticationError) and 'RPC_S_SEC_PKG_ERROR' in str(exc)
    exc = d.translate_exception(e.RpcFault(0x1C010002), 'ICertRequestD2.Request2', 'ca1')
    assert exc.hresult == 0x1C010002 and 'NCA_S_OP_RNG_ERROR' in str(exc)


def test_translate_a_malformed_reply():
    from ansible_collections.adcs.enrollment.plugins.module_utils import _orpc
    exc = d.translate_exception(_orpc.MalformedReply('OBJREF: kind 16'), 'Activating CCertRequestD on the CA',
                                'ca1', during_auth=True)
    assert exc.__class__ is e.ProtocolError
    assert exc.to_message().startswith('Activating CCertRequestD on the CA failed: the reply from the CA (ca1) could '
                                       'not be decoded; nothing was written; OBJREF: kind 16.')


def test_translate_session_error_with_hresult():
    exc = d.translate_exception(e.RpcFault(0x80094012), 'Request', 'ca1')
    assert isinstance(exc, e.RequestDenied) and exc.hresult == 0x80094012
    exc = d.translate_exception(e.RpcFault(0x80070057), 'Request', 'ca1')
    assert isinstance(exc, e.BadRequest)
    passthrough = e.RequestDenied('x')
    assert d.translate_exception(passthrough, 'Request') is passthrough
    generic = d.translate_exception(ValueError('odd'), 'Request', 'ca1')
    assert generic.__class__ is e.TransportError and 'ValueError: odd' in str(generic)


def test_code_from_exception():
    assert d.code_from_exception(e.RpcFault(5)) == 5
    assert d.code_from_exception(e.RpcFault(-2147467262)) == 0x80004002

    class _KrbLike(Exception):
        def getErrorCode(self):
            return 24
    assert d.code_from_exception(_KrbLike()) == 24
    assert d.code_from_exception(ValueError('nca_s_op_rng_error')) is None     # never from the text


# ---------------------------------------------------------------- session against nothing
def test_session_connection_refused():
    # 127.0.0.199: a loopback address no lab component uses; nothing listens on 135 there
    auth = a.PasswordAuth('enroller', 'LAB', 'pw')
    with pytest.raises(e.CaUnavailable) as info:
        with d.DcomSession('127.0.0.199', auth, timeout=3):
            pass
    assert 'port 135' in str(info.value)
    assert 'pw' not in str(info.value)


def test_session_repr_has_no_secret():
    s = d.DcomSession('ca1.lab.adcs.test', a.NtHashAuth('u', 'LAB', NT))
    assert NT not in repr(s) and 'open=False' in repr(s)
    s.close()   # closing a never-opened session is harmless


# ---------------------------------------------------------------- RPC authentication package
def test_package_checked_against_the_credentials_before_any_network():
    auth = a.PasswordAuth('enroller', 'LAB', 'pw')
    auth.rpc_package = 'kerberos'
    with pytest.raises(e.InvalidInput) as info:
        d.DcomSession('ca1', auth)
    assert info.value.to_message().startswith('rpc_auth_package=kerberos needs auth=kerberos')
    with pytest.raises(e.InvalidInput, match=r'rpc_auth_package=ntlm needs auth=password or auth=ntlm'):
        d.check_package('ntlm', 'kerberos')
    with pytest.raises(e.InvalidInput, match="must be one of kerberos, negotiate, ntlm, not 'schannel'"):
        d.check_package('schannel', 'password')
    assert d.DcomSession('ca1', a.NtHashAuth('u', 'D', NT)).package == 'negotiate'
    d.check_package('ntlm', 'nt_hash')


def test_unsupported_security_translated():
    from ansible_collections.adcs.enrollment.plugins.module_utils import _rpc_auth
    exc = d.translate_exception(_rpc_auth.Unsupported('Kerberos per-message tokens with encryption type 23'),
                                'Activating CCertRequestD on the CA', 'ca1')
    assert isinstance(exc, e.TransportError)
    assert exc.to_message().startswith('Activating CCertRequestD on the CA failed: Kerberos per-message tokens with '
                                       'encryption type 23 is not supported by this client (ca1)')
    assert 'Enable AES Kerberos encryption types' in exc.to_message()


def test_a_rejected_negotiation_is_an_authentication_error():
    from ansible_collections.adcs.enrollment.plugins.module_utils import _rpc_auth
    exc = d.translate_exception(_rpc_auth.Rejected('the CA rejected the SPNEGO negotiation (negState reject)'),
                                'Connecting to the CA endpoint mapper (port 135)', 'ca1')
    assert isinstance(exc, e.AuthenticationError)
    assert exc.to_message().startswith('Connecting to the CA endpoint mapper (port 135) failed: the CA refused the '
                                       'authentication (ca1) (the CA rejected the SPNEGO negotiation (negState '
                                       'reject))')
    assert 'Check the account and its password or keys, and rpc_auth_package.' in exc.to_message()


def test_idle_session_reopens_and_renews_held_pointers(monkeypatch):
    now = [0.0]
    session = d.DcomSession('ca1', a.PasswordAuth('u', 'D', 'pw'))
    monkeypatch.setattr(session, 'clock', lambda: now[0])
    events = []

    def fake_open():
        events.append('open')
        session._resolver = object()
        session.base = d.InterfaceRef(_ndr.IID_ICertRequestD2, 'ICertRequestD2', 'base%d' % len(events))
        session._refs = [session.base]
        session._last_used = now[0]
    monkeypatch.setattr(session, 'open', fake_open)
    monkeypatch.setattr(session, '_disconnect', lambda: events.append('disconnect'))
    monkeypatch.setattr(session, '_query', lambda iid, name: 'queried-' + name)
    fake_open()
    held = session.base
    other = d.InterfaceRef(_ndr.IID_ICertRequestD, 'ICertRequestD', 'old')
    session._refs.append(other)
    now[0] = d.PING_PERIOD - 1
    session._revive_if_idle()
    assert events == ['open']
    now[0] = d.PING_PERIOD + 5
    session._revive_if_idle()
    assert events == ['open', 'disconnect', 'open']
    assert session.base is held and held.std == 'base3' and other.std == 'queried-ICertRequestD'
    assert session._refs == [held, other]


# ---------------------------------------------------------------- the session against a scripted CA
HOST = '127.0.0.5'
BINDINGS = [(7, 'EVIL.example[1]'), (7, '127.0.0.99[49672]'), (7, '127.0.0.5[49999]')]


@pytest.fixture
def scripted(monkeypatch):
    """DcomSession over support.dcom.ScriptedConn; returns (log, script)."""
    from ansible_collections.adcs.enrollment.tests.unit.plugins.support import dcom as s
    log, script = [], {}

    class _Conn(s.ScriptedConn):
        pass
    _Conn.log, _Conn.script = log, script
    script['activate'] = lambda iid: (0, s.properties_out(iid, BINDINGS, ipid=b'\x61' * 16))
    script['qi'] = lambda iid: (0, b'\x62' * 16)

    def ping_reply(req):
        resp = _ndr.PingResponse()
        resp['ORPCthat'] = s.orpcthat()
        resp['ErrorCode'] = 0
        return s.ndr_roundtrip(resp)
    script['call'] = ping_reply
    monkeypatch.setattr(d._rpc_conn, 'RpcConnection', _Conn)
    return log, script


def _ping(session, ref=None):
    req = _ndr.Ping()
    req['pwszAuthority'] = _ndr.wstr('LAB-CA')
    return session.call(ref or session.base, req)


def _calls(log):
    return [(entry[1], entry[2], entry[3]) for entry in log if entry[0] == 'call']


def test_session_two_connections_activation_call_and_one_release(scripted):
    from ansible_collections.adcs.enrollment.plugins.module_utils import _activation, _orpc
    log, _script = scripted
    with d.DcomSession(HOST, a.PasswordAuth('u', 'D', 'pw'), timeout=9) as session:
        assert session.query_interface(_ndr.IID_ICertRequestD2, 'ICertRequestD2') is session.base   # no QI
        _ping(session)
        _ping(session)
    assert [entry for entry in log if entry[0] == 'connection'] == [
        ('connection', HOST, 135, HOST), ('connection', HOST, 49999, HOST)]      # the exact binding's port
    assert [entry[:3] for entry in log if entry[0] in ('bind', 'alter')] == [
        ('bind', 135, _activation.IID_IRemoteSCMActivator), ('bind', 49999, _ndr.IID_ICertRequestD2),
        ('alter', 49999, _orpc.IID_IRemUnknown)]
    assert _calls(log) == [(135, 'RemoteCreateInstance', None), (49999, 'Ping', b'\x61' * 16),
                           (49999, 'Ping', b'\x61' * 16), (49999, 'RemRelease', s_ipid_rem_unknown())]
    calls = [entry[4] for entry in log if entry[0] == 'call']
    cid = calls[0]['ORPCthis']['cid']
    assert calls[0]['ORPCthis']['flags'] == 1
    assert all(c['ORPCthis']['cid'] == cid and c['ORPCthis']['flags'] == 0 for c in calls[1:])
    assert calls[3]['cInterfaceRefs'] == 1 and calls[3]['InterfaceRefs'][0]['ipid'] == b'\x61' * 16
    assert [entry[1] for entry in log if entry[0] == 'disconnect'] == [49999, 135]
    assert not session.is_open


def s_ipid_rem_unknown():
    from ansible_collections.adcs.enrollment.tests.unit.plugins.support import dcom as s
    return s.IPID_REM_UNKNOWN


@pytest.mark.parametrize('how', ['fault', 'per-interface'])
def test_activation_falls_back_to_icertrequestd_and_queries_d2(scripted, how):
    from ansible_collections.adcs.enrollment.tests.unit.plugins.support import dcom as s
    log, script = scripted

    def activate(iid):
        if iid == _ndr.IID_ICertRequestD2[:16]:
            if how == 'fault':
                return 0x80004002, b''
            return 0, s.properties_out(iid, BINDINGS, hresult=0x80004002)
        return 0, s.properties_out(iid, BINDINGS, ipid=b'\x63' * 16)
    script['activate'] = activate
    script['qi'] = lambda iid: (0x80004002, None)
    session = d.DcomSession(HOST, a.PasswordAuth('u', 'D', 'pw')).open()
    assert (session.base.name, session.base.ipid) == ('ICertRequestD', b'\x63' * 16)
    assert [c[1] for c in _calls(log)] == ['RemoteCreateInstance', 'RemoteCreateInstance']
    assert len([entry for entry in log if entry[0] in ('bind', 'alter') and entry[1] == 135]) == 1
    with pytest.raises(e.TransportError) as info:
        session.query_interface(_ndr.IID_ICertRequestD2, 'ICertRequestD2')
    assert info.value.hresult == 0x80004002
    assert info.value.to_message().startswith('QueryInterface for ICertRequestD2 failed (127.0.0.5)')
    script['qi'] = lambda iid: (0, b'\x64' * 16)
    ref = session.query_interface(_ndr.IID_ICertRequestD2, 'ICertRequestD2')
    assert ref.ipid == b'\x64' * 16 and session.query_interface(_ndr.IID_ICertRequestD2, 'x') is ref
    _ping(session, ref)
    session.close()
    release = [entry[4] for entry in log if entry[0] == 'call' and entry[2] == 'RemRelease']
    assert len(release) == 1 and [r['ipid'] for r in release[0]['InterfaceRefs']] == [b'\x63' * 16, b'\x64' * 16]
    assert len([entry for entry in log if entry[0] == 'connection']) == 2


def test_activation_without_either_interface_is_refused(scripted):
    log, script = scripted
    script['activate'] = lambda iid: (0x80004002, b'')
    with pytest.raises(e.TransportError) as info:
        d.DcomSession(HOST, a.PasswordAuth('u', 'D', 'pw')).open()
    assert info.value.hresult == 0x80004002
    assert info.value.to_message().startswith('Activating CCertRequestD on the CA failed (127.0.0.5)')
    assert [entry[1] for entry in log if entry[0] == 'disconnect'] == [135]


def test_bindings_naming_another_host_never_redirect(scripted):
    """The exporter is reached at the address used for port 135 (IPv6 here), whatever host the bindings name."""
    from ansible_collections.adcs.enrollment.tests.unit.plugins.support import dcom as s
    log, script = scripted
    script['activate'] = lambda iid: (0, s.properties_out(iid, [(7, '10.66.66.66[50000]'), (7, 'CA1[50001]')]))
    with d.DcomSession('ca1.lab.adcs.test', a.PasswordAuth('u', 'D', 'pw'), remote_host='fd00::5') as session:
        _ping(session)
    assert [entry for entry in log if entry[0] == 'connection'] == [
        ('connection', 'fd00::5', 135, 'ca1.lab.adcs.test'), ('connection', 'fd00::5', 50000, 'ca1.lab.adcs.test')]


def test_a_malformed_activation_reply_is_a_protocol_error(scripted):
    from ansible_collections.adcs.enrollment.tests.unit.plugins.support import dcom as s
    log, script = scripted
    script['activate'] = lambda iid: (0, s.properties_out(iid, BINDINGS)[:120])
    with pytest.raises(e.ProtocolError) as info:
        d.DcomSession(HOST, a.PasswordAuth('u', 'D', 'pw')).open()
    assert info.value.to_message().startswith('Activating CCertRequestD on the CA failed: the reply from the CA '
                                              '(127.0.0.5) could not be decoded; nothing was written')
    assert [entry[1] for entry in log if entry[0] == 'disconnect'] == [135]


# ---------------------------------------------------------------- what the enroll path imports
RUNTIME = ('impacket.dcerpc.v5.rpcrt', 'impacket.dcerpc.v5.dcomrt', 'impacket.dcerpc.v5.transport', 'impacket.krb5',
           'impacket.smb', 'impacket.smbconnection', 'impacket.smb3', 'impacket.dcerpc.v5.rpch')


def _imported_by(code):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    proc = subprocess.run([sys.executable, '-c', code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr.decode('utf-8', 'replace')
    return json.loads(proc.stdout.decode('utf-8'))


def test_the_enroll_path_imports_no_dce_rpc_runtime_nor_kerberos():
    modules = _imported_by(
        'import json, sys\n'
        'from ansible_collections.adcs.enrollment.plugins.module_utils import _deps\n'
        'assert _deps.HAS_IMPACKET\n'
        'from ansible_collections.adcs.enrollment.plugins.module_utils import _ca_session, _dcom, _wcce, '
        '_rpc_conn, _activation, _orpc, _ndr\n'
        'from ansible_collections.adcs.enrollment.plugins.module_utils import _auth\n'
        '_dcom.DcomSession("ca1", _auth.PasswordAuth("u", "D", "pw"))\n'
        'print(json.dumps(sorted(sys.modules)))\n')
    assert 'impacket.dcerpc.v5.ndr' in modules            # the NDR base classes stay
    assert [m for m in modules if m.startswith(RUNTIME)] == []
