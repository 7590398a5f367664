# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""_ca_session: one session per CA for many requests, failover to the next CA, errors naming the CA."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible_collections.adcs.enrollment.tests.unit.plugins.support import wcce_pki

from ansible_collections.adcs.enrollment.plugins.module_utils import _ca_session, _directory, _errors, _request_spec
from ansible_collections.adcs.enrollment.tests.unit.plugins.support.ca_fakes import (
    FakeClient,
    FakeDirectory,
    FakeSession,
    SERVICES,
    enroller,
    spec,
)


def test_many_requests_one_session(tmp_path):
    client = FakeClient({})
    specs = _request_spec.normalize_requests({'template': 'WebServer', 'requests': [
        {'private_key_path': str(tmp_path / ('%d.key' % i)), 'certificate_path': str(tmp_path / ('%d.crt' % i))}
        for i in range(4)]})
    with enroller(client) as e:
        results = e.run(specs)
        assert e.sessions_opened == 1
    assert [r['disposition'] for r in results] == ['issued'] * 4
    assert FakeSession.opened == ['ca1.lab.adcs.test']
    assert [c[0] for c in client.calls].count('GetCACert') == 1


def test_discovery_tries_the_next_ca_when_one_is_down(tmp_path):
    down = _errors.CaUnavailable('Connecting to the CA endpoint mapper (port 135) failed (10.9.9.1)',
                                 hresult=0x800706BA)
    client = FakeClient({})
    with enroller(client, ca_host=None, ca_name=None, directory=FakeDirectory(SERVICES),
                  failing={'10.9.9.1': down}) as e:
        [result] = e.run([spec(tmp_path)])
    assert result['disposition'] == 'issued'
    assert result['ca'] == {'name': 'CA-TWO', 'host': '10.9.9.2', 'address': '10.9.9.2', 'source': 'discovery'}
    # all down: one message naming each CA
    with enroller(client, ca_host=None, ca_name=None, directory=FakeDirectory(SERVICES),
                  failing={'10.9.9.1': down, '10.9.9.2': down}) as e:
        [result] = e.run([spec(tmp_path, force=True)])
    assert result['failed'] and result['msg'].startswith('No CA for template WebServer could be reached; CA-ONE '
                                                         '(10.9.9.1): Connecting')
    assert 'CA-TWO (10.9.9.2)' in result['msg']


def test_authentication_failure_is_not_retried_on_other_cas(tmp_path):
    bad = _errors.AuthenticationError('Activating CCertRequestD on the CA was refused (10.9.9.1)', hresult=5)
    with enroller(FakeClient({}), ca_host=None, ca_name=None, directory=FakeDirectory(SERVICES),
                  failing={'10.9.9.1': bad}) as e:
        [result] = e.run([spec(tmp_path)])
    assert result['failed'] and result['msg'].startswith('Activating CCertRequestD on the CA was refused')
    assert FakeSession.opened == []


def test_a_session_on_its_own_reads_the_ca_certificates_once():
    client = FakeClient({})
    with _ca_session.CaSession('ca1.lab.adcs.test', 'LAB-CA', auth=object(), address='10.9.9.1',
                               session_factory=FakeSession, client_factory=client).open() as ca:
        assert ca.client is client and client.name == 'LAB-CA'
        assert ca.ca_certificates() == ca.ca_certificates() == [wcce_pki.pki().ca, wcce_pki.pki().root]
        assert ca.target.to_dict() == {'name': 'LAB-CA', 'host': 'ca1.lab.adcs.test', 'address': '10.9.9.1',
                                       'source': 'options'}
    assert [c[0] for c in client.calls] == ['GetCACert'] and ca.session.closed


def test_kerberos_names_the_ca_by_its_host_name_and_connects_to_its_address(monkeypatch):
    from ansible_collections.adcs.enrollment.plugins.module_utils import _dcom
    made = []
    monkeypatch.setattr(_dcom, 'DcomSession', lambda host, auth, timeout, remote_host=None: made.append(
        (host, remote_host, timeout)))
    target = _directory.CaTarget('LAB-CA', 'ca1.lab.adcs.test', '10.9.9.1')
    kerberos, ntlm = type('K', (), {'kind': 'kerberos'})(), type('N', (), {'kind': 'ntlm'})()
    _ca_session.dcom_session(target, kerberos, 7)
    _ca_session.dcom_session(target, ntlm, 7)
    assert made == [('ca1.lab.adcs.test', '10.9.9.1', 7), ('10.9.9.1', None, 7)]


@pytest.mark.parametrize('exc, summary', [
    (_errors.AuthenticationError('ICertRequestD2.Request2 failed (10.9.9.1)', hresult=0x80070005),
     'The CA "LAB-CA" at 10.9.9.1 refused the call'),
    (_errors.BadRequest('ICertRequestD2.Request2 failed (10.9.9.1)', hresult=0x80070057),
     'The CA "LAB-CA" at 10.9.9.1 refused the call (is "LAB-CA" the CA name?)'),
    (_errors.CaUnavailable('ICertRequestD2.Request2 failed (10.9.9.1)', hresult=0x800706BA),
     'ICertRequestD2.Request2 failed (10.9.9.1)'),
    (_errors.TransportError('ICertRequestD2.Request2 failed: the CA closed the connection (10.9.9.1)'),
     'ICertRequestD2.Request2 failed: the CA closed the connection (10.9.9.1)'),
])
def test_only_the_cas_own_fault_names_the_ca(exc, summary):
    """Decided by the HRESULT the CA answered, never by the text of the message."""
    target = _directory.CaTarget('LAB-CA', 'ca1.lab.adcs.test', '10.9.9.1')
    assert _ca_session.name_the_ca(exc, target).summary == summary
