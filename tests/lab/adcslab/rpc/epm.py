"""Endpoint mapper (EPMv4, C706 appendix L / MS-RPCE 2.2.1.2) for the lab's port-135 server.

``ept_map`` (opnum 3) answers with the registered ncacn_ip_tcp endpoints of an interface;
``ept_lookup`` (opnum 2) enumerates the registered endpoints as Windows does (C706 appendix L "ept_lookup",
MS-RPCE 2.2.1.2): all of them or those of one interface (``inquiry_type``/``vers_option``), ``max_ents`` at a time,
continued through the context handle ``entry_handle`` until it comes back NULL; ``ept_lookup_handle_free``
(opnum 4) drops an unfinished enumeration. Nothing registered -> EPT_S_NOT_REGISTERED.
Towers are encoded/decoded here; the NDR of the calls uses impacket's epm structures.
"""

import logging
import os
import socket
import struct
import threading
from dataclasses import dataclass
from typing import List, Optional, Tuple

from impacket.dcerpc.v5 import epm as _iepm

from . import constants as C
from .pdu import bin_to_uuid, uuid_to_bin
from .server import CallContext, Interface, RpcFault

LOG = logging.getLogger("adcslab.rpc.epm")

EPM_UUID = "e1af8308-5d1f-11c9-91a4-08002b14a0fa"
EPM_VERSION = (3, 0)
EPT_S_NOT_REGISTERED = 0x16C9A0D6
EPT_S_CANT_PERFORM_OP = 0x16C9A0D8

# tower floor protocol identifiers (C706 appendix I, MS-RPCE 2.2.1.2)
FLOOR_UUID = 0x0D
FLOOR_RPC_CO = 0x0B
FLOOR_TCP_PORT = 0x07
FLOOR_UDP_PORT = 0x08
FLOOR_IP = 0x09
FLOOR_NAMED_PIPE = 0x0F
FLOOR_NETBIOS = 0x11
FLOOR_HTTP = 0x1F

PROTOCOL_FLOORS = {"ncacn_ip_tcp": FLOOR_TCP_PORT, "ncacn_http": FLOOR_HTTP}

# ept_lookup inquiry types and version options (C706 appendix L)
RPC_C_EP_ALL_ELTS = 0
RPC_C_EP_MATCH_BY_IF = 1
RPC_C_EP_MATCH_BY_OBJ = 2
RPC_C_EP_MATCH_BY_BOTH = 3
RPC_C_VERS_ALL = 1
RPC_C_VERS_COMPATIBLE = 2
RPC_C_VERS_EXACT = 3
RPC_C_VERS_MAJOR_ONLY = 4
RPC_C_VERS_UPTO = 5
MAX_LOOKUP_HANDLES = 64       # unfinished enumerations kept per mapper (oldest dropped first)


@dataclass
class TowerInfo:
    interface_uuid: str
    interface_version: Tuple[int, int]
    syntax_uuid: str
    syntax_version: Tuple[int, int]
    protocol: Optional[str]
    port: Optional[int]
    address: Optional[str]
    floors: List[Tuple[bytes, bytes]]


def _floor(lhs: bytes, rhs: bytes) -> bytes:
    return struct.pack("<H", len(lhs)) + lhs + struct.pack("<H", len(rhs)) + rhs


def encode_tower(interface_uuid: str, version: Tuple[int, int], protocol: str, address: str, port: int,
                 syntax: Tuple[str, Tuple[int, int]] = (C.NDR20_UUID, C.NDR20_VERSION)) -> bytes:
    """Tower octet string (floor count + floors) for ncacn_ip_tcp / ncacn_http."""
    if protocol not in PROTOCOL_FLOORS:
        raise ValueError("unsupported protocol sequence %s" % protocol)
    floors = [
        _floor(bytes([FLOOR_UUID]) + uuid_to_bin(interface_uuid) + struct.pack("<H", version[0]),
               struct.pack("<H", version[1])),
        _floor(bytes([FLOOR_UUID]) + uuid_to_bin(syntax[0]) + struct.pack("<H", syntax[1][0]),
               struct.pack("<H", syntax[1][1])),
        _floor(bytes([FLOOR_RPC_CO]), struct.pack("<H", 0)),
        _floor(bytes([PROTOCOL_FLOORS[protocol]]), struct.pack(">H", port)),
        _floor(bytes([FLOOR_IP]), socket.inet_aton(address)),
    ]
    return struct.pack("<H", len(floors)) + b"".join(floors)


