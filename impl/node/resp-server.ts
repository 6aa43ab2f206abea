/**
 * The client-facing server: RESP2 and RESP3 over TCP (impl/wire/resp.ts), so redis-cli,
 * redis-benchmark and any Redis client library work against a node.
 *
 * Each command becomes zero or more client operations for the driver (GET, SET, DEL, EXISTS,
 * MGET, MSET; the causal API DHT.GET, DHT.PUT, DHT.DEL with context tokens) or an operator
 * intent (DHT.JOIN, DHT.LEAVE, DHT.REMOVE node); the rest (PING, ECHO, INFO, DHT.STATUS,
 * COMMAND, CONFIG GET, SELECT, CLIENT …) are answered here. Nothing here knows how a quorum is reached: a result from the machine is translated into
 * a reply and nothing else (a plain GET sees `Version.resolve` of the merged object).
 *
 * Pipelining: every command takes a reply slot on its connection, in arrival order; results
 * from the machine fill slots in any order, and replies leave strictly in slot order, batched
 * into one socket write per flush. A connection with too many unanswered commands or too much
 * unsent output stops being read until it drains.
 *
 * One connection, one order (CONN-1): an operation on a key starts only once every earlier
 * operation of the same connection on that key has its result, so a pipelined `SET k v; GET k`
 * reads v, as with Redis. Operations on other keys overlap freely. Test-only negative control
 * (`dht verify --unsafe-unordered`): with DHT_UNSAFE_UNORDERED=1 in its environment the server
 * submits every operation on arrival, as it once did, and a pipelined GET may miss the SET sent
 * just before it. Never in production.
 *
 * Time (relative expiries, TTLs, expiry of the values read, INFO's uptime) is the node clock's
 * (`RespServerOptions.clock`, the `NodeClock` service of impl/node/runtime.ts).
 *
 * Errors: a malformed request stream gets `-ERR Protocol error: …` after the replies already
 * owed, then the connection is closed; nobody else is affected. A client that goes away mid
 * command is forgotten: its late results are dropped.
 */
import { kindOf } from "../core/failure.ts"
import * as net from "node:net"
import { Effect, Match, type Scope } from "effect"
import { NodeId } from "../core/ids.ts"
import {
  type ClientOp,
  type ClientResult,
  type FailureKind,
  type OperatorOp,
  type PutOp,
  SCAN_COUNT_MAX,
} from "../core/messages.ts"
import * as Version from "../core/version.ts"
import * as Context from "../wire/context.ts"
import * as Resp from "../wire/resp.ts"
import { type Address, type Config, MiB, showAddress } from "./config.ts"
import type { Log } from "./log.ts"
import type { ClockShape } from "./runtime.ts"

export interface RespServerOptions {
  readonly config: Config
  readonly log: Log
  /**
   * The node clock (the `NodeClock` service, impl/node/runtime.ts): expiries, TTLs, values read
   * at now, INFO's uptime.
   */
  readonly clock: ClockShape
  /** Run a client operation on the machine; the callback receives its one result. */
  readonly submit: (op: ClientOp, onResult: (result: ClientResult) => void) => void
  /** Run an operator intent (DHT.JOIN, DHT.LEAVE, DHT.REMOVE). */
  readonly operator: (op: OperatorOp, onResult: (result: ClientResult) => void) => void
  /** The cluster as this node sees it (DHT.STATUS), as JSON-able data. */
  readonly status: () => unknown
  /**
   * The node is starting: it refuses requests until a peer confirmed its store and its view
   * caught up. INFO shows it as `loading:1`, which clients' ready checks (ioredis) wait out.
   */
  readonly starting: () => boolean
  /** INFO sections beyond `server` and `clients`, in order: [section, [field, value][]]. */
  readonly info: () => ReadonlyArray<
    readonly [string, ReadonlyArray<readonly [string, string | number]>]
  >
}

export interface RespServerStats {
  connectedClients: number
  totalConnections: number
  totalCommands: number
  protocolErrors: number
}

export interface RespServer {
  readonly listening: Address
  readonly stats: () => Readonly<RespServerStats>
}

/** The Redis version HELLO and INFO report: the command set and replies follow Redis 7. */
const REDIS_VERSION = "7.2.0"

/** Stop reading a connection with this many replies owed … */
const SLOTS_PENDING_MAX = 16_384
/** … or this much output not yet taken by the kernel. */
const OUTPUT_BYTES_MAX = 32 * MiB

/** One reply owed to a connection; `reply` undefined until its result arrives. */
interface Slot {
  reply: Resp.Reply | undefined
}

interface Connection {
  readonly id: number
  readonly socket: net.Socket
  readonly parser: Resp.RespParser
  /** Slots from `head` on are owed, oldest first. */
  slots: Array<Slot>
  head: number
  /** Gone (closed by either side): late results are dropped. */
  gone: boolean
  /** QUIT or a protocol error: answer what is owed, then close; read nothing more. */
  closing: boolean
  flushScheduled: boolean
  paused: boolean
  name: string
  /** RESP2 until the client says `HELLO 3`. */
  proto: Resp.Protocol
  /**
   * Keys with an operation of this connection in flight, each with the operations waiting
   * behind it in arrival order (CONN-1).
   */
  readonly inFlight: Map<string, Array<() => void>>
}

type Handler = (conn: Connection, args: ReadonlyArray<string>, slot: Slot) => Resp.Reply | undefined

/** Arity in Redis's notation: n exactly n words (command included), -n at least n. */
interface Spec {
  readonly arity: number
  readonly handle: Handler
}

export const make = (options: RespServerOptions): Effect.Effect<RespServer, Error, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.async<RespServerImpl, Error>((resume) => {
      const server = new RespServerImpl(options)
      server.listen(
        () => resume(Effect.succeed(server)),
        (e) => resume(Effect.fail(e)),
      )
    }),
    (server) => Effect.promise(() => server.close()),
  )

// ---------------------------------------------------------------------------------------------
// Replies from machine results

/**
 * The RESP error code of each kind of failure (impl/core/failure.ts `kindOf`), matched
 * exhaustively: a new kind does not compile until it has a code. QuorumNotMet messages start
 * "quorum not met: …" (failure.ts), as Redis clients and docs/clients.md expect after ERR;
 * NotReplica wrote nothing, and Redis's TRYAGAIN tells clients to retry.
 */
const failureCode: (kind: FailureKind) => string = Match.type<FailureKind>().pipe(
  Match.when("QuorumNotMet", () => "ERR"),
  Match.when("NotReplica", () => "TRYAGAIN"),
  Match.when("Timeout", () => "TIMEOUT"),
  Match.when("Overloaded", () => "OVERLOADED"),
  Match.when("Unavailable", () => "UNAVAILABLE"),
  Match.when("BadRequest", () => "ERR"),
  Match.exhaustive,
)

