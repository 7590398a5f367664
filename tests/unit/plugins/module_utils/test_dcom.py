# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import socket

import pytest
from impacket.dcerpc.v5.rpcrt import DCERPCException

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
    exc = d.translate_exception(DCERPCException('Could not connect: [Errno 111] Connection refused'), 'X', 'ca1')
    assert isinstance(exc, e.CaUnavailable) and 'RPC_S_SERVER_UNAVAILABLE' in str(exc)
    exc = d.translate_exception(DCERPCException('Connection closed by remote host'), 'X', 'ca1')
    assert exc.__class__ is e.TransportError and 'closed the connection' in str(exc)
    exc = d.translate_exception(Exception("Can't find a valid stringBinding to connect"), 'X', 'ca1')
    assert exc.__class__ is e.TransportError and 'binding' in str(exc)


def test_translate_rpc_faults():
    # impacket reports fault PDUs by name only
    exc = d.translate_exception(DCERPCException('rpc_s_access_denied'), 'Activating', 'ca1', during_auth=True)
    assert isinstance(exc, e.AuthenticationError) and exc.hresult == 5
    assert 'Certificate Service DCOM Access' in str(exc)
    exc = d.translate_exception(DCERPCException('rpc_s_access_denied'), 'Request', 'ca1')
    assert isinstance(exc, e.AccessDenied)
    exc = d.translate_exception(DCERPCException('Unknown DCE RPC fault status code: 1c010003'), 'Bind', 'ca1')
    assert exc.__class__ is e.TransportError and exc.hresult == 0x1C010003
    exc = d.translate_exception(DCERPCException('E_ACCESSDENIED - General access denied error.'), 'Call', 'ca1')
    assert isinstance(exc, e.AccessDenied) and exc.hresult == 0x80070005
    exc = d.translate_exception(DCERPCException(error_code=0x721), 'Bind', 'ca1', during_auth=True)
    assert isinstance(exc, e.AuthenticationError) and 'RPC_S_SEC_PKG_ERROR' in str(exc)


def test_translate_session_error_with_hresult():
    exc = d.translate_exception(_ndr.DCERPCSessionError(error_code=0x80094012), 'Request', 'ca1')
    assert isinstance(exc, e.RequestDenied) and exc.hresult == 0x80094012
    exc = d.translate_exception(_ndr.DCERPCSessionError(error_code=0x80070057), 'Request', 'ca1')
    assert isinstance(exc, e.BadRequest)
    passthrough = e.RequestDenied('x')
    assert d.translate_exception(passthrough, 'Request') is passthrough
    generic = d.translate_exception(ValueError('odd'), 'Request', 'ca1')
    assert generic.__class__ is e.TransportError and 'ValueError: odd' in str(generic)


def test_code_from_exception():
    assert d.code_from_exception(DCERPCException(error_code=5)) == 5
    assert d.code_from_exception(DCERPCException('nca_s_op_rng_error')) == 0x1C010002
    assert d.code_from_exception(DCERPCException('something else')) is None


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

    class _Iface(object):
        def __init__(self, tag):
            self.tag = tag

    def fake_open():
        events.append('open')
        session._dcom = object()
        session.base = d.InterfaceRef(_Iface('base%d' % len(events)), _ndr.IID_ICertRequestD2, 'ICertRequestD2')
        session._refs = [session.base]
        session._last_used = now[0]
    monkeypatch.setattr(session, 'open', fake_open)
    monkeypatch.setattr(session, '_disconnect', lambda: events.append('disconnect'))
    monkeypatch.setattr(session, '_query', lambda iid, name: _Iface('queried-' + name))
    fake_open()
    held = session.base
    other = d.InterfaceRef(_Iface('old'), _ndr.IID_ICertRequestD, 'ICertRequestD')
    session._refs.append(other)
    now[0] = d.PING_PERIOD - 1
    session._revive_if_idle()
    assert events == ['open']
    now[0] = d.PING_PERIOD + 5
    session._revive_if_idle()
    assert events == ['open', 'disconnect', 'open']
    assert session.base is held and held.interface.tag == 'base3' and other.interface.tag == 'queried-ICertRequestD'
    assert session._refs == [held, other]


# ---------------------------------------------------------------- the object exporter's port
def _binding(tower, addr):
    return {'wTowerId': tower, 'aNetworkAddr': addr + '\x00'}


def test_exporter_port_takes_only_the_port():
    bindings = [_binding(7, 'CA1[49672]'), _binding(7, '10.0.0.5[49672]'), _binding(15, 'x')]
    assert d.exporter_port(bindings, '127.0.0.100') == 49672
    assert d.exporter_port([_binding(7, 'CA1[1]'), _binding(7, '10.0.0.5[2]')], '10.0.0.5') == 2
    assert d.exporter_port([_binding(7, 'CA1[1]'), _binding(7, 'fd00::5[3]')], 'FD00::5') == 3


def test_exporter_port_missing():
    with pytest.raises(e.TransportError) as info:
        d.exporter_port([_binding(7, 'CA1'), _binding(7, 'CA1[99999]'), _binding(15, 'x[5]')], '10.0.0.5')
    assert info.value.to_message() == ('The CA announced no TCP port for its DCOM object exporter. What to do: '
                                       'Check that the host is an AD CS enterprise CA reachable over TCP.')


def test_activation_asks_for_d2_then_d_only_when_d2_is_missing():
    asked = []

    class _Dcom(object):
        def __init__(self, missing):
            self.missing = missing

        def CoCreateInstanceEx(self, clsid, iid):
            asked.append(iid)
            if iid in self.missing:
                raise DCERPCException(error_code=d.E_NOINTERFACE)
            return 'iface-%d' % len(asked)

    session = d.DcomSession('ca1', a.PasswordAuth('u', 'D', 'pw'))
    session._dcom = _Dcom(())
    ref = session._activate()
    assert (ref.iid, ref.name, asked) == (_ndr.IID_ICertRequestD2, 'ICertRequestD2', [_ndr.IID_ICertRequestD2])
    session.base, session._refs = ref, [ref]
    assert session.query_interface(_ndr.IID_ICertRequestD2, 'ICertRequestD2') is ref      # held: no round trip
    del asked[:]
    session._dcom = _Dcom((_ndr.IID_ICertRequestD2,))
    ref = session._activate()
    assert (ref.iid, ref.name) == (_ndr.IID_ICertRequestD, 'ICertRequestD')
    assert asked == [_ndr.IID_ICertRequestD2, _ndr.IID_ICertRequestD]
    session._dcom = _Dcom((_ndr.IID_ICertRequestD2, _ndr.IID_ICertRequestD))
    with pytest.raises(DCERPCException):
        session._activate()
