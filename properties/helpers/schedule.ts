/**
 * Generated schedules of client operations and membership changes, shared by the suites that
 * run a simulated cluster through them (REBAL-1 under ring routing, CHORD-7 under Chord).
 */
import assert from "node:assert/strict"
import fc from "fast-check"
import type { NodeId } from "../../impl/core/ids.ts"
import type { ClientOp } from "../../impl/core/messages.ts"
import * as Version from "../../impl/core/version.ts"
import type { Operation } from "../../impl/sim/sim.ts"
import { KvModel } from "../../models/kv.ts"

export const KEYS: ReadonlyArray<string> = Array.from({ length: 12 }, (_, i) => `key${i}`)

export type Action =
  | { _tag: "Write"; key: number; node: number }
  | { _tag: "Read"; key: number; node: number }
  | { _tag: "Join" }
  | { _tag: "Leave"; node: number }
  | { _tag: "Crash"; node: number }
  | { _tag: "Restart" }
  /** Ring routing only: an operator removes a dead node. */
  | { _tag: "RemoveDead" }
  | { _tag: "Wait"; ms: number }

/** Writes and reads at random nodes (`node` is reduced modulo the live ones), and changes. */
export const actionArb = (options: { readonly removals: boolean }): fc.Arbitrary<Action> =>
  fc.oneof(
    {
      weight: 8,
      arbitrary: fc.record({
        _tag: fc.constant("Write" as const),
        key: fc.nat(KEYS.length - 1),
        node: fc.nat(9),
      }),
    },
    {
      weight: 4,
      arbitrary: fc.record({
        _tag: fc.constant("Read" as const),
        key: fc.nat(KEYS.length - 1),
        node: fc.nat(9),
      }),
    },
    { weight: 1, arbitrary: fc.record({ _tag: fc.constant("Join" as const) }) },
    { weight: 1, arbitrary: fc.record({ _tag: fc.constant("Leave" as const), node: fc.nat(9) }) },
    { weight: 1, arbitrary: fc.record({ _tag: fc.constant("Crash" as const), node: fc.nat(9) }) },
    { weight: 1, arbitrary: fc.record({ _tag: fc.constant("Restart" as const) }) },
    {
      weight: options.removals ? 1 : 0,
      arbitrary: fc.record({ _tag: fc.constant("RemoveDead" as const) }),
    },
    {
      weight: 2,
      arbitrary: fc.record({
        _tag: fc.constant("Wait" as const),
        ms: fc.integer({ min: 100, max: 3000 }),
      }),
    },
  )

/** The value a plain GET returns for an object: its resolved sibling (null if none or deleted). */
export const resolvedValue = (obj: Version.Obj): string | null =>
  Version.resolve(obj)?.sibling.value ?? null

/** What a schedule needs of a cluster: the simulator's, or machines stepped directly. */
export interface ScheduleCluster {
  readonly ids: ReadonlyArray<NodeId>
  isUp(id: NodeId): boolean
  call(id: NodeId, op: ClientOp): Operation
  stop(id: NodeId): void
  restart(id: NodeId): void
  untilServing(id: NodeId, maxMs?: number): boolean
}

/**
 * The bookkeeping both suites share while they run a schedule on a simulated cluster: which
 * nodes are still members, live or down; the model of what a read may return; every value ever
 * written per key; and the common actions (writes, reads, crashes, restarts, waits).
 */
export class ScheduleRun {
  readonly model = new KvModel()
  /** Every value written per key, acknowledged or not (null: the key's initial absence). */
  readonly ever = new Map<string, Set<string | null>>(KEYS.map((k) => [k, new Set([null])]))
  /** Nodes that left or were removed: no longer members. */
  readonly gone = new Set<NodeId>()
  private values = 0
  /**
   * What the run checked (so that it cannot pass vacuously): writes acknowledged and not,
   * reads that failed (skipped), and final reads compared with the model, of which found an
   * acknowledged value (not the key's initial absence).
   */
  readonly counts = { acked: 0, indeterminate: 0, readsFailed: 0, finalChecked: 0, finalValues: 0 }

  constructor(readonly sim: ScheduleCluster) {}

  active(): ReadonlyArray<NodeId> {
    return this.sim.ids.filter((id) => !this.gone.has(id))
  }

  live(): ReadonlyArray<NodeId> {
    return this.active().filter((id) => this.sim.isUp(id))
  }

  down(): ReadonlyArray<NodeId> {
    return this.active().filter((id) => !this.sim.isUp(id))
  }

  /** A plain SET of a fresh value at a live node; the model learns whether it was acknowledged. */
  write(action: { readonly key: number; readonly node: number }): void {
    const live = this.live()
    const key = KEYS[action.key]!
    const value = `v${this.values++}`
    this.ever.get(key)!.add(value)
    const op = this.sim.call(live[action.node % live.length]!, {
      _tag: "Put",
      key,
      value,
      context: null,
    })
    if (op.result?._tag === "PutOk") {
      this.model.written(key, value)
      this.counts.acked++
    } else {
      this.model.indeterminate(key, value)
      this.counts.indeterminate++
    }
  }

  /** A GET at a live node: its object, or undefined if the read failed. */
  read(action: { readonly key: number; readonly node: number }): Version.Obj | undefined {
    const live = this.live()
    const op = this.sim.call(live[action.node % live.length]!, {
      _tag: "Get",
      key: KEYS[action.key]!,
    })
    if (op.result?._tag !== "GetOk") this.counts.readsFailed++
    return op.result?._tag === "GetOk" ? op.result.obj : undefined
  }

  /** Crash a live node, if none is down and more than `minLive` are up. */
  crash(action: { readonly node: number }, minLive: number): boolean {
    const live = this.live()
    if (this.down().length > 0 || live.length <= minLive) return false
    this.sim.stop(live[action.node % live.length]!)
    return true
  }

  /** Restart every node that is down, and wait until they serve (as an operator's readiness check). */
  restartAll(): void {
    const down = this.down()
    for (const id of down) this.sim.restart(id)
    for (const id of down)
      assert.ok(this.sim.untilServing(id), `${id} never served after a restart`)
  }

  /** Every key reads its last acknowledged value, or a later write that failed (and may have happened). */
  checkFinal(read: (op: ClientOp) => Operation): void {
    for (const key of KEYS) {
      const op = read({ _tag: "Get", key })
      assert.equal(op.result?._tag, "GetOk", `final read of ${key}: ${JSON.stringify(op.result)}`)
      if (op.result?._tag !== "GetOk") continue
      const v = resolvedValue(op.result.obj)
      this.counts.finalChecked++
      if (v !== null) this.counts.finalValues++
      assert.ok(
        this.model.allowed(key).has(v),
        `final ${key} = ${v}, allowed ${[...this.model.allowed(key)]}`,
      )
    }
  }
}
