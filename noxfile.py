"""The project's test matrix: ``nox`` runs every session, ``nox -s tests`` the tests.

``nox -s tests`` runs the test suite on every CPython from 3.10 to 3.13 that
this machine has, and with the lowest versions of the dependencies that
``pyproject.toml`` allows. A Python the machine lacks is reported as a
skipped session, not a failure, on CI as well. Which backends each session
runs (asyncio, asyncio with uvloop, trio) is said in ``_matrix``. Sessions
run side by side, two per CPU, and uv makes their environments.

Interpreters are found here rather than left to nox, because a version
manager's shims can be on ``PATH`` and yet fail (pyenv's ``python3.12`` fails
unless pyenv is told to use 3.12): each candidate is run once, and the first
that answers with the right version is used, by its absolute path. Candidates,
in order: the Python nox runs on, ``python3.X`` on ``PATH``, then the builds
under ``$(pyenv root)/versions`` and those uv installed.
``FLAME_NOX_PYTHONS="3.10 3.12"`` limits the matrix to those versions.

Run one session with ``nox -s "tests(3.12)"``; ``nox -l`` lists them all.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile

import nox

nox.needs_version = ">=2025.10.14"
nox.options.sessions = ["lint", "typecheck", "proto", "tests", "docs"]
nox.options.reuse_existing_virtualenvs = True
# A Python this machine lacks skips its session, on CI too (nox fails it there by default).
nox.options.error_on_missing_interpreters = False
# Never download an interpreter: the matrix is what the machine has.
nox.options.download_python = "never"


def _option(name: str, value: object) -> None:
    """Set a nox option that only newer versions of nox have; an older one runs without it."""
    with contextlib.suppress(AttributeError):
        setattr(nox.options, name, value)


# Sessions run side by side, two per CPU, each in a nox process of its own
# (nox 2026.8.10 and newer; an older one runs them in turn). The tests wait on
# child processes, sockets and timers about half the time (a pytest run uses
# about half a CPU), so the four sessions of the matrix run at once on two
# cores. Their output is shown as each one ends; "nox -j 1 ..." shows it as
# it comes.
_option("parallel", 2 * (os.cpu_count() or 1))
_option("allow_parallel", True)

ROOT = pathlib.Path(__file__).parent
# Each Flame wire the SDK speaks: its .proto files, read from proto/<wire>/, and
# the root under src/flame/_proto/ its code is generated into. v0.4 and v0.5
# share the protobuf package `flame`, so each wire needs a root of its own.
PROTO_WIRES = {
    "v0.4": ("v04", ["types.proto", "frontend.proto", "shim.proto"]),
    "v0.5": ("v05", ["types.proto", "frontend.proto", "backend.proto", "shim.proto"]),
    "v0.6": ("v06", ["types.proto", "frontend.proto", "backend.proto", "shim.proto"]),
}
GENERATED = ROOT / "src" / "flame" / "_proto"

# Pinned so that the committed generated code is reproducible.
# ruff too: the compiler formats its output with whatever ruff it finds.
PROTO_TOOLS = ["betterproto2-compiler==0.10.1", "grpcio-tools==1.85.1", "ruff==0.17.6"]
PLUGIN_OPTIONS = "client_generation=async,server_generation=async"

PYTHONS = ("3.10", "3.11", "3.12", "3.13")
# Prints what a session installed, one "name==version" a line.
SHOW_VERSIONS = (
    "import importlib.metadata as m; "
    "print('\\n'.join(sorted(f\"{d.metadata['Name']}=={d.version}\" for d in m.distributions())))"
)
TWO_BACKENDS = "asyncio,trio"
# The backends the other Pythons take in turn, newest Python first: asyncio
# on uvloop's loop (where uvloop installs), then trio.
ONE_BACKEND = ("uvloop" if sys.platform != "win32" else "asyncio", "trio")
# What the sessions other than the primary leave out: the tests marked slow
# (a fuzzer, ten thousand calls, a thousand connections, round trips of every
# message through Google's runtime, every CLI command as a process on an
# embedded cluster), whose outcome does not hang on a Python or a backend.
NOT_SLOW = ("-m", "not slow")


# --------------------------------------------------------------------------
# uv, which makes a session's environment in seconds where pip takes half a minute


def _uv() -> str | None:
    """A uv binary: on ``PATH``, beside nox, or installed once into ``.nox/_tools``."""
    found = shutil.which(os.environ.get("UV") or "uv")
    if found:
        return found
    try:
        from uv import find_uv_bin

        return str(find_uv_bin())
    except (ImportError, FileNotFoundError):
        pass
    tools = ROOT / ".nox" / "_tools"
    binary = tools / "bin" / ("uv.exe" if os.name == "nt" else "uv")
    if not binary.exists():
        print("nox: installing uv into .nox/_tools, once", file=sys.stderr)
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--target", str(tools), "uv"],
            check=False,
        )
    return str(binary) if binary.exists() else None


_UV = _uv()
if _UV is not None:
    os.environ["UV"] = _UV
# Without uv (offline, say), nox makes environments with virtualenv and pip.
nox.options.default_venv_backend = "uv|virtualenv"


# --------------------------------------------------------------------------
# Finding interpreters


def _version_of(executable: str) -> tuple[str, str] | None:
    """``(X.Y, sys.executable)`` of the interpreter at ``executable``, or None if it fails."""
    try:
        answer = subprocess.run(
            [
                executable,
                "-c",
                "import sys; print('%d.%d' % sys.version_info[:2]); print(sys.executable)",
            ],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    lines = answer.stdout.split()
    if answer.returncode != 0 or len(lines) != 2:
        return None
    return lines[0], lines[1]


def _pyenv_root() -> pathlib.Path | None:
    root = os.environ.get("PYENV_ROOT")
    if not root and shutil.which("pyenv"):
        try:
            root = subprocess.run(
                ["pyenv", "root"], capture_output=True, text=True, timeout=20, check=False
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            root = ""
    path = pathlib.Path(root or pathlib.Path.home() / ".pyenv")
    return path if path.is_dir() else None


def _release(path: str) -> tuple[int, ...]:
    """The X.Y.Z in a version manager's folder name, for sorting (newest last)."""
    found = re.search(r"(\d+)\.(\d+)\.(\d+)", path)
    return tuple(int(part) for part in found.groups()) if found else ()


