"""Registering the flows with a Prefect server: prefect.yaml read and checked (spec, check), the
server's state compared with it (state, plan) and made to match (apply, pool, strict_parameters,
automations), the flow image's tag, and the repository's settings (settings.py), which the platform
package (stack/) reads too.

    python -m deployments plan | apply | check
"""
