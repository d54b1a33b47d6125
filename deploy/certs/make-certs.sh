#!/bin/sh
# Makes the certificates of a vakt installation with openssl: one private CA, and a
# server certificate (ECDSA P-256, two years) for each name given.
#
#   deploy/certs/make-certs.sh DIR NAME[:HOST,HOST...]...
#
# For each NAME it writes DIR/NAME.crt and DIR/NAME.key; the first of the hosts (or NAME
# itself) is the certificate's subject, every host is a subject alternative name (an IP
# address where it looks like one). DIR/ca.crt is what clients trust: vakt's
# VAKT_MQTT_CA, the devices' CA, PostgreSQL's `sslrootcert`, the browsers of the alarm
# centre. DIR/ca.key signs new certificates: keep it offline after the first run.
#
# It never overwrites: an existing CA is reused, an existing certificate is kept, so a
# second run adds what is missing and nothing else. docker-compose.yml runs it once in the
# `certs` service; docs/operations.md ("TLS") says how to renew and rotate.
#
# Owners: set OWNER_<NAME>=UID:GID (NAME upper-cased, `-` as `_`) to hand a key to the
# user of the service that reads it (PostgreSQL refuses a key others can read).
set -eu
umask 077

dir=${1:?usage: make-certs.sh DIR NAME[:HOST,HOST...]...}
shift
mkdir -p "$dir"
# Services under other users read their own files here: the directory itself is open,
# each key stays 0600 and is handed to its reader (OWNER_…).
chmod 0755 "$dir"
days=${CERT_DAYS:-730}

if [ ! -f "$dir/ca.crt" ]; then
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$dir/ca.key"
  openssl req -x509 -new -key "$dir/ca.key" -sha256 -days $((days * 5)) \
    -subj "/O=vakt/CN=vakt private CA" \
    -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$dir/ca.crt"
  echo "made $dir/ca.crt"
fi
chmod 0644 "$dir/ca.crt"

for spec in "$@"; do
  name=${spec%%:*}
  hosts=$name
  [ "$spec" != "$name" ] && hosts=${spec#*:}
  if [ -f "$dir/$name.crt" ]; then
    echo "kept $dir/$name.crt"
  else
    san=""
    for h in $(echo "$hosts" | tr ',' ' '); do
      case $h in
        *[!0-9.]*) entry="DNS:$h" ;;
        *) entry="IP:$h" ;;
      esac
      san=${san:+$san,}$entry
    done
    first=$(echo "$hosts" | cut -d, -f1)
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$dir/$name.key"
    openssl req -new -key "$dir/$name.key" -subj "/O=vakt/CN=$first" -out "$dir/$name.csr"
    printf 'subjectAltName=%s\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n' "$san" \
      > "$dir/$name.ext"
    openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
      -CAcreateserial -sha256 -days "$days" -extfile "$dir/$name.ext" -out "$dir/$name.crt"
    rm -f "$dir/$name.csr" "$dir/$name.ext"
    chmod 0644 "$dir/$name.crt"
    chmod 0600 "$dir/$name.key"
    echo "made $dir/$name.crt for $san"
  fi
  var=OWNER_$(echo "$name" | tr 'a-z-' 'A-Z_')
  owner=$(eval "echo \${$var:-}")
  if [ -n "$owner" ]; then
    chown "$owner" "$dir/$name.key" "$dir/$name.crt"
  fi
done
