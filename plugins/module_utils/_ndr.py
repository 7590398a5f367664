# -*- coding: utf-8 -*-
# Copyright (c) the adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""MS-WCCE wire structures: one job, declaring the ICertRequestD / ICertRequestD2 calls as NDR data.

impacket ``dcerpc/v5`` style: each call is an NDRCALL (``_orpc.DCOMCALL``, so it starts with ORPCTHIS) with
``opnum`` and ``structure``; each reply is the same name + ``Response`` (``_orpc.DCOMANSWER``: ORPCTHAT first,
HRESULT ``ErrorCode`` last). ``_rpc_conn.RpcConnection.request`` finds the reply class by that name in this module,
so keep the names. The client sends the hot Request/Request2 with ``_wcce_ndr`` (struct-coded, byte-identical);
their classes here are the reference its tests compare with. Also: CERTTRANSBLOB, blob/string helpers, and decoders
for the CATRANSPROP array (GetCAPropertyInfo) and the template list property (CR_PROP_TEMPLATES).

Method parameter lists follow MS-WCCE 3.2.1.4.2 (ICertRequestD) and 3.2.1.4.3 (ICertRequestD2).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import struct

from ansible_collections.adcs.enrollment.plugins.module_utils._deps import HAS_IMPACKET
from ansible_collections.adcs.enrollment.plugins.module_utils._orpc import DCOMANSWER, DCOMCALL

if HAS_IMPACKET:
    from impacket.dcerpc.v5.dtypes import DWORD, LONG, LPWSTR, NULL, PBYTE, ULONG
    from impacket.dcerpc.v5.ndr import NDRSTRUCT
    from impacket.uuid import string_to_bin, uuidtup_to_bin
    error_status_t = ULONG
else:
    # Placeholders so the class statements below still evaluate (the module is unusable without impacket).
    class NDRSTRUCT(object):  # type: ignore
        pass

    DWORD = LONG = LPWSTR = PBYTE = ULONG = error_status_t = None
    NULL = None

    def string_to_bin(s):
        return s

    def uuidtup_to_bin(t):
        return t


CLSID_CCertRequestD_STR = 'D99E6E74-FC88-11D0-B498-00A0C90312F3'
IID_ICertRequestD_STR = 'D99E6E70-FC88-11D0-B498-00A0C90312F3'
IID_ICertRequestD2_STR = '5422FD3A-D4B8-4CEF-A12E-E87D4CA22E90'

# DCOM interfaces are bound with version 0.0 (MS-DCOM); the wire notes confirm it for ICertRequestD.
CLSID_CCertRequestD = string_to_bin(CLSID_CCertRequestD_STR)
IID_ICertRequestD = uuidtup_to_bin((IID_ICertRequestD_STR, '0.0'))
IID_ICertRequestD2 = uuidtup_to_bin((IID_ICertRequestD2_STR, '0.0'))

# dwFlags (MS-WCCE 3.2.1.4.2.1): request type in bits 8-15, other flags
CR_IN_FORMATANY = 0x00000000
CR_IN_PKCS10 = 0x00000100
CR_IN_KEYGEN = 0x00000200
CR_IN_PKCS7 = 0x00000300
CR_IN_CMC = 0x00000400
CR_IN_FULLRESPONSE = 0x00040000
CR_IN_CRLS = 0x00080000
CR_IN_MACHINE = 0x00100000
CR_IN_TYPE_MASK = 0x0000FF00

# GetCACert fchain (MS-WCCE 3.2.1.4.2.2)
GETCERT_CASIGCERT = 0x00000000
GETCERT_CAXCHGCERT = 0x00000001
GETCERT_CHAIN = 0x80000000      # with CASIGCERT: the CA certificate chain as PKCS#7

# GetCAProperty PropType
PROPTYPE_LONG = 0x00000001
PROPTYPE_DATE = 0x00000002
PROPTYPE_BINARY = 0x00000003
PROPTYPE_STRING = 0x00000004

