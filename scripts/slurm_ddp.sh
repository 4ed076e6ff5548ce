#!/bin/bash
# Data-parallel training of one dlcli run on 2 nodes x 4 GPUs: 8 ranks, one per GPU, started by srun.
#   sbatch scripts/slurm_ddp.sh configs/higgs_ffnn.yaml runs/higgs-ddp
# Each task reads its rank from SLURM_PROCID / SLURM_NTASKS / SLURM_LOCALID; the first node of the job is
# the master (MASTER_ADDR), and the port comes from the job id. train.batch_size is the global batch: it
# must divide by 8 here, and each GPU takes batch/8 rows a step.
# SLURM sends SIGUSR1 five minutes before the time limit: dlcli keeps last.pt, marks the run interrupted
# (exit 138), and this script requeues the job, which then resumes the run where it stopped.
#SBATCH --job-name=dlcli-ddp
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=4          # one task per GPU
#SBATCH --gpus-per-node=4
#SBATCH --cpus-per-task=8
#SBATCH --time=04:00:00
#SBATCH --signal=USR1@300            # to every task of the step, 300 s before the limit
#SBATCH --requeue
#SBATCH --output=slurm-%j.out

set -u
CONFIG=${1:?usage: sbatch slurm_ddp.sh CONFIG RUN_DIR}
RUN_DIR=${2:?usage: sbatch slurm_ddp.sh CONFIG RUN_DIR}
export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}

if [ -f "$RUN_DIR/checkpoints/last.pt" ]; then   # a requeued job: go on from the last checkpoint
    srun dlcli train --resume "$RUN_DIR" --no-progress
else
    srun dlcli train "$CONFIG" --run-dir "$RUN_DIR" --no-progress
fi
status=$?
if [ "$status" -eq 138 ] || [ "$status" -eq 143 ]; then   # SIGUSR1 or SIGTERM: interrupted, resumable
    scontrol requeue "$SLURM_JOB_ID"
fi
exit "$status"
