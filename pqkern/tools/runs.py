"""Several runs, one history: share each machine's runs through any git remote, then gather and publish them.

``pqkern-runs push`` pushes the current ``autoresearch/*`` branch and commits this machine's asv results
(``.asv/results/<machine>/*.json`` and ``benchmarks.json``) and ``results.tsv`` (one file per run,
``runs/<machine>/<branch>.tsv``; a version 4 file whole, under the current branch: its rows are sealed in a chain
under the machine's judge key, and verify only whole, and only on that machine: the report leaves out, and says
so, the rows it cannot verify) onto the results-only branch ``pqkern-results/<machine>``, built with git
plumbing (a temporary index and ``git commit-tree``: the working tree, the index and HEAD are untouched),
and pushes it. ``pqkern-runs gather`` fetches every ``autoresearch/*`` and ``pqkern-results/*`` branch,
copies the results into ``.asv/results/<machine>/`` and the run files into ``trials/runs/``, then publishes
the dashboard (every branch, remote-tracking ones included) and the report. ``--local`` skips the remote:
worktrees of one repository share their branches, so they can gather each other's runs without one.

Nothing is lost: a results branch only grows; an asv result arriving for a commit already measured keeps the
newer measurement (the older one is moved to ``.asv/replaced/``), a run file keeps its longer copy (they are
append-only), and anything else that differs (two machines under one name, two benchmark suites, two run
files that diverged) is refused before anything is written.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path, PurePosixPath

from pqkern.tools import dashboard, report
from pqkern.tools.results_tsv import ResultsFileError, run_file_name, split_by_branch

RESULTS = "pqkern-results/"
RUN_PREFIX = "autoresearch/"


class RunsError(RuntimeError):
    """The runs cannot be pushed or gathered; the message says why and what to do."""


def git(root: Path, *args: str, data: bytes | None = None, env: dict | None = None) -> str:
    p = subprocess.run(["git", *args], cwd=root, input=data, capture_output=True, env=env)
    if p.returncode:
        raise RunsError(f"git {' '.join(args)} failed: {p.stderr.decode(errors='replace').strip()}")
    return p.stdout.decode()


def asv_machine(root: Path, name: str | None) -> str:
    """The machine name asv records results under (``--machine``, else asv's own choice from ~/.asv-machine.json)."""
    if name:
        return name
    path = Path.home() / ".asv-machine.json"
    known = {k: v for k, v in json.loads(path.read_text()).items() if k != "version"} if path.is_file() else {}
    if platform.node() in known:
        return platform.node()
    if len(known) == 1:
        return next(iter(known.values()))["machine"]
    raise RunsError(f"which asv machine is this? {path} names {', '.join(known) or 'none'}: pass --machine NAME "
                    "(the name asv run records under)")


def read_blobs(root: Path, ref: str) -> dict[str, bytes]:
    """Every file of ``ref``'s tree, by path."""
    entries = [line.split("\t", 1) for line in git(root, "ls-tree", "-r", "-z", ref).split("\0") if line]
    shas = [meta.split()[2] for meta, _ in entries]
    out = subprocess.run(["git", "cat-file", "--batch"], cwd=root, input="".join(s + "\n" for s in shas).encode(),
                         capture_output=True, check=True).stdout
    blobs, at = {}, 0
    for (_, path), _sha in zip(entries, shas, strict=True):
        end = out.index(b"\n", at)
        size = int(out[at:end].split()[2])
        blobs[path] = out[end + 1 : end + 1 + size]
        at = end + 1 + size + 1
    return blobs


def _newest_sample(data: bytes) -> int:
    d = json.loads(data)
    at = d.get("result_columns", []).index("started_at") if "started_at" in d.get("result_columns", []) else None
    return max((r[at] or 0 for r in d.get("results", {}).values() if at is not None and len(r) > at), default=0)


def merge(path: str, present: bytes | None, arriving: bytes) -> bytes:
    """What ``path`` holds once ``arriving`` meets ``present`` (``None``: absent); raises RunsError on a conflict."""
    if present is None or present == arriving:
        return arriving
    name = PurePosixPath(path).name
    if name == "machine.json":
        raise RunsError(f"{path}: another machine.json under the same name; give each machine its own "
                        "(asv machine --machine NAME)")
    if name == "benchmarks.json":
        a, b = json.loads(present), json.loads(arriving)
        clash = sorted(k for k in a.keys() & b.keys() if k != "version" and a[k].get("version") != b[k].get("version"))
        if clash:
            raise RunsError(f"{path}: the benchmark suites differ ({', '.join(clash[:3])}): asv would drop one side's results")
        return present if b.keys() <= a.keys() else (json.dumps({**b, **a}, indent=4) + "\n").encode()
    if name.endswith(".json"):
        t_present, t_arriving = _newest_sample(present), _newest_sample(arriving)
        if t_present == t_arriving:
            raise RunsError(f"{path}: two different results measured at the same time")
        return arriving if t_arriving > t_present else present
    old, new = present.decode().splitlines(), arriving.decode().splitlines()
    if new[: len(old)] == old:
        return arriving
    if old[: len(new)] == new:
        return present
    raise RunsError(f"{path}: two copies of one run that diverged (results files are append-only); compare them by hand")


def local_files(root: Path, machine: str, branch: str) -> dict[str, bytes]:
    """This checkout's results in the results branch's layout."""
    results = dashboard.conf_path(root / "asv.conf.json", "results_dir", "results")
    files = {f"asv/{machine}/{p.name}": p.read_bytes() for p in sorted((results / machine).glob("*.json"))}
    if files and (results / "benchmarks.json").is_file():
        files["asv/benchmarks.json"] = (results / "benchmarks.json").read_bytes()
    tsv = root / "results.tsv"
    if tsv.is_file():
        try:
            runs = split_by_branch(tsv.read_text(encoding="utf-8"), tsv, branch)
        except ResultsFileError as e:
            raise RunsError(str(e)) from e
        files.update({f"runs/{machine}/{run_file_name(b)}": text.encode() for b, text in runs.items()})
    return files


def _sha(root: Path, ref: str) -> str | None:
    p = subprocess.run(["git", "rev-parse", "--verify", "-q", ref + "^{commit}"], cwd=root, capture_output=True, text=True)
    return p.stdout.strip() or None


def _is_ancestor(root: Path, a: str, b: str) -> bool:
    return subprocess.run(["git", "merge-base", "--is-ancestor", a, b], cwd=root).returncode == 0


def _identity(root: Path, machine: str) -> dict:
    """The environment for commit-tree: the user's git identity, or one naming the machine when none is set."""
    if subprocess.run(["git", "config", "user.email"], cwd=root, capture_output=True).returncode == 0:
        return dict(os.environ)
    who = {"NAME": "pqkern-runs", "EMAIL": f"pqkern-runs@{machine}.invalid"}
    return dict(os.environ, **{f"GIT_{role}_{k}": v for role in ("AUTHOR", "COMMITTER") for k, v in who.items()})


def commit_results(root: Path, machine: str, files: dict[str, bytes], parents: list[str], message: str) -> str | None:
    """Commit ``files`` merged into the first parent's tree on ``pqkern-results/<machine>``; None when nothing changes."""
    ref = f"refs/heads/{RESULTS}{machine}"
    merged = {}
    tree = read_blobs(root, parents[0]) if parents else {}
    for extra in parents[1:]:  # a local commit the remote never got: keep its files too
        for path, data in read_blobs(root, extra).items():
            merged[path] = merge(path, merged.get(path, tree.get(path)), data)
    for path, data in files.items():
        merged[path] = merge(path, merged.get(path, tree.get(path)), data)
    changes = {p: d for p, d in merged.items() if tree.get(p) != d}
    if not changes and len(parents) < 2:
        return None
    with tempfile.TemporaryDirectory(prefix="pqkern-runs-") as tmp:
        env = dict(os.environ, GIT_INDEX_FILE=str(Path(tmp) / "index"))
        git(root, "read-tree", parents[0] if parents else "--empty", env=env)
        for path, data in sorted(changes.items()):
            blob = git(root, "hash-object", "-w", "--stdin", data=data).strip()
            git(root, "update-index", "--add", "--cacheinfo", f"100644,{blob},{path}", env=env)
        new_tree = git(root, "write-tree", env=env).strip()
    parent_args = [a for p in parents for a in ("-p", p)]
    commit = git(root, "commit-tree", new_tree, *parent_args, "-m", message, env=_identity(root, machine)).strip()
    git(root, "update-ref", ref, commit, _sha(root, ref) or "0" * 40)
    return commit


def _check_remote(root: Path, remote: str) -> None:
    if remote not in git(root, "remote").split():
        raise RunsError(f"no git remote '{remote}': add one (git remote add {remote} URL; a bare repository on a shared "
                        "folder will do: git init --bare /shared/pqkern.git), pass --remote NAME, or --local")


def push(root: Path, remote: str | None, machine: str) -> str:
    """Record this checkout's runs on ``pqkern-results/<machine>`` and push it with the current branch; returns a summary."""
    branch = subprocess.run(["git", "symbolic-ref", "--quiet", "--short", "HEAD"], cwd=root, capture_output=True,
                            text=True).stdout.strip() or "a detached HEAD"
    if not branch.startswith(RUN_PREFIX):
        raise RunsError(f"on {branch}: push runs from the run's {RUN_PREFIX}<tag> branch")
    files = local_files(root, machine, branch)
    if not files:
        raise RunsError(f"nothing to push: no results.tsv and no asv results for machine '{machine}'")
    ref = RESULTS + machine
    if remote:
        _check_remote(root, remote)
        git(root, "fetch", "-q", remote, f"+refs/heads/{RESULTS}*:refs/remotes/{remote}/{RESULTS}*")
    theirs = _sha(root, f"refs/remotes/{remote}/{ref}") if remote else None
    ours = _sha(root, f"refs/heads/{ref}")
    parents = [t for t in (theirs, ours) if t]
    if len(parents) == 2 and (theirs == ours or _is_ancestor(root, ours, theirs)):
        parents = [theirs]
    elif len(parents) == 2 and _is_ancestor(root, theirs, ours):
        parents = [ours]  # an earlier push that did not reach the remote
    commit = commit_results(root, machine, files, parents, f"pqkern-runs: {machine} {branch} ({len(files)} files)")
    if commit is None and parents and parents[0] != ours:
        git(root, "update-ref", f"refs/heads/{ref}", parents[0])
    if remote:
        git(root, "push", "-q", remote, f"refs/heads/{branch}:refs/heads/{branch}", f"refs/heads/{ref}:refs/heads/{ref}")
    what = f"pushed {branch} and {ref} to {remote}" if remote else f"recorded {branch}'s results on {ref} locally"
    return f"{what} ({'updated' if commit else 'already up to date'}; {len(files)} files)"


def _destination(path: str, results: Path, runs_dir: Path) -> Path | None:
    parts = PurePosixPath(path).parts
    if any(p in ("", ".", "..") for p in parts):
        return None
    if parts == ("asv", "benchmarks.json"):
        return results / "benchmarks.json"
    if len(parts) == 3 and parts[0] == "asv" and parts[2].endswith(".json"):
        return results / parts[1] / parts[2]
    if len(parts) == 3 and parts[0] == "runs" and parts[2].endswith(".tsv"):
        return runs_dir / parts[1] / parts[2]
    return None


def gather(root: Path, remote: str | None, runs_dir: Path) -> list[str]:
    """Fetch every run and results branch, then merge their files into this checkout; returns what changed."""
    if remote:
        _check_remote(root, remote)
        git(root, "fetch", "-q", remote, f"+refs/heads/{RUN_PREFIX}*:refs/remotes/{remote}/{RUN_PREFIX}*",
            f"+refs/heads/{RESULTS}*:refs/remotes/{remote}/{RESULTS}*")
    refs = [r for r in git(root, "for-each-ref", "--format=%(refname)", f"refs/heads/{RESULTS}", "refs/remotes/").split()
            if r.startswith(f"refs/heads/{RESULTS}") or r.removeprefix("refs/remotes/").partition("/")[2].startswith(RESULTS)]
    results = dashboard.conf_path(root / "asv.conf.json", "results_dir", "results")
    plan: dict[Path, bytes] = {}
    conflicts = []
    for ref in refs:
        for path, data in read_blobs(root, ref).items():
            dest = _destination(path, results, runs_dir)
            if dest is None:
                continue
            present = plan.get(dest, dest.read_bytes() if dest.is_file() else None)
            try:
                plan[dest] = merge(path, present, data)
            except RunsError as e:
                conflicts.append(f"{ref.removeprefix('refs/')}: {e}")
    if conflicts:
        raise RunsError("refused, nothing written:\n  " + "\n  ".join(conflicts))
    changed = []
    for dest, data in sorted(plan.items()):
        old = dest.read_bytes() if dest.is_file() else None
        if old == data:
            continue
        if old is not None and dest.suffix == ".json" and dest.name not in ("benchmarks.json", "machine.json"):
            keep = results.parent / "replaced" / dest.parent.name / f"{dest.stem}.{_newest_sample(old)}.json"
            keep.parent.mkdir(parents=True, exist_ok=True)
            keep.write_bytes(old)
            changed.append(f"{os.path.relpath(dest, root)} (older measurement kept in {os.path.relpath(keep, root)})")
        else:
            changed.append(os.path.relpath(dest, root))
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
    return changed


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="pqkern-runs", description="Share runs through a git remote; gather and publish them.")
    p.add_argument("command", choices=["push", "gather"],
                   help="push: this checkout's branch, asv results and results.tsv; gather: everyone's, then publish")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--remote", default="origin", help="the shared git remote (default: origin)")
    where.add_argument("--local", action="store_true", help="no remote: only this repository's branches (its worktrees)")
    p.add_argument("--machine", help="push: the asv machine name (default: asv's, from ~/.asv-machine.json)")
    p.add_argument("--runs-dir", default="trials/runs", help="gather: where the run files go (default: trials/runs)")
    p.add_argument("--no-publish", action="store_true", help="gather: do not publish the dashboard and the report")
    p.add_argument("--node-modules", type=Path, default=dashboard.NODE_MODULES, help="where the dashboard's npm assets are")
    args = p.parse_args(argv)
    try:
        root = Path(git(Path.cwd(), "rev-parse", "--show-toplevel").strip())
        remote = None if args.local else args.remote
        if args.command == "push":
            print(f"pqkern-runs: {push(root, remote, asv_machine(root, args.machine))}")
            return 0
        runs_dir = (root / args.runs_dir).resolve()
        changed = gather(root, remote, runs_dir)
    except RunsError as e:
        print(f"pqkern-runs: {e}", file=sys.stderr)
        return 1
    print(f"pqkern-runs: gathered {len(changed)} new or newer files" + "".join(f"\n  {c}" for c in changed))
    return 0 if args.no_publish else publish(root, runs_dir, args.node_modules)


def publish(root: Path, runs_dir: Path, node_modules: Path) -> int:
    """The dashboard (when there are asv results) and the report (when there are run files); the first failure's code."""
    config = root / "asv.conf.json"
    rc = 0
    if (dashboard.conf_path(config, "results_dir", "results") / "benchmarks.json").is_file():
        try:
            rc = dashboard.publish(config, node_modules)[0]
        except dashboard.DashboardError as e:
            print(f"pqkern-runs: {e}", file=sys.stderr)
            rc = 1
    else:
        print("pqkern-runs: no asv results yet, no dashboard")
    if not any(runs_dir.rglob("*.tsv")):
        print(f"pqkern-runs: no run files in {runs_dir}, no report")
        return rc
    peers = root / "trials" / "peers.json"
    return report.main(["--runs", str(runs_dir), "-o", str(root / "trials" / "report.html"), "--peers", str(peers)]) or rc


if __name__ == "__main__":
    sys.exit(main())
