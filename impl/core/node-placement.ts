/**
 * Placement: who replicates a key, and the routing mode that answers it.
 *
 * The routing mode is decided here and nowhere else. On the ring (the default) a key's replicas
 * follow from the gossiped membership at once: the preferred replicas, the sloppy substitutes
 * that stand in for replicas believed down (AP), who a read asks. Under Chord routing they are
 * what a lookup of the key's successor found (impl/core/node-chord.ts), and that lookup may still
 * be pending: `route` then parks the request, which comes back from `takeRouted` once the lookup
 * completed. The other parts of the node ask the functions below (`route`, `keepsMembership`,
 * `scanMembers`, `peerAddressOf`, the anti-entropy tests, the Chord entry points) instead of
 * testing the mode themselves; node-chord.ts is handed the Chord slice of the state from here.
 *
 * Owns: the routing-mode decision (this is the one module that reads `state.chord`); otherwise
 * nothing: pure functions of the node's state (rings, failure detector, configuration).
 * Must not: send, persist, or decide a request's outcome (beyond failing a request that has
 * fewer replicas than its quorum); run the Chord protocol itself (node-chord.ts does).
 */
import { TooFewReplicas } from "./failure.ts"
import type { Out } from "./ready.ts"
import * as Ring from "./ring.ts"
import type * as Chord from "./chord.ts"
import * as Membership from "./membership.ts"
import * as Merkle from "./merkle.ts"
import type { ClientRef, KeyOp, OperatorOp, StoreView } from "./messages.ts"
import type { NodeId } from "./ids.ts"
import {
  believedUp,
  fail,
  type ChordRouting,
  type Origin,
  type Placement,
  type State,
  type Target,
} from "./node-state.ts"
import type { Config } from "./node-config.ts"
import * as ChordNode from "./node-chord.ts"

// ---------------------------------------------------------------------------------------------
// The routing mode

/** The Chord slice of a node routing by Chord; throws for CP mode, which needs membership. */
export const initRouting = (config: Config): ChordRouting | undefined => {
  if (config.routing !== "chord") return undefined
  if (config.mode === "cp") {
    throw new Error("CP mode needs ring routing: Chord routing has no membership to count")
  }
  return ChordNode.initChord(config)
}

/** The members a node boots with: the configured ones; none under Chord routing. */
export const bootstrapMembers = (config: Config): ReadonlyArray<Ring.Member> =>
  config.routing === "chord" ? [] : config.members

/**
 * Ring routing: this node keeps the gossiped membership, and with it the work that follows
 * membership (gossip, rebalancing passes, hinted handoff, the reaper, operator intents on the
 * membership, and the gate that keeps a restarted or joining node from serving before it heard
 * from a peer). Chord routing keeps none of these.
 */
export const keepsMembership = (state: State): boolean => state.chord === undefined

/**
 * Where a key request runs. `placement` undefined: on the ring (its preferred replicas and
 * sloppy substitutes, computed when needed); else the key's replicas as a Chord lookup found
 * them, and `peers` the same with their addresses (a forwarded write names them to its
 * coordinator, which has no ring to compute them from).
 */
export interface Route {
  readonly placement: Placement
  readonly peers: ReadonlyArray<Chord.Peer> | undefined
}

const ON_RING: Route = { placement: undefined, peers: undefined }

const chordRoute = (peers: ReadonlyArray<Chord.Peer>): Route => ({
  placement: peers.map((p) => p.id),
  peers,
})

/**
 * Who replicates `op.key`. On the ring: known at once. Under Chord routing: undefined, the
 * request waits for the lookup of its key's successor and comes back from `takeRouted` (in this
 * very step if this node owns the key).
 */
export const route = (
  state: State,
  now: number,
  origin: Origin,
  op: KeyOp,
  store: StoreView,
  out: Out,
): Route | undefined => {
  const c = state.chord
  if (c === undefined) return ON_RING
  ChordNode.lookupThen(state, c, now, origin, op, store, out)
  return undefined
}

