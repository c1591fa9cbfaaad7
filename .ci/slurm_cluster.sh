#!/usr/bin/env bash
# A single-node SLURM cluster on localhost, for the SLURM tests (tests/slurm_test.py).
#
#   .ci/slurm_cluster.sh install       # apt-get install slurm-wlm munge where missing (root)
#   .ci/slurm_cluster.sh start DIR     # munged + slurmctld + slurmd, state and logs in DIR
#   .ci/slurm_cluster.sh stop DIR
#
# `start` writes DIR/slurm.conf (this host, 2 CPUs, cons_tres, linuxproc process tracking, no
# cgroups, no accounting storage), a private munge key and socket, free ports, and returns when
# `sinfo` shows the node idle. Clients find the cluster with `SLURM_CONF=DIR/slurm.conf`.
# cred_expire=10 shortens SLURM's delay before a requeued job may start again (120 s default).
# The daemons run as root (slurmd must, to start jobs as their users).
set -euo pipefail

cmd=${1:-}
dir=${2:-${PIX2PIX_SLURM_DIR:-/tmp/pix2pix_slurm}}

install() {
  if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null; then
    return 0
  fi
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "slurm_cluster: slurm-wlm and munge are not installed and cannot be (needs root and apt-get)" >&2
    return 1
  fi
  echo "slurm_cluster: installing slurm-wlm and munge" >&2
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge >/dev/null
}

free_port() {
  local port=$1
  while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
  echo "$port"
}

start() {
  if [ "$(id -u)" != 0 ]; then
    echo "slurm_cluster: slurmd runs jobs as their users, so it needs root" >&2
    return 1
  fi
  for tool in munged mungekey slurmctld slurmd sinfo; do
    command -v "$tool" >/dev/null || { echo "slurm_cluster: $tool not found (run: $0 install)" >&2; return 1; }
  done
  stop 2>/dev/null || true
  rm -rf "$dir"
  mkdir -p "$dir/ctld" "$dir/spool" "$dir/munge"
  chmod 700 "$dir/munge"
  local host memory ctld_port slurmd_port
  host=$(hostname -s)
  memory=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
  ctld_port=$(free_port $((16817 + RANDOM % 500 * 2)))  # apart from another cluster starting now
  slurmd_port=$(free_port $((ctld_port + 1)))

  mungekey --create --keyfile="$dir/munge/munge.key" 2>/dev/null \
    || dd if=/dev/urandom of="$dir/munge/munge.key" bs=1 count=1024 status=none
  chmod 400 "$dir/munge/munge.key"
  munged --force --key-file="$dir/munge/munge.key" --socket="$dir/munge/munge.socket" \
    --pid-file="$dir/munge/munged.pid" --log-file="$dir/munge/munged.log" \
    --seed-file="$dir/munge/munged.seed"

  cat >"$dir/slurm.conf" <<EOF
ClusterName=pix2pix-ci
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket,cred_expire=10
StateSaveLocation=$dir/ctld
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
SlurmdParameters=config_overrides
KillWait=30
MinJobAge=600
NodeName=$host NodeAddr=127.0.0.1 CPUs=2 RealMemory=$memory State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
  export SLURM_CONF="$dir/slurm.conf"
  slurmctld -f "$SLURM_CONF"
  slurmd -f "$SLURM_CONF" -N "$host"
  local deadline=$((SECONDS + 60))
  until [ "$(sinfo -h -N -o %t 2>/dev/null)" = idle ]; do
    if [ $SECONDS -ge $deadline ]; then
      echo "slurm_cluster: the node did not become idle in 60 s; logs in $dir" >&2
      sinfo -N -l >&2 || true
      return 1
    fi
    sleep 0.5
  done
  echo "slurm_cluster: up (SLURM_CONF=$SLURM_CONF)" >&2
}

stop() {
  local pidfile pid jobs
  # Jobs first (their processes outlive slurmd), killed even if stopped.
  if [ -f "$dir/slurmctld.pid" ] && kill -0 "$(cat "$dir/slurmctld.pid")" 2>/dev/null; then
    jobs=$(SLURM_CONF="$dir/slurm.conf" squeue -h -o %i 2>/dev/null | tr '\n' ' ')
    if [ -n "$jobs" ]; then
      # shellcheck disable=SC2086
      SLURM_CONF="$dir/slurm.conf" scancel --full --signal=KILL $jobs 2>/dev/null || true
      # shellcheck disable=SC2086
      SLURM_CONF="$dir/slurm.conf" scancel $jobs 2>/dev/null || true
      for _ in $(seq 100); do
        [ -z "$(SLURM_CONF="$dir/slurm.conf" squeue -h -o %i 2>/dev/null)" ] && break
        sleep 0.1
      done
    fi
  fi
  for pidfile in "$dir/slurmd.pid" "$dir/slurmctld.pid" "$dir/munge/munged.pid"; do
    [ -f "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    if kill "$pid" 2>/dev/null; then
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
  done
}

case "$cmd" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 install | start [DIR] | stop [DIR]" >&2; exit 2 ;;
esac
