"""Encoding and decoding of connection-oriented DCE/RPC PDUs (C706 12.6, MS-RPCE 2.2.2).

Only little-endian data representation is produced; incoming PDUs with another integer
representation are refused by the server before they reach this module.
"""

import struct
import uuid as _uuid
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

from . import constants as C

COMMON_HEADER_LEN = 16
SEC_TRAILER_LEN = 8
REQUEST_HEADER_LEN = 24   # common + alloc_hint + p_cont_id + opnum
RESPONSE_HEADER_LEN = 24  # common + alloc_hint + p_cont_id + cancel_count + reserved


class PduError(Exception):
    """A PDU could not be decoded (bad lengths, bad version, truncated...)."""


def uuid_to_bin(value: str) -> bytes:
    return _uuid.UUID(value).bytes_le


def bin_to_uuid(data: bytes) -> str:
    return str(_uuid.UUID(bytes_le=bytes(data)))


def syntax_to_bin(uuid_str: str, version: Tuple[int, int]) -> bytes:
    """p_syntax_id_t: if_uuid then if_version (u32: major in the low 16 bits, minor in the high)."""
    return uuid_to_bin(uuid_str) + struct.pack("<HH", version[0], version[1])


def bin_to_syntax(data: bytes) -> Tuple[str, Tuple[int, int]]:
    if len(data) != 20:
        raise PduError("syntax id must be 20 octets")
    major, minor = struct.unpack("<HH", data[16:20])
    return bin_to_uuid(data[:16]), (major, minor)


@dataclass
class Header:
    rpc_vers: int
    rpc_vers_minor: int
    ptype: int
    pfc_flags: int
    drep: bytes
    frag_length: int
    auth_length: int
    call_id: int

    @classmethod
    def parse(cls, data: bytes) -> "Header":
        if len(data) < COMMON_HEADER_LEN:
            raise PduError("truncated common header")
        vers, minor, ptype, flags = struct.unpack_from("<BBBB", data, 0)
        drep = bytes(data[4:8])
        fmt = "<HHI" if drep[0] & 0xF0 == 0x10 else ">HHI"
        frag_length, auth_length, call_id = struct.unpack_from(fmt, data, 8)
        return cls(vers, minor, ptype, flags, drep, frag_length, auth_length, call_id)

    @property
    def little_endian(self) -> bool:
        return self.drep[0] & 0xF0 == 0x10

    def pack(self) -> bytes:
        return struct.pack("<BBBB4sHHI", self.rpc_vers, self.rpc_vers_minor, self.ptype, self.pfc_flags,
                           C.DREP_LE, self.frag_length, self.auth_length, self.call_id)


def build_header(ptype: int, flags: int, frag_length: int, auth_length: int, call_id: int) -> bytes:
    return struct.pack("<BBBB4sHHI", 5, 0, ptype, flags, C.DREP_LE, frag_length, auth_length, call_id)


@dataclass
class SecTrailer:
    auth_type: int
    auth_level: int
    auth_pad_length: int
    auth_reserved: int
    auth_context_id: int

    @classmethod
    def parse(cls, data: bytes) -> "SecTrailer":
        if len(data) != SEC_TRAILER_LEN:
            raise PduError("sec_trailer must be 8 octets")
        return cls(*struct.unpack("<BBBBI", data))

    def pack(self) -> bytes:
        return struct.pack("<BBBBI", self.auth_type, self.auth_level, self.auth_pad_length, 0,
                           self.auth_context_id)


@dataclass
class Pdu:
    """A decoded PDU: header, body (between header and sec_trailer/padding), optional auth part."""
    header: Header
    raw: bytes
    body: bytes                     # everything after the common header, up to the sec_trailer (incl. padding)
    trailer: Optional[SecTrailer] = None
    trailer_offset: int = 0         # offset of the sec_trailer inside raw
    auth_value: bytes = b""

    @classmethod
    def parse(cls, raw: bytes) -> "Pdu":
        hdr = Header.parse(raw)
        if hdr.frag_length != len(raw):
            raise PduError("frag_length does not match the PDU")
        if hdr.frag_length < COMMON_HEADER_LEN:
            raise PduError("frag_length too small")
        if hdr.auth_length:
            toff = hdr.frag_length - hdr.auth_length - SEC_TRAILER_LEN
            if toff < COMMON_HEADER_LEN:
                raise PduError("auth_length larger than the PDU")
            trailer = SecTrailer.parse(raw[toff:toff + SEC_TRAILER_LEN])
            auth_value = bytes(raw[toff + SEC_TRAILER_LEN:])
            return cls(hdr, raw, bytes(raw[COMMON_HEADER_LEN:toff]), trailer, toff, auth_value)
        return cls(hdr, raw, bytes(raw[COMMON_HEADER_LEN:]))


# ---------------------------------------------------------------------------------------------
# bind / alter_context
# ---------------------------------------------------------------------------------------------

@dataclass
class ContextElement:
    context_id: int
    abstract_syntax: Tuple[str, Tuple[int, int]]
    transfer_syntaxes: List[Tuple[str, Tuple[int, int]]]
    raw_transfer_syntaxes: List[bytes] = field(default_factory=list)


