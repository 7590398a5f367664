# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Files (_files): modes as ansible.builtin.file takes them, secret modes, output path checks, bounded reads."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

import pytest

from ansible_collections.adcs.enrollment.plugins.module_utils import _files
from ansible_collections.adcs.enrollment.plugins.module_utils import _staged
from ansible_collections.adcs.enrollment.plugins.module_utils._errors import FileOutputError, InvalidInput
from ansible_collections.adcs.enrollment.tests.unit.plugins.support.files import (
    mode, planted_symlink as _planted_symlink,
)


@pytest.mark.parametrize('value, expected', [(None, None), ('0600', 0o600), ('644', 0o644), (0o640, 0o640),
                                             (416, 0o640), ('0640', 0o640), ('u=rw,g=r,o=', 0o640),
                                             ('u=rw,g=r', 0o640), ('go-rwx', 0o600), ('u+x', 0o700), (0, 0)])
def test_parse_mode_as_ansible_file(value, expected):
    # as ansible.builtin.file: YAML 0640 unquoted is the integer 416 == 0o640, strings octal or symbolic
    # (symbolic applied to the existing mode, here 0600)
    assert _files.parse_mode(value, base=0o600) == expected


@pytest.mark.parametrize('value', ['u=rwz', 'rw-r-----', '0999', 0o17777, -1, True, '10000'])
def test_parse_mode_invalid(value):
    with pytest.raises(InvalidInput, match='File mode .* (must be octal, like "0600", or symbolic|is out of range)'):
        _files.parse_mode(value)


def test_parse_mode_matches_ansible_core(tmp_path):
    # the same answers ansible-core's own set_mode_if_different computes for a file of mode 0600
    from ansible.module_utils.basic import AnsibleModule
    target = tmp_path / 'x'
    target.write_bytes(b'')
    os.chmod(str(target), 0o600)
    for value in ('u=rw,g=r', 'a+r', 'g+rX,o-rwx', 'u=rwx,g=rx,o=rx'):
        assert _files.parse_mode(value, base=0o600) == \
            AnsibleModule._symbolic_mode_to_octal(os.stat(str(target)), value)


@pytest.mark.parametrize('value', [0o600, 0o640, 0o400, 416, '0640', 'u=rw,g=r', 'u=rw,go='])
def test_secret_mode_accepted(value):
    assert _files.check_secret_mode(value) & 0o027 == 0


@pytest.mark.parametrize('value, shown', [(0o660, '0660'), (0o604, '0604'), (0o644, '0644'), ('0644', '0644'),
                                          ('u=rw,g=rw', '"u=rw,g=rw" (0660)'), ('o+r', '"o+r" (0604)'),
                                          (0o601, '0601')])
def test_secret_mode_refused(value, shown):
    with pytest.raises(InvalidInput) as err:
        _files.check_secret_mode(value)
    assert err.value.summary == ('private_key_mode %s would make the private key writable by its group or accessible '
                                 'to other users; use 0600, or 0640 for a group that only reads it' % shown)


def test_symbolic_secret_mode_checked_against_the_existing_file(tmp_path):
    key = tmp_path / 'k.key'
    key.write_bytes(b'K')
    os.chmod(str(key), 0o644)
    with pytest.raises(InvalidInput, match='private_key_mode 0644 would make the private key'):
        _staged.FileSpec(str(key), b'K2', mode='u=rw', secret=True)       # leaves o=r of the existing file
    assert _staged.FileSpec(str(key), b'K2', mode='u=rw,go=', secret=True).mode == 0o600
    assert _staged.FileSpec(str(tmp_path / 'new.crt'), b'C', mode='u=rw,g=r').mode == 0o644   # new file: from 0644


def test_attributes_are_never_set_through_a_symlink(tmp_path):
    link, victim = _planted_symlink(tmp_path, 'h.crt', 0o666)
    st = os.stat(str(victim))   # even the inode of the symlink's target: never followed
    with pytest.raises(FileOutputError, match='was replaced while the files were written'):
        _files._apply_attributes_to(str(link), (st.st_dev, st.st_ino), 0o600, 0, 0)
    assert mode(victim) == 0o666
    assert _staged.StagedWrite([_staged.FileSpec(str(link), b'VICTIM', mode=0o600)]).would_change()


