#!/usr/bin/env python3
"""The layering rules of Package.swift's header, checked on the package and on the built binaries.

1. Every module declares what it imports: each `import X` in a target's sources names one of its
   dependencies in Package.swift (a target or a product), or a module of the toolchain. A module
   that reaches another only through a third one breaks as soon as the third one drops it.
2. `wasmletctl` and the shim never depend on WasmletRuntime or a WasmKit product, and the shim on
   nothing of swift-nio or swift-protobuf nor on a module that imports Foundation: checked on
   the dependency graph from `swift package describe`.
   The daemon's modules point one way: WasmletStore depends on no service, containerd, daemon,
   ttrpc or API module nor on swift-nio or swift-protobuf, and imports none of them;
   WasmletService never depends on WasmletContainerd or WasmletDaemon; WasmletContainerd never
   on WasmletDaemon.
3. The same on the executables themselves: the Swift modules a binary defines or references a
   symbol of (read from `nm`), and the shared libraries it loads (`ldd`). A control checks that
   the detection sees WasmKit and NIO in wasmletd, so an empty reading cannot pass.
4. Both APIs sit on one instance service with value types: WasmletService's InstanceService.swift
   imports no message or wire module (WasmletAPI, WasmletTTRPC, swift-protobuf, NIO), and
   WasmletContainerd's sources name no wasmlet.v1 message (`Wasmlet_V1_`): containerd's task
   service never builds wasmletctl's messages to unpack them again in the same process.

Usage: scripts/check-layering.py [--bin-path DIR] [--describe FILE]
Run after `swift build` (scripts/test.sh does); exits 1 and names every violation.
"""

import argparse
import json
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Modules of the toolchain: importable without a declaration.
TOOLCHAIN = {
    "Swift", "SwiftShims", "_Concurrency", "_StringProcessing", "RegexBuilder", "Observation",
    "Synchronization", "Distributed", "Dispatch", "Foundation", "FoundationEssentials",
    "FoundationInternationalization", "FoundationNetworking", "FoundationXML", "Glibc", "Musl",
    "Darwin", "Android", "Bionic", "WinSDK", "ucrt", "CRT", "os", "Testing", "XCTest",
}
FOUNDATION = {"Foundation", "FoundationEssentials", "FoundationInternationalization", "FoundationNetworking",
              "FoundationXML", "CoreFoundation", "_FoundationCShims", "_FoundationCollections"}
WASMKIT_MODULES = {"WasmKit", "WasmKitWASI", "WASI", "WasmParser", "WAT", "WasmTypes", "SystemExtras",
                   "_CWasmKit", "WIT", "WasmletRuntime"}
# What the durable-state engine must never reach: the wire, the services above it, the wiring.
STORE_FORBIDDEN = {"WasmletTTRPC", "WasmletAPI", "WasmletService", "WasmletContainerd", "WasmletDaemon"}
FOUNDATION_LIBRARIES = re.compile(r"lib(_?Foundation\w*|_FoundationICU)\.so")

IMPORT = re.compile(
    r"^\s*(?:@\w+(?:\([^)]*\))?\s+)*import\s+(?:(?:typealias|struct|class|enum|protocol|let|var|func)\s+)?"
    r"([A-Za-z_][A-Za-z0-9_]*)", re.MULTILINE)
PRODUCT = re.compile(r'\.product\(\s*name:\s*"([^"]+)"\s*,\s*package:\s*"([^"]+)"\s*\)')
# Multi-line string literals (tests embed Python and TOML in them) and block comments.
STRING_OR_COMMENT = re.compile(r'(#*)"""[\s\S]*?"""\1|/\*[\s\S]*?\*/')
SWIFT_SYMBOL = re.compile(r"^\$s(\d+)([A-Za-z_][A-Za-z0-9_]*)")


def is_nio(module):
    return module.startswith(("NIO", "_NIO", "CNIO"))


def is_protobuf(module):
    return module.startswith("SwiftProtobuf")


def describe(path):
    if path:
        with open(path) as f:
            return json.load(f)
    out = subprocess.run(["swift", "package", "describe", "--type", "json"], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out[out.index("{"):])


