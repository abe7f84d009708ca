"""
An independent reader of Wharf's backup files (R20), written from the
format description at the top of src/core/backup_format.c, the sealed
blob of src/vault/seal.c and the key block of src/vault/backup_key.c, with
Python's cryptography package and the openssl CLI only (no Wharf code):
proof that the documented format is the real one and that a backup can be
opened without Wharf.

    keys = keystore_keys(text)                  # master and audit keys
    ckey = content_key_master(info, keyblock, keys)   or
    ckey, keys = content_key_cms(keyblock, private_key_path)
    backup = read(path, ckey)                   # entries, trailer; checks
    verify_signature(backup, keys)              # manifest + Ed25519
"""
import hashlib
import json
import struct
import subprocess
import tempfile

from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey)
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

SEGMENT = 65536
TAG = 16


class Backup:
    def __init__(self):
        self.info = None
        self.keyblock = b""
        self.header_hash = b""
        self.entries = []           # (kind, name, bytes)
        self.trailer = None         # dict


def read_header(data):
    """(info dict, key block, header hash, offset of the segments)."""
    assert data[:8] == b"WHBACKUP", "no WHBACKUP magic"
    assert data[8] == 1, f"format version {data[8]}"
    jlen = struct.unpack(">I", data[16:20])[0]
    info = json.loads(data[20:20 + jlen])
    off = 20 + jlen
    klen = struct.unpack(">I", data[off:off + 4])[0]
    keyblock = data[off + 4:off + 4 + klen]
    end = off + 4 + klen
    return info, keyblock, hashlib.sha256(data[:end]).digest(), end


def keystore_keys(text):
    """{"master": {id: key}, "audit": {id: seed}} of a keystore file."""
    lines = text.splitlines()
    assert lines[0] == "wharf-keystore 1", lines[0]
    keys = {"master": {}, "audit": {}}
    for line in lines[1:]:
        kind, kid, hexkey, _state = line.split(" ")
        keys["master" if kind == "master" else "audit"][kid] = \
            bytes.fromhex(hexkey)
    return keys


def content_key_master(info, keyblock, keys):
    """Open the vault_seal blob (version 1 | key id 16 | nonce 12 | ct |
    tag; AAD = version || key id || context) with the named master key."""
    assert keyblock[0] == 1
    kid = keyblock[1:17].decode()
    assert kid == info["recipient"]["key_id"], (kid, info["recipient"])
    aad = keyblock[:17] + f"backup:{info['backup_id']}".encode()
    return AESGCM(keys["master"][kid]).decrypt(keyblock[17:29],
                                               keyblock[29:], aad)


def content_key_cms(keyblock, private_key):
    """Open the CMS key block with the openssl CLI: the content key and
    the keystore it carries."""
    with tempfile.NamedTemporaryFile(suffix=".der") as f:
        f.write(keyblock)
        f.flush()
        out = subprocess.run(["openssl", "cms", "-decrypt", "-inform", "DER",
                              "-in", f.name, "-inkey", str(private_key),
                              "-binary"], capture_output=True, check=True,
                             timeout=60).stdout
    head, ckey_line, rest = out.split(b"\n", 2)
    assert head == b"wharf-backup-key v1", head
    assert ckey_line.startswith(b"content-key "), ckey_line
    return (bytes.fromhex(ckey_line[12:].decode()),
            keystore_keys(rest.decode()))


def _plaintext(data, off, hhash, ckey):
    """Every segment opened in order; the last must carry the last flag."""
    prefix, g, out, i = data[9:16], AESGCM(ckey), [], 0
    while True:
        rest = len(data) - off
        assert rest > TAG, "truncated"
        last = rest <= SEGMENT + TAG
        n = rest if last else SEGMENT + TAG
        nonce = prefix + struct.pack(">I", i) + bytes([1 if last else 0])
        out.append(g.decrypt(nonce, data[off:off + n],
                             hhash + struct.pack(">Q", i)))
        off += n
        i += 1
        if last:
            return b"".join(out)


def read(path, ckey):
    """The whole backup: entries with their bytes (each SHA-256 checked)
    and the trailer (manifest recomputed and compared)."""
    data = open(path, "rb").read()
    b = Backup()
    b.info, b.keyblock, b.header_hash, off = read_header(data)
    p = _plaintext(data, off, b.header_hash, ckey)
    man = hashlib.sha256(b"wharf-backup-manifest v1\n" + b.header_hash)
    pos, total = 0, 0
    while p[pos:pos + 1] != b"E":
        kind = p[pos:pos + 1]
        nlen = struct.unpack(">H", p[pos + 1:pos + 3])[0]
        name = p[pos + 3:pos + 3 + nlen]
        size = struct.unpack(">Q", p[pos + 3 + nlen:pos + 11 + nlen])[0]
        body = p[pos + 11 + nlen:pos + 11 + nlen + size]
        sha = p[pos + 11 + nlen + size:pos + 43 + nlen + size]
        assert hashlib.sha256(body).digest() == sha, name
        man.update(kind + struct.pack(">H", nlen) + name +
                   struct.pack(">Q", size) + sha)
        b.entries.append((kind.decode(), name.decode(), body))
        total += size
        pos += 43 + nlen + size
    t = p[pos:]
    assert len(t) == 1 + 8 + 8 + 32 + 16 + 64, "bytes after the trailer"
    count, nbytes = struct.unpack(">QQ", t[1:17])
    assert (count, nbytes) == (len(b.entries), total)
    assert t[17:49] == man.digest(), "manifest"
    b.trailer = {"manifest": t[17:49], "key_id": t[49:65].decode(),
                 "sig": t[65:129]}
    return b


def verify_signature(b, keys):
    """The trailer's Ed25519 signature by the named audit key."""
    seed = keys["audit"][b.trailer["key_id"]]
    text = b"wharf-backup v1\n" + b.trailer["manifest"].hex().encode() + \
        b"\n"
    Ed25519PrivateKey.from_private_bytes(seed).public_key().verify(
        b.trailer["sig"], text)
