#!/bin/bash
# One dlcli study shared by the tasks of a SLURM job array: every task runs the same command against one
# storage, asks Optuna for trials and runs them, and the array stops once the study has tune.n_trials
# complete or pruned trials. Submit from the project folder (on a shared file system):
#   sbatch --array=0-7 scripts/tune_slurm.sh configs/my_study.yaml
# The config's tune: section names the storage every node can reach, e.g.
#   tune: {storage: "postgresql://user:password@dbhost/optuna", workers: 1, ...}
# or leaves it out: the journal file runs/tune/<study>/journal.log then works on a file system whose
# locks hold across nodes (NFSv4, GPFS, Lustre mounted with -o flock). A task that is killed (time limit,
# preemption) leaves its trial running in the study; the next task to start (or a requeue) sees that its
# process is gone, marks it failed and resumes its run from last.pt with the same parameters.
#SBATCH --job-name=dlcli-tune
#SBATCH --cpus-per-task=4
#SBATCH --time=02:00:00
#SBATCH --output=runs/tune/slurm-%A_%a.out
#SBATCH --requeue
set -euo pipefail
config=${1:?usage: sbatch --array=0-N scripts/tune_slurm.sh CONFIG [KEY=VALUE ...]}
shift
# each task trains on the cores SLURM gave it (train.threads: auto reads the affinity mask)
exec uv run dlcli tune "$config" "$@" --workers "${DLCLI_WORKERS:-1}"
