"""The platform: what runs the flows on a self-hosted Prefect server. The local stack of `make up`
(local.py), the worker supervisor of `make up` and the compose workers (worker_supervisor.py), the
one process module (processes.py) and a throwaway PostgreSQL cluster (postgres.py).

    python -m stack up | down | status          # what make up / down / status run
    python -m stack.worker_supervisor ARGS      # a supervised `prefect worker start ARGS`

Registering the flows is the other package's job (deployments/); this one reads its settings
(deployments/settings.py) and runs `python -m deployments apply` in the stack it starts.
"""
