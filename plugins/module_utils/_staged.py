# -*- coding: utf-8 -*-
# Copyright (c) the adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Staged writes: one job, putting keys, certificates, chains and PKCS#12 bundles on disk as one crash-safe unit.

Every write goes to a temporary file in the target's directory (created with the final mode, so a key is never
readable by others, even for an instant), is fsync'ed, gets owner/group, and is renamed over the target; the
directory is fsync'ed after the rename. Several files (key + certificate + chain + full chain + PKCS#12) switch as
one unit (``StagedWrite``): all temporary files are complete and validated first, a journal (``_journal``) is the
commit point, and a process killed at any step leaves the old set or the new set, completed by the next run
(``recover``). A symlink at a target is replaced, not followed. Backups are made on request, after validation.

``ModuleFileWriter`` plugs in AnsibleModule's ``set_fs_attributes_if_different`` (SELinux context, attributes) and
check mode; inside ``ModuleFileWriter.group()`` the sets of NEW files of a run are switched together at its end
(``_write_group``: one sync instead of several fsyncs per set).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import json
import os
import stat
import tempfile

from ansible_collections.adcs.enrollment.plugins.module_utils._errors import FileOutputError
from ansible_collections.adcs.enrollment.plugins.module_utils._files import (
    CERT_MODE, KEY_MODE, SECRET_FORBIDDEN_BITS, _apply_attributes_to, _copy_nofollow, _fix_fd_attributes,
    _fsync_dir, _read_target, _sha256, _unlink, attributes_differ, check_secret_mode, make_backup, parse_mode,
    resolve_gid, resolve_uid,
)
from ansible_collections.adcs.enrollment.plugins.module_utils._journal import (
    _NEW_SUFFIX, _OLD_SUFFIX, DirLocks, _journal_path, _recover,
)

# Test hook (tests/unit/.../test_files.py, tests/integration/test_files_safety.py): with this variable set to N,
# the process ends with os._exit(137) right after the N-th filesystem step of a write (0: only count); the steps
# are appended to the file named by _STEP_LOG_ENV. Never set outside the tests.
_KILL_ENV = 'ADCS_TEST_FILES_KILL_AFTER_STEP'
_STEP_LOG_ENV = 'ADCS_TEST_FILES_STEP_LOG'
_step_count = [0]


def _step(label):
    """One filesystem step of a write is done (the kill-test hook; a no-op unless the test variable is set)."""
    limit = os.environ.get(_KILL_ENV)
    if not limit:
        return
    _step_count[0] += 1
    log = os.environ.get(_STEP_LOG_ENV)
    if log:
        with open(log, 'a') as f:
            f.write('%d %s\n' % (_step_count[0], label))
    if _step_count[0] == int(limit):
        os._exit(137)


class FileSpec(object):
    """What to write where: content bytes, mode, owner, group, backup flag."""

    def __init__(self, path, content, mode=None, owner=None, group=None, backup=False, secret=False):
        self.path = os.path.abspath(os.path.expanduser(path))
        self.content = content
        self.secret = secret
        default = KEY_MODE if secret else CERT_MODE
        base = None
        if isinstance(mode, str):   # a symbolic mode applies to the existing file's mode, as in ansible
            try:
                st = os.lstat(self.path)
                if stat.S_ISREG(st.st_mode):
                    base = stat.S_IMODE(st.st_mode)
            except OSError:
                pass
        self.mode = parse_mode(mode, default, base=base)
        if secret and self.mode & SECRET_FORBIDDEN_BITS:
            # whatever its type: an integer, an octal string, or a symbolic mode applied to the existing file
            check_secret_mode(mode if isinstance(mode, int) else self.mode)
        self.uid = resolve_uid(owner)
        self.gid = resolve_gid(group)
        self.backup = backup

    def __repr__(self):
        return 'FileSpec(%r, %d bytes, mode=%o%s)' % (self.path, len(self.content), self.mode,
                                                      ', secret' if self.secret else '')


def _link_old(path, old):
    """A second name for the current file at path (the symlink itself if it is one) for a roll back; a secure
    copy where the filesystem has no hard links."""
    try:
        os.link(path, old, follow_symlinks=False)
        return
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
            raise
    if os.path.islink(path):
        os.symlink(os.readlink(path), old)
    else:
        _copy_nofollow(path, old, keep_mode=True)