const failureReply = (result: ClientResult & { _tag: "Failed" }): Resp.Reply =>
  Resp.error(`${failureCode(kindOf(result.error))} ${result.error.message}`)

const notInteger = Resp.error("ERR value is not an integer or out of range")

/** A decimal integer as Redis parses one (no sign on zero, no leading +, within int64). */
const parseInteger = (text: string): number | undefined => {
  if (!/^-?(0|[1-9]\d{0,18})$/.test(text)) return undefined
  const n = Number(text)
  return Number.isSafeInteger(n) ? n : undefined
}

/** What a write with expiry options asks for, or the error Redis gives. */
interface SetOptions {
  readonly cond?: "nx" | "xx"
  readonly get: boolean
  readonly exp?: number
  readonly keepTtl: boolean
}

/**
 * SET's options after key and value: NX|XX, GET, and one of EX s|PX ms|EXAT s|PXAT ms|KEEPTTL.
 * Relative expiries become absolute wall-clock ms here, by this node's clock.
 */
const parseSetOptions = (args: ReadonlyArray<string>, now: number): SetOptions | Resp.Reply => {
  let cond: "nx" | "xx" | undefined
  let get = false
  let exp: number | undefined
  let keepTtl = false
  let expiries = 0
  for (let i = 0; i < args.length; i++) {
    const option = args[i]!.toUpperCase()
    if ((option === "NX" || option === "XX") && cond === undefined) {
      cond = option === "NX" ? "nx" : "xx"
    } else if (option === "GET" && !get) get = true
    else if (option === "KEEPTTL") {
      keepTtl = true
      expiries++
    } else if (["EX", "PX", "EXAT", "PXAT"].includes(option) && i + 1 < args.length) {
      const n = parseInteger(args[++i]!)
      if (n === undefined) return notInteger
      if (n <= 0) return Resp.error("ERR invalid expire time in 'set' command")
      exp = expiryMs(option, n, now)
      expiries++
    } else return Resp.error("ERR syntax error")
  }
  if (expiries > 1) return Resp.error("ERR syntax error")
  return {
    ...(cond === undefined ? {} : { cond }),
    get,
    ...(exp === undefined ? {} : { exp }),
    keepTtl,
  }
}

/** Absolute expiry in wall-clock ms for EX/PX/EXAT/PXAT n, relative ones from `now`. */
const expiryMs = (unit: string, n: number, now: number): number => {
  switch (unit) {
    case "EX":
      return now + n * 1000
    case "PX":
      return now + n
    case "EXAT":
      return n * 1000
    default:
      return n
  }
}

const wrongArity = (name: string): Resp.Reply =>
  Resp.error(`ERR wrong number of arguments for '${name}' command`)

/** Redis's wording, including the quoting and the trailing space after each argument. */
const unknownCommand = (args: ReadonlyArray<string>): Resp.Reply => {
  let shown = ""
  for (const arg of args.slice(1)) {
    if (shown.length >= 128) break
    shown += `'${arg.slice(0, 128 - shown.length)}' `
  }
  return Resp.error(
    `ERR unknown command '${(args[0] ?? "").slice(0, 128)}', with args beginning with: ${shown}`,
  )
}

const unknownSubcommand = (sub: string, command: string): Resp.Reply =>
  Resp.error(`ERR unknown subcommand '${sub.slice(0, 128)}'. Try ${command} HELP.`)

/** Glob match as Redis's CONFIG GET does it: `*`, `?`, `[...]`, case-insensitive. */
const globToRegExp = (pattern: string): RegExp => {
  let source = ""
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!
    if (c === "*") source += ".*"
    else if (c === "?") source += "."
    else if (c === "[") {
      const close = pattern.indexOf("]", i + 1)
      if (close < 0) source += "\\["
      else {
        const body = pattern.slice(i + 1, close).replace(/\\/g, "\\\\")
        source += body.startsWith("^") ? `[^${body.slice(1)}]` : `[${body}]`
        i = close
      }
    } else source += c.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")
  }
  return new RegExp(`^${source}$`, "i")
}

// ---------------------------------------------------------------------------------------------
// The server

class RespServerImpl implements RespServer {
  private readonly config: Config
  private readonly log: Log
  private readonly clock: ClockShape
  private readonly submit: RespServerOptions["submit"]
  private readonly operator: RespServerOptions["operator"]
  private readonly info: RespServerOptions["info"]
  private readonly starting: RespServerOptions["starting"]
  private readonly status: RespServerOptions["status"]
  private readonly server: net.Server
  private readonly connections = new Set<Connection>()
  private readonly commands: ReadonlyMap<string, Spec>
  private readonly limits: Partial<Resp.Limits>
  private readonly startedAt: number
  private nextConnectionId = 1
  private closed = false
  /** DHT_UNSAFE_UNORDERED=1: submit on arrival, breaking CONN-1 (negative control only). */
  private readonly unordered: boolean
  private readonly counters: RespServerStats = {
    connectedClients: 0,
    totalConnections: 0,
    totalCommands: 0,
    protocolErrors: 0,
  }
  listening: Address

  constructor(options: RespServerOptions) {
    this.config = options.config
    this.log = options.log
    this.clock = options.clock
    this.startedAt = options.clock.now()
    this.submit = options.submit
    this.operator = options.operator
    this.info = options.info
    this.starting = options.starting
    this.status = options.status
    this.listening = options.config.client
    // Values up to a few times the limit are read whole, so that they get a clear error and the
    // connection stays usable; beyond that the stream is refused as a protocol error.
    this.limits = { maxBulkBytes: Math.max(64 * MiB, 4 * options.config.maxValueBytes) }
    this.commands = this.commandTable()
    // Test-only negative control (dht verify --unsafe-unordered), read here like
    // DHT_UNSAFE_FAILOVER is read by the node: no per-connection order (CONN-1 breaks).
    this.unordered = process.env.DHT_UNSAFE_UNORDERED === "1"
    if (this.unordered) {
      this.log.error(
        "DHT_UNSAFE_UNORDERED=1: commands run on arrival, not in connection order (negative control only)",
      )
    }
    this.server = net.createServer({ noDelay: true }, (socket) => this.accept(socket))
  }

  listen(onListening: () => void, onError: (e: Error) => void): void {
    const fail = (e: NodeJS.ErrnoException) => {
      const where = showAddress(this.config.client)
      onError(new Error(`cannot listen for clients on ${where}: ${e.code ?? e.message}`))
    }
    this.server.once("error", fail)
    this.server.listen(this.config.client.port, this.config.client.host, () => {
      this.server.off("error", fail)
      this.server.on("error", (e) => this.log.error(`client listener: ${e.message}`))
      const bound = this.server.address()
      if (bound !== null && typeof bound === "object") {
        this.listening = { host: this.config.client.host, port: bound.port }
      }
      onListening()
    })
  }

