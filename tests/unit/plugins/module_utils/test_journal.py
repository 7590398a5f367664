# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The journal of a staged switch (_journal): a kill after every step, recovery, planted journals, locks."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import json
import os
import pwd
import stat
import time

import pytest

from ansible_collections.adcs.enrollment.plugins.module_utils import _journal
from ansible_collections.adcs.enrollment.plugins.module_utils._errors import FileOutputError
from ansible_collections.adcs.enrollment.tests.unit.plugins.support import files as support_files
from ansible_collections.adcs.enrollment.tests.unit.plugins.support.files import leftovers


# ---- the set switches as one unit: a kill after every filesystem step ----------------------------------------
_DRIVER = r'''
import json, sys
from ansible_collections.adcs.enrollment.plugins.module_utils import _staged
specs = [_staged.FileSpec(p, c.encode('latin-1'), secret=s, backup=b) for p, c, s, b in json.loads(sys.argv[1])]
with _staged.StagedWrite(specs) as sw:
    sw.commit()
print(json.dumps(sorted(sw.changed_paths)))
'''

NAMES = ('h.key', 'h.crt', 'h-chain.crt', 'h-fullchain.crt', 'h.p12')


def _run_driver(specs, kill_after, step_log):
    import json
    import subprocess
    import sys
    env = dict(os.environ, ADCS_TEST_FILES_KILL_AFTER_STEP=str(kill_after), ADCS_TEST_FILES_STEP_LOG=step_log,
               PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    return subprocess.run([sys.executable, '-c', _DRIVER, json.dumps(specs)], env=env, capture_output=True,
                          text=True, check=False)


def _on_disk(directory):
    return dict((n, (directory / n).read_bytes() if (directory / n).exists() else None) for n in NAMES)


def _prepare(directory, old):
    for n in NAMES:
        for name in os.listdir(str(directory)):
            os.unlink(str(directory / name))
    for n, content in old.items():
        if content is not None:
            (directory / n).write_bytes(content)


def _kill_cases(directory, old):
    new = dict((n, ('NEW ' + n).encode()) for n in NAMES)
    specs = [(str(directory / n), new[n].decode(), n in ('h.key', 'h.p12'), n == 'h.key') for n in NAMES]
    log = str(directory.parent / 'steps.log')
    _prepare(directory, old)
    res = _run_driver(specs, 0, log)               # 0: count the steps, never kill
    assert res.returncode == 0, res.stderr
    steps = [line.split(' ', 2)[1] for line in open(log).read().splitlines()]
    os.unlink(log)
    assert _on_disk(directory) == new
    outcomes = []
    for n in range(1, len(steps) + 1):
        _prepare(directory, old)
        res = _run_driver(specs, n, log)
        assert res.returncode == 137, (n, res.stderr)
        after_kill = _on_disk(directory)
        journal = [x for x in os.listdir(str(directory)) if x.endswith('.adcs-journal')]
        written, removed = [i for i, step in enumerate(steps) if step == 'journal']
        if written < n - 1 < removed:
            # between the journal's write and its removal the renames run one by one (no filesystem renames
            # several files at once): each file is old or new, and the journal is there for the next run
            assert journal == ['.h.crt.adcs-journal'], (n, steps[n - 1])
            assert all(after_kill[x] in (old[x], new[x]) for x in NAMES), (n, steps[n - 1])
        else:
            assert after_kill in (old, new), (n, steps[n - 1], after_kill)
        recovered = _journal.recover([str(directory / name) for name in NAMES])
        after_next_run = _on_disk(directory)
        assert after_next_run in (old, new), (n, steps[n - 1], after_next_run)
        assert after_next_run == new if 'journal' in steps[:n] else after_next_run == old, (n, steps[n - 1])
        assert leftovers(directory) == [], (n, steps[n - 1])
        names = sorted(os.listdir(str(directory)))
        assert [x for x in names if x not in NAMES and not x.startswith('h.key.')] == []   # backups only
        outcomes.append((steps[n - 1], 'new' if after_next_run == new else 'old', bool(recovered)))
        os.unlink(log)
    return steps, outcomes


def test_kill_after_every_step_leaves_old_or_new_set(tmp_path):
    directory = tmp_path / 'out'
    directory.mkdir()
    old = dict((n, ('OLD ' + n).encode()) for n in NAMES)
    steps, outcomes = _kill_cases(directory, old)
    assert steps == (['staged'] * 5 + ['backup'] + ['old'] * 5 + ['journal'] + ['renamed'] * 5 + ['journal']
                     + ['old'] * 5)
    assert [o[1] for o in outcomes] == ['old'] * 11 + ['new'] * 12
    # a journal was found (rolled forward) exactly while it existed: from its write until its removal
    assert [o[2] for o in outcomes] == [False] * 11 + [True] * 6 + [False] * 6


def test_kill_after_every_step_with_files_that_did_not_exist(tmp_path):
    directory = tmp_path / 'out'
    directory.mkdir()
    old = dict((n, ('OLD ' + n).encode() if n in ('h.key', 'h.crt') else None) for n in NAMES)
    steps, outcomes = _kill_cases(directory, old)
    assert steps.count('old') == 4 and steps.count('renamed') == 5


def test_journal_without_its_new_files_rolls_back(tmp_path):
    directory = tmp_path / 'out'
    directory.mkdir()
    old = dict((n, ('OLD ' + n).encode()) for n in NAMES)
    new = dict((n, ('NEW ' + n).encode()) for n in NAMES)
    specs = [(str(directory / n), new[n].decode(), n == 'h.key', False) for n in NAMES]
    log = str(tmp_path / 'steps.log')
    _prepare(directory, old)
    assert _run_driver(specs, 13, log).returncode == 137     # after the journal and two renames
    assert [line.split(' ', 2)[1] for line in open(log).read().splitlines()][-3:] == ['journal', 'renamed',
                                                                                      'renamed']
    assert _on_disk(directory) == dict(old, **{'h.key': new['h.key'], 'h.crt': new['h.crt']})  # mid-switch
    pending = [n for n in os.listdir(str(directory)) if n.startswith('.h.p12.') and n.endswith('.adcs-new')]
    os.unlink(str(directory / pending[0]))                   # a new file is gone: rolling forward is impossible
    assert list(_journal.recover([str(directory / n) for n in NAMES]).values()) == ['rolled back']
    assert _on_disk(directory) == old and leftovers(directory) == []


def test_stage_recovers_first_and_removes_only_our_strays(tmp_path):
    crt = tmp_path / 'h.crt'
    crt.write_bytes(b'OLD')
    ours = ['.h.crt.ab12cd_3.adcs-new', '.h.crt.x9y8z7w6.adcs-old', '.h.crt.k2j3h4g5.tmp',
            '.h.crt.k2j3h4g5.tmp.rollback']
    others = ['.h.crt.csr.ab12cd_3.adcs-new', '.other.ab12cd_3.adcs-new', 'h.crt.20260101~', '.h.crt.notes']
    for name in ours + others:
        (tmp_path / name).write_bytes(b'x')
    assert support_files.write_file_atomic(str(crt), b'NEW')['changed']
    assert sorted(os.listdir(str(tmp_path))) == sorted(['h.crt'] + others)


def test_unreadable_journal_is_reported(tmp_path):
    crt = tmp_path / 'h.crt'
    crt.write_bytes(b'OLD')
    (tmp_path / '.h.crt.adcs-journal').write_text('{"entries": [{"path": 1}]}')
    with pytest.raises(FileOutputError) as err:
        support_files.write_file_atomic(str(crt), b'NEW')
    assert err.value.summary == ('The journal %s of an interrupted write cannot be read; the files it names were '
                                 'left as they are' % (tmp_path / '.h.crt.adcs-journal'))
    assert crt.read_bytes() == b'OLD'


def test_a_concurrent_run_on_the_same_directory_waits(tmp_path):
    import threading
    import time
    crt = tmp_path / 'h.crt'
    crt.write_bytes(b'OLD')
    holder = _journal.DirLocks([str(crt)]).acquire()   # another run is switching files in this directory
    done = []
    worker = threading.Thread(target=lambda: done.append(support_files.write_file_atomic(str(crt), b'NEW')['changed']))
    worker.start()
    time.sleep(0.5)
    assert done == [] and crt.read_bytes() == b'OLD'
    assert [n for n in os.listdir(str(tmp_path)) if n.endswith('.adcs-new')] == []   # not even staged yet
    holder.release()
    worker.join(10)
    assert done == [True] and crt.read_bytes() == b'NEW' and leftovers(tmp_path) == []


def test_two_names_of_one_directory_take_one_lock(tmp_path):
    """A symlink to a directory (as /etc/ssl/certs -> /etc/pki/tls/certs on RHEL) is the same directory: one lock, or
    the run would wait for itself."""
    (tmp_path / 'real').mkdir()
    (tmp_path / 'alias').symlink_to(tmp_path / 'real')
    locks = _journal.DirLocks([str(tmp_path / 'real' / 'a.crt'), str(tmp_path / 'alias' / 'b.crt')], timeout=0.3)
    locks.acquire()
    try:
        assert len(locks.fds) == 1
        assert locks.holds(str(tmp_path / 'alias')) and locks.holds(str(tmp_path / 'real'))
        assert not locks.holds(str(tmp_path))
    finally:
        locks.release()
    assert not locks.holds(str(tmp_path / 'real'))


def test_lock_wait_has_a_deadline(tmp_path, monkeypatch):
    holder = _journal.DirLocks([str(tmp_path / 'y')]).acquire()
    try:
        with pytest.raises(FileOutputError) as err:
            _journal.DirLocks([str(tmp_path / 'x')], timeout=0.3).acquire()
        assert err.value.summary == ('Another run has been writing files in %s for 0.3 seconds; nothing was changed'
                                     % tmp_path)
    finally:
        holder.release()


# ---- a planted journal is never acted on --------------------------------------------------------------------------
def _plant_journal(directory, entries, name='h.crt'):
    jpath = directory / ('.%s.adcs-journal' % name)
    jpath.write_text(json.dumps({'version': 1, 'entries': entries}))
    os.chmod(str(jpath), 0o600)
    return jpath


def _snapshot(*dirs):
    out = {}
    for d in dirs:
        for n in os.listdir(str(d)):
            p = os.path.join(str(d), n)
            out[p] = (os.lstat(p).st_ino, open(p, 'rb').read() if os.path.isfile(p) and not os.path.islink(p)
                      else None)
    return out


UNTRUSTED = ('The journal %s of an interrupted write names files that are not the outputs of this task or not our '
             'temporary files (%s, %s, %s); nothing was changed. What to do: Inspect the journal and the files '
             'next to it, then remove the journal.')


@pytest.mark.parametrize('case', ['path_elsewhere', 'tmp_elsewhere', 'old_elsewhere', 'tmp_not_ours',
                                  'other_output'])
def test_a_planted_journal_renames_or_deletes_nothing(tmp_path, case):
    """A journal naming a path outside this task's outputs, or tmp/old files that are not our temporary names next
    to the path, is refused before anything is renamed or removed."""
    out, elsewhere = tmp_path / 'out', tmp_path / 'etc'
    out.mkdir()
    elsewhere.mkdir()
    crt = out / 'h.crt'
    crt.write_bytes(b'OLD')
    victim = elsewhere / 'shadow'
    victim.write_bytes(b'VICTIM')
    evil = out / '.h.crt.abcdefgh.adcs-new'
    evil.write_bytes(b'EVIL')
    digest = hashlib.sha256(b'EVIL').hexdigest()
    entry = {'path': str(crt), 'tmp': str(evil), 'old': None, 'sha256': digest}
    if case == 'path_elsewhere':
        entry['path'] = str(victim)
    elif case == 'tmp_elsewhere':
        entry['tmp'] = str(victim)
        entry['sha256'] = hashlib.sha256(b'VICTIM').hexdigest()
    elif case == 'old_elsewhere':
        entry['old'] = str(victim)
        entry['sha256'] = '0' * 64    # not new: a roll back would rename or unlink old
    elif case == 'tmp_not_ours':
        other = out / 'app.conf'
        other.write_bytes(b'CONF')
        entry['tmp'] = str(other)
    else:
        entry['path'] = str(out / 'other.crt')
        entry['tmp'] = str(out / '.other.crt.abcdefgh.adcs-new')
    jpath = _plant_journal(out, [entry])
    before = _snapshot(out, elsewhere)
    with pytest.raises(FileOutputError) as err:
        _journal.recover([str(crt)])
    assert err.value.to_message() == UNTRUSTED % (jpath, entry['path'], entry['tmp'], entry['old'])
    with pytest.raises(FileOutputError):
        support_files.write_file_atomic(str(crt), b'NEW')
    assert _snapshot(out, elsewhere) == before


@pytest.mark.parametrize('plant', ['fifo', 'symlink', 'other_owner', 'group_writable', 'huge', 'hard_link'])
def test_a_journal_we_did_not_write_is_not_trusted(tmp_path, plant):
    """A FIFO journal does not hang; a symlink, a journal of another user or writable by others, an oversized one
    or one with a second name are refused and nothing is touched."""
    crt = tmp_path / 'h.crt'
    crt.write_bytes(b'OLD')
    new = tmp_path / '.h.crt.abcdefgh.adcs-new'
    new.write_bytes(b'NEW')
    entry = {'path': str(crt), 'tmp': str(new), 'old': None, 'sha256': hashlib.sha256(b'NEW').hexdigest()}
    jpath = _plant_journal(tmp_path, [entry])
    user = pwd.getpwuid(os.geteuid()).pw_name
    detail = '%s is not owned by user %s or is writable by other users; it is not trusted' % (jpath, user)
    if plant == 'fifo':
        os.unlink(str(jpath))
        os.mkfifo(str(jpath))
        detail = '%s is a symbolic link or not a regular file; it is not read' % jpath
    elif plant == 'symlink':
        real = tmp_path / 'journal.json'
        os.rename(str(jpath), str(real))
        os.symlink(str(real), str(jpath))
        detail = '%s is a symbolic link or not a regular file; it is not read' % jpath
    elif plant == 'other_owner':
        os.chown(str(jpath), 65534, 65534)
    elif plant == 'group_writable':
        os.chmod(str(jpath), 0o620)
    elif plant == 'huge':
        with open(str(jpath), 'ab') as handle:
            handle.write(b' ' * (1 << 20))
        detail = '%s is larger than %d bytes; it is not read' % (jpath, 1 << 20)
    else:
        os.link(str(jpath), str(tmp_path / 'second-name'))
    before = _snapshot(tmp_path)
    with pytest.raises(FileOutputError) as err:
        _journal.recover([str(crt)])
    if plant == 'hard_link':
        assert err.value.summary == ('The journal %s of an interrupted write cannot be read; the files it names '
                                     'were left as they are' % jpath)
        assert err.value.detail == 'it has 2 hard links'
    else:
        assert err.value.to_message() == (
            'The journal %s of an interrupted write is not trusted; the files it names were left as they are; %s. '
            'What to do: Inspect the journal and the files next to it, then remove the journal.' % (jpath, detail))
    assert _snapshot(tmp_path) == before


def test_our_own_journal_is_still_completed(tmp_path):
    crt, key = tmp_path / 'h.crt', tmp_path / 'h.key'
    crt.write_bytes(b'OLD')
    new = tmp_path / '.h.crt.abcdefgh.adcs-new'
    new.write_bytes(b'NEW')
    _plant_journal(tmp_path, [{'path': str(crt), 'tmp': str(new), 'old': None,
                               'sha256': hashlib.sha256(b'NEW').hexdigest()}])
    assert list(_journal.recover([str(crt), str(key)]).values()) == ['rolled forward']
    assert crt.read_bytes() == b'NEW' and leftovers(tmp_path) == []


# ---- other users cannot hold our locks ---------------------------------------------------------------------------
def test_another_user_holding_the_directory_does_not_block_us(world_dir):
    """nobody flocks the output directory (all it needs is read access) and tries our lock file: we still write."""
    import fcntl
    crt = os.path.join(world_dir, 'h.crt')
    _journal.DirLocks([crt]).acquire().release()      # the lock file exists
    lock_path = _journal._lock_path(os.stat(world_dir))[1]
    assert os.path.exists(lock_path)
    ready_r, ready_w = os.pipe()
    done_r, done_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 3
        try:
            os.setgid(65534)
            os.setuid(65534)
            fd = os.open(world_dir, os.O_RDONLY)
            fcntl.flock(fd, fcntl.LOCK_EX)
            code = 0
            try:   # our lock file for the directory: nobody may not even open it
                os.open(lock_path, os.O_RDONLY)
                code = 4
            except OSError:
                pass
            os.write(ready_w, b'%d' % code)
            os.read(done_r, 1)
        finally:
            os._exit(code)
    try:
        assert os.read(ready_r, 1) == b'0'
        started = time.time()
        _journal.DirLocks([crt], timeout=1).acquire().release()
        assert support_files.write_file_atomic(crt, b'NEW')['changed']
        assert time.time() - started < 5 and open(crt, 'rb').read() == b'NEW'
    finally:
        os.write(done_w, b'x')
        assert os.WEXITSTATUS(os.waitpid(pid, 0)[1]) == 0


def test_a_lock_directory_of_someone_else_is_refused(tmp_path, monkeypatch):
    root = tmp_path / 'locks'
    root.mkdir()
    os.chown(str(root), 65534, 65534)
    os.chmod(str(root), 0o700)
    monkeypatch.setattr(_journal, '_LOCK_ROOT', str(root))
    with pytest.raises(FileOutputError) as err:
        support_files.write_file_atomic(str(tmp_path / 'h.crt'), b'NEW')
    assert err.value.to_message() == (
        'The lock directory %s is not a directory of user %s with mode 0700; nothing was changed. What to do: '
        'Someone else may have created it: inspect and remove it.' % (root, pwd.getpwuid(os.geteuid()).pw_name))
    assert not (tmp_path / 'h.crt').exists()
    os.chown(str(root), os.geteuid(), os.getegid())
    lock = _journal._lock_file(os.stat(str(tmp_path)))
    try:
        st = os.fstat(lock)
        assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == os.geteuid()
    finally:
        os.close(lock)


def test_the_recoveries_of_one_run_list_a_directory_once(tmp_path, monkeypatch):
    directory = tmp_path / 'out'
    directory.mkdir()
    for name in ('.a.crt.x1y2.adcs-new', '.b.crt.q9w8.adcs-old', '.b.key.zz11.adcs-new', 'keep.txt'):
        (directory / name).write_bytes(b'left over')
    listed = []
    real = os.listdir
    monkeypatch.setattr(_journal.os, 'listdir', lambda d: listed.append(d) or real(d))
    listings = {}
    for name in ('a', 'b'):
        _journal.recover([str(directory / (name + '.crt')), str(directory / (name + '.key'))], listings)
    assert listed == [str(directory)] and sorted(real(str(directory))) == ['keep.txt']


def test_our_temporary_names_are_recognised_as_the_pattern_says():
    """_temp_name (string tests, run for every output of every request) accepts exactly ^\\.<base>\\.[a-z0-9_]+<suffix>$."""
    import itertools
    import re
    suffixes = (_journal._NEW_SUFFIX, _journal._OLD_SUFFIX) + _journal._LEGACY_SUFFIXES
    bases = ['web.crt', 'web.key', 'a.b', 'x']
    tokens = ['', 'abc123', 'a_b', 'ABC', 'a-b', 'a.b', 'é', '0']
    tails = list(suffixes) + ['', '.tmp.rollbackx', '.adcs-ne', 'x.tmp', '.tmp.tmp.rollback']
    checked = 0
    for base, token, tail, lead in itertools.product(bases, tokens, tails, ['.', '', '..']):
        for name in ('%s%s.%s%s' % (lead, base, token, tail), '%s%s.%s%s\n' % (lead, base, token, tail)):
            pattern = r'^\.%s\.[a-z0-9_]+(%s)\Z' % (re.escape(base), '|'.join(re.escape(s) for s in suffixes))
            assert _journal._temp_name(base, name, suffixes) == bool(re.match(pattern, name)), (base, name)
            checked += 1
    assert checked > 1000
    assert _journal._temp_name('web.crt', '.web.crt.k3y_9.adcs-new', suffixes)
    assert not _journal._temp_name('web.crt', '.web.crt.k3y_9.adcs-new.x', suffixes)
