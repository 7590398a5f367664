# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible_collections.adcs.enrollment.plugins.module_utils import _security as s
from ansible_collections.adcs.enrollment.tests.unit.plugins.support import security as sd_build

DOMAIN = 'S-1-5-21-1111111111-2222222222-3333333333'
ENROLLER = DOMAIN + '-1105'
DENIED = DOMAIN + '-1106'
MEMBER = DOMAIN + '-1107'
GROUP = DOMAIN + '-1108'          # ADCS-Enrollers
OTHER = DOMAIN + '-1109'
ADMINS = DOMAIN + '-512'
DOMAIN_USERS = DOMAIN + '-513'

CTRL = s.ADS_RIGHT_DS_CONTROL_ACCESS
READ = 0x00020094  # READ_CONTROL | LIST | READ_PROP | LIST_OBJECT


def allow_obj(sid, guid, mask=CTRL, flags=0):
    return sd_build.build_ace(s.ACCESS_ALLOWED_OBJECT_ACE_TYPE, sid, mask, guid, flags)


def deny_obj(sid, guid, mask=CTRL, flags=0):
    return sd_build.build_ace(s.ACCESS_DENIED_OBJECT_ACE_TYPE, sid, mask, guid, flags)


def allow(sid, mask, flags=0):
    return sd_build.build_ace(s.ACCESS_ALLOWED_ACE_TYPE, sid, mask, None, flags)


def deny(sid, mask, flags=0):
    return sd_build.build_ace(s.ACCESS_DENIED_ACE_TYPE, sid, mask, None, flags)


def lab_sd():
    """Like the lab's WebServer: deny denied, admins full control, enroller and the group may enroll."""
    return sd_build.build_security_descriptor([
        deny_obj(DENIED, s.ENROLL),
        allow(ADMINS, s.DS_FULL_CONTROL),
        allow_obj(ENROLLER, s.ENROLL),
        allow_obj(GROUP, s.ENROLL),
        allow_obj(GROUP, s.AUTOENROLL),
        allow('S-1-5-11', READ),
    ], owner=ADMINS, group=ADMINS)


# ------------------------------------------------------------------------------------------------------------
# SIDs and parsing
# ------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('sid', ['S-1-1-0', 'S-1-5-11', 'S-1-5-32-544', ENROLLER, 'S-1-5-21-0-0-0-4294967295'])
def test_sid_round_trip(sid):
    data = s.sid_to_bytes(sid)
    assert s.sid_to_string(data) == (sid, len(data))


def test_sid_errors():
    with pytest.raises(ValueError):
        s.sid_to_bytes('X-1-5')
    with pytest.raises(s.SecurityDescriptorError):
        s.sid_to_string(b'\x01\x05\x00\x00')
    with pytest.raises(s.SecurityDescriptorError):
        s.sid_to_string(b'\x02\x00' + b'\x00' * 6)
    with pytest.raises(s.SecurityDescriptorError):
        s.sid_to_string(s.sid_to_bytes(ENROLLER)[:-1])


def test_parse_lab_sd():
    sd = s.parse_security_descriptor(lab_sd())
    assert sd.owner == ADMINS and sd.group == ADMINS
    assert [a.type_name for a in sd.dacl] == ['ACCESS_DENIED_OBJECT', 'ACCESS_ALLOWED', 'ACCESS_ALLOWED_OBJECT',
                                              'ACCESS_ALLOWED_OBJECT', 'ACCESS_ALLOWED_OBJECT', 'ACCESS_ALLOWED']
    assert sd.dacl[0].object_type == s.ENROLL and sd.dacl[0].sid == DENIED
    assert sd.dacl[1].object_type is None and sd.dacl[1].mask == s.DS_FULL_CONTROL
    assert sd.dacl[4].object_type == s.AUTOENROLL
    assert sd.dacl[2].to_dict()['index'] == 2


