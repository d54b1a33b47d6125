#!/usr/bin/env bash
# The browser tests in one command: installs what is missing (Debian's
# chromium and firefox-esr, the npm packages playwright-core and
# puppeteer-core, which never download a browser), builds vakt and
# firmware-sim, and runs the suites against a real vakt of their own. Exits
# non-zero when a test fails.
#
#   tests/browser/run.sh                      run everything
#   tests/browser/run.sh --update-screenshot  also write docs/console.png for the README
#   tests/browser/run.sh console.test.mjs     run one suite
#   tests/browser/run.sh watch.test.mjs       the console's watching rules, no browser
#   tests/browser/run.sh coords.test.mjs      typed and pasted coordinates, no browser
#   tests/browser/run.sh firefox.test.mjs     the console in Firefox only
#   tests/browser/run.sh a11y.test.mjs        accessibility: axe-core, keyboard, screen-reader announcements
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
export CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
export FIREFOX="${FIREFOX:-/usr/bin/firefox-esr}"

suites=()
for arg in "$@"; do
  case "$arg" in
    --update-screenshot) export VAKT_SCREENSHOT="$repo/docs/console.png" ;;
    *) suites+=("$arg") ;;
  esac
done
[ ${#suites[@]} -gt 0 ] || suites=(coords.test.mjs i18n.test.mjs watch.test.mjs console.test.mjs admin.test.mjs a11y.test.mjs firefox.test.mjs)

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

apt_install() {
  if [ -z "${APT_UPDATED:-}" ]; then as_root apt-get update -qq; APT_UPDATED=1; fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

if [ ! -x "$CHROMIUM" ]; then
  echo "== installing chromium (Debian package)"
  apt_install chromium
fi
if [ ! -x "$FIREFOX" ]; then
  echo "== installing firefox-esr (Debian package)"
  apt_install firefox-esr
fi
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "== installing node and npm (Debian packages)"
  apt_install nodejs npm
fi

cd "$here"
# playwright-core drives the installed Chromium, puppeteer-core the installed
# Firefox (over WebDriver BiDi); neither downloads a browser.
if [ ! -d node_modules/playwright-core ] || [ ! -d node_modules/puppeteer-core ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "== npm ci"
  npm ci --no-audit --no-fund
fi

echo "== cargo build --bins"
(cd "$repo" && cargo build --workspace --bins)

echo "== browser tests: ${suites[*]}"
start=$SECONDS
status=0
node --test --test-concurrency=1 --test-timeout=180000 --test-reporter=spec "${suites[@]}" || status=$?
echo "== browser tests took $((SECONDS - start)) s"
if [ -n "${VAKT_SCREENSHOT:-}" ]; then echo "== screenshot: $VAKT_SCREENSHOT"; fi
exit "$status"