  stats(): Readonly<RespServerStats> {
    return { ...this.counters }
  }

  /**
   * The value a plain GET returns: the resolved sibling, null for none, a tombstone or an
   * expired value. Expiry is judged by this node's clock when the result arrives (EXP-1).
   */
  private plainValue(obj: Version.Obj): string | null {
    return Version.readValueAt(obj, this.clock.now())
  }

  close(): Promise<void> {
    this.closed = true
    for (const conn of this.connections) {
      conn.gone = true
      conn.socket.destroy()
    }
    return new Promise((resolve) => this.server.close(() => resolve()))
  }

  // -------------------------------------------------------------------------------------------
  // Connections

  private accept(socket: net.Socket): void {
    if (this.closed) {
      socket.destroy()
      return
    }
    socket.setNoDelay(true)
    const conn: Connection = {
      id: this.nextConnectionId++,
      socket,
      parser: new Resp.RespParser(this.limits),
      slots: [],
      head: 0,
      gone: false,
      closing: false,
      flushScheduled: false,
      paused: false,
      name: "",
      proto: 2,
      inFlight: new Map(),
    }
    this.connections.add(conn)
    this.counters.connectedClients++
    this.counters.totalConnections++
    socket.on("data", (chunk: Buffer) => this.onData(conn, chunk))
    socket.on("drain", () => this.maybeResume(conn))
    socket.on("error", () => {})
    socket.on("close", () => {
      conn.gone = true
      conn.slots = []
      conn.head = 0
      this.connections.delete(conn)
      this.counters.connectedClients--
    })
  }

  private onData(conn: Connection, chunk: Buffer): void {
    if (conn.closing || conn.gone) return
    conn.parser.feed(chunk)
    for (;;) {
      const request = conn.parser.next()
      if (request === undefined) break
      if (request instanceof Resp.RespProtocolError) {
        this.counters.protocolErrors++
        this.log.warn(
          `client ${conn.id} (${conn.socket.remoteAddress}:${conn.socket.remotePort}): ` +
            `${request.message}; closing the connection`,
        )
        conn.slots.push({ reply: Resp.error(`ERR ${request.message}`) })
        conn.closing = true
        break
      }
      this.counters.totalCommands++
      const slot: Slot = { reply: undefined }
      conn.slots.push(slot)
      // Not `??=`: dispatch may fill the slot itself (a result that arrives synchronously).
      const reply = this.dispatch(conn, request, slot)
      if (reply !== undefined) slot.reply = reply
      if (conn.closing) break
    }
    this.flush(conn)
    if (!conn.gone && this.overloaded(conn)) {
      conn.paused = true
      conn.socket.pause()
    }
  }

  private overloaded(conn: Connection): boolean {
    return (
      conn.slots.length - conn.head > SLOTS_PENDING_MAX ||
      conn.socket.writableLength > OUTPUT_BYTES_MAX
    )
  }

  private maybeResume(conn: Connection): void {
    if (!conn.paused || conn.gone || this.overloaded(conn)) return
    conn.paused = false
    conn.socket.resume()
  }

  /** A result filled a slot: flush once the current turn's other results are in too. */
  private fill(conn: Connection, slot: Slot, reply: Resp.Reply): void {
    if (conn.gone) return
    slot.reply = reply
    if (conn.flushScheduled) return
    conn.flushScheduled = true
    queueMicrotask(() => {
      conn.flushScheduled = false
      this.flush(conn)
      this.maybeResume(conn)
    })
  }

  /** Write every leading slot that has its reply, in one socket write. */
  private flush(conn: Connection): void {
    if (conn.gone) return
    const ready: Array<Resp.Reply> = []
    let head = conn.head
    while (head < conn.slots.length) {
      const reply = conn.slots[head]!.reply
      if (reply === undefined) break
      ready.push(reply)
      head++
    }
    if (head === conn.slots.length) {
      conn.slots = []
      conn.head = 0
    } else {
      conn.head = head
      if (head > 1024 && head * 2 > conn.slots.length) {
        conn.slots = conn.slots.slice(head)
        conn.head = 0
      }
    }
    if (ready.length > 0) conn.socket.write(Resp.encodeAll(ready, conn.proto))
    if (conn.closing && conn.slots.length === 0) {
      conn.gone = true
      conn.socket.end()
    }
  }

  // -------------------------------------------------------------------------------------------
  // Commands

  /** The reply now, or undefined if the slot will be filled later. */
  private dispatch(
    conn: Connection,
    args: ReadonlyArray<string>,
    slot: Slot,
  ): Resp.Reply | undefined {
    const name = args[0]!.toLowerCase()
    const spec = this.commands.get(name)
    if (spec === undefined) return unknownCommand(args)
    const arity = spec.arity
    if (arity >= 0 ? args.length !== arity : args.length < -arity) return wrongArity(name)
    return spec.handle(conn, args, slot)
  }

