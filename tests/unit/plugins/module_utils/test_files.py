# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import json
import os
import pwd
import stat
import time

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
    assert list(res['backup_files']) == [str(p)]
    path, backup = str(p), res['backup_files'][str(p)]
    assert path == str(p) and backup.startswith(str(p) + '.%d.' % os.getpid()) and backup.endswith('~')
    assert open(backup, 'rb').read() == b'OLD' and mode(backup) == 0o600
    assert mode(str(p)) == 0o600
    # owner/group/mode were set on descriptors by the switch; Ansible's pass by name only adds SELinux/attributes
    assert [(c['mode'], c['owner'], c['group']) for c in mod.fs_calls] == [(None, None, None)]
    res = f.ModuleFileWriter(mod).write([f.FileSpec(str(p), b'NEW', secret=True, backup=True)])
    assert not res['changed'] and res['backup_files'] == {}


# ---- symlinks are replaced, never followed -------------------------------------------------------------------
def _planted_symlink(tmp_path, name, target_mode=0o644):
    victim_dir = tmp_path / 'victim'
    victim_dir.mkdir(exist_ok=True)
    victim = victim_dir / (name + '.target')
    victim.write_bytes(b'VICTIM')
    os.chmod(str(victim), target_mode)
    out = tmp_path / 'out'
    out.mkdir(exist_ok=True)
    link = out / name
    os.symlink(str(victim), str(link))
    return link, victim


def test_symlink_at_destination_is_replaced_not_followed(tmp_path):
    key_link, key_victim = _planted_symlink(tmp_path, 'h.key')
    crt_link, crt_victim = _planted_symlink(tmp_path, 'h.crt', 0o600)
    before = [(os.stat(str(v)).st_uid, mode(v)) for v in (key_victim, crt_victim)]
    with f.StagedWrite([f.FileSpec(str(key_link), b'NEWKEY', secret=True, backup=True),
                        f.FileSpec(str(crt_link), b'NEWCRT', mode='0644', owner='0', group='0')]) as sw:
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
    assert f.write_file_atomic(str(link), b'VICTIM', mode='0644')['changed']
    assert not os.path.islink(str(link)) and mode(link) == 0o644 and mode(victim) == 0o666
    sw = f.StagedWrite([f.FileSpec(str(link), b'VICTIM', mode='0644')])
    assert not sw.would_change()


def test_apply_attributes_refuses_a_symlink(tmp_path):
    link, victim = _planted_symlink(tmp_path, 'h.crt', 0o666)
    with pytest.raises(FileOutputError, match='is a symbolic link or not a regular file; it is never followed'):
        f.apply_attributes(str(link), 0o600, 0, 0)
    assert mode(victim) == 0o666
    assert f.StagedWrite([f.FileSpec(str(link), b'VICTIM', mode=0o600)]).would_change()


def test_fifo_at_destination_does_not_hang(tmp_path):
    fifo = tmp_path / 'h.crt'
    os.mkfifo(str(fifo))
    assert f.write_file_atomic(str(fifo), b'CRT')['changed']
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
    monkeypatch.setattr(f.os, 'write', spying_write)
    try:
        with f.StagedWrite([f.FileSpec(str(key), b'NEWKEY', secret=True, backup=True),
                            f.FileSpec(str(crt), b'NEWCRT', backup=True)], validator=validator) as sw:
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
        with f.StagedWrite([f.FileSpec(str(key), b'NEW', secret=True, backup=True)], validator=refuse) as sw:
            sw.commit()
    assert sorted(os.listdir(str(tmp_path))) == ['h.key']


# ---- output paths checked before the CA is contacted -----------------------------------------------------------
def test_check_output_paths_missing_directory(tmp_path):
    with pytest.raises(FileOutputError) as err:
        f.check_output_paths({'certificate_path': str(tmp_path / 'certs' / 'h.crt')})
    assert err.value.summary == ('The directory %s of certificate_path (%s) does not exist; nothing was requested '
                                 'from the CA' % (tmp_path / 'certs', tmp_path / 'certs' / 'h.crt'))
    (tmp_path / 'h.crt').mkdir()
    with pytest.raises(FileOutputError, match=r'^certificate_path \(.*h.crt\) is a directory; nothing was requested'):
        f.check_output_paths({'certificate_path': str(tmp_path / 'h.crt')})
    f.check_output_paths({'certificate_path': str(tmp_path / 'ok.crt'), 'chain_path': None})
    assert sorted(os.listdir(str(tmp_path))) == ['h.crt']        # the probe left nothing


