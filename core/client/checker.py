"""Running a spot check of one step, beside the session, without disturbing it.

After a step the session decided to check (core/client/spot_checks.py decides), `SpotChecker` picks one span of
the route not run by this PC, asks the swarm for other servers of exactly those blocks, and runs the session's
inputs so far (its prefix, then the checked step as the same step) through a second, ephemeral chain: the same
servers as the session for the other spans, the other servers for this one. The session's own streams and caches
are not touched. The check chain's result for the step is compared with the session's:

- within the compute's tolerance: the span's server passes; the check chain closes.
- otherwise a third result is asked for (other servers again, or this PC's own server where it hosts those
  blocks, which is trusted), and `judge` decides. Servers shown wrong (or in a dispute no one could settle) become
  suspects (core/client/suspects.py): routing avoids them from now on, on this PC. When the session's result was
  the wrong one, the session continues on the check chain that was right: its caches already hold the whole
  prefix computed without the suspect, and its result replaces the suspect's for this step.

What a check costs: sessions on every server of the second chain, and the session's whole prefix through every
block again (a second prefill of the conversation so far, in chunks), the same again for a third result when the
first two disagree; the checked step waits for it. Tokens emitted before the check that caught a server were
computed with it and stay as they were.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import torch

from potluck.core.client.chain import SpanFailure, StreamChain
from potluck.core.client.routing import NoRouteError, RouteSpan
from potluck.core.client.spot_checks import SpotCheckPolicy, judge, tolerance_for
from potluck.core.client.suspects import Suspicion
from potluck.core.client.swarm_view import Hop, SwarmError
from potluck.core.wire.tensors import max_chunk_tokens

log = logging.getLogger(__name__)

MAX_RESULTS = 3  # the session's result and at most two others
MAX_ATTEMPTS = 4  # other servers tried per check (some may fail to open)


@dataclass(frozen=True)
class CheckReport:
    """One spot check, for the caller's report."""

    position: int  # first token of the checked step
    tokens: int  # tokens in the step
    blocks: tuple[int, int]  # the checked span [start, end)
    servers: tuple[tuple[str, ...], ...]  # per result, who computed those blocks (first: the session's own)
    errors: tuple[float, ...]  # per result, its relative difference from the session's result
    tolerance: float
    suspects: tuple[str, ...]  # servers this check made suspects
    kept: int | None  # the result the session went on with (0: its own); None: a dispute, it kept its own
    seconds: float

    @property
    def passed(self) -> bool:
        return not self.suspects


@dataclass
class _Result:
    peers: tuple[str, ...]
    trusted: bool
    output: torch.Tensor
    chain: StreamChain | None  # None for the session's own result
    hops: list[Hop]


