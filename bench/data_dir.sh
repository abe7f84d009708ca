# data_dir.sh - sourced by bench/backup_bench.sh and bench/backlog_bench.sh:
# a fresh data dir for `wharf serve` with a file source "inbox"
# (OUT/files/in) linked to a file destination "outbox" (OUT/files/out),
# both folders allowed, the listeners on free loopback ports.
#
#   file_flow_data WHARF OUT [wharf init option ...]
#
# Writes OUT/data, OUT/init.txt and OUT/flow.json; OUT/files/in and
# OUT/files/out must exist.
file_flow_data() {
    local wharf=$1 out=$2
    shift 2
    "$wharf" init --data "$out/data" --allowed-paths "$out/files" "$@" >"$out/init.txt"
    cat >"$out/flow.json" <<EOF
{"connectors": [
  {"name": "inbox", "type": "file", "config": {"receive_dir": "$out/files/in"}},
  {"name": "outbox", "type": "file", "config": {"send_dir": "$out/files/out"}}],
 "links": [["inbox", "outbox"]]}
EOF
    "$wharf" flow import --data "$out/data" "$out/flow.json" >/dev/null
    printf 'admin_listen = 127.0.0.1:%s\npartner_listen = 127.0.0.1:%s\n' \
        "$(data_dir_port)" "$(data_dir_port)" >>"$out/data/wharf.conf"
    # serve started as root needs an account to drop to or allow_root (the
    # sandbox, docs/operations.md); the bench's dirs are root's, so as root
    # it keeps root (sandboxed all the same)
    [ "$(id -u)" -ne 0 ] || echo 'allow_root = yes' >>"$out/data/wharf.conf"
}

data_dir_port() {
    /usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