# ---- output paths checked before the CA is contacted -----------------------------------------------------------
def test_check_output_paths_missing_directory(tmp_path):
    with pytest.raises(FileOutputError) as err:
        _files.check_output_paths({'certificate_path': str(tmp_path / 'certs' / 'h.crt')})
    assert err.value.summary == ('The directory %s of certificate_path (%s) does not exist; nothing was requested '
                                 'from the CA' % (tmp_path / 'certs', tmp_path / 'certs' / 'h.crt'))
    (tmp_path / 'h.crt').mkdir()
    with pytest.raises(FileOutputError, match=r'^certificate_path \(.*h.crt\) is a directory; nothing was requested'):
        _files.check_output_paths({'certificate_path': str(tmp_path / 'h.crt')})
    _files.check_output_paths({'certificate_path': str(tmp_path / 'ok.crt'), 'chain_path': None})
    assert sorted(os.listdir(str(tmp_path))) == ['h.crt']        # the probe left nothing


def test_check_output_paths_probes_a_directory_once_per_run(tmp_path, monkeypatch):
    probes = []
    real = _files._can_write_dir
    monkeypatch.setattr(_files, '_can_write_dir', lambda d: probes.append(d) or real(d))
    probed = set()
    for name in ('a', 'b'):
        _files.check_output_paths({'certificate_path': str(tmp_path / (name + '.crt')),
                                   'private_key_path': str(tmp_path / (name + '.key'))}, probed=probed)
    assert probes == [str(tmp_path)] and probed == {str(tmp_path)}
    with pytest.raises(FileOutputError, match='does not exist'):   # the other checks still run for it
        _files.check_output_paths({'certificate_path': str(tmp_path / 'gone' / 'c.crt')}, probed=probed)


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
            _files.check_output_paths({'certificate_path': path})
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
            _files.check_output_paths({'private_key_path': path})
            return 1
        except FileOutputError as exc:
            return 0 if exc.summary == ('The directory %s of private_key_path (%s) is not writable by user nobody; '
                                        'nothing was requested from the CA' % (private, path)) else 2
    assert _as_nobody(check) == 0
    os.chmod(private, 0o777)
    assert _as_nobody(lambda: _files.check_output_paths({'private_key_path': path}) or 0) == 0
    assert os.listdir(private) == []


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
            _files.read_file(str(path))
        assert err.value.to_message() == (
            '%s is a symbolic link or not a regular file; it is not read. What to do: Remove it or replace it with '
            'the regular file it should be (the next write of that path replaces a symbolic link with a regular '
            'file), or point the option at the real file.' % path)
        assert _files.read_file(str(path), replaceable=True) is None
    with pytest.raises(FileOutputError) as err:
        _files.read_file(str(big), max_size=1024)
    assert err.value.summary == '%s is larger than 1024 bytes; it is not read' % big
    assert _files.read_file(str(big)) == b'x' * 2048 and _files.read_file(str(tmp_path / 'absent')) is None
    assert _files.MAX_READ_SIZE == 8 << 20


def test_an_integer_secret_mode_is_checked(tmp_path):
    with pytest.raises(InvalidInput) as err:
        _staged.FileSpec(str(tmp_path / 'k'), b'K', mode=0o644, secret=True)
    assert err.value.summary == ('private_key_mode 0644 would make the private key writable by its group or '
                                 'accessible to other users; use 0600, or 0640 for a group that only reads it')
    assert _staged.FileSpec(str(tmp_path / 'k'), b'K', mode=0o640, secret=True).mode == 0o640
    assert _staged.FileSpec(str(tmp_path / 'c'), b'C', mode=0o644).mode == 0o644


def _dir_mode(path):
    return os.stat(str(path)).st_mode & 0o7777