class SpotChecker:
    """Checks some steps of the sessions it is given (see the module doc)."""

    def __init__(self, policy: SpotCheckPolicy):
        self.policy = policy

    async def after_step(self, session, position: int, output: torch.Tensor) -> torch.Tensor:
        """Called by the session after the step at `position` (its inputs already recorded): the step's result,
        the session's own or, when that was shown wrong, the one that was right. Never fails the step."""
        if not self.policy.should_check(session.position):
            return output
        try:
            return await self._check(session, position, output)
        except (SpanFailure, SwarmError, NoRouteError, TimeoutError, ConnectionError) as e:
            log.info("a spot check was abandoned: %s", e)
        except Exception:  # a bug in a check must not end a reply that is fine
            log.warning("a spot check failed", exc_info=True)
        return output

    async def _check(self, session, position: int, output: torch.Tensor) -> torch.Tensor:
        swarm, streams = session.swarm, session.chain.streams
        suspects = set(swarm.suspects.peers())
        choices = [i for i, s in enumerate(streams) if s.span.peer_id != swarm.self_peer_id]
        for index in self.policy.order(choices):  # the first span that other servers can compute
            excluded = {streams[index].span.peer_id} | suspects
            hops = await _alternative(session, streams[index].span, excluded)
            if hops is not None:
                break
        else:
            return output  # every block runs on this PC, or no one else serves the blocks of the others
        target, route, began = streams[index], session.route, time.perf_counter()
        inputs = torch.cat(session._inputs, dim=1)
        tolerance = tolerance_for(swarm.compute or "")
        results = [_Result((target.span.peer_id,), False, output, None, route[index : index + 1])]
        try:
            for _ in range(MAX_ATTEMPTS):
                if hops is None:
                    break
                peers = tuple(span.peer_id for span, _ in hops)
                excluded.update(peers)
                chain, result = await _recompute(session, route[:index] + hops + route[index + 1 :], inputs, position,
                                                 set(peers))
                if chain is not None:
                    trusted = all(peer == swarm.self_peer_id for peer in peers)
                    results.append(_Result(peers, trusted, result, chain, hops))
                    if trusted or (len(results) == 2 and relative_error(result, output) <= tolerance):
                        break
                hops = await _alternative(session, target.span, excluded) if len(results) < MAX_RESULTS else None
            if len(results) == 1:
                return output  # the other servers failed: nothing to compare with
            return await self._settle(session, target.span, position, results, tolerance, began)
        finally:
            for result in results:
                if result.chain is not None and result.chain is not session.chain:
                    await result.chain.close()

    async def _settle(self, session, span: RouteSpan, position: int, results: list[_Result], tolerance: float,
                      began: float) -> torch.Tensor:
        swarm = session.swarm
        errors = [[relative_error(a.output, b.output) for b in results] for a in results]
        verdict = judge([r.trusted for r in results], [[e <= tolerance for e in row] for row in errors])
        reference = verdict.right if verdict.right is not None else 0
        found = []
        for i in sorted(verdict.suspects):
            words = ("disagreed with the result the other servers agreed on" if i in verdict.wrong
                     else "disagreed with another server, and no third result could settle who was right")
            other = reference if reference != i else next(j for j in range(len(results)) if j != i)
            for (hop_span, record) in results[i].hops:
                if hop_span.peer_id == swarm.self_peer_id:
                    continue
                found.append(hop_span.peer_id)
                swarm.suspects.add(Suspicion(
                    peer_id=hop_span.peer_id, name=record.name, model=swarm.model_uid, start_block=hop_span.start_block,
                    end_block=hop_span.end_block, compute=swarm.compute or "",
                    error=errors[i][other], tolerance=tolerance,
                    found_at=time.time(), detail=f"{words} on blocks {span.start_block}-{span.end_block - 1}"))
        if found:
            log.warning("spot check at position %d, blocks %d-%d: results differ by %s (tolerance %g); suspects: %s",
                        position, span.start_block, span.end_block - 1,
                        ", ".join(f"{e:.2e}" for e in errors[0][1:]), tolerance, ", ".join(p[-8:] for p in found))
        output = results[0].output
        if verdict.right not in (None, 0):  # the session's own result was wrong: go on with the right chain
            old, session.chain = session.chain, results[verdict.right].chain
            await old.close()
            output = results[verdict.right].output
        session.checks.append(CheckReport(
            position, results[0].output.shape[1], (span.start_block, span.end_block),
            tuple(r.peers for r in results), tuple(errors[0]), tolerance, tuple(found), verdict.right,
            round(time.perf_counter() - began, 4)))
        return output


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    """max over tokens of |a - b| / max(|a|, |b|) (L2 norms over the hidden size): symmetric, so that who is
    compared with whom does not matter. Shapes must match; a non-finite value counts as infinitely far."""
    if a.shape != b.shape:
        raise ValueError(f"results of different shapes cannot be compared: {tuple(a.shape)} and {tuple(b.shape)}")
    a, b = a.double(), b.double()
    if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
        return math.inf
    scale = torch.maximum(a.norm(dim=-1), b.norm(dim=-1)).clamp_min(1e-30)
    return float(((a - b).norm(dim=-1) / scale).max()) if a.numel() else 0.0


async def _alternative(session, span: RouteSpan, excluded: set[str]) -> list[Hop] | None:
    """Servers other than `excluded` for exactly the span's blocks, or None when there are none."""
    try:
        return await session.swarm.replacement(span, session.max_length, exclude=frozenset(excluded))
    except NoRouteError:
        return None


async def _recompute(session, hops: list[Hop], inputs: torch.Tensor, position: int,
                     under_test: set[str]) -> tuple[StreamChain | None, torch.Tensor | None]:
    """The session's inputs through a fresh chain over `hops`: (the chain, its result for the step at `position`),
    or (None, None) when a server failed (one `under_test` that fails is banned like any failing server)."""
    swarm = session.swarm
    chain = StreamChain(swarm.p2p, swarm.model_uid, session.hidden_size, session.max_length, session.chain.push,
                        session.timeout)
    try:
        chain.streams = await chain.open_spans(hops, 0, None, None)
        chunk = max_chunk_tokens(session.hidden_size, inputs.dtype)
        for start in range(0, position, chunk):
            await chain.run_step(inputs[:, start : min(start + chunk, position)], start, session.timeout)
        return chain, await chain.run_step(inputs[:, position:], position, session.timeout)
    except SpanFailure as failure:
        if failure.peer_id in under_test:
            swarm.bans.ban(failure.peer_id)
        log.info("a spot check's chain failed: %s", failure)
        await chain.close()
        return None, None
    except BaseException:
        await chain.close()
        raise
