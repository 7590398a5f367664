# -*- coding: utf-8 -*-
# Copyright (c) the adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Group commit: one job, switching the new files of the requests of one run into place together, with one sync.

On its own every set of files (``_staged.StagedWrite``: key, certificate, chain...) costs about eight fsyncs (each
temporary file, the journal, the directory after each rename and after the journal's removal). A set whose targets
do not exist yet replaces nothing, so nothing is lost by switching it a little later: inside a ``WriteGroup`` such
a set is staged (temporary files next to the targets, without fsync) and validated at once, and ``flush()`` (when
the group ends, or every ``FLUSH_EVERY`` sets) switches all of them: the journals of the sets of several files are
written, ONE sync of the filesystems holding the temporary files and journals makes them durable (``syncfs``; an
fsync per file where there is none), the journals are put in place (the commit points; one fsync per directory),
every temporary file is renamed over its target, one fsync per directory, the journals are removed, one fsync per
directory. A kill or a power loss at any step leaves each set absent or complete: the next run's
``_journal.recover`` removes temporary files that no journal names and rolls a set with a journal forward.

Sets that replace existing files are switched at once as before (old links, journal, fsync at every step), under
the group's directory locks: the group holds the locks of all the directories of the run (sorted, so two runs never
deadlock) from its start to its end. A set whose targets appeared after staging is switched that careful way at
flush time. The results of deferred sets are final only after the group: ``Deferred.error`` tells a failed switch.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import sys

from ansible_collections.adcs.enrollment.plugins.module_utils._errors import AdcsError, FileOutputError
from ansible_collections.adcs.enrollment.plugins.module_utils._files import _fsync_dir, _sha256, _unlink
from ansible_collections.adcs.enrollment.plugins.module_utils._journal import DirLocks, _journal_path
from ansible_collections.adcs.enrollment.plugins.module_utils._staged import (
    _step, journal_anchor, write_journal_file,
)

FLUSH_EVERY = 64   # sets switched per sync: bounds what a killed run leaves unswitched


class Deferred(object):
    """The pending switch of one set. After the group: ``error`` is None (switched) or the AdcsError of a failed
    switch (nothing of the set was written). ``then(fn)`` runs fn after a successful switch (at once when done)."""

    def __init__(self, sw, finish):
        self.sw = sw
        self.error = None
        self.done = False
        self.result = None
        self.renamed = []
        self._finish = finish
        self._then = []

    def then(self, fn):
        if not self.done:
            self._then.append(fn)
        elif self.error is None:
            fn()

    def complete(self, error=None):
        self.done = True
        self.error = error
        if error is None:
            self.result = self._finish(self.sw)
            for fn in self._then:
                fn()
        self._then = []


def _normalized(path):
    return os.path.abspath(os.path.expanduser(path))


def _libc_syncfs():
    """libc's syncfs(2) (Linux: waits until the filesystem's data is written, and reports write-back errors since
    5.8), or None."""
    if not sys.platform.startswith('linux'):
        return None
    try:
        import ctypes
        syncfs = ctypes.CDLL(None, use_errno=True).syncfs
    except (ImportError, OSError, AttributeError):
        return None
    syncfs.argtypes = [ctypes.c_int]
    syncfs.restype = ctypes.c_int

    def call(fd):
        if syncfs(fd) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, os.strerror(errno))
    return call


def sync_files(paths, syncfs=None):
    """The content of the files at ``paths`` is durable when this returns: one syncfs per filesystem where libc has
    it (``syncfs``: a replacement for tests), else an fsync of each file."""
    syncfs = syncfs or _libc_syncfs()
    if syncfs is None:
        targets = list(paths)
    else:
        by_device = {}
        for path in paths:
            by_device.setdefault(os.lstat(path).st_dev, path)
        targets = list(by_device.values())
    for path in targets:
        fd = os.open(path, os.O_RDONLY | getattr(os, 'O_NOFOLLOW', 0))
        try:
            (syncfs or os.fsync)(fd)
        finally:
            os.close(fd)


