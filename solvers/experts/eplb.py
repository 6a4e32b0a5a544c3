"""DeepSeek's expert-parallel load balancer (EPLB, github.com/deepseek-ai/EPLB), in numpy.

Hierarchical policy (expert groups divide over nodes, so group-limited routing keeps its traffic
inside a node): 1. pack expert groups onto nodes, balancing tokens; 2. inside each node, give the
redundant slots to the experts with the largest load per replica, one at a time (water-filling);
3. pack each node's physical experts onto its GPUs, balancing tokens. Global policy (groups do not
divide over nodes): the same with one group and one node. A replicated expert's tokens are
assumed to split evenly over its replicas, as the engines route them.

Packing is greedy: items in descending weight, each into the lightest pack that still has room
(every pack takes exactly items / packs). Ties break towards the lower index, as the reference
does; its README example is reproduced exactly (tests/test_experts.py).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from hardware_db.errors import InvalidSpecError

IntArray = npt.NDArray[np.int64]
Array = npt.NDArray[np.float64]


def balanced_packing(weight: Array, packs: int) -> tuple[IntArray, IntArray]:
    """Per row, the pack of each item and its position in the pack; every pack gets n / packs
    items. Rows are packed together: one vector step per item rank."""
    rows, n = weight.shape
    per_pack = n // packs
    if per_pack == 1:
        idx = np.broadcast_to(np.arange(n), (rows, n)).copy()
        return idx, np.zeros((rows, n), dtype=np.int64)
    order = np.argsort(-weight, axis=1, kind="stable")
    pack_of = np.empty((rows, n), dtype=np.int64)
    rank_of = np.empty((rows, n), dtype=np.int64)
    load = np.zeros((rows, packs))
    items = np.zeros((rows, packs), dtype=np.int64)
    r = np.arange(rows)
    for j in range(n):
        item = order[:, j]
        pack = np.argmin(np.where(items < per_pack, load, np.inf), axis=1)
        pack_of[r, item] = pack
        rank_of[r, item] = items[r, pack]
        load[r, pack] += weight[r, item]
        items[r, pack] += 1
    return pack_of, rank_of


def replicate(weight: Array, physical: int) -> tuple[IntArray, IntArray, IntArray]:
    """Water-filling: each extra slot goes to the expert with the most tokens per replica.
    Returns phy2log, the replica rank of each slot, and replicas per expert."""
    rows, logical = weight.shape
    phy2log = np.tile(np.arange(physical, dtype=np.int64), (rows, 1))
    rank = np.zeros((rows, physical), dtype=np.int64)
    count = np.ones((rows, logical), dtype=np.int64)
    r = np.arange(rows)
    for i in range(logical, physical):
        hot = np.argmax(weight / count, axis=1)
        phy2log[:, i] = hot
        rank[:, i] = count[r, hot]
        count[r, hot] += 1
    return phy2log, rank, count


def _inverse(perm: IntArray) -> IntArray:
    inv = np.empty_like(perm)
    np.put_along_axis(inv, perm, np.broadcast_to(np.arange(perm.shape[1]), perm.shape), axis=1)
    return inv


def _hierarchical(weight: Array, slots: int, groups: int, nodes: int, gpus: int) -> tuple[IntArray, IntArray]:
    layers, experts = weight.shape
    group_size, groups_per_node = experts // groups, groups // nodes
    per_gpu = slots // gpus
    # 1. expert groups onto nodes
    group_tokens = weight.reshape(layers, groups, group_size).sum(axis=2)
    g_pack, g_rank = balanced_packing(group_tokens, nodes)
    # each logical expert's index once experts are laid out node by node ("middle" order)
    first = (g_pack * groups_per_node + g_rank) * group_size
    log2mlog = (first[:, :, None] + np.arange(group_size)).reshape(layers, experts)
    mlog2log = _inverse(log2mlog)
    # 2. replicas inside each node
    per_node = np.take_along_axis(weight, mlog2log, axis=1).reshape(layers * nodes, experts // nodes)
    phy2mlog, _, mcount = replicate(per_node, slots // nodes)
    # 3. a node's physical experts onto its GPUs
    phy_tokens = np.take_along_axis(per_node / mcount, phy2mlog, axis=1)
    pack, rank = balanced_packing(phy_tokens, gpus // nodes)
    pphy2phy = _inverse(pack * per_gpu + rank)
    pphy2mlog = np.take_along_axis(phy2mlog, pphy2phy, axis=1)
    offsets = np.arange(0, experts, experts // nodes)[None, :, None]
    pphy2mlog = (pphy2mlog.reshape(layers, nodes, -1) + offsets).reshape(layers, -1)
    phy2log = np.take_along_axis(mlog2log, pphy2mlog, axis=1)
    count = np.take_along_axis(mcount.reshape(layers, -1), log2mlog, axis=1)
    return phy2log, count


def check_layout(experts: int, slots: int, groups: int, nodes: int, gpus: int) -> None:
    """The shapes EPLB (and every policy here) needs, refused in one line each."""
    if slots < experts:
        raise InvalidSpecError(f"slots ({slots}) must be >= experts ({experts}): every expert needs a slot")
    if gpus > slots:
        raise InvalidSpecError(f"EP size ({gpus} GPUs) is larger than the expert slots ({slots})")
    if slots % gpus:
        raise InvalidSpecError(f"slots ({slots}) must be a multiple of the GPUs ({gpus})")
    if gpus % nodes:
        raise InvalidSpecError(f"GPUs ({gpus}) must be a multiple of nodes ({nodes})")
    if experts % groups:
        raise InvalidSpecError(f"groups ({groups}) must divide the experts ({experts})")


def eplb(weight: Array, slots: int, groups: int, nodes: int, gpus: int) -> tuple[IntArray, IntArray]:
    """phy2log (layers x slots) and replicas per expert (layers x experts), the hierarchical policy
    when groups divide over nodes (and the slots over the nodes' GPUs), the global one otherwise."""
    experts = weight.shape[1]
    check_layout(experts, slots, groups, nodes, gpus)
    if groups % nodes == 0 and experts % nodes == 0 and slots % nodes == 0:
        return _hierarchical(weight, slots, groups, nodes, gpus)
    return _hierarchical(weight, slots, 1, 1, gpus)