class StagedWrite(object):
    """Write several files as one unit: after a crash at any point the files are either all old or all new.

    ``stage()`` finishes or undoes an interrupted earlier switch of the same paths (``recover``), then writes each
    content to a temporary file next to its target (owner, group and final mode from the start, fsync'ed).
    ``commit()`` runs the optional validator on the staged paths, makes the requested backups (only now, 0600 for
    secrets), hard-links each existing target to an ``.adcs-old`` name, writes a journal (JSON, 0600, next to the
    first non-secret target) naming every temp -> target pair with the new content's SHA-256, renames every
    temporary file over its target and removes the journal and the old links. The journal is the commit point:
    the next run rolls forward when it finds one, and removes stray temporary files when it does not. If a rename
    fails, the targets already replaced are restored from the old links. Use as a context manager: leaving the
    block without commit() removes the temporary files.

    Result after commit: ``self.changed`` (bool), ``self.changed_paths``, ``self.backups`` {path: backup}.

    ``locks``: directory locks already held by the caller (``_write_group``; never released here); ``durable=False``:
    ``stage()`` leaves the fsyncs of the temporary files to the caller (``_write_group`` syncs them before any
    rename).
    """

    def __init__(self, specs, validator=None, locks=None, durable=True, listings=None):
        self.specs = list(specs)
        self._listings = listings   # directory listings of the run under the group's locks (_journal._ours)
        self.validator = validator
        self.durable = durable
        self._shared_locks = locks
        self.staged = {}      # path -> temp path
        self.changed_paths = []
        self.backups = {}
        self.changed = False
        self.recovered = {}
        self._done = False
        self._locks = None
        self._kept = {}       # path -> (st_dev, st_ino) of a target whose content was already right
        self._staged_once = False

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.cleanup()
        return False

    def cleanup(self):
        for tmp in self.staged.values():
            _unlink(tmp)
        self.staged = {}
        if self._locks is not None and self._locks is not self._shared_locks:
            self._locks.release()
        self._locks = None

    def _needs_write(self, spec):
        return _read_target(spec.path) != spec.content

    def stage(self):
        if self._locks is None:
            self._locks = self._shared_locks or DirLocks([s.path for s in self.specs]).acquire()
        try:
            self.recovered = _recover([s.path for s in self.specs], self._listings)
        except Exception:
            self.cleanup()
            raise
        for spec in self.specs:
            directory = os.path.dirname(spec.path)
            if not os.path.isdir(directory):
                self.cleanup()
                raise FileOutputError('The directory %s does not exist' % directory)
            if not self._needs_write(spec):
                try:   # the file kept as it is: only this inode may get owner/mode in commit()
                    st = os.lstat(spec.path)
                    self._kept[spec.path] = (st.st_dev, st.st_ino)
                except OSError:
                    pass
                continue
            fd, tmp = None, None
            try:
                fd, tmp = tempfile.mkstemp(prefix='.%s.' % os.path.basename(spec.path), suffix=_NEW_SUFFIX,
                                           dir=directory)
                self.staged[spec.path] = tmp
                _fix_fd_attributes(fd, spec.mode, spec.uid, spec.gid)
                view = memoryview(spec.content)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                if self.durable:
                    os.fsync(fd)
            except (IOError, OSError) as exc:
                self.cleanup()
                raise FileOutputError('Cannot write a temporary file for %s' % spec.path, detail=str(exc))
            finally:
                if fd is not None:
                    os.close(fd)
            _step('staged %s' % spec.path)
        if self.durable:
            for directory in set(os.path.dirname(p) for p in self.staged):
                _fsync_dir(directory)
        self._staged_once = True
        return self.staged

    def _write_journal(self, entries):
        anchor = journal_anchor(self.specs, self.staged)
        jpath = _journal_path(anchor)
        directory = os.path.dirname(jpath)
        tmp = write_journal_file(anchor, entries, durable=True)
        os.rename(tmp, jpath)
        _fsync_dir(directory)
        _step('journal %s' % jpath)
        return jpath

    def validate(self):
        """The validator on the staged paths (the temporary files removed when it raises)."""
        if self.validator is not None and self.staged:
            paths = dict((s.path, self.staged.get(s.path, s.path)) for s in self.specs)
            try:
                self.validator(paths)
            except Exception:
                self.cleanup()
                raise
            self.validator = None   # once

    def commit(self):
        if self._done:
            return self
        if not self.staged and not self._staged_once:
            self.stage()
        self.validate()
        todo = [s for s in self.specs if s.path in self.staged]
        entries = []
        done = []
        jpath = None
        try:
            for spec in todo:
                if spec.backup:
                    backup = make_backup(spec.path, secret=spec.secret)
                    if backup:
                        self.backups[spec.path] = backup
                        _step('backup %s' % spec.path)
            for spec in todo:
                entry = {'path': spec.path, 'tmp': self.staged[spec.path], 'sha256': _sha256(spec.content),
                         'old': None}
                if len(todo) > 1 and os.path.lexists(spec.path):
                    old = self.staged[spec.path][:-len(_NEW_SUFFIX)] + _OLD_SUFFIX
                    _link_old(spec.path, old)
                    entry['old'] = old
                    _step('old link %s' % spec.path)
                entries.append(entry)
            if len(todo) > 1:
                jpath = self._write_journal(entries)
            for spec in todo:
                os.rename(self.staged[spec.path], spec.path)
                done.append(spec.path)
                del self.staged[spec.path]
                _fsync_dir(os.path.dirname(spec.path))
                _step('renamed %s' % spec.path)
        except (IOError, OSError) as exc:
            old_links = dict((e['path'], e['old']) for e in entries)
            for path in reversed(done):
                try:
                    if old_links.get(path):
                        os.rename(old_links[path], path)
                    else:
                        os.unlink(path)
                except OSError:
                    pass
            for old in old_links.values():
                if old and os.path.lexists(old):
                    _unlink(old)
            if jpath:
                _unlink(jpath)
            self.cleanup()
            raise FileOutputError('Replacing the output files failed; the previous files were kept',
                                  detail=str(exc))
        if jpath:
            _unlink(jpath)
            _fsync_dir(os.path.dirname(jpath))
            _step('journal removed %s' % jpath)
        for e in entries:
            if e['old']:
                _unlink(e['old'])
                _step('old link removed %s' % e['path'])
        self.changed_paths = list(done)
        for spec in self.specs:
            # A renamed file got owner/group/mode on its descriptor before the rename; a file kept as it is gets
            # them only if it is still the inode whose content was compared (never a hard link swapped in since).
            if spec.path not in done and spec.path in self._kept and \
                    _apply_attributes_to(spec.path, self._kept[spec.path], spec.mode, spec.uid, spec.gid):
                self.changed_paths.append(spec.path)
        self.changed = bool(self.changed_paths)
        self._done = True
        self.cleanup()   # releases the locks
        return self

    def would_change(self):
        """Check-mode answer: would commit() change anything?"""
        for spec in self.specs:
            if not os.path.lexists(spec.path) or self._needs_write(spec):
                return True
            if attributes_differ(spec.path, spec.mode, spec.uid, spec.gid):
                return True
        return False