def decode_tower(data: bytes) -> TowerInfo:
    if len(data) < 2:
        raise ValueError("tower too short")
    count = struct.unpack_from("<H", data, 0)[0]
    off = 2
    floors = []
    for _ in range(count):
        if off + 2 > len(data):
            raise ValueError("truncated tower floor")
        lhs_len = struct.unpack_from("<H", data, off)[0]
        off += 2
        lhs = data[off:off + lhs_len]
        off += lhs_len
        if off + 2 > len(data) or len(lhs) != lhs_len:
            raise ValueError("truncated tower floor")
        rhs_len = struct.unpack_from("<H", data, off)[0]
        off += 2
        rhs = data[off:off + rhs_len]
        off += rhs_len
        if len(rhs) != rhs_len:
            raise ValueError("truncated tower floor")
        floors.append((lhs, rhs))
    if len(floors) < 3:
        raise ValueError("tower with fewer than 3 floors")

    def uuid_floor(lhs, rhs):
        if len(lhs) != 19 or lhs[0] != FLOOR_UUID or len(rhs) != 2:
            raise ValueError("malformed UUID floor")
        return bin_to_uuid(lhs[1:17]), (struct.unpack("<H", lhs[17:19])[0], struct.unpack("<H", rhs)[0])

    if_uuid, if_ver = uuid_floor(*floors[0])
    ts_uuid, ts_ver = uuid_floor(*floors[1])
    protocol = port = address = None
    if len(floors) >= 4 and floors[2][0][:1] == bytes([FLOOR_RPC_CO]):
        ident = floors[3][0][:1]
        if ident == bytes([FLOOR_TCP_PORT]):
            protocol = "ncacn_ip_tcp"
        elif ident == bytes([FLOOR_HTTP]):
            protocol = "ncacn_http"
        elif ident == bytes([FLOOR_NAMED_PIPE]):
            protocol = "ncacn_np"
        if protocol in ("ncacn_ip_tcp", "ncacn_http") and len(floors[3][1]) == 2:
            port = struct.unpack(">H", floors[3][1])[0]
        if len(floors) >= 5 and floors[4][0][:1] == bytes([FLOOR_IP]) and len(floors[4][1]) == 4:
            address = socket.inet_ntoa(floors[4][1])
    return TowerInfo(if_uuid, if_ver, ts_uuid, ts_ver, protocol, port, address, floors)


@dataclass
class Registration:
    interface_uuid: str
    version: Tuple[int, int]
    protocol: str
    address: str
    port: int
    annotation: str = ""


