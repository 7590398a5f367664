"""DCOM server side for the lab CA: activation (IRemoteSCMActivator), the OXID resolver (IObjectExporter)
and the object exporter's IRemUnknown/IRemUnknown2 (MS-DCOM).

One :class:`ObjectExporter` per server process holds one OXID, the exported objects (OIDs), their interface
pointers (IPIDs) with reference counts, and ping sets. Handlers are plain functions over stub bytes so they
can be tested without a network.
"""

import logging
import os
import struct
import threading
import time
import uuid

from . import constants as C
from .ndr import NdrError, NdrReader, NdrWriter, guid_to_str, str_to_guid

LOG = logging.getLogger("adcslab.wcce.dcom")

OBJREF_SIGNATURE = 0x574F454D  # 'MEOW'
FLAGS_OBJREF_STANDARD = 1
FLAGS_OBJREF_CUSTOM = 4

# Public references handed out with each marshaled interface pointer (Windows hands out 5).
DEFAULT_PUBLIC_REFS = 5
# Ping period and the number of missed pings after which an object is collected (MS-DCOM 3.2.4.2).
PING_PERIOD = 120
PING_MISSES = 3


class DcomFault(Exception):
    """Raised by the DCOM layer to end a call with an RPC fault of the given status."""

    def __init__(self, status, message=""):
        super().__init__(message or "fault 0x%08x" % status)
        self.status = status


def _random_u64():
    return struct.unpack("<Q", os.urandom(8))[0] or 1


# --------------------------------------------------------------------------------------------------
# DUALSTRINGARRAY (MS-DCOM 2.2.19)
# --------------------------------------------------------------------------------------------------
def dualstringarray_words(string_bindings, security_bindings):
    """Build the aStringArray as a list of 16-bit words; returns (words, security_offset).

    string_bindings: [(tower_id, "addr[port]")]; security_bindings: [(authn_svc, principal)].
    """
    words = []
    for tower, addr in string_bindings:
        words.append(tower)
        words.extend(struct.unpack("<%dH" % (len(addr) + 1), (addr + "\x00").encode("utf-16-le")))
    words.append(0)
    security_offset = len(words)
    for svc, principal in security_bindings:
        words.append(svc)
        words.append(0xFFFF)
        words.extend(struct.unpack("<%dH" % (len(principal) + 1), (principal + "\x00").encode("utf-16-le")))
    words.append(0)
    if len(words) - security_offset < 2:
        words.append(0)
    return words, security_offset


def write_dualstringarray_ndr(w, words, security_offset):
    """Deferred body of a DUALSTRINGARRAY* (conformant struct)."""
    w.u32(len(words))  # conformance
    w.u16(len(words))
    w.u16(security_offset)
    for word in words:
        w.u16(word)


def dualstringarray_packed(words, security_offset):
    """The non-NDR form used inside OBJREFs."""
    return struct.pack("<HH", len(words), security_offset) + struct.pack("<%dH" % len(words), *words)


def objref_standard(iid, oxid, oid, ipid, public_refs, resolver_words, resolver_security_offset, flags=0):
    data = struct.pack("<II", OBJREF_SIGNATURE, FLAGS_OBJREF_STANDARD) + str_to_guid(iid)
    data += struct.pack("<IIQQ", flags, public_refs, oxid, oid) + str_to_guid(ipid)
    data += dualstringarray_packed(resolver_words, resolver_security_offset)
    return data


# --------------------------------------------------------------------------------------------------
# Type serialization version 1 (MS-RPCE 2.2.6) helpers for the activation property sets
# --------------------------------------------------------------------------------------------------
def type_serialize(body):
    pad = (-len(body)) % 8
    body = body + b"\x00" * pad
    return struct.pack("<BBHI", 1, 0x10, 8, 0xCCCCCCCC) + struct.pack("<II", len(body), 0xCCCCCCCC) + body


def type_deserialize(data):
    if len(data) < 16:
        raise NdrError("type serialization header truncated")
    version, endianness, hdr_len = struct.unpack_from("<BBH", data, 0)
    if version != 1 or endianness != 0x10 or hdr_len != 8:
        raise NdrError("unsupported type serialization header")
    length = struct.unpack_from("<I", data, 8)[0]
    if 16 + length > len(data):
        raise NdrError("type serialization body truncated")
    return data[16:16 + length]