  private commandTable(): ReadonlyMap<string, Spec> {
    const table: Record<string, Spec> = {
      ping: { arity: -1, handle: (_c, args) => this.ping(args) },
      hello: { arity: -1, handle: (c, args) => this.hello(c, args) },
      auth: { arity: -2, handle: (_c, args) => this.auth(args) },
      echo: { arity: 2, handle: (_c, args) => Resp.bulkString(args[1]!) },
      get: { arity: 2, handle: (c, args, slot) => this.get(c, args, slot) },
      set: { arity: -3, handle: (c, args, slot) => this.set(c, args, slot) },
      setnx: { arity: 3, handle: (c, args, slot) => this.setnx(c, args, slot) },
      setex: { arity: 4, handle: (c, args, slot) => this.setex(c, args, slot, "EX") },
      psetex: { arity: 4, handle: (c, args, slot) => this.setex(c, args, slot, "PX") },
      getdel: { arity: 2, handle: (c, args, slot) => this.getdel(c, args, slot) },
      getex: { arity: -2, handle: (c, args, slot) => this.getex(c, args, slot) },
      expire: { arity: -3, handle: (c, args, slot) => this.expire(c, args, slot, "EX") },
      pexpire: { arity: -3, handle: (c, args, slot) => this.expire(c, args, slot, "PX") },
      expireat: { arity: -3, handle: (c, args, slot) => this.expire(c, args, slot, "EXAT") },
      pexpireat: { arity: -3, handle: (c, args, slot) => this.expire(c, args, slot, "PXAT") },
      persist: { arity: 2, handle: (c, args, slot) => this.persist(c, args, slot) },
      ttl: { arity: 2, handle: (c, args, slot) => this.ttl(c, args, slot, 1000) },
      pttl: { arity: 2, handle: (c, args, slot) => this.ttl(c, args, slot, 1) },
      strlen: { arity: 2, handle: (c, args, slot) => this.strlen(c, args, slot) },
      append: { arity: 3, handle: (c, args, slot) => this.append(c, args, slot) },
      type: { arity: 2, handle: (c, args, slot) => this.type(c, args, slot) },
      unlink: { arity: -2, handle: (c, args, slot) => this.del(c, args, slot) },
      scan: { arity: -2, handle: (c, args, slot) => this.scan(c, args, slot) },
      keys: { arity: 2, handle: (c, args, slot) => this.listAll(c, slot, args[1]!, "keys") },
      dbsize: { arity: 1, handle: (c, _args, slot) => this.listAll(c, slot, undefined, "count") },
      multi: { arity: 1, handle: () => noTransactions("MULTI") },
      exec: { arity: 1, handle: () => noTransactions("EXEC") },
      discard: { arity: 1, handle: () => noTransactions("DISCARD") },
      watch: { arity: -2, handle: () => noTransactions("WATCH") },
      unwatch: { arity: 1, handle: () => noTransactions("UNWATCH") },
      msetnx: {
        arity: -3,
        handle: () =>
          Resp.error(
            "ERR MSETNX is not supported: writes to several keys are not atomic across nodes " +
              "(use SET … NX per key)",
          ),
      },
      incr: { arity: 2, handle: (c, args, slot) => this.incr(c, args[1]!, "1", slot) },
      decr: { arity: 2, handle: (c, args, slot) => this.incr(c, args[1]!, "-1", slot) },
      incrby: { arity: 3, handle: (c, args, slot) => this.incrBy(c, args, slot, false) },
      decrby: { arity: 3, handle: (c, args, slot) => this.incrBy(c, args, slot, true) },
      incrbyfloat: { arity: 3, handle: (c, args, slot) => this.incrByFloat(c, args, slot) },
      del: { arity: -2, handle: (c, args, slot) => this.del(c, args, slot) },
      exists: { arity: -2, handle: (c, args, slot) => this.exists(c, args, slot) },
      mget: { arity: -2, handle: (c, args, slot) => this.mget(c, args, slot) },
      mset: { arity: -3, handle: (c, args, slot) => this.mset(c, args, slot) },
      info: { arity: -1, handle: (_c, args) => this.infoReply(args) },
      quit: { arity: -1, handle: (c) => this.quit(c) },
      command: { arity: -1, handle: (_c, args) => this.command(args) },
      config: { arity: -2, handle: (_c, args) => this.configCommand(args) },
      select: { arity: 2, handle: (_c, args) => this.select(args) },
      client: { arity: -2, handle: (c, args) => this.client(c, args) },
      "dht.get": { arity: -2, handle: (c, args, slot) => this.dhtGet(c, args, slot) },
      "dht.put": { arity: -3, handle: (c, args, slot) => this.dhtWrite(c, args, slot, true) },
      "dht.del": { arity: -2, handle: (c, args, slot) => this.dhtWrite(c, args, slot, false) },
      "dht.status": {
        arity: 1,
        handle: () => Resp.bulkString(JSON.stringify(this.status())),
      },
      "dht.join": { arity: 1, handle: (c, _args, slot) => this.op(c, slot, { _tag: "Join" }) },
      "dht.leave": { arity: 1, handle: (c, _args, slot) => this.op(c, slot, { _tag: "Leave" }) },
      "dht.remove": {
        arity: 2,
        handle: (c, args, slot) => this.op(c, slot, { _tag: "Remove", node: NodeId(args[1]!) }),
      },
    }
    return new Map(Object.entries(table))
  }

  /**
   * HELLO [protover [AUTH username password] [SETNAME name]], answered as Redis 7 does: switch
   * the connection to RESP2 or RESP3 and describe the server. No password is configured, so
   * AUTH accepts the default user (as Redis's `nopass` default user does) and no other.
   */
  private hello(conn: Connection, args: ReadonlyArray<string>): Resp.Reply {
    let proto = conn.proto
    let name: string | undefined
    if (args.length > 1) {
      const text = args[1]!
      const version = Number(text)
      if (!/^-?\d+$/.test(text)) {
        return Resp.error("ERR Protocol version is not an integer or out of range")
      }
      if (version !== 2 && version !== 3) return Resp.error("NOPROTO unsupported protocol version")
      proto = version
      for (let i = 2; i < args.length; i++) {
        const option = args[i]!.toLowerCase()
        if (option === "auth" && i + 2 < args.length) {
          const denied = this.authenticate(args[i + 1]!)
          if (denied !== undefined) return denied
          i += 2
        } else if (option === "setname" && i + 1 < args.length) {
          name = args[i + 1]!
          if (/[\s]/.test(name)) {
            return Resp.error(
              "ERR Client names cannot contain spaces, newlines or special characters.",
            )
          }
          i += 1
        } else return Resp.error(`ERR Syntax error in HELLO option '${args[i]!.slice(0, 128)}'`)
      }
    }
    conn.proto = proto
    if (name !== undefined) conn.name = name
    return Resp.map([
      ["server", Resp.bulkString("redis")],
      ["version", Resp.bulkString(REDIS_VERSION)],
      ["proto", Resp.integer(proto)],
      ["id", Resp.integer(conn.id)],
      ["mode", Resp.bulkString("standalone")],
      ["role", Resp.bulkString("master")],
      ["modules", Resp.array([])],
    ])
  }

  private authenticate(user: string): Resp.Reply | undefined {
    return user === "default"
      ? undefined
      : Resp.error("WRONGPASS invalid username-password pair or user is disabled.")
  }

  /** AUTH [username] password: no password is configured (Redis's wording for that case). */
  private auth(args: ReadonlyArray<string>): Resp.Reply {
    if (args.length > 3) return Resp.error("ERR syntax error")
    if (args.length === 3) return this.authenticate(args[1]!) ?? Resp.ok
    return Resp.error(
      "ERR AUTH <password> called without any password configured for the default user. " +
        "Are you sure your configuration is correct?",
    )
  }

  private ping(args: ReadonlyArray<string>): Resp.Reply {
    if (args.length > 2) return wrongArity("ping")
    return args.length === 2 ? Resp.bulkString(args[1]!) : Resp.simpleString("PONG")
  }

