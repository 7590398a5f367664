# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The state of a certificate (_state): the status of a result, the versioned state file (read, refused, upgraded,
recorded) and the keeper that resumes pending requests and records states around a module run."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import json
import os
import stat

import pytest

from ansible_collections.adcs.enrollment.plugins.module_utils import _state
from ansible_collections.adcs.enrollment.plugins.module_utils._errors import FileOutputError

NOW = datetime.datetime(2026, 12, 1, 10, 0, tzinfo=datetime.timezone.utc)
FACTS = {'subject': 'CN=web01', 'issuer': 'CN=LAB-CA', 'serial_number': '1A', 'not_before': '2026-12-01T00:00:00Z',
         'not_after': '2027-12-01T00:00:00Z', 'fingerprint_sha256': 'AA:BB', 'is_ca': False}
WANTED = {'template': 'WebServer', 'subject': 'CN=web01', 'subject_alt_name': ['DNS:web01'], 'key_type': 'rsa',
          'key_size': 2048, 'curve': None}


def spec(tmp_path, index=0, **kw):
    base = {'index': index, 'template': 'WebServer', 'wanted_subject': {'CN': 'web01'}, 'wanted_sans': None,
            'subject_alt_name': None, 'key_type': 'rsa', 'key_size': 2048, 'curve': None,
            'certificate_path': str(tmp_path / 'c.pem'), 'state_path': str(tmp_path / 'c.pem.adcs.json')}
    base.update(kw)
    return base


class Writer(object):
    def __init__(self, fail=False):
        self.specs = []
        self.fail = fail

    def write(self, specs, validator=None):
        if self.fail:
            raise FileOutputError('disk full')
        for fs in specs:
            self.specs.append(fs)
            with open(fs.path, 'wb') as handle:
                handle.write(fs.content)
            os.chmod(fs.path, fs.mode)
        return {'changed': True}


def write_state(path, data, mode=0o644):
    with open(path, 'w') as handle:
        json.dump(data, handle)
    os.chmod(path, mode)


# ---- status -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('result,check_mode,resumed,expected', [
    ({'action': 'none'}, False, False, 'unchanged'),
    ({'action': 'refresh', 'changed': True}, False, False, 'unchanged'),
    ({'action': 'enroll', 'disposition': 'issued', 'reason_code': 'no_certificate'}, False, False, 'issued'),
    ({'action': 'retrieve', 'disposition': 'issued', 'reason_code': 'no_certificate'}, False, True, 'issued'),
    ({'action': 'enroll', 'disposition': 'issued', 'reason_code': 'renew_window', 'renewal': True}, False, False,
     'renewed'),
    ({'action': 'enroll', 'disposition': 'issued', 'reason_code': 'template_changed'}, False, False, 'renewed'),
    ({'action': 'enroll', 'disposition': 'pending'}, False, False, 'pending'),
    ({'action': 'enroll'}, True, False, 'would_enroll'),
    ({'action': 'retrieve'}, True, True, 'pending'),
    ({'action': 'none'}, True, True, 'unchanged'),
    ({'failed': True, 'disposition': 'denied'}, False, False, 'denied'),
    ({'failed': True, 'disposition': 'error', 'error': {'hresult': '0x80094012'}}, False, False, 'denied'),
    ({'failed': True, 'disposition': 'error', 'error': {'hresult': '0x800706BA'}}, False, False, 'failed'),
    ({'failed': True, 'disposition': 'error', 'error': {'hresult': 'junk'}}, False, False, 'failed'),
])
def test_status(result, check_mode, resumed, expected):
    assert _state.status(result, check_mode, resumed) == expected
    assert expected in _state.STATUSES


# ---- reading --------------------------------------------------------------------------------------------------------
def test_missing_and_empty_state_is_none(tmp_path):
    assert _state.State.read(str(tmp_path / 'absent')).data is None
    assert _state.State.from_content(None).data is None
    assert _state.State.from_content('  \n').data is None


def test_corrupt_state_is_reported_and_ignored(tmp_path):
    path = tmp_path / 's.json'
    path.write_text('{not json')
    os.chmod(str(path), 0o644)
    state = _state.State.read(str(path))
    assert state.data is None
    assert len(state.warnings) == 1 and 'is corrupt' in state.warnings[0] and str(path) in state.warnings[0]
    assert 'not a JSON object' in _state.State.from_content('[1, 2]').warnings[0]
    assert 'not UTF-8' in _state.State.from_content(b'\xff\xfe{').warnings[0]