class WriteGroup(object):
    """Context of ``_staged.ModuleFileWriter.group(paths)``: ``paths`` are every output path of the run (their
    directories are locked for the whole group)."""

    def __init__(self, writer, paths, flush_every=FLUSH_EVERY, syncfs=None):
        self.writer = writer
        self.paths = [_normalized(p) for p in paths if p]
        self.flush_every = flush_every
        self.syncfs = syncfs
        self.locks = None
        self.listings = {}   # directory listings taken under the group's locks (_journal._ours)
        self._pending = []
        self.flushes = 0

    def __enter__(self):
        self.locks = DirLocks(self.paths).acquire()
        self.writer._group = self
        return self

    def __exit__(self, *exc):
        try:
            self.flush()
        finally:
            self.writer._group = None
            self.locks.release()
        return False

    def holds(self, specs):
        """Whether the group holds the locks of the directories of ``specs``."""
        return all(self.locks.holds(os.path.dirname(s.path)) for s in specs)

    def can_defer(self, specs):
        """A set of new files only (no target exists, not even a symlink), in directories the group locked."""
        return self.holds(specs) and not any(os.path.lexists(s.path) for s in specs)

    def defer(self, sw):
        """Stage and validate ``sw`` (a StagedWrite made with durable=False) now; switch it at the next flush."""
        sw.stage()
        sw.validate()
        if not sw.staged:   # nothing to write (cannot happen for new files; kept for safety)
            sw.commit()
            return self.writer.finish(sw.specs, sw)
        pending = Deferred(sw, lambda done: self.writer.finish(done.specs, done))
        self._pending.append(pending)
        result = {'changed': True, 'changed_paths': list(sw.staged), 'backup_files': {}, 'commit': pending}
        if len(self._pending) >= self.flush_every:
            self.flush()
        return result

    # ---- the switch ----
    def flush(self):
        pending, self._pending = self._pending, []
        if not pending:
            return
        self.flushes += 1
        journals = {}   # id(Deferred) -> (temporary name, journal path)
        try:
            for item in pending:
                sw = item.sw
                if len(sw.staged) > 1:
                    entries = [{'path': s.path, 'tmp': sw.staged[s.path], 'sha256': _sha256(s.content), 'old': None}
                               for s in sw.specs if s.path in sw.staged]
                    anchor = journal_anchor(sw.specs, sw.staged)
                    journals[id(item)] = (write_journal_file(anchor, entries, durable=False), _journal_path(anchor))
            sync_files([t for item in pending for t in item.sw.staged.values()] + [j[0] for j in journals.values()],
                       self.syncfs)
            _step('synced %d sets' % len(pending))
        except (IOError, OSError) as exc:
            for item in pending:
                self._fail(item, journals.get(id(item)), exc)
            return
        switching = []
        for item in pending:
            if any(os.path.lexists(p) for p in item.sw.staged):
                self._careful(item, journals.get(id(item)))   # a target appeared since staging
            else:
                switching.append(item)
        switching = self._put_journals(switching, journals)
        self._rename(switching, journals)
        removed = set()
        for item in switching:
            if id(item) in journals:
                jpath = journals[id(item)][1]
                _unlink(jpath)
                removed.add(os.path.dirname(jpath))
        for directory in sorted(removed):
            _fsync_dir(directory)
        for item in switching:
            if id(item) in journals:
                _step('journal removed %s' % journals[id(item)][1])
        for item in switching:
            sw = item.sw
            sw.changed_paths, sw.changed, sw._done = list(item.renamed), True, True
            sw.cleanup()
            item.complete()

    def _put_journals(self, items, journals):
        """The journals of the sets in place (their commit points), durable; returns the sets still going."""
        going, directories = [], set()
        for item in items:
            if id(item) in journals:
                tmp, jpath = journals[id(item)]
                try:
                    os.rename(tmp, jpath)
                except OSError as exc:
                    self._fail(item, (tmp, jpath), exc)
                    continue
                directories.add(os.path.dirname(jpath))
            going.append(item)
        for directory in sorted(directories):
            _fsync_dir(directory)
        for item in going:
            if id(item) in journals:
                _step('journal %s' % journals[id(item)][1])
        return going

    def _rename(self, items, journals):
        directories = set()
        switched = set()   # paths of the sets switched so far: a file two sets share stays with the one that is done
        for item in list(items):
            item.renamed = []
            try:
                for spec in item.sw.specs:
                    if spec.path in item.sw.staged:
                        os.rename(item.sw.staged[spec.path], spec.path)
                        item.renamed.append(spec.path)
                        _step('renamed %s' % spec.path)
            except OSError as exc:
                for path in item.renamed:   # new files only: taking them away restores the set's old state
                    if path not in switched:
                        _unlink(path)
                items.remove(item)
                self._fail(item, journals.get(id(item)), exc)
                continue
            for path in item.renamed:
                del item.sw.staged[path]
                directories.add(os.path.dirname(path))
                switched.add(path)
        for directory in sorted(directories):
            _fsync_dir(directory)

    def _careful(self, item, journal):
        if journal:
            _unlink(journal[0])
        sw = item.sw
        sw.durable = True
        try:
            sw.commit()   # the temporary files are durable (synced): old links, journal, renames as always
        except AdcsError as exc:
            item.complete(exc)
            return
        item.complete()

    def _fail(self, item, journal, exc):
        for name in journal or ():
            _unlink(name)
        item.sw.cleanup()
        error = exc if isinstance(exc, AdcsError) else FileOutputError(
            'Writing the output files failed; none of %s was written' % ', '.join(
                sorted(os.path.basename(s.path) for s in item.sw.specs)), detail=str(exc))
        item.complete(error)