  private tooLarge(value: string): Resp.Reply | undefined {
    if (value.length <= this.config.maxValueBytes) return undefined
    return Resp.error(
      `ERR value too large (${value.length} bytes > limit ${this.config.maxValueBytes})`,
    )
  }

  /**
   * Run `ops` on the machine and fill `slot` once all have answered: with the first failure's
   * error if any failed, else with `done(results)`.
   */
  private runAll(
    conn: Connection,
    slot: Slot,
    ops: ReadonlyArray<ClientOp>,
    done: (results: ReadonlyArray<ClientResult>) => Resp.Reply,
  ): undefined {
    const results: Array<ClientResult | undefined> = new Array(ops.length)
    let remaining = ops.length
    ops.forEach((op, i) => {
      this.submitInOrder(conn, op, (result) => {
        results[i] = result
        if (--remaining > 0 || conn.gone) return
        const all = results as Array<ClientResult>
        const failed = all.find((r) => r._tag === "Failed")
        this.fill(conn, slot, failed?._tag === "Failed" ? failureReply(failed) : done(all))
      })
    })
    return undefined
  }

  /**
   * Submit `op` once every earlier operation of this connection on the same key has its result
   * (CONN-1); a connection that went away still drains its queue, so nothing waits forever.
   */
  private submitInOrder(
    conn: Connection,
    op: ClientOp,
    onResult: (result: ClientResult) => void,
  ): void {
    // A SCAN page reads no one key: it is not ordered behind the connection's writes.
    if (op._tag === "Scan" || this.unordered) return this.submit(op, onResult)
    const key = op.key
    const run = () =>
      this.submit(op, (result) => {
        const waiting = conn.inFlight.get(key)!
        const next = waiting.shift()
        if (next === undefined) conn.inFlight.delete(key)
        onResult(result)
        next?.()
      })
    const waiting = conn.inFlight.get(key)
    if (waiting !== undefined) waiting.push(run)
    else {
      conn.inFlight.set(key, [])
      run()
    }
  }

  private get(conn: Connection, args: ReadonlyArray<string>, slot: Slot): undefined {
    return this.runAll(conn, slot, [{ _tag: "Get", key: args[1]! }], ([result]) =>
      result?._tag === "GetOk" ? Resp.bulkString(this.plainValue(result.obj)) : Resp.nullBulkString,
    )
  }

  /**
   * SET key value [NX|XX] [GET] [EX s|PX ms|EXAT s|PXAT ms|KEEPTTL]: OK, or nil when NX/XX did
   * not hold; with GET, the value the write replaced (nil for none) instead.
   */
  private set(conn: Connection, args: ReadonlyArray<string>, slot: Slot): Resp.Reply | undefined {
    const value = args[2]!
    const tooLarge = this.tooLarge(value)
    if (tooLarge !== undefined) return tooLarge
    const options = parseSetOptions(args.slice(3), this.clock.now())
    if ("_tag" in options) return options
    const op: PutOp = {
      ...(put(args[1]!, value) as PutOp),
      ...(options.cond === undefined ? {} : { cond: options.cond }),
      ...(options.exp === undefined ? {} : { exp: options.exp }),
      ...(options.keepTtl ? { keep: "ttl" as const } : {}),
    }
    return this.runAll(conn, slot, [op], ([result]) => {
      if (options.get) return Resp.bulkString(previousOf(result))
      return result?._tag === "PutOk" ? Resp.ok : Resp.nullBulkString
    })
  }

  /**
   * INCR/DECR/INCRBY/DECRBY (CTR-1): an increment of the key's counter, a CRDT whose entries are
   * per coordinating replica, so that increments on both sides of a partition all count.
   */
  private incr(conn: Connection, key: string, by: string, slot: Slot, float = false): undefined {
    const op: PutOp = { ...(put(key, null) as PutOp), incr: { by, float } }
    return this.runAll(conn, slot, [op], ([result]) => {
      const total = result?._tag === "PutOk" ? (result.total ?? "0") : "0"
      return float ? Resp.bulkString(total) : Resp.integer(BigInt(total))
    })
  }

  private incrBy(
    conn: Connection,
    args: ReadonlyArray<string>,
    slot: Slot,
    negate: boolean,
  ): Resp.Reply | undefined {
    const text = args[2]!
    if (!/^-?(0|[1-9]\d*)$/.test(text)) return notInteger
    const by = BigInt(text)
    if (by < -(2n ** 63n) || by > 2n ** 63n - 1n) return notInteger
    if (negate && by === -(2n ** 63n)) return Resp.error("ERR decrement would overflow")
    return this.incr(conn, args[1]!, (negate ? -by : by).toString(), slot)
  }

  private incrByFloat(
    conn: Connection,
    args: ReadonlyArray<string>,
    slot: Slot,
  ): Resp.Reply | undefined {
    const text = args[2]!
    const by = Number(text)
    if (!/^\s*[-+]?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?\s*$/i.test(text) || !Number.isFinite(by)) {
      return Resp.error("ERR value is not a valid float")
    }
    return this.incr(conn, args[1]!, String(by), slot, true)
  }

  /**
   * SCAN cursor [MATCH pattern] [COUNT n] [TYPE string] (SCAN-1): one page of the cluster-wide
   * listing. The cursor encodes the last key returned (a decimal number, as clients expect), so
   * every key present for the whole scan comes back exactly once.
   */
  private scan(conn: Connection, args: ReadonlyArray<string>, slot: Slot): Resp.Reply | undefined {
    const after = decodeCursor(args[1]!)
    if (after === null) return Resp.error("ERR invalid cursor")
    let match: string | undefined
    let count = 10
    let type: string | undefined
    for (let i = 2; i < args.length; i += 2) {
      const option = args[i]!.toUpperCase()
      const value = args[i + 1]
      if (value === undefined) return Resp.error("ERR syntax error")
      if (option === "MATCH") match = value
      else if (option === "COUNT") {
        const n = parseInteger(value)
        if (n === undefined) return notInteger
        if (n < 1) return Resp.error("ERR syntax error")
        count = Math.min(n, SCAN_COUNT_MAX)
      } else if (option === "TYPE") type = value.toLowerCase()
      else return Resp.error("ERR syntax error")
    }
    if (type !== undefined && type !== "string") {
      // Every value here is a string (counters included): another type lists nothing.
      return Resp.array([Resp.bulkString("0"), Resp.array([])])
    }
    const op: ClientOp = {
      _tag: "Scan",
      count,
      ...(after === undefined ? {} : { after }),
      ...(match === undefined ? {} : { match }),
    }
    return this.runAll(conn, slot, [op], ([result]) => {
      if (result?._tag !== "ScanOk") return Resp.error("ERR SCAN failed")
      return Resp.array([
        Resp.bulkString(result.next === null ? "0" : encodeCursor(result.next)),
        Resp.array(result.keys.map((k) => Resp.bulkString(k))),
      ])
    })
  }

