# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""_ccache: reading credential caches (TGT, service tickets, expiry) and writing them back."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import os

import pytest
from impacket.krb5 import crypto as kcrypto
from impacket.krb5.ccache import CCache

from ansible_collections.adcs.enrollment.plugins.module_utils import _kerberos as k
from ansible_collections.adcs.enrollment.plugins.module_utils import _ccache
from ansible_collections.adcs.enrollment.plugins.module_utils import _kdc
from ansible_collections.adcs.enrollment.tests.unit.plugins.support.kerberos import (
    REALM, NOW, as_rep_without_starttime, write_test_ccache,
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
