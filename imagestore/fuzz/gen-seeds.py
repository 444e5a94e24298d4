#!/usr/bin/env python3
"""Write the fuzz targets' seed corpora into seeds/<target>/ (small files).

Structured seeds (import_archive, import_layout) use the text format of
fuzz_targets/common/mod.rs; raw seeds (import_raw) are real tiny archives
(docker save legacy and Docker 25+, OCI archive, gzip/zstd-wrapped); layer
seeds (apply_layer) are layer tars, hostile ones included, and the small
layers of vendor-images/compat.tar. Run from anywhere; it is idempotent.
"""
import gzip
import hashlib
import io
import json
import os
import subprocess
import tarfile

HERE = os.path.dirname(os.path.abspath(__file__))
SEEDS = os.path.join(HERE, "seeds")
VENDOR = os.path.join(HERE, "..", "..", "vendor-images", "compat.tar")
SEP = b"\n--8<--\n"


def trim(data):
    """Drop tarfile's record padding: keep the two zero end blocks only."""
    end = len(data.rstrip(b"\0"))
    end = (end + 511) // 512 * 512
    return data[:end] + b"\0" * 1024


def layer(members):
    """A layer tar from (name, kind, data_or_target) tuples."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, kind, arg in members:
            ti = tarfile.TarInfo(name)
            ti.mtime = 1600000000
            ti.mode = 0o755 if kind == "dir" else 0o644
            if kind == "dir":
                ti.type = tarfile.DIRTYPE
                t.addfile(ti)
            elif kind == "file":
                ti.size = len(arg)
                t.addfile(ti, io.BytesIO(arg))
            elif kind == "sym":
                ti.type = tarfile.SYMTYPE
                ti.linkname = arg
                t.addfile(ti)
            elif kind == "hard":
                ti.type = tarfile.LNKTYPE
                ti.linkname = arg
                t.addfile(ti)
            elif kind == "fifo":
                ti.type = tarfile.FIFOTYPE
                t.addfile(ti)
            elif kind == "chr":
                ti.type = tarfile.CHRTYPE
                ti.devmajor, ti.devminor = arg
                t.addfile(ti)
    return trim(buf.getvalue())


BASIC = layer([
    ("bin", "dir", None),
    ("bin/sh", "file", b"#!/bin/true\n"),
    ("bin/ash", "hard", "bin/sh"),
    ("etc", "dir", None),
    ("etc/hostname", "file", b"fuzz\n"),
    ("lib", "sym", "usr/lib"),
    ("run/fifo", "fifo", None),
])
UPPER = layer([
    ("etc/.wh.hostname", "file", b""),
    ("bin/.wh..wh..opq", "file", b""),
    ("bin/busybox", "file", b"x" * 100),
    ("dev/null", "chr", (1, 3)),
    ("gone", "chr", (0, 0)),
])
HOSTILE = layer([
    ("../../escape", "file", b"out\n"),
    ("/abs/file", "file", b"abs\n"),
    ("link", "sym", "/"),
    ("link/etc/passwd", "file", b"through a symlink\n"),
    ("rel", "sym", "../../../.."),
    ("rel/x", "file", b"x\n"),
    ("hl", "hard", "/etc/shadow"),
    ("hl2", "hard", "../../outside"),
    (".wh..", "file", b""),
    ("a/.wh.", "file", b""),
    ("dir", "dir", None),
    ("dir", "file", b"replaces a dir\n"),
    ("dir/x", "file", b"under a file\n"),
])
CONFIG = '{"architecture":"amd64","os":"linux","config":{"Cmd":["/bin/sh"]},"rootfs":{"type":"layers","diff_ids":[%s]}}'
OCI_MANIFEST = ('{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",'
                '"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"@%d","size":#%d},'
                '"layers":[%s]}')
OCI_LAYER = '{"mediaType":"application/vnd.oci.image.layer.v1.tar%s","digest":"@%d","size":#%d}'
INDEX = ('{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[%s]}')
DESC = '{"mediaType":"%s","digest":"@%d","size":#%d%s}'
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_INDEX = "application/vnd.oci.image.index.v1+json"
REF = ',"annotations":{"org.opencontainers.image.ref.name":"fz:1"}'


def spec(flags, entries):
    parts = [name.encode() + b"\n" + (data if isinstance(data, bytes) else data.encode())
             for name, data in entries]
    return bytes([flags]) + SEP.join(parts)


def structured():
    out = {}
    out["legacy"] = spec(0, [
        ("l0/layer.tar", BASIC),
        ("l1/layer.tar", UPPER),
        ("config.json", CONFIG % '"%0","%1"'),
        ("manifest.json", '[{"Config":"config.json","RepoTags":["fz:1"],"Layers":["l0/layer.tar","l1/layer.tar"]}]'),
    ])
    out["legacy-symlink-gzip-wrapped"] = spec(1, [
        ("!l0/layer.tar", BASIC),
        ("l1/layer.tar -> ../l0/layer.tar", b""),
        ("config.json", CONFIG % '"%0","%0"'),
        ("manifest.json", '[{"Config":"config.json","RepoTags":["fz:2"],"Layers":["l0/layer.tar","l1/layer.tar"]}]'),
    ])
    out["legacy-hostile-zstd-wrapped"] = spec(2, [
        ("l0/layer.tar", HOSTILE),
        ("config.json", CONFIG % '"%0"'),
        ("manifest.json", '[{"Config":"config.json","Layers":["l0/layer.tar"]}]'),
    ])
    oci = [
        ("!blobs/sha256/@0", BASIC),
        ("blobs/sha256/@1", UPPER),
        ("blobs/sha256/@2", CONFIG % '"%0","%1"'),
        ("blobs/sha256/@3", OCI_MANIFEST % (2, 2, OCI_LAYER % ("+gzip", 0, 0) + "," + OCI_LAYER % ("", 1, 1))),
        ("index.json", INDEX % (DESC % (MT_MANIFEST, 3, 3, REF))),
        ("oci-layout", '{"imageLayoutVersion":"1.0.0"}'),
    ]
    out["oci"] = spec(0, oci)
    out["oci-gzip-wrapped"] = spec(1, oci)
    out["docker25"] = spec(0, oci[:5] + [
        ("manifest.json", '[{"Config":"blobs/sha256/$2","RepoTags":["fz:25"],"Layers":["blobs/sha256/$0","blobs/sha256/$1"]}]'),
    ])
    plat = ',"platform":{"architecture":"%s","os":"linux"}'
    out["oci-nested-multiplatform"] = spec(0, oci[:4] + [
        ("blobs/sha256/@4", INDEX % (DESC % (MT_MANIFEST, 3, 3, plat % "amd64") + "," + DESC % (MT_MANIFEST, 3, 3, plat % "arm64"))),
        ("index.json", INDEX % (DESC % (MT_INDEX, 4, 4, REF))),
    ])
    out["oci-hostile-symlinks"] = spec(0, [
        ("blobs/sha256/@0", HOSTILE),
        ("blobs/sha256/@1", CONFIG % '"%0"'),
        ("blobs/sha256/@2", OCI_MANIFEST % (1, 1, OCI_LAYER % ("", 0, 0))),
        ("index.json", INDEX % (DESC % (MT_MANIFEST, 2, 2, ""))),
        ("blobs/sha256/escape -> /etc/passwd", b""),
        ("blobs/sha256/loop -> loop", b""),
    ])
    return out


def tar_of(files):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
        for name, data in files:
            if isinstance(data, tuple):
                ti = tarfile.TarInfo(name)
                ti.type = tarfile.SYMTYPE
                ti.linkname = data[1]
                t.addfile(ti)
                continue
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            ti.mode = 0o644
            t.addfile(ti, io.BytesIO(data))
    return trim(buf.getvalue())


def sha(b):
    return hashlib.sha256(b).hexdigest()


def raw():
    cfg = (CONFIG % ('"sha256:%s","sha256:%s"' % (sha(BASIC), sha(UPPER)))).encode()
    legacy = tar_of([
        ("a/layer.tar", BASIC), ("b/layer.tar", UPPER), ("c/layer.tar", ("sym", "../a/layer.tar")),
        (sha(cfg) + ".json", cfg),
        ("manifest.json", json.dumps([{"Config": sha(cfg) + ".json", "RepoTags": ["raw:1"],
                                       "Layers": ["a/layer.tar", "b/layer.tar"]}]).encode()),
    ])
    gz = gzip.compress(BASIC, mtime=0)
    cfg1 = (CONFIG % ('"sha256:%s"' % sha(BASIC))).encode()
    man = json.dumps({
        "schemaVersion": 2, "mediaType": MT_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "sha256:" + sha(cfg1), "size": len(cfg1)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": "sha256:" + sha(gz), "size": len(gz)}],
    }).encode()
    index = json.dumps({"schemaVersion": 2, "manifests": [{"mediaType": MT_MANIFEST, "digest": "sha256:" + sha(man), "size": len(man)}]}).encode()
    oci_files = [("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'), ("blobs/sha256/" + sha(gz), gz),
                 ("blobs/sha256/" + sha(cfg1), cfg1), ("blobs/sha256/" + sha(man), man), ("index.json", index)]
    oci = tar_of(oci_files)
    docker25 = tar_of(oci_files + [("manifest.json", json.dumps([{
        "Config": "blobs/sha256/" + sha(cfg1), "RepoTags": ["raw:25"], "Layers": ["blobs/sha256/" + sha(gz)]}]).encode())])
    zst = subprocess.run(["zstd", "-q", "-c", "-1"], input=legacy, stdout=subprocess.PIPE, check=True).stdout
    return {
        "docker-legacy.tar": legacy,
        "docker-legacy.tar.gz": gzip.compress(legacy, mtime=0),
        "docker-legacy.tar.zst": zst,
        "oci-archive.tar": oci,
        "docker25.tar": docker25,
        "not-an-archive.json": b'{"manifests":[]}',
    }


def layers():
    out = {"basic.tar": BASIC, "whiteouts.tar": UPPER, "hostile.tar": HOSTILE,
           "basic.tar.gz": gzip.compress(BASIC, mtime=0)}
    if os.path.exists(VENDOR):
        with tarfile.open(VENDOR) as t:
            for m in t.getmembers():
                if m.name.endswith("layer.tar") and m.isfile() and m.size <= 64 * 1024:
                    data = t.extractfile(m).read()
                    out["compat-" + m.name.split("/")[0][:12] + ".tar"] = data
    return out


def write(target, files):
    d = os.path.join(SEEDS, target)
    os.makedirs(d, exist_ok=True)
    for name, data in files.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    s = structured()
    write("import_archive", s)
    write("import_layout", s)
    write("import_raw", raw())
    write("apply_layer", layers())