  /**
   * KEYS pattern and DBSIZE: a whole SCAN run here, page after page, answered once complete.
   * Both cost O(keys in the cluster); DBSIZE is exact (live keys; tombstones and expired values
   * are not counted).
   */
  private listAll(
    conn: Connection,
    slot: Slot,
    match: string | undefined,
    what: "keys" | "count",
  ): undefined {
    const keys: Array<string> = []
    let counted = 0
    const page = (after: string | undefined) => {
      const op: ClientOp = {
        _tag: "Scan",
        count: 1000,
        ...(after === undefined ? {} : { after }),
        ...(match === undefined ? {} : { match }),
      }
      this.submit(op, (result) => {
        if (conn.gone) return
        if (result._tag === "Failed") return this.fill(conn, slot, failureReply(result))
        if (result._tag !== "ScanOk") return this.fill(conn, slot, Resp.error("ERR SCAN failed"))
        if (what === "keys") keys.push(...result.keys)
        counted += result.keys.length
        if (result.next !== null) return page(result.next)
        this.fill(
          conn,
          slot,
          what === "keys" ? Resp.array(keys.map((k) => Resp.bulkString(k))) : Resp.integer(counted),
        )
      })
    }
    page(undefined)
    return undefined
  }

  /** SETNX key value: 1 if written, 0 if a value was live. */
  private setnx(conn: Connection, args: ReadonlyArray<string>, slot: Slot): Resp.Reply | undefined {
    const tooLarge = this.tooLarge(args[2]!)
    if (tooLarge !== undefined) return tooLarge
    const op: PutOp = { ...(put(args[1]!, args[2]!) as PutOp), cond: "nx" }
    return this.runAll(conn, slot, [op], ([result]) =>
      Resp.integer(result?._tag === "PutOk" ? 1 : 0),
    )
  }

  /** SETEX key seconds value, PSETEX key ms value. */
  private setex(
    conn: Connection,
    args: ReadonlyArray<string>,
    slot: Slot,
    unit: "EX" | "PX",
  ): Resp.Reply | undefined {
    const n = parseInteger(args[2]!)
    if (n === undefined) return notInteger
    if (n <= 0) return Resp.error(`ERR invalid expire time in '${args[0]!.toLowerCase()}' command`)
    const tooLarge = this.tooLarge(args[3]!)
    if (tooLarge !== undefined) return tooLarge
    const op: PutOp = {
      ...(put(args[1]!, args[3]!) as PutOp),
      exp: expiryMs(unit, n, this.clock.now()),
    }
    return this.runAll(conn, slot, [op], () => Resp.ok)
  }

  /** GETDEL key: the live value, deleted in the same write (nil and no write if none). */
  private getdel(conn: Connection, args: ReadonlyArray<string>, slot: Slot): undefined {
    const op: PutOp = { ...(put(args[1]!, null) as PutOp), cond: "xx" }
    return this.runAll(conn, slot, [op], ([result]) => Resp.bulkString(previousOf(result)))
  }

  /** GETEX key [EX s|PX ms|EXAT s|PXAT ms|PERSIST]: the value, with its expiry changed. */
  private getex(conn: Connection, args: ReadonlyArray<string>, slot: Slot): Resp.Reply | undefined {
    const key = args[1]!
    if (args.length === 2) return this.get(conn, args, slot)
    const option = args[2]!.toUpperCase()
    let exp: number | undefined
    if (option === "PERSIST" && args.length === 3) exp = undefined
    else if (["EX", "PX", "EXAT", "PXAT"].includes(option) && args.length === 4) {
      const n = parseInteger(args[3]!)
      if (n === undefined) return notInteger
      if (n <= 0) return Resp.error("ERR invalid expire time in 'getex' command")
      exp = expiryMs(option, n, this.clock.now())
    } else return Resp.error("ERR syntax error")
    const op: PutOp = {
      ...(put(key, null) as PutOp),
      keep: "value",
      ...(exp === undefined ? {} : { exp }),
    }
    return this.runAll(conn, slot, [op], ([result]) => Resp.bulkString(previousOf(result)))
  }

  /**
   * EXPIRE key seconds (PEXPIRE, EXPIREAT, PEXPIREAT): 1 if the key had a live value, which is
   * written again with the new expiry; 0 otherwise. A time already past deletes the key, as in
   * Redis. The NX/XX/GT/LT flags of Redis 7 are refused.
   */
  private expire(
    conn: Connection,
    args: ReadonlyArray<string>,
    slot: Slot,
    unit: "EX" | "PX" | "EXAT" | "PXAT",
  ): Resp.Reply | undefined {
    const name = args[0]!.toLowerCase()
    if (args.length > 3) {
      return /^(NX|XX|GT|LT)$/i.test(args[3]!)
        ? Resp.error(`ERR ${name.toUpperCase()} NX|XX|GT|LT are not supported`)
        : Resp.error(`ERR Unsupported option ${args[3]!.slice(0, 128)}`)
    }
    const n = parseInteger(args[2]!)
    if (n === undefined) return notInteger
    const now = this.clock.now()
    const exp = expiryMs(unit, n, now)
    const op: PutOp =
      exp <= now
        ? { ...(put(args[1]!, null) as PutOp), cond: "xx" }
        : { ...(put(args[1]!, null) as PutOp), keep: "value", exp }
    return this.runAll(conn, slot, [op], ([result]) =>
      Resp.integer(result?._tag === "PutOk" ? 1 : 0),
    )
  }

  /**
   * PERSIST key: 1 if the key had an expiry, now removed; 0 if none or no key. The live value is
   * written again without expiry in either case (one write, decided at the coordinator).
   */
  private persist(conn: Connection, args: ReadonlyArray<string>, slot: Slot): undefined {
    const op: PutOp = { ...(put(args[1]!, null) as PutOp), keep: "value" }
    return this.runAll(conn, slot, [op], ([result]) =>
      Resp.integer(result?._tag === "PutOk" && result.previous?.exp !== undefined ? 1 : 0),
    )
  }

  /** TTL/PTTL key: -2 no live value, -1 no expiry, else the time left (rounded like Redis). */
  private ttl(
    conn: Connection,
    args: ReadonlyArray<string>,
    slot: Slot,
    unitMs: number,
  ): undefined {
    return this.runAll(conn, slot, [{ _tag: "Get", key: args[1]! }], ([result]) => {
      const now = this.clock.now()
      const current = result?._tag === "GetOk" ? Version.readAt(result.obj, now) : undefined
      if (current === undefined) return Resp.integer(-2)
      const exp = current.sibling.exp
      if (exp === undefined) return Resp.integer(-1)
      return Resp.integer(Math.floor((exp - now + (unitMs === 1 ? 0 : 500)) / unitMs))
    })
  }

