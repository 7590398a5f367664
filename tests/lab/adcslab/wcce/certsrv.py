"""MS-WCCE ICertRequestD / ICertRequestD2 (DCOM) and MS-ICPR ICertPassage handlers over a CA backend.

The backend is duck-typed (see ``adcslab.ca.CertificationAuthority``): ``name``, ``submit``, ``retrieve``,
``get_ca_cert``, ``get_property``, ``property_info``; failures raise an exception with an ``hresult``.
"""

import logging
import struct

from . import constants as C
from .dcom import DcomFault, _who, require_level
from .ndr import NdrError, NdrReader, NdrWriter

LOG = logging.getLogger("adcslab.wcce.certsrv")


def _utf16z(text):
    return ((text or "") + "\x00").encode("utf-16-le")


def _hresult_of(exc, default=C.E_FAIL):
    value = getattr(exc, "hresult", None)
    if isinstance(value, int):
        return value & 0xFFFFFFFF
    return default


def _message_of(exc):
    return getattr(exc, "message", None) or str(exc) or exc.__class__.__name__


def encode_property_value(prop_type, value):
    """The CERTTRANSBLOB bytes of a CA property value (MS-WCCE 3.2.1.4.3.2).

    PROPTYPE_LONG is a 32-bit little-endian signed integer, except for the properties MS-WCCE defines as byte
    arrays (CR_PROP_CACERTSTATE 0x13, CR_PROP_CRLSTATE 0x14, ...: one byte per CA certificate, 3.2.1.4.3.2.19
    and .20): the backend hands those over as ``bytes`` and they travel as they are in the CERTTRANSBLOB."""
    if prop_type == C.PROPTYPE_LONG:
        if isinstance(value, (bytes, bytearray)):
            return bytes(value)
        return struct.pack("<i", int(value) if int(value) < 0x80000000 else int(value) - 0x100000000)
    if prop_type == C.PROPTYPE_DATE:
        if isinstance(value, (bytes, bytearray)):
            return bytes(value)
        return struct.pack("<Q", int(value))
    if prop_type == C.PROPTYPE_STRING:
        if isinstance(value, (bytes, bytearray)):
            return bytes(value)
        return _utf16z(value)
    if isinstance(value, str):
        return value.encode("utf-8")
    return bytes(value)


def encode_property_info(entries):
    """CATRANSPROP array followed by the NUL-terminated UTF-16LE display names (MS-WCCE 2.2.2.3.1)."""
    fixed = 12 * len(entries)
    names = b""
    table = b""
    for prop_id, prop_type, flags, display in entries:
        offset = fixed + len(names)
        table += struct.pack("<iBBHI", prop_id, prop_type, 0, flags & 0xFFFF, offset)
        names += _utf16z(display)
    return table + names


def decode_attributes_blob(blob):
    """ICPR pctbAttribs: UTF-16LE with a terminating NUL, cb its exact byte length."""
    if not blob:
        return ""
    if len(blob) % 2:
        raise ValueError("attribute blob has an odd byte length")
    text = blob.decode("utf-16-le")
    return text.rstrip("\x00")


class RequestOutcome:
    """What the Request family returns: call status plus the out parameters."""

    def __init__(self, status=C.S_OK, request_id=0, disposition=0, chain=b"", cert=b"", message="",
                 full_response=b""):
        self.status = status
        self.request_id = request_id
        self.disposition = disposition
        self.chain = chain or b""
        self.cert = cert or b""
        self.message = message
        self.full_response = full_response or b""


def invalid_arg_outcome(request_id, detail):
    """E_INVALIDARG as the call's result; the disposition and message say the same for clients that only
    look at those (Certipy over MS-ICPR does)."""
    return RequestOutcome(status=C.E_INVALIDARG, request_id=request_id, disposition=C.E_INVALIDARG,
                          message="The parameter is incorrect. 0x80070057 (WIN32: 87 ERROR_INVALID_PARAMETER): "
                                  + detail)


