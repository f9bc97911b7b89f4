"""`make mutate`: mutation testing (mutmut) of the modules where a bug costs money, then a summary.

Usage (from the project directory, in the venv)::

    python tools/mutate.py                 # a fresh run over every module of [tool.mutmut]
    python tools/mutate.py --report        # only print the summary of the last run
    python tools/mutate.py 'ordersaga.saga.executor*' 'ordersaga.proving.audit*'   # re-test some

The modules (``only_mutate``) and the fast tests run against them
(``pytest_add_cli_args_test_selection``) are in pyproject.toml's ``[tool.mutmut]``. mutmut copies
src/ and tests/ into ``mutants/`` (gitignored) and runs each mutant against the tests that call the
mutated function. Its progress goes to ``mutants/mutmut-run.log``.

Tests run with ``HYPOTHESIS_PROFILE=mutate`` (derandomized: a kill is reproducible; no deadline:
the trampolines slow every call) and without ``CI`` (PostgreSQL tests skip unless
``ORDERSAGA_PG_URL`` is set).

The summary: per module, mutants generated, killed (a test failed; timeouts count as killed),
survived (every test passed), and no tests (no selected test calls the function); then each
survivor by name. ``mutmut show NAME`` prints a survivor's diff, ``mutmut apply NAME`` applies it
to src/ (to write the test that kills it; revert with git). Exit status 0 whatever survived: the
summary is for people to read, not a gate.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MUTANTS = ROOT / "mutants"
LOG = MUTANTS / "mutmut-run.log"

#: mutmut's exit codes (mutmut/stats.py), folded into the summary's columns.
STATUS: dict[int | None, str] = {1: "killed", 3: "killed", 0: "survived", 5: "no tests"}
STATUS |= {33: "no tests", 34: "skipped"}
STATUS |= {36: "killed", -24: "killed", 24: "killed", 152: "killed", 255: "killed"}  # timeouts
STATUS |= {None: "not checked", 37: "killed"}  # 37: caught by a type check
COLUMNS = ("generated", "killed", "survived", "no tests", "other")


def run_mutmut(names: list[str], children: int) -> int:
    if not names and MUTANTS.exists():
        shutil.rmtree(MUTANTS)  # a fresh run: no verdict reused from an older source
    # With names, mutmut re-tests the named mutants (and runs the tests new since the last run
    # for its map of which test calls which function); other modules' verdicts stay.
    MUTANTS.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["HYPOTHESIS_PROFILE"] = "mutate"
    command = [sys.executable, "-m", "mutmut", "run", "--max-children", str(children), *names]
    print("$", "HYPOTHESIS_PROFILE=mutate", " ".join(command[1:]), f"> {LOG.relative_to(ROOT)}")
    with LOG.open("w", encoding="utf-8") as log:
        done = subprocess.run(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        print(f"mutmut failed (exit {done.returncode}); the end of {LOG}:", file=sys.stderr)
        print(LOG.read_text(encoding="utf-8", errors="replace")[-3000:], file=sys.stderr)
    return done.returncode


def results() -> dict[str, dict[str, int | None]]:
    """module -> mutant name -> exit code, from mutmut's .meta files."""
    found: dict[str, dict[str, int | None]] = {}
    for meta in sorted((MUTANTS / "src").rglob("*.py.meta")):
        module = ".".join(meta.relative_to(MUTANTS / "src").with_suffix("").with_suffix("").parts)
        data = json.loads(meta.read_text(encoding="utf-8"))
        found[module] = data.get("exit_code_by_key", {})
    return found


def summary(found: dict[str, dict[str, int | None]], names: list[str]) -> str:
    import fnmatch

    def wanted(mutant: str) -> bool:
        return not names or any(fnmatch.fnmatchcase(mutant, pattern) for pattern in names)

    rows: list[tuple[str, Counter[str]]] = []
    survivors: defaultdict[str, list[str]] = defaultdict(list)
    total: Counter[str] = Counter()
    for module, codes in found.items():
        counts: Counter[str] = Counter()
        for mutant, code in sorted(codes.items()):
            if not wanted(mutant):
                continue
            status = STATUS.get(code, "other")
            counts["generated"] += 1
            counts[status if status in COLUMNS else "other"] += 1
            if status == "survived":
                survivors[module].append(mutant)
        if counts:
            rows.append((module, counts))
            total.update(counts)
    width = max([len(m) for m, _ in rows] + [len("total")])
    lines = [f"{'module':<{width}}  " + "  ".join(f"{c:>9}" for c in COLUMNS)]
    for module, counts in [*rows, ("total", total)]:
        lines.append(f"{module:<{width}}  " + "  ".join(f"{counts[c]:>9}" for c in COLUMNS))
    for module, mutants in survivors.items():
        lines.append(f"\nsurvivors in {module} ({len(mutants)}):")
        lines.extend(f"  {mutant}" for mutant in mutants)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "names", nargs="*", help="mutant name globs, e.g. 'ordersaga.proving.audit*'"
    )
    parser.add_argument("--report", action="store_true", help="only summarise the last run")
    parser.add_argument("--max-children", type=int, default=2, help="mutants run at once")
    args = parser.parse_args(argv)
    os.chdir(ROOT)  # mutmut runs from the project directory
    if not args.report and run_mutmut(args.names, args.max_children) != 0:
        return 1
    found = results()
    if not found:
        print("no mutmut results in mutants/: run without --report first", file=sys.stderr)
        return 1
    print(summary(found, args.names))
    return 0


if __name__ == "__main__":
    sys.exit(main())
