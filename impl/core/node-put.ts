/**
 * The node's side of a PUT/DEL: start one on a replica of the key (a client's own write, or one
 * a forwarder sent here, KV-9; the forwarder is node-forward.ts), step its coordinator
 * (put-coordinator.ts) with each answer, grant, acknowledgement and the deadline, and apply what
 * the coordinator decides: ask replicas, move the hybrid clock, persist, replicate, reply.
 *
 * Owns: the Put requests in `state.pending` (each a put-coordinator request plus who asked and
 * the placement it runs on), and `state.hlc` as the coordinators move it. Must not: decide a
 * write's outcome (the coordinator does), run a write this node does not replicate, or write
 * the store but through node-store.ts.
 */
import type { Out } from "./ready.ts"
import { BadRequest, NotReplica } from "./failure.ts"
import * as Put from "./put-coordinator.ts"
import type { PeerMessage, PutOp, StoreView } from "./messages.ts"
import type { NodeId } from "./ids.ts"
import {
  fail,
  reconcile,
  respond,
  type Origin,
  type Placement,
  type PutPending,
  type State,
  type Target,
} from "./node-state.ts"
import { current, persist } from "./node-store.ts"
import {
  forwardedRoute,
  pendingOwnersOf,
  preferred,
  readSet,
  targetsOf,
  tooFewReplicas,
} from "./node-placement.ts"
import * as Version from "./version.ts"

export const startPut = (
  state: State,
  now: number,
  origin: Origin,
  op: PutOp,
  replicas: ReadonlyArray<NodeId>,
  store: StoreView,
  out: Out,
  placement: Placement = undefined,
): void => {
  state.stats.puts++
  const w = op.w ?? state.config.w
  if (tooFewReplicas(state, origin, "W", w, replicas.length, out)) return
  const rid = state.nextRid++
  // The read phase of a plain write asks where copies are (sloppy substitutes included).
  const { asked, substitutes, waitFor } = readSet(state, op.key, now, placement)
  const waitsForGrant = origin._tag === "Peer" && !state.config.unsafeFailover
  const p: PutPending = {
    _tag: "Put",
    origin,
    placement,
    ...Put.make({
      op,
      self: state.config.self,
      r: state.config.r,
      w,
      local: current(state, store, op.key) ?? Version.empty,
      asked,
      substitutes,
      waitFor,
      waitsForGrant,
    }),
  }
  state.pending.set(rid, p)
  out.setTimer({ _tag: "SetTimer", rid, kind: "Deadline", at: now + state.config.requestTimeoutMs })
  if (origin._tag === "Peer" && waitsForGrant) {
    // Ask the forwarder for the right to run this write, in parallel with the read phase.
    const claim: PeerMessage = { _tag: "CoordinateClaim", rid: origin.rid, put: rid }
    out.sendNow({ _tag: "Send", to: origin.node, message: claim })
  }
  stepPut(state, now, rid, p, { _tag: "Start" }, store, out)
}

/**
 * What a PUT coordinator reads of its node. A class, so that a step allocates one small object
 * and no closures (the per-message path).
 */
class View implements Put.PutView {
  constructor(
    private readonly state: State,
    readonly now: number,
    private readonly p: PutPending,
    private readonly store: StoreView,
  ) {}
  get self(): NodeId {
    return this.state.config.self
  }
  get mode(): "ap" | "cp" {
    return this.state.config.mode
  }
  get r(): number {
    return this.state.config.r
  }
  get timeoutMs(): number {
    return this.state.config.requestTimeoutMs
  }
  get hlc(): number {
    return this.state.hlc
  }
  local(): Version.Obj {
    return current(this.state, this.store, this.p.op.key) ?? Version.empty
  }
  reconcile(obj: Version.Obj): Version.Obj {
    return reconcile(this.state, this.p.op.key, obj)
  }
  placement(): { targets: ReadonlyArray<Target>; pendingOwners: ReadonlyArray<NodeId> } {
    const { state, p, now } = this
    return {
      pendingOwners: pendingOwnersOf(state, p.op.key, p.placement),
      targets: targetsOf(state, p.op.key, now, p.placement),
    }
  }
}

/** Step a PUT's coordinator with one input and apply its outputs, in order. */
export const stepPut = (
  state: State,
  now: number,
  rid: number,
  p: PutPending,
  input: Put.PutInput,
  store: StoreView,
  out: Out,
): void => {
  const { outputs, done } = Put.step(p, input, new View(state, now, p, store))
  if (done) state.pending.delete(rid)
  for (const o of outputs) {
    switch (o._tag) {
      case "Ask": {
        const message: PeerMessage = { _tag: "ReadRequest", rid, key: p.op.key }
        out.sendNow({ _tag: "Send", to: o.node, message })
        break
      }
      case "Clock":
        state.hlc = o.hlc
        break
      case "Persist":
        persist(state, store, p.op.key, o.obj, out)
        break
      case "Replicate": {
        const { node, hintFor } = o.target
        const message: PeerMessage =
          hintFor === undefined
            ? { _tag: "WriteRequest", rid, key: p.op.key, obj: o.obj, at: now }
            : { _tag: "HintedWrite", rid, key: p.op.key, obj: o.obj, owner: hintFor, at: now }
        out.sendAfterPersist({ _tag: "Send", to: node, message })
        break
      }
      case "Reply":
        respond(state, p.origin, o.result, out)
        break
      default:
        return o satisfies never
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Peer messages

/**
 * A write forwarded to this node (KV-9): it runs here if this node is one of the key's replicas
 * (by its own ring, or by the forwarder's lookup under Chord routing); else it is refused before
 * anything is done, so that the forwarder may try the next replica.
 */
export const onCoordinateRequest = (
  state: State,
  now: number,
  origin: Origin,
  message: Extract<PeerMessage, { _tag: "CoordinateRequest" }>,
  store: StoreView,
  out: Out,
): void => {
  const route = forwardedRoute(state, message.replicas)
  if (route === undefined) {
    const detail = "Chord routing: no replicas named"
    return fail(state, origin, new BadRequest({ detail }), out)
  }
  const replicas = preferred(state, message.op.key, route.placement)
  if (!replicas.includes(state.config.self)) {
    // Our views disagree (membership or the Chord ring changing): refuse rather than mint a
    // stray event.
    return fail(state, origin, new NotReplica(), out)
  }
  startPut(state, now, origin, message.op, replicas, store, out, route.placement)
}

/** A replica acknowledged its copy: the write may have reached W. */
export const onWriteAck = (
  state: State,
  now: number,
  rid: number,
  from: NodeId,
  store: StoreView,
  out: Out,
): void => {
  const p = state.pending.get(rid)
  if (p?._tag === "Put") stepPut(state, now, rid, p, { _tag: "Ack", from }, store, out)
}

/** The forwarder's answer to this coordinator's claim (KV-9): only its forwarder's counts. */
export const onGrant = (
  state: State,
  now: number,
  from: NodeId,
  rid: number,
  granted: boolean,
  store: StoreView,
  out: Out,
): void => {
  const p = state.pending.get(rid)
  if (p?._tag !== "Put" || p.origin._tag !== "Peer" || p.origin.node !== from) return
  stepPut(state, now, rid, p, { _tag: "Grant", granted }, store, out)
}
