"""Run notebooks in a fresh kernel on this test process's own interpreter.

The kernel manager gets a kernel spec built from ``sys.executable`` instead of
looking "python3" up on the Jupyter path, where a user-wide kernelspec could point
at another Python. Nothing is installed or registered.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat

PLOTLY_MIME = "application/vnd.plotly.v1+json"
_MARK = "@@dftlens-kernel@@"


def _this_python_kernel_manager():
    from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager

    spec = KernelSpec(argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                      display_name="Python 3 (this interpreter)", language="python", name="python3")

    class ThisPython(KernelSpecManager):
        def get_kernel_spec(self, kernel_name):  # every name resolves to this interpreter
            return spec

    return AsyncKernelManager(kernel_name="python3", kernel_spec_manager=ThisPython())


def execute(path: Path, cwd: Path, timeout: int = 900) -> nbformat.NotebookNode:
    """Run a notebook in a fresh kernel on this interpreter; raises on the first failing cell."""
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(f"import sys; print({_MARK!r}, sys.prefix)"))
    client = NotebookClient(nb, km=_this_python_kernel_manager(), timeout=timeout, allow_errors=False,
                            resources={"metadata": {"path": str(cwd)}})
    client.execute()
    return nb


def outputs(nb, output_type: str | None = None) -> list:
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
            if output_type is None or o.output_type == output_type]


def main(argv: list[str] | None = None) -> int:
    """``python tests/notebook_runner.py --out DIR NB...`` (``make notebooks``): run each notebook
    from the repository root in a fresh kernel on this interpreter and save the executed copy
    in DIR; the committed notebooks stay clean. Exit 1 on the first failing notebook."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--out", type=Path, default=Path("runs/notebooks"))
    parser.add_argument("notebooks", nargs="+", type=Path)
    args = parser.parse_args(argv)
    root = Path(__file__).resolve().parents[1]
    args.out.mkdir(parents=True, exist_ok=True)
    for path in args.notebooks:
        print(f"running {path} ...", flush=True)
        try:
            nb = execute(path.resolve(), cwd=root, timeout=7200)
        except Exception as err:  # nbclient's CellExecutionError carries the cell and traceback
            print(f"error: {path} failed:\n{err}", file=sys.stderr)
            return 1
        nb.cells.pop()  # the interpreter check execute() appended
        nbformat.write(nb, args.out / path.name)
        print(f"wrote {args.out / path.name}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
