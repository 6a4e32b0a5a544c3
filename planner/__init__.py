"""planner: an analytical performance model and capacity planner for AI infrastructure.

The public API is imported lazily so that `import planner` (and `planner --help`) stays fast and
never pulls in pandas or plotly until a function that needs them is called.

Two exported functions share their name with the submodule that defines them (`planner.sweep`,
`planner.report`). Python's import system binds a submodule as an attribute of its package when the
submodule is first imported, which would replace the function with the module. `LazyPackage`
refuses exactly that binding, so `planner.sweep` and `from planner import sweep` are always the
function, while `from planner.sweep import load_grid` still reaches the module (through
sys.modules). The one form that cannot work is `import planner.sweep as m`: Python resolves it as
an attribute of the package, so it yields the function.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Mapping
from types import ModuleType
from typing import Any

__version__ = "0.1.0"


class LazyPackage(ModuleType):
    """A package whose exports (name -> defining module, in `_EXPORTS`) are imported on first use
    and stay the exported objects even after a same-named submodule is imported."""

    _EXPORTS: Mapping[str, str]

    def __getattr__(self, name: str) -> Any:
        module = self.__dict__.get("_EXPORTS", {}).get(name)
        if module is None:
            raise AttributeError(f"module '{self.__name__}' has no attribute '{name}'")
        value = getattr(importlib.import_module(module), name)
        ModuleType.__setattr__(self, name, value)  # later look-ups skip this hook
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, ModuleType) and name in self._EXPORTS and value.__name__ == f"{self.__name__}.{name}":
            return  # the import system binding a submodule over the export of the same name
        ModuleType.__setattr__(self, name, value)

    def __dir__(self) -> list[str]:
        return sorted({*super().__dir__(), *self._EXPORTS})


def install_lazy_exports(package: str, exports: Mapping[str, str]) -> list[str]:
    """Make the already-imported `package` a LazyPackage serving `exports`; returns its __all__."""
    module = sys.modules[package]
    module._EXPORTS = dict(exports)  # type: ignore[attr-defined]  # before the class hook reads it
    module.__class__ = LazyPackage
    return sorted(exports)


__all__ = install_lazy_exports(
    __name__,
    {
        "PlannerError": "hardware_db.errors",
        "UnknownIdError": "hardware_db.errors",
        "InvalidSpecError": "hardware_db.errors",
        "InfeasiblePlanError": "hardware_db.errors",
        "SolverLimitError": "hardware_db.errors",
        "load_catalog": "planner.catalog",
        "resolve_model": "planner.catalog",
        "Catalog": "planner.catalog",
        "parameter_counts": "workloads.derived",
        "kv_bytes_per_token": "workloads.derived",
        "kv_cache_bytes": "workloads.derived",
        "forward_flops_per_token": "workloads.derived",
        "from_hf_config": "workloads.hf_import",
        "ridge_points": "planner.describe",
        "estimate_inference": "planner.inference",
        "estimate_training": "planner.training",
        "estimate_gemm": "planner.kernels",
        "estimate_grouped_gemm": "planner.kernels",
        "estimate_moe_layer": "planner.kernels",
        "estimate_attention": "planner.kernels",
        "estimate_memory_copy": "planner.kernels",
        "estimate_collective": "planner.kernels",
        "run_validation": "planner.validation",
        "report": "planner.report",
        "sweep": "planner.sweep",
    },
)
