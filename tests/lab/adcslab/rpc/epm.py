"""Endpoint mapper (EPMv4, C706 appendix L / MS-RPCE 2.2.1.2) for the lab's port-135 server.

``ept_map`` (opnum 3) answers with the registered ncacn_ip_tcp endpoints of an interface;
``ept_lookup`` (opnum 2) answers with an empty result (no enumeration).
Towers are encoded/decoded here; the NDR of the calls uses impacket's epm structures.
"""

import logging
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

    def _ept_lookup(self, ctx: CallContext, stub: bytes) -> bytes:
        _iepm.ept_lookup(stub)  # validates the request
        resp = _iepm.ept_lookupResponse()
        resp["entry_handle"]["context_handle_attributes"] = 0
        resp["entry_handle"]["context_handle_uuid"] = b"\x00" * 16
        resp["num_ents"] = 0
        resp["entries"] = []
        resp["status"] = EPT_S_NOT_REGISTERED
        return resp.getData()

    def interface(self) -> Interface:
        return Interface(EPM_UUID, EPM_VERSION, {2: self._ept_lookup, 3: self._ept_map},
                         min_authn_level=C.RPC_C_AUTHN_LEVEL_NONE, name="epmapper")


__all__ = ["EndpointMapper", "Registration", "encode_tower", "decode_tower", "TowerInfo", "EPM_UUID",
           "EPM_VERSION", "EPT_S_NOT_REGISTERED", "RpcFault"]
