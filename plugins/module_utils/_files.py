# -*- coding: utf-8 -*-
# Copyright (c) adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Output files: one job, putting keys, certificates, chains and PKCS#12 bundles on disk safely.

Every write goes to a temporary file in the target's directory (created with the final mode, so a key is never
readable by others, even for an instant), is fsync'ed, gets owner/group, and is renamed over the target; the
directory is fsync'ed after the rename. Several files (key + certificate + chain + full chain + PKCS#12) switch as
one unit (``StagedWrite``): all temporary files are complete and validated first, a journal is the commit point, and
a process killed at any step leaves the old set or the new set, completed by the next run (``recover``). Owner,
group and mode are set on open file descriptors, never through a symlink; a symlink at a target is replaced, not
followed. Modes are taken as ``ansible.builtin.file`` takes them (``parse_mode``). Backups (``path.<pid>.<time>~``,
like Ansible's ``backup_local``) are made on request, after validation, 0600 for secrets from their first instant.
``check_output_paths`` tells before the CA is contacted whether the outputs can be written. Everything planted in an
output directory by someone else is distrusted: reads (``read_file``) never follow symlinks, never open FIFOs and are
bounded; a journal is acted on only when it is ours and names only this task's outputs and our temporary names; the
lock that serializes runs lives in a private directory of the effective user, not on the output directory.

The core works without Ansible (symbolic modes use ansible-core's parser); ``ModuleFileWriter`` plugs in
AnsibleModule's ``set_fs_attributes_if_different`` (SELinux context, attributes) and check mode.
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
import tempfile
import time
import traceback

from ansible_collections.adcs.enrollment.plugins.module_utils._errors import FileOutputError, InvalidInput

try:
    import grp
    import pwd
except ImportError:  # pragma: no cover - not on POSIX
    grp = pwd = None

try:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.serialization import pkcs12
    HAS_CRYPTOGRAPHY = True
    CRYPTOGRAPHY_IMPORT_ERROR = None
except ImportError:
    HAS_CRYPTOGRAPHY = False
    CRYPTOGRAPHY_IMPORT_ERROR = traceback.format_exc()

KEY_MODE = 0o600
CERT_MODE = 0o644
FORMATS = ('pem', 'der')
SECRET_FORBIDDEN_BITS = 0o027   # group write, and anything for others

# Names of our own files next to a target: new contents, hard links to the old files, the journal of a switch.
_NEW_SUFFIX = '.adcs-new'
_OLD_SUFFIX = '.adcs-old'
_JOURNAL_SUFFIX = '.adcs-journal'
_LEGACY_SUFFIXES = ('.tmp', '.tmp.rollback')   # what earlier versions left behind after a crash

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


class _ModeBase(object):
    """The stat-like object ansible-core's symbolic mode parser needs (a regular file with mode ``base``)."""

    def __init__(self, base):
        self.st_mode = stat.S_IFREG | base


def parse_mode(mode, default=None, base=None):
    """A file mode exactly as ``ansible.builtin.file`` takes it: an integer is the mode itself (YAML ``0640``
    unquoted is 416 == 0o640), a string is octal (``'0640'``, ``'640'``) or symbolic (``'u=rw,g=r'``, applied to
    ``base``: the existing file's mode, else ``default``)."""
    if mode is None:
        return default
    if isinstance(mode, bool):
        raise InvalidInput('File mode %r must be octal, like "0600", or symbolic, like "u=rw,g=r"' % (mode,))
    if isinstance(mode, int):
        value = mode
    else:
        text = str(mode).strip()
        try:
            value = int(text, 8)
        except ValueError:
            value = _symbolic_mode(text, mode, default if base is None else base)
    if value < 0 or value != stat.S_IMODE(value):
        raise InvalidInput('File mode %r is out of range (only permission bits, at most 07777)' % (mode,))
    return value


def _symbolic_mode(text, original, base):
    try:
        from ansible.module_utils.basic import AnsibleModule
        return AnsibleModule._symbolic_mode_to_octal(_ModeBase(base or 0), text)
    except ImportError:  # pragma: no cover - module_utils always run with ansible-core's module_utils
        raise InvalidInput('File mode %r: symbolic modes need ansible-core; give it in octal' % (original,))
    except Exception:
        raise InvalidInput('File mode %r must be octal, like "0600", or symbolic, like "u=rw,g=r"' % (original,))


def check_secret_mode(mode, option='private_key_mode'):
    """Refuse a private key mode that lets the group write or others read/write/execute; returns the int mode."""
    value = parse_mode(mode, KEY_MODE, base=KEY_MODE)
    if value & SECRET_FORBIDDEN_BITS:
        given = '%04o' % value if not isinstance(mode, str) or mode.strip().lstrip('0') == ('%o' % value) else \
            '"%s" (%04o)' % (mode, value)
        raise InvalidInput('%s %s would make the private key writable by its group or accessible to other users; use '
                           '0600, or 0640 for a group that only reads it' % (option, given))
    return value


def current_secret_mode(path):
    """Mode of the current private key file, kept for its replacement when no mode is given. Never through a
    symlink: a symlink or special file there gives None (the 0600 default); a mode that is not safe for a key is
    refused (the user gives private_key_mode to choose)."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    return check_secret_mode(stat.S_IMODE(st.st_mode), 'The current mode of the private key %s,' % path)


def resolve_uid(owner):
    if owner is None or owner == '':
        return -1
    if isinstance(owner, int) or str(owner).isdigit():
        return int(owner)
    try:
        return pwd.getpwnam(owner).pw_uid
    except (KeyError, AttributeError):
        raise InvalidInput('Unknown user %r' % (owner,))


def resolve_gid(group):
    if group is None or group == '':
        return -1
    if isinstance(group, int) or str(group).isdigit():
        return int(group)
    try:
        return grp.getgrnam(group).gr_gid
    except (KeyError, AttributeError):
        raise InvalidInput('Unknown group %r' % (group,))


MAX_READ_SIZE = 8 << 20   # read_file: keys, certificates, chains, PKCS#12 bundles, records are far smaller


def read_file(path, max_size=MAX_READ_SIZE, private=False, replaceable=False):
    """Content of the regular file at path as bytes, or None if it does not exist.

    Never through a symlink, never blocking on a FIFO, never more than ``max_size`` bytes (a symlink to /dev/zero
    planted in a writable directory is refused, not read). ``private``: the file must also be owned by the effective
    user and not writable by its group or others (a record someone else could have planted). ``replaceable``: the
    caller only compares an output it is about to write; a symlink or special file there reads as absent (it is
    replaced, never followed)."""
    fd = _open_nofollow(path)
    if fd is None:
        return None
    if fd is _NOT_REGULAR:
        if replaceable:
            return None
        raise FileOutputError('%s is a symbolic link or not a regular file; it is not read' % path,
                              remedy='Remove it or replace it with the regular file it should be (the next write '
                                     'of that path replaces a symbolic link with a regular file), or point the '
                                     'option at the real file.')
    try:
        st = os.fstat(fd)
        if private and (st.st_uid != os.geteuid() or st.st_mode & 0o022):
            raise FileOutputError('%s is not owned by user %s or is writable by other users; it is not trusted'
                                  % (path, _user_name()))
        if st.st_size > max_size:
            raise FileOutputError('%s is larger than %d bytes; it is not read' % (path, max_size))
        chunks, total = [], 0
        while True:
            data = os.read(fd, 1 << 20)
            if not data:
                break
            total += len(data)
            if total > max_size:
                raise FileOutputError('%s is larger than %d bytes; it is not read' % (path, max_size))
            chunks.append(data)
        return b''.join(chunks)
    except OSError as exc:
        raise FileOutputError('Cannot read %s' % path, detail=str(exc))
    finally:
        os.close(fd)


_NOT_REGULAR = object()   # _read_target: the path is a symlink, FIFO, device...: never ours to keep


def _open_nofollow(path, flags=os.O_RDONLY):
    """fd of the regular file at path (never through a symlink, never blocking on a FIFO), None if absent,
    _NOT_REGULAR for anything else."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, 'O_CLOEXEC', 0))
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return None
        if exc.errno in (errno.ELOOP, errno.EMLINK, errno.ENXIO):
            return _NOT_REGULAR
        if exc.errno == errno.EISDIR:
            raise FileOutputError('%s is a directory' % path)
        raise FileOutputError('Cannot read %s' % path, detail=str(exc))
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        if os.path.isdir(path) and not os.path.islink(path):
            raise FileOutputError('%s is a directory' % path)
        return _NOT_REGULAR
    return fd


def _read_target(path):
    """Content of the regular file at path, None if absent, _NOT_REGULAR for a symlink or special file."""
    fd = _open_nofollow(path)
    if fd is None or fd is _NOT_REGULAR:
        return fd
    try:
        chunks = []
        while True:
            data = os.read(fd, 1 << 20)
            if not data:
                break
            chunks.append(data)
        return b''.join(chunks)
    finally:
        os.close(fd)


def _sha256(data):
    return hashlib.sha256(data).hexdigest()


def backup_path(path, now=None):
    stamp = time.strftime('%Y-%m-%d@%H:%M:%S', time.localtime(now or time.time()))
    candidate = '%s.%d.%s~' % (path, os.getpid(), stamp)
    n = 0
    while os.path.lexists(candidate):
        n += 1
        candidate = '%s.%d.%s.%d~' % (path, os.getpid(), stamp, n)
    return candidate


def make_backup(path, secret=False):
    """Copy the regular file at path (never through a symlink) to a backup file (``backup_local``'s name).

    The backup is created 0600 from the first instant (O_EXCL, umask-independent); a secret's backup stays 0600, any
    other file gets the original's mode once complete. Owner/group follow the original. Returns the backup's name,
    or None when path is absent or not a regular file."""
    if _read_target(path) in (None, _NOT_REGULAR):
        return None
    dest = backup_path(path)
    try:
        _copy_nofollow(path, dest, keep_mode=not secret)
    except (IOError, OSError) as exc:
        raise FileOutputError('Cannot back up %s' % path, detail=str(exc))
    return dest


def _copy_nofollow(path, dest, keep_mode):
    """Copy the regular file at path to the new file dest: created 0600 (O_EXCL, never through a symlink), owner
    and group of the original, its mode only once complete when keep_mode."""
    src = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        st = os.fstat(src)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, 'not a regular file')
        out = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, KEY_MODE)
        try:
            os.fchmod(out, KEY_MODE)
            try:
                os.fchown(out, st.st_uid, st.st_gid)
            except OSError:
                pass
            while True:
                data = os.read(src, 1 << 20)
                if not data:
                    break
                view = memoryview(data)
                while view:
                    view = view[os.write(out, view):]
            if keep_mode:
                os.fchmod(out, stat.S_IMODE(st.st_mode))
            os.fsync(out)
        except BaseException:
            os.close(out)
            out = None
            _unlink(dest)
            raise
        finally:
            if out is not None:
                os.close(out)
    finally:
        os.close(src)