@pytest.fixture
def world_dir():
    import shutil
    import tempfile
    d = tempfile.mkdtemp(prefix='adcs-files-')
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d)


def _as_nobody(check):
    """Exit code of check() run in a child that dropped root for nobody (as a become_user would)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 3
        try:
            os.setgid(65534)
            os.setuid(65534)
            code = check()
        finally:
            os._exit(code)
    status = os.waitpid(pid, 0)[1]
    return os.WEXITSTATUS(status)


def test_check_output_paths_unreachable_for_the_effective_user(world_dir):
    hidden = os.path.join(world_dir, 'hidden')
    os.mkdir(hidden, 0o700)
    os.mkdir(os.path.join(hidden, 'certs'))
    path = os.path.join(hidden, 'certs', 'h.crt')

    def check():
        try:
            f.check_output_paths({'certificate_path': path})
            return 1
        except FileOutputError as exc:
            return 0 if exc.summary == ('The directory %s of certificate_path (%s) cannot be reached by user nobody; '
                                        'nothing was requested from the CA' % (os.path.dirname(path), path)) else 2
    assert _as_nobody(check) == 0


def test_check_output_paths_not_writable_for_the_effective_user(world_dir):
    private = os.path.join(world_dir, 'private')
    os.mkdir(private, 0o755)
    path = os.path.join(private, 'h.key')

    def check():
        try:
            f.check_output_paths({'private_key_path': path})
            return 1
        except FileOutputError as exc:
            return 0 if exc.summary == ('The directory %s of private_key_path (%s) is not writable by user nobody; '
                                        'nothing was requested from the CA' % (private, path)) else 2
    assert _as_nobody(check) == 0
    os.chmod(private, 0o777)
    assert _as_nobody(lambda: f.check_output_paths({'private_key_path': path}) or 0) == 0
    assert os.listdir(private) == []


# ---- the set switches as one unit: a kill after every filesystem step ----------------------------------------
_DRIVER = r'''
import json, sys
from ansible_collections.adcs.enrollment.plugins.module_utils import _files as f
specs = [f.FileSpec(p, c.encode('latin-1'), secret=s, backup=b) for p, c, s, b in json.loads(sys.argv[1])]
with f.StagedWrite(specs) as sw:
    sw.commit()
print(json.dumps(sorted(sw.changed_paths)))
'''

NAMES = ('h.key', 'h.crt', 'h-chain.crt', 'h-fullchain.crt', 'h.p12')


def _run_driver(specs, kill_after, step_log):
    import json
    import subprocess
    import sys
    env = dict(os.environ, ADCS_TEST_FILES_KILL_AFTER_STEP=str(kill_after), ADCS_TEST_FILES_STEP_LOG=step_log,
               PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    return subprocess.run([sys.executable, '-c', _DRIVER, json.dumps(specs)], env=env, capture_output=True,
                          text=True, check=False)


def _on_disk(directory):
    return dict((n, (directory / n).read_bytes() if (directory / n).exists() else None) for n in NAMES)


def _prepare(directory, old):
    for n in NAMES:
        for name in os.listdir(str(directory)):
            os.unlink(str(directory / name))
    for n, content in old.items():
        if content is not None:
            (directory / n).write_bytes(content)


def _kill_cases(directory, old):
    new = dict((n, ('NEW ' + n).encode()) for n in NAMES)
    specs = [(str(directory / n), new[n].decode(), n in ('h.key', 'h.p12'), n == 'h.key') for n in NAMES]
    log = str(directory.parent / 'steps.log')
    _prepare(directory, old)
    res = _run_driver(specs, 0, log)               # 0: count the steps, never kill
    assert res.returncode == 0, res.stderr
    steps = [line.split(' ', 2)[1] for line in open(log).read().splitlines()]
    os.unlink(log)
    assert _on_disk(directory) == new
    outcomes = []
    for n in range(1, len(steps) + 1):
        _prepare(directory, old)
        res = _run_driver(specs, n, log)
        assert res.returncode == 137, (n, res.stderr)
        after_kill = _on_disk(directory)
        journal = [x for x in os.listdir(str(directory)) if x.endswith('.adcs-journal')]
        written, removed = [i for i, step in enumerate(steps) if step == 'journal']
        if written < n - 1 < removed:
            # between the journal's write and its removal the renames run one by one (no filesystem renames
            # several files at once): each file is old or new, and the journal is there for the next run
            assert journal == ['.h.crt.adcs-journal'], (n, steps[n - 1])
            assert all(after_kill[x] in (old[x], new[x]) for x in NAMES), (n, steps[n - 1])
        else:
            assert after_kill in (old, new), (n, steps[n - 1], after_kill)
        recovered = f.recover([str(directory / name) for name in NAMES])
        after_next_run = _on_disk(directory)
        assert after_next_run in (old, new), (n, steps[n - 1], after_next_run)
        assert after_next_run == new if 'journal' in steps[:n] else after_next_run == old, (n, steps[n - 1])
        assert leftovers(directory) == [], (n, steps[n - 1])
        names = sorted(os.listdir(str(directory)))
        assert [x for x in names if x not in NAMES and not x.startswith('h.key.')] == []   # backups only
        outcomes.append((steps[n - 1], 'new' if after_next_run == new else 'old', bool(recovered)))
        os.unlink(log)
    return steps, outcomes


def test_kill_after_every_step_leaves_old_or_new_set(tmp_path):
    directory = tmp_path / 'out'
    directory.mkdir()
    old = dict((n, ('OLD ' + n).encode()) for n in NAMES)
    steps, outcomes = _kill_cases(directory, old)
    assert steps == (['staged'] * 5 + ['backup'] + ['old'] * 5 + ['journal'] + ['renamed'] * 5 + ['journal']
                     + ['old'] * 5)
    assert [o[1] for o in outcomes] == ['old'] * 11 + ['new'] * 12
    # a journal was found (rolled forward) exactly while it existed: from its write until its removal
    assert [o[2] for o in outcomes] == [False] * 11 + [True] * 6 + [False] * 6


def test_kill_after_every_step_with_files_that_did_not_exist(tmp_path):
    directory = tmp_path / 'out'
    directory.mkdir()
    old = dict((n, ('OLD ' + n).encode() if n in ('h.key', 'h.crt') else None) for n in NAMES)
    steps, outcomes = _kill_cases(directory, old)
    assert steps.count('old') == 4 and steps.count('renamed') == 5


def test_journal_without_its_new_files_rolls_back(tmp_path):
    directory = tmp_path / 'out'
    directory.mkdir()
    old = dict((n, ('OLD ' + n).encode()) for n in NAMES)
    new = dict((n, ('NEW ' + n).encode()) for n in NAMES)
    specs = [(str(directory / n), new[n].decode(), n == 'h.key', False) for n in NAMES]
    log = str(tmp_path / 'steps.log')
    _prepare(directory, old)
    assert _run_driver(specs, 13, log).returncode == 137     # after the journal and two renames
    assert [line.split(' ', 2)[1] for line in open(log).read().splitlines()][-3:] == ['journal', 'renamed',
                                                                                      'renamed']
    assert _on_disk(directory) == dict(old, **{'h.key': new['h.key'], 'h.crt': new['h.crt']})  # mid-switch
    pending = [n for n in os.listdir(str(directory)) if n.startswith('.h.p12.') and n.endswith('.adcs-new')]
    os.unlink(str(directory / pending[0]))                   # a new file is gone: rolling forward is impossible
    assert list(f.recover([str(directory / n) for n in NAMES]).values()) == ['rolled back']
    assert _on_disk(directory) == old and leftovers(directory) == []


def test_stage_recovers_first_and_removes_only_our_strays(tmp_path):
    crt = tmp_path / 'h.crt'
    crt.write_bytes(b'OLD')
    ours = ['.h.crt.ab12cd_3.adcs-new', '.h.crt.x9y8z7w6.adcs-old', '.h.crt.k2j3h4g5.tmp',
            '.h.crt.k2j3h4g5.tmp.rollback']
    others = ['.h.crt.csr.ab12cd_3.adcs-new', '.other.ab12cd_3.adcs-new', 'h.crt.20260101~', '.h.crt.notes']
    for name in ours + others:
        (tmp_path / name).write_bytes(b'x')
    assert f.write_file_atomic(str(crt), b'NEW')['changed']
    assert sorted(os.listdir(str(tmp_path))) == sorted(['h.crt'] + others)


def test_unreadable_journal_is_reported(tmp_path):
    crt = tmp_path / 'h.crt'
    crt.write_bytes(b'OLD')
    (tmp_path / '.h.crt.adcs-journal').write_text('{"entries": [{"path": 1}]}')
    with pytest.raises(FileOutputError) as err:
        f.write_file_atomic(str(crt), b'NEW')
    assert err.value.summary == ('The journal %s of an interrupted write cannot be read; the files it names were '
                                 'left as they are' % (tmp_path / '.h.crt.adcs-journal'))
    assert crt.read_bytes() == b'OLD'


def test_a_concurrent_run_on_the_same_directory_waits(tmp_path):
    import threading
    import time
    crt = tmp_path / 'h.crt'
    crt.write_bytes(b'OLD')
    holder = f._DirLocks([str(crt)]).acquire()   # another run is switching files in this directory
    done = []
    worker = threading.Thread(target=lambda: done.append(f.write_file_atomic(str(crt), b'NEW')['changed']))
    worker.start()
    time.sleep(0.5)
    assert done == [] and crt.read_bytes() == b'OLD'
    assert [n for n in os.listdir(str(tmp_path)) if n.endswith('.adcs-new')] == []   # not even staged yet
    holder.release()
    worker.join(10)
    assert done == [True] and crt.read_bytes() == b'NEW' and leftovers(tmp_path) == []


def test_lock_wait_has_a_deadline(tmp_path, monkeypatch):
    holder = f._DirLocks([str(tmp_path / 'y')]).acquire()
    try:
        with pytest.raises(FileOutputError) as err:
            f._DirLocks([str(tmp_path / 'x')], timeout=0.3).acquire()
        assert err.value.summary == ('Another run has been writing files in %s for 0.3 seconds; nothing was changed'
                                     % tmp_path)
    finally:
        holder.release()


# ---- a planted journal is never acted on --------------------------------------------------------------------------
def _plant_journal(directory, entries, name='h.crt'):
    jpath = directory / ('.%s.adcs-journal' % name)
    jpath.write_text(json.dumps({'version': 1, 'entries': entries}))
    os.chmod(str(jpath), 0o600)
    return jpath


def _snapshot(*dirs):
    out = {}
    for d in dirs:
        for n in os.listdir(str(d)):
            p = os.path.join(str(d), n)
            out[p] = (os.lstat(p).st_ino, open(p, 'rb').read() if os.path.isfile(p) and not os.path.islink(p)
                      else None)
    return out


UNTRUSTED = ('The journal %s of an interrupted write names files that are not the outputs of this task or not our '
             'temporary files (%s, %s, %s); nothing was changed. What to do: Inspect the journal and the files '
             'next to it, then remove the journal.')


@pytest.mark.parametrize('case', ['path_elsewhere', 'tmp_elsewhere', 'old_elsewhere', 'tmp_not_ours',
                                  'other_output'])
def test_a_planted_journal_renames_or_deletes_nothing(tmp_path, case):
    """A journal naming a path outside this task's outputs, or tmp/old files that are not our temporary names next
    to the path, is refused before anything is renamed or removed."""
    out, elsewhere = tmp_path / 'out', tmp_path / 'etc'
    out.mkdir()
    elsewhere.mkdir()
    crt = out / 'h.crt'
    crt.write_bytes(b'OLD')
    victim = elsewhere / 'shadow'
    victim.write_bytes(b'VICTIM')
    evil = out / '.h.crt.abcdefgh.adcs-new'
    evil.write_bytes(b'EVIL')
    digest = hashlib.sha256(b'EVIL').hexdigest()
    entry = {'path': str(crt), 'tmp': str(evil), 'old': None, 'sha256': digest}
    if case == 'path_elsewhere':
        entry['path'] = str(victim)
    elif case == 'tmp_elsewhere':
        entry['tmp'] = str(victim)
        entry['sha256'] = hashlib.sha256(b'VICTIM').hexdigest()
    elif case == 'old_elsewhere':
        entry['old'] = str(victim)
        entry['sha256'] = '0' * 64    # not new: a roll back would rename or unlink old
    elif case == 'tmp_not_ours':
        other = out / 'app.conf'
        other.write_bytes(b'CONF')
        entry['tmp'] = str(other)
    else:
        entry['path'] = str(out / 'other.crt')
        entry['tmp'] = str(out / '.other.crt.abcdefgh.adcs-new')
    jpath = _plant_journal(out, [entry])
    before = _snapshot(out, elsewhere)
    with pytest.raises(FileOutputError) as err:
        f.recover([str(crt)])
    assert err.value.to_message() == UNTRUSTED % (jpath, entry['path'], entry['tmp'], entry['old'])
    with pytest.raises(FileOutputError):
        f.write_file_atomic(str(crt), b'NEW')
    assert _snapshot(out, elsewhere) == before


@pytest.mark.parametrize('plant', ['fifo', 'symlink', 'other_owner', 'group_writable', 'huge', 'hard_link'])
def test_a_journal_we_did_not_write_is_not_trusted(tmp_path, plant):
    """A FIFO journal does not hang; a symlink, a journal of another user or writable by others, an oversized one
    or one with a second name are refused and nothing is touched."""
    crt = tmp_path / 'h.crt'
    crt.write_bytes(b'OLD')
    new = tmp_path / '.h.crt.abcdefgh.adcs-new'
    new.write_bytes(b'NEW')
    entry = {'path': str(crt), 'tmp': str(new), 'old': None, 'sha256': hashlib.sha256(b'NEW').hexdigest()}
    jpath = _plant_journal(tmp_path, [entry])
    user = pwd.getpwuid(os.geteuid()).pw_name
    detail = '%s is not owned by user %s or is writable by other users; it is not trusted' % (jpath, user)
    if plant == 'fifo':
        os.unlink(str(jpath))
        os.mkfifo(str(jpath))
        detail = '%s is a symbolic link or not a regular file; it is not read' % jpath
    elif plant == 'symlink':
        real = tmp_path / 'journal.json'
        os.rename(str(jpath), str(real))
        os.symlink(str(real), str(jpath))
        detail = '%s is a symbolic link or not a regular file; it is not read' % jpath
    elif plant == 'other_owner':
        os.chown(str(jpath), 65534, 65534)
    elif plant == 'group_writable':
        os.chmod(str(jpath), 0o620)
    elif plant == 'huge':
        with open(str(jpath), 'ab') as handle:
            handle.write(b' ' * (1 << 20))
        detail = '%s is larger than %d bytes; it is not read' % (jpath, 1 << 20)
    else:
        os.link(str(jpath), str(tmp_path / 'second-name'))
    before = _snapshot(tmp_path)
    with pytest.raises(FileOutputError) as err:
        f.recover([str(crt)])
    if plant == 'hard_link':
        assert err.value.summary == ('The journal %s of an interrupted write cannot be read; the files it names '
                                     'were left as they are' % jpath)
        assert err.value.detail == 'it has 2 hard links'
    else:
        assert err.value.to_message() == (
            'The journal %s of an interrupted write is not trusted; the files it names were left as they are; %s. '
            'What to do: Inspect the journal and the files next to it, then remove the journal.' % (jpath, detail))
    assert _snapshot(tmp_path) == before


def test_our_own_journal_is_still_completed(tmp_path):
    crt, key = tmp_path / 'h.crt', tmp_path / 'h.key'
    crt.write_bytes(b'OLD')
    new = tmp_path / '.h.crt.abcdefgh.adcs-new'
    new.write_bytes(b'NEW')
    _plant_journal(tmp_path, [{'path': str(crt), 'tmp': str(new), 'old': None,
                               'sha256': hashlib.sha256(b'NEW').hexdigest()}])
    assert list(f.recover([str(crt), str(key)]).values()) == ['rolled forward']
    assert crt.read_bytes() == b'NEW' and leftovers(tmp_path) == []


# ---- other users cannot hold our locks ---------------------------------------------------------------------------
def test_another_user_holding_the_directory_does_not_block_us(world_dir):
    """nobody flocks the output directory (all it needs is read access) and tries our lock file: we still write."""
    import fcntl
    crt = os.path.join(world_dir, 'h.crt')
    f._DirLocks([crt]).acquire().release()      # the lock file exists
    lock_path = f._lock_path(os.stat(world_dir))[1]
    assert os.path.exists(lock_path)
    ready_r, ready_w = os.pipe()
    done_r, done_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 3
        try:
            os.setgid(65534)
            os.setuid(65534)
            fd = os.open(world_dir, os.O_RDONLY)
            fcntl.flock(fd, fcntl.LOCK_EX)
            code = 0
            try:   # our lock file for the directory: nobody may not even open it
                os.open(lock_path, os.O_RDONLY)
                code = 4
            except OSError:
                pass
            os.write(ready_w, b'%d' % code)
            os.read(done_r, 1)
        finally:
            os._exit(code)
    try:
        assert os.read(ready_r, 1) == b'0'
        started = time.time()
        f._DirLocks([crt], timeout=1).acquire().release()
        assert f.write_file_atomic(crt, b'NEW')['changed']
        assert time.time() - started < 5 and open(crt, 'rb').read() == b'NEW'
    finally:
        os.write(done_w, b'x')
        assert os.WEXITSTATUS(os.waitpid(pid, 0)[1]) == 0


def test_a_lock_directory_of_someone_else_is_refused(tmp_path, monkeypatch):
    root = tmp_path / 'locks'
    root.mkdir()
    os.chown(str(root), 65534, 65534)
    os.chmod(str(root), 0o700)
    monkeypatch.setattr(f, '_LOCK_ROOT', str(root))
    with pytest.raises(FileOutputError) as err:
        f.write_file_atomic(str(tmp_path / 'h.crt'), b'NEW')
    assert err.value.to_message() == (
        'The lock directory %s is not a directory of user %s with mode 0700; nothing was changed. What to do: '
        'Someone else may have created it: inspect and remove it.' % (root, pwd.getpwuid(os.geteuid()).pw_name))
    assert not (tmp_path / 'h.crt').exists()
    os.chown(str(root), os.geteuid(), os.getegid())
    lock = f._lock_file(os.stat(str(tmp_path)))
    try:
        st = os.fstat(lock)
        assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == os.geteuid()
    finally:
        os.close(lock)


# ---- read_file: no symlink, no FIFO, bounded ---------------------------------------------------------------------
def test_read_file_refuses_symlinks_fifos_and_oversized_files(tmp_path):
    victim = tmp_path / 'victim'
    victim.write_bytes(b'SECRET')
    link, fifo, zero, big = (tmp_path / n for n in ('link', 'fifo', 'zero', 'big'))
    os.symlink(str(victim), str(link))
    os.mkfifo(str(fifo))
    os.symlink('/dev/zero', str(zero))
    big.write_bytes(b'x' * 2048)
    for path in (link, fifo, zero):
        with pytest.raises(FileOutputError) as err:
            f.read_file(str(path))
        assert err.value.to_message() == (
            '%s is a symbolic link or not a regular file; it is not read. What to do: Remove it or replace it with '
            'the regular file it should be (the next write of that path replaces a symbolic link with a regular '
            'file), or point the option at the real file.' % path)
        assert f.read_file(str(path), replaceable=True) is None
    with pytest.raises(FileOutputError) as err:
        f.read_file(str(big), max_size=1024)
    assert err.value.summary == '%s is larger than 1024 bytes; it is not read' % big
    assert f.read_file(str(big)) == b'x' * 2048 and f.read_file(str(tmp_path / 'absent')) is None
    assert f.MAX_READ_SIZE == 8 << 20


def test_an_integer_secret_mode_is_checked(tmp_path):
    with pytest.raises(InvalidInput) as err:
        f.FileSpec(str(tmp_path / 'k'), b'K', mode=0o644, secret=True)
    assert err.value.summary == ('private_key_mode 0644 would make the private key writable by its group or '
                                 'accessible to other users; use 0600, or 0640 for a group that only reads it')
    assert f.FileSpec(str(tmp_path / 'k'), b'K', mode=0o640, secret=True).mode == 0o640
    assert f.FileSpec(str(tmp_path / 'c'), b'C', mode=0o644).mode == 0o644


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

    monkeypatch.setattr(f.os, 'rename', rename_then_swap)
    f.write_file_atomic(str(key), b'NEW', mode=0o600, owner=65534, secret=True)
    st = os.stat(str(victim))
    assert stat.S_IMODE(st.st_mode) == 0o644 and st.st_uid == os.geteuid()


def test_a_kept_file_replaced_by_a_hard_link_gets_no_owner_or_mode(tmp_path):
    out = tmp_path / 'out'
    out.mkdir()
    crt = out / 'h.crt'
    crt.write_bytes(b'SAME')
    os.chmod(str(crt), 0o600)
    victim = _victim(tmp_path, b'SAME')
    spec = f.FileSpec(str(crt), b'SAME', mode=0o640, owner=65534)
    with f.StagedWrite([spec]) as sw:
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
