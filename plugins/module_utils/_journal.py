# -*- coding: utf-8 -*-
# Copyright (c) the adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The journal of a staged switch: one job, making a set of files switch as one unit across a crash.

A journal (JSON, 0600, next to the first non-secret target) names every temporary -> target pair of a switch with
the new content's SHA-256 and the ``.adcs-old`` link of the file it replaces; it is the commit point. ``recover``
finishes (rolls forward) or undoes (rolls back) the switch a killed process left half done and removes our stray
temporary files. A journal is acted on only when it is ours and names only this task's outputs and our temporary
names. The lock that serializes runs (``DirLocks``) lives in a private directory of the effective user, not on the
output directory.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import fcntl
import hashlib
import json
import os
import re
import stat
import time

from ansible_collections.adcs.enrollment.plugins.module_utils._errors import FileOutputError
from ansible_collections.adcs.enrollment.plugins.module_utils._files import (
    KEY_MODE, _fsync_dir, _open_nofollow, _read_target, _sha256, _unlink, _user_name, read_file,
)

# Names of our own files next to a target: new contents, hard links to the old files, the journal of a switch.
_NEW_SUFFIX = '.adcs-new'
_OLD_SUFFIX = '.adcs-old'
_JOURNAL_SUFFIX = '.adcs-journal'
_LEGACY_SUFFIXES = ('.tmp', '.tmp.rollback')   # what earlier versions left behind after a crash


# ---------------------------------------------------------------------------------------------------------------
# Switching a set of files as one unit
# ---------------------------------------------------------------------------------------------------------------
def _journal_path(path):
    return os.path.join(os.path.dirname(path), '.%s%s' % (os.path.basename(path), _JOURNAL_SUFFIX))


def _ours(path, listings=None):
    """Our own leftovers next to path: new contents, links to old files, legacy temp and rollback files.
    ``listings``: {directory: names} of this run under our locks, filled on first use (a directory with many
    outputs is listed once, not once per output; a name listed and removed since is simply gone)."""
    directory, base = os.path.dirname(path), os.path.basename(path)
    suffixes = (_NEW_SUFFIX, _OLD_SUFFIX) + _LEGACY_SUFFIXES
    names = listings.get(directory) if listings is not None else None
    if names is None:
        try:
            names = os.listdir(directory)
        except OSError:
            return []
        if listings is not None:
            listings[directory] = names
    return [os.path.join(directory, name) for name in names if _temp_name(base, name, suffixes)]


_TOKEN = frozenset('abcdefghijklmnopqrstuvwxyz0123456789_')


def _temp_name(base, name, suffixes):
    """Whether ``name`` is ``.<base>.<token><suffix>`` for one of ``suffixes`` (token: [a-z0-9_]+), the shape of
    our temporary names; plain string tests, as this runs for every output of every request of a run."""
    prefix = '.%s.' % base
    if not name.startswith(prefix):
        return False
    rest = name[len(prefix):]
    for suffix in suffixes:
        token = rest[:-len(suffix)]
        if rest.endswith(suffix) and token and _TOKEN.issuperset(token):
            return True
    return False


_MAX_JOURNAL_SIZE = 1 << 20


def _own_name(path, name, suffix):
    """Whether name is one of our own temporary names for path (same directory, ``.<base>.XXXX<suffix>``)."""
    if not isinstance(name, str) or os.path.dirname(name) != os.path.dirname(path):
        return False
    return _temp_name(os.path.basename(path), os.path.basename(name), (suffix,))


