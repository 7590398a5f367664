# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Group commit (_write_group): new sets switched together with one sync, replacements at once, failures per set,
and a kill after every filesystem step of a group leaving each set absent or complete."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import stat
import subprocess
import sys

import pytest

from ansible_collections.adcs.enrollment.plugins.module_utils import _journal, _staged, _write_group
from ansible_collections.adcs.enrollment.plugins.module_utils._errors import FileOutputError
from ansible_collections.adcs.enrollment.tests.unit.plugins.support.ca_fakes import PlainWriter
from ansible_collections.adcs.enrollment.tests.unit.plugins.support.files import leftovers


class _Syncs(object):
    """A syncfs stand-in that counts its calls (and really fsyncs the file it is given)."""

    def __init__(self, fail=None):
        self.calls = 0
        self.fail = fail

    def __call__(self, fd):
        self.calls += 1
        if self.fail:
            raise OSError(5, self.fail)
        os.fsync(fd)


def _set(directory, name, tag=b'NEW'):
    return [_staged.FileSpec(str(directory / (name + '.key')), tag + b' key ' + name.encode(), secret=True),
            _staged.FileSpec(str(directory / (name + '.crt')), tag + b' crt ' + name.encode())]


def _content(directory):
    return dict((n, (directory / n).read_bytes()) for n in sorted(os.listdir(str(directory)))
                if not n.startswith('.'))


@pytest.fixture
def out(tmp_path, monkeypatch):
    monkeypatch.setattr(_journal, '_LOCK_ROOT', str(tmp_path / 'locks'))
    directory = tmp_path / 'out'
    directory.mkdir()
    return directory


def _group(writer, directory, names, syncs, flush_every=64):
    paths = [str(directory / (n + ext)) for n in names for ext in ('.key', '.crt')]
    return _write_group.WriteGroup(writer, paths, flush_every=flush_every, syncfs=syncs)


def test_new_sets_are_staged_at_once_and_switched_together_with_one_sync(out):
    writer, syncs, ran = PlainWriter(), _Syncs(), []
    with _group(writer, out, ['a', 'b', 'c'], syncs) as group:
        results = [writer.write(_set(out, n)) for n in ('a', 'b', 'c')]
        results[0]['commit'].then(lambda: ran.append('a'))
        assert _content(out) == {} and len(leftovers(out)) == 6   # staged, nothing in place yet
        assert [r['changed'] for r in results] == [True] * 3 and ran == []
    assert syncs.calls == 1 and group.flushes == 1 and ran == ['a']
    assert all(r['commit'].error is None and r['commit'].done for r in results)
    assert _content(out) == dict(('%s.%s' % (n, e), b'NEW %s %s' % (e.encode(), n.encode()))
                                 for n in 'abc' for e in ('key', 'crt'))
    assert leftovers(out) == []
    assert stat.S_IMODE(os.stat(str(out / 'a.key')).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(str(out / 'a.crt')).st_mode) == 0o644
    assert results[1]['commit'].result['changed_paths'] == [str(out / 'b.key'), str(out / 'b.crt')]
    ran = []
    results[0]['commit'].then(lambda: ran.append('late'))   # after the switch: at once
    assert ran == ['late'] and writer._group is None


def test_a_group_over_two_names_of_one_directory(out):
    alias = out.parent / 'alias'
    alias.symlink_to(out)
    writer, syncs = PlainWriter(), _Syncs()
    paths = [str(out / 'a.key'), str(out / 'a.crt'), str(alias / 'b.key'), str(alias / 'b.crt')]
    with _write_group.WriteGroup(writer, paths, syncfs=syncs) as group:
        assert len(group.locks.fds) == 1
        results = [writer.write(_set(out, 'a')), writer.write(_set(alias, 'b'))]
        assert all(r['commit'] is not None for r in results)      # both deferred: the group holds the directory
    assert sorted(_content(out)) == ['a.crt', 'a.key', 'b.crt', 'b.key']


def test_a_group_flushes_every_flush_every_sets(out):
    writer, syncs = PlainWriter(), _Syncs()
    with _group(writer, out, ['a', 'b', 'c'], syncs, flush_every=2) as group:
        first = writer.write(_set(out, 'a'))
        second = writer.write(_set(out, 'b'))
        assert first['commit'].done and second['commit'].done and (out / 'b.crt').exists()
        third = writer.write(_set(out, 'c'))
        assert not third['commit'].done
    assert third['commit'].done and syncs.calls == 2 and group.flushes == 2


def test_a_replacement_is_switched_at_once_under_the_group_locks(out):
    (out / 'a.key').write_bytes(b'OLD key')
    (out / 'a.crt').write_bytes(b'OLD crt')
    writer, syncs = PlainWriter(), _Syncs()
    with _group(writer, out, ['a', 'b'], syncs) as group:
        replaced = writer.write(_set(out, 'a'))
        assert 'commit' not in replaced and replaced['changed']
        assert (out / 'a.crt').read_bytes() == b'NEW crt a'   # in place before the group ends
        writer.write(_set(out, 'b'))
    assert syncs.calls == 1 and _content(out)['b.key'] == b'NEW key b' and leftovers(out) == []


