# -*- coding: utf-8 -*-
# Copyright (c) the adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The compiled code of the collection's module_utils: one job, keeping it in the enrollment cache so that a module
run compiles only the sources that changed since the last run.

Ansible runs a module from a zip of sources (AnsiballZ) that holds no bytecode, and CPython's zipimport compiles
every module it imports twice (once to name its file, once to run it): about 80 ms per enrollment run for the
~50 module_utils it needs, 160 ms under AnsiballZ, ~30 ms for a run answered by its no-op records. This is what
CPython's own ``__pycache__`` does for installed code, kept where the collection already keeps its enrollment
policy (``_policy_cache``) and with the same rules, because loading a cached code object runs it:

- the directory (made 0700 when missing, as the policy cache makes it) must be a real directory owned by the
  effective user and closed to group and others; each file is a regular file owned by the effective user, mode 0600, opened
  with O_NOFOLLOW (``_policy_cache.read_private``); anything else and the module compiles its source as before;
- one file per module, Python bytecode version and optimization level (``bytecode-<module>-<cache tag>[.opt-N].bin``,
  as CPython names its own): CPython's magic number,
  the SHA-256 of the source it was compiled from, the marshalled code. It is used only when both match the source
  being imported (a new collection version or Python rewrites it), never decides anything else;
- written atomically (``_policy_cache.write_private``), never in check mode and never when Python is told not to
  write bytecode (``PYTHONDONTWRITEBYTECODE``, ``-B``); a failure to read or write only means compiling.

``install(params, check_mode)`` puts the finder first in ``sys.meta_path`` for the direct children of this package
(only after the module's options are known: ``policy_cache: false`` turns it off with the policy cache). Sources
come from the same place Python would take them (a directory or the AnsiballZ zip, through zipimport's get_source);
the modules keep their ``__file__`` and their source for tracebacks.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import importlib.machinery
import importlib.util
import marshal
import os
import sys

from ansible_collections.adcs.enrollment.plugins.module_utils import _policy_cache

PACKAGE = __name__.rpartition('.')[0]
PREFIX = 'bytecode-'
MAX_SIZE = 4 * 1024 * 1024   # bytes: larger files are not read
MAGIC = importlib.util.MAGIC_NUMBER


class Finder(object):
    """The meta path finder of the direct children of PACKAGE, loading their code from ``directory``."""

    def __init__(self, directory, write=True):
        self.directory = directory
        self.write = write
        self.hits = 0
        self.misses = 0
        self._zips = {}

    def find_spec(self, fullname, path=None, target=None):
        parent, _dot, name = fullname.rpartition('.')
        if parent != PACKAGE or not name or path is None:
            return None
        for entry in path:
            found = self._source(entry, name)
            if found is not None:
                source, origin = found
                spec = importlib.machinery.ModuleSpec(fullname, Loader(self, fullname, source, origin),
                                                      origin=origin)
                spec.has_location = True
                return spec
        return None   # not ours to find: the next finders decide

    def _source(self, entry, name):
        """(source text, origin) of module ``name`` under the path entry ``entry``, or None."""
        if os.path.isdir(entry):
            origin = os.path.join(entry, name + '.py')
            if not os.path.isfile(origin):   # a package, an extension or a FIFO: Python's own finders decide
                return None
            try:
                with open(origin, 'rb') as handle:
                    return importlib.util.decode_source(handle.read()), origin
            except (OSError, SyntaxError, UnicodeDecodeError):
                return None
        importer = self._zips.get(entry)
        if importer is None:
            import zipimport
            try:
                importer = self._zips[entry] = zipimport.zipimporter(entry)
            except (zipimport.ZipImportError, OSError):
                self._zips[entry] = False
                return None
        if importer is False:
            return None
        try:
            source = importer.get_source(name)
        except Exception:   # not in this zip (ZipImportError), or unreadable
            return None
        return (source, entry.rstrip('/') + '/' + name + '.py') if source is not None else None

    def code(self, fullname, source, origin):
        """The code object of ``source``: the cached one when it was compiled from this very source by this Python,
        else compiled now (and kept)."""
        digest = hashlib.sha256(source.encode('utf-8')).digest()
        # as CPython names its own: the bytecode of -O/-OO runs (asserts, docstrings dropped) is kept apart
        opt = '.opt-%d' % sys.flags.optimize if sys.flags.optimize else ''
        name = '%s%s-%s%s.bin' % (PREFIX, fullname.rpartition('.')[2], sys.implementation.cache_tag, opt)
        try:
            kept = _policy_cache.read_private(self.directory, name, MAX_SIZE)
        except (OSError, _policy_cache.CacheUnsafe):
            kept = None
        if kept is not None and kept[:len(MAGIC)] == MAGIC and kept[len(MAGIC):len(MAGIC) + 32] == digest:
            try:
                code = marshal.loads(kept[len(MAGIC) + 32:])
            except (EOFError, ValueError, TypeError):
                code = None
            if type(code).__name__ == 'code':
                self.hits += 1
                _fix_filename(code, origin)
                return code
        self.misses += 1
        code = compile(source, origin, 'exec', dont_inherit=True)   # the text as decoded (its coding line applied)
        if self.write and not sys.dont_write_bytecode:
            try:
                _policy_cache.write_private(self.directory, name, MAGIC + digest + marshal.dumps(code), create=True)
            except (OSError, ValueError, _policy_cache.CacheUnsafe):
                pass   # an optimization only: the next run compiles again
        return code


def _fix_filename(code, origin):
    """Tracebacks name the file the module comes from now (AnsiballZ's zip is in a new directory every run), as
    CPython's own loader does for its cached bytecode."""
    try:
        import _imp
        _imp._fix_co_filename(code, origin)
    except (ImportError, AttributeError, TypeError):
        pass


class Loader(object):
    """Runs one module from its cached or compiled code; gives its source to tracebacks."""

    def __init__(self, finder, fullname, source, origin):
        self.finder = finder
        self.name = fullname
        self.source = source
        self.path = origin

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        exec(self.finder.code(self.name, self.source, self.path), module.__dict__)

    def get_source(self, fullname):
        return self.source

    def get_filename(self, fullname):
        return self.path

    def is_package(self, fullname):
        return False


def installed():
    """The Finder in sys.meta_path, or None."""
    for finder in sys.meta_path:
        if isinstance(finder, Finder):
            return finder
    return None


def install(params, check_mode=False):
    """Puts the Finder first in sys.meta_path for the run of a module whose options are ``params`` (the policy
    cache's: ``policy_cache``, ``policy_cache_dir``); returns it, or None when the cache is off."""
    uninstall()
    if not params.get('policy_cache'):
        return None
    finder = Finder(params.get('policy_cache_dir') or _policy_cache.default_dir(), write=not check_mode)
    sys.meta_path.insert(0, finder)
    return finder


def uninstall():
    """Removes the Finder from sys.meta_path (the modules it loaded stay loaded)."""
    sys.meta_path[:] = [finder for finder in sys.meta_path if not isinstance(finder, Finder)]