def _load_journal(jpath, allowed):
    """The journal at jpath, trusted only when it is ours: a regular file (never through a symlink, never a FIFO)
    owned by the effective user, not writable by group or others, bounded, whose entries name only paths of
    ``allowed`` (the outputs of this request) with our own temporary names next to them. Anything else is refused
    and nothing it names is touched."""
    remedy = 'Inspect the journal and the files next to it, then remove the journal.'
    try:
        data = read_file(jpath, max_size=_MAX_JOURNAL_SIZE, private=True)
        fd = _open_nofollow(jpath)
        if isinstance(fd, int):
            try:
                links = os.fstat(fd).st_nlink
            finally:
                os.close(fd)
            if links != 1:
                raise ValueError('it has %d hard links' % links)
        journal = json.loads((data or b'').decode('utf-8'))
        for e in journal['entries']:
            if not all(isinstance(e.get(k), str) for k in ('path', 'tmp', 'sha256')):
                raise ValueError('entry without path, tmp or sha256')
    except FileOutputError as exc:
        raise FileOutputError('The journal %s of an interrupted write is not trusted; the files it names were left '
                              'as they are' % jpath, detail=exc.summary, remedy=remedy)
    except (IOError, OSError, ValueError, KeyError, TypeError) as exc:
        raise FileOutputError('The journal %s of an interrupted write cannot be read; the files it names were left '
                              'as they are' % jpath, detail=str(exc), remedy=remedy)
    for e in journal['entries']:
        path = e['path']
        if path not in allowed or not _own_name(path, e['tmp'], _NEW_SUFFIX) or \
                not (e.get('old') is None or _own_name(path, e['old'], _OLD_SUFFIX)) or \
                not re.match('^[0-9a-f]{64}$', e['sha256']):
            raise FileOutputError('The journal %s of an interrupted write names files that are not the outputs of '
                                  'this task or not our temporary files (%s); nothing was changed'
                                  % (jpath, ', '.join(str(e.get(k)) for k in ('path', 'tmp', 'old'))),
                                  remedy=remedy)
    return journal


def _finish(journal, jpath):
    """Complete the switch a journal describes (roll forward) or, if a new file is gone, put the old set back."""
    entries = journal['entries']

    def is_new(path, digest):
        data = _read_target(path)
        return isinstance(data, bytes) and _sha256(data) == digest

    forward = all((os.path.exists(e['tmp']) and is_new(e['tmp'], e['sha256'])) or is_new(e['path'], e['sha256'])
                  for e in entries)
    if forward:
        for e in entries:
            if os.path.exists(e['tmp']):
                os.rename(e['tmp'], e['path'])
                _fsync_dir(os.path.dirname(e['path']))
    else:
        for e in entries:
            if is_new(e['path'], e['sha256']):
                if e.get('old') and os.path.lexists(e['old']):
                    os.rename(e['old'], e['path'])
                elif not e.get('old'):
                    os.unlink(e['path'])
                _fsync_dir(os.path.dirname(e['path']))
    _unlink(jpath)
    _fsync_dir(os.path.dirname(jpath))
    for e in entries:
        for name in (e['tmp'], e.get('old')):
            if name and os.path.lexists(name):
                _unlink(name)
    return 'rolled forward' if forward else 'rolled back'


# The locks live in a directory only the effective user can enter (never the output directory itself: anyone who
# can read it could hold a flock on it forever). Tests point _LOCK_ROOT elsewhere.
_LOCK_ROOT = None


def _lock_root():
    if _LOCK_ROOT:
        return _LOCK_ROOT
    euid = os.geteuid()
    if euid == 0 and os.path.isdir('/run'):
        return '/run/adcs-enrollment'
    return '/tmp/adcs-enrollment-%d' % euid


def _lock_path(dir_stat):
    """(lock directory, lock file) for the directory with that stat (keyed by device and inode)."""
    root = _lock_root()
    key = hashlib.sha256(('%d:%d' % (dir_stat.st_dev, dir_stat.st_ino)).encode('ascii')).hexdigest()
    return root, os.path.join(root, key + '.lock')