def _installed(version: str) -> list[str]:
    """Interpreters of ``version`` that version managers keep, newest patch release first."""
    found: list[str] = []
    pyenv = _pyenv_root()
    if pyenv is not None:
        # Plain CPython releases only: "3.12.1", not "3.13.0t" or "pypy3.10-7.3".
        builds = glob.glob(str(pyenv / "versions" / f"{version}.*" / "bin" / f"python{version}"))
        found += [b for b in builds if re.search(rf"/{re.escape(version)}\.\d+/bin/", b)]
    uv_pythons = pathlib.Path.home() / ".local" / "share" / "uv" / "python"
    found += glob.glob(str(uv_pythons / f"cpython-{version}.*" / "bin" / f"python{version}"))
    return sorted(found, key=_release, reverse=True)


@functools.cache
def find_python(version: str) -> str | None:
    """The absolute path of a working CPython ``version`` ("3.12") on this machine, or None."""
    candidates = [sys.executable]
    on_path = shutil.which(f"python{version}")
    if on_path:
        candidates.append(on_path)
    candidates += _installed(version)
    for candidate in candidates:
        answer = _version_of(candidate)
        if answer is not None and answer[0] == version:
            return answer[1]
    return None


def _wanted_pythons() -> tuple[str, ...]:
    wanted = os.environ.get("FLAME_NOX_PYTHONS", "").split()
    unknown = [version for version in wanted if version not in PYTHONS]
    if unknown:
        raise SystemExit(
            f"FLAME_NOX_PYTHONS names {' '.join(unknown)}; choose among {' '.join(PYTHONS)}"
        )
    return tuple(wanted) or PYTHONS


