# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""wcce_request: argument handling and result shapes, with the DCOM session and the CA client replaced by the
fakes of support/ca_fakes (the real AnsibleModule, _enroller, _files and _certs code runs)."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID


from ansible_collections.adcs.enrollment.plugins.module_utils import _request_spec, _state  # noqa: E402
from ansible_collections.adcs.enrollment.plugins.modules import wcce_request  # noqa: E402
from ansible_collections.adcs.enrollment.tests.unit.plugins.support.module_harness import run_module  # noqa: E402

from ansible_collections.adcs.enrollment.tests.unit.plugins.support.ca_fakes import FakeSession, install_fake_ca  # noqa: E402
from ansible_collections.adcs.enrollment.tests.unit.plugins.support import wcce_pki  # noqa: E402


@pytest.fixture
def fake_ca(monkeypatch):
    return install_fake_ca(monkeypatch)


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


# ---- status, state_path and pipe mode (the state of a certificate, _state / _pipe) ----------------------------------
CN = 'web.lab.adcs.test'


def host_args(tmp_path, **kw):
    out = dict(CONN, template='WebServer', common_name=CN, private_key_path=str(tmp_path / 'web.key'),
               certificate_path=str(tmp_path / 'web.crt'), state_path=str(tmp_path / 'web.crt.adcs.json'))
    out.update(kw)
    return out


def state_of(tmp_path):
    with open(str(tmp_path / 'web.crt.adcs.json')) as handle:
        return json.load(handle)


def csr_pem(key):
    csr = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CN)])).sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def pipe_args(key, **kw):
    out = dict(CONN, pipe=True, template='WebServer', common_name=CN, key_type='rsa', csr_content=csr_pem(key),
               chain_content='', fullchain_content='')
    out.update(kw)
    return out


# ---- state_path ----------------------------------------------------------------------------------------------------
def test_issue_records_the_state_and_a_rerun_leaves_it(tmp_path, fake_ca):
    r = run(host_args(tmp_path)).result
    assert r['status'] == 'issued' and r['changed'] is True, r
    state = state_of(tmp_path)
    assert (state['format'], state['version'], state['status'], state['request_id']) == \
        (_state.FORMAT, 1, 'issued', r['request_id'])
    assert state['certificate']['fingerprint_sha256'] == r['certificate']['fingerprint_sha256']
    assert state['requested']['subject'] == 'CN=%s' % CN
    assert state['ca'] == {'name': 'LAB-CA', 'host': 'ca1.lab.adcs.test'}
    before = open(str(tmp_path / 'web.crt.adcs.json')).read()
    again = run(host_args(tmp_path)).result
    assert again['status'] == 'unchanged' and again['changed'] is False, again
    assert open(str(tmp_path / 'web.crt.adcs.json')).read() == before


def test_pending_request_is_resumed_from_the_state(tmp_path, fake_ca):
    r = run(host_args(tmp_path, template='Manual')).result
    assert r['status'] == 'pending' and r['changed'] is True, r
    assert 'waits for a certificate manager' in r['msg']
    state = state_of(tmp_path)
    assert state['status'] == 'pending' and state['request_id'] == r['request_id']
    # check mode: reported as pending, the CA is not contacted
    calls = len(fake_ca.calls)
    checked = run(host_args(tmp_path, template='Manual'), check_mode=True).result
    assert checked['status'] == 'pending' and len(fake_ca.calls) == calls
    # the next run retrieves it (the fake CA issues on retrieval)
    got = run(host_args(tmp_path, template='Manual')).result
    assert got['status'] == 'issued' and got['action'] == 'retrieve' and got['request_id'] == r['request_id'], got
    assert fake_ca.calls[calls] == ('retrieve', r['request_id'])
    assert state_of(tmp_path)['status'] == 'issued'


