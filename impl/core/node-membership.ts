/**
 * The storage node's membership glue (impl/core/membership.ts): the membership this node boots
 * with, gossip, operator intents (join, leave, remove), the rings they imply and the peers and
 * anti-entropy partners that follow from the rings, and the members part of `dht status`.
 *
 * Owns: `membership`, `ring`, `futureRing`, `ringSignature`, `peers` (on the ring),
 * `nextGossipAt`, `removedAt`. Must not: move data (a new placement is node-rebalance.ts's to
 * stream), or run under Chord routing, which keeps no membership (node-placement.ts decides;
 * node-chord.ts handles a Chord node's operator intents).
 */
import { BadRequest } from "./failure.ts"
import type { Out } from "./ready.ts"
import { absurd } from "effect/Function"
import { position } from "./hash.ts"
import type { NodeId } from "./ids.ts"
import type { ClientRef, OperatorOp, PeerMessage } from "./messages.ts"
import * as AntiEntropy from "./anti-entropy.ts"
import * as Membership from "./membership.ts"
import * as Phi from "./phi.ts"
import * as Ring from "./ring.ts"
import type { Config } from "./node-config.ts"
import { believedUp, fail, respond, type Origin, type State } from "./node-state.ts"
import { dropTrees, pairRange } from "./node-ae.ts"
import { bootstrapMembers, peerAddressOf } from "./node-placement.ts"

// ---------------------------------------------------------------------------------------------
// Membership (impl/core/membership.ts): gossip, operator intents, the rings they imply

/**
 * The membership a node starts with, and this run's generation: the bootstrap members, merged
 * with the view this node saved before it stopped (if any).
 */
export const initMembership = (
  config: Config,
  now: number,
): { readonly membership: Membership.State; readonly generation: number } => {
  const bootMembers = bootstrapMembers(config)
  const known: Array<Membership.Entry> = bootMembers.map((m) => ({
    id: m.id,
    peerAddress: config.addresses.get(m.id) ?? m.id,
    clientAddress: "",
    weight: m.weight,
    status: "up",
    generation: 0,
    version: 0,
    heartbeat: 0,
  }))
  const saved = config.savedMembers ?? []
  const savedSelf = saved.find((e) => e.id === config.self)
  // This run's incarnation is above every one its own saved entry names: that entry may carry a
  // generation adopted from peers after the data directory was emptied (the store's counter
  // started again at 1), and a generation at or below it would look like a restored copy
  // (StaleStore) and reuse request ids (KV-6).
  const generation = Math.max(config.generation, (savedSelf?.generation ?? 0) + 1)
  const self = bootMembers.find((m) => m.id === config.self)
  const membership = Membership.init(
    {
      self: {
        id: config.self,
        peerAddress: config.peerAddress || config.self,
        clientAddress: config.clientAddress,
        weight: self?.weight ?? 1,
      },
      seeds: known
        .filter((e) => e.id !== config.self)
        .map((e) => ({ id: e.id, peerAddress: e.peerAddress })),
      generation,
      restarted: config.savedMembers !== undefined && config.unsafeReclaim !== "no-stale-store",
      status:
        savedSelf !== undefined && savedSelf.status !== "removed"
          ? savedSelf.status
          : config.joining
            ? "joining"
            : self !== undefined
              ? "up"
              : undefined,
      // Saved entries are newer than the bootstrap ones; merge keeps the newest of each.
      // A saved tombstone of this very node is kept: a removed node stays removed.
      knownMembers: [
        ...known,
        ...saved.filter((e) => e.id !== config.self || e.status === "removed"),
      ],
      randomSeed: position(config.self),
    },
    now,
  )
  return { membership, generation }
}

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
  dropTrees(state)
}

export const stepMembership = (
  state: State,
  now: number,
  event: Membership.Event,
  out: Out,
): void => {
  const wasRemoved = Membership.isRemoved(state.membership)
  const [, commands] = Membership.step(state.membership, event)
  for (const c of commands) {
    out.sendNow({
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
        out.sendNow({ _tag: "Send", to: peer, message, address: peerAddressOf(state, peer) })
      }
    }
  }
  if (!wasRemoved && Membership.isRemoved(state.membership)) {
    // Tell every peer at once (a removal that only lives here dies with this process), then
    // keep gossiping for a few rounds before the driver is told to shut down.
    const tombstone = Membership.selfEntry(state.membership)!
    for (const peer of state.peers) {
      out.sendNow({
        _tag: "Send",
        to: peer,
        message: { _tag: "Gossip", message: { _tag: "GossipAck", entries: [tombstone] } },
      })
    }
    state.removedAt = now
  }
}

