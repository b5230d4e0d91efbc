#!/usr/bin/env bash
# testssl.sh run against herald configured as the seeds' hardened example
# (examples/https-h2-hardened.yaml: TLS 1.2/1.3, Envoy's default ciphers,
# h2 over ALPN). Builds herald and the example backend, generates a CA and a
# server certificate with openssl, starts both on loopback, runs testssl
# (Debian package testssl.sh, /usr/bin/testssl) and checks its JSON:
#   - SSLv2, SSLv3, TLS 1.0 and TLS 1.1 not offered, TLS 1.2 and 1.3 offered;
#   - no NULL, anonymous, export, LOW, 3DES/IDEA or obsoleted CBC ciphers;
#   - every offered cipher has forward secrecy (ECDHE/DHE key exchange, or TLS 1.3).
# Prints a summary; exits non-zero on a failed check. Not part of `go test`
# (it takes a few minutes). Usage: test/tls/testssl.sh [--keep]
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=$(mktemp -d /tmp/herald-testssl.XXXXXX)
KEEP=${1:-}
PIDS=()

cleanup() {
	for pid in "${PIDS[@]}"; do
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	if [[ "$KEEP" != "--keep" ]]; then rm -rf "$WORK"; else echo "kept $WORK"; fi
}
trap cleanup EXIT

need() { command -v "$1" >/dev/null || { echo "testssl.sh: $1 not found" >&2; exit 2; }; }
need go; need openssl; need testssl; need python3; need curl

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

echo "== build"
(cd "$ROOT" && go build -o "$WORK/herald" ./cmd/herald && go build -o "$WORK/backend" ./examples/backend)

echo "== certificates (CA, RSA 2048 server for 127.0.0.1/localhost)"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=herald testssl CA" \
	-keyout "$WORK/ca.key" -out "$WORK/ca.crt" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
	-keyout "$WORK/server.key" -out "$WORK/server.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nkeyUsage=digitalSignature,keyEncipherment\n' >"$WORK/ext.cnf"
openssl x509 -req -in "$WORK/server.csr" -CA "$WORK/ca.crt" -CAkey "$WORK/ca.key" -CAcreateserial \
	-days 2 -extfile "$WORK/ext.cnf" -out "$WORK/server.crt" 2>/dev/null

BACKEND_PORT=$(free_port)
LISTEN_PORT=$(free_port)

echo "== config (examples/https-h2-hardened.yaml on 127.0.0.1:$LISTEN_PORT)"
sed -e "s|address: 0.0.0.0, port_value: 8443|address: 127.0.0.1, port_value: $LISTEN_PORT|" \
	-e "s|address: 127.0.0.1, port_value: 9901|address: 127.0.0.1, port_value: 0|" \
	-e "s|port_value: 9090|port_value: $BACKEND_PORT|" \
	-e "s|/etc/envoy/certs/server.crt|$WORK/server.crt|" \
	-e "s|/etc/envoy/certs/server.key|$WORK/server.key|" \
	-e "s|/var/log/envoy/access.log|$WORK/access.log|" \
	"$ROOT/examples/https-h2-hardened.yaml" >"$WORK/envoy.yaml"
for want in "port_value: $LISTEN_PORT" "$WORK/server.crt" "$WORK/access.log" "port_value: $BACKEND_PORT"; do
	grep -q -- "$want" "$WORK/envoy.yaml" || { echo "config rewrite failed: $want missing" >&2; exit 2; }
done

"$WORK/backend" "app=127.0.0.1:$BACKEND_PORT" >"$WORK/backend.log" 2>&1 &
PIDS+=($!)
"$WORK/herald" -c "$WORK/envoy.yaml" --admin-address-path "$WORK/admin" >"$WORK/herald.log" 2>&1 &
PIDS+=($!)

# Wait (up to 15 s) for herald to serve HTTPS through to the backend.
ok=
for _ in $(seq 150); do
	if curl -sf --cacert "$WORK/ca.crt" "https://127.0.0.1:$LISTEN_PORT/" -o /dev/null 2>/dev/null; then ok=1; break; fi
	sleep 0.1
done
if [[ -z "$ok" ]]; then
	echo "herald did not serve https://127.0.0.1:$LISTEN_PORT/" >&2
	cat "$WORK/herald.log" >&2
	exit 1
fi
echo "== h2 through ALPN: $(curl -s --http2 --cacert "$WORK/ca.crt" -o /dev/null -w '%{http_version}' "https://127.0.0.1:$LISTEN_PORT/")"

echo "== testssl --protocols --std --fs --server-defaults --cipher-per-proto (four to six minutes)"
start=$(date +%s)
testssl --quiet --color 0 --warnings off --openssl-timeout 10 --jsonfile "$WORK/testssl.json" \
	--protocols --std --fs --server-defaults --cipher-per-proto \
	"127.0.0.1:$LISTEN_PORT" >"$WORK/testssl.txt" 2>&1 || true
echo "   took $(($(date +%s) - start)) s"
[[ -s "$WORK/testssl.json" ]] || { echo "testssl wrote no JSON" >&2; cat "$WORK/testssl.txt" >&2; exit 1; }

python3 - "$WORK/testssl.json" <<'PY'
import json, sys
rows = json.load(open(sys.argv[1]))
by = {}
for r in rows:
    by.setdefault(r["id"], []).append(r["finding"])
def finding(i):
    return " | ".join(by.get(i, ["(missing)"]))
fails = []
def check(ok, msg):
    print(("PASS " if ok else "FAIL ") + msg)
    if not ok:
        fails.append(msg)
print("protocols:")
for p in ["SSLv2", "SSLv3", "TLS1", "TLS1_1"]:
    check("not offered" in finding(p), f"{p}: {finding(p)}")
for p in ["TLS1_2", "TLS1_3"]:
    check(finding(p).startswith("offered"), f"{p}: {finding(p)}")
print("cipher categories:")
# testssl 3.0 names AVERAGE (SEED, CBC) what 3.2 names OBSOLETED; check
# whichever this version reports, and require the core four.
for c in ["cipherlist_NULL", "cipherlist_aNULL", "cipherlist_EXPORT", "cipherlist_LOW"]:
    check("not offered" in finding(c), f"{c}: {finding(c)}")
for c in ["cipherlist_3DES_IDEA", "cipherlist_AVERAGE", "cipherlist_OBSOLETED"]:
    if c in by:
        check("not offered" in finding(c), f"{c}: {finding(c)}")
print("offered ciphers (per protocol):")
offered = [r for r in rows if r["id"].startswith("cipher-")]
for r in offered:
    f = r["finding"]
    tls13 = r["id"].startswith("cipher-tls1_3")
    fs = tls13 or " ECDH" in f or " DH " in f or "ECDHE" in f or "DHE" in f
    check(fs, f"{r['id']}: {' '.join(f.split())} (forward secrecy: {'yes' if fs else 'NO'})")
check(len(offered) > 0, f"{len(offered)} offered ciphers enumerated")
print("forward secrecy:")
# testssl 3.0 says PFS, 3.2 says FS.
fsid = "FS" if "FS" in by else "PFS"
check(finding(fsid).startswith("offered"), f"{fsid}: {finding(fsid)}")
for i in ["FS_ciphers", "PFS_ciphers", "FS_ECDHE_curves", "PFS_ECDHE_curves", "ALPN_HTTP2", "ALPN", "cert_keySize", "TLS_session_ticket"]:
    if i in by:
        print(f"info {i}: {finding(i)}")
print()
print("SUMMARY:", "all checks passed" if not fails else f"{len(fails)} check(s) FAILED")
sys.exit(1 if fails else 0)
PY
