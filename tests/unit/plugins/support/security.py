# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Test-only encoders for security descriptors (the collection only parses them): ACEs, self-relative SDs."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import struct
import uuid

from ansible_collections.adcs.enrollment.plugins.module_utils._security import (
    ACE_INHERITED_OBJECT_TYPE_PRESENT, ACE_OBJECT_TYPE_PRESENT, OBJECT_ACE_TYPES, SE_DACL_PRESENT, SE_SELF_RELATIVE,
    TemplateAcl, sid_to_bytes,
)


def can_enroll(sd, sids, names=None):
    """Convenience wrapper: (bool, reason) whether ``sids`` may enroll on a template with security descriptor ``sd``."""
    return TemplateAcl(sd).can_enroll(sids, names)


def guid_to_bytes(guid):
    return uuid.UUID(guid).bytes_le


def build_ace(ace_type, sid, mask, object_type=None, flags=0, inherited_object_type=None):
    sid_bytes = sid_to_bytes(sid)
    if ace_type in OBJECT_ACE_TYPES:
        obj_flags = (ACE_OBJECT_TYPE_PRESENT if object_type else 0) | (ACE_INHERITED_OBJECT_TYPE_PRESENT if inherited_object_type else 0)
        body = struct.pack('<II', mask, obj_flags)
        if object_type:
            body += guid_to_bytes(object_type)
        if inherited_object_type:
            body += guid_to_bytes(inherited_object_type)
        body += sid_bytes
    else:
        body = struct.pack('<I', mask) + sid_bytes
    return struct.pack('<BBH', ace_type, flags, 4 + len(body)) + body


def build_security_descriptor(aces, owner='S-1-5-32-544', group='S-1-5-32-544', dacl_present=True):
    """Self-relative SD from ACE byte strings (see build_ace)."""
    header_len = 20
    owner_b = sid_to_bytes(owner) if owner else b''
    group_b = sid_to_bytes(group) if group else b''
    acl = b''
    if dacl_present:
        body = b''.join(aces)
        acl = struct.pack('<BBHHH', 4 if any(a[0] in OBJECT_ACE_TYPES for a in aces) else 2, 0, 8 + len(body), len(aces), 0) + body
    off = header_len
    off_owner = off if owner_b else 0
    off += len(owner_b)
    off_group = off if group_b else 0
    off += len(group_b)
    off_dacl = off if dacl_present else 0
    control = SE_SELF_RELATIVE | (SE_DACL_PRESENT if dacl_present else 0)
    return struct.pack('<BBHIIII', 1, 0, control, off_owner, off_group, 0, off_dacl) + owner_b + group_b + acl
