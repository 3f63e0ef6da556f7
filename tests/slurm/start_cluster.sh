#!/usr/bin/env bash
# A one-node SLURM cluster on this machine for tests/test_slurm.py: writes a minimal slurm.conf,
# starts munged, slurmctld and slurmd, and waits until `sinfo` shows the node idle.
# Needs root and the Debian packages slurm-wlm and munge (.ci/run installs them).
# Idempotent: a second call with the cluster up only checks it. Exits non-zero with a reason
# when it cannot start one.
#   tests/slurm/start_cluster.sh            # start (or check) the cluster
#   SLURM_CPUS=2 tests/slurm/start_cluster.sh
set -euo pipefail

CONF_DIR=/etc/slurm
CONF=$CONF_DIR/slurm.conf
STATE=/var/spool/seqxai-slurm          # slurmctld state, slurmd spool and the daemons' logs
CPUS=${SLURM_CPUS:-2}
# Partition names of profiles/slurm/config.yaml: CPU rules go to "cpu", GPU rules to "gpu".
PARTITIONS=(cpu gpu)

die() { echo "start_cluster.sh: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (it writes $CONF and starts the SLURM daemons)"
for tool in munged slurmctld slurmd sinfo scontrol; do
    command -v "$tool" >/dev/null 2>&1 \
        || die "'$tool' not found; install the Debian packages: apt-get install -y slurm-wlm munge"
done

node_idle() { sinfo -h -N -n localhost -o '%T' 2>/dev/null | grep -qx 'idle'; }
alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

if alive "$STATE/slurmctld.pid" && alive "$STATE/slurmd.pid" && node_idle; then
    echo "start_cluster.sh: SLURM already up, node localhost idle"
    exit 0
fi

# RealMemory a little under MemTotal: slurmd drains a node whose memory is below the configured.
mem_mb=$(awk '/^MemTotal:/ {print int($2 / 1024 * 0.95)}' /proc/meminfo)
mkdir -p "$CONF_DIR" "$STATE/ctld" "$STATE/d"

cat >"$CONF" <<EOF
# Written by tests/slurm/start_cluster.sh: a single-node test cluster, no cgroups, no accounting.
ClusterName=seqxai
SlurmctldHost=localhost
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
MpiDefault=none
ReturnToService=2
# squeue must still list finished jobs when the executor plugin polls (>= 3 x its 40 s start delay).
MinJobAge=300
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$mem_mb State=UNKNOWN
EOF
first=YES
for p in "${PARTITIONS[@]}"; do
    echo "PartitionName=$p Nodes=localhost Default=$first MaxTime=INFINITE State=UP" >>"$CONF"
    first=NO
done

# munge: a key readable only by the munge user, then the daemon.
if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
mkdir -p /run/munge /var/log/munge /var/lib/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    runuser -u munge -- munged || die "munged did not start (see /var/log/munge/munged.log)"
    for _ in $(seq 20); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.5; done
    munge -n | unmunge >/dev/null 2>&1 || die "munge does not answer (see /var/log/munge/munged.log)"
fi

# The daemons: restart any of ours so that they read the slurm.conf written above.
for pidfile in "$STATE/slurmd.pid" "$STATE/slurmctld.pid"; do
    if alive "$pidfile"; then
        kill "$(cat "$pidfile")"; sleep 1
    fi
done
slurmctld -c || die "slurmctld did not start (see $STATE/slurmctld.log)"
slurmd -N localhost || die "slurmd did not start (see $STATE/slurmd.log)"

for _ in $(seq 60); do
    if node_idle; then
        echo "start_cluster.sh: SLURM up, node localhost idle ($CPUS CPUs, ${mem_mb} MB), partitions ${PARTITIONS[*]}"
        exit 0
    fi
    sleep 1
done
sinfo -N -l >&2 || true
tail -n 20 "$STATE/slurmctld.log" "$STATE/slurmd.log" >&2 || true
die "node localhost not idle after 60 s (logs above)"
