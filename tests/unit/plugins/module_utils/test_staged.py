# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Staged writes (_staged): a set of files switches as one unit; modes, owners, backups, symlinks, module writer."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import stat

import pytest

from ansible_collections.adcs.enrollment.plugins.module_utils import _keys
from ansible_collections.adcs.enrollment.plugins.module_utils import _staged
from ansible_collections.adcs.enrollment.plugins.module_utils import _x509
from ansible_collections.adcs.enrollment.plugins.module_utils._errors import FileOutputError, InvalidInput
from ansible_collections.adcs.enrollment.tests.unit.plugins.support import files as support_files
from ansible_collections.adcs.enrollment.tests.unit.plugins.support import wcce_pki
from ansible_collections.adcs.enrollment.tests.unit.plugins.support.files import (
    leftovers, mode, planted_symlink as _planted_symlink,
)


def test_new_key_is_0600_and_cert_0644(tmp_path):
    key = tmp_path / 'host.key'
    crt = tmp_path / 'host.crt'
    old_umask = os.umask(0)
    try:
        assert support_files.write_file_atomic(str(key), b'KEY', secret=True)['changed']
        assert support_files.write_file_atomic(str(crt), b'CERT')['changed']
    finally:
        os.umask(old_umask)
    assert mode(key) == 0o600 and key.read_bytes() == b'KEY'
    assert mode(crt) == 0o644
    assert leftovers(tmp_path) == []


def test_idempotent_and_mode_fix(tmp_path):
    p = tmp_path / 'a.crt'
    assert support_files.write_file_atomic(str(p), b'X', mode='0640')['changed']
    assert not support_files.write_file_atomic(str(p), b'X', mode='0640')['changed']
    assert support_files.write_file_atomic(str(p), b'X', mode=0o600)['changed']     # same content, new mode
    assert mode(p) == 0o600


def test_staged_temp_file_already_has_final_mode(tmp_path):
    seen = {}

    def validator(paths):
        staged = paths[str(tmp_path / 'k.pem')]
        seen['mode'] = mode(staged)
        seen['content'] = open(staged, 'rb').read()
        seen['dir'] = os.path.dirname(staged)

    spec = _staged.FileSpec(str(tmp_path / 'k.pem'), b'SECRET', secret=True)
    with _staged.StagedWrite([spec], validator=validator) as sw:
        sw.commit()
    assert seen == {'mode': 0o600, 'content': b'SECRET', 'dir': str(tmp_path)}


def test_backup(tmp_path):
    p = tmp_path / 'a.key'
    p.write_bytes(b'OLD')
    res = support_files.write_file_atomic(str(p), b'NEW', secret=True, backup=True)
    assert res['changed'] and res['backup_file']
    assert open(res['backup_file'], 'rb').read() == b'OLD'
    assert p.read_bytes() == b'NEW'
    assert not support_files.write_file_atomic(str(p), b'NEW', secret=True, backup=True)['backup_file']


def test_failing_rename_leaves_old_files(tmp_path, monkeypatch):
    key, crt = tmp_path / 'h.key', tmp_path / 'h.crt'
    key.write_bytes(b'OLDKEY')
    crt.write_bytes(b'OLDCRT')
    real_rename = os.rename
    calls = []

    def flaky_rename(src, dst):
        calls.append(dst)
        if dst == str(crt):
            raise OSError(28, 'No space left on device')
        return real_rename(src, dst)

    monkeypatch.setattr(os, 'rename', flaky_rename)
    specs = [_staged.FileSpec(str(key), b'NEWKEY', secret=True), _staged.FileSpec(str(crt), b'NEWCRT')]
    with pytest.raises(FileOutputError, match='previous files were kept'):
        with _staged.StagedWrite(specs) as sw:
            sw.commit()
    monkeypatch.setattr(os, 'rename', real_rename)
    assert key.read_bytes() == b'OLDKEY'     # first rename was rolled back
    assert crt.read_bytes() == b'OLDCRT'
    assert leftovers(tmp_path) == []
    assert str(key) in calls