def test_changed_request_abandons_the_pending_one(tmp_path, fake_ca):
    r = run(host_args(tmp_path, template='Manual')).result
    other = run(host_args(tmp_path, template='Manual', common_name='other.lab.adcs.test')).result
    assert other['status'] == 'pending' and other['action'] == 'enroll' and other['request_id'] != r['request_id']


def test_denied_is_recorded(tmp_path, fake_ca):
    exit_ = run(host_args(tmp_path, template='Denied'))
    assert exit_.failed and exit_.result['status'] == 'denied', exit_.result
    state = state_of(tmp_path)
    assert state['status'] == 'denied' and state['request_id'] == exit_.result['request_id']


def test_newer_state_is_refused(tmp_path, fake_ca):
    with open(str(tmp_path / 'web.crt.adcs.json'), 'w') as handle:
        json.dump({'format': _state.FORMAT, 'version': 99}, handle)
    exit_ = run(host_args(tmp_path))
    assert exit_.failed and 'written by a newer version of adcs.enrollment' in exit_.result['msg']
    assert fake_ca.calls == [] and not os.path.exists(str(tmp_path / 'web.crt'))


def test_status_without_state_path(tmp_path, fake_ca):
    r = run(host_args(tmp_path, state_path=None)).result
    assert r['status'] == 'issued' and not os.path.exists(str(tmp_path / 'web.crt.adcs.json'))


# ---- pipe mode -------------------------------------------------------------------------------------------------------
def test_pipe_contents_in_contents_out(tmp_path, fake_ca):
    key = wcce_pki.rsa_key('pipe-host')
    cwd = os.getcwd()
    os.chdir(str(tmp_path))
    try:
        r = run(pipe_args(key)).result
    finally:
        os.chdir(cwd)
    assert r['status'] == 'issued' and r['changed'] is True, r
    assert os.listdir(str(tmp_path)) == [], 'nothing written'
    cert = x509.load_pem_x509_certificate(r['certificate_content'].encode())
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()
    assert r['chain_content'].count('BEGIN CERTIFICATE') == 2 and r['fullchain_content'].count('BEGIN') == 3
    assert r['paths'] == {} and r['refusal_content'] is None and r['new_key'] is False
    assert json.loads(r['state_content'])['status'] == 'issued'
    # the host now holds those: nothing to do, nothing to store
    again = run(pipe_args(key, certificate_content=r['certificate_content'], chain_content=r['chain_content'],
                          fullchain_content=r['fullchain_content'], state_content=r['state_content'])).result
    assert again['status'] == 'unchanged' and again['changed'] is False and again['state_content'] is None
    assert again['certificate_content'] == r['certificate_content']


def test_pipe_pending_resumed_from_state_content(fake_ca):
    key = wcce_pki.rsa_key('pipe-host')
    r = run(pipe_args(key, template='Manual')).result
    assert r['status'] == 'pending' and r['certificate_content'] is None
    state = json.loads(r['state_content'])
    assert state['pending_csr'] == pipe_args(key)['csr_content'] and state['new_key'] is False
    # ansible-core < 2.19 hands JSON text over as a dict
    got = run(pipe_args(key, template='Manual', state_content=state)).result
    assert got['status'] == 'issued' and got['request_id'] == r['request_id'], got


def test_pipe_new_key_for_every_renewal(fake_ca):
    current = wcce_pki.rsa_key('pipe-current')
    first = run(pipe_args(current)).result
    due = dict(regenerate_key=True, renew_before=400, certificate_content=first['certificate_content'])
    calls = len(fake_ca.calls)
    asked = run(pipe_args(current, **due)).result
    assert asked['new_key_needed'] is True and asked['status'] == 'would_enroll', asked
    assert asked['reason_code'] == 'renew_window' and asked['changed'] is False
    assert len(fake_ca.calls) == calls, 'nothing submitted'
    new = wcce_pki.rsa_key('pipe-new')
    renewed = run(pipe_args(new, new_key=True, **due)).result
    assert renewed['status'] == 'renewed' and renewed['new_key'] is True, renewed
    cert = x509.load_pem_x509_certificate(renewed['certificate_content'].encode())
    assert cert.public_key().public_numbers() == new.public_key().public_numbers()


