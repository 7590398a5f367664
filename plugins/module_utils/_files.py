# -*- coding: utf-8 -*-
# Copyright (c) the adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Files: one job, reading files we did not write and giving the files we write their mode, owner and group.

Modes are taken as ``ansible.builtin.file`` takes them (``parse_mode``; symbolic modes use ansible-core's parser) and
a private key's mode is refused when its group may write or others may access it. Everything planted in an output
directory by someone else is distrusted: reads (``read_file``) never follow symlinks, never open FIFOs and are
bounded; owner, group and mode are set on open file descriptors, never through a symlink. Backups
(``path.<pid>.<time>~``, like Ansible's ``backup_local``) are 0600 from their first instant.
``check_output_paths`` tells before the CA is contacted whether the outputs can be written;
``create_parent_directories`` creates missing parent directories of the outputs (option ``create_directories``).

Writing several files as one crash-safe unit is ``_staged`` (with its journal and locks in ``_journal``).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import hashlib
import os
import stat
import tempfile
import time

from ansible_collections.adcs.enrollment.plugins.module_utils._errors import FileOutputError, InvalidInput

try:
    import grp
    import pwd
except ImportError:  # pragma: no cover - not on POSIX
    grp = pwd = None

KEY_MODE = 0o600
CERT_MODE = 0o644
SECRET_FORBIDDEN_BITS = 0o027   # group write, and anything for others


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


def _resolve_id(value, lookup, field, what):
    """A numeric ID from a name or number (-1, "leave as is", when empty); InvalidInput for an unknown name."""
    if value is None or value == '':
        return -1
    if isinstance(value, int) or str(value).isdigit():
        return int(value)
    try:
        return getattr(lookup(value), field)
    except (KeyError, AttributeError):
        raise InvalidInput('Unknown %s %r' % (what, value))


def resolve_uid(owner):
    return _resolve_id(owner, pwd.getpwnam, 'pw_uid', 'user')


def resolve_gid(group):
    return _resolve_id(group, grp.getgrnam, 'gr_gid', 'group')


MAX_READ_SIZE = 8 << 20   # read_file: keys, certificates, chains, PKCS#12 bundles, records are far smaller


def read_file(path, max_size=MAX_READ_SIZE, private=False, replaceable=False, stat_out=None):
    """Content of the regular file at path as bytes, or None if it does not exist (``stat_out``, a list: the
    ``os.stat_result`` of the file read is appended to it).

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
        if stat_out is not None:
            stat_out.append(st)
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


def check_output_paths(paths, probe=True, probed=None):
    """Before the CA is contacted: every output path's directory exists and is writable by the effective user,
    and no output path is a directory. ``paths``: {option name: path}. Raises FileOutputError naming the path.
    ``probed``: a set of the directories a probe file already showed writable in this run (updated here; their
    access() check still runs, not the probe file)."""
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
        if probe and (probed is None or directory not in probed):
            writable = _can_write_dir(directory)
            if writable and probed is not None:
                probed.add(directory)
        else:
            writable = os.access(directory, os.W_OK | os.X_OK, effective_ids=os.access in os.supports_effective_ids)
        if not writable:
            raise FileOutputError('The directory %s of %s (%s) is not writable by user %s; nothing was requested '
                                  'from the CA' % (directory, option, path, _user_name()),
                                  remedy='Run the task as a user who may write there (become), or choose another '
                                         'path.')


KEY_DIR_MODE = 0o700
DIR_MODE = 0o755
# options whose files go into a 0700 directory; every other output into a 0755 one
_SECRET_DIR_OPTIONS = ('private_key_path',)
DIRECTORY_OPTIONS = ('private_key_path', 'certificate_path', 'chain_path', 'fullchain_path', 'pkcs12_path',
                     'state_path')


def planned_directories(specs):
    """[(directory, mode, uid, gid)] of the missing parent directories of the files ``specs`` write, parents first,
    each once (the key's 0700 wins when a directory holds both a key and other files)."""
    wanted = {}
    order = []
    for spec in specs:
        uid, gid = resolve_uid(spec.get('owner')), resolve_gid(spec.get('group'))
        for option in DIRECTORY_OPTIONS:
            path = spec.get(option)
            if not path:
                continue
            mode = KEY_DIR_MODE if option in _SECRET_DIR_OPTIONS else DIR_MODE
            directory = os.path.dirname(os.path.abspath(os.path.expanduser(path)))
            missing = []
            while directory and not os.path.lexists(directory):
                missing.append(directory)
                parent = os.path.dirname(directory)
                if parent == directory:
                    break
                directory = parent
            for index, item in enumerate(reversed(missing)):
                # only the file's own directory gets the key mode; its missing parents are 0755
                item_mode = mode if index == len(missing) - 1 else DIR_MODE
                if item in wanted:
                    wanted[item] = (min(wanted[item][0], item_mode), uid, gid)
                else:
                    wanted[item] = (item_mode, uid, gid)
                    order.append(item)
    order.sort(key=lambda d: d.count(os.sep))
    return [(d,) + wanted[d] for d in order]


def create_parent_directories(specs, check_mode=False):
    """Creates the missing parent directories of the files of ``specs`` (0700 for a private key's, 0755 otherwise,
    owner/group of the request when given), never changing an existing directory. Returns the directories created
    (in check mode: that would be created, nothing is). Raises FileOutputError naming the directory."""
    created = []
    for directory, mode, uid, gid in planned_directories(specs):
        if check_mode:
            created.append(directory)
            continue
        try:
            os.mkdir(directory, mode)
        except OSError as exc:
            if exc.errno == errno.EEXIST and os.path.isdir(directory):
                continue   # created meanwhile: left as it is
            raise FileOutputError('The directory %s cannot be created by user %s: %s; nothing was requested from '
                                  'the CA' % (directory, _user_name(), exc.strerror or exc),
                                  detail=str(exc),
                                  remedy='Create it first, run the task as a user who may (become), or choose '
                                         'another path.')
        created.append(directory)
        try:
            fd = os.open(directory, os.O_RDONLY | getattr(os, 'O_DIRECTORY', 0) | getattr(os, 'O_NOFOLLOW', 0))
            try:
                os.fchmod(fd, mode)   # not narrowed by the umask
                if uid != -1 or gid != -1:
                    os.fchown(fd, uid, gid)
            finally:
                os.close(fd)
        except OSError as exc:
            raise FileOutputError('The directory %s was created but its owner, group or mode %04o cannot be set by '
                                  'user %s: %s' % (directory, mode, _user_name(), exc.strerror or exc),
                                  detail=str(exc))
    return created


def _user_name():
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except (KeyError, AttributeError):
        return str(os.geteuid())