def _unlink(path):
    try:
        os.unlink(path)
        return True
    except OSError:
        return False


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


def _fsync_dir(directory):
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def attributes_differ(path, mode=None, uid=-1, gid=-1):
    """Whether the file at path (the path itself, not a symlink's target) lacks the mode/owner/group."""
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        return True
    if mode is not None and (st.st_mode & 0o7777) != mode:
        return True
    if uid != -1 and st.st_uid != uid:
        return True
    if gid != -1 and st.st_gid != gid:
        return True
    return False


def _fix_fd_attributes(fd, mode=None, uid=-1, gid=-1):
    """Owner/group then mode (a chown clears set-id bits) on an open file; True if anything changed."""
    st = os.fstat(fd)
    changed = False
    if (uid != -1 and st.st_uid != uid) or (gid != -1 and st.st_gid != gid):
        os.fchown(fd, uid, gid)
        changed = True
    if mode is not None and (changed or stat.S_IMODE(st.st_mode) != mode):
        os.fchmod(fd, mode)
        changed = changed or stat.S_IMODE(st.st_mode) != mode
    return changed


def apply_attributes(path, mode=None, uid=-1, gid=-1):
    """Set mode/owner/group of the regular file at path if different (never through a symlink: a symlink there
    is an error); return True if anything changed."""
    fd = _open_nofollow(path)
    if fd is None:
        raise FileOutputError('Cannot set owner/group/mode of %s: it does not exist' % path)
    if fd is _NOT_REGULAR:
        raise FileOutputError('Cannot set owner/group/mode of %s: it is a symbolic link or not a regular file; '
                              'it is never followed' % path)
    try:
        return _fix_fd_attributes(fd, mode, uid, gid)
    except OSError as exc:
        raise FileOutputError('Cannot set owner/group/mode of %s' % path, detail=str(exc))
    finally:
        os.close(fd)