def test_parse_matches_impacket():
    ldaptypes = pytest.importorskip('impacket.ldap.ldaptypes')
    data = lab_sd()
    ref = ldaptypes.SR_SECURITY_DESCRIPTOR(data=data)
    ours = s.parse_security_descriptor(data)
    assert ref['OwnerSid'].formatCanonical() == ours.owner
    ref_aces = ref['Dacl'].aces
    assert len(ref_aces) == len(ours.dacl)
    for ref_ace, ace in zip(ref_aces, ours.dacl):
        assert ref_ace['AceType'] == ace.ace_type
        assert ref_ace['Ace']['Sid'].formatCanonical() == ace.sid
        assert ref_ace['Ace']['Mask']['Mask'] == ace.mask
        if ace.object_type:
            from impacket.uuid import bin_to_string
            assert bin_to_string(ref_ace['Ace']['ObjectType']).lower() == ace.object_type


def test_parse_impacket_built_sd():
    """An SD assembled with impacket (as the lab seeding may do) parses the same."""
    ldaptypes = pytest.importorskip('impacket.ldap.ldaptypes')
    from impacket.uuid import string_to_bin
    sd = ldaptypes.SR_SECURITY_DESCRIPTOR()
    sd['Revision'] = b'\x01'
    sd['Sbz1'] = b'\x00'
    sd['Control'] = 0x8004
    sd['OwnerSid'] = ldaptypes.LDAP_SID()
    sd['OwnerSid'].fromCanonical(ADMINS)
    sd['GroupSid'] = b''
    sd['Sacl'] = b''
    acl = ldaptypes.ACL()
    acl['AclRevision'] = 4
    acl['Sbz1'] = 0
    acl['Sbz2'] = 0
    ace = ldaptypes.ACE()
    ace['AceType'] = ldaptypes.ACCESS_ALLOWED_OBJECT_ACE.ACE_TYPE
    ace['AceFlags'] = 0
    body = ldaptypes.ACCESS_ALLOWED_OBJECT_ACE()
    body['Mask'] = ldaptypes.ACCESS_MASK()
    body['Mask']['Mask'] = CTRL
    body['ObjectType'] = string_to_bin(s.ENROLL)
    body['InheritedObjectType'] = b''
    body['Flags'] = ldaptypes.ACCESS_ALLOWED_OBJECT_ACE.ACE_OBJECT_TYPE_PRESENT
    body['Sid'] = ldaptypes.LDAP_SID()
    body['Sid'].fromCanonical(ENROLLER)
    ace['Ace'] = body
    acl.aces = [ace]
    sd['Dacl'] = acl
    parsed = s.parse_security_descriptor(sd.getData())
    assert parsed.owner == ADMINS and parsed.group is None
    assert s.TemplateAcl(parsed).can_enroll([ENROLLER])[0] is True


def test_parse_errors():
    with pytest.raises(s.SecurityDescriptorError):
        s.parse_security_descriptor(None)
    with pytest.raises(s.SecurityDescriptorError):
        s.parse_security_descriptor(b'\x01\x00')
    data = bytearray(lab_sd())
    data[0] = 2
    with pytest.raises(s.SecurityDescriptorError):
        s.parse_security_descriptor(bytes(data))
    data = bytearray(lab_sd())
    data[3] &= 0x7F  # clear SE_SELF_RELATIVE
    with pytest.raises(s.SecurityDescriptorError):
        s.parse_security_descriptor(bytes(data))
    with pytest.raises(s.SecurityDescriptorError):
        s.parse_security_descriptor(lab_sd()[:-6])


# ------------------------------------------------------------------------------------------------------------
# evaluation
# ------------------------------------------------------------------------------------------------------------

def token(user, *groups):
    return [user] + list(groups) + [DOMAIN_USERS, 'S-1-1-0', 'S-1-5-11']


def test_explicit_allow():
    ok, reason = sd_build.can_enroll(lab_sd(), token(ENROLLER))
    assert ok is True
    assert reason.startswith('allowed: ACE #2 grants Enroll to ' + ENROLLER)