# --------------------------------------------------------------------------
# The test matrix


def _matrix() -> list[nox.param]:
    """The ``tests`` sessions: every Python present and every backend, within 15 minutes.

    The Python nox runs on (the machine's default), the primary, runs every
    test under asyncio and trio. The oldest Python runs asyncio and trio on
    the lowest dependency versions ``pyproject.toml`` allows. Each other
    Python runs one backend, in turn: the newest asyncio on uvloop's loop,
    the next trio. The sessions other than the primary leave out the tests
    marked ``slow``. So every backend runs on two Pythons or more, and the
    matrix stays within what two cores do in 15 minutes.
    ``FLAME_NOX_FULL=1`` runs every test under asyncio, uvloop and trio on
    every Python, with the latest dependencies on the oldest one too.

    A Python that is absent keeps its session, under its version number
    alone: nox finds no interpreter for it and reports it skipped. The
    longest session comes first, so that it does not start last when
    sessions run side by side.
    """
    pythons = _wanted_pythons()
    found = {version: find_python(version) for version in pythons}
    present = [version for version in pythons if found[version]]
    here = f"{sys.version_info[0]}.{sys.version_info[1]}"
    primary = here if found.get(here) else (present[0] if present else None)
    oldest = present[0] if present else None
    full = os.environ.get("FLAME_NOX_FULL", "") not in ("", "0")
    every = ",".join(dict.fromkeys(("asyncio", *ONE_BACKEND)))
    skip = () if full else NOT_SLOW
    params = []
    if primary is not None:
        backends = every if full else TWO_BACKENDS
        params.append(nox.param(found[primary], "latest", backends, (), id=primary))
    if oldest is not None and oldest != primary:
        backends = every if full else TWO_BACKENDS
        params.append(nox.param(found[oldest], "lowest", backends, skip, id=f"{oldest}-lowest"))
    others = [v for v in pythons if v != primary and (full or v != oldest)]
    for turn, version in enumerate(reversed(others)):
        backends = every if full else ONE_BACKEND[turn % len(ONE_BACKEND)]
        params.append(nox.param(found[version] or version, "latest", backends, skip, id=version))
    return params


@nox.session
@nox.parametrize("python,deps,backends,leave_out", _matrix())
def tests(session: nox.Session, deps: str, backends: str, leave_out: tuple[str, ...]) -> None:
    """pytest under every backend the session names, on latest or lowest dependencies.

    ``nox -s tests -- -k watch`` passes arguments on to pytest.
    """
    if deps == "lowest":
        constraints = pathlib.Path(session.create_tmp()) / "lowest.txt"
        constraints.write_text("\n".join(lowest_constraints()) + "\n", encoding="utf-8")
        session.install("-c", str(constraints), "-e", ".[test]")
        session.run("python", "-c", SHOW_VERSIONS, silent=False)
    else:
        session.install("-e", ".[test]")
    session.run("pytest", f"--backends={backends}", *leave_out, *session.posargs)


def lowest_constraints() -> list[str]:
    """``name==X`` for the lowest version each direct dependency allows (tests' included).

    A package named twice (in ``dependencies`` and in the ``test`` extra) gets
    the higher of its lower bounds: the lowest version both allow.
    """
    from packaging.requirements import Requirement

    try:
        import tomllib
    except ImportError:  # Python 3.10: nox brings tomli
        import tomli as tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    floors: dict[str, tuple[tuple[int, ...], str, str]] = {}
    for text in project["dependencies"] + project["optional-dependencies"]["test"]:
        requirement = Requirement(text)
        for specifier in requirement.specifier:
            if specifier.operator not in (">=", "==", "~="):
                continue
            key = requirement.name.lower().replace("_", "-")
            version = specifier.version
            rank = tuple(int(p) for p in re.findall(r"\d+", version))
            marker = f"; {requirement.marker}" if requirement.marker else ""
            if key not in floors or rank > floors[key][0]:
                floors[key] = (rank, version, marker)
    return [f"{name}=={version}{marker}" for name, (_, version, marker) in sorted(floors.items())]