def test_failing_write_leaves_old_file(tmp_path, monkeypatch):
    p = tmp_path / 'h.key'
    p.write_bytes(b'OLD')

    def broken_write(fd, data):
        raise OSError(5, 'I/O error')

    monkeypatch.setattr(os, 'write', broken_write)
    with pytest.raises(FileOutputError):
        support_files.write_file_atomic(str(p), b'NEW', secret=True)
    monkeypatch.undo()
    assert p.read_bytes() == b'OLD'
    assert leftovers(tmp_path) == []


def test_validator_failure_keeps_old_pair(tmp_path):
    p = wcce_pki.pki()
    key, crt = tmp_path / 'h.key', tmp_path / 'h.crt'
    key.write_bytes(b'OLDKEY')
    crt.write_bytes(b'OLDCRT')
    new_key = _keys.private_key_bytes(p.ca_key)                  # does not belong to the certificate
    new_crt = _x509.encode_certificate(p.leaf)

    def pair_matches(paths):
        k = _keys.load_private_key(open(paths[str(key)], 'rb').read())
        cert = _x509.load_certificate(open(paths[str(crt)], 'rb').read())
        if not _x509.key_matches_certificate(k, cert):
            raise FileOutputError('new key and certificate do not match')

    with pytest.raises(FileOutputError, match='do not match'):
        with _staged.StagedWrite([_staged.FileSpec(str(key), new_key, secret=True),
                                  _staged.FileSpec(str(crt), new_crt)],
                                 validator=pair_matches) as sw:
            sw.commit()
    assert key.read_bytes() == b'OLDKEY' and crt.read_bytes() == b'OLDCRT'
    assert leftovers(tmp_path) == []
    # and the matching pair goes through
    with _staged.StagedWrite([_staged.FileSpec(str(key), _keys.private_key_bytes(p.leaf_key), secret=True),
                              _staged.FileSpec(str(crt), new_crt)], validator=pair_matches) as sw:
        sw.commit()
    assert sw.changed and sorted(sw.changed_paths) == sorted([str(key), str(crt)])
    assert mode(key) == 0o600


def test_missing_directory(tmp_path):
    with pytest.raises(FileOutputError, match='does not exist'):
        support_files.write_file_atomic(str(tmp_path / 'nope' / 'x'), b'1')


def test_owner_group_numeric(tmp_path):
    p = tmp_path / 'x'
    st = os.stat(str(tmp_path))
    support_files.write_file_atomic(str(p), b'1', owner=str(st.st_uid), group=st.st_gid)
    assert os.stat(str(p)).st_uid == st.st_uid
    with pytest.raises(InvalidInput):
        _staged.FileSpec(str(p), b'1', owner='no-such-user-xyz')


class FakeModule(object):
    def __init__(self, check_mode):
        self.check_mode = check_mode
        self.params = {}
        self.backups = []
        self.fs_calls = []

    def backup_local(self, path):
        dest = path + '.bak~'
        with open(path, 'rb') as src, open(dest, 'wb') as dst:
            dst.write(src.read())
        self.backups.append(dest)
        return dest

    def load_file_common_arguments(self, params, path=None):
        return {'path': path, 'mode': None, 'owner': None, 'group': None, 'seuser': None, 'serole': None,
                'selevel': None, 'setype': None, 'attributes': None}

    def set_fs_attributes_if_different(self, file_args, changed, diff=None, expand=True):
        self.fs_calls.append(file_args)
        return changed


def test_module_writer_check_mode(tmp_path):
    p = tmp_path / 'x.key'
    mod = FakeModule(check_mode=True)
    res = _staged.ModuleFileWriter(mod).write([_staged.FileSpec(str(p), b'K', secret=True)])
    assert res['changed'] and not p.exists()