def _lock_file(dir_stat):
    """An open fd of the lock file for the directory (keyed by device and inode) in the private lock directory:
    0700, owned by the effective user, never through a symlink; the lock file 0600, owned by the effective user."""
    root, name = _lock_path(dir_stat)
    euid = os.geteuid()
    try:
        os.mkdir(root, 0o700)
    except OSError as exc:
        if exc.errno != errno.EEXIST:
            raise FileOutputError('Cannot create the lock directory %s' % root, detail=str(exc))
    st = os.lstat(root)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != euid or st.st_mode & 0o077:
        raise FileOutputError('The lock directory %s is not a directory of user %s with mode 0700; nothing was '
                              'changed' % (root, _user_name()),
                              remedy='Someone else may have created it: inspect and remove it.')
    try:
        fd = os.open(name, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | getattr(os, 'O_CLOEXEC', 0), KEY_MODE)
    except OSError as exc:
        raise FileOutputError('Cannot open the lock file %s' % name, detail=str(exc))
    lst = os.fstat(fd)
    if not stat.S_ISREG(lst.st_mode) or lst.st_uid != euid:
        os.close(fd)
        raise FileOutputError('The lock file %s is not a regular file of user %s; nothing was changed'
                              % (name, _user_name()), remedy='Inspect and remove it.')
    return fd


class DirLocks(object):
    """Exclusive flock for the directories of a set of paths (sorted, so two runs never deadlock), held from staging
    to the end of the switch (on a lock file per directory in a private 0700 directory of the effective user, so
    other users cannot hold it): a concurrent run on the same files waits instead of taking our temporary files for a
    crash's leftovers. A killed process's locks go with it."""

    def __init__(self, paths, timeout=120):
        self.dirs = sorted(set(os.path.dirname(os.path.abspath(p)) for p in paths if p))
        self.timeout = timeout
        self.fds = []
        self.locked = set()   # (st_dev, st_ino) of the directories locked

    def holds(self, directory):
        """Whether ``directory`` (any spelling: a symlink to a locked directory counts) is locked here."""
        try:
            st = os.stat(directory)
        except OSError:
            return False
        return (st.st_dev, st.st_ino) in self.locked

    def acquire(self):
        # one lock per directory, not per spelling: two names of one directory (a symlink, as /etc/ssl/certs on
        # RHEL) share the lock file, and flock on a second handle would wait for ourselves; locked in the order of
        # the directories' identities, so two runs that spell them differently still take them in the same order
        found = {}
        for directory in self.dirs:
            try:
                st = os.stat(directory)
            except OSError:
                continue   # a missing directory is reported by the caller
            found.setdefault((st.st_dev, st.st_ino), (directory, st))
        for identity in sorted(found):
            directory, st = found[identity]
            fd = _lock_file(st)
            self.locked.add(identity)
            self.fds.append(fd)
            deadline = time.time() + self.timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except (IOError, OSError) as exc:
                    if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                        break   # a filesystem without flock: go on unlocked
                    if time.time() > deadline:
                        self.release()
                        raise FileOutputError('Another run has been writing files in %s for %g seconds; nothing '
                                              'was changed' % (directory, self.timeout))
                    time.sleep(0.1)
        return self

    def release(self):
        for fd in reversed(self.fds):
            os.close(fd)
        self.fds = []
        self.locked = set()


def interrupted(paths):
    """Whether a switch of one of ``paths`` was left half done (its journal is there): recover() must run first."""
    return any(os.path.lexists(_journal_path(os.path.abspath(path))) for path in paths if path)


def recover(paths, listings=None):
    """Finish or undo a switch that a killed process left half done for any of ``paths``, then remove our stray
    temporary files next to them. Returns {journal: 'rolled forward'|'rolled back'}. ``listings``: see _ours (the
    recoveries of one run share the listing of a directory)."""
    paths = [os.path.abspath(os.path.expanduser(p)) for p in paths if p]
    locks = DirLocks(paths).acquire()
    try:
        return _recover(paths, listings)
    finally:
        locks.release()


def _recover(paths, listings=None):
    done, journals = {}, []
    for path in paths:   # every journal is checked before any is acted on
        jpath = _journal_path(path)
        if os.path.lexists(jpath) and jpath not in [j for j, _journal in journals]:
            journals.append((jpath, _load_journal(jpath, paths)))
    for jpath, journal in journals:
        try:
            done[jpath] = _finish(journal, jpath)
        except OSError as exc:
            raise FileOutputError('Cannot complete the interrupted write recorded in %s' % jpath, detail=str(exc))
    for path in paths:
        for name in _ours(path, listings if not journals else None):   # a roll forward renamed: list again
            _unlink(name)
    return done