def test_state_writable_by_others_is_not_trusted(tmp_path):
    path = str(tmp_path / 's.json')
    write_state(path, {'format': _state.FORMAT, 'version': 1, 'status': 'pending', 'request_id': 7,
                       'requested': WANTED}, mode=0o666)
    state = _state.State.read(path)
    assert state.data is None
    assert 'is ignored' in state.warnings[0] and 'writable by other users' in state.warnings[0]


def test_newer_version_is_refused_with_a_clear_message():
    content = json.dumps({'format': _state.FORMAT, 'version': 2, 'status': 'issued'})
    with pytest.raises(_state.StateFileError) as err:
        _state.State.from_content(content, origin='/x/c.pem.adcs.json')
    text = err.value.to_message()
    assert 'written by a newer version of adcs.enrollment (state version 2; this one reads version 1)' in text
    assert '/x/c.pem.adcs.json' in text and 'Upgrade the collection' in text


@pytest.mark.parametrize('data', [{'format': _state.FORMAT, 'version': 0}, {'format': _state.FORMAT, 'version': 'x'},
                                  {'format': _state.FORMAT, 'version': True}, {'format': 'other', 'version': 1},
                                  {'version': 1}])
def test_invalid_or_foreign_versions_are_refused(data):
    with pytest.raises(_state.StateFileError):
        _state.State.from_content(json.dumps(data))


def test_unversioned_role_state_is_upgraded():
    legacy = {'name': 'web', 'status': 'issued', 'spec': {'template': 'WebServer'}, 'enroll_on': 'host',
              'subject': 'CN=web01', 'not_after': '2027-01-01T00:00:00Z', 'serial_number': '1A'}
    data = _state.State.from_content(json.dumps(legacy)).data
    assert data['version'] == 1 and data['status'] == 'issued' and data['template'] == 'WebServer'
    assert data['certificate']['not_after'] == '2027-01-01T00:00:00Z'
    # a pending request of the old role is not resumed (what it asked for is not comparable)
    pending = dict(legacy, status='pending', request_id=9)
    assert _state.State.from_content(json.dumps(pending)).pending(WANTED) is None
    staged = dict(pending, new_key=True)
    assert _state.State.from_content(json.dumps(staged)).data.get('status') is None


# ---- what a state tells -----------------------------------------------------------------------------------------------
def test_pending_only_for_the_same_request():
    state = _state.State({'format': _state.FORMAT, 'version': 1, 'status': 'pending', 'request_id': 42,
                          'requested': WANTED, 'pending_csr': 'CSR', 'new_key': True})
    assert state.pending(WANTED) == (42, 'CSR', True)
    assert state.pending(dict(WANTED, subject_alt_name=['DNS:other'])) is None
    assert state.pending(dict(WANTED, template='Other')) is None
    assert _state.State(dict(state.data, status='denied')).pending(WANTED) is None
    assert _state.State(dict(state.data, request_id='42')).pending(WANTED) is None


def test_renewal_days_only_for_the_template_learned():
    state = _state.State({'renewal': {'days': 1.5, 'source': 'template', 'template': 'ShortLived'}})
    assert state.renewal_days('shortlived') == 1.5
    assert state.renewal_days('WebServer') is None
    assert _state.State({'renewal': {'days': 1.5, 'source': 'option', 'template': 'X'}}).renewal_days('X') is None
    assert _state.State({'renewal': {'days': -1, 'source': 'template', 'template': 'X'}}).renewal_days('X') is None
    assert _state.State({'renewal': {'days': True, 'source': 'template', 'template': 'X'}}).renewal_days('X') is None
    assert _state.State().renewal_days('X') is None


# ---- recording ------------------------------------------------------------------------------------------------------------
def issued(**kw):
    out = {'status': 'issued', 'template': 'WebServer', 'request_id': 42, 'certificate': FACTS,
           'ca': {'name': 'LAB-CA', 'host': 'ca', 'address': '1.2.3.4', 'source': 'options'}}
    out.update(kw)
    return out


