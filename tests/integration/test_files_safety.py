# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Output files against the lab (issue 12, item 6): modes as ansible.builtin.file takes them (YAML 0640 unquoted
too), private-key modes open to others refused, a kill after every filesystem step of a regenerate_key switch
(key, certificate, chain, full chain, PKCS#12), symlinks planted at the destinations, a missing output directory
found before the CA is asked.

ADCS_PYTHON selects the virtualenv (newest or oldest ansible-core)."""

import json
import os
import sqlite3
import stat

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from test_roles import HOSTS, Fleet, results, web_request
from test_wcce_request import creds

pytestmark = pytest.mark.lab

MODULE = 'adcs.enrollment.wcce_request'
KILL_ENV = 'ADCS_TEST_FILES_KILL_AFTER_STEP'
LOG_ENV = 'ADCS_TEST_FILES_STEP_LOG'
REFUSED = ('private_key_mode %s would make the private key writable by its group or accessible to other users; '
           'use 0600, or 0640 for a group that only reads it')


def web_args(lab, directory, name='web', **extra):
    cn = '%s.lab.adcs.test' % name
    args = dict(creds(lab), template='WebServer', common_name=cn, subject_alt_name=['DNS:%s' % cn],
                private_key_path=os.path.join(str(directory), name + '.key'),
                certificate_path=os.path.join(str(directory), name + '.crt'))
    args.update(extra)
    return args


def mode(path):
    return stat.S_IMODE(os.lstat(str(path)).st_mode)


def read(path):
    with open(str(path), 'rb') as handle:
        return handle.read()


def spki(obj):
    return obj.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def ca_request_count(lab, marker):
    """Requests the shared lab CA received whose CSR names marker (other tests use the CA at the same time)."""
    db = sqlite3.connect('file:%s?mode=ro' % os.path.join(lab['state_dir'], 'ca', 'requests.db'), uri=True)
    try:
        return db.execute('SELECT COUNT(*) FROM requests WHERE instr(request_blob, ?) > 0',
                          (marker.encode(),)).fetchone()[0]
    finally:
        db.close()


def unique(prefix):
    return '%s-%s' % (prefix, os.urandom(4).hex())


def leftovers(directory):
    return sorted(n for n in os.listdir(str(directory)) if n.startswith('.') or n.endswith('.rollback'))


def yaml_playbook(tmp_path, module_args_yaml):
    """A playbook whose task arguments are YAML text, so that 0640 stays unquoted (the integer 416)."""
    path = tmp_path / 'play.yml'
    path.write_text('- hosts: localhost\n  gather_facts: false\n  tasks:\n    - name: enroll\n'
                    '      adcs.enrollment.wcce_request:\n' +
                    ''.join('        %s\n' % line for line in module_args_yaml.splitlines()))
    return str(path)


def task_result(out):
    return out['plays'][0]['tasks'][0]['hosts']['localhost']


# ------------------------------------------------------------------------------------------------------------
# modes
# ------------------------------------------------------------------------------------------------------------
def test_module_modes_unquoted_yaml_int_octal_and_symbolic(lab, ansible, tmp_path):
    args = web_args(lab, tmp_path, 'yaml', chain_path=str(tmp_path / 'yaml-chain.crt'))
    text = '\n'.join('%s: %s' % (k, json.dumps(v)) for k, v in sorted(args.items()))
    text += '\nprivate_key_mode: 0640\nmode: 0640\n'                 # unquoted: YAML reads the integer 416
    rc, out = ansible.playbook(yaml_playbook(tmp_path, text))
    result = task_result(out)
    assert rc == 0 and result['changed'], result
    assert (mode(args['private_key_path']), mode(args['certificate_path']), mode(args['chain_path'])) == \
        (0o640, 0o640, 0o640)

    for name, key_mode, cert_mode, want in [('int', 416, 416, (0o640, 0o640)),
                                            ('octal', '0640', '0600', (0o640, 0o600)),
                                            ('symbolic', 'u=rw,g=r', 'u=rw,g=r,o=', (0o640, 0o640))]:
        args = web_args(lab, tmp_path, name, private_key_mode=key_mode, mode=cert_mode)
        rc, result = ansible.module(MODULE, args)
        assert rc == 0 and result['changed'], result
        assert (mode(args['private_key_path']), mode(args['certificate_path'])) == want, name
        rc, result = ansible.module(MODULE, args)
        assert rc == 0 and not result['changed'], (name, result)


@pytest.mark.parametrize('key_mode, shown', [(0o644, '0644'), ('0660', '0660'), ('o+r', '"o+r" (0604)')])
def test_module_refuses_a_private_key_mode_open_to_others(lab, ansible, tmp_path, key_mode, shown):
    name = unique('refused')
    rc, result = ansible.module(MODULE, web_args(lab, tmp_path, name, private_key_mode=key_mode))
    assert rc != 0 and result['failed'], result
    assert result['msg'].startswith(REFUSED % shown), result['msg']
    assert 'request_id' not in result or result['request_id'] is None
    assert os.listdir(str(tmp_path)) == [] and ca_request_count(lab, name) == 0


def _yaml_inventory(fleet, **raw_vars):
    """The fleet's inventory as YAML, with raw_vars written unquoted (certificate_key_mode: 0640 is an int)."""
    with open(fleet.inventory) as handle:
        inv = json.load(handle)
    for key in raw_vars:
        inv['all']['vars'][key] = '@@%s@@' % key
    text = json.dumps(inv)
    for key, value in raw_vars.items():
        text = text.replace('"@@%s@@"' % key, value)
    fleet.inventory = fleet.inventory[:-len('.json')] + '.yml'
    with open(fleet.inventory, 'w') as handle:
        handle.write(text)


def test_role_with_unquoted_yaml_modes(lab, ansible, tmp_path):
    fleet = Fleet(lab, ansible, tmp_path)
    fleet.write([web_request(name='m')])
    _yaml_inventory(fleet, certificate_key_mode='0640', certificate_mode='0640')
    rc, out = fleet.run()
    assert rc == 0, out
    for host in HOSTS:          # host1 enrolls on the host, host2 from the controller
        assert results(out)[host]['m']['status'] == 'issued', results(out)[host]
        assert mode(fleet.path(host, 'm', 'key')) == 0o640, host
        assert mode(fleet.path(host, 'm')) == 0o640, host
    rc, out = fleet.run()
    assert rc == 0 and all(results(out)[h]['m']['status'] == 'unchanged' for h in HOSTS), out


def test_role_refuses_a_private_key_mode_open_to_others(lab, ansible, tmp_path):
    marker = unique('role-refused')
    fleet = Fleet(lab, ansible, tmp_path)
    fleet.write([web_request(name='m', common_name='%s-{{ inventory_hostname }}.lab.adcs.test' % marker,
                             dns=['%s-{{ inventory_hostname }}.lab.adcs.test' % marker])])
    _yaml_inventory(fleet, certificate_key_mode='0644')
    rc, out = fleet.run()
    assert rc == 0, out
    for host in HOSTS:
        r = results(out)[host]['m']
        assert r['status'] == 'failed', r
        assert REFUSED % '0644' in r['message'], r
        assert not os.path.exists(fleet.path(host, 'm', 'key')) and not os.path.exists(fleet.path(host, 'm'))
    assert ca_request_count(lab, marker) == 0


# ------------------------------------------------------------------------------------------------------------
# a kill after every filesystem step of the switch
# ------------------------------------------------------------------------------------------------------------
NAMES = ('web.key', 'web.crt', 'web-chain.crt', 'web-full.crt', 'web.p12')


def _set_args(lab, directory, **extra):
    return web_args(lab, directory, chain_path=str(directory / 'web-chain.crt'),
                    fullchain_path=str(directory / 'web-full.crt'), pkcs12_path=str(directory / 'web.p12'),
                    pkcs12_passphrase='p12-secret', **extra)


def _files(directory):
    return dict((n, read(directory / n) if (directory / n).exists() else None) for n in NAMES)


def _consistent(directory):
    """The set on disk belongs together: key = certificate = PKCS#12, full chain = certificate + chain."""
    key = serialization.load_pem_private_key(read(directory / 'web.key'), None)
    cert = x509.load_pem_x509_certificate(read(directory / 'web.crt'))
    chain = x509.load_pem_x509_certificates(read(directory / 'web-chain.crt'))
    full = x509.load_pem_x509_certificates(read(directory / 'web-full.crt'))
    p12_key, p12_cert, p12_extra = pkcs12.load_key_and_certificates(read(directory / 'web.p12'), b'p12-secret')
    return spki(key) == spki(cert) == spki(p12_key) and p12_cert == cert and full == [cert] + chain and \
        list(p12_extra) == chain


def test_kill_after_every_step_of_a_regenerate_key_switch(lab, ansible, tmp_path):
    directory = tmp_path / 'out'
    directory.mkdir()
    args = _set_args(lab, directory)
    rc, result = ansible.module(MODULE, args)
    assert rc == 0 and result['changed'], result
    old = _files(directory)
    assert _consistent(directory)

    log = str(tmp_path / 'steps.log')
    rc, result = ansible.module(MODULE, dict(args, regenerate_key=True, force=True),
                                extra_env={KILL_ENV: '0', LOG_ENV: log})
    assert rc == 0 and result['changed'], result
    lines = [line.split(' ', 2) for line in open(log).read().splitlines()]
    steps = [line[1] for line in lines]
    switched = sorted(os.path.basename(line[2]) for line in lines if line[1] == 'staged')
    # the chain is the same CA chain: not rewritten; the other four switch
    assert switched == ['web-full.crt', 'web.crt', 'web.key', 'web.p12']
    assert steps == (['staged'] * 4 + ['old'] * 4 + ['journal'] + ['renamed'] * 4 + ['journal'] + ['old'] * 4)
    journal_written, journal_removed = [i for i, s in enumerate(steps) if s == 'journal']
    os.unlink(log)

    for n in range(1, len(steps) + 1):
        for name in os.listdir(str(directory)):
            os.unlink(str(directory / name))
        for name, content in old.items():
            (directory / name).write_bytes(content)
        os.chmod(str(directory / 'web.key'), 0o600)
        os.chmod(str(directory / 'web.p12'), 0o600)
        rc, result = ansible.module(MODULE, dict(args, regenerate_key=True, force=True), extra_env={KILL_ENV: str(n)})
        assert rc != 0, (n, result)                                # killed (exit 137)
        after_kill = _files(directory)
        assert after_kill['web-chain.crt'] == old['web-chain.crt']
        kept = [name for name in switched if after_kill[name] == old[name]]
        if journal_written < n - 1 < journal_removed:
            # mid-switch: each file old or new, and the journal is there for the next run
            assert os.path.exists(str(directory / '.web.crt.adcs-journal')), (n, steps[n - 1])
        else:
            assert kept in (switched, []), (n, steps[n - 1], kept)
        # the next run (no kill, no regenerate_key) finds a complete set: rolled forward once the journal was
        # written, the old one before; no temporary, journal or rollback file stays
        rc, result = ansible.module(MODULE, args)
        assert rc == 0 and not result.get('failed'), (n, result)
        assert result['action'] == 'none', (n, steps[n - 1], result)
        now = _files(directory)
        if n - 1 >= journal_written:
            assert all(now[name] != old[name] for name in switched), (n, steps[n - 1])
        else:
            assert now == old, (n, steps[n - 1])
        assert _consistent(directory), (n, steps[n - 1])
        assert leftovers(directory) == [], (n, steps[n - 1])
        assert mode(directory / 'web.key') == 0o600 and mode(directory / 'web.p12') == 0o600


# ------------------------------------------------------------------------------------------------------------
# symlinks, backups, missing directories
# ------------------------------------------------------------------------------------------------------------
def test_symlinks_planted_at_the_destinations_are_replaced_not_followed(lab, ansible, tmp_path):
    out, victims = tmp_path / 'out', tmp_path / 'victims'
    out.mkdir()
    victims.mkdir()
    from cryptography.hazmat.primitives.asymmetric import rsa
    victim_key = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    planted = {}
    for name, victim_mode, content in (('web.key', 0o644, victim_key), ('web.crt', 0o600, b'precious web.crt'),
                                       ('web-chain.crt', 0o640, b'precious web-chain.crt')):
        victim = victims / name
        victim.write_bytes(content)
        os.chmod(str(victim), victim_mode)
        os.symlink(str(victim), str(out / name))
        planted[name] = (victim, victim_mode, content)
    args = web_args(lab, out, chain_path=str(out / 'web-chain.crt'), owner='65534', group='65534',
                    private_key_mode='0600', mode='0644', backup=True)
    # a key behind a symlink is never adopted (it could be a key someone else knows): a clear failure
    rc, result = ansible.module(MODULE, args)
    assert rc != 0 and result['failed'], result
    refused = '%s is a symbolic link or not a regular file; it is not read' % (out / 'web.key')
    assert result['msg'].startswith(refused), result['msg']
    os.unlink(str(out / 'web.key'))
    # the certificate and chain symlinks are replaced by files of their own, never followed
    rc, result = ansible.module(MODULE, args)
    assert rc == 0 and result['changed'], result
    for name, (victim, victim_mode, content) in planted.items():
        assert read(victim) == content, name
        st = os.stat(str(victim))
        assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (victim_mode, 0, 0), name
        st = os.lstat(str(out / name))
        assert stat.S_ISREG(st.st_mode) and (st.st_uid, st.st_gid) == (65534, 65534), name
    assert mode(out / 'web.key') == 0o600 and mode(out / 'web.crt') == 0o644
    assert read(out / 'web.key') != victim_key
    assert result['backup_files'] == {}        # a symlink is not a file of ours to back up
    assert sorted(os.listdir(str(out))) == ['web-chain.crt', 'web.crt', 'web.key']


def test_backups_of_the_key_are_0600(lab, ansible, tmp_path):
    args = web_args(lab, tmp_path, private_key_mode='0640', backup=True)
    rc, result = ansible.module(MODULE, args)
    assert rc == 0 and result['changed'], result
    old_key = read(args['private_key_path'])
    rc, result = ansible.module(MODULE, dict(args, regenerate_key=True, force=True))
    assert rc == 0 and result['changed'], result
    backup = result['backup_files'][args['private_key_path']]
    assert read(backup) == old_key and mode(backup) == 0o600 and mode(args['private_key_path']) == 0o640
    assert mode(result['backup_files'][args['certificate_path']]) == 0o644


def test_missing_output_directory_is_found_before_the_ca_is_asked(lab, ansible, tmp_path):
    name = unique('nodir')
    args = web_args(lab, tmp_path, name, fullchain_path=str(tmp_path / 'missing' / 'web-full.crt'))
    rc, result = ansible.module(MODULE, args)
    assert rc != 0 and result['failed'], result
    assert result['msg'].startswith('The directory %s of fullchain_path (%s) does not exist; nothing was requested '
                                    'from the CA' % (tmp_path / 'missing', args['fullchain_path'])), result['msg']
    assert result.get('request_id') is None
    assert ca_request_count(lab, name) == 0
    ok = web_args(lab, tmp_path, name)      # the marker is seen when a request is sent
    rc, result = ansible.module(MODULE, ok)
    assert rc == 0 and ca_request_count(lab, name) == 1, result
    for path in (ok['private_key_path'], ok['certificate_path']):
        os.unlink(path)
    assert os.listdir(str(tmp_path)) == []