def _apply_attributes_to(path, inode, mode=None, uid=-1, gid=-1):
    """apply_attributes on the regular file at path only if it is still the inode (st_dev, st_ino) given."""
    fd = _open_nofollow(path)
    if fd is None or fd is _NOT_REGULAR:
        raise FileOutputError('%s was replaced while the files were written; its owner/group/mode were not set'
                              % path, remedy='Check who else writes in that directory, then run again.')
    try:
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != inode:
            raise FileOutputError('%s was replaced while the files were written; its owner/group/mode were not set'
                                  % path, remedy='Check who else writes in that directory, then run again.')
        return _fix_fd_attributes(fd, mode, uid, gid)
    except OSError as exc:
        raise FileOutputError('Cannot set owner/group/mode of %s' % path, detail=str(exc))
    finally:
        os.close(fd)


def _can_write_dir(directory):
    """Effective-uid write check of a directory: access() and a probe file created and removed there."""
    if not os.access(directory, os.W_OK | os.X_OK, effective_ids=os.access in os.supports_effective_ids):
        return False
    try:
        fd, probe = tempfile.mkstemp(prefix='.adcs-probe.', dir=directory)
    except OSError:
        return False
    os.close(fd)
    _unlink(probe)
    return True


def check_output_paths(paths, probe=True):
    """Before the CA is contacted: every output path's directory exists and is writable by the effective user,
    and no output path is a directory. ``paths``: {option name: path}. Raises FileOutputError naming the path."""
    for option, path in paths.items():
        if not path:
            continue
        path = os.path.abspath(os.path.expanduser(path))
        directory = os.path.dirname(path)
        try:
            is_dir = stat.S_ISDIR(os.stat(directory).st_mode)
        except OSError as exc:
            if exc.errno not in (errno.ENOENT, errno.ENOTDIR):
                raise FileOutputError('The directory %s of %s (%s) cannot be reached by user %s; nothing was '
                                      'requested from the CA' % (directory, option, path, _user_name()),
                                      detail=str(exc))
            is_dir = False
        if not is_dir:
            raise FileOutputError('The directory %s of %s (%s) does not exist; nothing was requested from the CA'
                                  % (directory, option, path),
                                  remedy='Create it first (the certificate role does with create_directories).')
        if os.path.isdir(path) and not os.path.islink(path):
            raise FileOutputError('%s (%s) is a directory; nothing was requested from the CA' % (option, path))
        writable = _can_write_dir(directory) if probe else \
            os.access(directory, os.W_OK | os.X_OK, effective_ids=os.access in os.supports_effective_ids)
        if not writable:
            raise FileOutputError('The directory %s of %s (%s) is not writable by user %s; nothing was requested '
                                  'from the CA' % (directory, option, path, _user_name()),
                                  remedy='Run the task as a user who may write there (become), or choose another '
                                         'path.')