# CR_PROP_* ids (MS-WCCE 3.2.1.4.3.2)
CR_PROP_FILEVERSION = 0x01
CR_PROP_PRODUCTVERSION = 0x02
CR_PROP_POLICYDESCRIPTION = 0x05
CR_PROP_CANAME = 0x06
CR_PROP_SANITIZEDCANAME = 0x07
CR_PROP_PARENTCA = 0x09
CR_PROP_CATYPE = 0x0A
CR_PROP_CASIGCERTCOUNT = 0x0B
CR_PROP_CASIGCERT = 0x0C
CR_PROP_CASIGCERTCHAIN = 0x0D
CR_PROP_CAXCHGCERTCOUNT = 0x0E
CR_PROP_CAXCHGCERT = 0x0F
CR_PROP_BASECRL = 0x11
CR_PROP_DELTACRL = 0x12
CR_PROP_CACERTSTATE = 0x13
CR_PROP_CRLSTATE = 0x14
CR_PROP_DNSNAME = 0x16
CR_PROP_KRACERTUSEDCOUNT = 0x18
CR_PROP_KRACERTCOUNT = 0x19
CR_PROP_KRACERT = 0x1A
CR_PROP_TEMPLATES = 0x1D

PROPERTY_TYPES = {
    CR_PROP_FILEVERSION: PROPTYPE_STRING, CR_PROP_PRODUCTVERSION: PROPTYPE_STRING,
    CR_PROP_POLICYDESCRIPTION: PROPTYPE_STRING, CR_PROP_CANAME: PROPTYPE_STRING,
    CR_PROP_SANITIZEDCANAME: PROPTYPE_STRING, CR_PROP_PARENTCA: PROPTYPE_STRING, CR_PROP_CATYPE: PROPTYPE_LONG,
    CR_PROP_CASIGCERTCOUNT: PROPTYPE_LONG, CR_PROP_CASIGCERT: PROPTYPE_BINARY,
    CR_PROP_CASIGCERTCHAIN: PROPTYPE_BINARY, CR_PROP_CAXCHGCERTCOUNT: PROPTYPE_LONG,
    CR_PROP_CAXCHGCERT: PROPTYPE_BINARY, CR_PROP_BASECRL: PROPTYPE_BINARY, CR_PROP_DELTACRL: PROPTYPE_BINARY,
    CR_PROP_CACERTSTATE: PROPTYPE_LONG, CR_PROP_CRLSTATE: PROPTYPE_LONG, CR_PROP_DNSNAME: PROPTYPE_STRING,
    CR_PROP_KRACERTUSEDCOUNT: PROPTYPE_LONG, CR_PROP_KRACERTCOUNT: PROPTYPE_LONG,
    CR_PROP_TEMPLATES: PROPTYPE_STRING,
}


# ---------------------------------------------------------------------------------------------------------------
# Structures
# ---------------------------------------------------------------------------------------------------------------
class CERTTRANSBLOB(NDRSTRUCT):
    """MS-WCCE 2.2.2.2: { ULONG cb; [size_is(cb), unique] BYTE *pb; }"""
    structure = (
        ('cb', ULONG),
        ('pb', PBYTE),
    )


# ---- ICertRequestD (MS-WCCE 3.2.1.4.2) ----
class Request(DCOMCALL):
    opnum = 3
    structure = (
        ('dwFlags', DWORD),
        ('pwszAuthority', LPWSTR),
        ('pdwRequestId', DWORD),
        ('pwszAttributes', LPWSTR),
        ('pctbRequest', CERTTRANSBLOB),
    )


class RequestResponse(DCOMANSWER):
    structure = (
        ('pdwRequestId', DWORD),
        ('pdwDisposition', ULONG),
        ('pctbCertChain', CERTTRANSBLOB),
        ('pctbEncodedCert', CERTTRANSBLOB),
        ('pctbDispositionMessage', CERTTRANSBLOB),
        ('ErrorCode', error_status_t),
    )


class GetCACert(DCOMCALL):
    opnum = 4
    structure = (
        ('fchain', DWORD),
        ('pwszAuthority', LPWSTR),
    )


