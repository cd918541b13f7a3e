#!/usr/bin/env bash
# A single-node Slurm on this machine for the job tests (tests/slurm/test_jobs.sh):
# munged, slurmctld and slurmd on localhost, as root, with a configuration
# written into DIR. Needs Debian's slurm-wlm and munge.
#   slurm-local.sh start DIR   -> prints "export SLURM_CONF=DIR/slurm.conf"
#   slurm-local.sh stop DIR
set -euo pipefail
cmd=${1:?usage: slurm-local.sh start|stop DIR}
dir=${2:?usage: slurm-local.sh start|stop DIR}
conf=$dir/slurm.conf
case $cmd in
start)
  mkdir -p "$dir/state" "$dir/spool" "$dir/log"
  # munge: the key and the run directory must exist and belong to munge
  mkdir -p /run/munge /var/log/munge /var/lib/munge /etc/munge
  [ -s /etc/munge/munge.key ] || dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
  chown -R munge:munge /run/munge /var/log/munge /var/lib/munge /etc/munge
  chmod 0700 /etc/munge /var/lib/munge /var/log/munge
  chmod 0755 /run/munge
  chmod 0400 /etc/munge/munge.key
  # a munged that answers is enough; otherwise start one (--force: a stale socket or pid file may be left)
  if ! munge -n 2> /dev/null | unmunge > /dev/null 2>&1; then
    runuser -u munge -- /usr/sbin/munged --force
    for i in $(seq 1 50); do munge -n 2> /dev/null | unmunge > /dev/null 2>&1 && break; sleep 0.1; done
  fi
  munge -n 2> /dev/null | unmunge > /dev/null 2>&1 || { echo "slurm-local: munged does not answer" >&2; exit 1; }
  host=$(hostname -s)
  cpus=$(nproc)
  mem=$(awk '/MemTotal/ {print int($2 / 1024 * 0.8)}' /proc/meminfo)
  cat > "$conf" <<EOF
ClusterName=aptqtest
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/pgid
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
KillWait=5
InactiveLimit=0
MinJobAge=300
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
  export SLURM_CONF=$conf
  /usr/sbin/slurmctld -f "$conf"
  /usr/sbin/slurmd -f "$conf"
  for i in $(seq 1 60); do
    state=$(sinfo -h -o %t 2> /dev/null || true)
    if [ "$state" = idle ]; then
      echo "export SLURM_CONF=$conf"
      exit 0
    fi
    sleep 1
  done
  echo "slurm-local: the node did not become idle (state '$state'); logs in $dir/log" >&2
  tail -5 "$dir/log/slurmctld.log" "$dir/log/slurmd.log" >&2 || true
  exit 1
  ;;
stop)
  export SLURM_CONF=$conf
  scontrol shutdown > /dev/null 2>&1 || true
  for f in slurmd slurmctld; do
    [ -s "$dir/$f.pid" ] && kill "$(cat "$dir/$f.pid")" 2> /dev/null || true
    pkill -f "$f -f $conf" 2> /dev/null || true # also one whose pid file was never written
  done
  for i in $(seq 1 20); do # until both have exited (they write state on the way out)
    pgrep -f "slurm(ctld|d) -f $conf" > /dev/null || break
    sleep 0.5
  done
  ;;
*)
  echo "usage: slurm-local.sh start|stop DIR" >&2
  exit 2
  ;;
esac
