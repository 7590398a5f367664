# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""wcce_request with the enrollment policy cache (_policy_cache): a second run reads no LDAP; a CA refusal that
says the policy changed reads Active Directory again and retries once. The CA and the LDAP reads are fakes."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

import pytest
from cryptography.hazmat.primitives import hashes

from ansible_collections.adcs.enrollment.plugins.module_utils import _auth, _directory
from ansible_collections.adcs.enrollment.plugins.module_utils._wcce import EnrollmentResult
from ansible_collections.adcs.enrollment.plugins.modules import wcce_request
from ansible_collections.adcs.enrollment.tests.unit.plugins.support import wcce_pki
from ansible_collections.adcs.enrollment.tests.unit.plugins.support.ca_fakes import install_fake_ca
from ansible_collections.adcs.enrollment.tests.unit.plugins.support.module_harness import run_module

SERVICES = [{'name': 'CA-ONE', 'dns_host_name': '10.9.9.1', 'templates': ['WebServer']}]


@pytest.fixture
def ad(monkeypatch):
    """Active Directory as the enrollment services it lists; ``reads`` counts the LDAP reads."""
    class Ad(object):
        reads = []
        services = SERVICES

    def services(conn, nc):
        Ad.reads.append('services')
        return [dict(s) for s in Ad.services]

    class Conn(object):
        configuration_nc = 'CN=Configuration,DC=lab,DC=adcs,DC=test'

        def close(self):
            pass

    monkeypatch.setattr(_directory, 'list_enrollment_services', services)
    monkeypatch.setattr(_directory.Directory, '_read_template', lambda self, template: None)
    monkeypatch.setattr(_auth, 'ldap_connector', lambda params: lambda domain_controller=None: Conn())
    return Ad


def args_for(tmp_path, name, **kw):
    out = dict(domain='lab.adcs.test', username='enroller@lab.adcs.test', password='S3cret-pw',
               ca_fingerprint=[wcce_pki.pki().root.fingerprint(hashes.SHA256()).hex()], template='WebServer',
               common_name='web.lab.adcs.test', private_key_path=str(tmp_path / (name + '.key')),
               certificate_path=str(tmp_path / (name + '.crt')), policy_cache_dir=str(tmp_path / 'cache'))
    out.update(kw)
    return out


def test_second_run_reads_no_ldap_and_check_mode_writes_no_cache(tmp_path, monkeypatch, ad):
    install_fake_ca(monkeypatch)
    first = run_module(wcce_request.main, args_for(tmp_path, 'web')).result
    assert first['status'] == 'issued' and ad.reads == ['services']
    assert os.stat(str(tmp_path / 'cache')).st_mode & 0o777 == 0o700
    second = run_module(wcce_request.main, args_for(tmp_path, 'other')).result
    assert second['status'] == 'issued' and second['ca']['name'] == 'CA-ONE' and ad.reads == ['services']
    off = run_module(wcce_request.main, args_for(tmp_path, 'off', policy_cache=False)).result
    assert off['status'] == 'issued' and ad.reads == ['services'] * 2
    # check mode: the template's key rule is read (the plan needs it), the cache is not written
    run_module(wcce_request.main, args_for(tmp_path, 'check', policy_cache_dir=str(tmp_path / 'other')),
               check_mode=True)
    assert not os.path.exists(str(tmp_path / 'other'))


def test_a_refusal_that_says_the_policy_changed_reads_ad_again_and_retries_once(tmp_path, monkeypatch, ad):
    client = install_fake_ca(monkeypatch)
    assert run_module(wcce_request.main, args_for(tmp_path, 'web')).result['status'] == 'issued'
    ad.services = [{'name': 'CA-TWO', 'dns_host_name': '10.9.9.2', 'templates': ['WebServer']}]
    issue = client.request

    def refused_by_the_old_ca(template=None, csr_der=None, **kw):
        if client.name and client.session_target == '10.9.9.1':
            client.calls.append(('request', template, None))
            return EnrollmentResult(0x80094800, 0, 0x80094800, 'Denied: template not supported', None, [])
        return issue(template, csr_der, **kw)

    client.session_target = None

    def factory(session, name):
        client.name, client.session_target = name, session.target.address
        return client
    monkeypatch.setattr('ansible_collections.adcs.enrollment.plugins.module_utils._ca_session.cert_request_client',
                        factory)
    monkeypatch.setattr(client, 'request', refused_by_the_old_ca)
    exit_ = run_module(wcce_request.main, args_for(tmp_path, 'moved'))
    result = exit_.result
    assert not exit_.failed, result
    assert result['status'] == 'issued' and result['ca']['name'] == 'CA-TWO' and ad.reads == ['services'] * 2
    [warning] = [w for w in exit_.warnings if 'enrollment policy cached' in w]
    assert warning == ('The request made with the enrollment policy cached from Active Directory failed (0x80094800 '
                       'CERTSRV_E_UNSUPPORTED_CERT_TYPE); Active Directory was read again and the request retried')
    # the refreshed policy is what the next run uses
    assert run_module(wcce_request.main, args_for(tmp_path, 'next')).result['ca']['name'] == 'CA-TWO'
    assert ad.reads == ['services'] * 2


def test_a_refusal_with_fresh_policy_is_not_retried(tmp_path, monkeypatch, ad):
    client = install_fake_ca(monkeypatch)
    ad.services = [dict(SERVICES[0], templates=['WebServer', 'Denied'])]
    exit_ = run_module(wcce_request.main, args_for(tmp_path, 'web', template='Denied'))
    assert exit_.failed and 'CERTSRV_E_TEMPLATE_DENIED' in exit_.result['msg']
    assert len([c for c in client.calls if c[0] == 'request']) == 1 and ad.reads == ['services']
    exit_ = run_module(wcce_request.main, args_for(tmp_path, 'web', template='Denied'))   # cached: retried once
    assert exit_.failed and 'CERTSRV_E_TEMPLATE_DENIED' in exit_.result['msg']
    assert len([c for c in client.calls if c[0] == 'request']) == 3 and ad.reads == ['services'] * 2


@pytest.mark.parametrize('moved', [True, False])
def test_an_unavailable_cached_ca_is_retried_only_when_ad_names_another(tmp_path, monkeypatch, ad, moved):
    from ansible_collections.adcs.enrollment.plugins.module_utils import _ca_session, _errors
    from ansible_collections.adcs.enrollment.tests.unit.plugins.support.ca_fakes import FakeSession
    install_fake_ca(monkeypatch)
    assert run_module(wcce_request.main, args_for(tmp_path, 'web')).result['status'] == 'issued'
    down, tried = _errors.CaUnavailable('The CA is unavailable', detail='connection refused'), []

    def session(target, auth, timeout):
        tried.append(target.address)
        return FakeSession(target, down if target.address == '10.9.9.1' else None)
    monkeypatch.setattr(_ca_session, 'dcom_session', session)
    if moved:
        ad.services = [{'name': 'CA-TWO', 'dns_host_name': '10.9.9.2', 'templates': ['WebServer']}]
    exit_ = run_module(wcce_request.main, args_for(tmp_path, 'again'))
    assert ad.reads == ['services'] * 2   # AD read again either way
    if moved:
        assert not exit_.failed and exit_.result['ca']['name'] == 'CA-TWO'
        assert any(w.startswith('The request made with the enrollment policy cached from Active Directory failed '
                                '(The CA is unavailable)') for w in exit_.warnings), exit_.warnings
    else:   # the same CA, simply down: not asked twice
        assert exit_.failed and exit_.result['msg'].startswith('The CA is unavailable')
        assert tried == ['10.9.9.1']