def test_a_target_that_appeared_after_staging_is_replaced_the_careful_way(out):
    writer, syncs = PlainWriter(), _Syncs()
    with _group(writer, out, ['a'], syncs) as group:
        result = writer.write(_set(out, 'a'))
        (out / 'a.crt').write_bytes(b'someone else')
    assert result['commit'].error is None
    assert _content(out) == {'a.key': b'NEW key a', 'a.crt': b'NEW crt a'} and leftovers(out) == []


def test_two_sets_sharing_a_new_file_both_switch(out):
    """Requests of one run that share an output (one chain file for all): the second set finds the first one's
    file staged, not in place; both switch, the shared file once new and then replaced by the same content."""
    writer, syncs = PlainWriter(), _Syncs()
    with _group(writer, out, ['a', 'b'], syncs) as group:
        results = [writer.write(_set(out, n) + [_staged.FileSpec(str(out / 'chain.crt'), b'CHAIN')])
                   for n in ('a', 'b')]
    assert [r['commit'].error for r in results] == [None, None]
    assert _content(out)['chain.crt'] == b'CHAIN' and _content(out)['b.key'] == b'NEW key b'
    assert leftovers(out) == []


def test_a_failed_set_leaves_the_shared_file_of_a_switched_set(out, monkeypatch):
    """Set b fails after it renamed the chain file set a shares: a's chain stays (a was reported switched)."""
    writer, syncs = PlainWriter(), _Syncs()
    real_rename = os.rename

    def rename(src, dst):
        if dst.endswith('b.key'):
            raise OSError(28, 'No space left on device')
        return real_rename(src, dst)

    chain = _staged.FileSpec(str(out / 'chain.crt'), b'CHAIN')
    with _group(writer, out, ['a', 'b'], syncs):
        a = writer.write([chain] + _set(out, 'a'))
        b = writer.write([chain] + _set(out, 'b'))
        monkeypatch.setattr(_write_group.os, 'rename', rename)
    assert a['commit'].error is None and isinstance(b['commit'].error, FileOutputError)
    assert _content(out) == {'a.key': b'NEW key a', 'a.crt': b'NEW crt a', 'chain.crt': b'CHAIN'}


def test_a_failed_rename_fails_only_its_set_and_writes_nothing_of_it(out, monkeypatch):
    writer, syncs = PlainWriter(), _Syncs()
    real_rename = os.rename

    def rename(src, dst):
        if dst.endswith('b.crt'):
            raise OSError(28, 'No space left on device')
        return real_rename(src, dst)

    with _group(writer, out, ['a', 'b'], syncs) as group:
        a, b = writer.write(_set(out, 'a')), writer.write(_set(out, 'b'))
        monkeypatch.setattr(_write_group.os, 'rename', rename)
    assert a['commit'].error is None
    assert isinstance(b['commit'].error, FileOutputError)
    assert b['commit'].error.to_message().startswith('Writing the output files failed; none of b.crt, b.key was '
                                                     'written')
    assert 'No space left on device' in b['commit'].error.to_message()
    assert _content(out) == {'a.key': b'NEW key a', 'a.crt': b'NEW crt a'} and leftovers(out) == []


def test_a_failed_sync_fails_every_set_of_the_flush(out):
    writer, syncs = PlainWriter(), _Syncs(fail='Input/output error')
    with _group(writer, out, ['a', 'b'], syncs) as group:
        results = [writer.write(_set(out, n)) for n in ('a', 'b')]
    assert all(isinstance(r['commit'].error, FileOutputError) for r in results)
    assert 'Input/output error' in results[0]['commit'].error.to_message()
    assert _content(out) == {} and leftovers(out) == []


def test_a_failing_validator_fails_at_once_and_leaves_nothing(out):
    writer, syncs = PlainWriter(), _Syncs()

    def refuse(staged):
        raise FileOutputError('The staged certificate does not match the staged private key; nothing was written')

    with _group(writer, out, ['a'], syncs) as group:
        with pytest.raises(FileOutputError, match='does not match'):
            writer.write(_set(out, 'a'), validator=refuse)
    assert syncs.calls == 0 and _content(out) == {} and leftovers(out) == []