@pytest.mark.parametrize('extra,message', [
    ({'certificate_path': '/tmp/x.crt'}, 'certificate_path cannot be used with it'),
    ({'format': 'der'}, 'format=der cannot be used with it'),
])
def test_pipe_refuses_file_options(fake_ca, extra, message):
    exit_ = run(pipe_args(wcce_pki.rsa_key('pipe-host'), **extra))
    assert exit_.failed and message in exit_.result['msg']


def test_contents_need_pipe(tmp_path, fake_ca):
    exit_ = run(host_args(tmp_path, state_content='{}'))
    assert exit_.failed and 'state_content need pipe=true' in exit_.result['msg']


def test_pipe_check_mode_without_csr(fake_ca):
    args = pipe_args(wcce_pki.rsa_key('pipe-host'))
    del args['csr_content']
    r = run(args, check_mode=True).result
    assert r['status'] == 'would_enroll' and r['changed'] is True and fake_ca.calls == []
    assert run(args).failed


# ---- certificates: the certificate role's entries in one task (_role_entries) -----------------------------------------
def role_args(tmp_path, entries, **kw):
    out = dict(CONN, certificates=entries, certificate_defaults={'directory': str(tmp_path)})
    out.update(kw)
    return out


def test_certificates_one_task_for_the_role(tmp_path, fake_ca):
    entries = [{'name': 'web', 'common_name': 'web.lab.adcs.test', 'dns': ['web.lab.adcs.test'], 'ip': ['192.0.2.1'],
                'run_after': 'echo after', 'notify': 'reload web', 'install_ca_trust': True,
                'crl_path': str(tmp_path / 'web.crl')},
               {'name': 'api', 'common_name': 'api.lab.adcs.test', 'notify': ['reload web', 'reload api'],
                'chain': False, 'pkcs12_path': str(tmp_path / 'api.p12'), 'pkcs12_passphrase': 'p12-pw'},
               {'name': 'no', 'template': 'Denied', 'common_name': 'no.lab.adcs.test'}]
    exit_ = run(role_args(tmp_path, entries))
    assert exit_.failed   # as with requests: the task fails, the role decides with certificate_fail_on_error
    r = exit_.result
    certs = dict((c['name'], c) for c in r['certificate_results'])
    assert [c['status'] for c in r['certificate_results']] == ['issued', 'issued', 'denied']
    web = certs['web']
    assert web['changed'] is True and web['enroll_on'] == 'host' and web['template'] == 'WebServer'
    assert web['paths'] == {'private_key': str(tmp_path / 'private' / 'web.key'),
                            'certificate': str(tmp_path / 'certs' / 'web.crt'),
                            'chain': str(tmp_path / 'certs' / 'web-chain.crt'),
                            'fullchain': str(tmp_path / 'certs' / 'web-fullchain.crt'),
                            'pkcs12': None, 'crl': str(tmp_path / 'web.crl')}
    assert web['summary'].startswith('web: issued: CN=web.lab.adcs.test, issued by ')
    assert os.stat(str(tmp_path / 'private')).st_mode & 0o777 == 0o700   # create_directories by default
    cert = x509.load_pem_x509_certificate(open(web['paths']['certificate'], 'rb').read())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ['web.lab.adcs.test']
    assert certs['api']['paths']['chain'] is None and not os.path.exists(str(tmp_path / 'certs' / 'api-chain.crt'))
    assert os.path.exists(str(tmp_path / 'api.p12'))
    assert certs['no']['message'] and certs['no']['summary'].startswith('no: denied: ')
    assert r['certificate_failures'] == [certs['no']['summary']]
    assert r['certificate_summaries'] == [c['summary'] for c in r['certificate_results']]
    # the role's fact, set by the module task itself (a failed certificate does not keep it from being set)
    assert r['ansible_facts'] == {'certificate_results': r['certificate_results']}
    follow = r['followups']
    assert follow['run_after'] == [{'name': 'web', 'command': 'echo after'}]
    assert follow['notify'] == ['reload web', 'reload api'] and len(follow['changed']) == 2
    assert follow['crl'] == [{'index': 0, 'name': 'web'}]
    assert [t['name'] for t in follow['trust']] == ['web'] and follow['trust'][0]['verify'] is True
    assert follow['trust'][0]['content'] == open(web['paths']['chain']).read()
    assert 'run_before' not in follow
    assert FakeSession.opened == ['ca1.lab.adcs.test']   # one session for the three
    text = json.dumps(r)
    assert 'S3cret-pw' not in text and 'p12-pw' not in text

    again = run(role_args(tmp_path, entries[:2])).result
    assert [c['status'] for c in again['certificate_results']] == ['unchanged', 'unchanged'], again
    assert again['changed'] is False and again['certificate_failures'] == []
    assert set(again['followups']) == {'crl', 'trust'}   # done on every run where they apply
    assert again['certificate_results'][0]['summary'].endswith('and matches the request)')
    assert again['ansible_facts'] == {'certificate_results': again['certificate_results']}


