#!/usr/bin/env bash
# deeplab-video's two entry points, each installing what it needs first:
#   bash run.sh main    install, then the main job (synthetic data -> train -> evaluate)
#   bash run.sh test    install, then the test suite (extra arguments go to pytest)
# The virtual environment lives in .venv (override with DEEPLAB_VIDEO_VENV); it is
# (re)installed from the pinned requirements.txt whenever that file, setup.py or the C
# kernel source changes.
set -euo pipefail
cd "$(dirname "$0")"

venv="${DEEPLAB_VIDEO_VENV:-.venv}"
python="${PYTHON:-python3}"

install() {
  if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
  fi
  local stamp
  stamp="$venv/.installed-$(cat requirements.txt setup.py deeplab_video/post_processing/*.c | sha256sum | cut -c1-16)"
  if [ ! -f "$stamp" ]; then
    echo "Installing pinned dependencies into $venv (a few minutes on a new machine)..."
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r requirements.txt
    "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps -e .
    rm -f "$venv"/.installed-*
    touch "$stamp"
  fi
}

command="${1:-}"
shift || true
case "$command" in
  main)
    install
    exec "$venv/bin/python" -m deeplab_video.trainer.main_job "$@"
    ;;
  test)
    install
    exec "$venv/bin/python" -m pytest "$@"
    ;;
  *)
    echo "usage: bash run.sh main|test [args...]" >&2
    exit 2
    ;;
esac
