# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The DCE/RPC wire of the collection against a lab CA built from this checkout (the private CA on 127.0.0.91):
SPNEGO (Kerberos or NTLM inside) by default with header signing and the verification trailer, the raw NTLM and
Kerberos fallbacks (``rpc_auth_package``), one security context per connection, a trailer after a stub that needs
alignment padding (the first call on a context being Ping or GetCACert), and an idle session reopened.

The private CA logs what it saw per connection ("authenticated ... (type N, ..., header signing on)", "verification
trailer checked (...)"). Run under `flock /tmp/adcs-private-ca.lock` (one private CA on 127.0.0.91 at a time)."""

import pytest

# fixtures (private_ca, faults) and helpers of the private-CA harness
from test_wcce_request_faults import (  # noqa: F401  pylint: disable=unused-import
    ADDRESS, CA_NAME, MODULE, assert_issued, faults, private_ca, web_args,
)

pytestmark = pytest.mark.lab


def new_log(faults):
    with open(faults.log_path, 'rb') as handle:
        handle.seek(faults.offset)
        return handle.read().decode('utf-8', 'replace')


def authenticated(log, auth_type):
    return log.count('(type %d, level pkt_privacy, auth_context_id 0, header signing on)' % auth_type)


@pytest.mark.parametrize('package, auth_type', [(None, 9), ('negotiate', 9), ('ntlm', 10)])
def test_module_enrolls_with_each_ntlm_package(lab, ansible, tmp_path, faults, package, auth_type):
    args = web_args(lab, tmp_path, 'wire-%s' % (package or 'default'))
    if package:
        args['rpc_auth_package'] = package
    rc, result = ansible.module(MODULE, args)
    assert_issued(rc, result, args)
    log = new_log(faults)
    assert authenticated(log, auth_type) == 2, log          # port 135 and the object exporter: one context each
    assert log.count('verification trailer checked (bitmask, pcontext)') == 2, log
    assert 'refused' not in log and 'fault 0x' not in log, log


def test_kerberos_package_needs_kerberos_credentials(lab, ansible, tmp_path, faults):
    args = web_args(lab, tmp_path, 'wire-krb-needed', rpc_auth_package='kerberos')
    rc, result = ansible.module(MODULE, args)
    assert rc != 0 and result['failed'] is True, result
    assert result['msg'].startswith('rpc_auth_package=kerberos needs auth=kerberos'), result['msg']
    assert 'activated CCertRequestD' not in new_log(faults)      # refused before anything was sent


def _ping(session):
    from ansible_collections.adcs.enrollment.plugins.module_utils import _ndr, _wcce
    req = _ndr.Ping()
    req['pwszAuthority'] = CA_NAME + '\x00'
    req['ORPCthis'] = _wcce.new_orpcthis()
    return session.call(session.base, req)


def _session(lab, package, kerberos):
    from ansible_collections.adcs.enrollment.plugins.module_utils import _auth, _dcom, _kerberos
    acct = lab['accounts']['enroller']
    if kerberos:
        auth = _kerberos.KerberosTicketAuth(lab['ca']['hostname'], realm=lab['realm'], user=acct['username'],
                                            password=acct['password'], kdc=lab['dc']['address'])
        host, remote = lab['ca']['hostname'], ADDRESS
    else:
        auth = _auth.PasswordAuth(acct['username'], lab['netbios_domain'], acct['password'])
        host, remote = ADDRESS, None
    auth.rpc_package = package
    return _dcom.DcomSession(host, auth, timeout=10, remote_host=remote)


@pytest.mark.parametrize('package, kerberos, auth_type', [
    ('negotiate', True, 9), ('kerberos', True, 16), ('negotiate', False, 9), ('ntlm', False, 10)])
def test_ping_first_then_more_calls_on_one_security_context(lab, faults, package, kerberos, auth_type):
    """Ping is the first call on the context: its stub ends 2 bytes short of 4-byte alignment, so the trailer
    follows 2 octets of stub padding (MS-RPCE 2.2.2.13), which the CA accepts."""
    from ansible_collections.adcs.enrollment.plugins.module_utils._rpc_stats import WIRE_STATS
    WIRE_STATS.reset()
    with _session(lab, package, kerberos) as session:
        for _attempt in range(3):
            assert _ping(session)['ErrorCode'] == 0
        dce = session.connection(session.base)
        assert dce.security.auth_type == auth_type and dce.security.kerberos is kerberos and dce.header_sign
    figures = WIRE_STATS.as_dict()
    assert figures['handshakes'] == 2 and figures['connections'] == 2, figures
    log = new_log(faults)
    assert authenticated(log, auth_type) == 2, log
    assert 'verification trailer checked (bitmask, pcontext)' in log, log
    assert 'fault 0x' not in log, log


def test_idle_session_is_reopened_before_the_next_call(lab, faults, monkeypatch):
    from ansible_collections.adcs.enrollment.plugins.module_utils import _dcom
    from ansible_collections.adcs.enrollment.plugins.module_utils._rpc_stats import WIRE_STATS
    now = [1000.0]
    monkeypatch.setattr(_dcom.DcomSession, 'clock', staticmethod(lambda: now[0]))
    WIRE_STATS.reset()
    with _session(lab, 'negotiate', False) as session:
        _ping(session)
        now[0] += _dcom.PING_PERIOD - 1
        _ping(session)
        assert WIRE_STATS.reconnects == 0
        now[0] += _dcom.PING_PERIOD
        _ping(session)
        assert WIRE_STATS.reconnects == 1 and WIRE_STATS.connections == 4
    assert new_log(faults).count('activated CCertRequestD') == 2
