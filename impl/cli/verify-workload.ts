/**
 * The client side of `dht verify`: a bounded concurrent workload through ioredis at random
 * nodes, every operation recorded as JSON lines (an `invoke` line when it is sent, a `complete`
 * line when it is answered or given up on) and kept in memory for the checker (spec/history.ts).
 *
 * Clients, each a sequential session with its own seeded generator:
 *  - owner:   sequential SETs of unique values to keys only it writes, and GETs of them;
 *  - shared:  SETs, DELs and GETs of a few keys every shared client writes;
 *  - reader:  GETs of any key, DHT.GET of the causal keys;
 *  - causal:  DHT.GET, then DHT.PUT with the context read (or none: a new sibling), DHT.DEL
 *             with the context read.
 * Now and then a writer sends a write the server must refuse outright (DHT.PUT … W 99): a
 * definitely failed write, whose value must never be read.
 *
 * Outcomes: an answer is `ok`; a refusal the server makes before doing anything (validation, the
 * CP minority's refusal) or a connection that never connected (the command never left) is
 * `failed`; everything else (timeouts, quorum errors, connections lost mid-command) is
 * `indeterminate`. Times are milliseconds since the run started, on this process's clock.
 */
import { createWriteStream, type WriteStream } from "node:fs"
import { Redis } from "ioredis"
import type { Op, Outcome } from "../../spec/history.ts"
import { DhtClient } from "../client/client.ts"
import { Prng } from "../sim/prng.ts"
import type { Endpoint } from "./verify-nodes.ts"

// ---------------------------------------------------------------------------------------------
// Recording

interface MutableOp {
  id: number
  client: string
  key: string
  kind: Op["kind"]
  value?: string
  context?: ReadonlyArray<string>
  contextReadAt?: number
  invokedAt: number
  completedAt?: number
  outcome: Outcome
  values?: ReadonlyArray<string>
  node: string
  error?: string
  /** Still waiting for its answer. */
  open: boolean
}

export interface Tally {
  invoked: number
  ok: number
  failed: number
  indeterminate: number
}

export class Recorder {
  readonly ops: Array<MutableOp> = []
  readonly tally: Tally = { invoked: 0, ok: 0, failed: 0, indeterminate: 0 }
  private readonly out: WriteStream
  private readonly t0: number

  constructor(path: string, t0: number, header: Record<string, unknown>) {
    this.t0 = t0
    this.out = createWriteStream(path)
    this.line({ type: "start", epochMs: Date.now(), ...header })
  }

  /** Milliseconds since the run started (microsecond resolution). */
  now(): number {
    return Math.round((performance.now() - this.t0) * 1000) / 1000
  }

  private line(record: Record<string, unknown>): void {
    this.out.write(`${JSON.stringify(record)}\n`)
  }

  invoke(
    fields: Pick<MutableOp, "client" | "key" | "kind" | "node"> & {
      value?: string
      context?: ReadonlyArray<string>
      contextReadAt?: number
    },
  ): MutableOp {
    const op: MutableOp = {
      id: this.ops.length,
      ...fields,
      invokedAt: this.now(),
      outcome: "indeterminate",
      open: true,
    }
    this.ops.push(op)
    this.tally.invoked++
    this.line({ type: "invoke", ...strip(op) })
    return op
  }

  complete(
    op: MutableOp,
    outcome: Outcome,
    extra: { values?: ReadonlyArray<string>; error?: string } = {},
  ): void {
    if (!op.open) return
    op.open = false
    op.completedAt = this.now()
    op.outcome = outcome
    if (extra.values !== undefined) op.values = extra.values
    if (extra.error !== undefined) op.error = extra.error
    this.tally[outcome]++
    this.line({
      type: "complete",
      id: op.id,
      at: op.completedAt,
      outcome,
      ...(extra.values === undefined ? {} : { values: extra.values }),
      ...(extra.error === undefined ? {} : { error: extra.error }),
    })
  }

  /** Other records (nemesis events, final reads) go to their own files; this is for notes. */
  note(record: Record<string, unknown>): void {
    this.line({ type: "note", at: this.now(), ...record })
  }

  /** The history for the checker; operations never answered stay indeterminate, uncompleted. */
  history(): Array<Op> {
    return this.ops.map((op) => {
      const { open: _open, ...rest } = op
      return rest
    })
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.out.end(resolve))
  }
}

const strip = (op: MutableOp): Record<string, unknown> => {
  const { open: _open, outcome: _outcome, completedAt: _c, ...rest } = op
  return { ...rest, at: op.invokedAt }
}

// ---------------------------------------------------------------------------------------------
// Connections

interface Conn {
  readonly redis: Redis
  /** The TCP connection was established at some point: a command may have left. */
  connected: boolean
}

/** One connection per (client, node), replaced after any connection trouble. */
export class Connections {
  private readonly conns = new Map<string, Conn>()

  constructor(private readonly timeoutMs: number) {}