class CertService:
    """Shared request logic plus the DCOM and ICPR handler tables."""

    def __init__(self, ca, exporter=None, requester_factory=None, min_level=C.AUTHN_LEVEL_PKT_PRIVACY, faults=None):
        self.ca = ca
        self.faults = faults  # a wcce.faultinject.FaultInjector (disposition / wrong_key knobs) or None
        self.exporter = exporter
        self.min_level = min_level
        self.requester_factory = requester_factory or _default_requester

    # ---- common -------------------------------------------------------------------------------
    def _authority_ok(self, authority):
        if authority is None:
            return False
        names = {self.ca.name.lower()}
        dns = getattr(self.ca, "dns_name", "")
        if dns:
            names.add(("%s\\%s" % (dns, self.ca.name)).lower())
            names.add(("%s\\%s" % (dns.split(".")[0], self.ca.name)).lower())
        return authority.strip().lower() in names

    def _requester(self, ctx, transport):
        return self.requester_factory(ctx, transport)

    def _read_status(self, ctx, authority, call):
        """The status of a read call (GetCACert, GetCAProperty, GetCAPropertyInfo): E_INVALIDARG for another CA,
        CERTSRV_E_ENROLL_DENIED without Request Certificates on the CA (a Windows CA checks its security here too)."""
        if not self._authority_ok(authority):
            return C.E_INVALIDARG
        check = getattr(self.ca, "ca_access_status", None)
        try:
            status = check(self._requester(ctx, "dcom")) if check is not None else 0
        except Exception as exc:  # no requester to check (an unknown account): the CA's data stays readable
            LOG.info("%s by %s: CA security not evaluated (%s)", call, _who(ctx), _message_of(exc))
            status = 0
        if status:
            LOG.warning("%s by %s refused: no Request Certificates on the CA (0x%08x)", call, _who(ctx), status)
        return status or C.S_OK

    def do_request(self, ctx, transport, flags, authority, request_id, attributes, request_blob, serial="",
                   method="Request"):
        who = _who(ctx)
        if not self._authority_ok(authority):
            LOG.warning("%s request by %s for unknown CA %r: E_INVALIDARG", transport, who, authority)
            return invalid_arg_outcome(request_id, "CA name %r is not served here (this is %s)"
                                       % (authority, self.ca.name))
        if self.faults is not None:
            iface = "ICertPassage" if transport == "icpr" else _iface_of(ctx)
            forced = self.faults.request_outcome(ctx, iface, method, request_id)
            if forced is not None:
                rid, disposition, message = forced
                return RequestOutcome(request_id=rid, disposition=disposition, message=message)
            if request_blob:
                request_blob = self.faults.rewrite_request(ctx, iface, method, flags, request_blob)
        requester = self._requester(ctx, transport)
        try:
            if not request_blob and request_id:
                LOG.info("%s retrieve of request %d by %s", transport, request_id, who)
                resp = self.ca.retrieve(request_id, requester, flags=flags)
            else:
                LOG.info("%s request by %s: flags=0x%x, %d bytes, attributes=%r, serial=%r", transport, who, flags,
                         len(request_blob), attributes, serial)
                resp = self.ca.submit(flags, attributes or "", request_blob, requester, serial or "")
        except Exception as exc:  # backend failure: report it in the disposition, never crash the call
            hr = _hresult_of(exc)
            if not hasattr(exc, "hresult"):
                LOG.exception("CA backend failed on a %s request by %s", transport, who)
            else:
                LOG.warning("CA backend refused %s request by %s: 0x%08x %s", transport, who, hr, _message_of(exc))
            return RequestOutcome(request_id=request_id, disposition=hr,
                                  message=_message_of(exc) or "The request failed (0x%08x)" % hr)
        disposition = resp.disposition & 0xFFFFFFFF
        message = resp.disposition_message or ("Issued" if disposition == C.DISPOSITION_ISSUED else
                                               "Taken Under Submission" if disposition ==
                                               C.DISPOSITION_UNDER_SUBMISSION else
                                               "Denied (0x%08x)" % disposition)
        LOG.info("%s request id %d for %s: disposition 0x%x (%s)", transport, resp.request_id, who,
                 disposition, message)
        outcome = RequestOutcome(status=getattr(resp, "call_status", 0) or C.S_OK,
                                 request_id=resp.request_id, disposition=disposition,
                                 chain=resp.chain_pkcs7 or b"", cert=resp.cert_der or b"",
                                 message=message,
                                 full_response=getattr(resp, "full_response", None) or b"")
        if self.faults is not None:  # rogue_ca knob
            outcome = self.faults.rogue_outcome(ctx, "ICertPassage" if transport == "icpr" else _iface_of(ctx),
                                                method, outcome)
        return outcome

    def _check_ipid(self, ctx):
        """The call must target an exported ICertRequestD(2) interface pointer of the CA object."""
        require_level(ctx, self.min_level, "ICertRequestD")
        if self.exporter is None:
            return
        entry, obj = self.exporter.lookup(ctx.object_uuid)
        bound = (ctx.interface_uuid or "").lower()
        allowed = {C.IID_ICERTREQUESTD: (C.IID_ICERTREQUESTD, C.IID_ICERTREQUESTD2),
                   C.IID_ICERTREQUESTD2: (C.IID_ICERTREQUESTD2,)}.get(bound, ())
        if entry is None or entry.iid not in allowed:
            LOG.warning("ICertRequestD call (opnum %s) by %s with unknown/mismatched IPID %s", ctx.opnum,
                        _who(ctx), ctx.object_uuid)
            raise DcomFault(C.RPC_E_INVALID_IPID, "unknown IPID")

    # ---- ICertRequestD / ICertRequestD2 -----------------------------------------------------
    def dcom_handlers(self, version2):
        handlers = {3: self.d_request, 4: self.d_get_ca_cert, 5: self.d_ping}
        if version2:
            handlers.update({6: self.d_request2, 7: self.d_get_ca_property, 8: self.d_get_ca_property_info,
                             9: self.d_ping})
        return handlers

    def d_request(self, ctx, stub):
        self._check_ipid(ctx)
        r = NdrReader(stub)
        r.orpcthis()
        flags = r.u32()
        authority = r.unique_wstring()
        request_id = r.u32()
        attributes = r.unique_wstring()
        blob = r.certtransblob()
        r.done()
        out = self.do_request(ctx, "dcom", flags, authority, request_id, attributes, blob)
        w = NdrWriter()
        w.orpcthat()
        w.u32(out.request_id)
        w.u32(out.disposition)
        w.certtransblob(out.chain)
        w.certtransblob(out.cert)
        w.certtransblob(_utf16z(out.message))
        w.u32(out.status)
        return w.bytes()

    def d_request2(self, ctx, stub):
        self._check_ipid(ctx)
        r = NdrReader(stub)
        r.orpcthis()
        authority = r.unique_wstring()
        flags = r.u32()
        serial = r.unique_wstring()
        request_id = r.u32()
        attributes = r.unique_wstring()
        blob = r.certtransblob()
        r.done()
        out = self.do_request(ctx, "dcom", flags, authority, request_id, attributes, blob, serial or "",
                              method="Request2")
        full = out.full_response if (flags & C.CR_IN_FULLRESPONSE and out.full_response) else out.chain
        w = NdrWriter()
        w.orpcthat()
        w.u32(out.request_id)
        w.u32(out.disposition)
        w.certtransblob(full)
        w.certtransblob(out.cert)
        w.certtransblob(_utf16z(out.message))
        w.u32(out.status)
        return w.bytes()

    def d_get_ca_cert(self, ctx, stub):
        self._check_ipid(ctx)
        r = NdrReader(stub)
        r.orpcthis()
        fchain = r.u32()
        authority = r.unique_wstring()
        r.done()
        status, data = self._read_status(ctx, authority, "GetCACert"), b""
        if status == C.S_OK:
            try:
                data = self.ca.get_ca_cert(fchain)
            except Exception as exc:
                status = _hresult_of(exc)
                LOG.warning("GetCACert(0x%x) failed: 0x%08x %s", fchain, status, _message_of(exc))
        w = NdrWriter()
        w.orpcthat()
        w.certtransblob(data)
        w.u32(status)
        return w.bytes()

    def d_ping(self, ctx, stub):
        self._check_ipid(ctx)
        r = NdrReader(stub)
        r.orpcthis()
        r.unique_wstring()
        r.done()
        w = NdrWriter()
        w.orpcthat()
        w.u32(C.S_OK)
        return w.bytes()

    def d_get_ca_property(self, ctx, stub):
        self._check_ipid(ctx)
        r = NdrReader(stub)
        r.orpcthis()
        authority = r.unique_wstring()
        prop_id = r.i32()
        prop_index = r.i32()
        prop_type = r.i32()
        r.done()
        status, data = self._read_status(ctx, authority, "GetCAProperty"), b""
        if status == C.S_OK:
            try:
                got_type, value = self.ca.get_property(prop_id, prop_index, prop_type)
                data = encode_property_value(got_type, value)
            except Exception as exc:
                status = _hresult_of(exc)
                LOG.info("GetCAProperty(0x%x, %d, %d): 0x%08x %s", prop_id, prop_index, prop_type, status,
                         _message_of(exc))
        w = NdrWriter()
        w.orpcthat()
        w.certtransblob(data)
        w.u32(status)
        return w.bytes()

    def d_get_ca_property_info(self, ctx, stub):
        self._check_ipid(ctx)
        r = NdrReader(stub)
        r.orpcthis()
        authority = r.unique_wstring()
        r.done()
        status, count, data = self._read_status(ctx, authority, "GetCAPropertyInfo"), 0, b""
        if status == C.S_OK:
            try:
                entries = list(self.ca.property_info())
                count, data = len(entries), encode_property_info(entries)
            except Exception as exc:
                status = _hresult_of(exc)
        w = NdrWriter()
        w.orpcthat()
        w.i32(count)
        w.certtransblob(data)
        w.u32(status)
        return w.bytes()

    # ---- MS-ICPR ICertPassage ----------------------------------------------------------------
    def icpr_handlers(self):
        return {0: self.cert_server_request}

    def cert_server_request(self, ctx, stub):
        require_level(ctx, self.min_level, "CertServerRequest")
        r = NdrReader(stub)
        flags = r.u32()
        authority = r.unique_wstring()
        request_id = r.u32()
        attrib_blob = r.certtransblob()
        blob = r.certtransblob()
        r.done()
        try:
            attributes = decode_attributes_blob(attrib_blob)
        except (ValueError, UnicodeDecodeError) as exc:
            LOG.warning("ICPR request by %s with bad attribute blob: %s", _who(ctx), exc)
            out = invalid_arg_outcome(request_id, "The request attributes are not a UTF-16LE string")
        else:
            out = self.do_request(ctx, "icpr", flags, authority, request_id, attributes, blob,
                                  method="CertServerRequest")
        w = NdrWriter()
        w.u32(out.request_id)
        w.u32(out.disposition)
        w.certtransblob(out.chain)
        w.certtransblob(out.cert)
        w.certtransblob(_utf16z(out.message))
        w.u32(out.status)
        return w.bytes()