def test_certificates_entry_errors_fail_that_certificate_only(tmp_path, fake_ca):
    entries = [{'name': 'web', 'common_name': 'web.lab.adcs.test'},
               {'name': 'small', 'common_name': 'd.lab.adcs.test', 'key_size': 512},
               {'name': 'before', 'common_name': 'e.lab.adcs.test', 'run_before': 'false'},
               {'name': 'stale', 'common_name': 'f.lab.adcs.test', 'run_before': 'new command'}]
    before = [{'item': {'name': 'before', 'command': 'false'}, 'failed': False, 'rc': 1, 'stderr': 'boom'},
              {'item': {'name': 'stale', 'command': 'old command'}, 'failed': True, 'rc': 1, 'stderr': 'old'},
              {'item': {'name': 'web', 'command': 'x'}, 'skipped': True}]
    r = run(role_args(tmp_path, entries, run_before_results=before)).result
    status = dict((c['name'], (c['status'], c['message'])) for c in r['certificate_results'])
    assert status['web'] == ('issued', None) and status['stale'] == ('issued', None)
    assert status['small'][0] == 'failed' and status['small'][1].startswith('certificate small: ')
    assert status['before'] == ('failed', 'run_before failed (rc=1): boom')
    assert not os.path.exists(str(tmp_path / 'certs' / 'before.crt'))


def test_certificates_per_entry_connection_groups(tmp_path, fake_ca):
    entries = [{'name': 'a', 'common_name': 'a.lab.adcs.test'},
               {'name': 'b', 'common_name': 'b.lab.adcs.test', 'ca_host': 'ca2.lab.adcs.test',
                'connection': {'password': 'Other-pw'}},
               {'name': 'c', 'common_name': 'c.lab.adcs.test', 'create_directories': False}]
    r = run(role_args(tmp_path, entries)).result
    status = dict((c['name'], c['status']) for c in r['certificate_results'])
    assert status['a'] == 'issued' and status['b'] == 'issued', r
    # one session per connection (and per create_directories); c uses the directories the first group made
    assert sorted(FakeSession.opened) == ['ca1.lab.adcs.test', 'ca1.lab.adcs.test', 'ca2.lab.adcs.test']
    assert status['c'] == 'issued'
    assert 'Other-pw' not in json.dumps(r)