  get(client: string, node: Endpoint, timeoutMs = this.timeoutMs): Conn {
    const name = `${client}@${node.id}`
    const known = this.conns.get(name)
    if (known !== undefined && known.redis.status !== "end" && known.redis.status !== "close") {
      return known
    }
    const redis = new Redis({
      host: node.host,
      port: node.port,
      enableReadyCheck: false,
      enableOfflineQueue: true,
      autoResendUnfulfilledCommands: false,
      retryStrategy: () => null,
      maxRetriesPerRequest: 0,
      connectTimeout: Math.min(timeoutMs, 3000),
      commandTimeout: timeoutMs,
    })
    const conn: Conn = { redis, connected: false }
    redis.on("connect", () => {
      conn.connected = true
    })
    redis.on("error", () => {})
    this.conns.set(name, conn)
    return conn
  }

  /** Forget a connection after trouble (a timed-out command leaves it in an unknown state). */
  drop(client: string, node: Endpoint, conn: Conn): void {
    const name = `${client}@${node.id}`
    if (this.conns.get(name) === conn) this.conns.delete(name)
    conn.redis.disconnect()
  }

  closeAll(): void {
    for (const conn of this.conns.values()) conn.redis.disconnect()
    this.conns.clear()
  }
}

/** Server refusals made before anything happened: the operation definitely did not take effect. */
const DEFINITE =
  /^(ERR (syntax error|wrong number of arguments|unknown command|value too large|[RW] must be an integer)|UNAVAILABLE CP mode:)/

const messageOf = (e: unknown): string => (e instanceof Error ? e.message : String(e))

const classify = (e: unknown, conn: Conn): Outcome => {
  if (e instanceof Error && e.name === "ReplyError" && DEFINITE.test(e.message)) return "failed"
  // Never connected: the command never left this process.
  if (!conn.connected && !(e instanceof Error && e.name === "ReplyError")) return "failed"
  return "indeterminate"
}

// ---------------------------------------------------------------------------------------------
// Operations

export type Action =
  | { readonly _tag: "Set"; readonly key: string; readonly value: string }
  | { readonly _tag: "Get"; readonly key: string }
  | { readonly _tag: "Del"; readonly key: string }
  | { readonly _tag: "DhtGet"; readonly key: string }
  | {
      readonly _tag: "DhtPut"
      readonly key: string
      readonly value: string
      /** The context read (token, values, when the read began); undefined: a new sibling. */
      readonly context?: Context
      readonly w?: number
    }
  | {
      readonly _tag: "DhtDel"
      readonly key: string
      readonly context: Context
    }

/** A context token as DHT.GET returned it, the values it was read with, and when that read began. */
export interface Context {
  readonly token: string
  readonly values: ReadonlyArray<string>
  readonly readAt: number
}

export interface Done {
  readonly op: MutableOp
  /** DHT.GET: the context token read (for the next write). */
  readonly context?: string
}

export class Runner {
  constructor(
    readonly recorder: Recorder,
    readonly connections: Connections,
  ) {}

