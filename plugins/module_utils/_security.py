# -*- coding: utf-8 -*-
# Copyright (c) the adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Template security descriptors: one job, who may enroll; parsing a template's nTSecurityDescriptor (MS-DTYP 2.4.6)
and evaluating the Enroll/AutoEnroll extended rights against a token (SIDs, their names for the reasons).

Pure Python (struct only) so it imports everywhere. The evaluation follows what the CA checks (MS-WCCE
3.2.2.6.2.1.4.3, MS-CRTD 2.29): a requester may enroll when an ACE in the template DACL grants the Enroll
extended right to one of the SIDs in its token and no deny ACE takes it away. Deny ACEs win regardless of their
position (Windows writes DACLs in canonical order, deny first). An ACE grants an extended right when its mask has
GENERIC_ALL, or ADS_RIGHT_DS_CONTROL_ACCESS and it is a non-object ACE or an object ACE whose object type is
absent or is the right's GUID (no GUID = all extended rights).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import collections
import struct
import uuid

from ansible_collections.adcs.enrollment.plugins.module_utils._errors import AdcsError

ENROLL = '0e10c968-78fb-11d2-90d4-00c04f79dc55'
AUTOENROLL = 'a05b8cc2-17bc-4802-a710-e7c15ab866a2'
RIGHTS = {'enroll': ENROLL, 'autoenroll': AUTOENROLL}

# ACE types (MS-DTYP 2.4.4.1)
ACCESS_ALLOWED_ACE_TYPE = 0x00
ACCESS_DENIED_ACE_TYPE = 0x01
SYSTEM_AUDIT_ACE_TYPE = 0x02
ACCESS_ALLOWED_OBJECT_ACE_TYPE = 0x05
ACCESS_DENIED_OBJECT_ACE_TYPE = 0x06
ACCESS_ALLOWED_CALLBACK_ACE_TYPE = 0x09
ACCESS_DENIED_CALLBACK_ACE_TYPE = 0x0A
ACCESS_ALLOWED_CALLBACK_OBJECT_ACE_TYPE = 0x0B
ACCESS_DENIED_CALLBACK_OBJECT_ACE_TYPE = 0x0C

ACE_TYPE_NAMES = {
    0x00: 'ACCESS_ALLOWED', 0x01: 'ACCESS_DENIED', 0x02: 'SYSTEM_AUDIT', 0x03: 'SYSTEM_ALARM',
    0x05: 'ACCESS_ALLOWED_OBJECT', 0x06: 'ACCESS_DENIED_OBJECT', 0x07: 'SYSTEM_AUDIT_OBJECT',
    0x09: 'ACCESS_ALLOWED_CALLBACK', 0x0A: 'ACCESS_DENIED_CALLBACK', 0x0B: 'ACCESS_ALLOWED_CALLBACK_OBJECT',
    0x0C: 'ACCESS_DENIED_CALLBACK_OBJECT', 0x11: 'SYSTEM_MANDATORY_LABEL',
}
OBJECT_ACE_TYPES = (0x05, 0x06, 0x07, 0x0B, 0x0C, 0x0F)

# ACE flags
OBJECT_INHERIT_ACE = 0x01
CONTAINER_INHERIT_ACE = 0x02
NO_PROPAGATE_INHERIT_ACE = 0x04
INHERIT_ONLY_ACE = 0x08
INHERITED_ACE = 0x10

# Object ACE flags
ACE_OBJECT_TYPE_PRESENT = 0x1
ACE_INHERITED_OBJECT_TYPE_PRESENT = 0x2

# Access mask bits
ADS_RIGHT_DS_CONTROL_ACCESS = 0x00000100
GENERIC_ALL = 0x10000000
# What GENERIC_ALL maps to on directory objects ("Full Control"): all standard rights + all DS rights.
DS_FULL_CONTROL = 0x000F01FF

# Security descriptor control bits
SE_DACL_PRESENT = 0x0004
SE_SELF_RELATIVE = 0x8000

# LDAP_SERVER_SD_FLAGS_OID values
OWNER_SECURITY_INFORMATION = 0x1
GROUP_SECURITY_INFORMATION = 0x2
DACL_SECURITY_INFORMATION = 0x4
SACL_SECURITY_INFORMATION = 0x8