def test_certificates_plan_first_when_run_before_applies(tmp_path, fake_ca):
    entries = [{'name': 'web', 'common_name': 'web.lab.adcs.test', 'run_before': 'systemctl stop web',
                'run_after': 'systemctl start web', 'notify': 'h'},
               {'name': 'quiet', 'common_name': 'q.lab.adcs.test'}]
    r = run(role_args(tmp_path, entries), check_mode=True).result   # check mode: a plan, no commands to run
    assert [c['status'] for c in r['certificate_results']] == ['would_enroll', 'would_enroll']
    assert r['planned'] is False and r['followups'] == {'notify': ['h'], 'changed': r['followups']['changed']}
    assert fake_ca.calls == [] and os.listdir(str(tmp_path)) == []

    exit_ = run(role_args(tmp_path, entries))   # web is about to be replaced: nothing is done, the command is listed
    r = exit_.result
    assert r['planned'] is True and r['changed'] is False and not exit_.failed
    assert r['followups'] == {'run_before': [{'name': 'web', 'command': 'systemctl stop web'}]}
    assert fake_ca.calls == [] and os.listdir(str(tmp_path)) == []

    done = [{'item': {'name': 'web', 'command': 'systemctl stop web'}, 'changed': True, 'rc': 0}]
    r = run(role_args(tmp_path, entries, run_before_results=done)).result
    assert r['planned'] is False and [c['status'] for c in r['certificate_results']] == ['issued', 'issued']
    assert r['followups']['run_after'] == [{'name': 'web', 'command': 'systemctl start web'}]

    r = run(role_args(tmp_path, entries)).result   # nothing to replace: enrolled (no-op) in one call
    assert r['planned'] is False and r['followups'] == {} and r['changed'] is False
    assert [c['status'] for c in r['certificate_results']] == ['unchanged', 'unchanged']


def test_certificates_refuses_duplicate_names_and_pipe(tmp_path, fake_ca):
    entries = [{'name': 'web', 'common_name': 'a'}, {'name': 'web', 'common_name': 'b'}]
    exit_ = run(role_args(tmp_path, entries))
    assert exit_.failed and 'certificate_results' not in exit_.result
    assert exit_.result['msg'].startswith('the names of the certificates must be unique: web is given twice')
    exit_ = run(role_args(tmp_path, entries[:1], pipe=True, csr_content='x'))
    assert exit_.failed
    assert 'certificates cannot be used with pipe=true' in exit_.result['msg']
    exit_ = run(role_args(tmp_path, entries[:1], requests=[{'certificate_path': '/x'}]))
    assert exit_.failed and 'mutually exclusive' in exit_.result['msg']
    # an entry's connection is checked as the module's own connection options
    exit_ = run(role_args(tmp_path, [{'name': 'web', 'connection': {'bogus': 1}}]))
    assert exit_.failed and 'bogus' in exit_.result['msg'] and 'certificate_results' not in exit_.result


def test_certificates_mask_only_the_secrets_of_an_entry_connection(tmp_path, fake_ca):
    entries = [{'name': 'web', 'common_name': 'web.lab.adcs.test',
                'connection': {'password': 'Entry-pw-1', 'timeout': 5, 'domain': 'lab.adcs.test'}}]
    exit_ = run(role_args(tmp_path, entries))
    r = exit_.result
    assert r['certificate_results'][0]['status'] == 'issued', r
    # the connection's other values are no secrets: they are not masked where they appear in the results
    assert r['certificate_results'][0]['subject'] == 'CN=web.lab.adcs.test'
    assert 'Entry-pw-1' not in json.dumps(r)


def test_certificates_pending_notifies_nothing(tmp_path, fake_ca):
    entries = [{'name': 'm', 'template': 'Manual', 'common_name': 'm.lab.adcs.test', 'run_after': 'echo x',
                'notify': 'h'}]
    r = run(role_args(tmp_path, entries)).result
    cert = r['certificate_results'][0]
    assert cert['status'] == 'pending' and cert['changed'] is True and cert['request_id']
    assert 'waits for a certificate manager' in cert['summary']
    assert r['followups'] == {}   # nothing was replaced: no run_after, no handlers
