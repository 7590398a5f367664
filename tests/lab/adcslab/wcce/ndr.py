"""Minimal NDR 2.0 (32-bit) reader and writer for the lab CA's request and reply stubs.

Only what MS-DCOM / MS-WCCE / MS-ICPR need: integers, GUIDs, unique pointers, conformant(-varying)
arrays, [string] wide strings and CERTTRANSBLOB. Alignment is relative to the start of the stub.
Every read is bounds-checked; malformed input raises :class:`NdrError` (mapped to a bad-stub fault).
"""

import struct
import uuid

# Upper bound for any conformant count we accept (defence against absurd allocations).
MAX_COUNT = 16 * 1024 * 1024


class NdrError(ValueError):
    """The stub does not decode as the expected NDR."""


class ComVersionError(NdrError):
    """ORPCTHIS carries a COM version this server does not speak (RPC_E_VERSION_MISMATCH)."""


def guid_to_str(raw):
    return str(uuid.UUID(bytes_le=bytes(raw)))


def str_to_guid(text):
    return uuid.UUID(text).bytes_le


class NdrReader:
    def __init__(self, data):
        self.data = bytes(data)
        self.pos = 0
        self.vt_padded = getattr(data, "vt_padded", False)   # a verification trailer followed (rpc/vtrailer.py)

    def align(self, n):
        self.pos = (self.pos + n - 1) & ~(n - 1)
        if self.pos > len(self.data):
            raise NdrError("stub truncated (alignment past end)")

    def take(self, n):
        if n < 0 or self.pos + n > len(self.data):
            raise NdrError("stub truncated: need %d bytes at offset %d, have %d" % (n, self.pos, len(self.data)))
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def _unpack(self, fmt, size):
        self.align(size)
        return struct.unpack("<" + fmt, self.take(size))[0]

    def u8(self):
        return self._unpack("B", 1)

    def u16(self):
        return self._unpack("H", 2)

    def u32(self):
        return self._unpack("I", 4)

    def i32(self):
        return self._unpack("i", 4)

    def u64(self):
        return self._unpack("Q", 8)

    def guid(self):
        self.align(4)
        return self.take(16)

    def guid_str(self):
        return guid_to_str(self.guid())

    def pointer(self):
        """A unique/full pointer's referent id (0 = NULL)."""
        return self.u32()

    def count(self):
        value = self.u32()
        if value > MAX_COUNT:
            raise NdrError("conformant count %d too large" % value)
        return value

    def wstring_body(self):
        """The deferred body of a [string] wchar_t*: max count, offset, actual count, chars."""
        maximum = self.count()
        offset = self.u32()
        actual = self.count()
        if offset != 0 or actual > maximum:
            raise NdrError("bad conformant-varying string header (max %d offset %d actual %d)"
                           % (maximum, offset, actual))
        raw = self.take(actual * 2)
        if actual == 0 or raw[-2:] != b"\x00\x00":
            raise NdrError("[string] not NUL-terminated")
        try:
            return raw[:-2].decode("utf-16-le")
        except UnicodeDecodeError as exc:
            raise NdrError("string is not valid UTF-16LE: %s" % exc)

    def unique_wstring(self):
        """A top-level [in, string, unique] wchar_t* parameter: None when NULL."""
        if self.pointer() == 0:
            return None
        return self.wstring_body()

    def certtransblob(self):
        """A top-level [in, ref] CERTTRANSBLOB*: returns the bytes (b'' when pb is NULL)."""
        self.align(4)
        cb = self.u32()
        ref = self.pointer()
        if ref == 0:
            if cb != 0:
                raise NdrError("CERTTRANSBLOB with cb=%d and NULL pb" % cb)
            return b""
        maximum = self.count()
        if maximum != cb:
            raise NdrError("CERTTRANSBLOB size_is mismatch (cb %d, max count %d)" % (cb, maximum))
        return self.take(cb)

    def orpcthis(self):
        """ORPCTHIS (MS-DCOM 2.2.13.3); extensions are parsed and skipped. Returns a dict."""
        self.align(4)
        major = self.u16()
        minor = self.u16()
        flags = self.u32()
        self.u32()  # reserved1
        cid = self.guid()
        ext_ref = self.pointer()
        extents = []
        if ext_ref:
            size = self.u32()
            self.u32()  # reserved
            arr_ref = self.pointer()
            if arr_ref:
                n = self.count()
                if n < size:
                    raise NdrError("ORPC_EXTENT_ARRAY size %d exceeds array %d" % (size, n))
                refs = [self.pointer() for _ in range(n)]
                for ref in refs:
                    if not ref:
                        continue
                    conformance = self.count()
                    ext_id = self.guid()
                    ext_size = self.u32()
                    if ext_size != conformance:
                        raise NdrError("ORPC_EXTENT size mismatch")
                    extents.append((guid_to_str(ext_id), self.take(ext_size)))
        if major != 5:
            raise ComVersionError("unsupported COM version %d.%d" % (major, minor))
        return {"version": (major, minor), "flags": flags, "cid": guid_to_str(cid), "extensions": extents}

    def done(self):
        """The stub must be consumed exactly (the RPC layer has already removed any auth padding).

        Being strict here is what turns a mis-typed client call (e.g. a CERTTRANSBLOB sent where a string
        pointer belongs) into a clean bad-stub fault instead of a silently misread request."""
        rest = len(self.data) - self.pos
        if rest and self.vt_padded and rest < 4 and not any(self.data[self.pos:]):
            return      # MS-RPCE 2.2.2.13: stub padding octets up to the 4-byte aligned verification trailer
        if rest:
            raise NdrError("%d unexpected trailing bytes in stub" % rest)


class NdrWriter:
    def __init__(self):
        self.buf = bytearray()
        self._next_ref = 0x00020000

    def align(self, n):
        pad = (-len(self.buf)) % n
        self.buf.extend(b"\x00" * pad)

    def raw(self, data):
        self.buf.extend(data)
        return self

    def _pack(self, fmt, size, value):
        self.align(size)
        self.buf.extend(struct.pack("<" + fmt, value))
        return self

    def u8(self, v):
        return self._pack("B", 1, v)

    def u16(self, v):
        return self._pack("H", 2, v)

    def u32(self, v):
        return self._pack("I", 4, v & 0xFFFFFFFF)

    def i32(self, v):
        return self._pack("i", 4, v)

    def u64(self, v):
        return self._pack("Q", 8, v)

    def guid(self, value):
        self.align(4)
        self.buf.extend(str_to_guid(value) if isinstance(value, str) else bytes(value))
        return self

    def pointer(self, present=True):
        if not present:
            return self.u32(0)
        ref = self._next_ref
        self._next_ref += 4
        return self.u32(ref)

    def orpcthat(self, flags=0):
        """ORPCTHAT (MS-DCOM 2.2.13.4) with no extensions."""
        self.u32(flags)
        return self.pointer(False)

    def certtransblob(self, data):
        """An [out, ref] CERTTRANSBLOB*: cb, unique pb and (deferred, right after) the bytes."""
        data = bytes(data or b"")
        self.align(4)
        self.u32(len(data))
        if not data:
            return self.pointer(False)
        self.pointer(True)
        self.u32(len(data))
        self.buf.extend(data)
        return self

    def unique_wstring(self, text):
        if text is None:
            return self.pointer(False)
        self.pointer(True)
        chars = (text + "\x00").encode("utf-16-le")
        n = len(chars) // 2
        self.u32(n).u32(0).u32(n)
        self.buf.extend(chars)
        return self

    def bytes(self):
        return bytes(self.buf)
