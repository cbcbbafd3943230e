#!/bin/bash
# Grading time on Slurm: the grading array (N shards, default 4), then the reports once every
# task has ended, however (afterany: a task that exits 1 still graded the rest of its shard).
#
#   export COURSE_ROOT=/shared/course GRADERS_DB_URL=...   # or ~/.config/graders/db-url
#   deploy/slurm/grade-and-report.sh 8
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
shards=${1:-4}
grade=$(sbatch --parsable --array="1-$shards" "$here/grade.sbatch")
report=$(sbatch --parsable --dependency="afterany:${grade%%;*}" "$here/report.sbatch")
echo "grading: job array $grade ($shards shards); reports: job $report after it"