/** A removed node tells the driver to stop a few gossip rounds after it learnt it. */
export const maybeStop = (state: State, now: number, out: Out): void => {
  if (state.removedAt !== undefined && now >= state.removedAt + 4 * state.config.gossipIntervalMs) {
    state.removedAt = Number.POSITIVE_INFINITY
    out.sendAfterPersist({ _tag: "Removed" })
  }
}

export const maybeGossip = (state: State, now: number, out: Out): void => {
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
  out: Out,
): void => {
  const origin: Origin = { _tag: "Client", client }
  const self = Membership.selfEntry(state.membership)
  const active = [...Membership.view(state.membership).values()].filter(
    (e) => e.status === "up" || e.status === "joining",
  )
  const ok = (message: string) => respond(state, origin, { _tag: "Done", message }, out)
  const badRequest = (detail: string) => fail(state, origin, new BadRequest({ detail }), out)
  switch (op._tag) {
    case "Join":
      if (self !== undefined) return ok(`already a member (${self.status})`)
      stepMembership(state, now, { _tag: "JoinRequested", now }, out)
      return ok("joining: streaming the ranges this node will own, then up")
    case "Leave":
      if (self?.status !== "up") {
        return badRequest(`cannot leave: this node is ${self?.status ?? "not a member"}`)
      }
      if (active.length - 1 < state.config.n) {
        return badRequest(
          `cannot leave: ${active.length - 1} members would remain, fewer than N=${state.config.n}`,
        )
      }
      stepMembership(state, now, { _tag: "LeaveRequested", now }, out)
      return ok("leaving: streaming this node's data to the new owners, then removed")
    case "Remove": {
      const target = Membership.view(state.membership).get(op.node)
      if (target === undefined) return badRequest(`no member ${op.node}`)
      if (target.status === "removed") return ok(`${op.node} is already removed`)
      if (active.length <= 1) return badRequest("cannot remove the last member")
      if (active.length - 1 < state.config.n) {
        return badRequest(
          `cannot remove ${op.node}: ${active.length - 1} members would remain, fewer than N=${state.config.n}`,
        )
      }
      stepMembership(state, now, { _tag: "RemoveRequested", now, node: op.node }, out)
      return ok(`${op.node} removed; its ranges are re-replicated from the surviving replicas`)
    }
    default:
      return absurd(op)
  }
}

export interface MemberStatus {
  readonly id: NodeId
  readonly status: Membership.Status
  /** Believed up by this node (phi below the threshold). */
  readonly reachable: boolean
  readonly peerAddress: string
  readonly clientAddress: string
  readonly weight: number
  /** Tokens on the current ring (0 when not on it). */
  readonly tokens: number
  /** Fraction of the ring it owns as primary. */
  readonly owned: number
  /** Fraction of the keyspace it holds as one of the N replicas. */
  readonly replicated: number
}

/** The members as this node sees them, with their share of the ring (`dht status`). */
export const memberStatuses = (state: State, now: number): ReadonlyArray<MemberStatus> => {
  const owned = Ring.ownership(state.ring)
  const replicated = Ring.replicaOwnership(state.ring, state.config.n)
  const tokens = new Map<NodeId, number>()
  for (const o of state.ring.owners) {
    const id = state.ring.nodes[o]!
    tokens.set(id, (tokens.get(id) ?? 0) + 1)
  }
  return [...Membership.view(state.membership).values()]
    .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
    .map((e) => ({
      id: e.id,
      status: e.status,
      reachable: e.status !== "removed" && believedUp(state, e.id, now),
      peerAddress: e.peerAddress,
      clientAddress: e.clientAddress,
      weight: e.weight,
      tokens: tokens.get(e.id) ?? 0,
      owned: owned.get(e.id) ?? 0,
      replicated: replicated.get(e.id) ?? 0,
    }))
}