def test_create_parent_directories_modes(tmp_path):
    # the key's directory 0700, every other output's (and missing parents) 0755, whatever the umask
    spec = dict(private_key_path=str(tmp_path / 'keys' / 'k.pem'),
                certificate_path=str(tmp_path / 'a' / 'certs' / 'c.pem'),
                chain_path=str(tmp_path / 'a' / 'chain' / 'ch.pem'),
                state_path=str(tmp_path / 'a' / 'certs' / 'c.pem.adcs.json'))
    old = os.umask(0o077)
    try:
        created = _files.create_parent_directories([spec])
    finally:
        os.umask(old)
    assert created == [str(tmp_path / 'keys'), str(tmp_path / 'a'), str(tmp_path / 'a' / 'certs'),
                       str(tmp_path / 'a' / 'chain')]
    assert _dir_mode(tmp_path / 'keys') == 0o700
    assert _dir_mode(tmp_path / 'a') == 0o755
    assert _dir_mode(tmp_path / 'a' / 'certs') == 0o755
    assert _dir_mode(tmp_path / 'a' / 'chain') == 0o755
    # a second run creates nothing
    assert _files.create_parent_directories([spec]) == []


def test_create_parent_directories_keeps_existing(tmp_path):
    (tmp_path / 'keys').mkdir()
    os.chmod(str(tmp_path / 'keys'), 0o750)
    spec = dict(private_key_path=str(tmp_path / 'keys' / 'k.pem'), certificate_path=str(tmp_path / 'c.pem'))
    assert _files.create_parent_directories([spec]) == []
    assert _dir_mode(tmp_path / 'keys') == 0o750


def test_create_parent_directories_shared_directory_is_the_keys(tmp_path):
    spec = dict(private_key_path=str(tmp_path / 'd' / 'k.pem'), certificate_path=str(tmp_path / 'd' / 'c.pem'))
    assert _files.create_parent_directories([spec]) == [str(tmp_path / 'd')]
    assert _dir_mode(tmp_path / 'd') == 0o700


def test_create_parent_directories_check_mode(tmp_path):
    spec = dict(private_key_path=str(tmp_path / 'keys' / 'k.pem'), certificate_path=str(tmp_path / 'certs' / 'c.pem'))
    expected = [str(tmp_path / 'keys'), str(tmp_path / 'certs')]
    assert _files.create_parent_directories([spec], check_mode=True) == expected
    assert not (tmp_path / 'keys').exists() and not (tmp_path / 'certs').exists()


def test_create_parent_directories_owner_group(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(_files.os, 'fchown', lambda fd, uid, gid: calls.append((uid, gid)))
    spec = dict(private_key_path=str(tmp_path / 'k' / 'k.pem'), owner='1234', group='4321')
    assert _files.create_parent_directories([spec]) == [str(tmp_path / 'k')]
    assert calls == [(1234, 4321)]


def test_create_parent_directories_cannot_create(tmp_path, monkeypatch):
    def refused(path, mode=0o777):
        raise PermissionError(13, 'Permission denied', path)
    monkeypatch.setattr(_files.os, 'mkdir', refused)        # a parent the effective user may not write (root may)
    spec = dict(certificate_path=str(tmp_path / 'ro' / 'certs' / 'c.pem'))
    with pytest.raises(FileOutputError) as exc:
        _files.create_parent_directories([spec])
    message = exc.value.to_message()
    assert 'The directory %s cannot be created by user' % (tmp_path / 'ro') in message
    assert 'Permission denied' in message and 'nothing was requested from the CA' in message
    assert 'Traceback' not in message


def test_create_parent_directories_under_a_file(tmp_path):
    (tmp_path / 'f').write_text(u'x')
    spec = dict(certificate_path=str(tmp_path / 'f' / 'd' / 'c.pem'))
    with pytest.raises(FileOutputError) as exc:
        _files.create_parent_directories([spec])
    message = exc.value.to_message()
    assert 'The directory %s cannot be created by user' % (tmp_path / 'f' / 'd') in message
    assert 'Traceback' not in message
