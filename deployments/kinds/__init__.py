"""The table of kinds: every kind of server object the repository declares, in the order apply
creates and updates them (a kind after the kinds it refers to); prune deletes in reverse.

| kind | declared in | owned by |
| --- | --- | --- |
| work pool | `work_pools` | applied record (ids) |
| work queue | `work_pools[].queues` | applied record; a pool's `default` queue with its pool |
| variable | `variables` | owner tag |
| concurrency limit | `concurrency_limits` | applied record |
| block | `blocks` | applied record |
| deployment | `deployments` (with `schedules`, `triggers`) | owner tag |
| automation | `automations` | owner tag; names not unique |
"""

from deployments.kinds.automations import Automations
from deployments.kinds.base import Kind
from deployments.kinds.blocks import Blocks
from deployments.kinds.concurrency_limits import ConcurrencyLimits
from deployments.kinds.deployments import Deployments
from deployments.kinds.pools import WorkPools
from deployments.kinds.queues import WorkQueues
from deployments.kinds.variables import Variables

KINDS: list[Kind] = [
    WorkPools(),
    WorkQueues(),
    Variables(),
    ConcurrencyLimits(),
    Blocks(),
    Deployments(),
    Automations(),
]