/** A request whose key's replicas a lookup found, to be run. */
export interface Routed {
  readonly origin: Origin
  readonly op: KeyOp
  readonly route: Route
}

/** The requests whose lookup completed since the last call, with their routes (none: undefined). */
export const takeRouted = (state: State): ReadonlyArray<Routed> | undefined => {
  const c = state.chord
  if (c === undefined || c.routed.length === 0) return undefined
  return c.routed
    .splice(0)
    .map(({ origin, op, replicas }) => ({ origin, op, route: chordRoute(replicas) }))
}

/** Requests waiting for a lookup: in flight, as far as `maxPending` is concerned. */
export const lookupsPending = (state: State): number => state.chord?.parked.size ?? 0

/**
 * Where a write forwarded to this node runs: on the ring, where this node's own ring puts it;
 * under Chord routing, on the replicas the forwarder's lookup found (undefined: it named none).
 */
export const forwardedRoute = (
  state: State,
  named: ReadonlyArray<Chord.Peer> | undefined,
): Route | undefined => {
  const c = state.chord
  if (c === undefined) return ON_RING
  if (named === undefined) return undefined
  ChordNode.learnPeers(c, named)
  return chordRoute(named)
}

/** A key's preferred replicas: the route's, else the ring's preference list. */
export const preferred = (state: State, key: string, placement: Placement): ReadonlyArray<NodeId> =>
  placement ?? Ring.preferenceList(state.ring, key, state.config.n)

/** Who a SCAN page asks: every member, this node first; undefined under Chord routing. */
export const scanMembers = (state: State): ReadonlyArray<NodeId> | undefined =>
  state.chord === undefined ? [state.config.self, ...state.peers] : undefined

/** Where to reach a member (its advertised peer address), if known. */
export const peerAddressOf = (state: State, id: NodeId): string | undefined =>
  state.chord?.addresses.get(id) ??
  Membership.view(state.membership).get(id)?.peerAddress ??
  state.config.addresses.get(id)

/**
 * Whose anti-entropy trees `key` belongs in, as a test on a tree's peer (computed once per key,
 * then asked of every kept tree). On the ring a pair tree holds the keys this node shares with
 * its peer. Under Chord routing a tree (peer null) holds every key of its range, the node's own
 * arc or a predecessor's it is asked about; trees ignore keys outside their range by themselves.
 */
export const antiEntropyHolds = (state: State, key: string): ((peer: NodeId | null) => boolean) => {
  if (state.chord !== undefined) return () => true
  const replicas = Ring.preferenceList(state.ring, key, state.config.n)
  const mine = replicas.includes(state.config.self)
  return (peer) => mine && peer !== null && replicas.includes(peer)
}

/**
 * The peer whose shared keys the anti-entropy tree of `range` holds; null under Chord routing
 * (the tree holds its whole range); undefined when this node compares no such range.
 */
export const antiEntropyPeerOf = (state: State, range: Merkle.Range): NodeId | null | undefined =>
  state.chord !== undefined
    ? null
    : state.ae.targets.find((t) => Merkle.sameRange(t.range, range))?.peer

// ---------------------------------------------------------------------------------------------
// Chord routing's entry points (impl/core/node-chord.ts); nothing happens on the ring

export const onChordMessage = (
  state: State,
  now: number,
  from: NodeId,
  message: Chord.ChordMessage,
  store: StoreView,
  out: Out,
): void => {
  const c = state.chord
  if (c !== undefined) ChordNode.onMessage(state, c, now, from, message, store, out)
}

export const onChordTimer = (
  state: State,
  now: number,
  rid: number,
  kind: "ChordStabilize" | "ChordRpc",
  store: StoreView,
  out: Out,
): void => {
  const c = state.chord
  if (c !== undefined) ChordNode.onTimer(state, c, now, rid, kind, store, out)
}

