"""A deliberately naive simulator to check the engine against: plain lists, every pass
recomputed from scratch, placement by brute force over hosts. Slow and obviously right.

It implements fifo, fifo-firstfit, fifo-backfill (unbounded depth) and sjf with the same
placement rules as corral.state.placement (strict consolidation), and srtf and las (both
orders within a queue, no starvation promotion) for jobs on one host.
"""

from __future__ import annotations

import math

from corral.fleet import Fleet
from corral.workload import JobTable


def naive_place(fleet: Fleet, free: list[int], pool: int, gpus: int):
    hosts = [h for h in range(fleet.hosts) if fleet.host_pool[h] == pool]
    cap = [int(c) for c in fleet.host_gpus]
    size = max(cap[h] for h in hosts)
    if gpus <= size:
        fits = [h for h in hosts if free[h] >= gpus]
        if not fits:
            return None
        h = min(fits, key=lambda h: (free[h], h))
        return ((h, gpus),)
    n_whole, rem = divmod(gpus, size)
    levels = [
        lambda h: int(fleet.host_rack[h]),
        lambda h: int(fleet.host_pod[h]),
        lambda h: int(fleet.host_cluster[h]),
        lambda h: 0,
    ]
    for dom_of in levels:
        best = None
        for d in sorted({dom_of(h) for h in hosts}):
            members = [h for h in hosts if dom_of(h) == d]
            whole = [h for h in members if free[h] == cap[h]]
            partial = [h for h in members if free[h] < cap[h] and free[h] >= rem] if rem else []
            fits = len(whole) >= n_whole and (rem == 0 or partial or len(whole) > n_whole)
            if fits and (best is None or len(whole) < best[0]):
                best = (len(whole), whole, partial)
        if best is not None:
            _, whole, partial = best
            placement = [(h, size) for h in whole[:n_whole]]
            if rem:
                if partial:
                    placement.append((min(partial, key=lambda h: (free[h], h)), rem))
                else:
                    placement.append((whole[n_whole], rem))
            return tuple(placement)
    return None


def _minus(free: list[int], placement) -> list[int]:
    out = list(free)
    for h, g in placement:
        out[h] -= g
    return out


def naive_simulate(fleet: Fleet, jobs: JobTable, policy: str) -> list[float]:
    """First start time of each job."""
    n = len(jobs)
    submit = jobs.submit_s.tolist()
    dur = jobs.duration_s.tolist()
    gpus = jobs.gpus.tolist()
    pool = [fleet.pool_of_queue(q) for q in jobs.queue]
    free = [int(c) for c in fleet.host_gpus]
    start = [math.nan] * n
    end = [math.nan] * n
    placed: dict[int, tuple] = {}
    arrived: list[int] = []
    while any(math.isnan(e) for e in end):
        times = [submit[j] for j in range(n) if j not in arrived]
        times += [end[j] for j in placed]
        now = min(times)
        for j in sorted(placed):
            if end[j] == now:
                for h, g in placed.pop(j):
                    free[h] += g
        for j in range(n):
            if submit[j] == now and j not in arrived:
                arrived.append(j)
        for p in range(len(fleet.pools)):
            pending = [j for j in range(n) if j in arrived and math.isnan(start[j]) and pool[j] == p]
            pending.sort(key=lambda j: (submit[j], j))

            def begin(j, p=p, now=now):
                where = naive_place(fleet, free, p, gpus[j])
                if where is None:
                    return False
                for h, g in where:
                    free[h] -= g
                start[j], end[j] = now, now + dur[j]
                placed[j] = where
                return True

            if policy in ("sjf", "fifo-firstfit"):
                order = (lambda j: (dur[j], j)) if policy == "sjf" else (lambda j: (submit[j], j))
                for j in sorted(pending, key=order):
                    pool_free = sum(free[h] for h in range(fleet.hosts) if fleet.host_pool[h] == p)
                    if gpus[j] <= pool_free:
                        begin(j)
                continue
            while pending and begin(pending[0]):
                pending.pop(0)
            if policy != "fifo-backfill" or not pending:
                continue
            head = pending[0]
            # shadow: the first end instant (every job ending then counts) at which the head
            # could be placed on the GPUs free then; spot: where it would go
            shadow, at, spot = math.inf, None, None
            for t in sorted({end[j] for j in placed if pool[j] == p}):
                then = list(free)
                for j in placed:
                    if pool[j] == p and end[j] <= t:
                        for h, g in placed[j]:
                            then[h] += g
                where = naive_place(fleet, then, p, gpus[head])
                if where is not None:
                    shadow, at, spot = t, then, where
                    break
            for j in pending[1:]:
                where = naive_place(fleet, free, p, gpus[j])
                if where is None:
                    continue
                if now + dur[j] > shadow:
                    # it holds its GPUs past the shadow time: the head must keep its spot
                    # then, else this job goes off the GPUs of the spot, else the head must
                    # fit elsewhere then, else this job waits
                    taken = dict(where)
                    if any(at[h] - taken.get(h, 0) < g for h, g in spot):
                        off = list(free)
                        for h, g in spot:
                            off[h] = min(off[h], at[h] - g)
                        other = naive_place(fleet, off, p, gpus[j])
                        if other is not None:
                            where = other
                        elif naive_place(fleet, _minus(at, where), p, gpus[head]) is None:
                            continue
                    at = _minus(at, where)
                    spot = naive_place(fleet, at, p, gpus[head])
                for h, g in where:
                    free[h] -= g
                start[j], end[j] = now, now + dur[j]
                placed[j] = where
    return start