# --------------------------------------------------------------------------------------------------
# Object exporter state
# --------------------------------------------------------------------------------------------------
class IpidEntry:
    __slots__ = ("ipid", "iid", "oid", "public_refs", "private_refs")

    def __init__(self, ipid, iid, oid):
        self.ipid = ipid
        self.iid = iid
        self.oid = oid
        self.public_refs = 0
        self.private_refs = 0


class ComObject:
    def __init__(self, oid, clsid, instance, owner):
        self.oid = oid
        self.clsid = clsid
        self.instance = instance
        self.owner = owner  # "DOMAIN\\user" who activated it (logging only)
        self.ipids = {}  # iid -> IpidEntry
        self.last_seen = time.monotonic()


class ComClass:
    """A class the SCM can activate: the IIDs its objects implement and a factory for the instance state."""

    def __init__(self, clsid, iids, factory=None, name=""):
        self.clsid = clsid
        self.iids = {i.lower() for i in iids} | {C.IID_IUNKNOWN}
        self.factory = factory or (lambda ctx: None)
        self.name = name or clsid


class ObjectExporter:
    """One OXID with its objects, IPIDs, reference counts and ping sets."""

    # A documentation address (RFC 5737) the lab CA announces besides the one it is reached on, as a multi-homed or
    # NATed Windows CA announces addresses a client cannot use: a client must not pick its binding by position.
    OTHER_ADDRESSES = ("192.0.2.12",)

    def __init__(self, dns_name="", netbios_name="", principal="", other_addresses=OTHER_ADDRESSES):
        self.oxid = _random_u64()
        self.other_addresses = list(other_addresses)
        self.ipid_rem_unknown = str(uuid.uuid4())
        self.dns_name = dns_name
        self.netbios_name = netbios_name
        self.principal = principal
        self.port = None  # the object exporter's TCP port, set when its server listens
        self.classes = {}
        self.objects = {}  # oid -> ComObject
        self.ipids = {}  # ipid -> IpidEntry
        self.ping_sets = {}  # setid -> {"oids": set, "seq": int, "last": float}
        self.lock = threading.RLock()

    # ---- registry -------------------------------------------------------------------------------
    def register_class(self, com_class):
        self.classes[com_class.clsid.lower()] = com_class

    def create_object(self, clsid, ctx):
        com_class = self.classes[clsid]
        instance = com_class.factory(ctx)
        with self.lock:
            oid = _random_u64()
            while oid in self.objects:
                oid = _random_u64()
            obj = ComObject(oid, clsid, instance, _who(ctx))
            self.objects[oid] = obj
        LOG.info("activated %s oid=%016x for %s", com_class.name, oid, obj.owner)
        return obj

    def marshal(self, obj, iid, public_refs=DEFAULT_PUBLIC_REFS):
        """Get (creating if needed) the IPID of obj's iid and add public references. Returns IpidEntry."""
        with self.lock:
            entry = obj.ipids.get(iid)
            if entry is None:
                entry = IpidEntry(str(uuid.uuid4()), iid, obj.oid)
                obj.ipids[iid] = entry
                self.ipids[entry.ipid] = entry
            entry.public_refs += public_refs
            obj.last_seen = time.monotonic()
            return entry

    def supports(self, obj, iid):
        return iid in self.classes[obj.clsid].iids

    def lookup(self, ipid):
        """The (IpidEntry, ComObject) for an IPID, or (None, None)."""
        if not ipid:
            return None, None
        with self.lock:
            entry = self.ipids.get(ipid.lower())
            if entry is None:
                return None, None
            obj = self.objects.get(entry.oid)
            if obj is None:
                return None, None
            obj.last_seen = time.monotonic()
            return entry, obj

    def release(self, ipid, public_refs, private_refs):
        """RemRelease for one IPID. Returns an HRESULT."""
        with self.lock:
            entry = self.ipids.get(ipid)
            if entry is None:
                return C.RPC_E_INVALID_IPID
            if public_refs > entry.public_refs or private_refs > entry.private_refs:
                LOG.warning("RemRelease of %s asks for more references than held (%d/%d > %d/%d)", ipid,
                            public_refs, private_refs, entry.public_refs, entry.private_refs)
            entry.public_refs = max(0, entry.public_refs - public_refs)
            entry.private_refs = max(0, entry.private_refs - private_refs)
            if entry.public_refs == 0 and entry.private_refs == 0:
                del self.ipids[ipid]
                obj = self.objects.get(entry.oid)
                if obj is not None:
                    obj.ipids.pop(entry.iid, None)
                    if not obj.ipids:
                        self._drop_object(obj, "last reference released")
            return C.S_OK

    def add_ref(self, ipid, public_refs, private_refs):
        with self.lock:
            entry = self.ipids.get(ipid)
            if entry is None:
                return C.RPC_E_INVALID_IPID
            entry.public_refs += public_refs
            entry.private_refs += private_refs
            return C.S_OK

    def _drop_object(self, obj, why):
        self.objects.pop(obj.oid, None)
        for entry in obj.ipids.values():
            self.ipids.pop(entry.ipid, None)
        obj.ipids.clear()
        for ping_set in self.ping_sets.values():
            ping_set["oids"].discard(obj.oid)
        LOG.info("released object oid=%016x (%s)", obj.oid, why)

    def expire(self, now=None):
        """Garbage-collect objects and ping sets not used or pinged for PING_MISSES periods."""
        now = time.monotonic() if now is None else now
        limit = PING_PERIOD * PING_MISSES
        with self.lock:
            for setid, ping_set in list(self.ping_sets.items()):
                if now - ping_set["last"] > limit:
                    del self.ping_sets[setid]
            pinged = set()
            for ping_set in self.ping_sets.values():
                pinged |= ping_set["oids"]
            for obj in list(self.objects.values()):
                if obj.oid not in pinged and now - obj.last_seen > limit:
                    self._drop_object(obj, "not pinged")

    # ---- bindings ------------------------------------------------------------------------------
    def security_bindings(self):
        principal = self.principal
        return [(C.AUTHN_WINNT, ""), (C.AUTHN_GSS_NEGOTIATE, principal), (C.AUTHN_GSS_KERBEROS, principal)]

    def _binding_names(self, local_address):
        """As Windows announces its object exporter (MS-DCOM 2.2.19; public debug logs of Windows servers): the
        computer's NetBIOS name (at most 15 characters) first, then its IP addresses; never the DNS name."""
        names = [self.netbios_name.upper()[:15]] if self.netbios_name else []
        for address in self.other_addresses + [local_address]:
            if address and address not in names:
                names.append(address)
        return names

    def exporter_bindings(self, local_address):
        """String bindings of the object exporter port."""
        if self.port is None:
            raise DcomFault(C.E_FAIL, "object exporter not listening")
        return [(C.TOWER_NCACN_IP_TCP, "%s[%d]" % (name, self.port)) for name in self._binding_names(local_address)]

    def resolver_bindings(self, local_address):
        """String bindings of the OXID resolver (port 135 implied: no port)."""
        return [(C.TOWER_NCACN_IP_TCP, name) for name in self._binding_names(local_address)]


