#!/usr/bin/env bash
# Replace the shipped RDS CA bundle with AWS's current global bundle (needs internet).
set -euo pipefail
cd "$(dirname "$0")/.."
url=https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem
dest=layers/db/hapg/certs/rds-ca-bundle.pem
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
curl -fsSL --max-time 60 "$url" -o "$tmp"
n=$(grep -c 'BEGIN CERTIFICATE' "$tmp")
[ "$n" -gt 10 ] || { echo "refusing: only $n certificates in $url" >&2; exit 1; }
openssl storeutl -noout -certs "$tmp" >/dev/null
mv "$tmp" "$dest"
echo "wrote $dest ($n certificates)"
