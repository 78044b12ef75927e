#!/usr/bin/env bash
# Makes the key ring certificate the gateways encrypt their stored secrets with (KeyRing:CertificatePath and
# KeyRing:KeyPath): DIR/keyring.pem and DIR/keyring.key (0600). Keeps an existing pair: the ring stays readable.
# Give every gateway of a cluster the same two files; keep a copy outside the database's backups.
#
#   scripts/keyring-cert.sh deploy/keyring
set -euo pipefail
dir="${1:?usage: scripts/keyring-cert.sh DIR}"
mkdir -p "$dir"
if [[ -s "$dir/keyring.pem" && -s "$dir/keyring.key" ]]; then
  exit 0
fi
umask 077
openssl req -x509 -newkey rsa:3072 -nodes -days 3650 -subj "/CN=EphemeralOrleans key ring" \
  -keyout "$dir/keyring.key" -out "$dir/keyring.pem" 2>/dev/null
# Readable by the gateway's user in a container (the image runs as a non-root user).
chmod 0644 "$dir/keyring.pem"
echo "key ring certificate: $dir/keyring.pem (key $dir/keyring.key)" >&2
