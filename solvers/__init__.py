"""Search and optimisation on top of the planner engine: training plans, serving deployments,
expert placement.

Exports are imported lazily and always stay the exported objects (planner.LazyPackage)."""

from __future__ import annotations

from planner import install_lazy_exports

__all__ = install_lazy_exports(
    __name__,
    {
        "plan_training": "solvers.training_plan",
        "TrainingPlans": "solvers.training_plan",
        "plan_inference": "solvers.inference_plan",
        "InferencePlans": "solvers.inference_plan",
        "Slo": "solvers.inference_plan",
        "Workload": "solvers.inference_plan",
        "plan_experts": "solvers.experts",
        "ExpertPlan": "solvers.experts",
        "plan_disaggregated_mix": "solvers.disaggregated_mix",
        "DisaggregatedMixPlan": "solvers.disaggregated_mix",
        "plan_mix": "solvers.mix_plan",
        "MixPlan": "solvers.mix_plan",
        "plan_fleet": "solvers.fleet_plan",
        "FleetPlan": "solvers.fleet_plan",
        "plan_agent": "solvers.agent_plan",
        "AgentPlan": "solvers.agent_plan",
        "plan_models": "solvers.models_plan",
        "ModelsPlan": "solvers.models_plan",
    },
)
