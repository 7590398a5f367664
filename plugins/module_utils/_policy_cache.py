# -*- coding: utf-8 -*-
# Copyright (c) the adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The enrollment policy cache: one job, keeping what a discovery learned from Active Directory on the host, so that
the next runs within its lifetime need no LDAP at all (as Windows keeps its certificate template cache).

What is kept (``_directory.Directory`` decides; nothing secret): the enrollment services (CA name, dNSHostName, the
templates each publishes, the CA certificates' facts), the decoded templates used (``_templates.decode_template``:
key rule, EKUs, name flags, renewal period), template renewal periods and the requester's account names (for
templates that build names from AD). One JSON file per directory identity (``identity()``: domain, domain
controller, principal, auth kind and the LDAP transport settings, hashed into the file name and stored in full in
the file); each entry carries the time it was read and counts only for ``ttl`` seconds (default 8 hours, as the
Windows template cache).

The cache decides which host receives the credentials and which key is made, so it is trusted only when nobody
else can have written it: the directory must be a real directory (never a symlink, opened with O_NOFOLLOW and
checked with fstat) owned by the effective user with no group/other bits (0700), the file a regular file (O_NOFOLLOW,
fstat) owned by the effective user, mode 0600, at most ``MAX_SIZE`` bytes, of this format version and identity.
Anything else: the cache is ignored, Active Directory is read, and ``warning`` says why (the module shows it). It
is written atomically (a 0600 temporary file in the same directory, renamed over the old one) and never in check
mode. Default location: ``/var/cache/adcs-enrollment`` for root (FHS: data an application can regenerate),
``$XDG_CACHE_HOME/adcs-enrollment`` or ``~/.cache/adcs-enrollment`` (home of the effective user) otherwise.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import hashlib
import json
import os
import stat
import time

VERSION = 1
DEFAULT_TTL = 8 * 3600            # seconds: the Windows certificate template cache is refreshed after 8 hours
MAX_SIZE = 4 * 1024 * 1024        # bytes: a cache file larger than this is not read
FUTURE_SLACK = 300                # seconds: an entry dated further in the future than this is not trusted
ENV_DIR = 'ADCS_POLICY_CACHE_DIR'   # the environment's default for policy_cache_dir (tests use their own)
IDENTITY_OPTIONS = ('domain', 'domain_controller', 'username', 'auth', 'kerberos_keytab', 'kerberos_ccache',
                    'ldap_scheme', 'ldap_port', 'validate_certs', 'ca_bundle', 'ldap_allow_plaintext')


# What the CA answers when the policy a cached answer reflects may have changed: the template is no longer
# published or its rights changed (CERTSRV_E_UNSUPPORTED_CERT_TYPE, CERTSRV_E_TEMPLATE_DENIED), the key rule changed
# (CERTSRV_E_KEY_LENGTH, NTE_BAD_ALGID), another CA answers at the cached host (E_INVALIDARG). Not E_ACCESSDENIED:
# that is what a wrong password gets, and a retry (with its LDAP bind) would count two failed logons per run
# against the account's lockout threshold instead of one.
POLICY_CHANGED_HRESULTS = frozenset((0x80094800, 0x80094012, 0x80094811, 0x80090008, 0x80070057))


def says_policy_changed(exc):
    """Whether a failure of a request made with cached policy calls for reading Active Directory again and retrying
    once: one of POLICY_CHANGED_HRESULTS, or the cached CA is unavailable (it may be gone)."""
    from ansible_collections.adcs.enrollment.plugins.module_utils._errors import CaUnavailable
    if isinstance(exc, CaUnavailable):
        return True
    hresult = getattr(exc, 'hresult', None)
    return hresult is not None and (hresult & 0xFFFFFFFF) in POLICY_CHANGED_HRESULTS


class CacheUnsafe(Exception):
    """The cache directory or file is not one only the effective user can have written."""


def default_dir(euid=None, environ=None):
    """Where the cache lives by default for the effective user (see the module docstring)."""
    euid = os.geteuid() if euid is None else euid
    environ = os.environ if environ is None else environ
    if environ.get(ENV_DIR):
        return environ[ENV_DIR]
    if euid == 0:
        return '/var/cache/adcs-enrollment'
    base = environ.get('XDG_CACHE_HOME')
    if not base or not os.path.isabs(base):
        import pwd
        try:
            home = pwd.getpwuid(euid).pw_dir
        except KeyError:
            home = os.path.expanduser('~')
        base = os.path.join(home, '.cache')
    return os.path.join(base, 'adcs-enrollment')


