# -*- coding: utf-8 -*-
# Copyright (c) the adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""ORPC structures of MS-DCOM: one job, the DCOM call headers, object references and IRemUnknown calls as data.

* NDR types over impacket's NDR base classes only (``impacket.dcerpc.v5.ndr``/``dtypes``, no DCE/RPC runtime):
  COMVERSION, ORPC_EXTENT(_ARRAY), ORPCTHIS, ORPCTHAT (MS-DCOM 2.2.13), MInterfacePointer (2.2.14), STDOBJREF
  (2.2.18.1), REMQIRESULT, REMINTERFACEREF; ``DCOMCALL``/``DCOMANSWER``, the bases of every ORPC call and reply
  (ORPCTHIS / ORPCTHAT first); IRemUnknown's RemQueryInterface and RemRelease (3.1.1.5.6). ``_rpc_conn`` finds a
  reply class by the call's name + ``Response`` in this module.
* Byte layouts read with ``Reader`` (every length and offset checked; ``MalformedReply`` else): OBJREF (2.2.18,
  with STDOBJREF for the standard, handler and extended kinds) and DUALSTRINGARRAY (2.2.19) with its string and
  security bindings; ``pack_*`` are the inverses (tests build hostile replies with them).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import collections
import os
import struct

from ansible_collections.adcs.enrollment.plugins.module_utils._deps import HAS_IMPACKET
from ansible_collections.adcs.enrollment.plugins.module_utils._errors import AdcsError

if HAS_IMPACKET:
    from impacket.dcerpc.v5.dtypes import GUID, LONG, NULL, ULONG, ULONGLONG, USHORT
    from impacket.dcerpc.v5.ndr import NDRCALL, NDRPOINTER, NDRSTRUCT, NDRUniConformantArray
    from impacket.uuid import uuidtup_to_bin
else:  # pragma: no cover - placeholders so the class statements evaluate; DcomSession refuses to run
    NDRCALL = NDRSTRUCT = NDRPOINTER = NDRUniConformantArray = object
    GUID = LONG = ULONG = ULONGLONG = USHORT = NULL = None

    def uuidtup_to_bin(tup):
        return tup

OBJREF_SIGNATURE = 0x574F454D          # 'MEOW'
FLAGS_OBJREF_STANDARD, FLAGS_OBJREF_HANDLER, FLAGS_OBJREF_CUSTOM, FLAGS_OBJREF_EXTENDED = 1, 2, 4, 8
COM_VERSION = (5, 7)
TOWER_NCACN_IP_TCP = 7
IID_IRemUnknown = uuidtup_to_bin(('00000131-0000-0000-C000-000000000046', '0.0'))
StdObjRef = collections.namedtuple('StdObjRef', 'flags public_refs oxid oid ipid')
ObjRef = collections.namedtuple('ObjRef', 'flags iid std clsid data')


class MalformedReply(AdcsError):
    """A DCOM structure in a (verified) reply that does not parse: cut, overlong or of the wrong kind."""


class Reader(object):
    """Little-endian reads from ``data`` with bounds checks (``MalformedReply(what ...)`` on overrun); ``align``
    is relative to the start of ``data`` (an NDR stream or a type-serialized body)."""

    def __init__(self, data, what):
        self.data, self.off, self.what = bytes(data), 0, what

    def take(self, count):
        if count < 0 or self.off + count > len(self.data):
            raise MalformedReply('%s: %d bytes needed at offset %d of %d' % (self.what, count, self.off,
                                                                             len(self.data)))
        out = self.data[self.off:self.off + count]
        self.off += count
        return out

    def unpack(self, fmt):
        return struct.unpack('<' + fmt, self.take(struct.calcsize('<' + fmt)))

    def u16(self):
        return self.unpack('H')[0]

    def u32(self):
        return self.unpack('L')[0]

    def u64(self):
        return self.unpack('Q')[0]

    def align(self, boundary):
        self.take((boundary - self.off % boundary) % boundary)

    def count(self, limit):
        """An NDR conformance (array size), at most ``limit``."""
        self.align(4)
        value = self.u32()
        if value > limit:
            raise MalformedReply('%s: an array of %d elements (at most %d expected)' % (self.what, value, limit))
        return value


# ---- DUALSTRINGARRAY (MS-DCOM 2.2.19) -------------------------------------------------------------------------
def parse_dualstringarray(words, security_offset):
    """``([(tower id, network address)], [(authn service, principal)])`` of the aStringArray ``words``."""
    words = list(words)
    if not 0 < security_offset <= len(words):
        raise MalformedReply('DUALSTRINGARRAY: security offset %d outside %d entries' % (security_offset, len(words)))
    return (_bindings(words[:security_offset], 1, 'string'),
            _bindings(words[security_offset:], 2, 'security'))