/** The Chord node's periodic work: joining, the seed checks, the placement sweep. */
export const tickChord = (state: State, now: number, store: StoreView, out: Out) => {
  const c = state.chord
  if (c !== undefined) ChordNode.tick(state, c, now, store, out)
}

/** Operator intents under Chord routing (on the ring they go to node-membership.ts). */
export const onChordOperator = (
  state: State,
  now: number,
  client: ClientRef,
  op: OperatorOp,
  store: StoreView,
  out: Out,
): void => {
  const c = state.chord
  if (c !== undefined) ChordNode.onOperator(state, c, now, client, op, store, out)
}

/** What `dht status` shows of a Chord node; undefined on the ring. */
export const chordReport = (state: State) => {
  const c = state.chord
  return c === undefined ? undefined : ChordNode.report(state, c)
}

// ---------------------------------------------------------------------------------------------
// One key's copies

/**
 * The nodes that receive a key's copies. CP: the N preferred replicas. AP (sloppy quorum,
 * Dynamo section 4.6): each preferred replica believed down is replaced by the next healthy node
 * further clockwise, which holds the copy as a hint for it.
 */
export const targetsOf = (
  state: State,
  key: string,
  now: number,
  placement: Placement = undefined,
): ReadonlyArray<Target> => {
  if (placement !== undefined) return placement.map((node) => ({ node, hintFor: undefined }))
  const n = state.config.n
  const walk = Ring.preferenceList(state.ring, key, state.ring.nodes.length)
  const preferred = walk.slice(0, n)
  if (state.config.mode === "cp") return preferred.map((node) => ({ node, hintFor: undefined }))
  const spares = walk.slice(n).filter((node) => believedUp(state, node, now))
  return preferred.map((node) =>
    believedUp(state, node, now) || spares.length === 0
      ? { node, hintFor: undefined }
      : { node: spares.shift()!, hintFor: node },
  )
}

/**
 * The owners a key gains once the pending membership changes settle (joining nodes, or the heirs
 * of a leaving one): a write goes to them too. None under Chord routing (`placement` given).
 */
export const pendingOwnersOf = (
  state: State,
  key: string,
  placement: Placement,
): ReadonlyArray<NodeId> =>
  placement !== undefined
    ? []
    : Ring.preferenceList(state.futureRing, key, state.config.n).filter(
        (node) => !Ring.preferenceList(state.ring, key, state.config.n).includes(node),
      )

/**
 * Who a read asks: every preferred replica (believed up or not: belief lags reality, and a
 * replica that answers is the best witness) plus, in AP, the substitutes that may hold hints.
 * `waitFor`: the ones believed up.
 */
export const readSet = (state: State, key: string, now: number, placement: Placement) => {
  const targets = targetsOf(state, key, now, placement)
  const substitutes = new Set(
    targets.filter((t) => t.hintFor !== undefined).map((t) => t.node),
  ) as ReadonlySet<NodeId>
  const asked = [...preferred(state, key, placement), ...substitutes]
  const waitFor = asked.filter((node) => believedUp(state, node, now))
  return { asked, substitutes, waitFor }
}

/** CP mode: can this node see a majority of the cluster (itself included)? */
export const seesMajority = (state: State, now: number): boolean => {
  const all = state.peers.length + 1
  const up = 1 + state.peers.filter((p) => believedUp(state, p, now)).length
  return up * 2 > all
}

/**
 * A key with fewer known replicas than the quorum asks for (a Chord ring still forming, whose
 * lookup returned a short successor list) fails the request: the quorum is never lowered.
 */
export const tooFewReplicas = (
  state: State,
  origin: Origin,
  which: "R" | "W",
  need: number,
  have: number,
  out: Out,
): boolean => {
  if (have >= need) return false
  fail(state, origin, new TooFewReplicas({ which, need, known: have }), out)
  return true
}
