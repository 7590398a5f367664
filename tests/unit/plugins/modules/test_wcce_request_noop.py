# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""wcce_request's no-op (the certificate on disk fits) as a module process, the way Ansible runs it: no socket is
opened and none of the protocol libraries (impacket, pyasn1, ldap3, dnspython, gssapi) is imported; the template's
renewal period comes from the state file next to the certificate. Once a run found that every certificate fits,
the next one with the same options and files is answered by the no-op records (_fits) without even cryptography.
A behaviour test, not a timing one."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import subprocess
import sys

import pytest

from ansible_collections.adcs.enrollment.plugins.modules import wcce_request
from ansible_collections.adcs.enrollment.tests.unit.plugins.support.ca_fakes import install_fake_ca
from ansible_collections.adcs.enrollment.tests.unit.plugins.support.module_harness import run_module
from ansible_collections.adcs.enrollment.tests.unit.plugins.support import wcce_pki

from cryptography.hazmat.primitives import hashes

PROTOCOL_PACKAGES = ('impacket', 'pyasn1', 'pyasn1_modules', 'ldap3', 'dns', 'gssapi', 'Cryptodome')

# Runs the module file as __main__ with a socket guard; prints (to fd 3's file) what was imported and connected.
_GUARD = r'''
import atexit, json, runpy, socket, sys
report, module = sys.argv.pop(1), sys.argv.pop(1)
attempts = []
def refuse(self, address, *args):
    attempts.append(repr(address))
    raise OSError('the no-op test refuses every connection')
socket.socket.connect = refuse
socket.socket.connect_ex = refuse
def write():
    with open(report, 'w') as handle:
        json.dump({'modules': sorted(set(m.split('.')[0] for m in sys.modules)), 'connects': attempts}, handle)
atexit.register(write)
sys.argv[0] = module
runpy.run_path(module, run_name='__main__')
'''


@pytest.fixture
def fake_ca(monkeypatch):
    return install_fake_ca(monkeypatch)


def module_args(tmp_path, **kw):
    args = {'ca_host': 'ca1.lab.adcs.test', 'ca_name': 'LAB-CA', 'username': 'enroller@lab.adcs.test',
            'password': 'S3cret-pw', 'ca_fingerprint': [wcce_pki.pki().root.fingerprint(hashes.SHA256()).hex()],
            'template': 'WebServer', 'common_name': 'web.lab.adcs.test',
            'private_key_path': str(tmp_path / 'web.key'), 'certificate_path': str(tmp_path / 'web.crt'),
            'state_path': str(tmp_path / 'web.crt.adcs.json')}
    args.update(kw)
    return args