@dataclass
class BindBody:
    max_xmit_frag: int
    max_recv_frag: int
    assoc_group_id: int
    contexts: List[ContextElement]

    @classmethod
    def parse(cls, body: bytes) -> "BindBody":
        if len(body) < 12:
            raise PduError("truncated bind body")
        max_xmit, max_recv, assoc, n_ctx = struct.unpack_from("<HHIB", body, 0)
        off = 12
        contexts = []
        for _ in range(n_ctx):
            if len(body) < off + 24:
                raise PduError("truncated presentation context list")
            ctx_id, n_ts = struct.unpack_from("<HB", body, off)
            abstract = bin_to_syntax(body[off + 4:off + 24])
            off += 24
            if n_ts == 0:
                raise PduError("presentation context without transfer syntax")
            ts, raw_ts = [], []
            for _ in range(n_ts):
                if len(body) < off + 20:
                    raise PduError("truncated transfer syntax list")
                raw_ts.append(bytes(body[off:off + 20]))
                ts.append(bin_to_syntax(body[off:off + 20]))
                off += 20
            contexts.append(ContextElement(ctx_id, abstract, ts, raw_ts))
        return cls(max_xmit, max_recv, assoc, contexts)


@dataclass
class ContextResult:
    result: int
    reason: int
    transfer_syntax: bytes = b"\x00" * 20

    def pack(self) -> bytes:
        return struct.pack("<HH", self.result, self.reason) + self.transfer_syntax


def _pad4(n: int) -> int:
    return (4 - n % 4) % 4


def build_bind_ack(ptype: int, call_id: int, max_xmit: int, max_recv: int, assoc_group: int,
                   sec_addr: bytes, results: List[ContextResult], flags: int = C.PFC_FIRST_FRAG | C.PFC_LAST_FRAG,
                   auth: Optional[Tuple[SecTrailer, bytes]] = None) -> bytes:
    """bind_ack (0x0C) or alter_context_resp (0x0F). sec_addr without or with its NUL; '' -> length 0."""
    body = struct.pack("<HHI", max_xmit, max_recv, assoc_group)
    if sec_addr:
        if not sec_addr.endswith(b"\x00"):
            sec_addr += b"\x00"
        body += struct.pack("<H", len(sec_addr)) + sec_addr
    else:
        body += struct.pack("<H", 0)
    body += b"\x00" * _pad4(COMMON_HEADER_LEN + len(body))
    body += struct.pack("<BBH", len(results), 0, 0)
    for r in results:
        body += r.pack()
    auth_len = 0
    tail = b""
    if auth is not None:
        trailer, token = auth
        pad = _pad4(COMMON_HEADER_LEN + len(body))
        body += b"\x00" * pad
        trailer.auth_pad_length = pad
        tail = trailer.pack() + token
        auth_len = len(token)
    frag_len = COMMON_HEADER_LEN + len(body) + len(tail)
    return build_header(ptype, flags, frag_len, auth_len, call_id) + body + tail


def build_bind_nak(call_id: int, reason: int) -> bytes:
    # provider_reject_reason, p_rt_versions_supported_t {n_protocols, [major, minor]}; no Signature field
    body = struct.pack("<HBBB", reason, 1, 5, 0)
    body += b"\x00" * _pad4(COMMON_HEADER_LEN + len(body))
    return build_header(C.PTYPE_BIND_NAK, C.PFC_FIRST_FRAG | C.PFC_LAST_FRAG,
                        COMMON_HEADER_LEN + len(body), 0, call_id) + body


def build_fault(call_id: int, status: int, context_id: int = 0, did_not_execute: bool = False) -> bytes:
    flags = C.PFC_FIRST_FRAG | C.PFC_LAST_FRAG
    if did_not_execute:
        flags |= C.PFC_DID_NOT_EXECUTE
    body = struct.pack("<IHBBII", 0, context_id, 0, 0, status & 0xFFFFFFFF, 0)
    return build_header(C.PTYPE_FAULT, flags, COMMON_HEADER_LEN + len(body), 0, call_id) + body


def build_shutdown(call_id: int = 0) -> bytes:
    return build_header(C.PTYPE_SHUTDOWN, C.PFC_FIRST_FRAG | C.PFC_LAST_FRAG, COMMON_HEADER_LEN, 0, call_id)


@dataclass
class RequestBody:
    alloc_hint: int
    context_id: int
    opnum: int
    object_uuid: Optional[str]
    stub_offset: int          # offset of the stub data inside the PDU

    @classmethod
    def parse(cls, pdu: Pdu) -> "RequestBody":
        raw = pdu.raw
        if len(raw) < REQUEST_HEADER_LEN:
            raise PduError("truncated request header")
        alloc_hint, ctx_id, opnum = struct.unpack_from("<IHH", raw, COMMON_HEADER_LEN)
        off = REQUEST_HEADER_LEN
        obj = None
        if pdu.header.pfc_flags & C.PFC_OBJECT_UUID:
            if len(raw) < off + 16:
                raise PduError("truncated object uuid")
            obj = bin_to_uuid(raw[off:off + 16])
            off += 16
        end = pdu.trailer_offset if pdu.trailer is not None else len(raw)
        if end < off:
            raise PduError("sec_trailer overlaps the request header")
        return cls(alloc_hint, ctx_id, opnum, obj, off)
