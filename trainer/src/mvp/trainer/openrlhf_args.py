"""OpenRLHF's `train_ppo_ray` arguments: its own parser where OpenRLHF is installed, a recording
of it where it is not.

OpenRLHF builds its parser, and checks the parsed arguments, inside ``if __name__ == "__main__":``
of ``openrlhf/cli/train_ppo_ray.py``, a module whose imports need ray, DeepSpeed and CUDA builds.

- Where OpenRLHF ``OPENRLHF_VERSION`` is installed (``make openrlhf-cpu`` puts it into the vLLM
  venv), ``openrlhf_main_args(argv)`` runs that block itself, OpenRLHF's statements unchanged, up to
  the ``train(args)`` call: its parser, its ``hierarchize`` and every post-parse assertion.
  Nothing of it is re-implemented, and no training module is imported.
- Everywhere else (this project's main venv, CI's lint step) the parser is *recorded*:
  ``record(source)`` reads every ``parser.add_argument(...)`` call of that file with ``ast``
  (literal arguments only, as OpenRLHF writes them), and ``parser()`` rebuilds an equivalent
  argparse parser from the recording committed beside this file. Regenerate with
  ``python -m mvp.trainer.openrlhf_args path/to/train_ppo_ray.py`` after
  ``pip download --no-deps openrlhf==VERSION``. tests/trainer/test_openrlhf_rollout.py checks that
  the two parse every shipped recipe to the same values.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import io
import json
import sys
from pathlib import Path
from types import SimpleNamespace

OPENRLHF_VERSION = "0.11.2"
RECORDING = Path(__file__).with_name(f"openrlhf_{OPENRLHF_VERSION}_train_ppo_ray_args.json")
_TYPES = {"int": int, "float": float, "str": str}


def _value(node: ast.AST, env: dict[str, object]) -> object:
    """Literal value of ``node``; f-strings and names may use loop variables from ``env``."""
    if isinstance(node, ast.JoinedStr):
        parts = []
        for part in node.values:
            if isinstance(part, ast.Constant):
                parts.append(str(part.value))
            elif isinstance(part, ast.FormattedValue):
                parts.append(str(_value(part.value, env)))
        return "".join(parts)
    if isinstance(node, ast.Name) and node.id in env:
        return env[node.id]
    return ast.literal_eval(node)


def _calls(statements: list[ast.stmt], env: dict[str, object], out: list[dict]) -> None:
    for stmt in statements:
        if isinstance(stmt, ast.For) and isinstance(stmt.target, ast.Name):
            try:
                values = ast.literal_eval(stmt.iter)
            except ValueError:
                values = None
            if isinstance(values, list | tuple):
                for value in values:
                    _calls(stmt.body, {**env, stmt.target.id: value}, out)
                continue
        for child in ast.iter_child_nodes(stmt):
            if isinstance(child, ast.stmt):
                _calls([child], env, out)
        call = stmt.value if isinstance(stmt, ast.Expr) else None
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)):
            continue
        if call.func.attr != "add_argument":
            continue
        kwargs: dict = {}
        for kw in call.keywords:
            if kw.arg == "type" and isinstance(kw.value, ast.Name):
                kwargs["type"] = kw.value.id
            elif kw.arg == "help":
                continue
            else:
                try:
                    kwargs[kw.arg] = _value(kw.value, env)
                except ValueError:
                    kwargs[kw.arg] = None  # a computed default: recorded as unknown
        out.append({"flags": [_value(a, env) for a in call.args], "kwargs": kwargs})


def record(source: str) -> list[dict]:
    """Every add_argument call of the source, as {flags, kwargs} with literal values (loops over
    literal tuples, like ``for prefix in ("actor", "critic")``, are unrolled)."""
    out: list[dict] = []
    _calls(ast.parse(source).body, {}, out)
    return sorted(out, key=lambda c: c["flags"][0])


def parser() -> argparse.ArgumentParser:
    """An argparse parser equivalent to OpenRLHF's, built from the committed recording."""
    p = argparse.ArgumentParser(prog="openrlhf.cli.train_ppo_ray", add_help=False, allow_abbrev=False)
    for call in json.loads(RECORDING.read_text()):
        kwargs = dict(call["kwargs"])
        if "type" in kwargs:
            kwargs["type"] = _TYPES.get(kwargs["type"], str)
        p.add_argument(*call["flags"], **kwargs)
    return p