def _user_name():
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except (KeyError, AttributeError):
        return str(os.geteuid())


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


# ---------------------------------------------------------------------------------------------------------------
# Switching a set of files as one unit
# ---------------------------------------------------------------------------------------------------------------
def _journal_path(path):
    return os.path.join(os.path.dirname(path), '.%s%s' % (os.path.basename(path), _JOURNAL_SUFFIX))


def _ours(path):
    """Our own leftovers next to path: new contents, links to old files, legacy temp and rollback files."""
    directory, base = os.path.dirname(path), os.path.basename(path)
    pattern = re.compile(r'^\.%s\.[a-z0-9_]+(%s)$' % (
        re.escape(base), '|'.join(re.escape(s) for s in (_NEW_SUFFIX, _OLD_SUFFIX) + _LEGACY_SUFFIXES)))
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    return [os.path.join(directory, name) for name in names if pattern.match(name)]


_MAX_JOURNAL_SIZE = 1 << 20


def _own_name(path, name, suffix):
    """Whether name is one of our own temporary names for path (same directory, ``.<base>.XXXX<suffix>``)."""
    if not isinstance(name, str) or os.path.dirname(name) != os.path.dirname(path):
        return False
    return re.match(r'^\.%s\.[a-z0-9_]+%s$' % (re.escape(os.path.basename(path)), re.escape(suffix)),
                    os.path.basename(name)) is not None


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


