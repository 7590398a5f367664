# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""_policy_cache: what discovery learned kept on the host, trusted only when nobody else can have written it."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import stat

import pytest
from ansible_collections.adcs.enrollment.plugins.module_utils import _errors, _policy_cache

IDENT = {'domain': 'lab.adcs.test', 'domain_controller': None, 'username': 'enroller@lab.adcs.test'}
SERVICES = [{'name': 'LAB-CA', 'dns_host_name': 'ca.lab.adcs.test', 'templates': ['WebServer']}]


class Clock(object):
    def __init__(self, now=1000000.0):
        self.now = now

    def __call__(self):
        return self.now


def cache(tmp_path, ttl=3600, clock=None, ident=None, read_only=False):
    return _policy_cache.PolicyCache(str(tmp_path / 'cache'), ident or IDENT, ttl, now=clock or Clock(),
                                     read_only=read_only)


def saved(tmp_path, **kw):
    first = cache(tmp_path, **kw)
    first.put('services', '', SERVICES)
    first.put('template', 'WebServer', {'name': 'WebServer', 'minimum_key_size': 2048})
    first.save()
    assert first.warning is None
    return first


def test_round_trip_private_files_and_no_secret(tmp_path):
    first = saved(tmp_path)
    info = os.lstat(str(tmp_path / 'cache'))
    assert stat.S_ISDIR(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o700
    assert stat.S_IMODE(os.lstat(first.path).st_mode) == 0o600
    assert os.listdir(str(tmp_path / 'cache')) == [first.name]   # no temporary file left
    again = cache(tmp_path)
    assert again.get('services', '') == SERVICES and again.get('template', 'webserver')['minimum_key_size'] == 2048
    assert again.hits == 2 and again.warning is None
    assert again.get('template', 'Other') is None
    params = dict(IDENT, password='S3cret-pw', nt_hash='a' * 32, auth='password', policy_cache=True)
    assert 'S3cret-pw' not in json.dumps(_policy_cache.identity(params)) and 'a' * 32 not in json.dumps(
        _policy_cache.identity(params))


def test_identity_names_the_file(tmp_path):
    saved(tmp_path)
    other = cache(tmp_path, ident=dict(IDENT, username='someone@lab.adcs.test'))
    assert other.get('services', '') is None and other.warning is None
    assert _policy_cache.identity({'domain': 'LAB.adcs.test.', 'username': 'Enroller'})['domain'] == 'lab.adcs.test'


def test_entries_expire_and_future_dates_do_not_count(tmp_path):
    clock = Clock()
    saved(tmp_path, clock=clock)
    assert cache(tmp_path, clock=Clock(clock.now + 3599)).get('services', '') == SERVICES
    assert cache(tmp_path, clock=Clock(clock.now + 3601)).get('services', '') is None
    assert cache(tmp_path, clock=Clock(clock.now - 3600)).get('services', '') is None   # written "in the future"


def test_forget_keeps_only_what_is_read_after(tmp_path):
    first = saved(tmp_path)
    first.forget()
    assert first.get('services', '') is None
    first.put('services', '', [])
    first.save()
    again = cache(tmp_path)
    assert again.get('services', '') == [] and again.get('template', 'WebServer') is None


def test_nothing_is_written_read_only_or_without_news(tmp_path):
    ro = cache(tmp_path, read_only=True)
    ro.put('services', '', SERVICES)
    ro.save()
    assert not os.path.exists(str(tmp_path / 'cache'))
    saved(tmp_path)
    mtime = os.stat(str(tmp_path / 'cache')).st_mtime_ns
    unchanged = cache(tmp_path)
    unchanged.get('services', '')
    unchanged.save()
    assert os.stat(str(tmp_path / 'cache')).st_mtime_ns == mtime


def _ignored(tmp_path, reason):
    again = cache(tmp_path)
    assert again.get('services', '') is None
    assert again.warning == ('The enrollment policy cache %s was ignored (%s); Active Directory was read instead'
                             % (again.path, reason))


def test_a_directory_others_can_write_is_ignored(tmp_path):
    saved(tmp_path)
    os.chmod(str(tmp_path / 'cache'), 0o755)
    _ignored(tmp_path, 'its directory has mode 0755: group or others have access')


def test_a_symlinked_directory_is_ignored(tmp_path):
    first = saved(tmp_path)
    os.rename(str(tmp_path / 'cache'), str(tmp_path / 'real'))
    os.symlink(str(tmp_path / 'real'), str(tmp_path / 'cache'))
    _ignored(tmp_path, 'its directory is a symbolic link')
    first.put('services', '', [])
    first.save()   # never written through the link
    assert first.warning.startswith('The enrollment policy cache %s could not be written (' % first.path)
    assert json.loads(open(str(tmp_path / 'real' / first.name)).read())['entries']['services:']['value'] == SERVICES


def test_a_file_others_can_read_is_ignored(tmp_path):
    first = saved(tmp_path)
    os.chmod(first.path, 0o644)
    _ignored(tmp_path, 'mode 0644: group or others have access')


def test_a_symlinked_file_or_a_fifo_is_ignored(tmp_path):
    first = saved(tmp_path)
    os.rename(first.path, first.path + '.real')
    os.symlink(first.path + '.real', first.path)
    _ignored(tmp_path, 'the file is a symbolic link')
    os.unlink(first.path)
    os.mkfifo(first.path, 0o600)
    _ignored(tmp_path, 'not a regular file')   # and no hang on the FIFO


@pytest.mark.skipif(os.geteuid() != 0, reason='chown needs root')
def test_files_of_another_user_are_ignored(tmp_path):
    first = saved(tmp_path)
    os.chown(first.path, 4242, -1)
    _ignored(tmp_path, 'owned by uid 4242, not by the effective user')
    os.chown(first.path, 0, -1)
    os.chown(str(tmp_path / 'cache'), 4242, -1)
    _ignored(tmp_path, 'its directory is owned by uid 4242, not by the effective user')


def test_oversized_unparsable_or_foreign_files_are_ignored(tmp_path, monkeypatch):
    first = saved(tmp_path)
    monkeypatch.setattr(_policy_cache, 'MAX_SIZE', 100)
    _ignored(tmp_path, 'larger than 100 bytes')
    monkeypatch.undo()
    with open(first.path, 'w') as handle:
        handle.write('{not json')
    _ignored(tmp_path, 'it does not parse as JSON')
    with open(first.path, 'w') as handle:
        json.dump({'version': 1, 'identity': dict(IDENT, username='x'), 'entries': {}}, handle)
    again = cache(tmp_path)
    assert again.get('services', '') is None
    assert again.warning == ('The enrollment policy cache %s is of another format or identity and was ignored; '
                             'Active Directory was read instead' % again.path)


def test_default_directory_per_effective_user(tmp_path):
    assert _policy_cache.default_dir(0, {}) == '/var/cache/adcs-enrollment'
    assert _policy_cache.default_dir(1000, {'XDG_CACHE_HOME': '/home/u/.xdg'}) == '/home/u/.xdg/adcs-enrollment'
    assert _policy_cache.default_dir(0, {'ADCS_POLICY_CACHE_DIR': str(tmp_path)}) == str(tmp_path)
    assert _policy_cache.default_dir(4242, {'XDG_CACHE_HOME': 'relative'}).endswith('/.cache/adcs-enrollment')


def test_options_turn_it_off():
    assert _policy_cache.from_params({'policy_cache': False}) is None
    assert _policy_cache.from_params({'policy_cache': True, 'policy_cache_ttl': 0}) is None
    made = _policy_cache.from_params({'policy_cache': True, 'policy_cache_dir': '/x', 'domain': 'Lab.Test'},
                                     check_mode=True)
    assert made.ttl == _policy_cache.DEFAULT_TTL and made.read_only and made.path.startswith('/x/')


@pytest.mark.parametrize('exc, changed', [
    (_errors.RequestDenied(hresult=0x80094012), True),          # CERTSRV_E_TEMPLATE_DENIED
    (_errors.RequestDenied(hresult=0x80094800), True),          # CERTSRV_E_UNSUPPORTED_CERT_TYPE
    (_errors.BadRequest(hresult=0x80094811), True),             # CERTSRV_E_KEY_LENGTH
    (_errors.CaUnavailable('gone'), True),
    (_errors.RequestDenied(hresult=0x80094014), False),         # a manager denied it: not the policy
    (_errors.AccessDenied(hresult=0x80070005), False),          # a wrong password: one failed logon, not two
    (_errors.InvalidInput('bad option'), False),
])
def test_which_refusals_say_the_policy_changed(exc, changed):
    assert _policy_cache.says_policy_changed(exc) is changed
