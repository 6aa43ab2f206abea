/**
 * The client side of `dht verify`: a bounded concurrent workload through ioredis at random
 * nodes, every operation recorded as JSON lines (an `invoke` line when it is sent, a `complete`
 * line when it is answered or given up on) and kept in memory for the checker (spec/history.ts).
 *
 * Clients, each a session with its own seeded generator, behaving like a careful client library:
 * it waits for a step up to PATIENCE_MS, then starts the next one beside it (at most
 * MAX_IN_FLIGHT at once), choosing among the nodes where none of its operations is stuck, so that
 * work goes on during faults instead of every client hanging on a paused node. Writes of one
 * owned key never overlap.
 *  - owner:   sequential SETs of unique values to keys only it writes, and GETs of them; it
 *             moves to fresh keys every few seconds, and right after a slow write (one that may
 *             have been failed over or delayed) it writes that key once more and retires it, so
 *             that retired keys keep their last acknowledged value as a witness: a late copy of
 *             an earlier write landing afterwards shows as a lost write;
 *  - shared:  SETs, DELs and GETs of a few keys every shared client writes;
 *  - reader:  GETs of any key, DHT.GET of the causal keys;
 *  - causal:  DHT.GET, then DHT.PUT with the context read (or none: a new sibling), DHT.DEL
 *             with the context read;
 *  - pipeliner: keys only it writes, like an owner's (`pipe:<c>:<slot>:<generation>`), each step
 *             one ioredis pipeline on its own connection (one socket write): `SET k v; GET k`,
 *             sometimes `SET k v; GET k; DEL k; GET k`, sometimes several `SET; GET` pairs.
 *             Every command is its own operation, invoked when the pipeline is sent, completed
 *             as its reply arrives, and recorded `after` the command sent before it: by CONN-1
 *             each GET starts only once that command has its result, so it must read it (the
 *             sessions check, spec/history.ts; `dht verify --unsafe-unordered` breaks this).
 * Now and then a writer sends a write the server must refuse outright (DHT.PUT … W 99): a
 * definitely failed write, whose value must never be read.
 *
 * Outcomes: an answer is `ok`; a refusal the server makes before doing anything (validation, the
 * CP minority's refusal) or a connection that never connected (the command never left) is
 * `failed`; everything else (timeouts, quorum errors, connections lost mid-command) is
 * `indeterminate`. Times are milliseconds since the run started, on this process's clock.
 */
import { createWriteStream, type WriteStream } from "node:fs"
import { Command, type Pipeline, Redis } from "ioredis"
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
  /** Pipelined on the same connection right after this operation (CONN-1). */
  after?: number
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
      after?: number
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
  /^(ERR (syntax error|wrong number of arguments|unknown command|value too large|[RW] must be an integer)|UNAVAILABLE (CP mode:|this node is starting)|TRYAGAIN forwarded to a node that is not a replica)/

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

/** What a pipeline may hold: plain commands on one key. */
export type PipelineAction = Extract<Action, { readonly _tag: "Set" | "Get" | "Del" }>

const kindOf = (action: Action): Op["kind"] =>
  action._tag === "Set"
    ? "write"
    : action._tag === "DhtPut"
      ? "put"
      : action._tag === "Del" || action._tag === "DhtDel"
        ? "delete"
        : "read"

export class Runner {
  constructor(
    readonly recorder: Recorder,
    readonly connections: Connections,
  ) {}