def test_updated_after_issue_pending_denied():
    data = _state.State().updated(issued(), WANTED, template_days=2, now=NOW)
    assert data == {'format': _state.FORMAT, 'version': 1, 'status': 'issued', 'template': 'WebServer',
                    'requested': WANTED, 'request_id': 42, 'ca': {'name': 'LAB-CA', 'host': 'ca'},
                    'certificate': dict((k, FACTS[k]) for k in _state.CERTIFICATE_FACTS),
                    'since': '2026-12-01T10:00:00Z',
                    'renewal': {'days': 2.0, 'source': 'template', 'template': 'WebServer'}}
    pending = _state.State().updated({'status': 'pending', 'template': 'WebServer', 'request_id': 43}, WANTED,
                                     csr='CSR', new_key=True, now=NOW)
    assert (pending['status'], pending['request_id'], pending['pending_csr'], pending['new_key']) == \
        ('pending', 43, 'CSR', True)
    later = NOW + datetime.timedelta(days=1)
    assert _state.State(pending).updated({'status': 'pending', 'template': 'WebServer', 'request_id': 43}, WANTED,
                                         csr='CSR', new_key=True, now=later) is None, 'still pending: no write'
    denied = _state.State(pending).updated({'status': 'denied', 'template': 'WebServer', 'msg': 'no',
                                            'error': {'request_id': 43}}, WANTED, now=NOW)
    assert (denied['status'], denied['request_id'], denied['message']) == ('denied', 43, 'no')
    assert 'pending_csr' not in denied


def test_updated_leaves_the_state_alone():
    old = _state.State().updated(issued(), WANTED, now=NOW)
    state = _state.State(old)
    unchanged = {'status': 'unchanged', 'template': 'WebServer', 'certificate': FACTS}
    assert state.updated(unchanged, WANTED, now=NOW + datetime.timedelta(days=3)) is None
    assert state.updated(dict(issued(), status='failed'), WANTED) is None
    assert state.updated(dict(issued(), status='would_enroll'), WANTED) is None
    assert state.updated(issued(), WANTED, check_mode=True) is None
    # an unchanged run records what it learned, and a certificate in place without a state
    learned = state.updated(dict(unchanged, renew_before=1.0, renew_before_source='template'), WANTED,
                            template_days=1.0)
    assert learned['renewal']['days'] == 1.0 and learned['request_id'] == 42 and learned['since'] == old['since']
    fresh = _state.State().updated(unchanged, WANTED)
    assert fresh['status'] == 'issued' and fresh['certificate']['not_after'] == FACTS['not_after']
    assert 'since' not in fresh and 'request_id' not in fresh


def test_serialize_and_state_spec(tmp_path):
    data = {'format': _state.FORMAT, 'version': 1, 'status': 'issued'}
    fs = _state.state_spec(str(tmp_path / 's.json'), data)
    assert fs.mode == 0o644 and not fs.secret
    assert json.loads(fs.content.decode()) == data and fs.content.endswith(b'\n')


# ---- the keeper --------------------------------------------------------------------------------------------------
def test_keeper_resumes_the_pending_request_and_records(tmp_path):
    s = spec(tmp_path)
    wanted = _state.wanted(s)
    assert wanted['subject'] == 'CN=web01' and wanted['key_type'] == 'rsa' and 'request_id' not in wanted
    write_state(s['state_path'], {'format': _state.FORMAT, 'version': 1, 'status': 'pending', 'request_id': 42,
                                  'requested': wanted, 'template': 'WebServer'})
    keeper = _state.Keeper([s], now=NOW)
    assert s['request_id'] == 42
    result = {'action': 'retrieve', 'disposition': 'issued', 'reason_code': 'no_certificate', 'template': 'WebServer',
              'request_id': 42, 'certificate': FACTS, 'changed': True}
    writer = Writer()
    keeper.record([s], [result], writer)
    assert result['status'] == 'issued'
    data = json.load(open(s['state_path']))
    assert data['status'] == 'issued' and data['certificate']['fingerprint_sha256'] == 'AA:BB'
    assert stat.S_IMODE(os.stat(s['state_path']).st_mode) == 0o644


def test_keeper_pending_message_and_no_write_when_still_pending(tmp_path):
    s = spec(tmp_path)
    keeper = _state.Keeper([s], now=NOW)
    result = {'action': 'enroll', 'disposition': 'pending', 'template': 'WebServer', 'request_id': 42,
              'changed': True, 'msg': 'Request 42 is pending'}
    keeper.record([s], [result], Writer())
    assert 'waits for a certificate manager' in result['msg']
    s2 = spec(tmp_path)
    keeper = _state.Keeper([s2], now=NOW)
    assert s2['request_id'] == 42
    again = {'action': 'retrieve', 'disposition': 'pending', 'template': 'WebServer', 'request_id': 42,
             'changed': False}
    writer = Writer()
    keeper.record([s2], [again], writer)
    assert again['status'] == 'pending' and not writer.specs and not again['changed']


