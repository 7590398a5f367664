# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""_ccache: reading credential caches (TGT, service tickets, expiry), the default ccache only when it is ours, and
writing private ccaches (0600 in a 0700 directory; issue 12 item 8)."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import os
import tempfile

import pytest
from impacket.krb5 import crypto as kcrypto
from impacket.krb5.ccache import CCache

from ansible_collections.adcs.enrollment.plugins.module_utils import _kerberos as k
from ansible_collections.adcs.enrollment.plugins.module_utils import _ccache
from ansible_collections.adcs.enrollment.plugins.module_utils import _kdc
from ansible_collections.adcs.enrollment.tests.unit.plugins.support.kerberos import (
    REALM, NOW, as_rep, as_rep_without_starttime, make_credentials, write_test_ccache,
)


def test_ccache_tgt(tmp_path, monkeypatch):
    path = tmp_path / 'krb5cc_test'
    session = write_test_ccache(path)
    monkeypatch.setenv('KRB5CCNAME', 'FILE:%s' % path)
    creds = k.acquire_credentials()
    assert creds.principal == 'enroller@LAB.ADCS.TEST' and creds.source == 'ccache'
    assert creds.tgt['sessionKey'].contents == session.contents
    with pytest.raises(k.KerberosFailure) as info:
        k.acquire_credentials(user='someoneelse', ccache=str(path))
    assert 'holds tickets of enroller@LAB.ADCS.TEST' in str(info.value)


def test_ccache_expired_and_missing(tmp_path):
    path = tmp_path / 'old'
    write_test_ccache(path, start=NOW - datetime.timedelta(hours=20), end=NOW - datetime.timedelta(hours=10))
    with pytest.raises(k.KerberosFailure) as info:
        k.acquire_credentials(ccache=str(path))
    assert 'expired' in str(info.value) and 'kinit' in str(info.value)
    with pytest.raises(k.KerberosFailure) as info:
        k.acquire_credentials(ccache=str(tmp_path / 'nothere'))
    assert 'does not exist' in str(info.value)
    with pytest.raises(k.KerberosFailure) as info:
        k.acquire_credentials(ccache='KEYRING:persistent:0')
    assert 'not supported' in str(info.value)


def test_ccache_service_ticket_is_used_without_kdc():
    creds = _kdc.KerberosCredentials('enroller', REALM, None, service_tickets={'HOST/CA1.LAB.ADCS.TEST': 'ticket'})
    assert _kdc.get_service_ticket(creds, 'HOST/ca1.lab.adcs.test') == 'ticket'
    with pytest.raises(k.KerberosFailure) as info:
        _kdc.get_service_ticket(creds, 'HOST/other.lab.adcs.test')
    assert 'no ticket-granting ticket' in str(info.value)


def test_write_ccache_without_starttime_reads_back(tmp_path):
    client_key = kcrypto.Key(18, os.urandom(32))
    session = kcrypto.Key(18, os.urandom(32))
    rep = as_rep_without_starttime(client_key, session, NOW, NOW + datetime.timedelta(hours=8))
    tgt = {'KDC_REP': rep, 'cipher': kcrypto._enctype_table[18](), 'sessionKey': session, 'replyKey': (client_key, 3)}
    creds = _kdc.KerberosCredentials('enroller', REALM, tgt, 'password')
    path = str(tmp_path / 'cc')
    assert _ccache.write_ccache(creds, path) == 'FILE:%s' % path
    assert oct(os.stat(path).st_mode & 0o777) == '0o600'
    back = k.acquire_credentials(ccache=path)
    assert back.principal == 'enroller@LAB.ADCS.TEST'
    assert back.tgt['sessionKey'].contents == session.contents
    cc = CCache.loadFile(path)
    assert cc.credentials[0]['time']['starttime'] == cc.credentials[0]['time']['authtime'] > 0


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


def test_private_ccache_is_0600_in_a_0700_directory():
    directory = tempfile.mkdtemp()
    try:
        path = os.path.join(directory, 'ccache')
        assert _ccache.write_ccache(make_credentials(), path) == 'FILE:%s' % path
        assert os.stat(path).st_mode & 0o777 == 0o600
        assert os.stat(directory).st_mode & 0o777 == 0o700
        with pytest.raises(OSError):        # never over an existing file (or a planted symlink)
            _ccache.write_ccache(make_credentials(), path)
    finally:
        import shutil
        shutil.rmtree(directory)


def test_private_ccache_refuses_a_shared_directory(tmp_path):
    shared = tmp_path / 'shared'
    shared.mkdir()
    os.chmod(str(shared), 0o1777)
    with pytest.raises(k.KerberosFailure) as info:
        _ccache.write_ccache(make_credentials(), str(shared / 'cc'))
    assert info.value.to_message() == ('Refusing to write a credential cache into %s: it is not a private directory '
                                       'of this user (mode 0700).' % shared)
    assert not (shared / 'cc').exists()