class GetCACertResponse(DCOMANSWER):
    structure = (
        ('pctbOut', CERTTRANSBLOB),
        ('ErrorCode', error_status_t),
    )


class Ping(DCOMCALL):
    opnum = 5
    structure = (
        ('pwszAuthority', LPWSTR),
    )


class PingResponse(DCOMANSWER):
    structure = (
        ('ErrorCode', error_status_t),
    )


# ---- ICertRequestD2 (MS-WCCE 3.2.1.4.3) ----
class Request2(DCOMCALL):
    opnum = 6
    structure = (
        ('pwszAuthority', LPWSTR),
        ('dwFlags', DWORD),
        ('pwszSerialNumber', LPWSTR),
        ('pdwRequestId', DWORD),
        ('pwszAttributes', LPWSTR),
        ('pctbRequest', CERTTRANSBLOB),
    )


class Request2Response(DCOMANSWER):
    structure = (
        ('pdwRequestId', DWORD),
        ('pdwDisposition', ULONG),
        ('pctbFullResponse', CERTTRANSBLOB),
        ('pctbEncodedCert', CERTTRANSBLOB),
        ('pctbDispositionMessage', CERTTRANSBLOB),
        ('ErrorCode', error_status_t),
    )


class GetCAProperty(DCOMCALL):
    opnum = 7
    structure = (
        ('pwszAuthority', LPWSTR),
        ('PropID', LONG),
        ('PropIndex', LONG),
        ('PropType', LONG),
    )


class GetCAPropertyResponse(DCOMANSWER):
    structure = (
        ('pctbPropertyValue', CERTTRANSBLOB),
        ('ErrorCode', error_status_t),
    )


class GetCAPropertyInfo(DCOMCALL):
    opnum = 8
    structure = (
        ('pwszAuthority', LPWSTR),
    )


class GetCAPropertyInfoResponse(DCOMANSWER):
    structure = (
        ('pcProperty', LONG),
        ('pctbPropInfo', CERTTRANSBLOB),
        ('ErrorCode', error_status_t),
    )


class Ping2(DCOMCALL):
    opnum = 9
    structure = (
        ('pwszAuthority', LPWSTR),
    )


class Ping2Response(DCOMANSWER):
    structure = (
        ('ErrorCode', error_status_t),
    )


OPNUMS = {
    3: (Request, RequestResponse),
    4: (GetCACert, GetCACertResponse),
    5: (Ping, PingResponse),
    6: (Request2, Request2Response),
    7: (GetCAProperty, GetCAPropertyResponse),
    8: (GetCAPropertyInfo, GetCAPropertyInfoResponse),
    9: (Ping2, Ping2Response),
}


# ---------------------------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------------------------
def make_blob(data):
    """CERTTRANSBLOB from bytes (empty or None: cb 0, NULL pointer)."""
    blob = CERTTRANSBLOB()
    if data:
        blob['cb'] = len(data)
        blob['pb'] = bytes(data)
    else:
        blob['cb'] = 0
        blob['pb'] = NULL
    return blob


def blob_bytes(blob):
    """Bytes of a decoded CERTTRANSBLOB (b'' for NULL), cut to cb; bytes (``_wcce_ndr``'s blobs) as they are."""
    if blob is None:
        return b''
    if isinstance(blob, bytes):
        return blob
    try:
        pb = blob['pb']
    except (KeyError, TypeError):
        return b''
    if pb is None or pb == NULL or pb == b'' or pb == []:
        return b''
    if isinstance(pb, (bytes, bytearray)):
        data = bytes(pb)
    elif isinstance(pb, str):
        data = pb.encode('latin-1')
    else:
        try:
            data = b''.join(x if isinstance(x, bytes) else bytes([x]) for x in pb)
        except TypeError:
            data = bytes(pb)
    cb = blob['cb']
    return data[:cb] if cb is not None and cb <= len(data) else data


def wstr(text):
    """Value for an LPWSTR field: the text NUL-terminated (impacket's WSTR counts the NUL)."""
    if text is None:
        return NULL
    return text if text.endswith('\x00') else text + '\x00'


