# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Test-only encoders of what a CA's SCM answers (MS-DCOM 2.2.22 ActivationPropertiesOut) and a scripted stand-in
for ``_rpc_conn.RpcConnection`` that answers DCOM calls, to drive ``_dcom.DcomSession`` without a network."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import struct

from ansible_collections.adcs.enrollment.plugins.module_utils import _activation as a
from ansible_collections.adcs.enrollment.plugins.module_utils import _errors, _orpc

IID_IActivationPropertiesOut = a.string_to_bin('000001A3-0000-0000-C000-000000000046')
OXID, OID = 0x1122334455667788, 0x99AABBCCDDEEFF00
IPID_REM_UNKNOWN = b'\x51' * 16


def ts1(body):
    return a.type_serialized(body)


def props_out_info(iid, hresult, objref):
    body = struct.pack('<LLLL', 1, 0x20000, 0x20004, 0x20008) + struct.pack('<L', 1) + iid[:16]
    body += struct.pack('<LL', 1, hresult) + struct.pack('<LL', 1, 0x2000C if objref else 0)
    if objref:
        body += struct.pack('<LL', len(objref), len(objref)) + objref
    return ts1(body)


def scm_reply_info(bindings, oxid=OXID, ipid_rem_unknown=IPID_REM_UNKNOWN, authn_hint=6, security=((9, ''),)):
    count, offset, words = _orpc.pack_dualstringarray(bindings, security)
    body = struct.pack('<LL', 0, 0x20010) + struct.pack('<QL', oxid, 0x20014) + ipid_rem_unknown
    body += struct.pack('<LHH', authn_hint, 5, 7) + struct.pack('<LHH', count, count, offset)
    body += struct.pack('<%dH' % count, *words)
    return ts1(body)


def activation_blob(parts):
    head = struct.pack('<LLL', 0, 2, len(parts)) + b'\x00' * 16 + struct.pack('<LLL', 0x20018, 0x2001C, 0)
    clsids, bodies = [clsid for clsid, body in parts], [body for clsid, body in parts]
    head += struct.pack('<L', len(parts)) + b''.join(clsids)
    head += struct.pack('<L%dL' % len(parts), len(parts), *[len(body) for body in bodies])
    header_size = len(ts1(b'\x00' * 8 + head))
    total = header_size + sum(len(body) for body in bodies)
    return struct.pack('<LL', total, 0) + ts1(struct.pack('<LL', total, header_size) + head) + b''.join(bodies)


def std(ipid, oxid=OXID, oid=OID):
    return _orpc.StdObjRef(0, 5, oxid, oid, ipid)


def properties_out(iid, bindings, hresult=0, ipid=b'\x61' * 16, **scm):
    objref = _orpc.pack_objref_standard(iid[:16], std(ipid)) if not hresult else None
    blob = activation_blob([(a.CLSID_PropsOutInfo, props_out_info(iid, hresult, objref)),
                            (a.CLSID_ScmReplyInfo, scm_reply_info(bindings, **scm))])
    return _orpc.pack_objref_custom(IID_IActivationPropertiesOut, a.CLSID_ActivationPropertiesOut, blob)


def ndr_roundtrip(resp):
    return type(resp)(resp.getData())


class ScriptedConn(object):
    """Stands in for RpcConnection: records connections, bindings and calls; answers from ``script``:
    ``script['activate'](iid) -> (ErrorCode, properties bytes)``, ``script['qi'](iid) -> (hresult, ipid)``."""

    log = None

    def __init__(self, address, port, creds, package='negotiate', timeout=30, remote_name=None):
        self.address, self.port, self.creds, self.package = address, port, creds, package
        self.timeout, self.remote_name = timeout, remote_name
        self.contexts, self.current = [], None
        self.log.append(('connection', address, port, remote_name))

    def connect(self):
        self.log.append(('connect', self.port))

    def alter_ctx(self, iface):
        if iface not in self.contexts:
            self.contexts.append(iface)
            self.log.append(('bind' if len(self.contexts) == 1 else 'alter', self.port, iface))
        self.current = iface
        return self

    bind = alter_ctx

    def disconnect(self):
        self.log.append(('disconnect', self.port))

    def request(self, req, uuid=None):
        raw = req.getData()
        self.log.append(('call', self.port, type(req).__name__, uuid, type(req)(raw)))
        name = type(req).__name__
        if name == 'RemoteCreateInstance':
            code, data = self.script['activate'](self._asked_iid(req))
            resp = a.RemoteCreateInstanceResponse()
            resp['ORPCthat'] = orpcthat()
            resp['ppActProperties']['ulCntData'] = len(data)
            resp['ppActProperties']['abData'] = list(data)
            resp['ErrorCode'] = code
            if code:
                raise _errors.RpcFault(code)
            return ndr_roundtrip(resp)
        if name == 'RemQueryInterface':
            hresult, ipid = self.script['qi'](bytes(req['iids'][0]['Data']))
            resp = _orpc.RemQueryInterfaceResponse()
            resp['ORPCthat'] = orpcthat()
            resp['ppQIResults']['hResult'] = hresult - (1 << 32) if hresult & 0x80000000 else hresult
            resp['ppQIResults']['std']['flags'] = 0
            resp['ppQIResults']['std']['cPublicRefs'] = 5
            resp['ppQIResults']['std']['oxid'] = OXID
            resp['ppQIResults']['std']['oid'] = OID
            resp['ppQIResults']['std']['ipid'] = ipid or b'\x00' * 16
            resp['ErrorCode'] = hresult
            if hresult:
                raise _errors.RpcFault(hresult)
            return ndr_roundtrip(resp)
        if name == 'RemRelease':
            resp = _orpc.RemReleaseResponse()
            resp['ORPCthat'] = orpcthat()
            resp['ErrorCode'] = 0
            return ndr_roundtrip(resp)
        return self.script['call'](req)

    @staticmethod
    def _asked_iid(req):
        data = b''.join(x if isinstance(x, bytes) else bytes([x]) for x in req['pActProperties']['abData'])
        props = a.properties(_orpc.parse_objref(data).data)
        body = a.serialized_body(props[a.CLSID_InstantiationInfo], 'InstantiationInfo')
        body.take(16 + 24 + 4 + 4 + 4)     # classId .. pIID, thisSize, clientCOMVersion, the IID array's size
        return body.take(16)


def orpcthat():
    o = _orpc.ORPCTHAT()
    o['flags'] = 0
    o['extensions'] = _orpc.NULL
    return o
