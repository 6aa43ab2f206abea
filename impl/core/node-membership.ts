import type { ClientRef, Command, OperatorOp, PeerMessage, StoreView } from "./messages.ts"
import * as AntiEntropy from "./anti-entropy.ts"
import * as Membership from "./membership.ts"
import * as Phi from "./phi.ts"
import * as Ring from "./ring.ts"
import { fail, peerAddressOf, respond, type Origin, type State } from "./node-state.ts"
import { pairRange } from "./node-ae.ts"
import { onChordOperator } from "./node-chord.ts"

// ---------------------------------------------------------------------------------------------
// Membership (impl/core/membership.ts): gossip, operator intents, the rings they imply

const ringSignatureOf = (ring: ReadonlyArray<Ring.Member>, future: ReadonlyArray<Ring.Member>) =>
  `${ring.map((m) => `${m.id}*${m.weight}`).join(",")}|${future.map((m) => `${m.id}*${m.weight}`).join(",")}`

/** Recompute the rings when membership changed; a new placement starts a rebalancing pass. */
export const refreshRing = (state: State, now: number): void => {
  const current = Membership.ringMembers(state.membership)
  const future = [
    ...Membership.ringMembers(state.membership),
    ...Membership.pendingMembers(state.membership),
  ]
    .filter((m) => Membership.view(state.membership).get(m.id)?.status !== "leaving")
    .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
  const signature = ringSignatureOf(current, future)
  if (signature === state.ringSignature) return
  state.ringSignature = signature
  state.ring = Ring.make(current, state.config.tokensPerNode)
  state.futureRing = Ring.make(future, state.config.tokensPerNode)
  const before = new Set(state.peers)
  state.peers = [...Membership.view(state.membership).values()]
    .filter((e) => e.status !== "removed" && e.id !== state.config.self)
    .map((e) => e.id)
    .sort()
  // A new peer is monitored from now on, so that a silent one is suspected in bounded time.
  for (const p of state.peers) if (!before.has(p)) Phi.heartbeat(state.detector, p, now)
  // Anti-entropy visits every other owner on the current ring, one pair tree each.
  const targets = state.ring.nodes
    .filter((id) => id !== state.config.self)
    .map((peer) => ({ peer, range: pairRange(state.config.self, peer) }))
  AntiEntropy.step(
    state.ae,
    { _tag: "TargetsChanged", now, targets },
    { get: () => undefined, tree: () => undefined },
  )
  state.aeTrees.clear()
}

export const stepMembership = (
  state: State,
  now: number,
  event: Membership.Event,
  out: Array<Command>,
): void => {
  const wasRemoved = Membership.isRemoved(state.membership)
  const [, commands] = Membership.step(state.membership, event)
  for (const c of commands) {
    out.push({
      _tag: "Send",
      to: c.to,
      address: c.address,
      message: { _tag: "Gossip", message: c.message },
    })
  }
  refreshRing(state, now)
  // This node took over a generation an earlier run of it had (its data directory was emptied
  // and peers remembered more): that run used request ids of that generation's range, so move
  // to the range's upper half, which no run reaches (KV-6).
  const own = Membership.selfEntry(state.membership)
  if (own !== undefined && own.generation > state.ridGeneration) {
    state.ridGeneration = own.generation
    state.nextRid = Math.max(state.nextRid, (own.generation % 2 ** 21) * 2 ** 31 + 2 ** 30 + 1)
  }
  // An operator intent (join, leave, remove, mark-up) changes one entry: tell every peer at
  // once rather than wait for gossip, so that a crash of this node right after cannot lose it.
  if (event._tag !== "TickElapsed" && event._tag !== "MessageReceived") {
    const id = event._tag === "RemoveRequested" ? event.node : state.config.self
    const entry = Membership.view(state.membership).get(id)
    if (entry !== undefined) {
      for (const peer of state.peers) {
        const message: PeerMessage = {
          _tag: "Gossip",
          message: { _tag: "GossipAck", entries: [entry] },
        }
        out.push({ _tag: "Send", to: peer, message, address: peerAddressOf(state, peer) })
      }
    }
  }
  if (!wasRemoved && Membership.isRemoved(state.membership)) {
    // Tell every peer at once (a removal that only lives here dies with this process), then
    // keep gossiping for a few rounds before the driver is told to shut down.
    const tombstone = Membership.selfEntry(state.membership)!
    for (const peer of state.peers) {
      out.push({
        _tag: "Send",
        to: peer,
        message: { _tag: "Gossip", message: { _tag: "GossipAck", entries: [tombstone] } },
      })
    }
    state.removedAt = now
  }
}

