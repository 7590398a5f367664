# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""_role_entries: the certificate role's entries as wcce_request requests, and their results as the role's
certificate_results and follow-ups (no files, no network: the module-level tests in test_wcce_request.py enroll)."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible_collections.adcs.enrollment.plugins.module_utils import _role_entries
from ansible_collections.adcs.enrollment.plugins.module_utils._argspec import role_defaults_argument_spec
from ansible_collections.adcs.enrollment.plugins.module_utils._errors import AdcsError, InvalidInput

DEFAULTS = dict((k, v.get('default')) for k, v in role_defaults_argument_spec().items())
BASE = {'force': False, 'backup': False, 'format': 'pem', 'renewal_request': True}


def entry(**kw):
    out = {'name': 'web'}
    out.update(kw)
    return out


def test_default_layout_and_overrides():
    files = _role_entries.paths(entry(), dict(DEFAULTS, directory='/srv/pki'))
    assert files == {'private_key': '/srv/pki/private/web.key', 'certificate': '/srv/pki/certs/web.crt',
                     'chain': '/srv/pki/certs/web-chain.crt', 'fullchain': '/srv/pki/certs/web-fullchain.crt',
                     'pkcs12': None, 'crl': None, 'state': '/srv/pki/certs/web.crt.adcs.json'}
    files = _role_entries.paths(entry(directory='/d', certificate_path='/c/x.pem', key_path='/k/x.key', chain=False,
                                      fullchain_path='/c/full.pem', state_path='/s.json'), DEFAULTS)
    assert (files['certificate'], files['private_key'], files['chain'], files['fullchain'], files['state']) == \
        ('/c/x.pem', '/k/x.key', None, '/c/full.pem', '/s.json')
    assert _role_entries.paths(entry(), dict(DEFAULTS, fullchain=False))['fullchain'] is None


def test_request_options_from_entry_and_defaults():
    req = _role_entries.request(entry(dns=['a', 'b'], ip=['192.0.2.1'], upn=['u@x'], email=['e@x'],
                                      subject_alt_name=['URI:https://x'], reuse_key=False, key_mode='0640',
                                      renew_before=''), dict(DEFAULTS, directory='/p', owner='', mode=0o640))
    assert req['subject_alt_name'] == ['URI:https://x', 'DNS:a', 'DNS:b', 'IP:192.0.2.1', 'UPN:u@x', 'email:e@x']
    assert req['regenerate_key'] is True and req['private_key_mode'] == '0640' and req['mode'] == 0o640
    assert req['key_type'] == 'rsa' and req['key_size'] == 2048 and req['curve'] is None
    assert req['renew_before'] is None and req['owner'] is None and req['template'] == 'WebServer'
    ec = _role_entries.request(entry(key_type='ecdsa', renew_before=7.5), DEFAULTS)
    assert ec['key_size'] is None and ec['curve'] == 'secp256r1' and ec['renew_before'] == 7.5
    assert ec['regenerate_key'] is False and ec['subject_alt_name'] is None


def test_connection_overrides():
    assert _role_entries.connection(entry(ca_host='ca2', domain='', connection={'timeout': 5, 'username': None})) == \
        {'ca_host': 'ca2', 'timeout': 5}
    assert _role_entries.connection(entry()) == {}


def test_invalid_entry_names_the_certificate():
    item = _role_entries.Entry(0, entry(key_size=100), DEFAULTS, BASE)
    assert isinstance(item.error, InvalidInput) and item.error.to_message().startswith('certificate web: ')
    assert _role_entries.Entry(0, entry(common_name='ok'), DEFAULTS, BASE).error is None


def test_run_groups_by_connection_and_keeps_the_order():
    calls = []

    def results_for(group, check_mode):
        assert check_mode is False
        calls.append((group.get('ca_host'), [r['certificate_path'] for r in group['requests']]))
        if group.get('ca_host') == 'down':
            raise AdcsError('The CA down does not answer')
        return [{'status': 'unchanged', 'changed': False, 'action': 'none'} for _r in group['requests']]

    params = dict(BASE, certificates=[entry(name='a'), entry(name='b', ca_host='down'), entry(name='c'),
                                      entry(name='d', key_size=1)],
                  certificate_defaults={'directory': '/p'}, ca_host='ca1')
    out = _role_entries.run(params, False, results_for)
    assert calls == [('ca1', ['/p/certs/a.crt', '/p/certs/c.crt']), ('down', ['/p/certs/b.crt'])]
    assert [c['status'] for c in out['certificate_results']] == ['unchanged', 'failed', 'unchanged', 'failed']
    assert out['certificate_results'][1]['message'] == 'The CA down does not answer'
    assert out['certificate_failures'] == [out['certificate_results'][1]['summary'],
                                           out['certificate_results'][3]['summary']]
    assert out['followups'] == {} and out['planned'] is False
    with pytest.raises(InvalidInput):
        _role_entries.run(dict(params, certificates=[entry(), entry()]), False, results_for)


def test_certificate_result_fields_and_summary():
    item = _role_entries.Entry(0, entry(crl_path='/p/web.crl'), dict(DEFAULTS, directory='/p'), BASE)
    facts = {'subject': 'CN=web', 'issuer': 'CN=CA', 'not_after': '2030-01-01T00:00:00Z', 'serial_number': '0A'}
    r = _role_entries.certificate_result(item, {'status': 'renewed', 'reason': 'inside the renewal window',
                                                'reason_code': 'renew_window', 'request_id': 7, 'certificate': facts})
    assert r['summary'] == 'web: renewed: CN=web, issued by CN=CA, valid until 2030-01-01T00:00:00Z ' \
                           '(inside the renewal window)'
    assert (r['changed'], r['request_id'], r['serial_number'], r['message'], r['paths']['crl']) == \
        (True, 7, '0A', None, '/p/web.crl')
    pending = _role_entries.certificate_result(item, {'status': 'pending', 'changed': False, 'msg': 'Request 9 waits'})
    assert pending['changed'] is False and pending['summary'] == 'web: pending: Request 9 waits'
    failed = _role_entries.certificate_result(item, {'failed': True, 'msg': 'no', 'error': {'request_id': 12}})
    assert (failed['status'], failed['request_id'], failed['message']) == ('failed', 12, 'no')
    assert _role_entries.certificate_result(item, {'status': 'would_enroll'})['summary'] == \
        'web: would enroll: unknown error'