def naive_preemptive_decide(self, pool: int):
    """PreemptivePriority.decide as a plain walk over every waiting job in rank order, each
    tried in turn (no index by size, no memory of failed searches), in rounds until nobody
    is preempted: what the indexed pass must reproduce. A victim waits again at once in its
    rank and does not start again in the pass; victims are sought first among the running
    jobs that the whole pool handed out afresh by rank would not hold."""
    from corral.scheduling.policy import Preempt, Start
    from corral.scheduling.victims import victims_for_placement
    from corral.state.reasons import Reason

    view = self.view
    waiting = self.waiting[pool]
    if not waiting:
        return
    self.before_pass(pool)
    stopped_now: set[int] = set()

    def displaced_now() -> set[int]:
        below = set(self.victims(pool, waiting[0][1]))
        mine = [j for j in range(len(view.gpus)) if view.pool[j] == pool]
        kept = [j for j in mine if view.placement_of(j) and (j not in below or not view.preemptible[j])]
        held = sum(int(view.gpus[j]) for j in kept)
        room = view.pool_gpus(pool) - held
        walk = [(rank, job, False) for rank, job in waiting]
        walk += [(self.rank(v), v, True) for v in below if view.preemptible[v]]
        out = set()
        for _, job, running in sorted(walk):
            if view.gpus[job] <= room:
                room -= int(view.gpus[job])
            elif running:
                out.add(job)
        return out

    while True:
        may_preempt = True
        preempted = []
        seen: set[int] = set()
        displaced = None
        while True:
            job = next((j for _, j in waiting if j not in seen), None)
            if job is None:
                break
            seen.add(job)
            free = view.free_gpus(pool)
            can_preempt = may_preempt = may_preempt and self.outranks_running(pool, job)
            if free <= 0 and not can_preempt:
                break
            if job in stopped_now:
                continue
            placement = view.place(job) if view.gpus[job] <= free else None
            if placement is None:
                if not can_preempt:
                    continue
                if displaced is None:
                    displaced = displaced_now()
                below = list(self.victims(pool, job))
                order = [v for v in below if v in displaced] + [v for v in below if v not in displaced]
                chosen = victims_for_placement(view, job, order)
                if not chosen:
                    continue
                for victim in chosen:
                    self.stopped(victim)
                    yield Preempt(victim, Reason("preempted", "outranked"), by=job)
                    self._wait(victim)
                stopped_now.update(chosen)
                preempted.extend(chosen)
                placement = view.place(job)
            self._unwait(job)
            yield Start(job, placement)
            self.started(job)
        if not preempted:
            break
    if waiting:
        yield from self.after_pass(pool)


