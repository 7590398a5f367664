"""The MS-RPCE 2.2.2.13 verification trailer on requests: found at the end of the stub and checked, as Windows does.

A client puts ``rpc_sec_verification_trailer`` (8-byte signature) and its commands after the NDR stub data, 4-byte
aligned, before the auth padding. Servers SHOULD search for the signature after the stub data (2.2.2.13); since the
engine does not decode NDR, it takes the last 4-byte aligned signature from which the command list parses exactly to
the end of the stub (the last command carries SEC_VT_COMMAND_END). The trailer is removed before the handler sees the
stub; its commands are checked against the PDU (rpc_sec_vt_header2), the presentation context (rpc_sec_vt_pcontext)
and the connection's header-signing state (rpc_sec_vt_bitmask). A mismatch or an unknown must-process command is
refused with access denied (Samba's dcesrv does the same).
"""

import struct
from dataclasses import dataclass
from typing import List, Optional, Tuple

SIGNATURE = bytes((0x8A, 0xE3, 0x13, 0x71, 0x02, 0xF4, 0x36, 0x71))
SEC_VT_COMMAND_BITMASK_1 = 0x0001
SEC_VT_COMMAND_PCONTEXT = 0x0002
SEC_VT_COMMAND_HEADER2 = 0x0003
SEC_VT_COMMAND_END = 0x4000
SEC_VT_MUST_PROCESS_COMMAND = 0x8000
CLIENT_SUPPORT_HEADER_SIGNING = 0x00000001
COMMAND_NAMES = {SEC_VT_COMMAND_BITMASK_1: "bitmask", SEC_VT_COMMAND_PCONTEXT: "pcontext", SEC_VT_COMMAND_HEADER2: "header2"}
COMMAND_LENGTHS = {SEC_VT_COMMAND_BITMASK_1: 4, SEC_VT_COMMAND_PCONTEXT: 40, SEC_VT_COMMAND_HEADER2: 16}


class TrailerRejected(Exception):
    """The verification trailer does not match the call (the request is refused)."""


@dataclass
class Command:
    kind: int
    must_process: bool
    data: bytes


def _parse_commands(data: bytes) -> Optional[List[Command]]:
    """The command list from just after the signature; None unless it ends with SEC_VT_COMMAND_END exactly at
    the end of ``data``."""
    off, out = 0, []
    while off + 4 <= len(data):
        command, length = struct.unpack_from("<HH", data, off)
        off += 4
        if off + length > len(data):
            return None
        out.append(Command(command & 0x3FFF, bool(command & SEC_VT_MUST_PROCESS_COMMAND), data[off:off + length]))
        off += length
        if command & SEC_VT_COMMAND_END:
            return out if off == len(data) else None
    return None


class TrailedStub(bytes):
    """The stub before a verification trailer: it may end with up to 3 zero octets of stub padding that align the
    trailer (MS-RPCE 2.2.2.13: clients MAY send stub padding octets; Windows and Samba clients align the trailer to
    4 bytes). The NDR reader accepts those octets after the last parameter (``NdrReader.done``)."""

    vt_padded = True


def split(stub: bytes) -> Tuple[bytes, Optional[List[Command]]]:
    """(stub without the trailer, its commands) or (stub, None) when there is no verification trailer."""
    pos = stub.rfind(SIGNATURE)
    while pos >= 0:
        if pos % 4 == 0:
            commands = _parse_commands(stub[pos + len(SIGNATURE):])
            if commands is not None:
                return TrailedStub(stub[:pos]), commands
        pos = stub.rfind(SIGNATURE, 0, pos)
    return stub, None


def syntax_id(uuid_bin: bytes, version: Tuple[int, int]) -> bytes:
    """RPC_SYNTAX_IDENTIFIER: GUID, major, minor (little-endian)."""
    return uuid_bin + struct.pack("<HH", version[0], version[1])


def check(commands: List[Command], ptype: int, drep: bytes, call_id: int, context_id: int, opnum: int,
          abstract_syntax: bytes, transfer_syntax: bytes, header_signing: bool) -> None:
    for cmd in commands:
        expected = COMMAND_LENGTHS.get(cmd.kind)
        if expected is None:
            if cmd.must_process:
                raise TrailerRejected("unknown must-process verification command 0x%04x" % cmd.kind)
            continue
        if len(cmd.data) != expected:
            raise TrailerRejected("verification command 0x%04x of length %d" % (cmd.kind, len(cmd.data)))
        if cmd.kind == SEC_VT_COMMAND_BITMASK_1:
            bits = struct.unpack("<I", cmd.data)[0]
            if bits & CLIENT_SUPPORT_HEADER_SIGNING and not header_signing:
                raise TrailerRejected("trailer says header signing was offered, the bind did not offer it")
        elif cmd.kind == SEC_VT_COMMAND_PCONTEXT:
            if cmd.data[:20] != abstract_syntax or cmd.data[20:40] != transfer_syntax:
                raise TrailerRejected("trailer names another presentation context than the call's")
        elif cmd.kind == SEC_VT_COMMAND_HEADER2:
            v_ptype = cmd.data[0]
            v_drep = cmd.data[4:8]
            v_call_id, v_ctx, v_opnum = struct.unpack_from("<IHH", cmd.data, 8)
            if (v_ptype, v_drep, v_call_id, v_ctx, v_opnum) != (ptype, drep, call_id, context_id, opnum):
                raise TrailerRejected("trailer header (ptype %d, call %d, context %d, opnum %d) does not match the "
                                      "request" % (v_ptype, v_call_id, v_ctx, v_opnum))


def build(ptype: int, drep: bytes, call_id: int, context_id: int, opnum: int, abstract_syntax: bytes,
          transfer_syntax: bytes, header_signing: bool = False) -> bytes:
    """A verification trailer as Windows clients send it (bitmask, pcontext, header2), for test clients."""
    cmds = []
    if header_signing:
        cmds.append((SEC_VT_COMMAND_BITMASK_1, struct.pack("<I", CLIENT_SUPPORT_HEADER_SIGNING)))
    cmds.append((SEC_VT_COMMAND_PCONTEXT, abstract_syntax + transfer_syntax))
    cmds.append((SEC_VT_COMMAND_HEADER2, bytes([ptype, 0]) + b"\x00\x00" + drep +
                 struct.pack("<IHH", call_id, context_id, opnum)))
    out = SIGNATURE
    for i, (kind, data) in enumerate(cmds):
        flags = SEC_VT_COMMAND_END if i == len(cmds) - 1 else 0
        out += struct.pack("<HH", kind | flags | SEC_VT_MUST_PROCESS_COMMAND, len(data)) + data
    return out
