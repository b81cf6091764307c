# Sourced by run.sh and test.sh: create .venv with Python 3.11 (torch 2.13 exists
# only for 3.11 here) and install the given requirements file into it.
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r "$1" 2> >(grep -v "^WARNING: Location" >&2)
export PATH="$PWD/.venv/bin:$PATH"