class _DirLocks(object):
    """Exclusive flock for the directories of a set of paths (sorted, so two runs never deadlock), held from staging
    to the end of the switch (on a lock file per directory in a private 0700 directory of the effective user, so
    other users cannot hold it): a concurrent run on the same files waits instead of taking our temporary files for a
    crash's leftovers. A killed process's locks go with it."""

    def __init__(self, paths, timeout=120):
        self.dirs = sorted(set(os.path.dirname(os.path.abspath(p)) for p in paths if p))
        self.timeout = timeout
        self.fds = []

    def acquire(self):
        for directory in self.dirs:
            try:
                st = os.stat(directory)
            except OSError:
                continue   # a missing directory is reported by the caller
            fd = _lock_file(st)
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


def recover(paths):
    """Finish or undo a switch that a killed process left half done for any of ``paths``, then remove our stray
    temporary files next to them. Returns {journal: 'rolled forward'|'rolled back'}."""
    paths = [os.path.abspath(os.path.expanduser(p)) for p in paths if p]
    locks = _DirLocks(paths).acquire()
    try:
        return _recover(paths)
    finally:
        locks.release()


def _recover(paths):
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
        for name in _ours(path):
            _unlink(name)
    return done


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
    """

    def __init__(self, specs, validator=None):
        self.specs = list(specs)
        self.validator = validator
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
        if self._locks is not None:
            self._locks.release()
            self._locks = None

    def _needs_write(self, spec):
        return _read_target(spec.path) != spec.content

    def stage(self):
        if self._locks is None:
            self._locks = _DirLocks([s.path for s in self.specs]).acquire()
        try:
            self.recovered = _recover([s.path for s in self.specs])
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
                os.fsync(fd)
            except (IOError, OSError) as exc:
                self.cleanup()
                raise FileOutputError('Cannot write a temporary file for %s' % spec.path, detail=str(exc))
            finally:
                if fd is not None:
                    os.close(fd)
            _step('staged %s' % spec.path)
        for directory in set(os.path.dirname(p) for p in self.staged):
            _fsync_dir(directory)
        self._staged_once = True
        return self.staged

    def _write_journal(self, entries):
        anchor = next((s.path for s in self.specs if s.path in self.staged and not s.secret),
                      entries[0]['path'])
        jpath = _journal_path(anchor)
        directory = os.path.dirname(jpath)
        fd, tmp = tempfile.mkstemp(prefix='.%s.' % os.path.basename(anchor), suffix=_NEW_SUFFIX, dir=directory)
        try:
            os.fchmod(fd, KEY_MODE)
            data = json.dumps({'version': 1, 'entries': entries}, indent=1, sort_keys=True).encode('utf-8')
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, jpath)
        _fsync_dir(directory)
        _step('journal %s' % jpath)
        return jpath

    def commit(self):
        if self._done:
            return self
        if not self.staged and not self._staged_once:
            self.stage()
        if self.validator is not None and self.staged:
            paths = dict((s.path, self.staged.get(s.path, s.path)) for s in self.specs)
            try:
                self.validator(paths)
            except Exception:
                self.cleanup()
                raise
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


def write_file_atomic(path, content, mode=None, owner=None, group=None, backup=False, secret=False):
    """Write one file atomically; returns dict(changed=, backup_file=)."""
    spec = FileSpec(path, content, mode=mode, owner=owner, group=group, backup=backup, secret=secret)
    with StagedWrite([spec]) as sw:
        sw.commit()
    return {'changed': sw.changed, 'backup_file': sw.backups.get(spec.path)}


class ModuleFileWriter(object):
    """Adapter for modules: honours check mode and applies set_fs_attributes_if_different (SELinux context,
    attributes) after the switch. Backups are StagedWrite's (``backup_local``'s names, made after validation,
    0600 for secrets)."""

    def __init__(self, module):
        self.module = module

    def write(self, specs, validator=None):
        specs = list(specs)
        result = {'changed': False, 'backup_files': {}, 'changed_paths': []}
        if self.module.check_mode:
            sw = StagedWrite(specs)
            result['changed'] = sw.would_change()
            return result
        with StagedWrite(specs, validator=validator) as sw:
            sw.commit()
        changed = sw.changed
        for spec in specs:
            file_args = self.module.load_file_common_arguments(self.module.params, path=spec.path)
            # owner/group/mode were set by the switch on descriptors; Ansible's pass (by name) only adds the SELinux
            # context and attributes
            file_args['mode'] = file_args['owner'] = file_args['group'] = None
            changed = self.module.set_fs_attributes_if_different(file_args, changed)
        result['changed'] = changed
        result['changed_paths'] = sw.changed_paths
        result['backup_files'] = dict((k, v) for k, v in sw.backups.items() if k in sw.changed_paths)
        return result


# ---------------------------------------------------------------------------------------------------------------
# Encodings
# ---------------------------------------------------------------------------------------------------------------
def _require_crypto():
    if not HAS_CRYPTOGRAPHY:
        raise FileOutputError('The Python library "cryptography" is required',
                              remedy='Install cryptography (>= 41) on the node that runs the module.')


def encode_certificate(cert, fmt='pem'):
    _require_crypto()
    if fmt not in FORMATS:
        raise InvalidInput('Unknown format %r (pem or der)' % (fmt,))
    return cert.public_bytes(serialization.Encoding.PEM if fmt == 'pem' else serialization.Encoding.DER)


def encode_chain(certs, fmt='pem'):
    """PEM: concatenated blocks. DER: a PKCS#7 certs-only bundle (one DER file cannot hold several certs)."""
    _require_crypto()
    if fmt == 'pem':
        return b''.join(encode_certificate(c, 'pem') for c in certs)
    if fmt == 'der':
        from cryptography.hazmat.primitives.serialization import pkcs7
        return pkcs7.serialize_certificates(list(certs), serialization.Encoding.DER)
    raise InvalidInput('Unknown format %r (pem or der)' % (fmt,))


