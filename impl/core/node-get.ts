/**
 * The node's side of a GET: start one (ask the key's replicas, read the local copy), step its
 * coordinator (get-coordinator.ts) with each answer and the deadline, and apply what the
 * coordinator decides: the reply, read repairs (the local one through `mergeLocal`), a purge.
 *
 * Owns: the Get requests in `state.pending` (each a get-coordinator request plus who asked).
 * Must not: decide a read's outcome (the coordinator does), or write the store but through
 * node-store.ts.
 */
import type { Out } from "./ready.ts"
import * as Get from "./get-coordinator.ts"
import type { GetOp, PeerMessage, StoreView } from "./messages.ts"
import {
  reconcile,
  respond,
  type GetPending,
  type Origin,
  type Placement,
  type State,
} from "./node-state.ts"
import { readSet, tooFewReplicas } from "./node-placement.ts"
import { localWithHints, purged } from "./node-replica.ts"
import { mergeLocal, persist } from "./node-store.ts"
import * as Version from "./version.ts"

export const startGet = (
  state: State,
  now: number,
  origin: Origin,
  op: GetOp,
  store: StoreView,
  out: Out,
  placement: Placement = undefined,
): void => {
  state.stats.gets++
  const { asked: replicas, substitutes } = readSet(state, op.key, now, placement)
  const need = op.r ?? state.config.r
  if (tooFewReplicas(state, origin, "R", need, replicas.length - substitutes.size, out)) return
  const rid = state.nextRid++
  const p: GetPending = {
    _tag: "Get",
    origin,
    ...Get.make(op.key, replicas, need, substitutes, now),
  }
  state.pending.set(rid, p)
  out.setTimer({ _tag: "SetTimer", rid, kind: "Deadline", at: now + state.config.requestTimeoutMs })
  for (const replica of replicas) {
    if (replica === state.config.self) continue
    const message: PeerMessage = { _tag: "ReadRequest", rid, key: op.key }
    out.sendNow({ _tag: "Send", to: replica, message })
  }
  if (replicas.includes(state.config.self)) {
    const obj = localWithHints(store, op.key)
    stepGet(state, now, rid, p, { _tag: "Read", from: state.config.self, obj }, store, out)
  }
}

/**
 * What a GET coordinator reads of its node. A class, so that a step allocates one small object
 * and no closures (the per-message path).
 */
class View implements Get.GetView {
  constructor(
    private readonly state: State,
    readonly now: number,
    private readonly key: string,
  ) {}
  get timeoutMs(): number {
    return this.state.config.requestTimeoutMs
  }
  get tombstoneGraceMs(): number {
    return this.state.config.tombstoneGraceMs
  }
  reconcile(obj: Version.Obj): Version.Obj {
    return reconcile(this.state, this.key, obj)
  }
}

/** Step a GET's coordinator with one input and apply its outputs. */
export const stepGet = (
  state: State,
  now: number,
  rid: number,
  p: GetPending,
  input: Get.GetInput,
  store: StoreView,
  out: Out,
): void => {
  const { outputs, done } = Get.step(p, input, new View(state, now, p.key))
  if (done) state.pending.delete(rid)
  for (const o of outputs) {
    switch (o._tag) {
      case "Reply":
        respond(state, p.origin, o.result, out)
        break
      case "Repair":
        state.stats.readRepairs++
        if (o.node === state.config.self) {
          // Merged into the current local object: a write may have landed since the read began.
          mergeLocal(state, store, p.key, o.obj, out)
        } else {
          const message: PeerMessage = { _tag: "Repair", key: p.key, obj: o.obj, at: o.at }
          out.sendAfterPersist({ _tag: "Send", to: o.node, message })
        }
        break
      case "Purge":
        state.stats.purges++
        for (const node of o.nodes) {
          if (node !== state.config.self) {
            const message: PeerMessage = { _tag: "Purge", key: p.key, obj: o.obj }
            out.sendAfterPersist({ _tag: "Send", to: node, message })
          } else if (Version.equals(store.get(p.key) ?? Version.empty, o.obj)) {
            // Only if nothing newer landed here since the read began.
            persist(state, store, p.key, purged(o.obj), out)
          }
        }
        break
      default:
        return o satisfies never
    }
  }
}
