# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The no-op record (_fits): what its digests cover (options without secrets, files byte for byte with their
attributes), when a record answers (version, options, time window, journal, files) and when a run is never
answered from records."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import json
import os

from ansible_collections.adcs.enrollment.plugins.module_utils import _fits
from ansible_collections.adcs.enrollment.plugins.module_utils import _journal
from ansible_collections.adcs.enrollment.plugins.module_utils import _request_spec

UNTIL = datetime.datetime(2030, 1, 1, tzinfo=datetime.timezone.utc)
SINCE = 1800000000.0
RESULT = {'action': 'none', 'changed': False, 'status': 'unchanged', 'reason': 'fits'}


def files(tmp_path):
    key, cert = tmp_path / 'web.key', tmp_path / 'web.crt'
    key.write_bytes(b'KEY')
    cert.write_bytes(b'CERT')
    os.chmod(str(key), 0o600)
    return {'private_key_path': str(key), 'certificate_path': str(cert), 'chain_path': str(tmp_path / 'chain.crt')}


def made(tmp_path, options='o', result=None, **spec):
    return _fits.record(options, dict(files(tmp_path), **spec), dict(result or RESULT), UNTIL, now=SINCE)


def test_secret_names_are_the_no_log_options_at_any_depth():
    names = _fits.secret_names(_request_spec.argument_spec())
    assert {'password', 'nt_hash', 'private_key_passphrase', 'pkcs12_passphrase'} <= names
    assert 'private_key_path' not in names and 'key_mode' not in names   # no_log=False is not a secret


def test_options_digest_keeps_no_secret_but_sees_every_other_option(tmp_path, monkeypatch):
    secrets = {'password'}
    base = {'password': 'S3cret', 'certificates': [{'name': 'web', 'connection': {'password': 'Other1'}}]}
    digest = _fits.options_digest(base, secrets)
    other_password = {'password': 'changed', 'certificates': [{'name': 'web', 'connection': {'password': 'x'}}]}
    assert _fits.options_digest(other_password, secrets) == digest   # only whether it is set
    assert _fits.options_digest(dict(base, password=None), secrets) != digest
    assert _fits.options_digest(dict(base, certificates=[{'name': 'api'}]), secrets) != digest
    monkeypatch.chdir(str(tmp_path))   # relative paths depend on it
    assert _fits.options_digest(base, secrets) != digest


def test_files_digest_covers_content_attributes_and_absence(tmp_path):
    paths = list(files(tmp_path).values())
    digest = _fits.files_digest(paths)
    assert digest == _fits.files_digest(paths)
    (tmp_path / 'chain.crt').write_bytes(b'')   # absent and empty differ
    assert _fits.files_digest(paths) != digest
    os.unlink(str(tmp_path / 'chain.crt'))
    assert _fits.files_digest(paths) == digest
    os.chmod(paths[0], 0o640)
    changed = _fits.files_digest(paths)
    os.chmod(paths[0], 0o600)   # put back: the ctime still tells (chattr, relabel, chown alike)
    assert len(set([digest, changed, _fits.files_digest(paths)])) == 3
    digest = _fits.files_digest(paths)
    saved = os.stat(paths[1])
    with open(paths[1], 'wb') as handle:
        handle.write(b'CERU')   # same size, other content, the times set back
    os.utime(paths[1], ns=(saved.st_atime_ns, saved.st_mtime_ns))
    assert _fits.files_digest(paths) != digest


def test_files_digest_refuses_a_symbolic_link(tmp_path):
    paths = list(files(tmp_path).values())
    os.unlink(paths[1])
    os.symlink(paths[0], paths[1])
    assert _fits.files_digest(paths) is None


def test_a_record_holds_the_result_until_the_renewal_window(tmp_path):
    record = made(tmp_path)
    assert record['files'] == [str(tmp_path / 'web.key'), str(tmp_path / 'web.crt'), str(tmp_path / 'chain.crt')]
    assert record['until'] == UNTIL.timestamp() and record['since'] == SINCE
    assert 'KEY' not in json.dumps(record)
    assert _fits.held(record, 'o', now=SINCE + 1) == RESULT
    assert _fits.held(record, 'o', now=SINCE - 1) is None              # the clock went back
    assert _fits.held(record, 'o', now=UNTIL.timestamp()) is None      # the renewal window opened
    assert _fits.held(record, 'p', now=SINCE + 1) is None              # other options
    assert _fits.held(dict(record, version=2), 'o', now=SINCE + 1) is None
    assert _fits.held(dict(record, files=['relative.crt']), 'o', now=SINCE + 1) is None
    assert _fits.held(dict(record, since='0'), 'o', now=SINCE + 1) is None
    assert _fits.held(dict(record, until=float('inf')), 'o', now=SINCE + 1) is None
    assert _fits.held(dict(record, until=float('nan')), 'o', now=SINCE + 1) is None
    assert _fits.held(None, 'o') is None and _fits.held([], 'o') is None