def _bindings(words, head, kind):
    out, i = [], 0
    while i < len(words) and words[i] != 0:
        try:
            end = words.index(0, i + head)
        except ValueError:
            raise MalformedReply('DUALSTRINGARRAY: a %s binding without its terminating NUL' % kind)
        text = struct.pack('<%dH' % (end - i - head), *words[i + head:end]).decode('utf-16-le', 'replace')
        out.append((words[i], text))
        i = end + 1
    if i >= len(words) and kind == 'string':
        raise MalformedReply('DUALSTRINGARRAY: the string bindings are not terminated')
    return out


def pack_dualstringarray(string_bindings, security_bindings=()):
    """(wNumEntries, wSecurityOffset, words): the inverse of parse_dualstringarray."""
    words = []
    for tower, addr in string_bindings:
        words += [tower] + list(struct.unpack('<%dH' % (len(addr) + 1), (addr + '\x00').encode('utf-16-le')))
    words.append(0)
    offset = len(words)
    for svc, principal in security_bindings:
        words += [svc, 0xFFFF] + list(struct.unpack('<%dH' % (len(principal) + 1),
                                                    (principal + '\x00').encode('utf-16-le')))
    words += [0] * (1 if security_bindings else 2)
    return len(words), offset, words


# ---- OBJREF (MS-DCOM 2.2.18) ----------------------------------------------------------------------------------
def parse_objref(data):
    """An ObjRef: ``std`` (StdObjRef) for the standard, handler and extended kinds, ``clsid``/``data`` (the object
    data) for the custom kind; any other signature or kind raises MalformedReply."""
    r = Reader(data, 'OBJREF')
    signature, flags = r.unpack('LL')
    if signature != OBJREF_SIGNATURE:
        raise MalformedReply('OBJREF: signature 0x%08X instead of MEOW' % signature)
    iid = r.take(16)
    if flags in (FLAGS_OBJREF_STANDARD, FLAGS_OBJREF_HANDLER, FLAGS_OBJREF_EXTENDED):
        std_flags, refs, oxid, oid = r.unpack('LLQQ')
        return ObjRef(flags, iid, StdObjRef(std_flags, refs, oxid, oid, r.take(16)), None, b'')
    if flags == FLAGS_OBJREF_CUSTOM:
        clsid = r.take(16)
        _extension, size = r.unpack('LL')
        if size < 8:
            raise MalformedReply('OBJREF_CUSTOM: object reference size %d' % size)
        return ObjRef(flags, iid, None, clsid, r.take(size - 8))
    raise MalformedReply('OBJREF: kind %d' % flags)


def pack_objref_standard(iid, std, bindings=((TOWER_NCACN_IP_TCP, ''),)):
    count, offset, words = pack_dualstringarray(bindings)
    return (struct.pack('<LL', OBJREF_SIGNATURE, FLAGS_OBJREF_STANDARD) + iid +
            struct.pack('<LLQQ', std.flags, std.public_refs, std.oxid, std.oid) + std.ipid +
            struct.pack('<HH%dH' % count, count, offset, *words))


def pack_objref_custom(iid, clsid, data):
    return struct.pack('<LL', OBJREF_SIGNATURE, FLAGS_OBJREF_CUSTOM) + iid + clsid + \
        struct.pack('<LL', 0, len(data) + 8) + data


# ---- NDR types ------------------------------------------------------------------------------------------------
class COMVERSION(NDRSTRUCT):
    structure = (('MajorVersion', USHORT), ('MinorVersion', USHORT))


class BYTE_ARRAY(NDRUniConformantArray):
    item = 'c'


class ORPC_EXTENT(NDRSTRUCT):
    structure = (('id', GUID), ('size', ULONG), ('data', BYTE_ARRAY))


class PORPC_EXTENT(NDRPOINTER):
    referent = (('Data', ORPC_EXTENT),)


class EXTENT_ARRAY(NDRUniConformantArray):
    item = PORPC_EXTENT


class PEXTENT_ARRAY(NDRPOINTER):
    referent = (('Data', EXTENT_ARRAY),)


class ORPC_EXTENT_ARRAY(NDRSTRUCT):
    structure = (('size', ULONG), ('reserved', ULONG), ('extent', PEXTENT_ARRAY))


