# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Issue 12 item 8 (Kerberos): bounded KDC replies, the default ccache only when it is ours, private ccaches in a
0700 directory that is always removed."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import os
import socket
import struct
import tempfile
import threading

import pytest
from impacket.krb5 import crypto as kcrypto
from impacket.krb5.ccache import CCache

from ansible_collections.adcs.enrollment.plugins.module_utils import _kerberos as k
from ansible_collections.adcs.enrollment.plugins.module_utils import _ccache
from ansible_collections.adcs.enrollment.plugins.module_utils import _kdc
from ansible_collections.adcs.enrollment.plugins.module_utils import _ldap
from ansible_collections.adcs.enrollment.plugins.module_utils import _ldap_kerberos

from ansible_collections.adcs.enrollment.tests.unit.plugins.support.kerberos import NOW, REALM, as_rep

HOSTILE_KDC = '127.0.0.201'  # unit-only address: the integration tests' hostile KDC uses 127.0.0.101 at the same time
REMEDY_KDC = ('Check that %s:%d is a Kerberos KDC (a domain controller) and that nothing on the path alters the '
              'traffic.')


class HostileKdc(object):
    """Answers every request with ``reply`` (raw bytes), then closes."""

    def __init__(self, reply, address='127.0.0.1', port=0):
        self.reply = reply
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((address, port))
        self.sock.listen(4)
        self.address, self.port = self.sock.getsockname()
        self.thread = threading.Thread(target=self.serve)
        self.thread.daemon = True
        self.thread.start()

    def serve(self):
        while True:
            try:
                conn = self.sock.accept()[0]
            except OSError:
                return
            try:
                head = conn.recv(4)
                if len(head) == 4:
                    length = struct.unpack('!I', head)[0]
                    got = 0
                    while got < length:
                        chunk = conn.recv(length - got)
                        if not chunk:
                            break
                        got += len(chunk)
                conn.sendall(self.reply)
            except OSError:
                pass
            finally:
                conn.close()

    def close(self):
        self.sock.close()


@pytest.mark.parametrize('length', [_kdc.MAX_KDC_REPLY + 1, 0x7FFFFFFF, 0xFFFFFFF0])
def test_kdc_reply_length_is_bounded(length):
    kdc = HostileKdc(struct.pack('!I', length) + b'\x00' * 64)
    try:
        with pytest.raises(k.KerberosFailure) as info:
            _kdc._send_receive(b'request', kdc.address, kdc.port, 5)
    finally:
        kdc.close()
    assert info.value.to_message() == (
        'The KDC at %s:%d announced a reply of %d bytes, more than the %d bytes allowed. What to do: '
        % (kdc.address, kdc.port, length, _kdc.MAX_KDC_REPLY) + REMEDY_KDC % (kdc.address, kdc.port))


def test_kdc_closing_early_is_an_error_not_a_loop():
    kdc = HostileKdc(struct.pack('!I', 5000) + b'\x00' * 10)
    try:
        with pytest.raises(socket.error) as info:
            _kdc._send_receive(b'request', kdc.address, kdc.port, 5)
    finally:
        kdc.close()
    assert 'the KDC closed the connection' in str(info.value)


def test_kdc_reply_at_the_limit_is_read():
    body = b'\x04' * 1000
    kdc = HostileKdc(struct.pack('!I', len(body)) + body)
    try:
        assert _kdc._send_receive(b'request', kdc.address, kdc.port, 5) == body
    finally:
        kdc.close()


def test_as_exchange_uses_the_bounded_exchange():
    """getKerberosTGT (impacket) talks to the KDC through our bounded exchange during _as_exchange."""
    if os.geteuid() != 0:
        pytest.skip('the AS exchange uses port 88, which needs root')
    from impacket.krb5 import kerberosv5
    original = kerberosv5.sendReceive
    kdc = HostileKdc(struct.pack('!I', 0x7FFFFFFF), address=HOSTILE_KDC, port=88)
    try:
        with pytest.raises(k.KerberosFailure) as info:
            k.acquire_credentials(realm=REALM, user='enroller', password='pw', kdc=HOSTILE_KDC, timeout=5)
    finally:
        kdc.close()
    assert info.value.to_message().startswith(
        'The KDC at %s:88 announced a reply of 2147483647 bytes, more than the %d bytes allowed'
        % (HOSTILE_KDC, _kdc.MAX_KDC_REPLY))
    assert kerberosv5.sendReceive is original