def test_sync_files_without_syncfs_fsyncs_each_file(out, monkeypatch):
    paths = []
    for name in ('x', 'y'):
        (out / name).write_bytes(b'data')
        paths.append(str(out / name))
    synced = []
    monkeypatch.setattr(_write_group, '_libc_syncfs', lambda: None)
    monkeypatch.setattr(_write_group.os, 'fsync', lambda fd: synced.append(os.fstat(fd).st_ino))
    _write_group.sync_files(paths)
    assert sorted(synced) == sorted(os.stat(p).st_ino for p in paths)
    syncs = _Syncs()
    _write_group.sync_files(paths, syncs)
    assert syncs.calls == 1   # one filesystem: one syncfs


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='syncfs(2) is Linux only')
def test_libc_syncfs_is_found_on_linux(out):
    syncfs = _write_group._libc_syncfs()
    fd = os.open(str(out), os.O_RDONLY)
    try:
        syncfs(fd)
    finally:
        os.close(fd)
    with pytest.raises(OSError):
        syncfs(-1)


# ---- a kill after every filesystem step of a group -------------------------------------------------------------
_DRIVER = r'''
import json, sys
from ansible_collections.adcs.enrollment.plugins.module_utils import _journal, _staged
from ansible_collections.adcs.enrollment.tests.unit.plugins.support.ca_fakes import PlainWriter
_journal._LOCK_ROOT = sys.argv[2]
sets = [[_staged.FileSpec(p, c.encode('latin-1'), secret=s) for p, c, s in one] for one in json.loads(sys.argv[1])]
writer = PlainWriter()
with writer.group([s.path for one in sets for s in one]):
    for one in sets:
        writer.write(one)
'''

SETS = ('a', 'b', 'r')   # two new sets and one replacement


def _kill_driver(directory, kill_after, log, locks):
    sets = [[(str(directory / (n + e)), 'NEW %s%s' % (n, e), e == '.key') for e in ('.key', '.crt', '-chain.crt')]
            for n in SETS]
    env = dict(os.environ, ADCS_TEST_FILES_KILL_AFTER_STEP=str(kill_after), ADCS_TEST_FILES_STEP_LOG=log,
               PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    return subprocess.run([sys.executable, '-c', _DRIVER, json.dumps(sets), locks], env=env, capture_output=True,
                          text=True, check=False)


def _state_of(directory, name):
    files = [(directory / (name + e)) for e in ('.key', '.crt', '-chain.crt')]
    contents = [f.read_bytes() if f.exists() else None for f in files]
    if all(c is None for c in contents):
        return 'absent'
    if all(c == b'OLD' for c in contents):
        return 'old'
    if contents == [('NEW %s%s' % (name, e)).encode() for e in ('.key', '.crt', '-chain.crt')]:
        return 'new'
    return 'mixed %r' % contents


def test_kill_after_every_step_of_a_group_leaves_each_set_absent_or_complete(tmp_path):
    directory = tmp_path / 'out'
    directory.mkdir()
    locks, log = str(tmp_path / 'locks'), str(tmp_path / 'steps.log')

    def prepare():
        for name in os.listdir(str(directory)):
            os.unlink(str(directory / name))
        for e in ('.key', '.crt', '-chain.crt'):
            (directory / ('r' + e)).write_bytes(b'OLD')

    prepare()
    res = _kill_driver(directory, 0, log, locks)
    assert res.returncode == 0, res.stderr
    steps = [line.split(' ', 2)[1] for line in open(log).read().splitlines()]
    os.unlink(log)
    # the replacement switches at once (its own journal); the new sets: staged, one sync, journals, renames, removal
    assert steps == (['staged'] * 6 + ['staged'] * 3 + ['old'] * 3 + ['journal'] + ['renamed'] * 3 + ['journal']
                     + ['old'] * 3 + ['synced'] + ['journal'] * 2 + ['renamed'] * 6 + ['journal'] * 2)
    assert [_state_of(directory, n) for n in SETS] == ['new'] * 3
    synced = steps.index('synced')
    first_journal = synced + 1
    outcomes = []
    for n in range(1, len(steps) + 1):
        prepare()
        res = _kill_driver(directory, n, log, locks)
        assert res.returncode == 137, (n, res.stderr)
        if n - 1 < first_journal:   # before the group's journals: the new sets are not in place at all
            assert [_state_of(directory, x) for x in ('a', 'b')] == ['absent'] * 2, (n, steps[n - 1])
        _journal._LOCK_ROOT = locks
        try:
            for name in SETS:
                _journal.recover([str(directory / (name + e)) for e in ('.key', '.crt', '-chain.crt')])
        finally:
            _journal._LOCK_ROOT = None
        states = [_state_of(directory, x) for x in SETS]
        assert states[0] in ('absent', 'new') and states[1] in ('absent', 'new') and states[2] in ('old', 'new'), \
            (n, steps[n - 1], states)
        assert leftovers(directory) == [], (n, steps[n - 1])
        outcomes.append(tuple(states))
        os.unlink(log)
    new_sets = [o[:2] for o in outcomes]
    # the new sets appear once their journals are in place (the commit points, made durable together), never before
    assert new_sets == [('absent', 'absent')] * first_journal + [('new', 'new')] * (len(steps) - first_journal)
    assert [o[2] for o in outcomes] == ['old'] * 6 + ['old'] * 6 + ['new'] * (len(steps) - 12)
