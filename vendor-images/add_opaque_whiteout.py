#!/usr/bin/env python3
"""Insert an overlay opaque-directory marker into a `docker save` archive.

usage: add_opaque_whiteout.py IN.tar OUT.tar DIR

DIR is a directory path inside the image, e.g. data/replaced. The script
finds the topmost layer whose layer.tar has a directory entry for DIR and
inserts an empty regular-file entry DIR/.wh..wh..opq immediately after it,
which is what Docker's overlay2 driver emits for a directory that was removed
and recreated in that layer. It then fixes the layer's diff_id in the image
config, renames the config to its new digest and rewrites manifest.json.

Why: on this machine Docker uses the fuse-overlayfs storage driver, whose
layer diff drops the opaque marker, so `docker build` alone cannot produce it.

If that layer already contains DIR/.wh..wh..opq, OUT is a plain copy of IN.
Only the legacy `docker save` layout (manifest.json + <id>/layer.tar) is
handled; layer tars are patched at the byte level, so every other tar entry
stays byte-for-byte the same.
"""

import hashlib
import io
import json
import shutil
import sys
import tarfile

BLOCK = 512
OPQ = ".wh..wh..opq"


def octal(field: bytes) -> int:
    if field and field[0] & 0x80:  # GNU base-256
        return int.from_bytes(bytes([field[0] & 0x7F]) + field[1:], "big")
    text = field.split(b"\0", 1)[0].strip()
    return int(text, 8) if text else 0


def cstr(field: bytes) -> str:
    return field.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def pax_records(data: bytes) -> dict:
    out, pos = {}, 0
    while pos < len(data):
        sp = data.index(b" ", pos)
        length = int(data[pos:sp])
        key, _, value = data[sp + 1 : pos + length - 1].partition(b"=")
        out[key.decode()] = value.decode("utf-8", "surrogateescape")
        pos += length
    return out


def entries(layer: bytes):
    """Yield (name, typeflag, header_offset, header_bytes) for each entry."""
    pos, long_name, pax = 0, None, {}
    while pos + BLOCK <= len(layer):
        hdr = layer[pos : pos + BLOCK]
        if hdr == b"\0" * BLOCK:
            return
        size = octal(hdr[124:136])
        typeflag = hdr[156:157]
        body = layer[pos + BLOCK : pos + BLOCK + size]
        nxt = pos + BLOCK + (size + BLOCK - 1) // BLOCK * BLOCK
        if typeflag == b"x":
            pax = pax_records(body)
        elif typeflag == b"L":
            long_name = body.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
        elif typeflag == b"g":
            pass
        else:
            name = cstr(hdr[0:100])
            if hdr[257:263] in (b"ustar\x00", b"ustar ") and hdr[345:500].strip(b"\0"):
                name = cstr(hdr[345:500]) + "/" + name
            name = pax.get("path", long_name or name)
            yield name, typeflag, pos, hdr
            long_name, pax = None, {}
        pos = nxt


def norm(path: str) -> str:
    return path.strip("/").removeprefix("./")


def patch_layer(layer: bytes, directory: str):
    """Return patched layer bytes, 'present' if already opaque, None if DIR absent."""
    target = norm(directory)
    found = None
    for name, typeflag, pos, hdr in entries(layer):
        if norm(name) == target + "/" + OPQ:
            return "present"
        if norm(name) == target and typeflag == b"5":
            found = (name, pos, hdr)
    if found is None:
        return None
    name, pos, hdr = found
    info = tarfile.TarInfo(name.rstrip("/") + "/" + OPQ)
    info.type = tarfile.REGTYPE
    info.size = 0
    info.mode = octal(hdr[100:108]) & 0o777  # overlay2 copies the dir's permission bits
    info.uid = octal(hdr[108:116])
    info.gid = octal(hdr[116:124])
    info.uname = cstr(hdr[265:297])
    info.gname = cstr(hdr[297:329])
    info.mtime = octal(hdr[136:148])
    new_hdr = info.tobuf(format=tarfile.USTAR_FORMAT, encoding="utf-8", errors="strict")
    assert len(new_hdr) == BLOCK
    cut = pos + BLOCK  # a directory entry has no data blocks
    return layer[:cut] + new_hdr + layer[cut:]


def main() -> int:
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    src, dst, directory = sys.argv[1:]

    with tarfile.open(src, "r:") as outer:
        members = outer.getmembers()
        blobs = {m.name: outer.extractfile(m).read() for m in members if m.isfile()}

    manifest = json.loads(blobs["manifest.json"])
    if len(manifest) != 1:
        raise SystemExit("expected exactly one image in the archive")
    image = manifest[0]
    config_name = image["Config"]
    config = blobs[config_name]
    diff_ids = json.loads(config)["rootfs"]["diff_ids"]

    for index in reversed(range(len(image["Layers"]))):
        layer_name = image["Layers"][index]
        result = patch_layer(blobs[layer_name], directory)
        if result is None:
            continue
        if result == "present":
            print(f"{layer_name}: {directory}/{OPQ} already present; archive unchanged")
            shutil.copyfile(src, dst)
            return 0
        break
    else:
        raise SystemExit(f"no layer has a directory entry for {directory}")

    old_id = "sha256:" + hashlib.sha256(blobs[layer_name]).hexdigest()
    new_id = "sha256:" + hashlib.sha256(result).hexdigest()
    if diff_ids[index] != old_id:
        raise SystemExit(f"diff_id mismatch for {layer_name}: {diff_ids[index]} != {old_id}")
    if config.count(old_id.encode()) != 1:
        raise SystemExit("old diff_id does not occur exactly once in the config")
    new_config = config.replace(old_id.encode(), new_id.encode())
    new_config_name = hashlib.sha256(new_config).hexdigest() + ".json"
    image["Config"] = new_config_name

    blobs[layer_name] = result
    blobs[new_config_name] = new_config
    blobs["manifest.json"] = json.dumps(manifest, separators=(",", ":")).encode()

    with tarfile.open(dst, "w:", format=tarfile.USTAR_FORMAT) as out:
        for m in members:
            name = new_config_name if m.name == config_name else m.name
            info = tarfile.TarInfo(name)
            info.mtime, info.mode, info.uid, info.gid = m.mtime, m.mode, m.uid, m.gid
            info.uname, info.gname = m.uname, m.gname
            if m.isdir():
                info.type = tarfile.DIRTYPE
                out.addfile(info)
            else:
                data = blobs[name]
                info.size = len(data)
                out.addfile(info, io.BytesIO(data))

    print(f"{layer_name}: inserted {directory}/{OPQ}")
    print(f"  layer diff_id {old_id} -> {new_id}")
    print(f"  image id sha256:{config_name[:-5]} -> sha256:{new_config_name[:-5]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