class EndpointMapper:
    """Registry of endpoints plus the EPMv4 interface serving it."""

    def __init__(self):
        self._lock = threading.Lock()
        self._entries: List[Registration] = []
        self._cursors = {}      # context handle uuid -> (remaining registrations, address the client reached)

    def register(self, interface_uuid: str, version, protocol: str = "ncacn_ip_tcp", address: str = "0.0.0.0",
                 port: int = 0, annotation: str = "") -> Registration:
        if protocol not in PROTOCOL_FLOORS:
            raise ValueError("unsupported protocol sequence %s" % protocol)
        if not 0 < int(port) < 65536:
            raise ValueError("port must be 1..65535")
        socket.inet_aton(address)  # validates
        reg = Registration(interface_uuid.lower(), (int(version[0]), int(version[1])), protocol, address, int(port),
                           annotation)
        with self._lock:
            self._entries = [e for e in self._entries if not (e.interface_uuid == reg.interface_uuid and
                                                               e.version == reg.version and
                                                               e.protocol == protocol and e.address == address)]
            self._entries.append(reg)
        LOG.info("registered %s v%d.%d at %s:%s[%d]", reg.interface_uuid, reg.version[0], reg.version[1], protocol,
                 address, reg.port)
        return reg

    def unregister(self, interface_uuid: str, version=None) -> None:
        with self._lock:
            self._entries = [e for e in self._entries if not (
                e.interface_uuid == interface_uuid.lower() and (version is None or e.version == tuple(version)))]

    def lookup(self, interface_uuid: str, version: Tuple[int, int], protocol: str) -> List[Registration]:
        with self._lock:
            return [e for e in self._entries
                    if e.interface_uuid == interface_uuid.lower() and e.protocol == protocol
                    and e.version[0] == version[0] and e.version[1] >= version[1]]

    # -- RPC handlers --------------------------------------------------------------------
    def _ept_map(self, ctx: CallContext, stub: bytes) -> bytes:
        req = _iepm.ept_map(stub)
        max_towers = int(req["max_towers"])
        towers = []
        status = EPT_S_NOT_REGISTERED
        tower_bytes = b""
        ptr = req["map_tower"]
        if "tower_octet_string" in ptr.fields:      # absent for a NULL map_tower
            octets = ptr["tower_octet_string"] or b""
            tower_bytes = b"".join(octets) if isinstance(octets, list) else bytes(octets)
            tower_bytes = tower_bytes[:int(ptr["tower_length"])]
        try:
            info = decode_tower(tower_bytes) if tower_bytes else None
        except ValueError as exc:
            LOG.info("ept_map: undecodable tower: %s", exc)
            info = None
        if info is not None and info.protocol in PROTOCOL_FLOORS:
            for reg in self.lookup(info.interface_uuid, info.interface_version, info.protocol)[:max(max_towers, 0)]:
                address = reg.address
                if address == "0.0.0.0":
                    address = ctx.connection.local_address
                towers.append(encode_tower(reg.interface_uuid, reg.version, reg.protocol, address, reg.port,
                                           (info.syntax_uuid, info.syntax_version)))
            if towers:
                status = 0
        if info is not None:
            LOG.info("ept_map %s v%d.%d %s -> %s", info.interface_uuid, info.interface_version[0],
                     info.interface_version[1], info.protocol, "%d tower(s)" % len(towers) if towers else
                     "not registered")
        # NDR20 by hand: entry_handle, num_towers, ITowers (conformant varying array of unique
        # pointers to twr_t, size_is(max_towers), length_is(num_towers)), status
        out = struct.pack("<I", 0) + b"\x00" * 16 + struct.pack("<I", len(towers))
        out += struct.pack("<III", max(max_towers, len(towers)), 0, len(towers))
        for i in range(len(towers)):
            out += struct.pack("<I", 0x00020000 + 4 * (i + 1))
        for t in towers:
            out += struct.pack("<II", len(t), len(t)) + t
            out += b"\x00" * ((4 - len(out) % 4) % 4)
        out += struct.pack("<I", status)
        return out

    @staticmethod
    def _version_matches(have, want, option):
        if option == RPC_C_VERS_COMPATIBLE:
            return have[0] == want[0] and have[1] >= want[1]
        if option == RPC_C_VERS_EXACT:
            return have == want
        if option == RPC_C_VERS_MAJOR_ONLY:
            return have[0] == want[0]
        if option == RPC_C_VERS_UPTO:
            return have <= want
        return True             # RPC_C_VERS_ALL

    def _select(self, req) -> List[Registration]:
        inquiry = int(req["inquiry_type"])
        with self._lock:
            entries = list(self._entries)
        if inquiry in (RPC_C_EP_MATCH_BY_OBJ, RPC_C_EP_MATCH_BY_BOTH):
            # every lab registration has the nil object UUID
            obj = req.fields["object"]
            if obj["ReferentID"] and bytes(obj["Data"]) != b"\x00" * 16:
                return []
        if inquiry in (RPC_C_EP_MATCH_BY_IF, RPC_C_EP_MATCH_BY_BOTH):
            ifid = req.fields["Ifid"]
            if not ifid["ReferentID"]:          # match by interface without one: nothing matches
                return []
            uuid = bin_to_uuid(bytes(ifid["Uuid"]))
            want = (int(ifid["VersMajor"]), int(ifid["VersMinor"]))
            option = int(req["vers_option"])
            entries = [e for e in entries if e.interface_uuid == uuid
                       and self._version_matches(e.version, want, option)]
        return entries

    def _ept_lookup(self, ctx: CallContext, stub: bytes) -> bytes:
        req = _iepm.ept_lookup(stub)
        max_ents = max(int(req["max_ents"]), 0)
        handle = bytes(req["entry_handle"]["context_handle_uuid"])
        if handle != b"\x00" * 16:
            with self._lock:
                cursor = self._cursors.pop(handle, None)
            if cursor is None:          # unknown or already finished handle
                raise RpcFault(C.NCA_S_FAULT_CONTEXT_MISMATCH)
            remaining = cursor
        else:
            remaining = self._select(req)
        page, rest = remaining[:max_ents], remaining[max_ents:]
        resp = _iepm.ept_lookupResponse()
        resp["entry_handle"]["context_handle_attributes"] = 0
        resp["entry_handle"]["context_handle_uuid"] = b"\x00" * 16
        if rest:
            new_handle = os.urandom(16)
            with self._lock:
                while len(self._cursors) >= MAX_LOOKUP_HANDLES:
                    self._cursors.pop(next(iter(self._cursors)))
                self._cursors[new_handle] = rest
            resp["entry_handle"]["context_handle_uuid"] = new_handle
        entries = []
        for reg in page:
            address = ctx.connection.local_address if reg.address == "0.0.0.0" else reg.address
            entry = _iepm.ept_entry_t()
            entry["object"] = b"\x00" * 16
            tower = encode_tower(reg.interface_uuid, reg.version, reg.protocol, address, reg.port)
            entry["tower"]["tower_length"] = len(tower)
            entry["tower"]["tower_octet_string"] = tower
            entry["annotation"] = (reg.annotation[:63] + "\x00").encode("ascii", "replace")
            entries.append(entry)
        resp["num_ents"] = len(entries)
        resp["entries"] = entries
        resp.fields["entries"].fields["MaximumCount"] = max(max_ents, len(entries))   # size_is(max_ents)
        resp["status"] = 0 if (entries or handle != b"\x00" * 16) else EPT_S_NOT_REGISTERED
        LOG.info("ept_lookup inquiry %d -> %d entr%s%s", int(req["inquiry_type"]), len(entries),
                 "y" if len(entries) == 1 else "ies", " (more)" if rest else "")
        return resp.getData()

    def _ept_lookup_handle_free(self, ctx: CallContext, stub: bytes) -> bytes:
        # [in, out] ept_lookup_handle_t *entry_handle (20-byte context handle); out: the NULL handle, status
        if len(stub) < 20:
            raise RpcFault(C.NCA_S_FAULT_UNSPEC)
        with self._lock:
            self._cursors.pop(bytes(stub[4:20]), None)
        return b"\x00" * 20 + struct.pack("<I", 0)

    def interface(self) -> Interface:
        return Interface(EPM_UUID, EPM_VERSION, {2: self._ept_lookup, 3: self._ept_map, 4: self._ept_lookup_handle_free},
                         min_authn_level=C.RPC_C_AUTHN_LEVEL_NONE, name="epmapper")


__all__ = ["EndpointMapper", "Registration", "encode_tower", "decode_tower", "TowerInfo", "EPM_UUID",
           "EPM_VERSION", "EPT_S_NOT_REGISTERED", "RpcFault"]
