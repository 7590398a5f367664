# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import stat

import pytest
from cryptography.hazmat.primitives import serialization

from ansible_collections.adcs.enrollment.plugins.module_utils import _files as f
from ansible_collections.adcs.enrollment.plugins.module_utils import _certs
from ansible_collections.adcs.enrollment.plugins.module_utils._errors import FileOutputError, InvalidInput

import wcce_pki


def mode(path):
    return stat.S_IMODE(os.stat(str(path)).st_mode)


def leftovers(directory):
    return sorted(n for n in os.listdir(str(directory)) if n.startswith('.') or n.endswith('.rollback'))


def test_new_key_is_0600_and_cert_0644(tmp_path):
    key = tmp_path / 'host.key'
    crt = tmp_path / 'host.crt'
    old_umask = os.umask(0)
    try:
        assert f.write_file_atomic(str(key), b'KEY', secret=True)['changed']
        assert f.write_file_atomic(str(crt), b'CERT')['changed']
    finally:
        os.umask(old_umask)
    assert mode(key) == 0o600 and key.read_bytes() == b'KEY'
    assert mode(crt) == 0o644
    assert leftovers(tmp_path) == []


def test_idempotent_and_mode_fix(tmp_path):
    p = tmp_path / 'a.crt'
    assert f.write_file_atomic(str(p), b'X', mode='0640')['changed']
    assert not f.write_file_atomic(str(p), b'X', mode='0640')['changed']
    assert f.write_file_atomic(str(p), b'X', mode=0o600)['changed']     # same content, new mode
    assert mode(p) == 0o600


def test_staged_temp_file_already_has_final_mode(tmp_path):
    seen = {}

    def validator(paths):
        staged = paths[str(tmp_path / 'k.pem')]
        seen['mode'] = mode(staged)
        seen['content'] = open(staged, 'rb').read()
        seen['dir'] = os.path.dirname(staged)

    spec = f.FileSpec(str(tmp_path / 'k.pem'), b'SECRET', secret=True)
    with f.StagedWrite([spec], validator=validator) as sw:
        sw.commit()
    assert seen == {'mode': 0o600, 'content': b'SECRET', 'dir': str(tmp_path)}


def test_backup(tmp_path):
    p = tmp_path / 'a.key'
    p.write_bytes(b'OLD')
    res = f.write_file_atomic(str(p), b'NEW', secret=True, backup=True)
    assert res['changed'] and res['backup_file']
    assert open(res['backup_file'], 'rb').read() == b'OLD'
    assert p.read_bytes() == b'NEW'
    assert not f.write_file_atomic(str(p), b'NEW', secret=True, backup=True)['backup_file']


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

    monkeypatch.setattr(f.os, 'rename', flaky_rename)
    specs = [f.FileSpec(str(key), b'NEWKEY', secret=True), f.FileSpec(str(crt), b'NEWCRT')]
    with pytest.raises(FileOutputError, match='previous files were kept'):
        with f.StagedWrite(specs) as sw:
            sw.commit()
    monkeypatch.setattr(f.os, 'rename', real_rename)
    assert key.read_bytes() == b'OLDKEY'     # first rename was rolled back
    assert crt.read_bytes() == b'OLDCRT'
    assert leftovers(tmp_path) == []
    assert str(key) in calls


def test_failing_write_leaves_old_file(tmp_path, monkeypatch):
    p = tmp_path / 'h.key'
    p.write_bytes(b'OLD')

    def broken_write(fd, data):
        raise OSError(5, 'I/O error')

    monkeypatch.setattr(f.os, 'write', broken_write)
    with pytest.raises(FileOutputError):
        f.write_file_atomic(str(p), b'NEW', secret=True)
    monkeypatch.undo()
    assert p.read_bytes() == b'OLD'
    assert leftovers(tmp_path) == []


def test_validator_failure_keeps_old_pair(tmp_path):
    p = wcce_pki.pki()
    key, crt = tmp_path / 'h.key', tmp_path / 'h.crt'
    key.write_bytes(b'OLDKEY')
    crt.write_bytes(b'OLDCRT')
    new_key = f.encode_private_key(p.ca_key)                  # does not belong to the certificate
    new_crt = f.encode_certificate(p.leaf)

    def pair_matches(paths):
        from ansible_collections.adcs.enrollment.plugins.module_utils import _requests
        k = _requests.load_private_key(open(paths[str(key)], 'rb').read())
        cert = _certs.load_certificate(open(paths[str(crt)], 'rb').read())
        if not _certs.key_matches_certificate(k, cert):
            raise FileOutputError('new key and certificate do not match')

    with pytest.raises(FileOutputError, match='do not match'):
        with f.StagedWrite([f.FileSpec(str(key), new_key, secret=True), f.FileSpec(str(crt), new_crt)],
                           validator=pair_matches) as sw:
            sw.commit()
    assert key.read_bytes() == b'OLDKEY' and crt.read_bytes() == b'OLDCRT'
    assert leftovers(tmp_path) == []
    # and the matching pair goes through
    with f.StagedWrite([f.FileSpec(str(key), f.encode_private_key(p.leaf_key), secret=True),
                        f.FileSpec(str(crt), new_crt)], validator=pair_matches) as sw:
        sw.commit()
    assert sw.changed and sorted(sw.changed_paths) == sorted([str(key), str(crt)])
    assert mode(key) == 0o600


def test_missing_directory(tmp_path):
    with pytest.raises(FileOutputError, match='does not exist'):
        f.write_file_atomic(str(tmp_path / 'nope' / 'x'), b'1')


def test_owner_group_numeric(tmp_path):
    p = tmp_path / 'x'
    st = os.stat(str(tmp_path))
    f.write_file_atomic(str(p), b'1', owner=str(st.st_uid), group=st.st_gid)
    assert os.stat(str(p)).st_uid == st.st_uid
    with pytest.raises(InvalidInput):
        f.FileSpec(str(p), b'1', owner='no-such-user-xyz')