def test_keeper_check_mode_reports_pending_and_writes_nothing(tmp_path):
    s = spec(tmp_path)
    write_state(s['state_path'], {'format': _state.FORMAT, 'version': 1, 'status': 'pending', 'request_id': 42,
                                  'requested': _state.wanted(s)})
    keeper = _state.Keeper([s], check_mode=True)
    result = {'action': 'retrieve', 'template': 'WebServer', 'changed': True}
    writer = Writer()
    keeper.record([s], [result], writer)
    assert result['status'] == 'pending' and not writer.specs


def test_keeper_without_state_path_only_adds_the_status(tmp_path):
    s = spec(tmp_path, state_path=None)
    keeper = _state.Keeper([s])
    result = {'action': 'none', 'template': 'WebServer'}
    keeper.record([s], [result], Writer(fail=True))
    assert result == {'action': 'none', 'template': 'WebServer', 'status': 'unchanged'}


def test_keeper_state_write_failure_is_a_warning(tmp_path):
    s = spec(tmp_path)
    keeper = _state.Keeper([s])
    result = {'action': 'enroll', 'disposition': 'pending', 'template': 'WebServer', 'request_id': 5}
    keeper.record([s], [result], Writer(fail=True))
    assert result['status'] == 'pending'
    assert 'could not be written' in result['warnings'][0] and 'disk full' in result['warnings'][0]


def test_keeper_reports_ignored_state(tmp_path):
    s = spec(tmp_path)
    with open(s['state_path'], 'w') as handle:
        handle.write('garbage')
    keeper = _state.Keeper([s])
    result = {'action': 'none', 'template': 'WebServer', 'certificate': FACTS}
    keeper.record([s], [result], Writer())
    assert any('is corrupt' in w for w in result['warnings'])
    assert json.load(open(s['state_path']))['status'] == 'issued', 'rewritten'


def test_keeper_pipe_mode_state_content_and_pending_csr(tmp_path):
    s = spec(tmp_path, state_path=None, csr_content='NEW-CSR')
    content = json.dumps({'format': _state.FORMAT, 'version': 1, 'status': 'pending', 'request_id': 42,
                          'requested': _state.wanted(s), 'pending_csr': 'PENDING-CSR', 'new_key': True})
    keeper = _state.Keeper([s], state_content=content, pipe=True, now=NOW)
    assert s['request_id'] == 42 and s['csr_content'] == 'PENDING-CSR'
    result = {'action': 'retrieve', 'disposition': 'issued', 'reason_code': 'renew_window', 'template': 'WebServer',
              'request_id': 42, 'certificate': FACTS}
    keeper.record([s], [result], None)
    assert result['status'] == 'renewed' and result['new_key'] is True
    assert json.loads(result['state_content'])['status'] == 'issued'
    # nothing new: no state content to store
    s = spec(tmp_path, state_path=None, csr_content='CSR')
    keeper = _state.Keeper([s], state_content=result['state_content'], pipe=True)
    unchanged = {'action': 'none', 'template': 'WebServer', 'certificate': FACTS}
    keeper.record([s], [unchanged], None)
    assert unchanged['state_content'] is None and unchanged['new_key'] is False


class Directory(object):
    def __init__(self, days=None):
        self.days = days
        self.asked = []
        self.error = 'x'

    def template_renewal_days(self, template):
        self.asked.append(template)
        return self.days


def test_keeper_directory_knows_the_learned_renewal_period(tmp_path):
    s = spec(tmp_path)
    write_state(s['state_path'], {'format': _state.FORMAT, 'version': 1, 'status': 'issued',
                                  'renewal': {'days': 1.0, 'source': 'template', 'template': 'WebServer'}})
    keeper = _state.Keeper([s])
    directory = Directory(days=9.0)
    known = keeper.directory(directory)
    assert known.template_renewal_days('WebServer') == 1.0 and directory.asked == []
    assert known.template_renewal_days('Other') == 9.0 and directory.asked == ['Other']
    assert known.error == 'x'
    assert keeper.directory(None) is None
    assert _state.Keeper([spec(tmp_path, state_path=None)]).directory(directory) is directory