def test_an_owner_or_group_name_that_maps_to_another_id_is_a_change(tmp_path):
    record = made(tmp_path, owner='root', group='0')
    assert record['ids'] == ['root', 0, '0', 0]
    assert _fits.held(record, 'o', now=SINCE + 1) == RESULT
    assert _fits.held(dict(record, ids=['root', 1, '0', 0]), 'o', now=SINCE + 1) is None
    assert _fits.held(dict(record, ids=None), 'o', now=SINCE + 1) is None
    assert made(tmp_path, group='no-such-group-adcs') is None   # an unknown name: the planner reports it
    assert _fits.owner_ids('no-such-user-adcs', None) is None


def test_no_record_when_the_files_moved_while_the_result_was_planned(tmp_path):
    paths = list(files(tmp_path).values())
    before = _fits.files_digest(paths)
    spec = dict(files(tmp_path))   # written again: other ctime
    assert _fits.record('o', spec, dict(RESULT), UNTIL, now=SINCE, files_before=before) is None
    assert _fits.record('o', spec, dict(RESULT), UNTIL, now=SINCE,
                        files_before=_fits.files_digest(paths)) is not None


def test_a_record_does_not_hold_once_a_file_changed_or_a_switch_was_interrupted(tmp_path):
    record = made(tmp_path)
    (tmp_path / 'chain.crt').write_bytes(b'CHAIN')
    assert _fits.held(record, 'o', now=SINCE + 1) is None
    os.unlink(str(tmp_path / 'chain.crt'))
    assert _fits.held(record, 'o', now=SINCE + 1) == RESULT
    journal = _journal._journal_path(str(tmp_path / 'web.crt'))
    with open(journal, 'w') as handle:
        handle.write('{}')
    assert _fits.held(record, 'o', now=SINCE + 1) is None


def test_no_record_for_a_passphrase_a_warning_a_change_or_a_failure(tmp_path):
    assert made(tmp_path, private_key_passphrase='pw') is None
    assert made(tmp_path, pkcs12_passphrase='pw') is None
    assert made(tmp_path, result=dict(RESULT, warnings=['w'])) is None
    assert made(tmp_path, result=dict(RESULT, changed=True)) is None
    assert made(tmp_path, result=dict(RESULT, failed=True)) is None


def test_a_request_digest_is_its_entry_and_the_other_options(tmp_path):
    params = {'domain': 'lab.adcs.test', 'password': 'pw', 'run_before_results': None,
              'requests': [{'certificate_path': '/a'}, {'certificate_path': '/b'}]}
    first = _fits.request_digest(params, params['requests'][0], {'password'})
    assert first != _fits.request_digest(params, params['requests'][1], {'password'})
    other_entries = dict(params, requests=[{'certificate_path': '/a'}, {'certificate_path': '/c'}],
                         run_before_results=[])
    assert _fits.request_digest(other_entries, other_entries['requests'][0], {'password'}) == first
    assert _fits.request_digest(dict(params, domain='other'), params['requests'][0], {'password'}) != first


def test_answer_needs_every_request_held_from_a_trusted_state_file(tmp_path):
    record = made(tmp_path)
    state = tmp_path / 'web.crt.adcs.json'
    state.write_text(json.dumps({'format': 'adcs.enrollment.state', 'version': 1, 'status': 'issued',
                                 'fits': record}))
    os.chmod(str(state), 0o644)
    assert _fits.answer([(str(state), 'o')], now=SINCE + 1) == [RESULT]
    assert _fits.answer([(str(state), 'p')], now=SINCE + 1) is None
    assert _fits.answer([(str(state), 'o'), (None, 'o')], now=SINCE + 1) is None
    assert _fits.answer([(str(state), 'o'), (str(tmp_path / 'missing.json'), 'o')], now=SINCE + 1) is None
    assert _fits.answer([]) is None
    os.chmod(str(state), 0o666)   # someone else could have written it
    assert _fits.answer([(str(state), 'o')], now=SINCE + 1) is None


def test_any_failure_while_answering_leaves_the_run_to_the_planner(tmp_path):
    state = tmp_path / 'web.crt.adcs.json'
    nested = '[' * 100000 + ']' * 100000   # the JSON decoder's recursion limit
    state.write_text('{"format": "adcs.enrollment.state", "version": 1, "fits": %s}' % nested)
    assert _fits.answer_run({'state_path': str(state)}, set(), False) is None
    state.write_text(json.dumps({'format': 'adcs.enrollment.state', 'version': 99}))
    assert _fits.answer_run({'state_path': str(state)}, set(), False) is None


def test_a_run_in_pipe_mode_or_after_run_before_commands_is_never_answered(tmp_path):
    params = {'state_path': str(tmp_path / 'web.crt.adcs.json')}
    for extra in ({'pipe': True}, {'state_content': '{}'}, {'run_before_results': []}):
        assert _fits.answer_run(dict(params, **extra), set(), False) is None