  /**
   * Run one action at `node` for `client`, recording it. Never throws. `connection` names the
   * connection to use (default: the client's own), so that a client's parallel steps do not
   * queue behind each other.
   */
  async run(
    client: string,
    node: Endpoint,
    action: Action,
    timeoutMs?: number,
    connection: string = client,
  ): Promise<Done> {
    const op = this.recorder.invoke({
      client,
      key: action.key,
      kind: kindOf(action),
      node: node.id,
      ...("value" in action ? { value: action.value } : {}),
      ...("context" in action && action.context !== undefined
        ? { context: action.context.values, contextReadAt: action.context.readAt }
        : {}),
    })
    const conn = this.connections.get(connection, node, timeoutMs)
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
        this.connections.drop(connection, node, conn)
      }
      return { op }
    }
  }

  /**
   * Send `actions` as one ioredis pipeline (one socket write) on one connection, recording each
   * command as its own operation: all invoked when the pipeline is sent, each one `after` the
   * command before it, each completed as its reply arrives (replies come in order). Outcomes as
   * in `run`. Never throws.
   */
  async pipeline(
    client: string,
    node: Endpoint,
    actions: ReadonlyArray<PipelineAction>,
    timeoutMs?: number,
    connection: string = client,
  ): Promise<Array<Done>> {
    const ops: Array<MutableOp> = []
    for (const action of actions) {
      const previous = ops[ops.length - 1]
      ops.push(
        this.recorder.invoke({
          client,
          key: action.key,
          kind: kindOf(action),
          node: node.id,
          ...(action._tag === "Set" ? { value: action.value } : {}),
          ...(previous === undefined ? {} : { after: previous.id }),
        }),
      )
    }
    const conn = this.connections.get(connection, node, timeoutMs)
    const pipeline = conn.redis.pipeline()
    // Commands built here so that each one's own reply can be waited for (exec's result comes
    // only once every reply is in).
    const send = pipeline as unknown as Pick<Pipeline, "sendCommand">
    let broken = false
    const replies = actions.map((action, i) => {
      const command = new Command(
        action._tag.toLowerCase(),
        action._tag === "Set" ? [action.key, action.value] : [action.key],
        { replyEncoding: "utf8" },
      )
      send.sendCommand(command)
      const op = ops[i]!
      return command.promise.then(
        (reply: unknown) => {
          if (action._tag === "Get") {
            this.recorder.complete(op, "ok", { values: reply === null ? [] : [String(reply)] })
          } else this.recorder.complete(op, "ok")
        },
        (e: unknown) => {
          this.recorder.complete(op, classify(e, conn), { error: messageOf(e) })
          if (!(e instanceof Error && e.name === "ReplyError")) broken = true
        },
      )
    })
    // Each command's own promise records it; exec's summary of them all is not needed.
    pipeline.exec().catch(() => {})
    await Promise.all(replies)
    // A server's error reply leaves the connection fine; anything else, start afresh.
    if (broken) this.connections.drop(connection, node, conn)
    return ops.map((op) => ({ op }))
  }
}

// ---------------------------------------------------------------------------------------------
// Clients

export type Role = "owner" | "shared" | "reader" | "causal" | "pipeliner"

/** Ten clients: four owners, two shared, two causal, one reader, one pipeliner. */
const ROLES: ReadonlyArray<Role> = [
  "owner",
  "shared",
  "owner",
  "reader",
  "causal",
  "shared",
  "owner",
  "causal",
  "pipeliner",
  "owner",
]

export const SHARED_KEYS = 4
export const CAUSAL_KEYS = 3
export const OWNED_KEYS = 3
/** A pipeliner's key slots (as many as its steps in flight: a free one is always there). */
export const PIPE_KEYS = 3
/** An owner writes a set of keys for this long, then moves on to fresh ones. */
export const OWNED_KEY_LIFE_MS = 4000
/** A write slower than this may have been failed over: write its key once more, then retire it. */
export const SLOW_WRITE_MS = 1000

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

export const roles = (clients: number): Array<Role> =>
  Array.from({ length: clients }, (_, i) => ROLES[i % ROLES.length]!)

/** One of an owner's key slots: the key in use, since when, and whether a write is in flight. */
interface Slot {
  key: string
  born: number
  busy: boolean
}

