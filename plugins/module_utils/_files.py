# -*- coding: utf-8 -*-
# Copyright (c) adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Output files: one job, putting keys, certificates, chains and PKCS#12 bundles on disk safely.

Every write goes to a temporary file in the target's directory (created with the final mode, so a key is never
readable by others, even for an instant), is fsync'ed, gets owner/group, and is renamed over the target; the
directory is fsync'ed after the rename. Several files (key + certificate + chain) are written as one
``StagedWrite``: all temporary files are complete and validated before the first rename, and a failed rename
puts the old files back. Backups (``path.<timestamp>~``, like Ansible's ``backup_local``) are made on request.

The core works without Ansible; ``ModuleFileWriter`` plugs in AnsibleModule's ``backup_local``,
``set_fs_attributes_if_different`` (SELinux context, attributes) and check mode.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import os
import shutil
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


def parse_mode(mode, default=None):
    """Accept 0o600, '0600', '600', 'u=rw,go=' is not supported (only octal)."""
    if mode is None:
        return default
    if isinstance(mode, int):
        return mode & 0o7777
    text = str(mode).strip()
    try:
        value = int(text, 8)
    except ValueError:
        raise InvalidInput('File mode %r must be octal, like "0600"' % (mode,))
    if value > 0o7777:
        raise InvalidInput('File mode %r is out of range' % (mode,))
    return value


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


def read_file(path):
    """File content as bytes, or None if it does not exist."""
    try:
        with open(path, 'rb') as f:
            return f.read()
    except IOError as exc:
        if exc.errno == errno.ENOENT:
            return None
        raise FileOutputError('Cannot read %s' % path, detail=str(exc))


def backup_path(path, now=None):
    stamp = time.strftime('%Y-%m-%d@%H:%M:%S', time.localtime(now or time.time()))
    candidate = '%s.%d.%s~' % (path, os.getpid(), stamp)
    n = 0
    while os.path.exists(candidate):
        n += 1
        candidate = '%s.%d.%s.%d~' % (path, os.getpid(), stamp, n)
    return candidate


def make_backup(path):
    """Copy path (content and mode/owner) to a backup file; return its name or None if path is absent."""
    if not os.path.exists(path):
        return None
    dest = backup_path(path)
    try:
        shutil.copy2(path, dest)
        st = os.stat(path)
        try:
            os.chown(dest, st.st_uid, st.st_gid)
        except OSError:
            pass
    except (IOError, OSError) as exc:
        raise FileOutputError('Cannot back up %s' % path, detail=str(exc))
    return dest


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
    st = os.stat(path)
    if mode is not None and (st.st_mode & 0o7777) != mode:
        return True
    if uid != -1 and st.st_uid != uid:
        return True
    if gid != -1 and st.st_gid != gid:
        return True
    return False


def apply_attributes(path, mode=None, uid=-1, gid=-1):
    """Set mode/owner/group if different; return True if anything changed."""
    if not attributes_differ(path, mode, uid, gid):
        return False
    try:
        if uid != -1 or gid != -1:
            os.chown(path, uid, gid)
        if mode is not None:
            os.chmod(path, mode)
    except OSError as exc:
        raise FileOutputError('Cannot set owner/group/mode of %s' % path, detail=str(exc))
    return True


class FileSpec(object):
    """What to write where: content bytes, mode, owner, group, backup flag."""

    def __init__(self, path, content, mode=None, owner=None, group=None, backup=False, secret=False):
        self.path = os.path.abspath(os.path.expanduser(path))
        self.content = content
        self.secret = secret
        self.mode = parse_mode(mode, KEY_MODE if secret else CERT_MODE)
        self.uid = resolve_uid(owner)
        self.gid = resolve_gid(group)
        self.backup = backup

    def __repr__(self):
        return 'FileSpec(%r, %d bytes, mode=%o%s)' % (self.path, len(self.content), self.mode,
                                                      ', secret' if self.secret else '')


class StagedWrite(object):
    """Write several files all-or-nothing.

    ``stage()`` writes each content to a temporary file next to its target (final mode from the start, fsync'ed,
    chowned); ``commit()`` runs the optional validator on the staged paths, then renames every temporary file over
    its target. If a rename fails, the targets already replaced are restored from the rollback copies. Use as a
    context manager: leaving the block without commit() removes the temporary files.

    Result after commit: ``self.changed`` (bool), ``self.changed_paths``, ``self.backups`` {path: backup}.
    """

    def __init__(self, specs, validator=None):
        self.specs = list(specs)
        self.validator = validator
        self.staged = {}      # path -> temp path
        self.changed_paths = []
        self.backups = {}
        self.changed = False
        self._done = False

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.cleanup()
        return False

    def cleanup(self):
        for tmp in self.staged.values():
            try:
                os.unlink(tmp)
            except OSError:
                pass
        self.staged = {}

    def _needs_write(self, spec):
        return read_file(spec.path) != spec.content

    def stage(self):
        for spec in self.specs:
            directory = os.path.dirname(spec.path)
            if not os.path.isdir(directory):
                raise FileOutputError('The directory %s does not exist' % directory)
            if not self._needs_write(spec):
                continue
            fd, tmp = None, None
            try:
                fd, tmp = tempfile.mkstemp(prefix='.%s.' % os.path.basename(spec.path), suffix='.tmp',
                                           dir=directory)
                self.staged[spec.path] = tmp
                os.fchmod(fd, spec.mode)
                if spec.uid != -1 or spec.gid != -1:
                    os.fchown(fd, spec.uid, spec.gid)
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
        return self.staged

    def commit(self):
        if self._done:
            return self
        if not self.staged:
            self.stage()
        if self.validator is not None and self.staged:
            paths = dict((s.path, self.staged.get(s.path, s.path)) for s in self.specs)
            try:
                self.validator(paths)
            except Exception:
                self.cleanup()
                raise
        rollback = {}
        done = []
        try:
            for spec in self.specs:
                tmp = self.staged.get(spec.path)
                if tmp is None:
                    continue
                if os.path.exists(spec.path):
                    if spec.backup:
                        self.backups[spec.path] = make_backup(spec.path)
                    rb = tmp + '.rollback'
                    try:
                        os.link(spec.path, rb)
                    except OSError:
                        shutil.copy2(spec.path, rb)
                    rollback[spec.path] = rb
                os.rename(tmp, spec.path)
                done.append(spec.path)
                del self.staged[spec.path]
                _fsync_dir(os.path.dirname(spec.path))
        except (IOError, OSError) as exc:
            for path in reversed(done):
                rb = rollback.get(path)
                try:
                    if rb:
                        os.rename(rb, path)
                    else:
                        os.unlink(path)
                except OSError:
                    pass
            for rb in rollback.values():
                if os.path.exists(rb):
                    try:
                        os.unlink(rb)
                    except OSError:
                        pass
            self.cleanup()
            raise FileOutputError('Replacing the output files failed; the previous files were kept',
                                  detail=str(exc))
        for rb in rollback.values():
            try:
                os.unlink(rb)
            except OSError:
                pass
        self.changed_paths = list(done)
        for spec in self.specs:
            if os.path.exists(spec.path) and apply_attributes(spec.path, spec.mode, spec.uid, spec.gid):
                if spec.path not in self.changed_paths:
                    self.changed_paths.append(spec.path)
        self.changed = bool(self.changed_paths)
        self._done = True
        return self

    def would_change(self):
        """Check-mode answer: would commit() change anything?"""
        for spec in self.specs:
            if not os.path.exists(spec.path) or self._needs_write(spec):
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
    """Adapter for modules: honours check mode, uses module.backup_local and set_fs_attributes_if_different."""

    def __init__(self, module):
        self.module = module

    def write(self, specs, validator=None):
        specs = list(specs)
        result = {'changed': False, 'backup_files': {}, 'changed_paths': []}
        if self.module.check_mode:
            sw = StagedWrite(specs)
            result['changed'] = sw.would_change()
            return result
        backups = {}
        for spec in specs:
            if spec.backup and os.path.exists(spec.path) and read_file(spec.path) != spec.content:
                backups[spec.path] = self.module.backup_local(spec.path)
                spec.backup = False
        with StagedWrite(specs, validator=validator) as sw:
            sw.commit()
        changed = sw.changed
        for spec in specs:
            file_args = self.module.load_file_common_arguments(self.module.params, path=spec.path)
            file_args['mode'] = spec.mode
            file_args['owner'] = spec.uid if spec.uid != -1 else None
            file_args['group'] = spec.gid if spec.gid != -1 else None
            changed = self.module.set_fs_attributes_if_different(file_args, changed)
        result['changed'] = changed
        result['changed_paths'] = sw.changed_paths
        result['backup_files'] = dict((k, v) for k, v in backups.items() if k in sw.changed_paths)
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