/** A removed node tells the driver to stop a few gossip rounds after it learnt it. */
export const maybeStop = (state: State, now: number, out: Array<Command>): void => {
  if (state.removedAt !== undefined && now >= state.removedAt + 4 * state.config.gossipIntervalMs) {
    state.removedAt = Number.POSITIVE_INFINITY
    out.push({ _tag: "Removed" })
  }
}

export const maybeGossip = (state: State, now: number, out: Array<Command>): void => {
  if (now < state.nextGossipAt) return
  state.nextGossipAt = now + state.config.gossipIntervalMs
  stepMembership(state, now, { _tag: "TickElapsed", now }, out)
}

/** The statuses of members as this node sees them (for `dht status`). */
export const members = (state: State): ReadonlyArray<Membership.Entry> =>
  [...Membership.view(state.membership).values()].sort((a, b) => (a.id < b.id ? -1 : 1))

/**
 * Operator intents. Impossible requests get a clear error and change nothing: removing the
 * last member, removing or leaving so that fewer than N members would remain.
 */
export const onOperator = (
  state: State,
  now: number,
  client: ClientRef,
  op: OperatorOp,
  store: StoreView,
  out: Array<Command>,
): void => {
  const origin: Origin = { _tag: "Client", client }
  if (state.chord !== undefined) return onChordOperator(state, now, origin, op, store, out)
  const self = Membership.selfEntry(state.membership)
  const active = [...Membership.view(state.membership).values()].filter(
    (e) => e.status === "up" || e.status === "joining",
  )
  const ok = (message: string) => respond(state, origin, { _tag: "Done", message }, out)
  switch (op._tag) {
    case "Join":
      if (self !== undefined) return ok(`already a member (${self.status})`)
      stepMembership(state, now, { _tag: "JoinRequested", now }, out)
      return ok("joining: streaming the ranges this node will own, then up")
    case "Leave":
      if (self?.status !== "up") {
        return fail(
          state,
          origin,
          "BadRequest",
          `cannot leave: this node is ${self?.status ?? "not a member"}`,
          out,
        )
      }
      if (active.length - 1 < state.config.n) {
        return fail(
          state,
          origin,
          "BadRequest",
          `cannot leave: ${active.length - 1} members would remain, fewer than N=${state.config.n}`,
          out,
        )
      }
      stepMembership(state, now, { _tag: "LeaveRequested", now }, out)
      return ok("leaving: streaming this node's data to the new owners, then removed")
    case "Remove": {
      const target = Membership.view(state.membership).get(op.node)
      if (target === undefined)
        return fail(state, origin, "BadRequest", `no member ${op.node}`, out)
      if (target.status === "removed") return ok(`${op.node} is already removed`)
      if (active.length <= 1)
        return fail(state, origin, "BadRequest", "cannot remove the last member", out)
      if (active.length - 1 < state.config.n) {
        return fail(
          state,
          origin,
          "BadRequest",
          `cannot remove ${op.node}: ${active.length - 1} members would remain, fewer than N=${state.config.n}`,
          out,
        )
      }
      stepMembership(state, now, { _tag: "RemoveRequested", now, node: op.node }, out)
      return ok(`${op.node} removed; its ranges are re-replicated from the surviving replicas`)
    }
  }
}