def _who(ctx):
    auth = getattr(ctx, "auth", None)
    if auth is None:
        return "(anonymous)"
    return "%s\\%s" % (getattr(auth, "domain", ""), getattr(auth, "user", ""))


def _authn_level(ctx):
    auth = getattr(ctx, "auth", None)
    if auth is None or not getattr(auth, "user", None):
        return C.AUTHN_LEVEL_NONE
    return getattr(auth, "authn_level", C.AUTHN_LEVEL_NONE) or C.AUTHN_LEVEL_NONE


def require_level(ctx, level, what):
    if _authn_level(ctx) < level:
        LOG.warning("%s refused for %s: authentication level %d < %d", what, _who(ctx), _authn_level(ctx), level)
        raise DcomFault(C.ERROR_ACCESS_DENIED, "access denied")


# --------------------------------------------------------------------------------------------------
# IRemoteSCMActivator (port 135)
# --------------------------------------------------------------------------------------------------
def _read_minterfacepointer(r):
    """Pointee of an MInterfacePointer*: conformant struct {ulCntData; abData[ulCntData]}."""
    conformance = r.count()
    cnt = r.u32()
    if cnt != conformance:
        raise NdrError("MInterfacePointer size mismatch")
    return r.take(cnt)


def parse_activation_properties_in(objref):
    """Parse an OBJREF_CUSTOM carrying ActivationPropertiesIn. Returns {clsid, iids, protseqs}."""
    if len(objref) < 48:
        raise NdrError("activation OBJREF too short")
    signature, flags = struct.unpack_from("<II", objref, 0)
    if signature != OBJREF_SIGNATURE or flags != FLAGS_OBJREF_CUSTOM:
        raise NdrError("activation properties are not an OBJREF_CUSTOM")
    clsid = guid_to_str(objref[24:40])
    if clsid != C.CLSID_ACTIVATIONPROPERTIESIN:
        raise NdrError("unexpected activation properties class %s" % clsid)
    blob = objref[48:]
    if len(blob) < 8:
        raise NdrError("activation blob truncated")
    total = struct.unpack_from("<I", blob, 0)[0]
    body = blob[8:8 + total]
    # CustomHeader
    hdr = NdrReader(type_deserialize(body))
    hdr.u32()  # totalSize
    header_size = hdr.u32()
    hdr.u32()  # dwReserved
    hdr.u32()  # destCtx
    c_ifs = hdr.u32()
    hdr.guid()  # classInfoClsid
    p_clsids = hdr.pointer()
    p_sizes = hdr.pointer()
    p_reserved = hdr.pointer()
    clsids, sizes = [], []
    if p_clsids:
        n = hdr.count()
        clsids = [hdr.guid_str() for _ in range(n)]
    if p_sizes:
        n = hdr.count()
        sizes = [hdr.u32() for _ in range(n)]
    if p_reserved:
        hdr.u32()
    if len(clsids) != c_ifs or len(sizes) != c_ifs:
        raise NdrError("activation CustomHeader counts disagree")
    offset = header_size
    props = {}
    for prop_clsid, size in zip(clsids, sizes):
        props[prop_clsid] = body[offset:offset + size]
        offset += size
        if offset > len(body):
            raise NdrError("activation property overruns the blob")
    if C.CLSID_INSTANTIATIONINFO not in props:
        raise NdrError("activation without InstantiationInfo")
    r = NdrReader(type_deserialize(props[C.CLSID_INSTANTIATIONINFO]))
    class_id = r.guid_str()
    r.u32()  # classCtx
    r.u32()  # actvflags
    r.u32()  # fIsSurrogate
    c_iid = r.u32()
    r.u32()  # instFlag
    p_iid = r.pointer()
    r.u32()  # thisSize
    r.u16()
    r.u16()  # clientCOMVersion
    iids = []
    if p_iid:
        n = r.count()
        iids = [r.guid_str() for _ in range(n)]
    if len(iids) != c_iid or not iids:
        raise NdrError("InstantiationInfo IID count mismatch")
    protseqs = []
    if C.CLSID_SCMREQUESTINFO in props:
        r = NdrReader(type_deserialize(props[C.CLSID_SCMREQUESTINFO]))
        p_reserved = r.pointer()
        p_remote = r.pointer()
        if p_reserved:
            r.u32()
        if p_remote:
            r.u32()  # ClientImpLevel
            n_prot = r.u16()
            p_prot = r.pointer()
            if p_prot:
                n = r.count()
                protseqs = [r.u16() for _ in range(n)]
                if n != n_prot:
                    raise NdrError("requested protseq count mismatch")
    return {"clsid": class_id, "iids": iids, "protseqs": protseqs}


