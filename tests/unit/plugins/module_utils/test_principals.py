# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible_collections.adcs.enrollment.plugins.module_utils import _principals as p
from ansible_collections.adcs.enrollment.plugins.module_utils._errors import InvalidInput


@pytest.mark.parametrize('name, expected', [
    ('enroller', ('enroller', '', p.BARE)),
    ('LAB\\enroller', ('enroller', 'LAB', p.DOWN_LEVEL)),
    ('lab.adcs.test\\enroller', ('enroller', 'lab.adcs.test', p.DOWN_LEVEL)),
    ('enroller@lab.adcs.test', ('enroller', 'lab.adcs.test', p.UPN)),
    ('first@last@lab.adcs.test', ('first@last', 'lab.adcs.test', p.UPN)),
    ('  enroller@LAB.ADCS.TEST ', ('enroller', 'LAB.ADCS.TEST', p.UPN)),
    ('CN=enroller,CN=Users,DC=lab', ('CN=enroller,CN=Users,DC=lab', '', p.DN)),
    ('S-1-5-21-1-2-3-1104', ('S-1-5-21-1-2-3-1104', '', p.SID)),
])
def test_parse(name, expected):
    assert tuple(p.parse(name)) == expected


@pytest.mark.parametrize('name', ['', '   ', None])
def test_parse_needs_a_name(name):
    with pytest.raises(InvalidInput):
        p.parse(name)


@pytest.mark.parametrize('name, default, expected', [
    ('enroller', 'LAB', ('enroller', 'LAB')),
    ('LAB\\enroller', None, ('enroller', 'LAB')),
    ('enroller@lab.adcs.test', None, ('enroller', 'lab.adcs.test')),
    ('LAB\\enroller', 'OTHER', ('enroller', 'LAB')),            # the name's own domain wins over the default
    ('enroller@lab.adcs.test', 'OTHER', ('enroller', 'lab.adcs.test')),
    ('enroller', None, ('enroller', '')),
])
def test_split_user(name, default, expected):
    assert p.split_user(name, default) == expected


@pytest.mark.parametrize('name, default, realm, expected', [
    ('enroller', 'lab.adcs.test', None, 'enroller@LAB.ADCS.TEST'),
    ('LAB\\enroller', 'lab.adcs.test', None, 'enroller@LAB.ADCS.TEST'),   # NetBIOS domain yields to the DNS one
    ('LAB\\enroller', None, None, 'enroller@LAB'),
    ('enroller@lab.adcs.test', 'other.test', None, 'enroller@LAB.ADCS.TEST'),
    ('enroller@lab.adcs.test', None, 'REALM.TEST', 'enroller@REALM.TEST'),
    ('enroller', None, None, 'enroller'),                                  # bare and no domain: stays bare
])
def test_kerberos_principal(name, default, realm, expected):
    assert p.kerberos_principal(name, default, realm) == expected


def test_realm_of():
    assert p.realm_of('lab.adcs.test.') == 'LAB.ADCS.TEST'
    assert p.realm_of(None) == ''


@pytest.mark.parametrize('name, domain, expected', [
    ('enroller', 'lab.adcs.test', 'enroller@lab.adcs.test'),
    ('enroller@lab.adcs.test', None, 'enroller@lab.adcs.test'),
    ('LAB\\enroller', None, 'LAB\\enroller'),
    ('CN=enroller,CN=Users,DC=lab', None, 'CN=enroller,CN=Users,DC=lab'),
    ('enroller', None, None),
])
def test_bind_name(name, domain, expected):
    assert p.bind_name(name, domain) == expected


def test_machine_account():
    assert p.machine_account('labhost01.lab.adcs.test') == 'LABHOST01$'
    assert p.machine_account('web-7') == 'WEB-7$'
    assert p.machine_account().endswith('$')