@pytest.mark.parametrize('value, expected', [(None, None), ('0600', 0o600), ('644', 0o644), (0o640, 0o640),
                                             (416, 0o640), ('0640', 0o640), ('u=rw,g=r,o=', 0o640),
                                             ('u=rw,g=r', 0o640), ('go-rwx', 0o600), ('u+x', 0o700), (0, 0)])
def test_parse_mode_as_ansible_file(value, expected):
    # as ansible.builtin.file: YAML 0640 unquoted is the integer 416 == 0o640, strings octal or symbolic
    # (symbolic applied to the existing mode, here 0600)
    assert f.parse_mode(value, base=0o600) == expected


@pytest.mark.parametrize('value', ['u=rwz', 'rw-r-----', '0999', 0o17777, -1, True, '10000'])
def test_parse_mode_invalid(value):
    with pytest.raises(InvalidInput, match='File mode .* (must be octal, like "0600", or symbolic|is out of range)'):
        f.parse_mode(value)


def test_parse_mode_matches_ansible_core(tmp_path):
    # the same answers ansible-core's own set_mode_if_different computes for a file of mode 0600
    from ansible.module_utils.basic import AnsibleModule
    target = tmp_path / 'x'
    target.write_bytes(b'')
    os.chmod(str(target), 0o600)
    for value in ('u=rw,g=r', 'a+r', 'g+rX,o-rwx', 'u=rwx,g=rx,o=rx'):
        assert f.parse_mode(value, base=0o600) == AnsibleModule._symbolic_mode_to_octal(os.stat(str(target)), value)


@pytest.mark.parametrize('value', [0o600, 0o640, 0o400, 416, '0640', 'u=rw,g=r', 'u=rw,go='])
def test_secret_mode_accepted(value):
    assert f.check_secret_mode(value) & 0o027 == 0


@pytest.mark.parametrize('value, shown', [(0o660, '0660'), (0o604, '0604'), (0o644, '0644'), ('0644', '0644'),
                                          ('u=rw,g=rw', '"u=rw,g=rw" (0660)'), ('o+r', '"o+r" (0604)'),
                                          (0o601, '0601')])
def test_secret_mode_refused(value, shown):
    with pytest.raises(InvalidInput) as err:
        f.check_secret_mode(value)
    assert err.value.summary == ('private_key_mode %s would make the private key writable by its group or accessible '
                                 'to other users; use 0600, or 0640 for a group that only reads it' % shown)


def test_symbolic_secret_mode_checked_against_the_existing_file(tmp_path):
    key = tmp_path / 'k.key'
    key.write_bytes(b'K')
    os.chmod(str(key), 0o644)
    with pytest.raises(InvalidInput, match='private_key_mode 0644 would make the private key'):
        f.FileSpec(str(key), b'K2', mode='u=rw', secret=True)       # leaves o=r of the existing file
    assert f.FileSpec(str(key), b'K2', mode='u=rw,go=', secret=True).mode == 0o600
    assert f.FileSpec(str(tmp_path / 'new.crt'), b'C', mode='u=rw,g=r').mode == 0o644   # new file: from 0644


def test_encodings_and_pkcs12():
    p = wcce_pki.pki()
    assert f.encode_certificate(p.leaf, 'pem').startswith(b'-----BEGIN CERTIFICATE-----')
    assert f.encode_certificate(p.leaf, 'der') == p.leaf.public_bytes(serialization.Encoding.DER)
    chain_pem = f.encode_chain([p.ca, p.root], 'pem')
    assert _certs.load_certificates(chain_pem) == [p.ca, p.root]
    chain_der = f.encode_chain([p.ca, p.root], 'der')
    assert set(c.serial_number for c in _certs.parse_pkcs7_certificates(chain_der)) == {1, 2}
    with pytest.raises(InvalidInput):
        f.encode_certificate(p.leaf, 'xml')
    bundle = f.pkcs12_bundle(p.leaf_key, p.leaf, [p.ca, p.root], passphrase='pw', friendly_name='host')
    key, cert, extra = f.load_pkcs12(bundle, 'pw')
    assert cert == p.leaf and _certs.key_matches_certificate(key, cert) and set(extra) == {p.ca, p.root}
    with pytest.raises(InvalidInput):
        f.load_pkcs12(bundle, 'wrong')
    enc = f.encode_private_key(p.leaf_key, 'pem', passphrase='pw')
    assert b'ENCRYPTED PRIVATE KEY' in enc


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
    res = f.ModuleFileWriter(mod).write([f.FileSpec(str(p), b'K', secret=True)])
    assert res['changed'] and not p.exists()


def test_module_writer_real(tmp_path):
    p = tmp_path / 'x.key'
    p.write_bytes(b'OLD')
    os.chmod(str(p), 0o640)
    mod = FakeModule(check_mode=False)
    res = f.ModuleFileWriter(mod).write([f.FileSpec(str(p), b'NEW', secret=True, backup=True)])
    assert res['changed'] and p.read_bytes() == b'NEW'
    assert mod.backups == []          # not backup_local: its copy is 0644 first and made before validation
    (path, backup), = res['backup_files'].items()
    assert path == str(p) and backup.startswith(str(p) + '.%d.' % os.getpid()) and backup.endswith('~')
    assert open(backup, 'rb').read() == b'OLD' and mode(backup) == 0o600
    assert mod.fs_calls[0]['mode'] == 0o600
    res = f.ModuleFileWriter(mod).write([f.FileSpec(str(p), b'NEW', secret=True, backup=True)])
    assert not res['changed'] and res['backup_files'] == {}