def build_activation_properties_out(iids, hresults, objrefs, oxid, exporter_words, exporter_sec_offset,
                                    ipid_rem_unknown, authn_hint):
    """OBJREF_CUSTOM(ActivationPropertiesOut) with PropsOutInfo then ScmReplyInfo (MS-DCOM 2.2.22)."""
    # PropsOutInfo
    w = NdrWriter()
    w.u32(len(iids))
    w.pointer(True)
    w.pointer(True)
    w.pointer(True)
    w.u32(len(iids))
    for iid in iids:
        w.guid(iid)
    w.u32(len(hresults))
    for hr in hresults:
        w.u32(hr)
    w.u32(len(objrefs))
    for ref in objrefs:
        w.pointer(ref is not None)
    for ref in objrefs:
        if ref is None:
            continue
        w.align(4)
        w.u32(len(ref))
        w.u32(len(ref))
        w.raw(ref)
    props_out = type_serialize(w.bytes())
    # ScmReplyInfo
    w = NdrWriter()
    w.pointer(False)  # pdwReserved
    w.pointer(True)  # remoteReply
    w.align(8)
    w.u64(oxid)
    w.pointer(True)  # pdsaOxidBindings
    w.guid(ipid_rem_unknown)
    w.u32(authn_hint)
    w.u16(C.COM_VERSION[0])
    w.u16(C.COM_VERSION[1])
    w.align(4)
    write_dualstringarray_ndr(w, exporter_words, exporter_sec_offset)
    scm_reply = type_serialize(w.bytes())
    # CustomHeader
    sizes = [len(props_out), len(scm_reply)]
    total = None
    for _ in range(2):  # headerSize is independent of totalSize; two passes settle totalSize
        w = NdrWriter()
        w.u32(total or 0)
        w.u32(0)  # headerSize placeholder, patched below
        w.u32(0)  # dwReserved
        w.u32(2)  # destCtx MSHCTX_DIFFERENTMACHINE
        w.u32(2)  # cIfs
        w.guid(C.CLSID_ACTIVATIONPROPERTIESOUT)
        w.pointer(True)
        w.pointer(True)
        w.pointer(False)
        w.u32(2)
        w.guid(C.CLSID_PROPSOUTINFO)
        w.guid(C.CLSID_SCMREPLYINFO)
        w.u32(2)
        w.u32(sizes[0])
        w.u32(sizes[1])
        header = bytearray(type_serialize(w.bytes()))
        struct.pack_into("<I", header, 16 + 4, len(header))
        total = len(header) + sum(sizes)
    header = bytes(header)
    blob = struct.pack("<II", total, 0) + header + props_out + scm_reply
    objref = struct.pack("<II", OBJREF_SIGNATURE, FLAGS_OBJREF_CUSTOM) + str_to_guid(C.IID_IACTIVATIONPROPERTIESOUT)
    objref += str_to_guid(C.CLSID_ACTIVATIONPROPERTIESOUT) + struct.pack("<II", 0, len(blob) + 8) + blob
    return objref