def test_keeper_learns_the_renewal_period_at_enrollment(tmp_path):
    s = spec(tmp_path)
    keeper = _state.Keeper([s], now=NOW)
    directory = Directory(days=3.0)
    result = dict(issued(), action='enroll', disposition='issued', reason_code='no_certificate')
    del result['status']
    keeper.record([s], [result], Writer(), directory=directory)
    assert json.load(open(s['state_path']))['renewal'] == {'days': 3.0, 'source': 'template',
                                                           'template': 'WebServer'}


def test_state_content_as_data():
    """ansible-core before 2.19 turns JSON text passed through a template into a dict."""
    data = {'format': _state.FORMAT, 'version': 1, 'status': 'issued'}
    assert _state.State.from_content(data).data == data
    with pytest.raises(_state.StateFileError):
        _state.State.from_content(dict(data, version=7))


def test_keeper_keeps_the_no_op_record_without_counting_it_as_a_change(tmp_path):
    """The no-op record (_fits) of a certificate in place is a cache: writing it alone changes nothing, a failure
    leaves the state file alone, and a request that would not be a no-op drops a stale record."""
    s = spec(tmp_path)
    issued = {'format': _state.FORMAT, 'version': 1, 'status': 'issued', 'template': 'WebServer',
              'requested': _state.wanted(s), 'certificate': dict((k, FACTS[k]) for k in _state.CERTIFICATE_FACTS),
              'renewal': {'days': 42.0, 'source': 'template', 'template': 'WebServer'}}
    write_state(s['state_path'], issued)
    calls = []

    def project(spec_, known):
        calls.append((spec_['index'], known))
        return {'version': 1, 'result': {'action': 'none'}}

    result = {'action': 'none', 'template': 'WebServer', 'certificate': FACTS, 'changed': False,
              'renew_before': 42.0, 'renew_before_source': 'template'}
    writer = Writer()
    _state.Keeper([s], now=NOW).record([s], [result], writer, project=project)
    assert calls == [(0, {'webserver': 42.0})]   # this run's renewal period is known to the projection
    data = json.load(open(s['state_path']))
    assert data['fits'] == {'version': 1, 'result': {'action': 'none'}} and len(writer.specs) == 1
    assert result['changed'] is False and result['status'] == 'unchanged'
    failed = {'failed': True, 'msg': 'CA down', 'template': 'WebServer'}
    writer = Writer()
    _state.Keeper([s], now=NOW).record([s], [failed], writer, project=project)
    assert not writer.specs and len(calls) == 1 and json.load(open(s['state_path'])) == data   # left alone
    write_state(s['state_path'], dict(issued, fits={'version': 1}))
    _state.Keeper([s], now=NOW).record([s], [dict(result)], Writer(), project=lambda spec_, known: None)
    assert json.load(open(s['state_path'])) == issued   # would not be a no-op: the stale record goes
    writer = Writer()
    _state.Keeper([s], check_mode=True).record([s], [dict(result)], writer, project=project)
    assert not writer.specs and len(calls) == 1   # check mode records nothing


def test_keeper_leaves_the_state_file_alone_when_the_no_op_record_is_the_same(tmp_path):
    s = spec(tmp_path)
    record = {'version': 1, 'options': 'o', 'digest': 'd', 'since': 1.0, 'until': 2.0, 'result': {'action': 'none'}}
    issued = {'format': _state.FORMAT, 'version': 1, 'status': 'issued', 'template': 'WebServer',
              'requested': _state.wanted(s), 'certificate': dict((k, FACTS[k]) for k in _state.CERTIFICATE_FACTS),
              'fits': record}
    write_state(s['state_path'], issued)
    result = {'action': 'none', 'template': 'WebServer', 'certificate': FACTS, 'changed': False}
    writer = Writer()
    _state.Keeper([s], now=NOW).record([s], [result], writer, project=lambda spec_, known: dict(record, since=9.0))
    assert not writer.specs and json.load(open(s['state_path'])) == issued   # only "since" differs
    other = dict(record, digest='e')
    _state.Keeper([s], now=NOW).record([s], [dict(result)], writer, project=lambda spec_, known: other)
    assert json.load(open(s['state_path']))['fits']['digest'] == 'e'