def test_module_writer_real(tmp_path):
    p = tmp_path / 'x.key'
    p.write_bytes(b'OLD')
    os.chmod(str(p), 0o640)
    mod = FakeModule(check_mode=False)
    res = _staged.ModuleFileWriter(mod).write([_staged.FileSpec(str(p), b'NEW', secret=True, backup=True)])
    assert res['changed'] and p.read_bytes() == b'NEW'
    assert mod.backups == []          # not backup_local: its copy is 0644 first and made before validation
    assert list(res['backup_files']) == [str(p)]
    path, backup = str(p), res['backup_files'][str(p)]
    assert path == str(p) and backup.startswith(str(p) + '.%d.' % os.getpid()) and backup.endswith('~')
    assert open(backup, 'rb').read() == b'OLD' and mode(backup) == 0o600
    assert mode(str(p)) == 0o600
    # owner/group/mode were set on descriptors by the switch; Ansible's pass by name only adds SELinux/attributes
    assert [(c['mode'], c['owner'], c['group']) for c in mod.fs_calls] == [(None, None, None)]
    res = _staged.ModuleFileWriter(mod).write([_staged.FileSpec(str(p), b'NEW', secret=True, backup=True)])
    assert not res['changed'] and res['backup_files'] == {}


# ---- symlinks are replaced, never followed -------------------------------------------------------------------
def test_symlink_at_destination_is_replaced_not_followed(tmp_path):
    key_link, key_victim = _planted_symlink(tmp_path, 'h.key')
    crt_link, crt_victim = _planted_symlink(tmp_path, 'h.crt', 0o600)
    before = [(os.stat(str(v)).st_uid, mode(v)) for v in (key_victim, crt_victim)]
    with _staged.StagedWrite([_staged.FileSpec(str(key_link), b'NEWKEY', secret=True, backup=True),
                              _staged.FileSpec(str(crt_link), b'NEWCRT', mode='0644', owner='0', group='0')]) as sw:
        sw.commit()
    assert not os.path.islink(str(key_link)) and key_link.read_bytes() == b'NEWKEY' and mode(key_link) == 0o600
    assert not os.path.islink(str(crt_link)) and crt_link.read_bytes() == b'NEWCRT' and mode(crt_link) == 0o644
    assert key_victim.read_bytes() == b'VICTIM' and crt_victim.read_bytes() == b'VICTIM'
    assert [(os.stat(str(v)).st_uid, mode(v)) for v in (key_victim, crt_victim)] == before
    assert sw.backups == {}        # nothing of ours was there to back up
    assert leftovers(tmp_path / 'out') == []


def test_symlink_with_the_same_content_is_still_replaced(tmp_path):
    # the content read through the link equals what is wanted: the mode must not be fixed through the link
    link, victim = _planted_symlink(tmp_path, 'h.crt', 0o666)
    assert support_files.write_file_atomic(str(link), b'VICTIM', mode='0644')['changed']
    assert not os.path.islink(str(link)) and mode(link) == 0o644 and mode(victim) == 0o666
    sw = _staged.StagedWrite([_staged.FileSpec(str(link), b'VICTIM', mode='0644')])
    assert not sw.would_change()


def test_fifo_at_destination_does_not_hang(tmp_path):
    fifo = tmp_path / 'h.crt'
    os.mkfifo(str(fifo))
    assert support_files.write_file_atomic(str(fifo), b'CRT')['changed']
    assert fifo.read_bytes() == b'CRT'