def identity(params):
    """The directory identity a cache file belongs to, from the connection options (never a secret)."""
    out = {}
    for name in IDENTITY_OPTIONS:
        value = params.get(name)
        if isinstance(value, str) and name in ('domain', 'domain_controller', 'username'):
            value = value.lower().rstrip('.')
        out[name] = value
    return out


def from_params(params, check_mode=False):
    """The PolicyCache the options ask for (``policy_cache``, ``policy_cache_dir``, ``policy_cache_ttl``), or None
    when it is off."""
    if not params.get('policy_cache'):
        return None
    ttl = params.get('policy_cache_ttl')
    if ttl is None:
        ttl = DEFAULT_TTL
    if ttl <= 0:
        return None
    return PolicyCache(params.get('policy_cache_dir') or default_dir(), identity(params), ttl,
                       read_only=check_mode)


class PolicyCache(object):
    """``get(kind, name)`` -> the value kept (None: not kept, expired or the cache not trusted), ``put(kind, name,
    value)``, ``forget()`` (nothing kept counts any more; the next save writes only what is read after it) and
    ``save()``. ``warning``: why the cache was ignored or not written, or None."""

    def __init__(self, directory, ident, ttl=DEFAULT_TTL, now=time.time, read_only=False):
        self.directory = directory
        self.identity = ident
        self.ttl = ttl
        self.now = now
        self.read_only = read_only
        self.name = hashlib.sha256(json.dumps(ident, sort_keys=True).encode('utf-8')).hexdigest()[:40] + '.json'
        self.path = os.path.join(directory, self.name)
        self.warning = None
        self.hits = 0
        self._entries = None
        self._dirty = False

    # ---- reading ----
    def _load(self):
        if self._entries is None:
            self._entries = {}
            try:
                data = self._read()
            except CacheUnsafe as exc:
                self._warn('The enrollment policy cache %s was ignored (%s); Active Directory was read instead'
                           % (self.path, exc))
                return self._entries
            if data is not None:
                entries = data.get('entries') if data.get('version') == VERSION else None
                if data.get('identity') != self.identity or not isinstance(entries, dict):
                    self._warn('The enrollment policy cache %s is of another format or identity and was ignored; '
                               'Active Directory was read instead' % self.path)
                else:
                    self._entries = entries
        return self._entries

    def _read(self):
        """The parsed cache file, None when there is none yet; CacheUnsafe when it cannot be trusted."""
        content = read_private(self.directory, self.name, MAX_SIZE)
        if content is None:
            return None
        try:
            data = json.loads(content.decode('utf-8'))
        except ValueError:
            raise CacheUnsafe('it does not parse as JSON')
        if not isinstance(data, dict):
            raise CacheUnsafe('it does not hold a JSON object')
        return data

    def get(self, kind, name):
        entry = self._load().get(_key(kind, name))
        if not isinstance(entry, dict) or entry.get('value') is None:
            return None
        when, now = entry.get('at'), self.now()
        if not isinstance(when, (int, float)) or now - when > self.ttl or when > now + FUTURE_SLACK:
            return None
        self.hits += 1
        return entry['value']

    def template(self, name):
        """The decoded template kept for ``name`` (``_directory.Directory.template_info``), or None."""
        return self.get('template', name)

    # ---- writing ----
    def put(self, kind, name, value):
        if value is None:
            return
        self._load()[_key(kind, name)] = {'at': self.now(), 'value': value}
        self._dirty = True

    def forget(self):
        """Nothing kept counts from now on (the policy changed); the next save keeps only what is read after."""
        self._entries = {}
        self._dirty = True

    def save(self):
        """Writes the entries when something was read from Active Directory (never in check mode); a failure is only
        a ``warning``: the cache is an optimization."""
        if not self._dirty or self.read_only:
            return
        self._dirty = False
        now = self.now()
        entries = dict((k, v) for k, v in self._entries.items()
                       if isinstance(v, dict) and isinstance(v.get('at'), (int, float)) and now - v['at'] <= self.ttl)
        data = json.dumps({'version': VERSION, 'identity': self.identity, 'entries': entries},
                          sort_keys=True).encode('utf-8')
        try:
            self._write(data)
        except (OSError, CacheUnsafe) as exc:
            self._warn('The enrollment policy cache %s could not be written (%s); the next run reads Active '
                       'Directory again' % (self.path, getattr(exc, 'strerror', None) or exc))

    def _write(self, data):
        write_private(self.directory, self.name, data, create=True)

    def _warn(self, text):
        if self.warning is None:
            self.warning = text


