# -*- coding: utf-8 -*-
# Copyright (c) the adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""DCOM activation: one job, IRemoteSCMActivator::RemoteCreateInstance (MS-DCOM 3.1.2.5.2.3.2) as data.

``remote_create_instance(clsid, iid, cid)`` is the call (opnum 4 on port 135) for one CLSID and one IID: an
OBJREF_CUSTOM of ActivationPropertiesIn whose ACTIVATION_BLOB (2.2.22) carries InstantiationInfo,
ActivationContextInfo, ServerLocationInfo and ScmRequestInfo (ncacn_ip_tcp only), each type-serialized (MS-RPCE
2.2.6) and padded to 8 bytes, as impacket's and Windows' clients send it. ``parse_properties_out(data)`` reads the
reply's ActivationPropertiesOut: PropsOutInfo (the per-interface HRESULT and the OBJREF of the new interface
pointer) and ScmReplyInfo (the OXID, the object exporter's DUALSTRINGARRAY, the IPID of its IRemUnknown); every
length is checked (``_orpc.MalformedReply``). ``exporter_port`` takes the exporter's TCP port from the string
bindings: the client connects to the address it used for port 135, never to an address the reply names.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import collections
import struct

from ansible_collections.adcs.enrollment.plugins.module_utils import _orpc
from ansible_collections.adcs.enrollment.plugins.module_utils._errors import TransportError
from ansible_collections.adcs.enrollment.plugins.module_utils._orpc import MalformedReply, Reader

if _orpc.HAS_IMPACKET:
    from impacket.dcerpc.v5.dtypes import NULL, ULONG
    from impacket.dcerpc.v5.ndr import NDRCALL
    from impacket.uuid import string_to_bin, uuidtup_to_bin
else:  # pragma: no cover
    NDRCALL, NULL, ULONG = object, None, None

    def string_to_bin(text):
        return text

    def uuidtup_to_bin(tup):
        return tup

IID_IRemoteSCMActivator = uuidtup_to_bin(('000001A0-0000-0000-C000-000000000046', '0.0'))
IID_IActivationPropertiesIn = string_to_bin('000001A2-0000-0000-C000-000000000046')
CLSID_ActivationPropertiesIn = string_to_bin('00000338-0000-0000-C000-000000000046')
CLSID_ActivationPropertiesOut = string_to_bin('00000339-0000-0000-C000-000000000046')
CLSID_PropsOutInfo = CLSID_ActivationPropertiesOut
CLSID_InstantiationInfo = string_to_bin('000001AB-0000-0000-C000-000000000046')
CLSID_ActivationContextInfo = string_to_bin('000001A5-0000-0000-C000-000000000046')
CLSID_ServerLocationInfo = string_to_bin('000001A4-0000-0000-C000-000000000046')
CLSID_ScmRequestInfo = string_to_bin('000001AA-0000-0000-C000-000000000046')
CLSID_ScmReplyInfo = string_to_bin('000001B6-0000-0000-C000-000000000046')
MSHCTX_DIFFERENTMACHINE = 2
ORPCF_LOCAL = 1
MAX_PROPERTIES = 10                 # MAX_ACTPROP_LIMIT
MAX_BINDING_WORDS = 0x8000
TS1_FILLER = 0xCCCCCCCC

Activated = collections.namedtuple('Activated', 'hresult std oxid ipid_rem_unknown authn_hint string_bindings')


class RemoteCreateInstance(NDRCALL):
    opnum = 4
    structure = (('ORPCthis', _orpc.ORPCTHIS), ('pUnkOuter', _orpc.PMInterfacePointer),
                 ('pActProperties', _orpc.PMInterfacePointer))


class RemoteCreateInstanceResponse(NDRCALL):
    structure = (('ORPCthat', _orpc.ORPCTHAT), ('ppActProperties', _orpc.PMInterfacePointer),
                 ('ErrorCode', ULONG))


# ---- request --------------------------------------------------------------------------------------------------
def type_serialized(body):
    """MS-RPCE 2.2.6 type serialization version 1 (common and private header), padded to 8 bytes."""
    data = struct.pack('<BBHLLL', 1, 0x10, 8, TS1_FILLER, len(body), TS1_FILLER) + body
    return data + b'\x00' * ((8 - len(data) % 8) % 8)


def properties_in(clsid, iid):
    """The OBJREF_CUSTOM of ActivationPropertiesIn asking for ``iid`` (16-byte GUID) of ``clsid``."""
    refs = iter(range(0x20000, 0x20100, 4))            # NDR referent IDs
    inst = clsid + struct.pack('<LLlLLL', 0, 0, 0, 1, 0, next(refs))
    inst_len = len(type_serialized(inst + struct.pack('<LHHL', 0, 0, 0, 1) + iid))
    inst += struct.pack('<LHH', inst_len, _orpc.COM_VERSION[0], _orpc.COM_VERSION[1]) + struct.pack('<L', 1) + iid
    parts = [(CLSID_InstantiationInfo, type_serialized(inst)),
             (CLSID_ActivationContextInfo, type_serialized(struct.pack('<llLLLL', 0, 0, 0, 0, 0, 0))),
             (CLSID_ServerLocationInfo, type_serialized(struct.pack('<LLLL', 0, 0, 0, 0))),
             (CLSID_ScmRequestInfo, type_serialized(struct.pack('<LLLH2xLLH', 0, next(refs), 0, 1, next(refs), 1,
                                                                _orpc.TOWER_NCACN_IP_TCP)))]
    count = len(parts)
    head = (struct.pack('<LLL', 0, MSHCTX_DIFFERENTMACHINE, count) + b'\x00' * 16 +
            struct.pack('<LLL', next(refs), next(refs), 0) + struct.pack('<L', count) +
            b''.join(p[0] for p in parts) + struct.pack('<L%dL' % count, count, *[len(p[1]) for p in parts]))
    header_size = len(type_serialized(b'\x00' * 8 + head))
    total = header_size + sum(len(p[1]) for p in parts)
    header = type_serialized(struct.pack('<LL', total, header_size) + head)
    blob = struct.pack('<LL', total, 0) + header + b''.join(p[1] for p in parts)
    return _orpc.pack_objref_custom(IID_IActivationPropertiesIn, CLSID_ActivationPropertiesIn, blob)


def remote_create_instance(clsid, iid, cid):
    """The RemoteCreateInstance call (no aggregation) with ORPCTHIS ``cid``, flags ORPCF_LOCAL as impacket sends."""
    req = RemoteCreateInstance()
    req['ORPCthis'] = _orpc.new_orpcthis(cid, flags=ORPCF_LOCAL)
    req['pUnkOuter'] = NULL
    data = properties_in(clsid, iid[:16])
    req['pActProperties']['ulCntData'] = len(data)
    req['pActProperties']['abData'] = list(data)
    return req


# ---- reply ----------------------------------------------------------------------------------------------------
def serialized_body(data, what):
    """The body of one type-serialized property (its header checked)."""
    r = Reader(data, what)
    version, endian, length, _f, size, _f2 = r.unpack('BBHLLL')
    if (version, endian, length) != (1, 0x10, 8):
        raise MalformedReply('%s: not a version 1 little-endian type serialization' % what)
    return Reader(r.take(size), what)


def properties(data):
    """{property CLSID: bytes} of an ACTIVATION_BLOB."""
    r = Reader(data, 'ACTIVATION_BLOB')
    total, _reserved = r.unpack('LL')
    blob = r.take(total)
    h = serialized_body(blob, 'activation CustomHeader')
    _total, header_size, _reserved, _dest, count = h.unpack('LLLLL')
    h.take(16)
    p_clsids, p_sizes, p_reserved = h.unpack('LLL')
    if count > MAX_PROPERTIES or not p_clsids or not p_sizes:
        raise MalformedReply('activation CustomHeader: %d properties' % count)
    clsids = [h.take(16) for dummy in range(h.count(MAX_PROPERTIES))]
    sizes = [h.u32() for dummy in range(h.count(MAX_PROPERTIES))]
    if len(clsids) != count or len(sizes) != count:
        raise MalformedReply('activation CustomHeader: %d properties with %d CLSIDs and %d sizes'
                             % (count, len(clsids), len(sizes)))
    out, offset = {}, header_size
    for clsid, size in zip(clsids, sizes):
        if offset + size > len(blob):
            raise MalformedReply('activation property of %d bytes beyond the %d-byte blob' % (size, len(blob)))
        out[clsid] = blob[offset:offset + size]
        offset += size
    return out


def _props_out(data):
    """(HRESULT, OBJREF bytes or None) of the one interface asked for (PropsOutInfo, 2.2.22.2.9)."""
    r = serialized_body(data, 'PropsOutInfo')
    count, p_iids, p_results, p_data = r.unpack('LLLL')
    if count != 1 or not (p_iids and p_results and p_data):
        raise MalformedReply('PropsOutInfo: %d interfaces where 1 was asked for' % count)
    r.take(16 * r.count(1))
    results = [r.u32() for dummy in range(r.count(1))]
    pointers = [r.u32() for dummy in range(r.count(1))]
    if len(results) != 1 or len(pointers) != 1:
        raise MalformedReply('PropsOutInfo: arrays that disagree with its count')
    if not pointers[0]:
        return results[0], None
    size = r.count(0x100000)
    if r.u32() != size:
        raise MalformedReply('PropsOutInfo: an MInterfacePointer whose size disagrees with its array')
    return results[0], r.take(size)


def _scm_reply(data):
    """(OXID, IPID of IRemUnknown, authnHint, string bindings) of ScmReplyInfo (2.2.22.2.8)."""
    r = serialized_body(data, 'ScmReplyInfo')
    p_reserved, p_reply = r.unpack('LL')
    if not p_reply:
        raise MalformedReply('ScmReplyInfo without remoteReply')
    if p_reserved:
        r.u32()
    r.align(8)
    oxid, p_bindings = r.unpack('QL')
    ipid_rem_unknown = r.take(16)
    authn_hint, _major, _minor = r.unpack('LHH')
    if not p_bindings:
        raise MalformedReply('ScmReplyInfo without the object exporter\'s bindings')
    size = r.count(MAX_BINDING_WORDS)
    entries, security_offset = r.unpack('HH')
    if entries != size:
        raise MalformedReply('DUALSTRINGARRAY: %d entries in an array of %d' % (entries, size))
    words = r.unpack('%dH' % size)
    strings, _security = _orpc.parse_dualstringarray(words, security_offset)
    return oxid, ipid_rem_unknown, authn_hint, strings


def parse_properties_out(data):
    """Activated(hresult, std, oxid, ipid_rem_unknown, authn_hint, string_bindings) of the OBJREF_CUSTOM of
    ActivationPropertiesOut; ``std`` (an ``_orpc.StdObjRef``) is None when ``hresult`` is a failure."""
    ref = _orpc.parse_objref(data)
    if ref.flags != _orpc.FLAGS_OBJREF_CUSTOM or ref.clsid != CLSID_ActivationPropertiesOut:
        raise MalformedReply('the activation reply is not an ActivationPropertiesOut OBJREF_CUSTOM')
    props = properties(ref.data)
    for needed, name in ((CLSID_PropsOutInfo, 'PropsOutInfo'), (CLSID_ScmReplyInfo, 'ScmReplyInfo')):
        if needed not in props:
            raise MalformedReply('ActivationPropertiesOut without %s' % name)
    hresult, objref = _props_out(props[CLSID_PropsOutInfo])
    oxid, ipid_rem_unknown, authn_hint, strings = _scm_reply(props[CLSID_ScmReplyInfo])
    std = None
    if not hresult:
        if objref is None:
            raise MalformedReply('PropsOutInfo: success without an interface pointer')
        std = _orpc.parse_objref(objref).std
        if std is None:
            raise MalformedReply('PropsOutInfo: a custom-marshaled interface pointer')
    return Activated(hresult, std, oxid, ipid_rem_unknown, authn_hint, strings)


def pointer_data(resp):
    """The bytes of the reply's ppActProperties (MalformedReply when the CA sent a NULL with success)."""
    try:
        data = b''.join(resp['ppActProperties']['abData'])
    except (KeyError, TypeError):
        data = b''
    if not data:
        raise MalformedReply('RemoteCreateInstance succeeded without activation properties')
    return data


def exporter_port(string_bindings, address):
    """The TCP port of the object exporter from its string bindings (tower 7, ``addr[port]``).

    Windows announces its NetBIOS name and IP addresses (never the FQDN), so the client connects to the address it
    used for port 135 and takes only the port: the one of the binding naming exactly that address, else the first.
    """
    ports = []
    for tower, binding in string_bindings:
        if tower != _orpc.TOWER_NCACN_IP_TCP:
            continue
        addr, sep, rest = binding.partition('[')
        port = rest[:-1] if rest.endswith(']') else ''
        if not sep or not port.isdigit() or not 0 < int(port) < 65536:
            continue
        if address and addr.upper() == str(address).upper():
            return int(port)
        ports.append(int(port))
    if not ports:
        raise TransportError('The CA announced no TCP port for its DCOM object exporter',
                             remedy='Check that the host is an AD CS enterprise CA reachable over TCP.')
    return ports[0]