class PORPC_EXTENT_ARRAY(NDRPOINTER):
    referent = (('Data', ORPC_EXTENT_ARRAY),)


class ORPCTHIS(NDRSTRUCT):
    structure = (('version', COMVERSION), ('flags', ULONG), ('reserved1', ULONG), ('cid', GUID),
                 ('extensions', PORPC_EXTENT_ARRAY))


class ORPCTHAT(NDRSTRUCT):
    structure = (('flags', ULONG), ('extensions', PORPC_EXTENT_ARRAY))


class MInterfacePointer(NDRSTRUCT):
    structure = (('ulCntData', ULONG), ('abData', BYTE_ARRAY))


class PMInterfacePointer(NDRPOINTER):
    referent = (('Data', MInterfacePointer),)


class STDOBJREF(NDRSTRUCT):
    structure = (('flags', ULONG), ('cPublicRefs', ULONG), ('oxid', ULONGLONG), ('oid', ULONGLONG), ('ipid', GUID))


class REMQIRESULT(NDRSTRUCT):
    structure = (('hResult', LONG), ('std', STDOBJREF))


class PREMQIRESULT(NDRPOINTER):
    referent = (('Data', REMQIRESULT),)


class IID_ARRAY(NDRUniConformantArray):
    item = GUID


class REMINTERFACEREF(NDRSTRUCT):
    structure = (('ipid', GUID), ('cPublicRefs', LONG), ('cPrivateRefs', LONG))


class REMINTERFACEREF_ARRAY(NDRUniConformantArray):
    item = REMINTERFACEREF


class DCOMCALL(NDRCALL):
    commonHdr = (('ORPCthis', ORPCTHIS),)


class DCOMANSWER(NDRCALL):
    commonHdr = (('ORPCthat', ORPCTHAT),)


def new_orpcthis(cid=None, flags=0):
    """ORPCTHIS of COM version 5.7, no extensions, causality ID ``cid`` (16 bytes; a new random one if None)."""
    orpc = ORPCTHIS()
    orpc['version']['MajorVersion'], orpc['version']['MinorVersion'] = COM_VERSION
    orpc['flags'] = flags
    orpc['reserved1'] = 0
    orpc['cid'] = cid if cid is not None else os.urandom(16)
    orpc['extensions'] = NULL
    return orpc


# ---- IRemUnknown (MS-DCOM 3.1.1.5.6) --------------------------------------------------------------------------
class RemQueryInterface(DCOMCALL):
    opnum = 3
    structure = (('ripid', GUID), ('cRefs', ULONG), ('cIids', USHORT), ('iids', IID_ARRAY))


class RemQueryInterfaceResponse(DCOMANSWER):
    structure = (('ppQIResults', PREMQIRESULT), ('ErrorCode', ULONG))


class RemRelease(DCOMCALL):
    opnum = 5
    structure = (('cInterfaceRefs', USHORT), ('InterfaceRefs', REMINTERFACEREF_ARRAY))


class RemReleaseResponse(DCOMANSWER):
    structure = (('ErrorCode', ULONG),)


def rem_query_interface(orpcthis, ripid, iid, refs=1):
    """RemQueryInterface for one IID (16-byte GUID) of the object behind ``ripid`` (``orpcthis`` None: the
    caller sets it)."""
    req = RemQueryInterface()
    if orpcthis is not None:
        req['ORPCthis'] = orpcthis
    req['ripid'], req['cRefs'], req['cIids'] = ripid, refs, 1
    guid = GUID()
    guid['Data'] = iid[:16]
    req['iids'].append(guid)
    return req


def qi_result(resp):
    """(HRESULT, StdObjRef or None) of a RemQueryInterfaceResponse for one IID."""
    result = resp['ppQIResults']
    hresult = (result['hResult'] or 0) & 0xFFFFFFFF
    if hresult:
        return hresult, None
    std = result['std']
    return 0, StdObjRef(std['flags'], std['cPublicRefs'], std['oxid'], std['oid'], bytes(std['ipid']))


def rem_release(orpcthis, ipids, public_refs=1):
    """RemRelease of ``public_refs`` public references of each IPID, in one call (``orpcthis`` as above)."""
    req = RemRelease()
    if orpcthis is not None:
        req['ORPCthis'] = orpcthis
    req['cInterfaceRefs'] = len(ipids)
    for ipid in ipids:
        entry = REMINTERFACEREF()
        entry['ipid'], entry['cPublicRefs'], entry['cPrivateRefs'] = ipid, public_refs, 0
        req['InterfaceRefs'].append(entry)
    return req
