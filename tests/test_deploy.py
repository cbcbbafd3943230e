"""deploy/: the Kubernetes Jobs and the Slurm scripts that grade a class over several machines.

Fast: the manifests' structure (Indexed Job, N in step, secret and volume wiring, no password
in any file), the scripts' syntax, and :func:`graders.shards.shard_from_env` with the
variables Kubernetes and Slurm set. Slow, against a real PostgreSQL server
(tests/pgserver.py) and the tiny course: the release Job, each engine's grading command run as
two concurrent shards with the engine's variables set (all four at once), and the report
script; each gradebook must equal a serial SQLite grading of the same submissions, and the
reports must hold every student with the right score. The commands are read
from the shipped files (the containers' ``command`` in the YAML; the ``.sbatch`` scripts run by
bash), never copied here, so the test proves what an instructor deploys.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import gradebook_rows as rows
import pytest
import tinycourse
import yaml  # PyYAML: installed with nbgrader (jupyter_server -> jupyter_events)
from pgserver import postgres_server  # noqa: F401  (fixture)

from graders import cli, shards
from graders.course import REPO_ROOT, Course
from graders.shards import select_shard

DEPLOY = REPO_ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
SLURM = DEPLOY / "slurm"
SECRET, SECRET_KEY = "graders-gradebook", "db-url"
A = rows.ASSIGNMENT


def _load(name: str) -> dict:
    return yaml.safe_load((K8S / name).read_text())


def _pod(job: dict) -> dict:
    return job["spec"]["template"]["spec"]


def _container(job: dict) -> dict:
    (container,) = _pod(job)["containers"]
    return container


def _env(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


def _script(container: dict) -> str:
    return " ".join([*container["command"], *container.get("args", [])])


# ------------------------------------------------------------------------- manifests (fast)
@pytest.mark.parametrize("name", ["release-job.yaml", "grade-job.yaml", "report-job.yaml"])
def test_every_job_mounts_the_course_and_reads_the_url_from_the_secret(name):
    job, claim = _load(name), _load("course-volume.yaml")
    assert (job["apiVersion"], job["kind"]) == ("batch/v1", "Job")
    assert (claim["kind"], claim["spec"]["accessModes"]) == ("PersistentVolumeClaim",
                                                              ["ReadWriteMany"])
    pod, container = _pod(job), _container(job)
    assert pod["restartPolicy"] == "Never"
    volumes = {v["name"]: v for v in pod["volumes"]}
    (mount,) = container["volumeMounts"]
    assert volumes[mount["name"]]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    env = _env(container)
    assert env["COURSE_ROOT"]["value"] == mount["mountPath"] == container["workingDir"]
    ref = env["GRADERS_DB_URL"]["valueFrom"]["secretKeyRef"]
    assert (ref["name"], ref["key"]) == (SECRET, SECRET_KEY)
    script = _script(container)
    assert container["command"][:2] == ["sh", "-c"]
    assert "$(" not in script  # Kubernetes itself would expand $(NAME) before the shell runs
    assert 'unset GRADERS_DB_URL' in script  # student kernels inherit the environment
    assert '--root "$COURSE_ROOT" --db-url "$db_url"' in script


def test_the_grading_job_is_indexed_with_n_in_step():
    job = _load("grade-job.yaml")
    spec, container = job["spec"], _container(job)
    n = int(_env(container)["GRADERS_SHARD_COUNT"]["value"])
    assert spec["completionMode"] == "Indexed"
    assert spec["completions"] == spec["parallelism"] == n >= 2
    assert spec["backoffLimitPerIndex"] >= 1
    (rule,) = spec["podFailurePolicy"]["rules"]  # exit 1 (someone not graded) is not rerun
    assert rule["action"] == "FailIndex"
    assert rule["onExitCodes"] == {"containerName": container["name"], "operator": "In",
                                   "values": [1]}
    script = _script(container)
    assert "autograde --shard-from-env" in script
    assert "sandbox_status" in script  # refuses to grade unsandboxed
    workers = int(_env(container)["GRADERS_WORKERS"]["value"])
    cpus = float(container["resources"]["requests"]["cpu"])
    assert workers == cpus
    memory_gib = int(container["resources"]["limits"]["memory"].removesuffix("Gi"))
    assert int(_env(container)["GRADERS_MEMORY_MB"]["value"]) * workers <= memory_gib * 1024


@pytest.mark.parametrize(("name", "verbs"), [("release-job.yaml", ["release"]),
                                             ("report-job.yaml", ["feedback", "grades", "export"])])
def test_release_and_report_are_single_jobs(name, verbs):
    job = _load(name)
    assert "completionMode" not in job["spec"]
    assert job["spec"]["completions"] == job["spec"]["parallelism"] == 1
    script = _script(_container(job))
    assert all(re.search(rf"\b{verb}\b", script) for verb in verbs)


def test_no_manifest_or_script_holds_a_password_or_a_url():
    files = [p for p in DEPLOY.rglob("*") if p.is_file() and p.suffix != ".md"]
    assert len(files) >= 8
    for path in files:
        text = path.read_text()
        assert not re.search(r"postgres(ql)?(\+\w+)?://", text), path  # URLs: Secret / env only
        assert not re.search(r"://[^\s@/:]+:[^\s@/]+@", text), path


@pytest.mark.parametrize("name", ["release.sbatch", "grade.sbatch", "report.sbatch",
                                  "grade-and-report.sh"])
def test_slurm_scripts_parse(name):
    path = SLURM / name
    assert subprocess.run(["bash", "-n", str(path)]).returncode == 0
    assert os.access(path, os.X_OK)
    text = path.read_text()
    if name == "grade.sbatch":
        assert "#SBATCH --array=" in text and "autograde --shard-from-env" in text


# ------------------------------------------------------------------- shards from the environment
@pytest.mark.parametrize(("env", "expected"), [
    ({"GRADERS_SHARD": "2/5"}, (2, 5)),
    ({"JOB_COMPLETION_INDEX": "0", "GRADERS_SHARD_COUNT": "4"}, (1, 4)),
    ({"JOB_COMPLETION_INDEX": "3", "GRADERS_SHARD_COUNT": "4"}, (4, 4)),
    # sbatch --array=1-4, 0-3 and 0-6:2: task ids differ, shards do not
    ({"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_COUNT": "4"},
     (1, 4)),
    ({"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_COUNT": "4"},
     (4, 4)),
    ({"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_STEP": "2",
      "SLURM_ARRAY_TASK_COUNT": "4"}, (3, 4)),
    ({"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_COUNT": "4",
      "GRADERS_SHARD_COUNT": "2"}, (2, 2)),
    # GRADERS_SHARD first, then Kubernetes, then Slurm
    ({"GRADERS_SHARD": "1/3", "JOB_COMPLETION_INDEX": "1", "GRADERS_SHARD_COUNT": "3"}, (1, 3)),
])
def test_shard_from_env_reads_kubernetes_and_slurm(env, expected):
    found = shards.shard_from_env(env)
    assert (found.k, found.n) == expected
    assert next(iter(env)) in found.source


@pytest.mark.parametrize(("env", "message"), [
    ({}, "no shard in the environment"),
    ({"JOB_COMPLETION_INDEX": "1"}, "GRADERS_SHARD_COUNT is not"),
    ({"JOB_COMPLETION_INDEX": "4", "GRADERS_SHARD_COUNT": "4"}, "need 1 <= K <= N"),
    ({"JOB_COMPLETION_INDEX": "x", "GRADERS_SHARD_COUNT": "4"}, "whole number"),
    ({"SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_COUNT": "3"},
     "contiguous"),  # --array=1,3,7
    ({"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_STEP": "2",
      "SLURM_ARRAY_TASK_COUNT": "4"}, "contiguous"),
    ({"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_COUNT": "4"}, "SLURM_ARRAY_TASK_MIN"),
    ({"GRADERS_SHARD": "3/2"}, "need 1 <= K <= N"),
])
def test_shard_from_env_refuses_what_is_not_a_shard(env, message):
    with pytest.raises(ValueError, match=message):
        shards.shard_from_env(env)


def test_an_explicit_shard_wins_over_the_environment(monkeypatch, capsys):
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "0")
    monkeypatch.setenv("GRADERS_SHARD_COUNT", "3")
    both = argparse.Namespace(shard="2/2", shard_from_env=True)
    assert cli.shard_from_args(both) == (2, 2)
    assert "not used" in capsys.readouterr().err
    assert cli.shard_from_args(argparse.Namespace(shard=None, shard_from_env=True)) == (1, 3)
    assert "shard 1/3 (from JOB_COMPLETION_INDEX=0" in capsys.readouterr().out
    assert cli.shard_from_args(argparse.Namespace(shard=None, shard_from_env=False)) is None
    monkeypatch.delenv("JOB_COMPLETION_INDEX")
    with pytest.raises(SystemExit, match="^error: no shard in the environment"):
        cli.shard_from_args(argparse.Namespace(shard=None, shard_from_env=True))


# ----------------------------------------------------------- the shipped commands, for real (slow)
def _base_env() -> dict[str, str]:
    """This environment without any engine's or graders' variables, this venv's python first."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GRADERS_", "SLURM_", "JOB_COMPLETION_INDEX"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def _k8s_env(job: dict, root: Path, url: str, extra: dict[str, str]) -> dict[str, str]:
    """The container's environment as Kubernetes would make it, with the course volume at
    ``root`` and the Secret holding ``url``."""
    container = _container(job)
    env = _base_env()
    for name, entry in _env(container).items():
        if "value" in entry:
            env[name] = entry["value"]
        else:
            ref = entry["valueFrom"]["secretKeyRef"]
            assert (ref["name"], ref["key"]) == (SECRET, SECRET_KEY)
            env[name] = url
    assert env["COURSE_ROOT"] == container["workingDir"]
    env["COURSE_ROOT"] = str(root)
    return {**env, **extra}