# ---- backups ---------------------------------------------------------------------------------------------------
def test_secret_backup_is_0600_from_its_first_byte_and_made_after_validation(tmp_path, monkeypatch):
    key, crt = tmp_path / 'h.key', tmp_path / 'h.crt'
    key.write_bytes(b'OLDKEY')
    crt.write_bytes(b'OLDCRT')
    os.chmod(str(key), 0o640)
    os.chmod(str(crt), 0o644)
    events = []

    def validator(paths):
        events.append(('validated', sorted(n for n in os.listdir(str(tmp_path)) if n.endswith('~'))))

    real_write = os.write

    def spying_write(fd, data):
        st = os.fstat(fd)
        events.append(('write', stat.S_IMODE(st.st_mode)))
        return real_write(fd, data)

    old_umask = os.umask(0)
    monkeypatch.setattr(os, 'write', spying_write)
    try:
        with _staged.StagedWrite([_staged.FileSpec(str(key), b'NEWKEY', secret=True, backup=True),
                                  _staged.FileSpec(str(crt), b'NEWCRT', backup=True)], validator=validator) as sw:
            sw.commit()
    finally:
        os.umask(old_umask)
        monkeypatch.undo()
    assert events[2] == ('validated', [])                        # no backup before the validator passed
    # staged key 0640 (as asked), staged cert 0644, then the backups: each written while 0600
    assert [e for e in events[3:] if e[0] == 'write'][:2] == [('write', 0o600), ('write', 0o600)]
    assert open(sw.backups[str(key)], 'rb').read() == b'OLDKEY' and mode(sw.backups[str(key)]) == 0o600
    assert open(sw.backups[str(crt)], 'rb').read() == b'OLDCRT' and mode(sw.backups[str(crt)]) == 0o644


def test_failed_validation_makes_no_backup(tmp_path):
    key = tmp_path / 'h.key'
    key.write_bytes(b'OLD')

    def refuse(paths):
        raise FileOutputError('no')

    with pytest.raises(FileOutputError):
        with _staged.StagedWrite([_staged.FileSpec(str(key), b'NEW', secret=True, backup=True)],
                                 validator=refuse) as sw:
            sw.commit()
    assert sorted(os.listdir(str(tmp_path))) == ['h.key']


# ---- owner/mode never reach a file swapped in after the rename ---------------------------------------------------
def _victim(tmp_path, content):
    victim = tmp_path / 'victim'
    victim.write_bytes(content)
    os.chmod(str(victim), 0o644)
    return victim


def test_a_hard_link_swapped_in_after_the_rename_gets_no_owner_or_mode(tmp_path, monkeypatch):
    out = tmp_path / 'out'
    out.mkdir()
    key = out / 'h.key'
    victim = _victim(tmp_path, b'VICTIM')
    real_rename = os.rename

    def rename_then_swap(src, dst):
        real_rename(src, dst)
        if dst == str(key):      # the attacker replaces the fresh target with a hard link to the victim
            os.unlink(dst)
            os.link(str(victim), dst)

    monkeypatch.setattr(os, 'rename', rename_then_swap)
    support_files.write_file_atomic(str(key), b'NEW', mode=0o600, owner=65534, secret=True)
    st = os.stat(str(victim))
    assert stat.S_IMODE(st.st_mode) == 0o644 and st.st_uid == os.geteuid()


def test_a_kept_file_replaced_by_a_hard_link_gets_no_owner_or_mode(tmp_path):
    out = tmp_path / 'out'
    out.mkdir()
    crt = out / 'h.crt'
    crt.write_bytes(b'SAME')
    os.chmod(str(crt), 0o600)
    victim = _victim(tmp_path, b'SAME')
    spec = _staged.FileSpec(str(crt), b'SAME', mode=0o640, owner=65534)
    with _staged.StagedWrite([spec]) as sw:
        sw.stage()
        os.unlink(str(crt))
        os.link(str(victim), str(crt))   # same content, another inode
        with pytest.raises(FileOutputError) as err:
            sw.commit()
    assert err.value.to_message() == ('%s was replaced while the files were written; its owner/group/mode were not '
                                      'set. What to do: Check who else writes in that directory, then run again.'
                                      % crt)
    st = os.stat(str(victim))
    assert stat.S_IMODE(st.st_mode) == 0o644 and st.st_uid == os.geteuid()