# --------------------------------------------------------------------------
# Checks


#: The official clients the interop tests run, each in a session of its own
#: (they are one package, flamepy): 0.6.0 against flame local --wire v0.6,
#: 0.3.0 against flame local on v0.4.
INTEROP_CLIENTS = ["0.6.0", "0.3.0"]


@nox.session
@nox.parametrize("flamepy", INTEROP_CLIENTS)
def interop(session: nox.Session, flamepy: str) -> None:
    """tests/interop: the official client flamepy from PyPI against flame local.

    Not among the default sessions: flamepy brings grpcio and protobuf, and
    0.6.0 also pyarrow, pymongo, fastapi and more. The tests skip themselves
    where flamepy is not installed, so `nox -s tests` stays light.
    """
    session.install("-e", ".[test]", f"flamepy=={flamepy}")
    session.run("pytest", "tests/interop", "-p", "no:cacheprovider", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install("ruff==0.17.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict on src/ (generated code is excluded)."""
    session.install("-e", ".[test]", "mypy==2.4.1", "types-PyYAML", "uvloop")
    session.run("mypy")


@nox.session
def docs(session: nox.Session) -> None:
    """Build the docs site into site/ in strict mode: a broken reference or link fails.

    ``nox -s docs -- serve`` serves it with live reload instead.
    """
    session.install("-e", ".[docs]")
    if session.posargs[:1] == ["serve"]:
        session.run("mkdocs", "serve", *session.posargs[1:])
        return
    session.run("mkdocs", "build", "--strict", *session.posargs)


# --------------------------------------------------------------------------
# Generated code


def generate(session: nox.Session, wire: str, out: pathlib.Path) -> None:
    bindir = pathlib.Path(session.bin)
    env = {"PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"}
    source = ROOT / "proto" / wire
    _, files = PROTO_WIRES[wire]
    session.run(
        "python",
        "-m",
        "grpc_tools.protoc",
        f"-I{source}",
        f"--python_betterproto2_out={out}",
        f"--python_betterproto2_opt={PLUGIN_OPTIONS}",
        *[str(source / name) for name in files],
        env=env,
    )


@nox.session
def proto(session: nox.Session) -> None:
    """Regenerate src/flame/_proto/<root> from proto/<wire> for every wire; fail on drift.

    ``nox -s proto -- --write`` rewrites the committed code instead.
    """
    session.install(*PROTO_TOOLS)
    drift = []
    for wire, (root, _) in PROTO_WIRES.items():
        committed = GENERATED / root
        with tempfile.TemporaryDirectory() as tmp:
            out = pathlib.Path(tmp)
            generate(session, wire, out)
            if "--write" in session.posargs:
                shutil.rmtree(committed, ignore_errors=True)
                shutil.copytree(out, committed)
                session.log(f"wrote {committed}")
                continue
            drift += [f"{root}/{name}" for name in _compare(out, committed)]
    if drift:
        session.error("generated code differs from proto/: " + ", ".join(drift))
    if "--write" not in session.posargs:
        session.log("generated code matches proto/")


def _compare(fresh: pathlib.Path, committed: pathlib.Path) -> list[str]:
    def files(root: pathlib.Path) -> dict[str, bytes]:
        return {
            str(p.relative_to(root)): p.read_bytes()
            for p in root.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts
        }

    a, b = files(fresh), files(committed)
    return sorted(name for name in a.keys() | b.keys() if a.get(name) != b.get(name))