# ---------------------------------------------------------------- the default ccache
def ccache_file(path, mode=0o600):
    client_key = kcrypto.Key(18, os.urandom(32))
    session = kcrypto.Key(18, os.urandom(32))
    cc = CCache()
    cc.fromTGT(as_rep('enroller', REALM, client_key, session, NOW - datetime.timedelta(minutes=5),
                      NOW + datetime.timedelta(hours=8)), client_key, session)
    cc.saveFile(str(path))
    os.chmod(str(path), mode)
    return str(path)


def refused(path, why):
    return ('The default credential cache %s is not used: %s. What to do: Remove it and run kinit again as this '
            'user, or name a credential cache explicitly (kerberos_ccache).' % (path, why))


def test_default_ccache_of_ours_is_used(tmp_path, monkeypatch):
    path = ccache_file(tmp_path / 'cc')
    monkeypatch.setenv('KRB5CCNAME', 'FILE:%s' % path)
    assert k.acquire_credentials().principal == 'enroller@LAB.ADCS.TEST'
    assert _ccache.ccache_principal() == 'enroller@LAB.ADCS.TEST'


@pytest.mark.parametrize('mode', [0o620, 0o602, 0o666])
def test_default_ccache_writable_by_others_is_refused(tmp_path, monkeypatch, mode):
    path = ccache_file(tmp_path / 'cc', mode)
    monkeypatch.setenv('KRB5CCNAME', 'FILE:%s' % path)
    for call in (k.acquire_credentials, _ccache.ccache_principal):
        with pytest.raises(k.KerberosFailure) as info:
            call()
        assert info.value.to_message() == refused(path, 'it is writable by group or others (mode %04o)' % mode)
    # named explicitly by the user, it is used
    assert k.acquire_credentials(ccache=path).principal == 'enroller@LAB.ADCS.TEST'


def test_default_ccache_owned_by_someone_else_is_refused(tmp_path, monkeypatch):
    if os.geteuid() != 0:
        pytest.skip('chown to another user needs root')
    path = ccache_file(tmp_path / 'krb5cc_planted')
    os.chown(path, 4242, 4242)
    monkeypatch.delenv('KRB5CCNAME', raising=False)
    monkeypatch.setattr(_ccache, 'ccache_path', lambda ccache: ccache or path)
    with pytest.raises(k.KerberosFailure) as info:
        k.acquire_credentials()
    assert info.value.to_message() == refused(
        path, 'it is owned by uid 4242, not by the user running the module (uid %d)' % os.geteuid())


def test_default_ccache_symlink_is_refused(tmp_path, monkeypatch):
    target = ccache_file(tmp_path / 'real')
    link = str(tmp_path / 'link')
    os.symlink(target, link)
    monkeypatch.setenv('KRB5CCNAME', link)
    with pytest.raises(k.KerberosFailure) as info:
        k.acquire_credentials()
    assert info.value.to_message() == refused(link, 'it is not a regular file')


# ---------------------------------------------------------------- private ccaches
def _creds():
    client_key = kcrypto.Key(18, os.urandom(32))
    session = kcrypto.Key(18, os.urandom(32))
    rep = as_rep('enroller', REALM, client_key, session, NOW, NOW + datetime.timedelta(hours=8))
    tgt = {'KDC_REP': rep, 'cipher': kcrypto._enctype_table[18](), 'sessionKey': session,
           'replyKey': (client_key, 3)}
    return _kdc.KerberosCredentials('enroller', REALM, tgt, 'password')


