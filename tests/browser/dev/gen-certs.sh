#!/usr/bin/env bash
# Test CA + server certificate for developing run.mjs against stand-ins (coturn, wss-echo.mjs).
#   dev/gen-certs.sh OUTDIR [IP ...]      (default IP 127.0.0.1)
# Writes OUTDIR/ca.pem, ca.key, server.pem (leaf + CA chain), server.key; the server certificate
# has subjectAltName IP:<each IP> (a URL naming an IP needs an IP SAN).
set -euo pipefail
out=${1:?usage: gen-certs.sh OUTDIR [IP ...]}; shift
ips=("$@"); [ ${#ips[@]} -gt 0 ] || ips=(127.0.0.1)
mkdir -p "$out"
san=$(printf 'IP:%s,' "${ips[@]}"); san=${san%,}
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj "/CN=cloudproxy browser-e2e test CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -keyout "$out/ca.key" -out "$out/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=${ips[0]}" \
  -keyout "$out/server.key" -out "$out/server.csr" 2>/dev/null
printf 'subjectAltName=%s\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n' "$san" > "$out/server.ext"
openssl x509 -req -in "$out/server.csr" -CA "$out/ca.pem" -CAkey "$out/ca.key" -CAcreateserial \
  -days 2 -extfile "$out/server.ext" -out "$out/server.leaf.pem" 2>/dev/null
cat "$out/server.leaf.pem" "$out/ca.pem" > "$out/server.pem"
rm -f "$out/server.csr" "$out/server.ext" "$out/ca.srl"
echo "$out: ca.pem server.pem server.key (SAN $san)"