def test_explicit_deny_wins_even_when_a_group_allows():
    ok, reason = sd_build.can_enroll(lab_sd(), token(DENIED, GROUP))
    assert ok is False
    assert 'ACE #0 denies Enroll' in reason and DENIED in reason


def test_aces_are_evaluated_in_order():
    """MS-DTYP 2.5.3.2: the first ACE naming a SID of the token decides (as Windows evaluates a DACL); in canonical
    order the explicit deny comes first and wins, but an explicit allow before an inherited deny wins too."""
    canonical = sd_build.build_security_descriptor([deny_obj(MEMBER, s.ENROLL), allow_obj(GROUP, s.ENROLL)])
    assert sd_build.can_enroll(canonical, token(MEMBER, GROUP))[0] is False
    assert sd_build.can_enroll(canonical, token(OTHER, GROUP))[0] is True
    explicit_allow_first = sd_build.build_security_descriptor([
        allow_obj(GROUP, s.ENROLL), deny_obj(MEMBER, s.ENROLL, flags=s.INHERITED_ACE)])
    ok, reason = sd_build.can_enroll(explicit_allow_first, token(MEMBER, GROUP))
    assert ok is True and reason.startswith('allowed: ACE #0 grants Enroll')


def test_allowed_via_group():
    ok, reason = sd_build.can_enroll(lab_sd(), token(MEMBER, GROUP), names={GROUP: 'LAB\\ADCS-Enrollers'})
    assert ok is True
    assert 'LAB\\ADCS-Enrollers (%s)' % GROUP in reason


def test_not_granted():
    ok, reason = sd_build.can_enroll(lab_sd(), token(OTHER))
    assert ok is False
    assert reason.startswith('no ACE grants Enroll')


def test_generic_all_counts():
    sd = sd_build.build_security_descriptor([allow(OTHER, s.GENERIC_ALL)])
    acl = s.TemplateAcl(sd)
    assert acl.can_enroll(token(OTHER))[0] is True
    assert acl.rights()['enroll']['allowed'] == [{'sid': OTHER, 'via': 'generic_all', 'ace': 0}]
    assert acl.rights()['autoenroll']['allowed'][0]['via'] == 'generic_all'


def test_full_control_counts():
    ok, reason = sd_build.can_enroll(lab_sd(), token(ADMINS))
    assert ok is True and 'full control' in reason


def test_all_extended_rights_object_ace_without_type():
    sd = sd_build.build_security_descriptor([allow_obj(OTHER, None)])
    acl = s.TemplateAcl(sd)
    assert acl.rights()['enroll']['allowed'] == [{'sid': OTHER, 'via': 'all_extended_rights', 'ace': 0}]
    assert acl.can_enroll([OTHER])[0] is True
    assert acl.check([OTHER], 'autoenroll')[0] is True


def test_all_extended_rights_plain_ace_control_access():
    sd = sd_build.build_security_descriptor([allow(OTHER, CTRL | READ)])
    assert s.TemplateAcl(sd).rights()['enroll']['allowed'][0]['via'] == 'all_extended_rights'
    assert sd_build.can_enroll(sd, [OTHER])[0] is True


def test_deny_all_extended_rights_before_a_specific_allow():
    sd = sd_build.build_security_descriptor([deny(OTHER, CTRL), allow_obj(OTHER, s.ENROLL)])
    ok, reason = sd_build.can_enroll(sd, [OTHER])
    assert ok is False and 'all extended rights' in reason
    after = sd_build.build_security_descriptor([allow_obj(OTHER, s.ENROLL), deny(OTHER, CTRL)])
    assert sd_build.can_enroll(after, [OTHER])[0] is True        # the allow came first


def test_deny_generic_all():
    sd = sd_build.build_security_descriptor([deny(GROUP, s.GENERIC_ALL), allow_obj(OTHER, s.ENROLL)])
    assert sd_build.can_enroll(sd, [OTHER, GROUP])[0] is False