class ScmActivator:
    """IRemoteSCMActivator handlers bound to one ObjectExporter."""

    def __init__(self, exporter, min_level=C.AUTHN_LEVEL_PKT_INTEGRITY):
        self.exporter = exporter
        self.min_level = min_level

    def handlers(self):
        return {3: self.remote_get_class_object, 4: self.remote_create_instance}

    def remote_get_class_object(self, ctx, stub):
        require_level(ctx, self.min_level, "RemoteGetClassObject")
        r = NdrReader(stub)
        r.orpcthis()
        w = NdrWriter()
        w.orpcthat()
        w.pointer(False)
        w.u32(C.E_NOTIMPL)
        LOG.info("RemoteGetClassObject from %s: not supported (E_NOTIMPL)", _who(ctx))
        return w.bytes()

    def _activate(self, ctx, clsid, iids, protseqs, hresult=C.S_OK):
        """Create the object and marshal the requested interfaces.

        Returns (hresult, obj, hresults, objrefs); obj is None when the activation failed as a whole."""
        exp = self.exporter
        if hresult == C.S_OK and clsid not in exp.classes:
            LOG.warning("activation of unknown CLSID %s by %s", clsid, _who(ctx))
            hresult = C.REGDB_E_CLASSNOTREG
        if hresult == C.S_OK and protseqs and C.TOWER_NCACN_IP_TCP not in protseqs:
            LOG.warning("activation by %s without ncacn_ip_tcp among protseqs %s", _who(ctx), protseqs)
            hresult = C.E_INVALIDARG  # no common protocol sequence
        if hresult != C.S_OK:
            return hresult, None, [], []
        obj = exp.create_object(clsid, ctx)
        res_words, res_sec = dualstringarray_words(exp.resolver_bindings(ctx.connection.local_address),
                                                   exp.security_bindings())
        hresults, objrefs = [], []
        for iid in iids:
            if exp.supports(obj, iid):
                entry = exp.marshal(obj, iid)
                objrefs.append(objref_standard(iid, exp.oxid, obj.oid, entry.ipid, DEFAULT_PUBLIC_REFS,
                                               res_words, res_sec))
                hresults.append(C.S_OK)
            else:
                objrefs.append(None)
                hresults.append(C.E_NOINTERFACE)
        if all(h != C.S_OK for h in hresults):
            with exp.lock:
                exp._drop_object(obj, "no requested interface supported")
            return C.E_NOINTERFACE, None, hresults, objrefs
        return C.S_OK, obj, hresults, objrefs

    def remote_create_instance(self, ctx, stub):
        require_level(ctx, self.min_level, "RemoteCreateInstance")
        r = NdrReader(stub)
        r.orpcthis()
        hresult = C.S_OK
        if r.pointer():  # pUnkOuter
            _read_minterfacepointer(r)
            hresult = C.CLASS_E_NOAGGREGATION
        if not r.pointer():
            raise NdrError("RemoteCreateInstance without activation properties")
        request = parse_activation_properties_in(_read_minterfacepointer(r))
        r.done()
        exp = self.exporter
        hresult, obj, hresults, objrefs = self._activate(ctx, request["clsid"], request["iids"], request["protseqs"],
                                                         hresult)
        w = NdrWriter()
        w.orpcthat()
        if obj is None:
            w.pointer(False)
            w.u32(hresult)
            return w.bytes()
        words, sec = dualstringarray_words(exp.exporter_bindings(ctx.connection.local_address),
                                           exp.security_bindings())
        objref = build_activation_properties_out(request["iids"], hresults, objrefs, exp.oxid, words, sec,
                                                 exp.ipid_rem_unknown, C.AUTHN_LEVEL_PKT_PRIVACY)
        w.pointer(True)
        w.u32(len(objref))
        w.u32(len(objref))
        w.raw(objref)
        w.align(4)
        w.u32(C.S_OK)
        return w.bytes()

    # ---- IActivation::RemoteActivation (opnum 0, the pre-Windows 2000 activation interface) -----------------
    def activation_handlers(self):
        return {0: self.remote_activation}

    def remote_activation(self, ctx, stub):
        require_level(ctx, self.min_level, "RemoteActivation")
        r = NdrReader(stub)
        r.orpcthis()
        clsid = r.guid_str()
        r.unique_wstring()  # pwszObjectName
        hresult = C.S_OK
        if r.pointer():  # pObjectStorage: persistent activation is not supported
            _read_minterfacepointer(r)
            hresult = C.E_NOTIMPL
        r.u32()  # ClientImpLevel
        r.u32()  # Mode
        n_ifaces = r.u32()
        iids = []
        if r.pointer():
            n = r.count()
            iids = [r.guid_str() for _ in range(n)]
        if len(iids) != n_ifaces or not iids:
            raise NdrError("RemoteActivation interface count mismatch")
        n_prot = r.u16()
        conformance = r.count()
        protseqs = [r.u16() for _ in range(conformance)]
        if conformance != n_prot:
            raise NdrError("RemoteActivation protseq count mismatch")
        r.done()
        exp = self.exporter
        hresult, obj, hresults, objrefs = self._activate(ctx, clsid, iids, protseqs, hresult)
        w = NdrWriter()
        w.orpcthat()
        w.u64(exp.oxid if obj is not None else 0)
        if obj is not None:
            words, sec = dualstringarray_words(exp.exporter_bindings(ctx.connection.local_address),
                                               exp.security_bindings())
            w.pointer(True)
            write_dualstringarray_ndr(w, words, sec)
            w.align(4)
        else:
            w.pointer(False)
        w.guid(exp.ipid_rem_unknown if obj is not None else b"\x00" * 16)
        w.u32(C.AUTHN_LEVEL_PKT_PRIVACY)
        w.u16(C.COM_VERSION[0])
        w.u16(C.COM_VERSION[1])
        w.u32(hresult)
        refs = objrefs if obj is not None else [None] * len(iids)
        w.u32(len(refs))
        for ref in refs:
            w.pointer(ref is not None)
        for ref in refs:
            if ref is not None:
                w.align(4)
                w.u32(len(ref))
                w.u32(len(ref))
                w.raw(ref)
        w.align(4)
        results = hresults if hresults else [hresult] * len(iids)
        w.u32(len(results))
        for hr in results:
            w.u32(hr)
        w.u32(hresult)
        return w.bytes()



