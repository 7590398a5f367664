# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""wcce_request: argument handling and result shapes, with the DCOM session and the CA client replaced by the
fakes of support/ca_fakes (the real AnsibleModule, _enroller, _files and _certs code runs)."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import sys

import pytest
from cryptography.hazmat.primitives import hashes


sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), 'module_utils'))

from ansible_collections.adcs.enrollment.plugins.module_utils import _ca_session, _request_spec  # noqa: E402
from ansible_collections.adcs.enrollment.plugins.modules import wcce_request  # noqa: E402
from module_harness import run_module  # noqa: E402

from ansible_collections.adcs.enrollment.tests.unit.plugins.support.ca_fakes import FakeClient, FakeSession  # noqa: E402
import wcce_pki  # noqa: E402


@pytest.fixture
def fake_ca(monkeypatch):
    client = FakeClient({})
    FakeSession.opened = []
    monkeypatch.setattr(_ca_session, 'dcom_session', lambda target, auth, timeout: FakeSession(target))
    monkeypatch.setattr(_ca_session, 'cert_request_client', client)
    return client


def run(args, check_mode=False, diff=False):
    return run_module(wcce_request.main, args, check_mode=check_mode, diff=diff)


CONN = {'ca_host': 'ca1.lab.adcs.test', 'ca_name': 'LAB-CA', 'username': 'enroller@lab.adcs.test',
        'password': 'S3cret-pw', 'ca_fingerprint': [wcce_pki.pki().root.fingerprint(hashes.SHA256()).hex()]}


def args_for(tmp_path, **kw):
    out = dict(CONN, template='WebServer', common_name='web.lab.adcs.test',
               private_key_path=str(tmp_path / 'web.key'), certificate_path=str(tmp_path / 'web.crt'))
    out.update(kw)
    return out


def test_argument_spec_secrets_and_suboptions():
    spec = _request_spec.argument_spec()
    for name in ('password', 'nt_hash', 'private_key_passphrase', 'pkcs12_passphrase'):
        assert spec[name].get('no_log') is True, name
    sub = spec['requests']['options']
    assert sub['private_key_passphrase']['no_log'] is True and sub['pkcs12_passphrase']['no_log'] is True
    assert all('default' not in o for o in sub.values())   # entries inherit the top-level values
    assert set(sub) - {'owner', 'group', 'mode'} == set(_request_spec.REQUEST_OPTIONS) - {'owner', 'group', 'mode'}


def test_issue_and_rerun(tmp_path, fake_ca):
    exit_ = run(args_for(tmp_path, pkcs12_path=str(tmp_path / 'web.p12'), pkcs12_passphrase='p12-pw'))
    assert not exit_.failed, exit_.result['msg']
    r = exit_.result
    assert r['changed'] is True and r['disposition'] == 'issued' and r['request_id'] == 101
    assert r['msg'] == 'Certificate issued by LAB-CA (request ID 101) and written to %s' % (tmp_path / 'web.crt')
    assert set(r['paths']) == {'private_key', 'certificate', 'pkcs12'}
    assert 'diff' not in r
    text = json.dumps(r)
    assert 'S3cret-pw' not in text and 'p12-pw' not in text and 'PRIVATE KEY' not in text
    again = run(args_for(tmp_path, pkcs12_path=str(tmp_path / 'web.p12'), pkcs12_passphrase='p12-pw')).result
    assert again['changed'] is False and again['action'] == 'none', again
    assert len(fake_ca.calls) == 2   # request + GetCACert of the first run only


def test_check_and_diff(tmp_path, fake_ca):
    r = run(args_for(tmp_path), check_mode=True, diff=True).result
    assert r['changed'] is True and r['diff']['before'] == {'state': 'absent'}
    assert fake_ca.calls == [] and os.listdir(str(tmp_path)) == []


def test_pending_is_not_a_failure(tmp_path, fake_ca):
    exit_ = run(args_for(tmp_path, template='Manual'))
    assert not exit_.failed
    assert exit_.result['disposition'] == 'pending' and exit_.result['changed'] is True
    assert 'request_id=101' in exit_.result['msg']


def test_denied_fails_with_error_details(tmp_path, fake_ca):
    exit_ = run(args_for(tmp_path, template='Denied'))
    assert exit_.failed
    assert 'HRESULT 0x80094012 (CERTSRV_E_TEMPLATE_DENIED)' in exit_.result['msg']
    assert exit_.result['error']['hresult'] == '0x80094012'
    assert exit_.result['request_id'] == 101


@pytest.mark.parametrize('kw, message', [
    ({'certificate_path': None}, 'certificate_path is required'),
    ({'nt_hash': 'a' * 32}, 'parameters are mutually exclusive: password|nt_hash'),
    ({'key_type': 'dsa'}, 'value of key_type must be one of: rsa, ecdsa'),
    ({'private_key_path': None}, 'give private_key_path'),
])
def test_argument_errors(tmp_path, fake_ca, kw, message):
    args = args_for(tmp_path)
    for k, v in kw.items():
        if v is None:
            args.pop(k)
        else:
            args[k] = v
    exit_ = run(args)
    assert exit_.failed and message in exit_.result['msg'], exit_.result['msg']
    assert fake_ca.calls == []


def test_missing_username_fails_only_when_the_ca_is_needed(tmp_path, fake_ca):
    args = args_for(tmp_path)
    del args['username']
    exit_ = run(args)
    assert exit_.failed and exit_.result['msg'] == 'username is required to authenticate to the CA.'


def test_requests_list(tmp_path, fake_ca):
    args = dict(CONN, template='WebServer', requests=[
        {'common_name': 'a%d' % i, 'private_key_path': str(tmp_path / ('%d.key' % i)),
         'certificate_path': str(tmp_path / ('%d.crt' % i))} for i in range(2)])
    args['requests'].append({'template': 'Denied', 'private_key_path': str(tmp_path / 'x.key'),
                             'certificate_path': str(tmp_path / 'x.crt')})
    exit_ = run(args, diff=True)
    assert exit_.failed
    r = exit_.result
    assert r['msg'].startswith('1 of 3 requests failed: requests[2]: The CA LAB-CA did not issue')
    assert [x.get('disposition') for x in r['results']] == ['issued', 'issued', 'denied']
    assert len(r['diff']) == 2
    assert FakeSession.opened == ['ca1.lab.adcs.test']
