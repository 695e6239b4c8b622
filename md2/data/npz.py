"""An npz writer whose members are compressed by the caller's threads: np.savez_compressed's format (a zip of
.npy files, deflated), any number of arrays written one after another.

zipfile compresses each member in the thread that writes the archive; export-gt's maps then queue behind one
core's deflate. Here :func:`deflate_npy` (zlib releases the GIL) runs in the worker threads beside the lidar
projection and :class:`NpzWriter` only appends the finished members. The zip structures (local headers, the
central directory, the end record) follow PKWARE's APPNOTE; every zip reader and ``np.load`` read the result.
Archives stay below the plain zip format's limits (4 GB, 65,535 members): far above any KITTI split's maps.
"""

from __future__ import annotations

import io
import struct
import time
import zlib
from typing import BinaryIO, NamedTuple

import numpy as np

LOCAL_HEADER = struct.Struct("<IHHHHHIIIHH")
CENTRAL_HEADER = struct.Struct("<IHHHHHHIIIHHHHHII")
END_RECORD = struct.Struct("<IHHHHIIH")
VERSION = 20  # 2.0: deflate
DEFLATED = 8
LIMIT = 0xFFFFFFFF  # sizes and offsets are 32-bit without zip64
MAX_MEMBERS = 0xFFFF


class DeflatedMember(NamedTuple):
    """One .npy file, compressed: raw deflate data with its CRC-32 and uncompressed size."""

    data: bytes
    crc: int
    size: int


def deflate_npy(array: np.ndarray, level: int) -> DeflatedMember:
    """``array`` as a .npy file (format 1.0, C order, no pickles), deflated at ``level``."""
    array = np.asarray(array)
    array = array if array.flags.c_contiguous else array.copy(order="C")  # (ascontiguousarray makes 0-d 1-d)
    if array.dtype.hasobject:
        raise ValueError("object arrays are not written (they would need pickles)")
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, np.lib.format.header_data_from_array_1_0(array))
    compressor = zlib.compressobj(level, zlib.DEFLATED, -15)  # raw deflate, as zip stores it
    body = memoryview(array.reshape(-1)).cast("B")
    data = compressor.compress(header.getvalue()) + compressor.compress(body) + compressor.flush()
    crc = zlib.crc32(body, zlib.crc32(header.getvalue()))
    return DeflatedMember(data, crc, header.tell() + body.nbytes)


class NpzWriter:
    """Appends deflated members to ``stream`` (opened "wb", positioned at 0); :meth:`close` writes the central
    directory. Member names get the ".npy" suffix, as np.savez gives them."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self.entries: list[tuple[bytes, DeflatedMember, int]] = []
        self.offset = 0
        self.time, self.date = _dos_time(time.localtime())

    def add(self, key: str, member: DeflatedMember) -> None:
        name = f"{key}.npy".encode()
        if len(self.entries) >= MAX_MEMBERS or max(member.size, self.offset + len(member.data)) > LIMIT:
            raise ValueError("npz too large for a plain zip (4 GB or 65,535 arrays)")
        header = LOCAL_HEADER.pack(0x04034B50, VERSION, 0, DEFLATED, self.time, self.date, member.crc,
                                   len(member.data), member.size, len(name), 0)
        self.stream.write(header + name)
        self.stream.write(member.data)
        self.entries.append((name, member, self.offset))
        self.offset += len(header) + len(name) + len(member.data)

    def close(self) -> None:
        start = self.offset
        for name, member, offset in self.entries:
            self.stream.write(CENTRAL_HEADER.pack(0x02014B50, VERSION, VERSION, 0, DEFLATED, self.time, self.date,
                                                  member.crc, len(member.data), member.size, len(name), 0, 0, 0,
                                                  0, 0o600 << 16, offset) + name)
            self.offset += CENTRAL_HEADER.size + len(name)
        if self.offset > LIMIT:
            raise ValueError("npz too large for a plain zip (4 GB)")
        count = len(self.entries)
        self.stream.write(END_RECORD.pack(0x06054B50, 0, 0, count, count, self.offset - start, start, 0))


def _dos_time(now: time.struct_time) -> tuple[int, int]:
    """MS-DOS time and date fields of a zip header (2-second resolution, years from 1980)."""
    clock = (now.tm_hour << 11) | (now.tm_min << 5) | (now.tm_sec // 2)
    day = ((max(now.tm_year, 1980) - 1980) << 9) | (now.tm_mon << 5) | now.tm_mday
    return clock, day