def encode_private_key(key, fmt='pem', passphrase=None):
    _require_crypto()
    if fmt not in FORMATS:
        raise InvalidInput('Unknown format %r (pem or der)' % (fmt,))
    enc = serialization.Encoding.PEM if fmt == 'pem' else serialization.Encoding.DER
    if passphrase:
        algo = serialization.BestAvailableEncryption(passphrase.encode('utf-8') if isinstance(passphrase, str)
                                                     else passphrase)
    else:
        algo = serialization.NoEncryption()
    return key.private_bytes(enc, serialization.PrivateFormat.PKCS8, algo)


def pkcs12_bundle(key, cert, ca_certs=None, passphrase=None, friendly_name=None):
    """PKCS#12 with key, certificate and CA certificates, encrypted with passphrase (None: unencrypted)."""
    _require_crypto()
    if passphrase:
        algo = serialization.BestAvailableEncryption(passphrase.encode('utf-8') if isinstance(passphrase, str)
                                                     else passphrase)
    else:
        algo = serialization.NoEncryption()
    name = friendly_name.encode('utf-8') if isinstance(friendly_name, str) else friendly_name
    return pkcs12.serialize_key_and_certificates(name, key, cert, list(ca_certs or []) or None, algo)


def load_pkcs12(data, passphrase=None):
    _require_crypto()
    pw = passphrase.encode('utf-8') if isinstance(passphrase, str) else passphrase
    try:
        return pkcs12.load_key_and_certificates(data, pw)
    except ValueError as exc:
        raise InvalidInput('Cannot read the PKCS#12 bundle (wrong passphrase?)', detail=str(exc))