def run_process(tmp_path, args, packages=PROTOCOL_PACKAGES):
    """The module as its own process; returns (result, the imported top-level packages among ``packages``, connect
    attempts)."""
    args_file, report = tmp_path / 'args.json', tmp_path / 'report.json'
    args_file.write_text(json.dumps({'ANSIBLE_MODULE_ARGS': dict(args, _ansible_remote_tmp=str(tmp_path),
                                                                 _ansible_tmpdir=str(tmp_path))}))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    proc = subprocess.run([sys.executable, '-c', _GUARD, str(report), wcce_request.__file__, str(args_file)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, timeout=120, check=False)
    out = proc.stdout.decode('utf-8', 'replace')
    result = json.loads(out[out.index('{'):])
    seen = json.loads(report.read_text())
    return result, [m for m in seen['modules'] if m in packages], seen['connects']


def enroll_first(tmp_path):
    exit_ = run_module(wcce_request.main, module_args(tmp_path))
    assert not exit_.failed and exit_.result['status'] == 'issued', exit_.result


def test_noop_process_imports_no_protocol_library_and_opens_no_socket(tmp_path, fake_ca):
    enroll_first(tmp_path)
    result, imported, connects = run_process(tmp_path, module_args(tmp_path))
    assert result['action'] == 'none' and result['changed'] is False and result['status'] == 'unchanged', result
    assert imported == [] and connects == []


def test_noop_with_a_directory_takes_the_renewal_period_from_the_state(tmp_path, fake_ca):
    enroll_first(tmp_path)
    state_path = tmp_path / 'web.crt.adcs.json'
    state = json.loads(state_path.read_text())
    state['renewal'] = {'days': 42.0, 'source': 'template', 'template': 'WebServer'}
    state_path.write_text(json.dumps(state))
    directory = {'domain': 'lab.adcs.test', 'domain_controller': '127.0.0.1'}
    result, imported, connects = run_process(tmp_path, module_args(tmp_path, **directory))
    assert result['action'] == 'none' and result['renew_before'] == 42.0, result
    assert result['renew_before_source'] == 'template'
    assert imported == [] and connects == []
    # Without the period in the state, the run must ask Active Directory: the guard sees it (the control).
    del state['renewal']
    state_path.write_text(json.dumps(state))
    result, imported, connects = run_process(tmp_path, module_args(tmp_path, **directory))
    assert 'ldap3' in imported and connects, (result, imported, connects)


def test_a_run_with_work_imports_the_stack_and_contacts_the_ca(tmp_path, fake_ca):
    # nothing on disk: the module must plan an enrollment and reach for the CA (refused by the guard)
    result, imported, connects = run_process(tmp_path, module_args(tmp_path, ca_host='127.0.0.1'))
    assert result.get('failed') and 'refuses every connection' in result['msg'], result
    assert 'impacket' in imported and connects, (result, imported, connects)
    assert not os.path.exists(str(tmp_path / 'web.key'))   # a failed run leaves no key behind


def test_certificate_role_noop_process_imports_no_protocol_library(tmp_path, fake_ca):
    """The certificate role's one call (certificates) on a host where every certificate fits."""
    conn = dict((k, v) for k, v in module_args(tmp_path).items()
                if k in ('ca_host', 'ca_name', 'username', 'password', 'ca_fingerprint'))
    args = dict(conn, certificates=[{'name': 'web', 'common_name': 'web.lab.adcs.test', 'run_before': 'exit 1'},
                                    {'name': 'api', 'common_name': 'api.lab.adcs.test'}],
                certificate_defaults={'directory': str(tmp_path)})
    exit_ = run_module(wcce_request.main, dict(args, run_before_results=[]))
    assert not exit_.failed and exit_.result['planned'] is False, exit_.result
    result, imported, connects = run_process(tmp_path, args)
    assert [c['status'] for c in result['certificate_results']] == ['unchanged', 'unchanged'], result
    assert result['followups'] == {} and result['planned'] is False   # planned, nothing to run: one call
    assert imported == [] and connects == []


STACK = PROTOCOL_PACKAGES + ('cryptography',)


def state_of(tmp_path, name='web.crt.adcs.json'):
    return json.loads((tmp_path / name).read_text())


def without_records(tmp_path, names=('web.crt.adcs.json',)):
    for name in names:
        state = state_of(tmp_path, name)
        state.pop('fits', None)
        (tmp_path / name).write_text(json.dumps(state))


def test_a_run_after_a_fitting_run_is_answered_by_its_record_without_cryptography(tmp_path, fake_ca):
    enroll_first(tmp_path)
    recorded = state_of(tmp_path)['fits']['result']   # at issuance, as the next run will find it
    answered, imported, connects = run_process(tmp_path, module_args(tmp_path), STACK)
    assert imported == [] and connects == [], imported
    without_records(tmp_path)   # the control: the planner, cryptography and all
    planned, imported, _connects = run_process(tmp_path, module_args(tmp_path), STACK)
    assert imported == ['cryptography'], imported
    assert answered == planned and answered['status'] == 'unchanged' and answered['changed'] is False, answered
    assert state_of(tmp_path)['fits']['result'] == recorded   # the planner's own no-op records the same


def test_the_planner_decides_again_when_options_files_or_time_moved(tmp_path, fake_ca):
    enroll_first(tmp_path)
    result, imported, _c = run_process(tmp_path, module_args(tmp_path, renew_before=10, mode='0644'), STACK)
    assert imported == ['cryptography'] and result['renew_before'] == 10.0, result   # another option
    result, imported, _c = run_process(tmp_path, module_args(tmp_path, renew_before=10, mode='0644'), STACK)
    assert imported == [] and result['renew_before'] == 10.0   # recorded under the new options
    os.chmod(str(tmp_path / 'web.crt'), 0o600)   # a file changed: its mode is put back, the change reported
    result, imported, _c = run_process(tmp_path, module_args(tmp_path, renew_before=10, mode='0644'), STACK)
    assert imported == ['cryptography'] and result['changed'] is True, result
    assert os.stat(str(tmp_path / 'web.crt')).st_mode & 0o777 == 0o644
    state = state_of(tmp_path)
    state['fits']['until'] = state['fits']['since']   # the renewal window opened: never answered from the record
    (tmp_path / 'web.crt.adcs.json').write_text(json.dumps(state))
    result, imported, _c = run_process(tmp_path, module_args(tmp_path, renew_before=10, mode='0644'), STACK)
    assert imported == ['cryptography'] and result['action'] == 'none', result


def test_check_mode_is_answered_by_the_record_and_writes_nothing(tmp_path, fake_ca):
    enroll_first(tmp_path)
    before = (tmp_path / 'web.crt.adcs.json').read_bytes()
    result, imported, _c = run_process(tmp_path, dict(module_args(tmp_path), _ansible_check_mode=True), STACK)
    assert imported == [] and result['action'] == 'none' and result['changed'] is False, result
    assert (tmp_path / 'web.crt.adcs.json').read_bytes() == before


def test_certificate_role_run_is_answered_by_the_records(tmp_path, fake_ca):
    conn = dict((k, v) for k, v in module_args(tmp_path).items()
                if k in ('ca_host', 'ca_name', 'username', 'password', 'ca_fingerprint'))
    args = dict(conn, certificates=[{'name': 'web', 'common_name': 'web.lab.adcs.test'},
                                    {'name': 'api', 'common_name': 'api.lab.adcs.test', 'install_ca_trust': True}],
                certificate_defaults={'directory': str(tmp_path)})
    exit_ = run_module(wcce_request.main, args)
    assert not exit_.failed and [c['status'] for c in exit_.result['certificate_results']] == ['issued', 'issued']
    answered, imported, connects = run_process(tmp_path, args, STACK)
    assert imported == [] and connects == [], imported
    assert [c['status'] for c in answered['certificate_results']] == ['unchanged', 'unchanged'], answered
    assert answered['ansible_facts'] == {'certificate_results': answered['certificate_results']}   # the role's fact
    assert [t['name'] for t in answered['followups']['trust']] == ['api']   # follow-ups as the planner gives them
    states = [os.path.join('certs', name + '.crt.adcs.json') for name in ('web', 'api')]
    without_records(tmp_path, states)
    planned, imported, _c = run_process(tmp_path, args, STACK)
    assert imported == ['cryptography'] and planned == answered, (planned, answered)


def test_a_certificate_of_another_owner_keeps_a_state_file_of_the_effective_user(tmp_path, fake_ca):
    """The state file stays the module's own (like the refusal record), whatever owner/group the outputs get: a
    state file chowned to the outputs' owner would be refused on the next run (someone else could have written it),
    reported changed on every run and never answered by its record."""
    args = module_args(tmp_path, owner='nobody', group='nogroup', mode='0644')
    exit_ = run_module(wcce_request.main, args)
    assert not exit_.failed and exit_.result['status'] == 'issued', exit_.result
    assert os.stat(str(tmp_path / 'web.crt')).st_uid == 65534
    assert os.stat(str(tmp_path / 'web.crt.adcs.json')).st_uid == os.geteuid()
    result, imported, _c = run_process(tmp_path, args, STACK)
    assert imported == [] and result['changed'] is False and not result.get('warnings'), result