def imports_of(target):
    found = {}
    base = os.path.join(ROOT, target["path"])
    for source in target.get("sources", []):
        if not source.endswith(".swift"):
            continue
        with open(os.path.join(base, source), encoding="utf-8") as f:
            text = STRING_OR_COMMENT.sub("", f.read())
        for match in IMPORT.finditer(text):
            found.setdefault(match.group(1), source)
    return found


def check_imports(targets, problems):
    by_name = {t["name"]: t for t in targets}
    for target in targets:
        if target.get("module_type") != "SwiftTarget":
            continue
        declared = {by_name[name]["c99name"] for name in target.get("target_dependencies", []) if name in by_name}
        declared |= set(target.get("product_dependencies", []))
        declared.add(target["c99name"])
        for module, source in sorted(imports_of(target).items()):
            if module not in declared and module not in TOOLCHAIN:
                problems.append(f"{target['name']}: {target['path']}/{source} imports {module}, "
                                f"which is not among its dependencies in Package.swift")


def closure(targets, start):
    """The targets and products `start` depends on, directly or not (within this package)."""
    by_name = {t["name"]: t for t in targets}
    seen, products, todo = set(), set(), [start]
    while todo:
        name = todo.pop()
        if name in seen or name not in by_name:
            continue
        seen.add(name)
        products |= set(by_name[name].get("product_dependencies", []))
        todo.extend(by_name[name].get("target_dependencies", []))
    return seen, products


def check_graph(targets, product_packages, problems):
    by_name = {t["name"]: t for t in targets}
    rules = {
        "wasmletctl": (lambda t: t == "WasmletRuntime", {"WasmKit"}, False),
        "containerd-shim-wasmlet-v1": (lambda t: t in {"WasmletRuntime", "WasmletTTRPC", "WasmletAPI"},
                                       {"WasmKit", "swift-nio", "swift-protobuf"}, True),
        # The daemon's modules, lowest first; no arrow points back up.
        "WasmletStore": (lambda t: t in STORE_FORBIDDEN, {"swift-nio", "swift-protobuf"}, False),
        "WasmletService": (lambda t: t in {"WasmletContainerd", "WasmletDaemon"}, set(), False),
        "WasmletContainerd": (lambda t: t == "WasmletDaemon", set(), False),
    }
    if "WasmletStore" in by_name:
        for module, source in sorted(imports_of(by_name["WasmletStore"]).items()):
            if is_nio(module) or is_protobuf(module) or module in STORE_FORBIDDEN:
                problems.append(f"WasmletStore: {source} imports {module} (the store knows no protobuf, NIO or ttrpc)")
    for executable, (bad_target, bad_packages, no_foundation) in rules.items():
        if executable not in by_name:
            problems.append(f"{executable}: no such target in Package.swift")
            continue
        reached, products = closure(targets, executable)
        for target in sorted(reached):
            if bad_target(target):
                problems.append(f"{executable} depends on {target} (Package.swift)")
            if no_foundation:
                found = set(imports_of(by_name[target])) & FOUNDATION
                if found:
                    problems.append(f"{executable} depends on {target}, which imports {', '.join(sorted(found))}")
        for product in sorted(products):
            package = product_packages.get(product, "?")
            if package in bad_packages:
                problems.append(f"{executable} depends on {product} of {package} (Package.swift)")


def check_value_seam(targets, problems):
    by_name = {t["name"]: t for t in targets}
    service = by_name.get("WasmletService")
    containerd = by_name.get("WasmletContainerd")
    if service is None or containerd is None:
        problems.append("WasmletService or WasmletContainerd: no such target in Package.swift")
        return
    path = os.path.join(ROOT, service["path"], "InstanceService.swift")
    if not os.path.exists(path):
        problems.append("WasmletService: no InstanceService.swift (the one instance service under both APIs)")
    else:
        with open(path, encoding="utf-8") as f:
            text = STRING_OR_COMMENT.sub("", f.read())
        for match in IMPORT.finditer(text):
            module = match.group(1)
            if module in {"WasmletAPI", "WasmletTTRPC"} or is_protobuf(module) or is_nio(module):
                problems.append(f"WasmletService: InstanceService.swift imports {module} (its calls take and give value types)")
    base = os.path.join(ROOT, containerd["path"])
    for source in containerd.get("sources", []):
        if not source.endswith(".swift"):
            continue
        with open(os.path.join(base, source), encoding="utf-8") as f:
            text = STRING_OR_COMMENT.sub("", f.read())
        if "Wasmlet_V1_" in text:
            problems.append(f"WasmletContainerd: {source} uses a wasmlet.v1 message (call InstanceService with value types)")