# --------------------------------------------------------------------------------------------------
# IObjectExporter (OXID resolver, port 135)
# --------------------------------------------------------------------------------------------------
class OxidResolver:
    def __init__(self, exporters):
        self.exporters = exporters  # list of ObjectExporter served by this resolver

    def handlers(self):
        return {0: self.resolve_oxid, 1: self.simple_ping, 2: self.complex_ping, 3: self.server_alive,
                4: self.resolve_oxid2, 5: self.server_alive2}

    def _find(self, oxid):
        for exp in self.exporters:
            if exp.oxid == oxid:
                return exp
        return None

    def _resolve(self, ctx, stub, version2):
        r = NdrReader(stub)
        oxid = r.u64()
        n = r.u16()
        conformance = r.count()
        protseqs = [r.u16() for _ in range(conformance)]
        if conformance != n:
            raise NdrError("ResolveOxid protseq count mismatch")
        exp = self._find(oxid)
        w = NdrWriter()
        if exp is None or exp.port is None or (protseqs and C.TOWER_NCACN_IP_TCP not in protseqs):
            w.pointer(False)
            w.guid(b"\x00" * 16)
            w.u32(0)
            if version2:
                w.u16(C.COM_VERSION[0])
                w.u16(C.COM_VERSION[1])
            w.u32(C.OR_INVALID_OXID)
            return w.bytes()
        words, sec = dualstringarray_words(exp.exporter_bindings(ctx.connection.local_address),
                                           exp.security_bindings())
        w.pointer(True)
        write_dualstringarray_ndr(w, words, sec)
        w.guid(exp.ipid_rem_unknown)
        w.u32(C.AUTHN_LEVEL_PKT_PRIVACY)
        if version2:
            w.u16(C.COM_VERSION[0])
            w.u16(C.COM_VERSION[1])
        w.u32(C.S_OK)
        return w.bytes()

    def resolve_oxid(self, ctx, stub):
        return self._resolve(ctx, stub, False)

    def resolve_oxid2(self, ctx, stub):
        return self._resolve(ctx, stub, True)

    def simple_ping(self, ctx, stub):
        r = NdrReader(stub)
        setid = r.u64()
        status = C.OR_INVALID_SET
        now = time.monotonic()
        for exp in self.exporters:
            with exp.lock:
                ping_set = exp.ping_sets.get(setid)
                if ping_set is not None:
                    ping_set["last"] = now
                    for oid in ping_set["oids"]:
                        obj = exp.objects.get(oid)
                        if obj is not None:
                            obj.last_seen = now
                    status = C.S_OK
        return NdrWriter().u32(status).bytes()

    def complex_ping(self, ctx, stub):
        r = NdrReader(stub)
        setid = r.u64()
        r.u16()  # SequenceNum
        n_add = r.u16()
        n_del = r.u16()
        p_add = r.pointer()
        add = []
        if p_add:
            n = r.count()
            add = [r.u64() for _ in range(n)]
        p_del = r.pointer()
        delete = []
        if p_del:
            n = r.count()
            delete = [r.u64() for _ in range(n)]
        if len(add) != n_add or len(delete) != n_del:
            raise NdrError("ComplexPing counts disagree")
        status = C.S_OK
        now = time.monotonic()
        exp = self.exporters[0]
        with exp.lock:
            if setid == 0:
                setid = _random_u64()
                while setid in exp.ping_sets:
                    setid = _random_u64()
                exp.ping_sets[setid] = {"oids": set(), "last": now}
            ping_set = exp.ping_sets.get(setid)
            if ping_set is None:
                status = C.OR_INVALID_SET
            else:
                ping_set["last"] = now
                for oid in add:
                    if oid in exp.objects:
                        ping_set["oids"].add(oid)
                        exp.objects[oid].last_seen = now
                    else:
                        LOG.info("ComplexPing adds unknown OID %016x (ignored)", oid)
                for oid in delete:
                    ping_set["oids"].discard(oid)
        w = NdrWriter()
        w.u64(setid if status == C.S_OK else 0)
        w.u16(0)  # ping backoff factor
        w.u32(status)
        return w.bytes()

    def server_alive(self, ctx, stub):
        return NdrWriter().u32(C.S_OK).bytes()

    def server_alive2(self, ctx, stub):
        local = ctx.connection.local_address
        exp = self.exporters[0] if self.exporters else ObjectExporter()
        words, sec = dualstringarray_words(exp.resolver_bindings(local), exp.security_bindings())
        w = NdrWriter()
        w.u16(C.COM_VERSION[0])
        w.u16(C.COM_VERSION[1])
        w.pointer(True)
        write_dualstringarray_ndr(w, words, sec)
        w.align(4)
        w.u32(0)  # pReserved
        w.u32(C.S_OK)
        return w.bytes()


