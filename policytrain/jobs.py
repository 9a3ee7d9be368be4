"""The policy app's job kinds (jobs.registry): RL and generation, on the `gpu` role."""
from jobs.registry import JobType, register

register(JobType(kind="policy", execute="policytrain.services.policy_run_execute", role="gpu", torch=True,
                 processes="policytrain.services.policy_run_processes", resumable=True))
register(JobType(kind="generation", execute="policytrain.services.generation_execute", role="gpu", torch=True))
