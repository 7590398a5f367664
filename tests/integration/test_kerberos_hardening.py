# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Issue 12 item 8 (Kerberos), through the real `ansible` against the lab: a hostile KDC's oversized reply is
refused, the default credential cache is used only when it is ours and not group/world-writable, and the private
ccache of LDAP Kerberos-from-a-password lives in a 0700 directory that is gone when the module ends."""

import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import threading

import pytest

from conftest import AnsibleRunner

pytestmark = pytest.mark.lab

MODULE = 'adcs.enrollment.wcce_request'
HOSTILE_KDC = '127.0.0.101'
PYTHON = os.environ.get('ADCS_PYTHON', sys.executable)


class HostileKdc(object):
    """TCP 88: reads a request, announces a 2 GiB reply, sends a few bytes, closes."""

    def __init__(self, address):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((address, 88))
        self.sock.listen(8)
        self.requests = 0
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                conn = self.sock.accept()[0]
            except OSError:
                return
            try:
                conn.settimeout(5)
                conn.recv(65536)
                self.requests += 1
                conn.sendall(struct.pack('!I', 0x7FFFFFFF) + b'\x30' * 32)
            except OSError:
                pass
            finally:
                conn.close()

    def close(self):
        self.sock.close()


def base_args(lab, tmp_path, name, **extra):
    args = {'ca_host': lab['ca']['hostname'], 'ca_name': lab['ca']['name'], 'ca_bundle': lab['ca_bundle'],
            'auth': 'kerberos',
            'domain': lab['domain'], 'domain_controller': lab['dc']['address'], 'template': 'User',
            'private_key_path': str(tmp_path / ('%s.key' % name)),
            'certificate_path': str(tmp_path / ('%s.crt' % name))}
    args.update(extra)
    return args


def test_oversized_kdc_reply_is_refused(lab, ansible, tmp_path):
    if os.geteuid() != 0:
        pytest.skip('the hostile KDC listens on port 88, which needs root')
    kdc = HostileKdc(HOSTILE_KDC)
    acct = lab['accounts']['enroller']
    out = tmp_path / 'out'
    out.mkdir()
    try:
        args = base_args(lab, out, 'kdc', username='%s@%s' % (acct['username'], lab['domain']),
                         password=acct['password'], domain_controller=HOSTILE_KDC)
        del args['domain']          # no directory look-up: the DC given is only the (hostile) KDC
        rc, result = ansible.module(MODULE, args)
    finally:
        kdc.close()
    assert kdc.requests >= 1
    assert rc != 0 and result.get('failed') is True, result
    assert ('The KDC at %s:88 announced a reply of 2147483647 bytes, more than the 1048576 bytes allowed'
            % HOSTILE_KDC) in result['msg'], result['msg']
    assert 'Traceback' not in json.dumps(result)
    assert os.listdir(str(out)) == []


@pytest.fixture()
def lab_ccache(lab, tmp_path):
    if not shutil.which('kinit'):
        pytest.skip('no kinit')
    acct = lab['accounts']['enroller']
    path = str(tmp_path / 'krb5cc_default')
    env = dict(os.environ, KRB5_CONFIG=lab['dc']['krb5_conf'])
    subprocess.run(['kinit', '-c', 'FILE:' + path, '%s@%s' % (acct['username'], lab['realm'])],
                   input=acct['password'] + '\n', env=env, check=True, capture_output=True, text=True, timeout=30)
    return path


def test_default_ccache_only_when_private(lab, ansible, tmp_path, lab_ccache):
    """KRB5CCNAME (no kerberos_ccache option): group-writable is refused, the same cache at 0600 enrolls."""
    out = tmp_path / 'out'
    out.mkdir()
    os.chmod(lab_ccache, 0o664)
    rc, result = ansible.module(MODULE, base_args(lab, out, 'cc'), extra_env={'KRB5CCNAME': 'FILE:' + lab_ccache})
    assert rc != 0 and result.get('failed') is True, result
    assert ('The default credential cache %s is not used: it is writable by group or others (mode 0664). What to '
            'do: Remove it and run kinit again as this user, or name a credential cache explicitly '
            '(kerberos_ccache).' % lab_ccache) in result['msg'], result['msg']
    assert os.listdir(str(out)) == []
    os.chmod(lab_ccache, 0o600)
    rc, result = ansible.module(MODULE, base_args(lab, out, 'cc'), extra_env={'KRB5CCNAME': 'FILE:' + lab_ccache})
    assert rc == 0 and result.get('changed') is True, result


SPY = '''
import json, os, tempfile
_real = tempfile.mkdtemp
def _spy(*args, **kwargs):
    path = _real(*args, **kwargs)
    if os.path.basename(path).startswith('adcs-ldap-krb5-'):
        with open(os.environ['ADCS_MKDTEMP_LOG'], 'a') as log:
            log.write(json.dumps([path, os.stat(path).st_mode & 0o7777]) + '\\n')
    return path
tempfile.mkdtemp = _spy
'''


def test_ldap_private_ccache_is_private_and_removed(lab, tmp_path):
    """wcce_template_info, auth=kerberos with a password: the ccache directory is 0700 and gone afterwards (a spy
    sitecustomize in the module's Python records each adcs-ldap-krb5-* directory it creates)."""
    spy = tmp_path / 'spy'
    spy.mkdir()
    (spy / 'sitecustomize.py').write_text(SPY)
    log = tmp_path / 'mkdtemp.log'
    private_tmp = tmp_path / 'tmp'
    private_tmp.mkdir()
    acct = lab['accounts']['enroller']
    args = {'domain': lab['domain'], 'domain_controller': lab['dc']['address'], 'ca_bundle': lab['ca_bundle'],
            'auth': 'kerberos', 'username': '%s@%s' % (acct['username'], lab['domain']),
            'password': acct['password'], 'names': ['WebServer']}
    env = {'PYTHONPATH': str(spy), 'ADCS_MKDTEMP_LOG': str(log), 'TMPDIR': str(private_tmp),
           'KRB5_CONFIG': '/nonexistent/krb5.conf'}
    rc, result = AnsibleRunner(PYTHON).module('adcs.enrollment.wcce_template_info', args, extra_env=env)
    assert rc == 0, json.dumps(result)
    made = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(made) == 1, made
    path, mode = made[0]
    assert os.path.dirname(path) == str(private_tmp)
    assert mode == 0o700
    assert not os.path.exists(path)
    assert [n for n in os.listdir(str(private_tmp)) if n.startswith('adcs-ldap-krb5-')] == []
