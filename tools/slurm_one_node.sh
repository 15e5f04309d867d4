#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for the tests (tests/test_slurm.py) and for trying
# `executor.worker_command=[srun,...]` before a real cluster (docs/inference.md, "On a SLURM
# cluster"). Everything lives in DIR: the munge key and socket, slurm.conf, state, spool, logs
# and the job-completion file `sacct --completion` reads; nothing under /etc is touched.
#
#   tools/slurm_one_node.sh start DIR [PORT]   # prints `export SLURM_CONF=DIR/slurm.conf`
#   tools/slurm_one_node.sh stop DIR
#
# Needs Debian's slurm-wlm and munge (apt-get install slurm-wlm munge) and root (slurmd runs
# jobs as their submitting user). PORT (default 6817) is slurmctld's; slurmd takes PORT + 1.
set -euo pipefail

usage() { echo "usage: $0 start|stop DIR [PORT]" >&2; exit 2; }
[[ $# -ge 2 ]] || usage
action=$1
dir=$(realpath -m "$2")
port=${3:-6817}

stop() {
  for pidfile in slurmd.pid slurmctld.pid munge/munged.pid; do
    if [[ -f $dir/$pidfile ]]; then
      pid=$(cat "$dir/$pidfile")
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
      rm -f "$dir/$pidfile"
    fi
  done
}

case $action in
  stop) stop; exit 0 ;;
  start) ;;
  *) usage ;;
esac

for program in munged slurmctld slurmd sinfo; do
  command -v "$program" >/dev/null || { echo "$program not found: apt-get install slurm-wlm munge" >&2; exit 1; }
done
[[ $(id -u) -eq 0 ]] || { echo "$0 start must run as root (slurmd starts jobs as their user)" >&2; exit 1; }

mkdir -p "$dir"/{munge,state,spool,log}
chmod 700 "$dir/munge"
if [[ ! -f $dir/munge/munge.key ]]; then
  dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none
  chmod 400 "$dir/munge/munge.key"
fi
munged --force --key-file="$dir/munge/munge.key" --socket="$dir/munge/munge.socket" \
  --pid-file="$dir/munge/munged.pid" --seed-file="$dir/munge/munged.seed" \
  --log-file="$dir/log/munged.log"

node=ffnops-node
cpus=$(nproc)
cat > "$dir/slurm.conf" <<CONF
# Written by tools/slurm_one_node.sh: one node, this machine, every daemon as root.
ClusterName=ffnops
SlurmctldHost=$(hostname -s)(127.0.0.1)
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
# No cgroups: processes are tracked by their parent ids, so no system set-up is needed.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
# No slurmdbd: finished jobs go to a text file that \`sacct --completion\` reads.
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$dir/log/jobcomp.txt
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
InactiveLimit=0
KillWait=5
MinJobAge=600
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName=$node NodeAddr=127.0.0.1 NodeHostname=$(hostname -s) CPUs=$cpus State=UNKNOWN
PartitionName=main Nodes=$node Default=YES MaxTime=INFINITE State=UP
CONF

export SLURM_CONF=$dir/slurm.conf
slurmctld -c   # -c: a clean start (no state of an earlier cluster in DIR)
slurmd -N "$node"
for _ in $(seq 100); do
  if [[ $(sinfo -h -n "$node" -o %t 2>/dev/null) == idle ]]; then
    echo "export SLURM_CONF=$SLURM_CONF"
    exit 0
  fi
  sleep 0.2
done
echo "the node did not come up in 20 s; logs: $dir/log" >&2
sinfo >&2 || true
stop
exit 1