/** A client waits this long for a step before starting the next one beside it. */
export const PATIENCE_MS = 300
/** Steps of one client in flight at once. */
export const MAX_IN_FLIGHT = 3

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/** Run every client until `until` (or its operation bound, or `stopping`). */
export const runWorkload = async (o: WorkloadOptions): Promise<void> => {
  const root = new Prng(o.seed)
  const shared = Array.from({ length: SHARED_KEYS }, (_, j) => `shared:${j}`)
  const causal = Array.from({ length: CAUSAL_KEYS }, (_, j) => `causal:${j}`)
  const all = roles(o.clients)
  const now = () => o.runner.recorder.now()
  let generation = 0
  const fresh = (c: number, j: number): Slot => ({
    key: `own:${c}:${j}:${generation++}`,
    born: now(),
    busy: false,
  })
  /** Every owner's key slots (readers read them too). */
  const slots = new Map<number, Array<Slot>>()
  all.forEach((role, c) => {
    if (role === "owner")
      slots.set(
        c,
        Array.from({ length: OWNED_KEYS }, (_, j) => fresh(c, j)),
      )
  })
  const owned = [...slots.values()].flat()
  /** Every pipeliner's key slots (fresh keys of its own, like an owner's). */
  const pipes = new Map<number, Array<Slot>>()
  all.forEach((role, c) => {
    if (role === "pipeliner") {
      pipes.set(
        c,
        Array.from({ length: PIPE_KEYS }, (_, j) => ({
          key: `pipe:${c}:${j}:${generation++}`,
          born: now(),
          busy: false,
        })),
      )
    }
  })
  /** A reader's plain keys: the shared ones and the owners' current ones. */
  const plainKey = (rng: Prng): string => {
    const i = rng.int(shared.length + owned.length)
    return i < shared.length ? shared[i]! : owned[i - shared.length]!.key
  }
  await Promise.all(
    all.map(async (role, c) => {
      const rng = root.fork()
      const name = `${role}${c}`
      let serial = 0
      const value = () => `${name}.${serial++}`
      const pick = <A>(xs: ReadonlyArray<A>): A => xs[rng.int(xs.length)]!
      const over = () => o.stopping() || now() >= o.until
      /** Nodes where an operation of this client has waited longer than its patience. */
      const stuck = new Map<string, number>()
      const node = (): Endpoint => {
        const fine = o.endpoints.filter((e) => (stuck.get(e.id) ?? 0) === 0)
        const from = fine.length > 0 ? fine : o.endpoints
        return from[rng.int(from.length)]!
      }
      let lastOk = true
      /** Run one operation on lane `lane` (a connection of its own per lane and node). */
      const run = async (lane: number, at: Endpoint, action: Action): Promise<Done> => {
        let slow = false
        const timer = setTimeout(() => {
          slow = true
          stuck.set(at.id, (stuck.get(at.id) ?? 0) + 1)
        }, PATIENCE_MS)
        try {
          const done = await o.runner.run(name, at, action, undefined, `${name}/${lane}`)
          lastOk = done.op.outcome === "ok"
          return done
        } finally {
          clearTimeout(timer)
          if (slow) stuck.set(at.id, (stuck.get(at.id) ?? 1) - 1)
        }
      }
      /** Send one pipeline on lane `lane`'s connection, like `run`. */
      const runPipeline = async (
        lane: number,
        at: Endpoint,
        actions: ReadonlyArray<PipelineAction>,
      ): Promise<Array<Done>> => {
        let slow = false
        const timer = setTimeout(() => {
          slow = true
          stuck.set(at.id, (stuck.get(at.id) ?? 0) + 1)
        }, PATIENCE_MS)
        try {
          const done = await o.runner.pipeline(name, at, actions, undefined, `${name}/${lane}`)
          lastOk = done.every((d) => d.op.outcome === "ok")
          return done
        } finally {
          clearTimeout(timer)
          if (slow) stuck.set(at.id, (stuck.get(at.id) ?? 1) - 1)
        }
      }
      const refusedWrite = (lane: number, key: string) =>
        run(lane, node(), { _tag: "DhtPut", key, value: `${value()}.refused`, w: 99 })
      /** One step of this client's role: one operation, or a short chain of them. */
      const step = async (lane: number): Promise<void> => {
        const roll = rng.float()
        switch (role) {
          case "owner": {
            const j = rng.int(OWNED_KEYS)
            const slot = slots.get(c)![j]!
            if (!slot.busy && now() - slot.born > OWNED_KEY_LIFE_MS) {
              // Retire the key: its last acknowledged value is its witness from now on.
              Object.assign(slot, fresh(c, j))
            }
            const key = slot.key
            // Writes of one key never overlap: while one is in flight, read it instead.
            if (slot.busy || roll >= 0.75) {
              await run(lane, node(), { _tag: "Get", key })
              return
            }
            slot.busy = true
            try {
              if (roll < 0.01) {
                await refusedWrite(lane, key)
                return
              }
              const done = await run(lane, node(), { _tag: "Set", key, value: value() })
              const took = (done.op.completedAt ?? now()) - done.op.invokedAt
              if (done.op.outcome === "ok" && took > SLOW_WRITE_MS && !over()) {
                // Slow: perhaps failed over. Write once more after it, then leave the key alone.
                await run(lane, node(), { _tag: "Set", key, value: value() })
                slot.born = Number.NEGATIVE_INFINITY
              }
            } finally {
              slot.busy = false
            }
            return
          }
          case "shared": {
            const key = pick(shared)
            if (roll < 0.01) await refusedWrite(lane, key)
            else if (roll < 0.65) await run(lane, node(), { _tag: "Set", key, value: value() })
            else if (roll < 0.8) await run(lane, node(), { _tag: "Del", key })
            else await run(lane, node(), { _tag: "Get", key })
            return
          }
          case "reader":
            if (roll < 0.75) await run(lane, node(), { _tag: "Get", key: plainKey(rng) })
            else await run(lane, node(), { _tag: "DhtGet", key: pick(causal) })
            return
          case "causal": {
            const key = pick(causal)
            if (roll < 0.01) {
              await refusedWrite(lane, key)
              return
            }
            const at = node()
            const read = await run(lane, at, { _tag: "DhtGet", key })
            if (over()) return
            const choice = rng.float()
            // Write through the same node or another one, as clients do.
            const target = rng.chance(0.5) ? at : node()
            if (read.context === undefined || read.op.outcome !== "ok") {
              if (choice < 0.3) await run(lane, target, { _tag: "DhtPut", key, value: value() })
              return
            }
            const context = {
              token: read.context,
              values: read.op.values ?? [],
              readAt: read.op.invokedAt,
            }
            if (choice < 0.55) {
              await run(lane, target, { _tag: "DhtPut", key, value: value(), context })
            } else if (choice < 0.7) {
              await run(lane, target, { _tag: "DhtPut", key, value: value() })
            } else if (choice < 0.85) {
              await run(lane, target, { _tag: "DhtDel", key, context })
            }
            return
          }
          case "pipeliner": {
            // A key of its own no other step of this client is writing (one always is free).
            const free = pipes.get(c)!.filter((x) => !x.busy)
            if (free.length === 0) return
            const slot = free[rng.int(free.length)]!
            const j = pipes.get(c)!.indexOf(slot)
            if (now() - slot.born > OWNED_KEY_LIFE_MS) {
              Object.assign(slot, { key: `pipe:${c}:${j}:${generation++}`, born: now() })
            }
            const key = slot.key
            const pair = (): Array<PipelineAction> => [
              { _tag: "Set", key, value: value() },
              { _tag: "Get", key },
            ]
            // SET; GET (60 %), SET; GET; DEL; GET (20 %), two to four SET; GET pairs (20 %).
            const actions: Array<PipelineAction> =
              roll < 0.6
                ? pair()
                : roll < 0.8
                  ? [...pair(), { _tag: "Del", key }, { _tag: "Get", key }]
                  : Array.from({ length: 2 + rng.int(3) }, pair).flat()
            slot.busy = true
            try {
              await runPipeline(lane, node(), actions)
            } finally {
              slot.busy = false
            }
            return
          }
        }
      }
      // Wait for each step, but only up to the patience: then start the next one beside it
      // (at most MAX_IN_FLIGHT at once), on a node where nothing of this client is stuck.
      const lanes = new Array<boolean>(MAX_IN_FLIGHT).fill(false)
      const inflight = new Set<Promise<void>>()
      for (let ops = 0; ops < o.maxOpsPerClient && !over(); ops++) {
        while (inflight.size >= MAX_IN_FLIGHT) await Promise.race(inflight)
        if (over()) break
        const lane = lanes.indexOf(false)
        lanes[lane] = true
        const task: Promise<void> = step(lane).finally(() => {
          lanes[lane] = false
          inflight.delete(task)
        })
        inflight.add(task)
        await Promise.race([task, sleep(PATIENCE_MS)])
        // Back off a little after a failure (a dead node refuses at once: no tight loop).
        await sleep(lastOk ? rng.int(10) : 20 + rng.int(80))
      }
      await Promise.all(inflight)
    }),
  )
}