  /**
   * APPEND key value: the coordinator writes its live value followed by `value` (EXP-2's rule:
   * decided over what it knows when it writes); the reply is the new length. The key keeps its
   * expiry, as in Redis.
   */
  private append(
    conn: Connection,
    args: ReadonlyArray<string>,
    slot: Slot,
  ): Resp.Reply | undefined {
    const tooLarge = this.tooLarge(args[2]!)
    if (tooLarge !== undefined) return tooLarge
    const op: PutOp = { ...(put(args[1]!, args[2]!) as PutOp), append: true }
    return this.runAll(conn, slot, [op], ([result]) =>
      Resp.integer(
        (result?._tag === "PutOk" ? (result.previous?.value.length ?? 0) : 0) + args[2]!.length,
      ),
    )
  }

  private strlen(conn: Connection, args: ReadonlyArray<string>, slot: Slot): undefined {
    return this.runAll(conn, slot, [{ _tag: "Get", key: args[1]! }], ([result]) =>
      Resp.integer(result?._tag === "GetOk" ? (this.plainValue(result.obj)?.length ?? 0) : 0),
    )
  }

  private type(conn: Connection, args: ReadonlyArray<string>, slot: Slot): undefined {
    return this.runAll(conn, slot, [{ _tag: "Get", key: args[1]! }], ([result]) =>
      Resp.simpleString(
        result?._tag === "GetOk" && this.plainValue(result.obj) !== null ? "string" : "none",
      ),
    )
  }

  private del(conn: Connection, args: ReadonlyArray<string>, slot: Slot): undefined {
    const ops = args.slice(1).map((key) => put(key, null))
    return this.runAll(conn, slot, ops, (results) =>
      Resp.integer(results.filter((r) => r._tag === "PutOk" && r.existed).length),
    )
  }

  private exists(conn: Connection, args: ReadonlyArray<string>, slot: Slot): undefined {
    const ops: Array<ClientOp> = args.slice(1).map((key) => ({ _tag: "Get", key }))
    return this.runAll(conn, slot, ops, (results) =>
      Resp.integer(
        results.filter((r) => r._tag === "GetOk" && this.plainValue(r.obj) !== null).length,
      ),
    )
  }

  private mget(conn: Connection, args: ReadonlyArray<string>, slot: Slot): undefined {
    const ops: Array<ClientOp> = args.slice(1).map((key) => ({ _tag: "Get", key }))
    return this.runAll(conn, slot, ops, (results) =>
      Resp.array(
        results.map((r) =>
          r._tag === "GetOk" ? Resp.bulkString(this.plainValue(r.obj)) : Resp.nullBulkString,
        ),
      ),
    )
  }

  private mset(conn: Connection, args: ReadonlyArray<string>, slot: Slot): Resp.Reply | undefined {
    if (args.length % 2 !== 1) return wrongArity("mset")
    const ops: Array<ClientOp> = []
    for (let i = 1; i < args.length; i += 2) {
      const tooLarge = this.tooLarge(args[i + 1]!)
      if (tooLarge !== undefined) return tooLarge
      ops.push(put(args[i]!, args[i + 1]!))
    }
    return this.runAll(conn, slot, ops, () => Resp.ok)
  }

  /** An operator intent: `+message` once the machine accepted it, else its error. */
  /**
   * Options after the fixed arguments of a DHT.* command: NAME value pairs, case-insensitive,
   * each at most once. Returns the values or an error reply.
   */
  private options(
    args: ReadonlyArray<string>,
    from: number,
    allowed: ReadonlyArray<string>,
  ): Map<string, string> | Resp.Reply {
    const out = new Map<string, string>()
    for (let i = from; i < args.length; i += 2) {
      const name = args[i]!.toUpperCase()
      const value = args[i + 1]
      if (!allowed.includes(name) || value === undefined || out.has(name)) {
        return Resp.error(
          `ERR syntax error: expected options ${allowed.map((a) => `[${a} value]`).join(" ")}`,
        )
      }
      out.set(name, value)
    }
    return out
  }

  private quorumOption(
    options: Map<string, string>,
    name: "R" | "W",
  ): number | Resp.Reply | undefined {
    const text = options.get(name)
    if (text === undefined) return undefined
    const q = Number(text)
    if (!/^\d+$/.test(text) || q < 1 || q > this.config.n) {
      return Resp.error(`ERR ${name} must be an integer from 1 to N=${this.config.n}, got ${text}`)
    }
    return q
  }

  /** DHT.GET key [R r] → context, deleted flag and every live sibling. */
  private dhtGet(
    conn: Connection,
    args: ReadonlyArray<string>,
    slot: Slot,
  ): Resp.Reply | undefined {
    const options = this.options(args, 2, ["R"])
    if (!(options instanceof Map)) return options
    const r = this.quorumOption(options, "R")
    if (typeof r === "object") return r
    const op: ClientOp = { _tag: "Get", key: args[1]!, ...(r === undefined ? {} : { r }) }
    return this.runAll(conn, slot, [op], ([result]) => {
      if (result?._tag !== "GetOk") return Resp.nullArray
      const values = Version.valuesAt(result.obj, this.clock.now())
      const deleted = result.obj.entries.length > 0 && values.length === 0
      // A map in RESP3; RESP2 gets the same fields as a flat array.
      return Resp.map([
        [
          "context",
          Resp.bulkString(Context.encode(Version.context(result.obj), this.config.secret)),
        ],
        ["deleted", Resp.integer(deleted ? 1 : 0)],
        ["siblings", Resp.array(values.map((v) => Resp.bulkString(v)))],
      ])
    })
  }

