"""
R10 (vulnerability disclosure): `wharf version` is the software bill of
materials of what runs, checked against sources that are not Wharf:

  - --deps: every library the binary links (its ELF NEEDED entries, read
    by readelf) has a line, and each version, as the library reports it at
    run time, is the upstream version of the Debian package that installed
    it (dpkg-query); libcurl's own libraries are listed too;
  - --sbom: CycloneDX 1.5 JSON; the binary's SHA-256 is the one sha256sum
    computes; the files it lists are exactly the shared objects the dynamic
    linker loads (ldd), each with its SHA-256 as on disk; every library has
    its version and a purl (argon2, which has no version call, says so);
    wharf depends on the linked ones, curl on its own.
"""
import json
import re
import subprocess

from conftest import sha256_file, wharf_bin_path

# wharf's name -> the Debian package the library comes from
PACKAGES = {
    "openssl": "libssl3", "sqlite": "libsqlite3-0", "jansson": "libjansson4",
    "zlib": "zlib1g", "glibc": "libc6", "curl": "libcurl4",
    "libpq": "libpq5", "libseccomp": "libseccomp2",
    "libqrencode": "libqrencode4", "http-parser": "libhttp-parser2.9",
    "libssh2": "libssh2-1", "libidn2": "libidn2-0", "brotli": "libbrotli1",
    "nghttp2": "libnghttp2-14", "zstd": "libzstd1",
}
# a NEEDED file name prefix -> wharf's name for its library
NEEDED = {
    "libssl.so": "openssl", "libcrypto.so": "openssl",
    "libsqlite3.so": "sqlite", "libjansson.so": "jansson", "libz.so": "zlib",
    "libc.so": "glibc", "libm.so": "glibc", "libpthread.so": "glibc",
    "libdl.so": "glibc", "librt.so": "glibc", "libcurl.so": "curl",
    "libpq.so": "libpq", "libseccomp.so": "libseccomp",
    "libqrencode.so": "libqrencode", "libhttp_parser.so": "http-parser",
    "libargon2.so": "argon2",
}
SANITIZERS = ("libasan.so", "libubsan.so", "libtsan.so", "libstdc++.so",
              "libgcc_s.so")


def upstream(version):
    """Debian's 1:1.2.13.dfsg-1 -> 1.2.13.dfsg (no epoch, no revision)."""
    v = version.split(":", 1)[-1]
    return v.rsplit("-", 1)[0] if "-" in v else v


def test_r10_version_deps_match_the_installed_packages(wharf):
    out = wharf.ok("version", "--deps").stdout.splitlines()
    assert re.match(r"^wharf \d+\.\d+\.\d+$", out[0]), out
    listed = {line.split()[0]: line.split()[1] for line in out[1:]}
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]",
                        subprocess.run(["readelf", "-d", str(wharf_bin_path())],
                                       capture_output=True, text=True,
                                       check=True).stdout)
    assert needed
    for lib in needed:
        if lib.startswith(SANITIZERS):
            continue
        name = next((n for p, n in NEEDED.items() if lib.startswith(p)),
                    None)
        assert name, f"{lib}: linked but not known to this test"
        assert name in listed, f"{lib} ({name}) missing from --deps: {out}"
    for name, pkg in PACKAGES.items():
        deb = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", pkg],
                             capture_output=True, text=True, check=True)
        assert upstream(deb.stdout).startswith(listed[name]), \
            (name, listed[name], pkg, deb.stdout)
    assert listed["argon2"] == "unknown"


def files_of(components):
    """{path: sha256} of every component that names a file, nested too."""
    found = {}
    for c in components:
        path = [p["value"] for p in c.get("properties", [])
                if p["name"] == "wharf:path"]
        if path:
            assert [h["alg"] for h in c["hashes"]] == ["SHA-256"], c
            found[path[0]] = c["hashes"][0]["content"]
        found.update(files_of(c.get("components", [])))
    return found


def ldd_paths(binary):
    paths = set()
    for line in subprocess.run(["ldd", str(binary)], capture_output=True,
                               text=True, check=True).stdout.splitlines():
        parts = line.split()
        if "=>" in parts and parts[parts.index("=>") + 1].startswith("/"):
            paths.add(parts[parts.index("=>") + 1])
        elif parts and parts[0].startswith("/"):
            paths.add(parts[0])
    return paths


def test_r10_sbom_is_cyclonedx_with_every_loaded_file_hashed(wharf):
    bom = json.loads(wharf.ok("version", "--sbom").stdout)
    assert bom["bomFormat"] == "CycloneDX" and bom["specVersion"] == "1.5"
    assert re.match(r"^urn:uuid:[0-9a-f-]{36}$", bom["serialNumber"])
    me = bom["metadata"]["component"]
    assert me["name"] == "wharf" and me["type"] == "application"
    assert me["hashes"] == [{"alg": "SHA-256",
                             "content": sha256_file(wharf_bin_path())}]
    files = files_of(bom["components"])
    assert set(files) == ldd_paths(wharf_bin_path()), \
        set(files) ^ ldd_paths(wharf_bin_path())
    for path, digest in files.items():
        assert digest == sha256_file(path), path
    libs = {c["name"]: c for c in bom["components"]
            if c["type"] == "library" and "components" in c}
    listed = dict(line.split()[:2] for line in
                  wharf.ok("version", "--deps").stdout.splitlines()[1:])
    for name, c in libs.items():
        if name == "argon2":
            assert "version" not in c and "no version call" in \
                c["properties"][0]["value"], c
            continue
        assert c["version"] == listed[name], (name, c)
        assert c["purl"] == f"pkg:generic/{name}@{c['version']}", c
        assert c["components"], f"{name}: no file"
    deps = {d["ref"]: set(d["dependsOn"]) for d in bom["dependencies"]}
    assert {"openssl", "sqlite", "curl", "libpq", "glibc"} <= deps["wharf"]
    assert {"nghttp2", "libssh2"} <= deps["curl"]
    assert deps["wharf"] | deps["curl"] == set(libs)
    p = wharf("version", "--deps", "--sbom")
    assert p.returncode == 2 and "not both" in p.stderr
