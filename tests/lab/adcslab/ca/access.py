"""Access check of a certificate template's security descriptor for the Enroll extended right, as the AD CS policy
module does (MS-WCCE 3.2.2.6.2.1.4.x "the CA MUST check that the requester has Enroll permission"; MS-DTYP 2.4.4 ACE
layout, 2.5.3.2 access check algorithm).

The DACL is walked in order; the first ACE that applies to one of the caller's SIDs and names the right decides
(Windows' AccessCheck): with the canonical order AD keeps (explicit deny ACEs first) a deny ACE wins. An ACE names
the Enroll right when its mask has GENERIC_ALL, or ADS_RIGHT_DS_CONTROL_ACCESS either on an object ACE whose
ObjectType is the Enroll GUID (or absent) or on a plain ACE (All Extended Rights).
"""

import struct
import uuid

from .directory import sid_to_str

ENROLL_GUID = uuid.UUID("0e10c968-78fb-11d2-90d4-00c04f79dc55")
AUTOENROLL_GUID = uuid.UUID("a05b8cc2-17bc-4802-a710-e7c15ab866a2")

ADS_RIGHT_DS_CONTROL_ACCESS = 0x00000100
GENERIC_ALL = 0x10000000

ACCESS_ALLOWED_ACE_TYPE = 0x00
ACCESS_DENIED_ACE_TYPE = 0x01
ACCESS_ALLOWED_OBJECT_ACE_TYPE = 0x05
ACCESS_DENIED_OBJECT_ACE_TYPE = 0x06
INHERIT_ONLY_ACE = 0x08
ACE_OBJECT_TYPE_PRESENT = 0x1
ACE_INHERITED_OBJECT_TYPE_PRESENT = 0x2
SE_DACL_PRESENT = 0x0004

# SIDs every network logon token carries besides the account and its tokenGroups.
WELL_KNOWN_TOKEN_SIDS = ["S-1-1-0", "S-1-5-2", "S-1-5-11", "S-1-5-15"]  # Everyone, NETWORK, Authenticated, This Org


class Ace:
    __slots__ = ("ace_type", "flags", "mask", "object_type", "sid")

    def __init__(self, ace_type, flags, mask, object_type, sid):
        self.ace_type = ace_type
        self.flags = flags
        self.mask = mask
        self.object_type = object_type
        self.sid = sid

    @property
    def deny(self):
        return self.ace_type in (ACCESS_DENIED_ACE_TYPE, ACCESS_DENIED_OBJECT_ACE_TYPE)

    def __repr__(self):
        return "Ace(%s %s 0x%x %s)" % ("deny" if self.deny else "allow", self.sid, self.mask, self.object_type)


def parse_dacl(sd):
    """Self-relative SECURITY_DESCRIPTOR -> list of Ace (None when the SD has no DACL, i.e. a NULL DACL)."""
    sd = bytes(sd)
    if len(sd) < 20:
        raise ValueError("security descriptor too short")
    control = struct.unpack_from("<H", sd, 2)[0]
    dacl_offset = struct.unpack_from("<I", sd, 16)[0]
    if not control & SE_DACL_PRESENT or dacl_offset == 0:
        return None
    _, _, _, count, _ = struct.unpack_from("<BBHHH", sd, dacl_offset)
    offset = dacl_offset + 8
    aces = []
    for _ in range(count):
        ace_type, ace_flags, size = struct.unpack_from("<BBH", sd, offset)
        body = sd[offset + 4:offset + size]
        offset += size
        if ace_type in (ACCESS_ALLOWED_ACE_TYPE, ACCESS_DENIED_ACE_TYPE):
            mask = struct.unpack_from("<I", body, 0)[0]
            aces.append(Ace(ace_type, ace_flags, mask, None, sid_to_str(body[4:])))
        elif ace_type in (ACCESS_ALLOWED_OBJECT_ACE_TYPE, ACCESS_DENIED_OBJECT_ACE_TYPE):
            mask, obj_flags = struct.unpack_from("<II", body, 0)
            pos = 8
            object_type = None
            if obj_flags & ACE_OBJECT_TYPE_PRESENT:
                object_type = uuid.UUID(bytes_le=bytes(body[pos:pos + 16]))
                pos += 16
            if obj_flags & ACE_INHERITED_OBJECT_TYPE_PRESENT:
                pos += 16
            aces.append(Ace(ace_type, ace_flags, mask, object_type, sid_to_str(body[pos:])))
        # other ACE types (audit, callback, ...) do not take part in this check
    return aces


def _names_right(ace, right_guid):
    if ace.mask & GENERIC_ALL:
        return True
    if not ace.mask & ADS_RIGHT_DS_CONTROL_ACCESS:
        return False
    if ace.ace_type in (ACCESS_ALLOWED_ACE_TYPE, ACCESS_DENIED_ACE_TYPE):
        return True  # All Extended Rights
    return ace.object_type is None or ace.object_type == right_guid


def check_extended_right(sd, token_sids, right_guid=ENROLL_GUID):
    """True when a token with ``token_sids`` holds the extended right ``right_guid`` on the object with ``sd``."""
    aces = parse_dacl(sd)
    if aces is None:
        return True  # NULL DACL: everyone has every right
    sids = {s.upper() for s in token_sids if s}
    for ace in aces:
        if ace.flags & INHERIT_ONLY_ACE or ace.sid.upper() not in sids:
            continue
        if _names_right(ace, right_guid):
            return not ace.deny
    return False


# -- the CA's own security descriptor (MS-CSRA 3.1.1.7, MS-WCCE 3.2.1.1.4 Config_Permissions_CA_Security) ----------
# Windows keeps it in the CA configuration (registry), not in AD, with these access mask bits; the CA mirrors the
# Enroll permission into the enrollment service object's nTSecurityDescriptor (the Enroll extended right), which is
# what clients read. A caller without Enroll (Request Certificates) gets CERTSRV_E_ENROLL_DENIED 0x80094011 for the
# call itself, before any request row exists.
CA_ACCESS_ADMIN = 0x00000001
CA_ACCESS_OFFICER = 0x00000002
CA_ACCESS_READ = 0x00000100
CA_ACCESS_ENROLL = 0x00000200
CA_RIGHTS = {"enroll": CA_ACCESS_ENROLL, "read": CA_ACCESS_READ,
             "full": CA_ACCESS_ADMIN | CA_ACCESS_OFFICER | CA_ACCESS_READ | CA_ACCESS_ENROLL}


def ca_access_entries(acl, resolve):
    """(kind, mask, SID) ACEs of the CA security from (kind, right, principal) triples (seed.CA_SECURITY form), in
    canonical order (deny first, as the seeder writes the AD copy). ``resolve(principal)`` -> SID or None."""
    ordered = [entry for entry in acl if entry[0] == "deny"] + [entry for entry in acl if entry[0] == "allow"]
    result = []
    for kind, right, principal in ordered:
        sid = resolve(principal)
        if sid:
            result.append((kind, CA_RIGHTS[right], sid))
    return result


def ca_allows(entries, token_sids, right=CA_ACCESS_ENROLL):
    """True when the first ACE naming a SID of the token and ``right`` allows it (MS-DTYP 2.5.3.2)."""
    sids = {s.upper() for s in token_sids if s}
    for kind, mask, sid in entries:
        if mask & right and sid.upper() in sids:
            return kind == "allow"
    return False
