"""OpenRLHF's `train_ppo_ray` argument list, recorded from its source, as an argparse parser.

OpenRLHF cannot be imported here (it needs ray, deepspeed and CUDA builds), and its parser is built
inside ``if __name__ == "__main__":``. So the parser is *recorded*: ``record(source)`` reads every
``parser.add_argument(...)`` call of ``openrlhf/cli/train_ppo_ray.py`` with ``ast`` (literal
arguments only, as OpenRLHF writes them), and ``parser()`` rebuilds an equivalent argparse parser
from the recording committed beside this file. Regenerate with
``python -m mvp.trainer.openrlhf_args path/to/train_ppo_ray.py`` after
``pip download --no-deps openrlhf==VERSION``.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from pathlib import Path

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


def main() -> None:
    source = Path(sys.argv[1]).read_text()
    calls = record(source)
    RECORDING.write_text(json.dumps(calls, indent=1) + "\n")
    print(f"recorded {len(calls)} arguments into {RECORDING}")


if __name__ == "__main__":
    main()
