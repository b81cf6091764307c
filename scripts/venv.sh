# Sourced by run.sh and test.sh: create .venv with Python 3.11 (torch 2.13 exists
# only for 3.11 here) and install the given requirements file into it. pip runs
# only when the requirements files changed since the last install (a stamp in
# .venv), and then shows its progress.
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
if [ ! -x .venv/bin/python ]; then
  echo "==> Creating the virtual environment .venv ($("$PYTHON" --version))"
  "$PYTHON" -m venv .venv
fi
_stamp=".venv/.installed-$(basename "$1").sha256"
_wanted=$(cat requirements*.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat "$_stamp" 2>/dev/null)" != "$_wanted" ]; then
  if [ -e "$_stamp" ]; then
    echo "==> Updating Python packages from $1 (the requirements changed)"
  else
    echo "==> Installing Python packages from $1 (first time: about 1.5 minutes, 1.2 GB; torch is most of it)"
  fi
  # pip goes quiet while it unpacks torch (about a minute): say every 15 s that it is still working.
  ( while sleep 15; do echo "    pip: still working ($(du -sm .venv 2>/dev/null | cut -f1) MB in .venv so far)"; done ) &
  _ticker=$!
  if ! .venv/bin/python -m pip install --disable-pip-version-check -r "$1" 2> >(grep -v "^WARNING: Location" >&2); then
    kill "$_ticker" 2>/dev/null
    echo "pip could not install $1 (see above)" >&2
    exit 1
  fi
  kill "$_ticker" 2>/dev/null || true
  echo "$_wanted" >"$_stamp"
fi
unset _stamp _wanted _ticker
export PATH="$PWD/.venv/bin:$PATH"