def read_private(directory, name, max_size):
    """The content of the file ``name`` in the cache ``directory``, None when either does not exist; CacheUnsafe
    when it cannot be trusted (see the module docstring) or is larger than ``max_size`` bytes."""
    try:
        dir_fd = _open_dir(directory)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return None
        raise CacheUnsafe(_open_error('its directory', exc, directory))
    try:
        _check_dir(dir_fd)
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, 'O_CLOEXEC', 0),
                         dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                return None
            raise CacheUnsafe(_open_error('the file', exc, os.path.join(directory, name)))
        try:
            info = _private(fd, stat.S_ISREG, 'not a regular file', '', 'mode')
            if info.st_size > max_size:
                raise CacheUnsafe('larger than %d bytes' % max_size)
            chunks, size = [], 0
            while True:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                size += len(chunk)
                if size > max_size:
                    raise CacheUnsafe('larger than %d bytes' % max_size)
                chunks.append(chunk)
        finally:
            os.close(fd)
    finally:
        os.close(dir_fd)
    return b''.join(chunks)


def write_private(directory, name, data, create=False):
    """Writes ``data`` as the file ``name`` of the cache ``directory`` atomically (a 0600 temporary file renamed over
    it); ``create``: make the directory (0700) when it does not exist. Raises OSError or CacheUnsafe."""
    try:
        dir_fd = _open_dir(directory)
    except OSError as exc:
        if exc.errno != errno.ENOENT or not create:
            raise
        parent = os.path.dirname(os.path.abspath(directory))
        if not os.path.isdir(parent):
            os.makedirs(parent, 0o755)
        try:
            os.mkdir(directory, 0o700)
        except OSError as made:
            if made.errno != errno.EEXIST:
                raise
        dir_fd = _open_dir(directory)
    try:
        _check_dir(dir_fd)
        temp = '.%s.%d.%s.tmp' % (name, os.getpid(), os.urandom(4).hex())   # never one a killed run left
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, 'O_CLOEXEC', 0),
                     0o600, dir_fd=dir_fd)
        try:
            try:
                os.fchmod(fd, 0o600)   # whatever the umask
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
            finally:
                os.close(fd)
            os.rename(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            try:
                os.unlink(temp, dir_fd=dir_fd)
            except OSError:
                pass
            raise
    finally:
        os.close(dir_fd)


def _key(kind, name):
    return '%s:%s' % (kind, (name or '').lower())


def _open_error(what, exc, path):
    if exc.errno == errno.ELOOP or (exc.errno == errno.ENOTDIR and os.path.islink(path)):
        return '%s is a symbolic link' % what
    return '%s cannot be opened: %s' % (what, exc.strerror or exc)


def _open_dir(path):
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, 'O_CLOEXEC', 0))


def _check_dir(dir_fd):
    _private(dir_fd, stat.S_ISDIR, 'its directory is not a directory', 'its directory is ', 'its directory has mode')


def _private(fd, kind, not_kind, subject, mode_words):
    """The fstat of ``fd`` when it is of ``kind`` (stat.S_ISREG/S_ISDIR), owned by the effective user and closed to
    group and others; else CacheUnsafe (the messages name the file, or with ``subject`` its directory)."""
    info = os.fstat(fd)
    if not kind(info.st_mode):
        raise CacheUnsafe(not_kind)
    if info.st_uid != os.geteuid():
        raise CacheUnsafe('%sowned by uid %d, not by the effective user' % (subject, info.st_uid))
    if info.st_mode & 0o077:
        raise CacheUnsafe('%s %04o: group or others have access' % (mode_words, stat.S_IMODE(info.st_mode)))
    return info