def utf16z(text):
    """UTF-16LE with terminating NUL (strings inside blobs)."""
    return (text + '\x00').encode('utf-16-le')


def decode_utf16z(data):
    """Decode a UTF-16LE blob string, dropping the terminating NUL(s) and a dangling odd byte."""
    if not data:
        return ''
    if len(data) % 2:
        data = data[:-1]
    text = data.decode('utf-16-le', 'replace')
    return text.split('\x00', 1)[0] if '\x00' in text else text


def decode_property_value(data, prop_type):
    """Decode a GetCAProperty value by type: LONG -> int, STRING -> str, DATE -> raw FILETIME int, BINARY -> bytes."""
    if prop_type == PROPTYPE_LONG:
        if len(data) < 4:
            raise ValueError('LONG property value has %d bytes' % len(data))
        return struct.unpack('<l', data[:4])[0]
    if prop_type == PROPTYPE_STRING:
        return decode_utf16z(data)
    if prop_type == PROPTYPE_DATE:
        if len(data) < 8:
            raise ValueError('DATE property value has %d bytes' % len(data))
        return struct.unpack('<Q', data[:8])[0]
    return bytes(data)


def encode_property_value(value, prop_type):
    """Inverse of decode_property_value (used to build canned replies in tests and the lab)."""
    if prop_type == PROPTYPE_LONG:
        return struct.pack('<l', int(value))
    if prop_type == PROPTYPE_STRING:
        return utf16z(value)
    if prop_type == PROPTYPE_DATE:
        return struct.pack('<Q', int(value))
    return bytes(value)


def parse_templates_property(text):
    """CR_PROP_TEMPLATES value ("Name\nOID\nName\nOID\n") -> list of (name, oid); a version 1 template has an
    empty OID line, which keeps its place in the pairs."""
    lines = [line.strip() for line in (text or '').replace('\r', '').rstrip('\x00').split('\n')]
    if lines and lines[-1] == '':
        lines.pop()                      # the list ends with a newline
    out = []
    for i in range(0, len(lines), 2):
        name = lines[i]
        oid = lines[i + 1] if i + 1 < len(lines) else ''
        if name:
            out.append((name, oid))
    return out


CATRANSPROP_SIZE = 12


def decode_catransprop(data, count):
    """GetCAPropertyInfo blob -> list of dicts (MS-WCCE 2.2.2.3.1 CATRANSPROP + display names).

    CATRANSPROP = { LONG lPropId; BYTE propType; BYTE Reserved; USHORT propFlags; ULONG obwszDisplayName; },
    obwszDisplayName is the byte offset of a NUL-terminated UTF-16LE name from the start of the blob.
    """
    out = []
    if count < 0 or count * CATRANSPROP_SIZE > len(data):
        raise ValueError('CATRANSPROP array of %d entries does not fit in %d bytes' % (count, len(data)))
    for i in range(count):
        prop_id, prop_type, _reserved, flags, offset = struct.unpack_from('<lBBHL', data, i * CATRANSPROP_SIZE)
        name = ''
        if offset:
            if offset >= len(data):
                raise ValueError('CATRANSPROP display name offset %d is outside the blob' % offset)
            end = offset
            while end + 1 < len(data) and data[end:end + 2] != b'\x00\x00':
                end += 2
            name = data[offset:end].decode('utf-16-le', 'replace')
        out.append({'prop_id': prop_id, 'type': prop_type & 0x0F, 'indexed': bool(flags & 0x1),
                    'flags': flags, 'display_name': name})
    return out


def encode_catransprop(props):
    """Inverse of decode_catransprop (for tests and the lab)."""
    head = b''
    names = b''
    base = CATRANSPROP_SIZE * len(props)
    for p in props:
        name = utf16z(p.get('display_name', ''))
        offset = base + len(names)
        flags = p.get('flags', 1 if p.get('indexed') else 0)
        head += struct.pack('<lBBHL', p['prop_id'], p['type'], 0, flags, offset)
        names += name
    return head + names