def _k8s_run(name: str, root: Path, url: str, **extra: str) -> subprocess.Popen:
    job = _load(name)
    container = _container(job)
    return subprocess.Popen([*container["command"], *container.get("args", [])], cwd=root,
                            env=_k8s_env(job, root, url, extra), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _sbatch_env(script: Path, array: str | None = None, task: int | None = None) -> dict:
    """What sbatch would set for ``script``'s ``#SBATCH`` lines (the array as given)."""
    options = dict(re.findall(r"^#SBATCH --([\w-]+)=(\S+)", script.read_text(), re.M))
    env = {}
    if "cpus-per-task" in options:
        env["SLURM_CPUS_PER_TASK"] = options["cpus-per-task"]
    if "mem" in options:
        number, unit = re.fullmatch(r"(\d+)([KMGT]?)", options["mem"]).groups()
        env["SLURM_MEM_PER_NODE"] = str(int(number) * {"K": 1 / 1024, "": 1, "M": 1,
                                                       "G": 1024, "T": 1 << 20}[unit])
    if array is not None:
        low, high = map(int, array.split("-"))
        env.update(SLURM_ARRAY_TASK_ID=str(task), SLURM_ARRAY_TASK_MIN=str(low),
                   SLURM_ARRAY_TASK_MAX=str(high), SLURM_ARRAY_TASK_STEP="1",
                   SLURM_ARRAY_TASK_COUNT=str(high - low + 1))
    return env


def _slurm_run(name: str, root: Path, url: str, array: str | None = None,
               task: int | None = None) -> subprocess.Popen:
    script = SLURM / name
    env = {**_base_env(), "COURSE_ROOT": str(root), "GRADERS_DB_URL": url,
           **_sbatch_env(script, array, task)}
    return subprocess.Popen(["bash", str(script)], cwd=root, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _finish(run: subprocess.Popen, timeout: float = 300) -> str:
    output = run.communicate(timeout=timeout)[0]
    assert run.returncode == 0, output
    return output


def _course_folder(serial: Course, root: Path) -> Path:
    """The shared course folder before release: config, source, submitted (as collected)."""
    root.mkdir()
    shutil.copy2(serial.root / "nbgrader_config.py", root / "nbgrader_config.py")
    for name in ("source", "submitted"):
        shutil.copytree(serial.root / name, root / name)
    return root


def _clone_database(server, source_url: str, name: str) -> str:
    """A copy of a (released) database on ``server``."""
    return server.create_database(name, template=source_url.rsplit("/", 1)[1])


def _check_shard_outputs(outputs: list[str], source: str) -> None:
    """Each run said which shard the engine gave it and graded exactly that shard."""
    for k, output in enumerate(outputs, start=1):
        assert f"shard {k}/2 (from {source.format(k=k, index=k - 1)})" in output, output
        for student in rows.STUDENTS:
            assert (student in output) == (student in select_shard(rows.STUDENTS, k, 2)), output


@pytest.mark.slow
@pytest.mark.xdist_group("tinycourse")
def test_the_shipped_steps_grade_a_class_like_a_serial_grading(
    postgres_server, tmp_path  # noqa: F811
):
    """Release (the Kubernetes release Job), then grading on both engines at once (two pods of
    the Indexed Job into one database, two Slurm array tasks into a copy of the released one),
    then the reports (the Slurm report script). Each engine's other step is the same command
    shape, checked above; running it too would double this test's minute."""
    from graders.sandbox import sandbox_status

    if not sandbox_status().available:  # the grading steps refuse to run unsandboxed
        pytest.skip(f"no sandbox here: {sandbox_status().reason}")
    serial = rows.courses(tmp_path.parent / "pg-tiny")["serial"]
    assert all(select_shard(rows.STUDENTS, k, 2) for k in (1, 2))  # both shards have work
    k8s_root = _course_folder(serial, tmp_path / "k8s")
    k8s_url = postgres_server.create_database("deploy_k8s")

    _finish(_k8s_run("release-job.yaml", k8s_root, k8s_url))
    assert (k8s_root / "release" / A / f"{A}.ipynb").is_file()
    assert (k8s_root / "reports" / "release" / f"{A}.zip").is_file()
    slurm_root = tmp_path / "slurm"
    shutil.copytree(k8s_root, slurm_root)
    slurm_url = _clone_database(postgres_server, k8s_url, "deploy_slurm")

    runs = [_k8s_run("grade-job.yaml", k8s_root, k8s_url, JOB_COMPLETION_INDEX=str(k - 1),
                     GRADERS_SHARD_COUNT="2") for k in (1, 2)]  # N = 2 in the manifest
    runs += [_slurm_run("grade.sbatch", slurm_root, slurm_url, array="1-2", task=k)
             for k in (1, 2)]  # sbatch --array=1-2
    outputs = [_finish(run) for run in runs]  # four machines at once
    _check_shard_outputs(outputs[:2], "JOB_COMPLETION_INDEX={index}, GRADERS_SHARD_COUNT=2")
    _check_shard_outputs(outputs[2:], "SLURM_ARRAY_TASK_ID={k}, SLURM_ARRAY_TASK_MIN=1, "
                                      "SLURM_ARRAY_TASK_COUNT=2")
    assert rows.snapshot(k8s_url) == rows.snapshot(serial.db_url)
    assert rows.snapshot(slurm_url) == rows.snapshot(serial.db_url)
    assert not any(url in output for output in outputs for url in (k8s_url, slurm_url))

    _finish(_slurm_run("report.sbatch", slurm_root, slurm_url))
    course = Course(slurm_root, db_url=slurm_url)
    assert {s for s in rows.STUDENTS if course.feedback_path(s, A).is_file()} == set(rows.STUDENTS)
    with (slurm_root / "reports" / "gradebook.csv").open(newline="") as fh:
        exported = {r["student"]: r for r in csv.DictReader(fh)}
    assert set(exported) == set(rows.STUDENTS)
    for student, how in rows.STUDENTS.items():
        assert exported[student]["status"] == "graded"
        assert float(exported[student]["score"]) == sum(tinycourse.expected_scores(**how).values())
    assert (slurm_root / "reports" / "grades.csv").is_file()
    for root in (k8s_root, slurm_root):
        assert not (root / "gradebook.db").exists()  # everything went to PostgreSQL