def _iface_of(ctx):
    iface = getattr(ctx, "interface", None)
    name = getattr(iface, "name", None)
    if name:
        return name
    return "ICertRequestD2" if (getattr(ctx, "interface_uuid", "") or "").lower() == C.IID_ICERTREQUESTD2 \
        else "ICertRequestD"


def requester_fields(auth):
    """The requester as AD CS records it: the account's canonical sAMAccountName and NetBIOS domain (``LAB\\enroller``
    whatever spelling the client authenticated with: ``lab.adcs.test\\ENROLLER``, a UPN, ...), its SID and group
    SIDs. Falls back to the authenticated names when the security provider has no account object."""
    account = getattr(auth, "account", None)
    user = getattr(account, "sam", None) or auth.user
    domain = getattr(account, "domain", None) or auth.domain
    return dict(user=user, domain=domain, sid=getattr(account, "sid", None) or "",
                group_sids=list(getattr(account, "group_sids", None) or []), authn_type=auth.authn_type)


def _default_requester(ctx, transport):
    from adcslab.ca import Requester  # imported lazily so handlers can be tested with a fake backend

    return Requester(transport=transport, **requester_fields(ctx.auth))


__all__ = ["CertService", "RequestOutcome", "encode_property_info", "encode_property_value",
           "decode_attributes_blob", "NdrError", "DcomFault"]
