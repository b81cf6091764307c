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
  .venv/bin/python -m pip install --disable-pip-version-check -r "$1" 2> >(grep -v "^WARNING: Location" >&2)
  echo "$_wanted" >"$_stamp"
fi
unset _stamp _wanted
export PATH="$PWD/.venv/bin:$PATH"