def swift_modules(binary):
    """Modules with a symbol the binary defines or references (from the leading mangled name)."""
    out = subprocess.run(["nm", "-j" if sys.platform == "darwin" else "--format=just-symbols", binary],
                         check=True, capture_output=True, text=True).stdout
    modules = set()
    for line in out.splitlines():
        match = SWIFT_SYMBOL.match(line.strip())
        if match:
            modules.add(match.group(2)[: int(match.group(1))])
        elif line.startswith(("CNIO", "c_nio_")):
            modules.add("CNIO")
    return modules


def shared_libraries(binary):
    out = subprocess.run(["ldd", binary], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def check_binaries(bin_path, problems):
    def binary(name):
        path = os.path.join(bin_path, name)
        if not os.path.exists(path):
            problems.append(f"{path} is not built; run swift build first")
            return None
        return path

    readings = {}
    for name in ("wasmletd", "wasmletctl", "containerd-shim-wasmlet-v1"):
        path = binary(name)
        if path:
            readings[name] = (swift_modules(path), shared_libraries(path))
    if "wasmletd" in readings:
        modules = readings["wasmletd"][0]
        if "WasmKit" not in modules or "NIOCore" not in modules:
            problems.append("control: the symbols of wasmletd show no WasmKit or no NIOCore, so this check "
                            f"cannot see what a binary links (found: {sorted(modules)[:20]})")
        if "WAT" in modules:
            # The pod sandbox's module is embedded as bytes (SandboxModule.swift).
            problems.append("wasmletd links WasmKit's WAT text parser; it needs none")
    if "wasmletctl" in readings:
        modules, _ = readings["wasmletctl"]
        if "WasmletClient" not in modules:
            problems.append("control: wasmletctl's symbols do not even show WasmletClient")
        for module in sorted(modules & WASMKIT_MODULES):
            problems.append(f"wasmletctl links {module} (it must never link the engine)")
    if "containerd-shim-wasmlet-v1" in readings:
        modules, libraries = readings["containerd-shim-wasmlet-v1"]
        if "WasmletShim" not in modules:
            problems.append("control: the shim's symbols do not even show WasmletShim")
        for module in sorted(modules):
            if module in WASMKIT_MODULES or module in FOUNDATION or is_nio(module) or is_protobuf(module) \
                    or module in {"WasmletTTRPC", "WasmletAPI"}:
                problems.append(f"containerd-shim-wasmlet-v1 links {module} (standard library and libc only)")
        for library in libraries:
            if FOUNDATION_LIBRARIES.search(library):
                problems.append(f"containerd-shim-wasmlet-v1 loads {library} (no Foundation)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin-path", help="where swift build put the executables (default: swift build --show-bin-path)")
    parser.add_argument("--describe", help="the output of swift package describe --type json, instead of running it")
    args = parser.parse_args()

    package = describe(args.describe)
    targets = package["targets"]
    with open(os.path.join(ROOT, "Package.swift")) as f:
        product_packages = dict(PRODUCT.findall(f.read()))
    problems = []
    check_imports(targets, problems)
    check_graph(targets, product_packages, problems)
    check_value_seam(targets, problems)
    bin_path = args.bin_path or subprocess.run(
        ["swift", "build", "--show-bin-path"], cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()
    check_binaries(bin_path, problems)

    if problems:
        print("layering: %d problem(s)" % len(problems))
        for problem in problems:
            print("  - " + problem)
        return 1
    print(f"layering: ok ({len(targets)} targets' imports declared; the store reaches no protobuf, NIO or "
          f"ttrpc; containerd's tasks reach the instance service without wasmlet.v1 messages; wasmletctl and the shim in {bin_path} link no WasmKit, wasmletd no WAT parser; the shim no "
          "Foundation, NIO or protobuf)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