def installed_source() -> Path | None:
    """``openrlhf/cli/train_ppo_ray.py`` of the installed OpenRLHF, if its version is
    ``OPENRLHF_VERSION`` (found through the package metadata: nothing of OpenRLHF is imported)."""
    from importlib import metadata

    try:
        dist = metadata.distribution("openrlhf")
    except metadata.PackageNotFoundError:
        return None
    path = Path(str(dist.locate_file("openrlhf/cli/train_ppo_ray.py")))
    return path if dist.version == OPENRLHF_VERSION and path.is_file() else None


class OpenRLHFRefusedError(ValueError):
    """OpenRLHF's own parser or one of its post-parse assertions refused the arguments."""


def _main_block(source: str, filename: str, build_only: bool = False) -> ast.Module:
    """The statements of the source's ``if __name__ == "__main__":`` block that parse and check the
    arguments: everything before the first statement that starts training (``train(args)``), less any
    that patches a model hub, with ``parser.parse_args()`` reading ``__argv__`` instead of sys.argv.
    With ``build_only``, only the statements that build the parser (those before parse_args)."""
    tree = ast.parse(source, filename)
    block = next(
        node.body
        for node in tree.body
        if isinstance(node, ast.If)
        and isinstance(node.test, ast.Compare)
        and isinstance(node.test.left, ast.Name)
        and node.test.left.id == "__name__"
    )
    # the module's standard-library imports (argparse, os, ...); its ray and training imports are skipped
    kept: list[ast.stmt] = [
        node
        for node in tree.body
        if isinstance(node, ast.Import | ast.ImportFrom)
        and all(
            (alias.name if isinstance(node, ast.Import) else node.module or "").split(".")[0] in sys.stdlib_module_names
            for alias in node.names
        )
    ]
    for stmt in block:
        names = {n.id for n in ast.walk(stmt) if isinstance(n, ast.Name)}
        attrs = {n.attr for n in ast.walk(stmt) if isinstance(n, ast.Attribute)}
        if "train" in names or (build_only and "parse_args" in attrs):
            break
        if "patch_hub" not in names:
            kept.append(stmt)
    module = ast.Module(body=kept, type_ignores=[])
    for node in ast.walk(module):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "parse_args":
            node.args = [ast.Name(id="__argv__", ctx=ast.Load())]
    return ast.fix_missing_locations(module)


def _compiled(source: Path | None, build_only: bool = False):
    """The main block of ``source`` (default: the installed OpenRLHF's), compiled; LookupError without one."""
    source = source or installed_source()
    if source is None:
        raise LookupError(f"OpenRLHF {OPENRLHF_VERSION} is not installed here (make openrlhf-cpu)")
    return compile(_main_block(source.read_text(), str(source), build_only), str(source), "exec")


def openrlhf_main_args(argv: list[str], source: Path | None = None) -> tuple[SimpleNamespace, str]:
    """(args, printed): ``argv`` parsed and checked by OpenRLHF's own ``__main__`` block (see the
    module docstring), and what the block printed (its warnings). Raises OpenRLHFRefusedError with
    OpenRLHF's message when its parser or an assertion refuses them, LookupError without OpenRLHF."""
    code = _compiled(source)
    scope: dict[str, object] = {"__name__": "openrlhf_main_args", "__argv__": list(argv)}
    printed, errors = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(errors):
            exec(code, scope)  # noqa: S102 - the installed OpenRLHF's own statements
    except SystemExit as exc:  # argparse: unknown flag, bad value
        said = errors.getvalue().strip().splitlines()
        raise OpenRLHFRefusedError(said[-1] if said else f"OpenRLHF's parser exited with {exc.code}") from None
    except AssertionError as exc:
        raise OpenRLHFRefusedError(str(exc) or "an OpenRLHF assertion failed") from None
    except (AttributeError, TypeError) as exc:  # a check that dereferences an unset argument
        raise OpenRLHFRefusedError(f"OpenRLHF's checks failed on these arguments: {exc}") from None
    return scope["args"], printed.getvalue()  # type: ignore[return-value]


def openrlhf_parser(source: Path | None = None) -> argparse.ArgumentParser:
    """OpenRLHF's own ``train_ppo_ray`` parser, built by its own statements (before any check)."""
    scope: dict[str, object] = {"__name__": "openrlhf_parser"}
    exec(_compiled(source, build_only=True), scope)  # noqa: S102 - the installed OpenRLHF's own statements
    return scope["parser"]  # type: ignore[return-value]


def main() -> None:
    source = Path(sys.argv[1]).read_text()
    calls = record(source)
    RECORDING.write_text(json.dumps(calls, indent=1) + "\n")
    print(f"recorded {len(calls)} arguments into {RECORDING}")


if __name__ == "__main__":
    main()