EVERYONE = 'S-1-1-0'
AUTHENTICATED_USERS = 'S-1-5-11'

WELL_KNOWN_SIDS = {
    'S-1-0-0': 'NULL SID',
    'S-1-1-0': 'Everyone',
    'S-1-3-0': 'CREATOR OWNER',
    'S-1-3-1': 'CREATOR GROUP',
    'S-1-5-2': 'NETWORK',
    'S-1-5-4': 'INTERACTIVE',
    'S-1-5-7': 'ANONYMOUS LOGON',
    'S-1-5-9': 'Enterprise Domain Controllers',
    'S-1-5-10': 'SELF',
    'S-1-5-11': 'Authenticated Users',
    'S-1-5-18': 'SYSTEM',
    'S-1-5-32-544': 'BUILTIN\\Administrators',
    'S-1-5-32-545': 'BUILTIN\\Users',
    'S-1-5-32-574': 'BUILTIN\\Certificate Service DCOM Access',
}
DOMAIN_RIDS = {
    500: 'Administrator', 501: 'Guest', 502: 'krbtgt', 512: 'Domain Admins', 513: 'Domain Users',
    514: 'Domain Guests', 515: 'Domain Computers', 516: 'Domain Controllers', 517: 'Cert Publishers',
    518: 'Schema Admins', 519: 'Enterprise Admins', 520: 'Group Policy Creator Owners',
    521: 'Read-only Domain Controllers', 526: 'Key Admins', 527: 'Enterprise Key Admins',
}


class SecurityDescriptorError(AdcsError, ValueError):
    """The bytes are not a valid self-relative security descriptor."""


# ---------------------------------------------------------------------------------------------------------
# SIDs and GUIDs
# ---------------------------------------------------------------------------------------------------------

def sid_to_string(data, offset=0):
    """Decode a binary SID (MS-DTYP 2.4.2.2) at ``offset``; return (string, length in bytes)."""
    data = bytes(data)
    if len(data) < offset + 8:
        raise SecurityDescriptorError('SID at offset %d is truncated' % offset)
    revision, count = data[offset], data[offset + 1]
    if revision != 1:
        raise SecurityDescriptorError('SID at offset %d has revision %d' % (offset, revision))
    length = 8 + 4 * count
    if len(data) < offset + length:
        raise SecurityDescriptorError('SID at offset %d is truncated' % offset)
    authority = int.from_bytes(data[offset + 2:offset + 8], 'big')
    subs = struct.unpack_from('<%dI' % count, data, offset + 8)
    return 'S-1-%d%s' % (authority, ''.join('-%d' % s for s in subs)), length


def sid_to_bytes(sid):
    """Encode 'S-1-5-21-...' to its binary form."""
    parts = sid.strip().upper().split('-')
    if len(parts) < 3 or parts[0] != 'S' or parts[1] != '1':
        raise ValueError('not a SID: %r' % sid)
    authority = int(parts[2])
    subs = [int(p) for p in parts[3:]]
    return struct.pack('<BB', 1, len(subs)) + authority.to_bytes(6, 'big') + struct.pack('<%dI' % len(subs), *subs)


def guid_from_bytes(data):
    return str(uuid.UUID(bytes_le=bytes(data)))


def well_known_name(sid, domain_sid=None):
    """Name of a well-known or domain-relative well-known SID, or None."""
    if sid in WELL_KNOWN_SIDS:
        return WELL_KNOWN_SIDS[sid]
    prefix, _sep, rid = sid.rpartition('-')
    if prefix.startswith('S-1-5-21-') and rid.isdigit() and int(rid) in DOMAIN_RIDS:
        if domain_sid is None or prefix == domain_sid:
            return DOMAIN_RIDS[int(rid)]
    return None


# ---------------------------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------------------------

_AceFields = collections.namedtuple('_AceFields', 'index ace_type flags mask sid object_type inherited_object_type')
_AceFields.__new__.__defaults__ = (None, None)     # object_type, inherited_object_type