def write_journal_file(anchor, entries, durable=True):
    """A journal's content in a new temporary file next to ``anchor`` (0600; fsync'ed when ``durable``); returns its
    name (one of our own temporary names of ``anchor``, so a stray one is removed by ``_journal.recover``)."""
    directory = os.path.dirname(anchor)
    fd, tmp = tempfile.mkstemp(prefix='.%s.' % os.path.basename(anchor), suffix=_NEW_SUFFIX, dir=directory)
    try:
        os.fchmod(fd, KEY_MODE)
        data = json.dumps({'version': 1, 'entries': entries}, indent=1, sort_keys=True).encode('utf-8')
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if durable:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        _unlink(tmp)
        raise
    os.close(fd)
    return tmp


def journal_anchor(specs, staged):
    """The target next to which the journal of a set lives: its first staged non-secret target."""
    return next((s.path for s in specs if s.path in staged and not s.secret),
                next(s.path for s in specs if s.path in staged))


class ComparingWriter(object):
    """A writer that writes nothing: ``write()`` says whether the files would change (what check mode answers)."""

    def write(self, specs, validator=None):
        return {'changed': StagedWrite(list(specs)).would_change(), 'backup_files': {}, 'changed_paths': []}


class ModuleFileWriter(object):
    """Adapter for modules: honours check mode and applies set_fs_attributes_if_different (SELinux context,
    attributes) after the switch. Backups are StagedWrite's (``backup_local``'s names, made after validation,
    0600 for secrets).

    ``group(paths)``: a context in which sets of new files are staged and validated at once but switched together
    when it ends (``_write_group.WriteGroup``); their ``write()`` result holds ``commit`` (a
    ``_write_group.Deferred``: its ``error`` tells, after the group, whether the switch failed). Every write in the
    group, deferred or not, works under the group's directory locks."""

    def __init__(self, module):
        self.module = module
        self._group = None

    def group(self, paths):
        from ansible_collections.adcs.enrollment.plugins.module_utils._write_group import WriteGroup
        return WriteGroup(self, paths)

    def write(self, specs, validator=None):
        specs = list(specs)
        if self.module.check_mode:
            return ComparingWriter().write(specs)
        group = self._group
        if group is not None and group.can_defer(specs):
            return group.defer(StagedWrite(specs, validator=validator, locks=group.locks, durable=False,
                                           listings=group.listings))
        shared = group.locks if group is not None and group.holds(specs) else None
        with StagedWrite(specs, validator=validator, locks=shared,
                         listings=group.listings if shared is not None else None) as sw:
            sw.commit()
        return self.finish(specs, sw)

    def finish(self, specs, sw):
        """The result of a completed switch, after Ansible's pass for the SELinux context and attributes."""
        changed = sw.changed
        for spec in specs:
            file_args = self.module.load_file_common_arguments(self.module.params, path=spec.path)
            # owner/group/mode were set by the switch on descriptors; Ansible's pass (by name) only adds the SELinux
            # context and attributes
            file_args['mode'] = file_args['owner'] = file_args['group'] = None
            changed = self.module.set_fs_attributes_if_different(file_args, changed)
        return {'changed': changed, 'changed_paths': sw.changed_paths,
                'backup_files': dict((k, v) for k, v in sw.backups.items() if k in sw.changed_paths)}
