#!/usr/bin/env bash
# A real one-node Slurm cluster on this machine for tests/test_run_slurm.py: munged, slurmctld and
# slurmd on localhost with a slurm.conf of our own (state, spool, logs and pid files in $FACTLEARN_SLURM_DIR).
# Idempotent: a running cluster (sinfo answers) is left alone. Needs root (apt-get, daemons).
# The tests read $FACTLEARN_SLURM_DIR/slurm.conf (SLURM_CONF) and skip with the reason in
# $FACTLEARN_SLURM_DIR/unavailable when the cluster could not start.
set -uo pipefail
DIR="${FACTLEARN_SLURM_DIR:-/tmp/factlearn-slurm}"
PORT="${FACTLEARN_SLURM_PORT:-16817}"  # slurmctld; slurmd takes PORT+1 (not the default 6817/6818)
mkdir -p "$DIR"/{state,spool,log}
rm -f "$DIR/unavailable"
fail() { echo "$*" > "$DIR/unavailable"; echo "start_cluster: $*" >&2; exit 0; }
export SLURM_CONF="$DIR/slurm.conf"

if [ -f "$SLURM_CONF" ] && timeout 10 sinfo -h >/dev/null 2>&1; then
  echo "start_cluster: already running ($SLURM_CONF)"; exit 0
fi
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  [ "$(id -u)" = 0 ] || fail "slurm-wlm/munge not installed and not root to install them"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge) \
    > "$DIR/log/apt.log" 2>&1 || fail "apt-get install slurm-wlm munge failed: $(tail -1 "$DIR/log/apt.log")"
fi
HOST="$(hostname -s)"
CPUS="${FACTLEARN_SLURM_CPUS:-2}"
MEM="$(awk '/MemTotal/ {print int($2/1024*0.8)}' /proc/meminfo)"
cat > "$SLURM_CONF" <<CONF
ClusterName=factlearn-test
SlurmctldHost=$HOST
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1
MinJobAge=300
KillWait=5
InactiveLimit=0
NodeName=$HOST CPUs=$CPUS RealMemory=$MEM State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
CONF

# munge: one key per machine; its socket dir must belong to the munge user
[ -f /etc/munge/munge.key ] || (mungekey --create 2>/dev/null || create-munge-key -f) >/dev/null 2>&1
mkdir -p /run/munge && chown munge:munge /run/munge 2>/dev/null
if ! munge -n </dev/null >/dev/null 2>&1; then
  runuser -u munge -- munged --force 2>"$DIR/log/munged.err" || munged --force 2>>"$DIR/log/munged.err" \
    || fail "munged did not start: $(tail -1 "$DIR/log/munged.err")"
fi
for pidfile in slurmctld slurmd; do  # stale daemons of an earlier config
  [ -f "$DIR/$pidfile.pid" ] && kill "$(cat "$DIR/$pidfile.pid")" 2>/dev/null
done
sleep 1
slurmctld -f "$SLURM_CONF" || fail "slurmctld did not start: $(tail -1 "$DIR/log/slurmctld.log")"
slurmd -f "$SLURM_CONF" || fail "slurmd did not start: $(tail -1 "$DIR/log/slurmd.log")"
for _ in $(seq 60); do
  if sinfo -h -o %t 2>/dev/null | grep -qE '^(idle|mix|alloc)'; then
    echo "start_cluster: running, SLURM_CONF=$SLURM_CONF"; sinfo; exit 0
  fi
  sleep 0.5
done
fail "the node did not become idle within 30 s: $(sinfo -h -o '%t %E' 2>&1 | head -1)"