def test_private_ccache_is_0600_in_a_0700_directory():
    directory = tempfile.mkdtemp()
    try:
        path = os.path.join(directory, 'ccache')
        assert _ccache.write_ccache(_creds(), path) == 'FILE:%s' % path
        assert os.stat(path).st_mode & 0o777 == 0o600
        assert os.stat(directory).st_mode & 0o777 == 0o700
        with pytest.raises(OSError):        # never over an existing file (or a planted symlink)
            _ccache.write_ccache(_creds(), path)
    finally:
        import shutil
        shutil.rmtree(directory)


def test_private_ccache_refuses_a_shared_directory(tmp_path):
    shared = tmp_path / 'shared'
    shared.mkdir()
    os.chmod(str(shared), 0o1777)
    with pytest.raises(k.KerberosFailure) as info:
        _ccache.write_ccache(_creds(), str(shared / 'cc'))
    assert info.value.to_message() == ('Refusing to write a credential cache into %s: it is not a private directory '
                                       'of this user (mode 0700).' % shared)
    assert not (shared / 'cc').exists()


def test_ldap_private_ccache_removed_when_writing_it_fails(monkeypatch):
    made = []
    real_mkdtemp = tempfile.mkdtemp

    def mkdtemp(*args, **kwargs):
        made.append(real_mkdtemp(*args, **kwargs))
        return made[-1]

    def write_ccache(creds, path, **kwargs):
        with open(path, 'wb') as handle:     # half written, then the TGS exchange fails
            handle.write(b'\x05\x04')
        raise k.KerberosFailure('Getting a service ticket for ldap/dc1.lab.adcs.test failed')

    monkeypatch.setattr(_ldap_kerberos, 'HAS_GSSAPI', True)
    monkeypatch.setattr(tempfile, 'mkdtemp', mkdtemp)
    monkeypatch.setattr(k, 'acquire_credentials', lambda **kw: _creds())
    monkeypatch.setattr(_ccache, 'write_ccache', write_ccache)
    conn = _ldap.AdConnection(_ldap.LdapSettings(domain='lab.adcs.test', username='enroller', password='pw',
                                                 auth='kerberos'))
    with pytest.raises(_ldap.LdapError) as info:
        _ldap_kerberos.credentials_from_secret(conn.settings, 'dc1.lab.adcs.test', '127.0.0.11')
    assert 'Kerberos for LDAP failed: Getting a service ticket for ldap/dc1.lab.adcs.test failed' in str(info.value)
    assert len(made) == 1 and not os.path.exists(made[0])
    assert os.path.basename(made[0]).startswith('adcs-ldap-krb5-')


def _krb_error_bytes(code):
    from impacket.krb5.asn1 import KRB_ERROR, seq_set
    from impacket.krb5.types import KerberosTime, Principal
    from pyasn1.codec.der import encoder
    err = KRB_ERROR()
    err['pvno'] = 5
    err['msg-type'] = 30
    err['stime'] = KerberosTime.to_asn1(NOW)
    err['susec'] = 0
    err['error-code'] = code
    err['realm'] = REALM
    seq_set(err, 'sname', Principal('krbtgt/%s' % REALM, type=2).components_to_asn1)
    data = encoder.encode(err)
    return struct.pack('!I', len(data)) + data


def test_bounded_exchange_keeps_impackets_contract_for_preauth_required():
    """getKerberosTGT expects KDC_ERR_PREAUTH_REQUIRED returned (it reads the salts), other errors raised."""
    from impacket.krb5.kerberosv5 import KerberosError
    kdc = HostileKdc(_krb_error_bytes(25))
    try:
        data = _kdc._bounded_impacket_send_receive(b'req', 'ignored', kdc.address, kdc.port)
        assert data == _krb_error_bytes(25)[4:]
        with pytest.raises(KerberosError):
            _kdc._send_receive(b'req', kdc.address, kdc.port, 5)      # our own TGS path raises every KRB-ERROR
    finally:
        kdc.close()
    kdc = HostileKdc(_krb_error_bytes(6))
    try:
        with pytest.raises(KerberosError) as info:
            _kdc._bounded_impacket_send_receive(b'req', 'ignored', kdc.address, kdc.port)
        assert info.value.getErrorCode() == 6
    finally:
        kdc.close()
