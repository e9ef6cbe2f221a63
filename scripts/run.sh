#!/usr/bin/env bash
# Start the scheduler (engine process) in the background and the console in the foreground.
# Stopping the console (Ctrl-C) stops the scheduler too.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p var/log
.venv/bin/python scheduler.py --auto >>var/log/scheduler.log 2>&1 &
scheduler_pid=$!
trap 'kill "$scheduler_pid" 2>/dev/null || true; wait "$scheduler_pid" 2>/dev/null || true' EXIT INT TERM
echo "scheduler running (pid $scheduler_pid), log: var/log/scheduler.log"
echo "console: http://127.0.0.1:8501"
.venv/bin/python -m streamlit run app/console.py
