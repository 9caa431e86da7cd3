#!/usr/bin/env python3
"""Writes a single-platform OCI image archive (oci-layout, index.json, manifest, config, one
uncompressed tar layer) that `ctr image import` accepts. Used for the native runc baseline and,
when the project's image tooling is missing, for the wasm example images.

    ociimage.py OUT.tar NAME --file SRC:/dest[:mode] ... --entrypoint /hello [--os linux --arch amd64]

Layer files are owned by root with a fixed mtime, so the same inputs give the same digests.
"""
import argparse
import hashlib
import io
import json
import tarfile
import time


def _blob(tar, data):
    digest = hashlib.sha256(data).hexdigest()
    info = tarfile.TarInfo(f"blobs/sha256/{digest}")
    info.size = len(data)
    info.mtime = 0
    tar.addfile(info, io.BytesIO(data))
    return {"digest": f"sha256:{digest}", "size": len(data)}


def _layer(files):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as layer:
        dirs = set()
        for dest, (data, mode) in sorted(files.items()):
            parts = dest.strip("/").split("/")
            for i in range(1, len(parts)):
                d = "/".join(parts[:i])
                if d not in dirs:
                    dirs.add(d)
                    info = tarfile.TarInfo(d)
                    info.type = tarfile.DIRTYPE
                    info.mode = 0o755
                    layer.addfile(info)
            info = tarfile.TarInfo(dest.strip("/"))
            info.size = len(data)
            info.mode = mode
            info.mtime = 0
            layer.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def write_image(out, name, files, entrypoint, cmd=None, os_="linux", arch="amd64", env=None):
    """files: {"/dest": (bytes, mode)}. Returns the manifest digest."""
    layer = _layer(files)
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = {
        "created": "1970-01-01T00:00:00Z",
        "architecture": arch,
        "os": os_,
        "config": {
            "Entrypoint": entrypoint,
            "Cmd": cmd or None,
            "Env": env or ["PATH=/"],
            "WorkingDir": "/",
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "ociimage.py"}],
    }
    with tarfile.open(out, "w") as tar:
        layer_desc = _blob(tar, layer)
        config_desc = _blob(tar, json.dumps(config, sort_keys=True).encode())
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config_desc},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **layer_desc}],
        }
        manifest_desc = _blob(tar, json.dumps(manifest, sort_keys=True).encode())
        index = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                **manifest_desc,
                "platform": {"architecture": arch, "os": os_},
                "annotations": {
                    "io.containerd.image.name": name,
                    "org.opencontainers.image.ref.name": name.rsplit(":", 1)[-1],
                },
            }],
        }
        for fname, data in (("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'),
                            ("index.json", json.dumps(index, sort_keys=True).encode())):
            info = tarfile.TarInfo(fname)
            info.size = len(data)
            info.mtime = int(time.time())
            tar.addfile(info, io.BytesIO(data))
    return manifest_desc["digest"]


def describe(path):
    """[(image name, "os/arch", entrypoint + cmd)] of the manifests an OCI archive's index.json
    names, one level of nested indexes deep (multi-platform images)."""
    out = []
    with tarfile.open(path) as tar:
        def read(name):
            return json.load(tar.extractfile(name))
        index = read("index.json")
        for m in index.get("manifests", []):
            name = m.get("annotations", {}).get("io.containerd.image.name", "")
            if m.get("mediaType", "").endswith("index.v1+json") or \
                    m.get("mediaType", "").endswith("manifest.list.v2+json"):
                sub = read("blobs/" + m["digest"].replace(":", "/"))
                manifests = sub.get("manifests", [])
            else:
                manifests = [m]
            for desc in manifests:
                man = read("blobs/" + desc["digest"].replace(":", "/"))
                cfg = read("blobs/" + man["config"]["digest"].replace(":", "/"))
                plat = desc.get("platform") or {"os": cfg.get("os", ""),
                                                 "architecture": cfg.get("architecture", "")}
                c = cfg.get("config") or {}
                argv = (c.get("Entrypoint") or []) + (c.get("Cmd") or [])
                out.append((name, f"{plat.get('os', '')}/{plat.get('architecture', '')}", argv))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("name")
    ap.add_argument("--file", action="append", default=[], help="SRC:/dest[:octal mode]")
    ap.add_argument("--entrypoint", required=True)
    ap.add_argument("--os", default="linux")
    ap.add_argument("--arch", default="amd64")
    a = ap.parse_args()
    files = {}
    for spec in a.file:
        parts = spec.split(":")
        mode = int(parts[2], 8) if len(parts) > 2 else 0o755
        with open(parts[0], "rb") as f:
            files[parts[1]] = (f.read(), mode)
    print(write_image(a.out, a.name, files, [a.entrypoint], os_=a.os, arch=a.arch))


if __name__ == "__main__":
    main()
