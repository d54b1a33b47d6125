#!/bin/sh
# Makes the secrets of a docker compose installation in deploy/secrets/ (one file each,
# never overwritten; docs/operations.md, "Keys and secrets", says what each one is and
# how to rotate it):
#
#   master-key           64 hex: seals device keys and one-time-code secrets, keys the
#                        audit chain. Shared by every vakt instance. Lose it and every
#                        device must be re-keyed: back it up apart from the database.
#   mqtt-password        the backend's broker secret; each instance's broker password is
#                        derived from it and the instance's name.
#   mqtt-admin-password  vakt's login to the broker's dynamic-security plugin.
#   postgres-password    the database owner's password.
#   database-url         the URL vakt connects with (it holds that password).
#
# The directory is the host's only copy: it is 0700, so nobody else on the host reads it;
# compose hands each file to its container at /run/secrets/<name>.
set -eu
cd "$(dirname "$0")"
umask 077
mkdir -p secrets
chmod 0700 secrets

make() { # name, content
  if [ -s "secrets/$1" ]; then echo "kept secrets/$1"; return; fi
  printf '%s' "$2" > "secrets/$1"
  # Readable inside the containers, whose users are not the host's: the 0700 directory
  # is what keeps other host users out.
  chmod 0644 "secrets/$1"
  echo "made secrets/$1"
}

make master-key "$(openssl rand -hex 32)"
make mqtt-password "$(openssl rand -hex 24)"
make mqtt-admin-password "$(openssl rand -hex 24)"
make postgres-password "$(openssl rand -hex 24)"
make database-url "postgres://vakt:$(cat secrets/postgres-password)@postgres:5432/vakt?sslmode=verify-full&sslrootcert=/certs/ca.crt"