class Ace(_AceFields):
    """One ACE of a DACL, as parsed (immutable)."""
    __slots__ = ()

    @property
    def type_name(self):
        return ACE_TYPE_NAMES.get(self.ace_type, '0x%02x' % self.ace_type)

    @property
    def is_allow(self):
        return self.ace_type in (ACCESS_ALLOWED_ACE_TYPE, ACCESS_ALLOWED_OBJECT_ACE_TYPE)

    @property
    def is_deny(self):
        return self.ace_type in (ACCESS_DENIED_ACE_TYPE, ACCESS_DENIED_OBJECT_ACE_TYPE)

    @property
    def is_object(self):
        return self.ace_type in OBJECT_ACE_TYPES

    def to_dict(self):
        return {
            'index': self.index,
            'type': self.type_name,
            'flags': self.flags,
            'mask': self.mask,
            'sid': self.sid,
            'object_type': self.object_type,
            'inherited_object_type': self.inherited_object_type,
        }

    def __repr__(self):
        return 'Ace(%r)' % (self.to_dict(),)


class SecurityDescriptor(object):
    def __init__(self, control, owner=None, group=None, dacl=None, sacl=None):
        self.control = control
        self.owner = owner
        self.group = group
        self.dacl = dacl      # None = no DACL (everything allowed); [] = empty DACL (nothing allowed)
        self.sacl = sacl


def _parse_acl(data, offset):
    if len(data) < offset + 8:
        raise SecurityDescriptorError('ACL at offset %d is truncated' % offset)
    _revision, _sbz1, size, count, _sbz2 = struct.unpack_from('<BBHHH', data, offset)
    if len(data) < offset + size:
        raise SecurityDescriptorError('ACL at offset %d claims %d bytes, only %d present' % (offset, size, len(data) - offset))
    aces = []
    pos = offset + 8
    end = offset + size
    for index in range(count):
        if pos + 4 > end:
            raise SecurityDescriptorError('ACE %d is truncated' % index)
        ace_type, ace_flags, ace_size = struct.unpack_from('<BBH', data, pos)
        if ace_size < 8 or pos + ace_size > end:
            raise SecurityDescriptorError('ACE %d has an invalid size %d' % (index, ace_size))
        body = data[pos + 4:pos + ace_size]
        if ace_type in (0x00, 0x01, 0x02, 0x03, 0x09, 0x0A, 0x11):
            mask = struct.unpack_from('<I', body, 0)[0]
            sid, _length = sid_to_string(body, 4)
            aces.append(Ace(index, ace_type, ace_flags, mask, sid))
        elif ace_type in OBJECT_ACE_TYPES:
            if len(body) < 8:
                raise SecurityDescriptorError('object ACE %d is truncated' % index)
            mask, obj_flags = struct.unpack_from('<II', body, 0)
            cursor = 8
            object_type = inherited = None
            if obj_flags & ACE_OBJECT_TYPE_PRESENT:
                object_type = guid_from_bytes(body[cursor:cursor + 16])
                cursor += 16
            if obj_flags & ACE_INHERITED_OBJECT_TYPE_PRESENT:
                inherited = guid_from_bytes(body[cursor:cursor + 16])
                cursor += 16
            sid, _length = sid_to_string(body, cursor)
            aces.append(Ace(index, ace_type, ace_flags, mask, sid, object_type, inherited))
        else:
            # Unknown ACE types are kept (for display) but never grant or deny anything here.
            aces.append(Ace(index, ace_type, ace_flags, 0, None))
        pos += ace_size
    return aces


def parse_security_descriptor(data):
    """Parse a self-relative SECURITY_DESCRIPTOR (as returned by LDAP for nTSecurityDescriptor)."""
    if data is None:
        raise SecurityDescriptorError('no security descriptor')
    data = bytes(data)
    if len(data) < 20:
        raise SecurityDescriptorError('security descriptor too short (%d bytes)' % len(data))
    revision, _sbz1, control, off_owner, off_group, off_sacl, off_dacl = struct.unpack_from('<BBHIIII', data, 0)
    if revision != 1:
        raise SecurityDescriptorError('security descriptor revision %d is not 1' % revision)
    if not control & SE_SELF_RELATIVE:
        raise SecurityDescriptorError('security descriptor is not self-relative')
    owner = sid_to_string(data, off_owner)[0] if off_owner else None
    group = sid_to_string(data, off_group)[0] if off_group else None
    dacl = _parse_acl(data, off_dacl) if (control & SE_DACL_PRESENT and off_dacl) else None
    sacl = _parse_acl(data, off_sacl) if off_sacl else None
    return SecurityDescriptor(control, owner, group, dacl, sacl)