  /** Run one action at `node` for `client`, recording it. Never throws. */
  async run(client: string, node: Endpoint, action: Action, timeoutMs?: number): Promise<Done> {
    const kind: Op["kind"] =
      action._tag === "Set"
        ? "write"
        : action._tag === "DhtPut"
          ? "put"
          : action._tag === "Del" || action._tag === "DhtDel"
            ? "delete"
            : "read"
    const op = this.recorder.invoke({
      client,
      key: action.key,
      kind,
      node: node.id,
      ...("value" in action ? { value: action.value } : {}),
      ...("context" in action && action.context !== undefined
        ? { context: action.context.values, contextReadAt: action.context.readAt }
        : {}),
    })
    const conn = this.connections.get(client, node, timeoutMs)
    try {
      const redis = conn.redis
      const dht = new DhtClient(redis)
      switch (action._tag) {
        case "Set":
          await redis.set(action.key, action.value)
          this.recorder.complete(op, "ok")
          return { op }
        case "Get": {
          const value = await redis.get(action.key)
          this.recorder.complete(op, "ok", { values: value === null ? [] : [value] })
          return { op }
        }
        case "Del":
          await redis.del(action.key)
          this.recorder.complete(op, "ok")
          return { op }
        case "DhtGet": {
          const read = await dht.get(action.key)
          this.recorder.complete(op, "ok", { values: read.siblings })
          return { op, context: read.context }
        }
        case "DhtPut":
          await dht.put(action.key, action.value, {
            ...(action.context === undefined ? {} : { context: action.context.token }),
            ...(action.w === undefined ? {} : { w: action.w }),
          })
          this.recorder.complete(op, "ok")
          return { op }
        case "DhtDel":
          await dht.del(action.key, { context: action.context.token })
          this.recorder.complete(op, "ok")
          return { op }
      }
    } catch (e) {
      const outcome = classify(e, conn)
      this.recorder.complete(op, outcome, { error: messageOf(e) })
      // A server's error reply leaves the connection fine; anything else, start afresh.
      if (!(e instanceof Error && e.name === "ReplyError")) {
        this.connections.drop(client, node, conn)
      }
      return { op }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Clients

export type Role = "owner" | "shared" | "reader" | "causal"

const ROLES: ReadonlyArray<Role> = [
  "owner",
  "shared",
  "owner",
  "reader",
  "causal",
  "shared",
  "owner",
  "causal",
  "reader",
  "owner",
]

export const SHARED_KEYS = 4
export const CAUSAL_KEYS = 3
export const OWNED_KEYS = 3

export interface WorkloadOptions {
  readonly runner: Runner
  readonly endpoints: ReadonlyArray<Endpoint>
  readonly clients: number
  readonly seed: number
  /** Stop starting operations at this time (recorder ms). */
  readonly until: number
  readonly maxOpsPerClient: number
  readonly stopping: () => boolean
}

export interface WorkloadPlan {
  readonly roles: ReadonlyArray<Role>
  /** Every key the workload touches (final reads cover them, and the probe keys). */
  readonly keys: ReadonlyArray<string>
}

export const plan = (clients: number): WorkloadPlan => {
  const roles = Array.from({ length: clients }, (_, i) => ROLES[i % ROLES.length]!)
  const keys: Array<string> = []
  roles.forEach((role, c) => {
    if (role === "owner") for (let j = 0; j < OWNED_KEYS; j++) keys.push(ownKey(c, j))
  })
  for (let j = 0; j < SHARED_KEYS; j++) keys.push(`shared:${j}`)
  for (let j = 0; j < CAUSAL_KEYS; j++) keys.push(`causal:${j}`)
  return { roles, keys }
}

const ownKey = (client: number, j: number): string => `own:${client}:${j}`

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/** Run every client until `until` (or its operation bound, or `stopping`). */
export const runWorkload = async (o: WorkloadOptions): Promise<void> => {
  const { roles, keys } = plan(o.clients)
  const root = new Prng(o.seed)
  const shared = Array.from({ length: SHARED_KEYS }, (_, j) => `shared:${j}`)
  const causal = Array.from({ length: CAUSAL_KEYS }, (_, j) => `causal:${j}`)
  const plainKeys = keys.filter((k) => !k.startsWith("causal:"))
  await Promise.all(
    roles.map(async (role, c) => {
      const rng = root.fork()
      const name = `${role}${c}`
      let serial = 0
      const value = () => `${name}.${serial++}`
      const node = () => o.endpoints[rng.int(o.endpoints.length)]!
      const pick = <A>(xs: ReadonlyArray<A>): A => xs[rng.int(xs.length)]!
      let last: Done | undefined
      const run = async (action: Action) => {
        last = await o.runner.run(name, node(), action)
        return last
      }
      const refusedWrite = (key: string) =>
        run({ _tag: "DhtPut", key, value: `${value()}.refused`, w: 99 })
      for (let ops = 0; ops < o.maxOpsPerClient; ops++) {
        if (o.stopping() || o.runner.recorder.now() >= o.until) return
        const roll = rng.float()
        switch (role) {
          case "owner": {
            const key = ownKey(c, rng.int(OWNED_KEYS))
            if (roll < 0.01) await refusedWrite(key)
            else if (roll < 0.75) await run({ _tag: "Set", key, value: value() })
            else await run({ _tag: "Get", key })
            break
          }
          case "shared": {
            const key = pick(shared)
            if (roll < 0.01) await refusedWrite(key)
            else if (roll < 0.65) await run({ _tag: "Set", key, value: value() })
            else if (roll < 0.8) await run({ _tag: "Del", key })
            else await run({ _tag: "Get", key })
            break
          }
          case "reader":
            if (roll < 0.75) await run({ _tag: "Get", key: pick(plainKeys) })
            else await run({ _tag: "DhtGet", key: pick(causal) })
            break
          case "causal": {
            const key = pick(causal)
            if (roll < 0.01) {
              await refusedWrite(key)
              break
            }
            const at = node()
            const read = await o.runner.run(name, at, { _tag: "DhtGet", key })
            last = read
            if (o.stopping() || o.runner.recorder.now() >= o.until) return
            const choice = rng.float()
            // Write through the same node or another one, as clients do.
            const target = rng.chance(0.5) ? at : node()
            if (read.context === undefined || read.op.outcome !== "ok") {
              if (choice < 0.3) {
                await o.runner.run(name, target, { _tag: "DhtPut", key, value: value() })
              }
              break
            }
            const context = {
              token: read.context,
              values: read.op.values ?? [],
              readAt: read.op.invokedAt,
            }
            if (choice < 0.55) {
              await o.runner.run(name, target, { _tag: "DhtPut", key, value: value(), context })
            } else if (choice < 0.7) {
              await o.runner.run(name, target, { _tag: "DhtPut", key, value: value() })
            } else if (choice < 0.85) {
              await o.runner.run(name, target, { _tag: "DhtDel", key, context })
            }
            break
          }
        }
        // Back off a little after a failure (a dead node refuses at once: no tight loop).
        await sleep(last?.op.outcome === "ok" ? rng.int(10) : 20 + rng.int(80))
      }
    }),
  )
}