def test_other_extended_right_or_read_only_does_not_count():
    other_right = '00299570-246d-11d0-a768-00aa006e0529'  # User-Force-Change-Password
    sd = sd_build.build_security_descriptor([allow_obj(OTHER, other_right), allow(OTHER, READ),
                                             allow_obj(OTHER, s.ENROLL, mask=0x10)])  # READ_PROP on the GUID: not control access
    assert sd_build.can_enroll(sd, [OTHER])[0] is False
    rights = s.TemplateAcl(sd).rights()
    assert rights['enroll'] == {'allowed': [], 'denied': []}


def test_inherit_only_ace_is_ignored():
    sd = sd_build.build_security_descriptor([allow_obj(OTHER, s.ENROLL, flags=s.INHERIT_ONLY_ACE | s.CONTAINER_INHERIT_ACE)])
    assert sd_build.can_enroll(sd, [OTHER])[0] is False


def test_inherited_ace_counts():
    sd = sd_build.build_security_descriptor([allow_obj(OTHER, s.ENROLL, flags=s.INHERITED_ACE)])
    assert sd_build.can_enroll(sd, [OTHER])[0] is True


def test_everyone_and_authenticated_users():
    sd = sd_build.build_security_descriptor([allow_obj('S-1-5-11', s.ENROLL)])
    assert sd_build.can_enroll(sd, token(OTHER))[0] is True
    assert sd_build.can_enroll(sd, [OTHER])[0] is False


def test_null_and_empty_dacl():
    null = sd_build.build_security_descriptor([], dacl_present=False)
    ok, reason = sd_build.can_enroll(null, [OTHER])
    assert ok is True and 'NULL DACL' in reason
    assert s.TemplateAcl(null).rights()['enroll']['allowed'][0]['via'] == 'null_dacl'
    empty = sd_build.build_security_descriptor([])
    assert sd_build.can_enroll(empty, [OTHER])[0] is False


def test_rights_lists():
    rights = s.TemplateAcl(lab_sd()).rights()
    assert rights['enroll']['denied'] == [{'sid': DENIED, 'via': 'extended_right', 'ace': 0}]
    assert [i['sid'] for i in rights['enroll']['allowed']] == [ADMINS, ENROLLER, GROUP]
    assert [i['sid'] for i in rights['autoenroll']['allowed']] == [ADMINS, GROUP]
    assert rights['autoenroll']['denied'] == []


def test_autoenroll_needs_enroll_too():
    acl = s.TemplateAcl(lab_sd())
    assert acl.can_autoenroll(token(MEMBER, GROUP))[0] is True
    ok, reason = acl.can_autoenroll(token(ENROLLER))
    assert ok is False and 'AutoEnroll' in reason
    sd = sd_build.build_security_descriptor([allow_obj(OTHER, s.AUTOENROLL)])
    ok, reason = s.TemplateAcl(sd).can_autoenroll([OTHER])
    assert ok is False and 'Enroll' in reason


def test_sid_case_insensitive_and_unknown_ace_types_ignored():
    audit = sd_build.build_ace(s.SYSTEM_AUDIT_ACE_TYPE, OTHER, s.GENERIC_ALL)
    callback = sd_build.build_ace(s.ACCESS_ALLOWED_CALLBACK_ACE_TYPE, OTHER, s.GENERIC_ALL)
    sd = sd_build.build_security_descriptor([audit, callback, allow_obj(ENROLLER, s.ENROLL)])
    assert sd_build.can_enroll(sd, [OTHER])[0] is False
    assert sd_build.can_enroll(sd, [ENROLLER.lower().replace('s-', 's-')])[0] is True


def test_well_known_names():
    assert s.well_known_name('S-1-5-11') == 'Authenticated Users'
    assert s.well_known_name(ADMINS) == 'Domain Admins'
    assert s.well_known_name(ADMINS, DOMAIN) == 'Domain Admins'
    assert s.well_known_name(ADMINS, 'S-1-5-21-9-9-9') is None
    assert s.well_known_name(ENROLLER) is None