# ---------------------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------------------

def ace_grants(ace, right_guid):
    """How ``ace`` covers the extended right ``right_guid``: None, or one of
    'extended_right', 'all_extended_rights', 'generic_all'."""
    if ace.sid is None or ace.flags & INHERIT_ONLY_ACE:
        return None
    if not (ace.is_allow or ace.is_deny):
        return None
    right_guid = right_guid.lower()
    if ace.is_object and ace.object_type is not None and ace.object_type.lower() != right_guid:
        return None
    if ace.mask & GENERIC_ALL:
        return 'generic_all'
    if ace.mask & ADS_RIGHT_DS_CONTROL_ACCESS:
        if ace.is_object and ace.object_type is not None:
            return 'extended_right'
        if (ace.mask & DS_FULL_CONTROL) == DS_FULL_CONTROL:
            return 'full_control'
        return 'all_extended_rights'
    return None


class TemplateAcl(object):
    """Enroll / AutoEnroll evaluation of a template's DACL."""

    def __init__(self, sd):
        if isinstance(sd, (bytes, bytearray)):
            sd = parse_security_descriptor(sd)
        self.sd = sd

    def entries(self, right):
        """(allowed, denied): lists of {'sid', 'via', 'ace'} for ``right`` ('enroll' or 'autoenroll' or a GUID)."""
        guid = RIGHTS.get(right, right)
        allowed, denied = [], []
        if self.sd.dacl is None:
            allowed.append({'sid': EVERYONE, 'via': 'null_dacl', 'ace': None})
            return allowed, denied
        for ace in self.sd.dacl:
            via = ace_grants(ace, guid)
            if via is None:
                continue
            item = {'sid': ace.sid, 'via': via, 'ace': ace.index}
            (allowed if ace.is_allow else denied).append(item)
        return allowed, denied

    def rights(self):
        result = {}
        for right in RIGHTS:
            allowed, denied = self.entries(right)
            result[right] = {'allowed': allowed, 'denied': denied}
        return result

    def check(self, sids, right='enroll', names=None):
        """(bool, reason) for a token holding ``sids``. ``names`` optionally maps SIDs to display names."""
        names = names or {}
        sids = set(s.upper() for s in sids)
        label = 'Enroll' if RIGHTS.get(right, right) == ENROLL else ('AutoEnroll' if RIGHTS.get(right, right) == AUTOENROLL else right)
        if self.sd.dacl is None:
            return True, 'the template has no DACL (NULL DACL grants everything)'
        allowed, denied = self.entries(right)

        def who(sid):
            return '%s (%s)' % (names[sid], sid) if names.get(sid) else sid

        # MS-DTYP 2.5.3.2: the ACEs are evaluated in their order and the first one that names a SID of the token
        # for this right decides (canonical order puts explicit ACEs before inherited ones: an explicit allow wins
        # over an inherited deny)
        decisive = sorted([(item['ace'], True, item) for item in allowed] + [(item['ace'], False, item) for item in denied],
                          key=lambda entry: entry[0])
        for _index, is_allow, item in decisive:
            if item['sid'].upper() not in sids:
                continue
            if is_allow:
                return True, 'allowed: ACE #%d grants %s to %s (%s)' % (item['ace'], label, who(item['sid']), item['via'].replace('_', ' '))
            return False, 'denied: ACE #%d denies %s to %s (%s)' % (item['ace'], label, who(item['sid']), item['via'].replace('_', ' '))
        return False, 'no ACE grants %s to the account or any of its %d group SIDs' % (label, max(len(sids) - 1, 0))

    def can_enroll(self, sids, names=None):
        return self.check(sids, 'enroll', names)

    def can_autoenroll(self, sids, names=None):
        """AutoEnroll needs both rights (MS-WCCE 3.1.2.4.2.2.1.2 / autoenrollment): check Enroll first."""
        ok, reason = self.check(sids, 'enroll', names)
        if not ok:
            return ok, reason
        return self.check(sids, 'autoenroll', names)