# --------------------------------------------------------------------------------------------------
# IRemUnknown / IRemUnknown2 (object exporter port)
# --------------------------------------------------------------------------------------------------
class RemUnknown:
    def __init__(self, exporter, min_level=C.AUTHN_LEVEL_PKT_INTEGRITY):
        self.exporter = exporter
        self.min_level = min_level

    def handlers(self):
        return {3: self.rem_query_interface, 4: self.rem_add_ref, 5: self.rem_release}

    def _check_target(self, ctx):
        require_level(ctx, self.min_level, "IRemUnknown")
        if (ctx.object_uuid or "").lower() != self.exporter.ipid_rem_unknown:
            LOG.warning("IRemUnknown call with IPID %s (not this exporter's IRemUnknown)", ctx.object_uuid)
            raise DcomFault(C.RPC_E_INVALID_IPID, "unknown IPID")

    def rem_query_interface(self, ctx, stub):
        self._check_target(ctx)
        r = NdrReader(stub)
        r.orpcthis()
        ripid = r.guid_str()
        c_refs = r.u32()
        c_iids = r.u16()
        n = r.count()
        iids = [r.guid_str() for _ in range(n)]
        if n != c_iids or n == 0:
            raise NdrError("RemQueryInterface IID count mismatch")
        exp = self.exporter
        w = NdrWriter()
        w.orpcthat()
        entry, obj = exp.lookup(ripid)
        if entry is None:
            w.pointer(False)
            w.u32(C.RPC_E_INVALID_IPID)
            return w.bytes()
        results = []
        for iid in iids:
            if exp.supports(obj, iid):
                got = exp.marshal(obj, iid, max(c_refs, 1))
                results.append((C.S_OK, got.ipid, max(c_refs, 1)))
            else:
                results.append((C.E_NOINTERFACE, None, 0))
        w.pointer(True)
        w.u32(len(results))
        for hr, ipid, refs in results:
            w.align(8)
            w.u32(hr)
            w.align(8)
            w.u32(0)  # STDOBJREF.flags
            w.u32(refs)
            w.u64(exp.oxid if ipid else 0)
            w.u64(obj.oid if ipid else 0)
            w.guid(ipid or b"\x00" * 16)
        w.align(4)
        w.u32(C.S_OK if any(hr == C.S_OK for hr, _, _ in results) else C.E_NOINTERFACE)
        LOG.info("RemQueryInterface oid=%016x %s by %s", obj.oid,
                 ", ".join("%s:%08x" % (i, hr) for i, (hr, _, _) in zip(iids, results)), _who(ctx))
        return w.bytes()

    def _interface_refs(self, r):
        r.orpcthis()
        count = r.u16()
        n = r.count()
        refs = []
        for _ in range(n):
            ipid = r.guid_str()
            public_refs = r.i32()
            private_refs = r.i32()
            if public_refs < 0 or private_refs < 0:
                raise NdrError("negative reference count")
            refs.append((ipid, public_refs, private_refs))
        if n != count:
            raise NdrError("REMINTERFACEREF count mismatch")
        return refs

    def rem_add_ref(self, ctx, stub):
        self._check_target(ctx)
        refs = self._interface_refs(NdrReader(stub))
        results = [self.exporter.add_ref(ipid, pub, priv) for ipid, pub, priv in refs]
        w = NdrWriter()
        w.orpcthat()
        w.u32(len(results))
        for hr in results:
            w.u32(hr)
        w.u32(C.S_OK if all(hr == C.S_OK for hr in results) else C.E_INVALIDARG)
        return w.bytes()

    def rem_release(self, ctx, stub):
        self._check_target(ctx)
        refs = self._interface_refs(NdrReader(stub))
        results = [self.exporter.release(ipid, pub, priv) for ipid, pub, priv in refs]
        LOG.info("RemRelease %s by %s", ", ".join("%s-%d" % (i, p) for i, p, _ in refs), _who(ctx))
        w = NdrWriter()
        w.orpcthat()
        w.u32(C.S_OK if all(hr == C.S_OK for hr in results) else C.E_INVALIDARG)
        return w.bytes()