  /**
   * DHT.PUT key value [CONTEXT ctx | IF-CONTEXT ctx] [W w] / DHT.DEL key [CONTEXT ctx |
   * IF-CONTEXT ctx] [W w] → new context. IF-CONTEXT is compare-and-set (COND-1): the write
   * supersedes ctx and happens only if the key's context is still exactly ctx; else nil.
   */
  private dhtWrite(
    conn: Connection,
    args: ReadonlyArray<string>,
    slot: Slot,
    isPut: boolean,
  ): Resp.Reply | undefined {
    const fixed = isPut ? 3 : 2
    const options = this.options(args, fixed, ["CONTEXT", "IF-CONTEXT", "W"])
    if (!(options instanceof Map)) return options
    const w = this.quorumOption(options, "W")
    if (typeof w === "object") return w
    if (options.has("CONTEXT") && options.has("IF-CONTEXT")) {
      return Resp.error("ERR syntax error: CONTEXT and IF-CONTEXT exclude each other")
    }
    const compareAndSet = options.has("IF-CONTEXT")
    const value = isPut ? args[2]! : null
    if (value !== null) {
      const tooLarge = this.tooLarge(value)
      if (tooLarge !== undefined) return tooLarge
    }
    const token = options.get("CONTEXT") ?? options.get("IF-CONTEXT")
    let context: Version.Clock = Version.emptyClock
    if (token !== undefined) {
      const decoded = Context.decode(token, this.config.secret)
      if (decoded instanceof Context.ContextError) return Resp.error(`ERR ${decoded.message}`)
      context = decoded
    }
    const op: ClientOp = {
      _tag: "Put",
      key: args[1]!,
      value,
      context,
      ...(w === undefined ? {} : { w }),
      ...(compareAndSet ? { cond: "context" as const } : {}),
    }
    return this.runAll(conn, slot, [op], ([result]) =>
      result?._tag === "PutOk"
        ? Resp.bulkString(Context.encode(result.context, this.config.secret))
        : Resp.nullBulkString,
    )
  }

  private op(conn: Connection, slot: Slot, op: OperatorOp): undefined {
    this.operator(op, (result) =>
      this.fill(
        conn,
        slot,
        result._tag === "Failed"
          ? failureReply(result)
          : Resp.simpleString(result._tag === "Done" ? result.message : "OK"),
      ),
    )
    return undefined
  }

  private quit(conn: Connection): Resp.Reply {
    conn.closing = true
    return Resp.ok
  }

  private command(args: ReadonlyArray<string>): Resp.Reply {
    // Enough for redis-cli's start-up probes (COMMAND DOCS); we publish no command table.
    const sub = args[1]?.toLowerCase()
    if (sub === "count") return Resp.integer(0)
    return Resp.array([])
  }

  private configParameters(): ReadonlyArray<readonly [string, string]> {
    return [
      ["save", ""],
      ["appendonly", "no"],
      ["databases", "1"],
      ["n", String(this.config.n)],
      ["r", String(this.config.r)],
      ["w", String(this.config.w)],
      ["max-value-bytes", String(this.config.maxValueBytes)],
    ]
  }

  private configCommand(args: ReadonlyArray<string>): Resp.Reply {
    const sub = args[1]!.toLowerCase()
    if (sub === "get") {
      if (args.length < 3) return wrongArity("config|get")
      const patterns = args.slice(2).map(globToRegExp)
      const out: Array<readonly [string, Resp.Reply]> = []
      for (const [name, value] of this.configParameters()) {
        if (!patterns.some((p) => p.test(name))) continue
        out.push([name, Resp.bulkString(value)])
      }
      return Resp.map(out)
    }
    if (sub === "set")
      return Resp.error("ERR CONFIG SET is not supported; restart the node with new flags")
    if (sub === "resetstat") return Resp.ok
    return unknownSubcommand(args[1]!, "CONFIG")
  }

  private select(args: ReadonlyArray<string>): Resp.Reply {
    const db = args[1]!
    if (!/^-?\d+$/.test(db)) return Resp.error("ERR value is not an integer or out of range")
    return Number(db) === 0 ? Resp.ok : Resp.error("ERR DB index is out of range")
  }

  private client(conn: Connection, args: ReadonlyArray<string>): Resp.Reply {
    const sub = args[1]!.toLowerCase()
    switch (sub) {
      case "setname":
        if (args.length !== 3) return wrongArity("client|setname")
        conn.name = args[2]!
        return Resp.ok
      case "setinfo":
        return args.length === 4 ? Resp.ok : wrongArity("client|setinfo")
      case "getname":
        return Resp.bulkString(conn.name === "" ? null : conn.name)
      case "id":
        return Resp.integer(conn.id)
      default:
        return unknownSubcommand(args[1]!, "CLIENT")
    }
  }

  private infoReply(args: ReadonlyArray<string>): Resp.Reply {
    const wanted = args.slice(1).map((s) => s.toLowerCase())
    const all =
      wanted.length === 0 ||
      wanted.some((s) => s === "all" || s === "everything" || s === "default")
    const sections: Array<readonly [string, ReadonlyArray<readonly [string, string | number]>]> = [
      [
        "Server",
        [
          ["redis_version", REDIS_VERSION],
          ["dht_version", "0.1.0"],
          ["redis_mode", "standalone"],
          ["process_id", process.pid],
          ["tcp_port", this.listening.port],
          ["uptime_in_seconds", Math.floor((this.clock.now() - this.startedAt) / 1000)],
          ["node_id", this.config.id],
        ],
      ],
      [
        "Clients",
        [
          ["connected_clients", this.counters.connectedClients],
          ["blocked_clients", 0],
        ],
      ],
      ["Persistence", [["loading", this.starting() ? 1 : 0]]],
      ...this.info(),
    ]
    let text = ""
    for (const [section, fields] of sections) {
      if (!all && !wanted.includes(section.toLowerCase())) continue
      if (text.length > 0) text += "\r\n"
      text += `# ${section}\r\n`
      for (const [field, value] of fields) text += `${field}:${value}\r\n`
    }
    return Resp.bulkString(text)
  }
}

const noTransactions = (command: string): Resp.Reply =>
  Resp.error(
    `ERR ${command} is not supported: keys live on different nodes and there are no ` +
      "cross-key transactions; use SET ... NX|XX|GET or DHT.PUT ... IF-CONTEXT per key",
  )

/**
 * SCAN cursors: "0" is the start; any other cursor is the last key returned, its bytes read as
 * one big-endian number behind a 0x01 byte (so that leading zero bytes survive), in decimal.
 * undefined: the start; null: not a cursor this server made.
 */
const decodeCursor = (cursor: string): string | undefined | null => {
  if (cursor === "0") return undefined
  if (!/^[1-9]\d*$/.test(cursor)) return null
  const hex = BigInt(cursor).toString(16)
  if (hex.length % 2 !== 1 || hex[0] !== "1") return null
  return Buffer.from(hex.slice(1), "hex").toString("latin1")
}

const encodeCursor = (key: string): string =>
  BigInt(`0x1${Buffer.from(key, "latin1").toString("hex")}`).toString()

/** The live value a write replaced or skipped over, for SET … GET, GETDEL and GETEX. */
const previousOf = (result: ClientResult | undefined): string | null =>
  result?._tag === "PutOk" || result?._tag === "PutSkipped"
    ? (result.previous?.value ?? null)
    : null

const put = (key: string, value: string | null): ClientOp => ({
  _tag: "Put",
  key,
  value,
  context: null,
})
