#!/usr/bin/env python3
"""Extract Kubernetes' protobuf descriptors from a kubectl binary.

Upstream's generated Go code (k8s.io/api, k8s.io/apimachinery, k8s.io/metrics)
registers every `generated.proto` as a gzipped FileDescriptorProto. kubectl
links all of them, so its binary is a convenient, exact source for the
descriptors of one Kubernetes release, including the gogoproto field options
(`nullable`, `customname`, ...) that the published .proto text no longer shows.

Usage: extract-descriptors.py KUBECTL_BINARY OUTPUT.pb.gz

Writes one google.protobuf.FileDescriptorSet (the FileDescriptorProtos are
copied byte for byte, sorted by file name), gzip-compressed with a fixed
timestamp so the output is reproducible.
"""
import gzip
import re
import sys
import zlib


def read_varint(buf, pos):
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return result, pos


def encode_varint(value):
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def file_name(descriptor):
    """Field 1 (name) of a FileDescriptorProto, if it comes first."""
    if not descriptor or descriptor[0] != 0x0A:
        return None
    length, pos = read_varint(descriptor, 1)
    try:
        return descriptor[pos : pos + length].decode()
    except UnicodeDecodeError:
        return None


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    data = open(sys.argv[1], "rb").read()
    found = {}
    for match in re.finditer(b"\x1f\x8b\x08", data):
        try:
            raw = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(
                data[match.start() : match.start() + 4 * 1024 * 1024]
            )
        except zlib.error:
            continue
        name = file_name(raw)
        if name and name.startswith("k8s.io/") and name.endswith("/generated.proto"):
            found[name] = raw
    if "k8s.io/api/core/v1/generated.proto" not in found:
        sys.exit("no Kubernetes descriptors found in " + sys.argv[1])
    out = bytearray()
    for name in sorted(found):
        out += b"\x0a" + encode_varint(len(found[name])) + found[name]
    with open(sys.argv[2], "wb") as f:
        f.write(gzip.compress(bytes(out), compresslevel=9, mtime=0))
    for name in sorted(found):
        print(name, file=sys.stderr)
    print(f"{len(found)} files, {len(out)} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