def naive_preemptive(
    fleet: Fleet, jobs: JobTable, policy: str, thresholds: tuple[float, ...] = (), order: str = "fifo"
) -> tuple[list[float], list[float], list[int]]:
    """First start, end and preemptions of each job under srtf or las (no starvation promotion), every
    rank recomputed at each instant: waiting jobs in rank order start where they fit, else
    preempt the running jobs ranked below them, lowest first, until they fit, then give
    back, highest first, those not needed; in rounds until nobody is preempted, the victims
    of one round waiting in the next."""
    n = len(jobs)
    submit, dur, gpus = jobs.submit_s.tolist(), jobs.duration_s.tolist(), jobs.gpus.tolist()
    preemptible = jobs.preemptible.tolist()
    pool = [fleet.pool_of_queue(q) for q in jobs.queue]
    free = [int(c) for c in fleet.host_gpus]
    done = [0.0] * n  # work done
    queue = [0] * n  # las
    key = [0.0] * n  # las: place within the queue
    entries = [0]
    start, end = [math.nan] * n, [math.nan] * n
    preemptions = [0] * n
    placed: dict[int, tuple] = {}
    since: dict[int, float] = {}
    arrived: set[int] = set()
    now = 0.0

    def place_key(at: float) -> float:
        if order == "fifo":
            return at
        entries[0] += 1
        return float(entries[0])

    def crossing(j: int) -> float:  # when running j reaches its queue's limit
        if queue[j] >= len(thresholds):
            return math.inf
        return since[j] + (thresholds[queue[j]] / gpus[j] - done[j])

    def rank(j: int) -> tuple:
        if policy == "srtf":
            return (dur[j] - done[j], j)
        return (queue[j], key[j], j)

    while any(math.isnan(e) for e in end):
        times = [submit[j] for j in range(n) if j not in arrived]
        times += [since[j] + dur[j] - done[j] for j in placed]
        times += [crossing(j) for j in placed if policy == "las"]
        now = min(times)
        touched = set()  # pools where something happened now: only those are passed
        for j in sorted(placed):  # work up to now
            done[j] += now - since[j]
            since[j] = now
        for j in sorted(placed):
            if abs(done[j] - dur[j]) < 1e-9:
                end[j] = now
                touched.add(pool[j])
                for h, g in placed.pop(j):
                    free[h] += g
                del since[j]
        for j in range(n):
            if submit[j] == now and j not in arrived:
                arrived.add(j)
                touched.add(pool[j])
                key[j] = place_key(now)
        if policy == "las":
            for j in sorted(placed, key=lambda j: (crossing(j), j)):
                if abs(crossing(j) - now) < 1e-9:
                    touched.add(pool[j])
                while queue[j] < len(thresholds) and done[j] * gpus[j] >= thresholds[queue[j]] - 1e-6:
                    at = now - (done[j] * gpus[j] - thresholds[queue[j]]) / gpus[j]
                    queue[j] += 1
                    key[j] = place_key(at)
        for p in sorted(touched):

            def begin(j: int, p: int = p, now: float = now) -> bool:
                where = naive_place(fleet, free, p, gpus[j])
                if where is None:
                    return False
                for h, g in where:
                    free[h] -= g
                placed[j], since[j] = where, now
                if math.isnan(start[j]):
                    start[j] = now
                return True

            stopped_now: set[int] = set()  # (a victim does not start again at this instant)
            victims = [-1]
            while victims:  # rounds until nobody is preempted
                victims = []
                seen: set[int] = set()
                displaced: set[int] | None = None
                while True:
                    waiting = [j for j in arrived if j not in placed and math.isnan(end[j]) and pool[j] == p]
                    waiting = sorted((j for j in waiting if j not in seen), key=rank)
                    if not waiting:
                        break
                    j = waiting[0]
                    seen.add(j)
                    if j in stopped_now or begin(j):
                        continue
                    below = [v for v in placed if pool[v] == p and preemptible[v] and rank(v) > rank(j)]
                    below.sort(key=rank, reverse=True)
                    if displaced is None:  # (Tiresias' handing-out, by count, in rank order)
                        displaced = set()
                        mine = [v for v in placed if pool[v] == p]
                        everyone = [
                            v for v in arrived if v not in placed and math.isnan(end[v]) and pool[v] == p
                        ]
                        top = min(rank(v) for v in everyone)
                        room = fleet.pool_gpus[p] - sum(
                            gpus[v] for v in mine if not preemptible[v] or rank(v) < top
                        )
                        others = [v for v in mine if preemptible[v] and rank(v) > top]
                        for v in sorted(others + everyone, key=rank):
                            if gpus[v] <= room:
                                room -= gpus[v]
                            elif v in placed:
                                displaced.add(v)
                    below = [v for v in below if v in displaced] + [v for v in below if v not in displaced]
                    trial, chosen = list(free), []
                    for v in below:
                        for h, g in placed[v]:
                            trial[h] += g
                        chosen.append(v)
                        if naive_place(fleet, trial, p, gpus[j]) is not None:
                            break
                    else:
                        continue
                    for v in reversed(list(chosen)):
                        without = list(trial)
                        for h, g in placed[v]:
                            without[h] -= g
                        if naive_place(fleet, without, p, gpus[j]) is not None:
                            trial = without
                            chosen.remove(v)
                    for v in chosen:
                        for h, g in placed.pop(v):
                            free[h] += g
                        del since[v]
                        victims.append(v)
                        preemptions[v] += 1
                    stopped_now.update(chosen)
                    assert begin(j)
            if policy == "las" and order == "reference":  # waiting jobs behind running ones
                for q in range(len(thresholds) + 1):
                    running = [key[j] for j in placed if pool[j] == p and queue[j] == q]
                    late = [j for j in arrived if j not in placed and math.isnan(end[j])]
                    late = sorted((j for j in late if pool[j] == p and queue[j] == q), key=rank)
                    if running and late and key[late[0]] < max(running):
                        for j in late:
                            key[j] = place_key(now)
    return start, end, preemptions
