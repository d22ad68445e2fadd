#!/usr/bin/env bash
# Stop the test cluster's slurmctld and slurmd by their pid files (munged is left: other users may share it).
DIR="${FACTLEARN_SLURM_DIR:-/tmp/factlearn-slurm}"
for d in slurmd slurmctld; do
  [ -f "$DIR/$d.pid" ] && kill "$(cat "$DIR/$d.pid")" 2>/dev/null && echo "stopped $d"
done
exit 0
